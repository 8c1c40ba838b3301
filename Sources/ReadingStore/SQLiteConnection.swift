import CSQLite

/// One SQLite connection: owns the `sqlite3*` handle and a cache of prepared statements.
///
/// Not `Sendable`: a connection is used by one thread at a time. The store hands its write
/// connection to the writer thread and guards its read connection with a mutex; that is
/// where the thread-safety argument lives (see `StoreWriter`). Connections are opened with
/// `SQLITE_OPEN_NOMUTEX` because of that: SQLite's own per-call mutex would be redundant.
final class SQLiteConnection {
    /// The C handle. Valid until `close()`.
    private(set) var handle: OpaquePointer?
    /// The file the connection was opened on, for error messages and logs.
    let path: String
    /// Prepared statements by SQL text, prepared with `SQLITE_PREPARE_PERSISTENT`.
    private var cache: [String: OpaquePointer] = [:]
    /// Where damage (`SQLITE_CORRUPT`, `SQLITE_NOTADB`) met by this connection is reported,
    /// so the store's owner learns of it whichever caller hit it (Damage.swift).
    var damageLatch: DamageLatch?

    /// Opens (or, with `create`, creates) a database file.
    ///
    /// The corresponding C function is `sqlite3_open_v2`. A file that exists but is not a
    /// database is only detected on first read (SQLite reads the header lazily), which
    /// `ReadingStore` does right after opening by setting and checking pragmas.
    init(path: String, readOnly: Bool, create: Bool) throws(StoreError) {
        self.path = path
        var flags = SQLITE_OPEN_NOMUTEX
        flags |= readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE
        if create && !readOnly { flags |= SQLITE_OPEN_CREATE }
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) }
            // sqlite3_open_v2 allocates a handle even on failure; it must still be closed.
            if let db { sqlite3_close_v2(db) }
            throw StoreError(code: .openFailed,
                             message: "cannot open the database file; check that the directory exists and is writable",
                             operation: "open \(path)", sqliteCode: SQLiteResultCode(rawValue: rc), sqliteMessage: message)
        }
        handle = db
        // Extended codes tell an fsync failure (SQLITE_IOERR_FSYNC) from a read failure.
        // The corresponding C function is `sqlite3_extended_result_codes`.
        sqlite3_extended_result_codes(db, 1)
    }

    deinit { close() }

    /// Finalizes every cached statement and closes the handle. Idempotent.
    ///
    /// The corresponding C functions are `sqlite3_finalize` and `sqlite3_close_v2`.
    func close() {
        for (_, statement) in cache { sqlite3_finalize(statement) }
        cache.removeAll()
        if let handle { sqlite3_close_v2(handle) }
        handle = nil
    }

    /// Builds an error from the connection's current state.
    ///
    /// The corresponding C functions are `sqlite3_extended_errcode`, `sqlite3_errmsg` and
    /// `sqlite3_system_errno`.
    func error(_ rc: Int32, operation: String, code: StoreError.Code = .sqlite,
               message: String = "the statement failed") -> StoreError {
        let text = handle.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) }
        let extended = handle.map { sqlite3_extended_errcode($0) } ?? rc
        let primary = SQLiteResultCode(rawValue: rc).primary
        var storeCode = code
        if primary == .notADatabase { storeCode = .notADatabase }
        var storeMessage = message
        if primary == .notADatabase {
            storeMessage = "the file at \(path) is not an SQLite database; move it aside or point the store elsewhere"
        }
        // The extended code carries more detail; keep it unless it disagrees with `rc`.
        let reported = SQLiteResultCode(rawValue: extended).primary == primary ? extended : rc
        // The errno behind an I/O error or SQLITE_FULL (ENOSPC, EDQUOT, EIO), 0 when none.
        // Only for the codes an OS call causes: for the others it may be left over.
        let osCaused = primary == .ioError || primary == .full || primary == .cannotOpen
        let systemErrno = osCaused ? (handle.map { sqlite3_system_errno($0) } ?? 0) : 0
        let error = StoreError(code: storeCode, message: storeMessage, operation: operation,
                               sqliteCode: SQLiteResultCode(rawValue: reported), sqliteMessage: text,
                               systemErrno: systemErrno == 0 ? nil : systemErrno)
        if error.isDamage { damageLatch?.report(error) }
        return error
    }

    /// Runs one or more SQL statements with no parameters and no results wanted.
    ///
    /// The corresponding C function is `sqlite3_exec`.
    func execute(_ sql: String, operation: String) throws(StoreError) {
        guard let handle else { throw Self.closedError(operation) }
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw error(rc, operation: operation) }
    }

    /// Runs `body` with the cached prepared statement for `sql`, then resets it and clears
    /// its bindings so no read transaction stays open (an un-reset statement would pin the
    /// WAL and stop checkpoints).
    ///
    /// The corresponding C functions are `sqlite3_prepare_v3`, `sqlite3_reset` and
    /// `sqlite3_clear_bindings`.
    func withStatement<R>(_ sql: String, operation: String,
                          _ body: (Statement) throws(StoreError) -> R) throws(StoreError) -> R {
        guard let handle else { throw Self.closedError(operation) }
        let statement: OpaquePointer
        if let cached = cache[sql] {
            statement = cached
        } else {
            var prepared: OpaquePointer?
            let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &prepared, nil)
            guard rc == SQLITE_OK, let prepared else { throw error(rc, operation: operation) }
            cache[sql] = prepared
            statement = prepared
        }
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        return try body(Statement(pointer: statement, connection: self, operation: operation))
    }

    /// Rows changed by the most recent INSERT, UPDATE or DELETE.
    ///
    /// The corresponding C function is `sqlite3_changes64`.
    var changes: Int64 { handle.map { sqlite3_changes64($0) } ?? 0 }

    /// The rowid of the most recent successful INSERT on this connection.
    ///
    /// The corresponding C function is `sqlite3_last_insert_rowid`.
    var lastInsertRowID: Int64 { handle.map { sqlite3_last_insert_rowid($0) } ?? 0 }

    /// The value of a pragma that returns one row, as text (nil when it returns no row).
    func pragma(_ statement: String, operation: String) throws(StoreError) -> String? {
        try withStatement("PRAGMA \(statement)", operation: operation) { (s) throws(StoreError) in
            try s.step() ? s.text(0) : nil
        }
    }

    static func closedError(_ operation: String) -> StoreError {
        StoreError(code: .closed, message: "the store is closed", operation: operation)
    }
}

