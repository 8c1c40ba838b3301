/// Everything that can go wrong in the store, with what the store was doing and, where SQLite
/// failed, SQLite's own code and message.
///
/// Messages never contain patient data: they name operations, tables, paths, counts and
/// row sequences, never values or patient IDs. SQLite's messages name columns and
/// constraints, not bound values.
public struct StoreError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A stable category a caller can switch on. Extensible: new codes may be added.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The database file could not be opened or created.
        public static let openFailed = Code(rawValue: "open_failed")
        /// The file exists but is not an SQLite database (`SQLITE_NOTADB`), or is not Vigil's.
        public static let notADatabase = Code(rawValue: "not_a_database")
        /// A pragma did not take the value the store requires (for example WAL refused).
        public static let pragmaNotApplied = Code(rawValue: "pragma_not_applied")
        /// The database records migrations this version of Vigil does not know: it was made
        /// or upgraded by a different (probably newer) Vigil.
        public static let unknownSchema = Code(rawValue: "unknown_schema")
        /// Applying a migration failed; the database is left at the previous migration.
        public static let migrationFailed = Code(rawValue: "migration_failed")
        /// A statement failed (I/O error, disk full, corruption, …): see `sqliteCode`.
        public static let sqlite = Code(rawValue: "sqlite")
        /// A stored row could not be turned back into a value (unknown vital key, bad payload).
        public static let corruptRow = Code(rawValue: "corrupt_row")
        /// The store was closed.
        public static let closed = Code(rawValue: "closed")
        /// The writer thread could not be started.
        public static let threadFailed = Code(rawValue: "thread_failed")
        /// An argument was out of range (for example a negative limit).
        public static let invalidArgument = Code(rawValue: "invalid_argument")
    }

    public var code: Code
    /// What went wrong and, where known, how it may be remedied.
    public var message: String
    /// What the store was doing, for example `commit` or `open /var/lib/vigil/vigil.sqlite`.
    public var operation: String
    /// SQLite's extended result code, when SQLite reported the failure.
    public var sqliteCode: SQLiteResultCode?
    /// SQLite's message (`sqlite3_errmsg`) at the time of failure.
    public var sqliteMessage: String?
    /// The errno of the system call that failed, when SQLite reports one
    /// (`sqlite3_system_errno`; for example `ENOSPC` behind an I/O error).
    public var systemErrno: Int32?

    public init(code: Code, message: String, operation: String,
                sqliteCode: SQLiteResultCode? = nil, sqliteMessage: String? = nil, systemErrno: Int32? = nil) {
        self.code = code
        self.message = message
        self.operation = operation
        self.sqliteCode = sqliteCode
        self.sqliteMessage = sqliteMessage
        self.systemErrno = systemErrno
    }

    public var description: String {
        var text = "store error [\(code)] during \(operation): \(message)"
        if let sqliteCode {
            text += " (\(sqliteCode)" + (sqliteMessage.map { "; \($0)" } ?? "")
                + (systemErrno.map { "; errno \($0): \(DiskSpace.errnoText($0))" } ?? "") + ")"
        }
        return text
    }
}
