import CSQLite

/// A SQLite result code (primary or extended), with readable names.
///
/// SQLite reports every outcome as an `int` (sqlite3.h, "Result Codes" and "Extended Result
/// Codes"). The low 8 bits are the primary code; extended codes add detail in the high bits,
/// for example `SQLITE_IOERR_FSYNC` = `SQLITE_IOERR | (4 << 8)`.
public struct SQLiteResultCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The primary code (the low 8 bits), for example `.ioError` for `SQLITE_IOERR_FSYNC`.
    public var primary: SQLiteResultCode { SQLiteResultCode(rawValue: rawValue & 0xFF) }

    public static let ok = SQLiteResultCode(rawValue: SQLITE_OK)
    public static let error = SQLiteResultCode(rawValue: SQLITE_ERROR)
    public static let internalError = SQLiteResultCode(rawValue: SQLITE_INTERNAL)
    public static let permission = SQLiteResultCode(rawValue: SQLITE_PERM)
    public static let abort = SQLiteResultCode(rawValue: SQLITE_ABORT)
    public static let busy = SQLiteResultCode(rawValue: SQLITE_BUSY)
    public static let locked = SQLiteResultCode(rawValue: SQLITE_LOCKED)
    public static let noMemory = SQLiteResultCode(rawValue: SQLITE_NOMEM)
    public static let readOnly = SQLiteResultCode(rawValue: SQLITE_READONLY)
    public static let interrupt = SQLiteResultCode(rawValue: SQLITE_INTERRUPT)
    public static let ioError = SQLiteResultCode(rawValue: SQLITE_IOERR)
    public static let corrupt = SQLiteResultCode(rawValue: SQLITE_CORRUPT)
    public static let notFound = SQLiteResultCode(rawValue: SQLITE_NOTFOUND)
    public static let full = SQLiteResultCode(rawValue: SQLITE_FULL)
    public static let cannotOpen = SQLiteResultCode(rawValue: SQLITE_CANTOPEN)
    public static let lockProtocol = SQLiteResultCode(rawValue: SQLITE_PROTOCOL)
    public static let schema = SQLiteResultCode(rawValue: SQLITE_SCHEMA)
    public static let tooBig = SQLiteResultCode(rawValue: SQLITE_TOOBIG)
    public static let constraint = SQLiteResultCode(rawValue: SQLITE_CONSTRAINT)
    public static let mismatch = SQLiteResultCode(rawValue: SQLITE_MISMATCH)
    public static let misuse = SQLiteResultCode(rawValue: SQLITE_MISUSE)
    public static let noLargeFileSupport = SQLiteResultCode(rawValue: SQLITE_NOLFS)
    public static let authorization = SQLiteResultCode(rawValue: SQLITE_AUTH)
    public static let range = SQLiteResultCode(rawValue: SQLITE_RANGE)
    public static let notADatabase = SQLiteResultCode(rawValue: SQLITE_NOTADB)
    public static let row = SQLiteResultCode(rawValue: SQLITE_ROW)
    public static let done = SQLiteResultCode(rawValue: SQLITE_DONE)

    /// Short names for the primary codes, as in sqlite3.h without the `SQLITE_` prefix.
    private static let names: [Int32: String] = [
        SQLITE_OK: "OK", SQLITE_ERROR: "ERROR", SQLITE_INTERNAL: "INTERNAL", SQLITE_PERM: "PERM",
        SQLITE_ABORT: "ABORT", SQLITE_BUSY: "BUSY", SQLITE_LOCKED: "LOCKED", SQLITE_NOMEM: "NOMEM",
        SQLITE_READONLY: "READONLY", SQLITE_INTERRUPT: "INTERRUPT", SQLITE_IOERR: "IOERR",
        SQLITE_CORRUPT: "CORRUPT", SQLITE_NOTFOUND: "NOTFOUND", SQLITE_FULL: "FULL",
        SQLITE_CANTOPEN: "CANTOPEN", SQLITE_PROTOCOL: "PROTOCOL", SQLITE_EMPTY: "EMPTY",
        SQLITE_SCHEMA: "SCHEMA", SQLITE_TOOBIG: "TOOBIG", SQLITE_CONSTRAINT: "CONSTRAINT",
        SQLITE_MISMATCH: "MISMATCH", SQLITE_MISUSE: "MISUSE", SQLITE_NOLFS: "NOLFS", SQLITE_AUTH: "AUTH",
        SQLITE_FORMAT: "FORMAT", SQLITE_RANGE: "RANGE", SQLITE_NOTADB: "NOTADB", SQLITE_NOTICE: "NOTICE",
        SQLITE_WARNING: "WARNING", SQLITE_ROW: "ROW", SQLITE_DONE: "DONE",
    ]

    /// For example `SQLITE_IOERR (extended 1034): disk I/O error`. The text comes from
    /// `sqlite3_errstr`, which describes the code in general and never contains data.
    public var description: String {
        let name = Self.names[rawValue & 0xFF] ?? "code \(rawValue & 0xFF)"
        let text = sqlite3_errstr(rawValue).map { String(cString: $0) } ?? "unknown"
        let extended = rawValue > 0xFF ? " (extended \(rawValue))" : ""
        return "SQLITE_\(name)\(extended): \(text)"
    }
}