/// A prepared statement borrowed from a connection's cache for the length of one
/// `withStatement` call. Parameter and column indexes follow SQLite: parameters from 1,
/// columns from 0.
struct Statement {
    let pointer: OpaquePointer
    unowned let connection: SQLiteConnection
    let operation: String

    private func check(_ rc: Int32) throws(StoreError) {
        guard rc == SQLITE_OK else { throw connection.error(rc, operation: operation) }
    }

    /// The corresponding C function is `sqlite3_bind_int64`.
    func bind(_ index: Int32, _ value: Int64) throws(StoreError) {
        try check(sqlite3_bind_int64(pointer, index, value))
    }

    /// Binds a double. NaN is bound as NULL: SQLite turns NaN into NULL anyway, and saying
    /// so here lets the schema allow it on purpose (see the `readings.value` column).
    ///
    /// The corresponding C functions are `sqlite3_bind_double` and `sqlite3_bind_null`.
    func bind(_ index: Int32, _ value: Double) throws(StoreError) {
        try check(value.isNaN ? sqlite3_bind_null(pointer, index) : sqlite3_bind_double(pointer, index, value))
    }

    /// Binds text with an explicit length (so embedded NULs survive), copied by SQLite.
    ///
    /// The corresponding C function is `sqlite3_bind_text` with `SQLITE_TRANSIENT`, through
    /// the shim `vigil_sqlite3_bind_text_transient`.
    func bind(_ index: Int32, _ value: String) throws(StoreError) {
        let length = value.utf8.count
        guard length <= Int(Int32.max) else {
            throw StoreError(code: .invalidArgument, message: "text parameter \(index) is too long", operation: operation)
        }
        // withCString never passes a null pointer, so empty text stays text, not NULL.
        let rc = value.withCString { vigil_sqlite3_bind_text_transient(pointer, index, $0, Int32(length)) }
        try check(rc)
    }

    /// The corresponding C functions are `sqlite3_bind_blob` (via the shim
    /// `vigil_sqlite3_bind_blob_transient`) and `sqlite3_bind_zeroblob` for an empty blob.
    func bind(_ index: Int32, _ value: [UInt8]) throws(StoreError) {
        guard value.count <= Int(Int32.max) else {
            throw StoreError(code: .invalidArgument, message: "blob parameter \(index) is too long", operation: operation)
        }
        let rc: Int32 = value.withUnsafeBytes { raw in
            guard let base = raw.baseAddress, raw.count > 0 else { return sqlite3_bind_zeroblob(pointer, index, 0) }
            return vigil_sqlite3_bind_blob_transient(pointer, index, base, Int32(raw.count))
        }
        try check(rc)
    }

    /// The corresponding C function is `sqlite3_bind_null`.
    func bindNull(_ index: Int32) throws(StoreError) {
        try check(sqlite3_bind_null(pointer, index))
    }

    /// Steps once: true when a row is available, false when the statement is done.
    ///
    /// The corresponding C function is `sqlite3_step`.
    func step() throws(StoreError) -> Bool {
        let rc = sqlite3_step(pointer)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        throw connection.error(rc, operation: operation)
    }

    /// Steps a statement that returns no rows.
    func run() throws(StoreError) {
        while try step() {}
    }

    /// The corresponding C function is `sqlite3_column_type`.
    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(pointer, column) == SQLITE_NULL }

    /// The corresponding C function is `sqlite3_column_int64`.
    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(pointer, column) }

    /// The corresponding C function is `sqlite3_column_double`.
    func double(_ column: Int32) -> Double { sqlite3_column_double(pointer, column) }

    /// The corresponding C functions are `sqlite3_column_text` and `sqlite3_column_bytes`.
    func text(_ column: Int32) -> String {
        guard let bytes = sqlite3_column_text(pointer, column) else { return "" }
        let count = Int(sqlite3_column_bytes(pointer, column))
        return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    }

    /// The corresponding C functions are `sqlite3_column_blob` and `sqlite3_column_bytes`.
    func blob(_ column: Int32) -> [UInt8] {
        guard let bytes = sqlite3_column_blob(pointer, column) else { return [] }
        let count = Int(sqlite3_column_bytes(pointer, column))
        return Array(UnsafeRawBufferPointer(start: bytes, count: count))
    }
}
