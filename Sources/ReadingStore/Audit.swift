public import VitalSigns

/// One access to patient data through the control socket (issue 7, access control): who,
/// when, what and for which patients. Append-only in table `audit_log` (HIPAA §164.312(b)
/// "audit controls": record and examine activity in systems that contain health information).
public struct AuditRecord: Sendable, Hashable {
    /// Position in the log (assigned by the store; 0 before it is written).
    public var sequence: Int64
    /// When the command ran (wall clock, milliseconds since the epoch).
    public var at: Timestamp
    /// The caller's user ID and name (`#<uid>` when the name is unknown), from SO_PEERCRED.
    public var uid: UInt32
    public var user: String
    /// The caller's process ID at connect().
    public var pid: Int32
    /// The role the caller was granted: `member` or `admin`.
    public var role: String
    /// The control command's name.
    public var command: String
    /// The names of the request's arguments, never their values (a value can be a patient ID
    /// or a reading).
    public var arguments: [String]
    /// The patients whose data the reply showed (empty when it showed none).
    public var patients: [PatientID]
    /// Whether the command answered with data (`true`) or failed (`false`).
    public var succeeded: Bool

    public init(sequence: Int64 = 0, at: Timestamp, uid: UInt32, user: String, pid: Int32, role: String,
                command: String, arguments: [String], patients: [PatientID], succeeded: Bool) {
        self.sequence = sequence
        self.at = at
        self.uid = uid
        self.user = user
        self.pid = pid
        self.role = role
        self.command = command
        self.arguments = arguments
        self.patients = patients
        self.succeeded = succeeded
    }
}

extension Schema {
    /// Migration "0005-audit": the append-only audit log, and the index the technician views
    /// (`vigilctl readings --vital`) use to find one vital's recent readings without scanning
    /// the year. The triggers make the table append-only for every client of the file,
    /// `sqlite3` included (SQLite "CREATE TRIGGER", RAISE(ABORT)).
    static let auditMigration = Migration(name: "0005-audit", sql: """
        CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            at INTEGER NOT NULL,
            uid INTEGER NOT NULL,
            user TEXT NOT NULL,
            pid INTEGER NOT NULL,
            role TEXT NOT NULL,
            command TEXT NOT NULL,
            arguments TEXT NOT NULL,
            patients TEXT NOT NULL,
            succeeded INTEGER NOT NULL CHECK (succeeded IN (0, 1))
        );
        CREATE INDEX audit_log_at ON audit_log(at);
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: records cannot be changed'); END;
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: records cannot be deleted'); END;
        CREATE INDEX readings_vital ON readings(vital, measured_at);
        """)
}

extension ReadingStore {
    /// Appends one audit record durably (its own `synchronous=FULL` transaction on the writer
    /// thread) and returns its sequence. The caller must not show the data when this throws.
    @discardableResult
    public func appendAudit(_ record: AuditRecord) async throws(StoreError) -> Int64 {
        let patients = JSONValue.array(record.patients.map { .string($0.rawValue) }).serialized
        let arguments = JSONValue.array(record.arguments.map { .string($0) }).serialized
        return try await withWriteConnection { (db) throws(StoreError) -> Int64 in
            try db.withStatement("""
                INSERT INTO audit_log (at, uid, user, pid, role, command, arguments, patients, succeeded)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq
                """, operation: "append audit record") { (s) throws(StoreError) -> Int64 in
                try s.bind(1, record.at.millisecondsSinceEpoch)
                try s.bind(2, Int64(record.uid))
                try s.bind(3, record.user)
                try s.bind(4, Int64(record.pid))
                try s.bind(5, record.role)
                try s.bind(6, record.command)
                try s.bind(7, arguments)
                try s.bind(8, patients)
                try s.bind(9, Int64(record.succeeded ? 1 : 0))
                guard try s.step() else {
                    throw StoreError(code: .sqlite, message: "the insert returned no sequence", operation: "append audit record")
                }
                let seq = s.int64(0)
                // Finish the statement so the autocommit transaction commits now.
                while try s.step() {}
                return seq
            }
        }
    }

    /// Audit records at or after `since` (all when nil), newest `limit` of them, oldest first.
    /// Uses the `audit_log_at` index (or the rowid when unfiltered).
    public func auditRecords(since: Timestamp? = nil, limit: Int) throws(StoreError) -> [AuditRecord] {
        guard limit > 0 else { return [] }
        let newestFirst = try readQuery { (db) throws(StoreError) -> [AuditRecord] in
            try db.withStatement("""
                SELECT seq, at, uid, user, pid, role, command, arguments, patients, succeeded FROM audit_log
                WHERE at >= ? ORDER BY seq DESC LIMIT ?
                """, operation: "audit records") { (s) throws(StoreError) in
                try s.bind(1, since?.millisecondsSinceEpoch ?? Int64.min)
                try s.bind(2, Int64(limit))
                var out: [AuditRecord] = []
                while try s.step() {
                    func strings(_ column: Int32) -> [String] {
                        ((try? JSONValue.parse(s.text(column)))?.arrayValue ?? []).compactMap(\.stringValue)
                    }
                    out.append(AuditRecord(
                        sequence: s.int64(0), at: Timestamp(millisecondsSinceEpoch: s.int64(1)),
                        uid: UInt32(truncatingIfNeeded: s.int64(2)), user: s.text(3), pid: Int32(truncatingIfNeeded: s.int64(4)),
                        role: s.text(5), command: s.text(6), arguments: strings(7), patients: strings(8).map { PatientID($0) },
                        succeeded: s.int64(9) == 1))
                }
                return out
            }
        }
        return newestFirst.reversed()
    }

    /// Runs one SQL statement on the write connection: for tests that prove the audit log
    /// refuses UPDATE and DELETE. Not for production use.
    public func executeForTesting(_ sql: String) async throws(StoreError) {
        try await withWriteConnection { (db) throws(StoreError) in try db.execute(sql, operation: "test statement") }
    }
}
