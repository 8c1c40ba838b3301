import Synchronization
public import VitalSigns

/// The downlink's durable state (migration `0004-downlink`): the ids of commands already
/// received, for the replay guard, and the re-queue of readings for `resend`.
enum DownlinkSchema {
    static let migration = Migration(name: "0004-downlink", sql: """
        -- Every downlink command id received with a valid envelope, whatever its outcome, so a
        -- replayed id (a QoS 1 duplicate, or an attacker's copy) is answered `replayed` and
        -- never applied twice. Times are milliseconds since 1970-01-01T00:00:00Z. Rows whose
        -- issued_at lies beyond the replay window are pruned: such a copy is refused as stale.
        CREATE TABLE downlink_commands (
            id TEXT PRIMARY KEY,
            command TEXT NOT NULL,
            issued_at INTEGER NOT NULL,
            received_at INTEGER NOT NULL,
            outcome TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX downlink_commands_issued ON downlink_commands(issued_at);
        """)
}

/// One received command, as the replay guard remembers it. No arguments are kept: they may
/// carry patient data.
public struct DownlinkCommandRecord: Sendable, Hashable {
    /// The command id (1–64 characters `[A-Za-z0-9._:-]`).
    public var id: String
    /// The command name (`ack`, `care-plan`, …).
    public var command: String
    public var issuedAt: Timestamp
    public var receivedAt: Timestamp
    /// `ok`, or the refusal's error code.
    public var outcome: String

    public init(id: String, command: String, issuedAt: Timestamp, receivedAt: Timestamp, outcome: String) {
        self.id = id
        self.command = command
        self.issuedAt = issuedAt
        self.receivedAt = receivedAt
        self.outcome = outcome
    }
}

/// What a `resend` did.
public struct ResendOutcome: Sendable, Hashable {
    /// Delivered readings in the range marked undelivered again (moved to the outbox tail).
    public var requeued: Int64
    /// Readings in the range that were still waiting in the outbox anyway.
    public var alreadyPending: Int64
    /// Whether more delivered readings matched than the limit allowed.
    public var truncated: Bool
    /// Whether part of the range may have been pruned or evicted already: the store has
    /// deleted readings before, and its oldest stored reading is later than the range start.
    public var rangePartlyPruned: Bool
}

extension ReadingStore {
    /// The record of a command with this id received before (and not yet pruned), or nil.
    public func downlinkCommand(id: String) throws(StoreError) -> DownlinkCommandRecord? {
        try readQuery { (db) throws(StoreError) in
            try db.withStatement("""
                SELECT id, command, issued_at, received_at, outcome FROM downlink_commands WHERE id = ?1
                """, operation: "downlink: seen id") { (s) throws(StoreError) -> DownlinkCommandRecord? in
                try s.bind(1, id)
                guard try s.step() else { return nil }
                return DownlinkCommandRecord(
                    id: s.text(0), command: s.text(1), issuedAt: Timestamp(millisecondsSinceEpoch: s.int64(2)),
                    receivedAt: Timestamp(millisecondsSinceEpoch: s.int64(3)), outcome: s.text(4))
            }
        }
    }

    /// Records a received command in one transaction with its effect (`escalations`, `events`,
    /// e.g. an acknowledgement and its forwarded state), and prunes records issued before
    /// `pruneIssuedBefore`. Throws `.sqlite` (a constraint failure) when the id is already
    /// recorded: then nothing of the transaction is applied.
    public func recordDownlinkCommand(_ record: DownlinkCommandRecord, escalations: [Escalation] = [],
                                      events: [GatewayEvent] = [], pruneIssuedBefore: Timestamp) async throws(StoreError) {
        var request = WriteRequest(escalations: escalations, events: events)
        request.steps = [Self.recordStep(record, pruneIssuedBefore: pruneIssuedBefore)]
        try await writerSubmit(request)
    }

    /// Re-sends readings: every reading measured in `[from, to)` (of `device` and `patient` when
    /// given) that was delivered is marked undelivered again and moved to the tail of the
    /// readings lane, in its original order, at most `limit` of them. Nothing is deleted and
    /// reading ids do not change, so consumers de-duplicate the copies. Recorded with `record`
    /// in the same transaction.
    ///
    /// Why move rather than only clear `delivered`: the forwarder reads the lane after its
    /// cursor, so a row behind the cursor would wait for the next reconnect; a row moved past
    /// the newest sequence goes out with the next batch. `sqlite_sequence` is raised with it so
    /// an evicted tail can never make a sequence number come back.
    public func resend(from: Timestamp, to: Timestamp, device: DeviceID?, patient: PatientID?, limit: Int,
                       record: DownlinkCommandRecord, pruneIssuedBefore: Timestamp) async throws(StoreError) -> ResendOutcome {
        guard limit > 0, from < to else {
            throw StoreError(code: .invalidArgument, message: "resend needs from < to and a positive limit", operation: "resend")
        }
        let box = Mutex<ResendOutcome?>(nil)
        let deviceText = device?.rawValue
        let patientText = patient?.rawValue
        let fromMs = from.millisecondsSinceEpoch, toMs = to.millisecondsSinceEpoch
        let step: WriteStep = { (db, c) throws(StoreError) in
            let filter = "measured_at >= ?1 AND measured_at < ?2 AND (?3 IS NULL OR device = ?3) AND (?4 IS NULL OR patient = ?4)"
            func bindFilter(_ s: Statement) throws(StoreError) {
                try s.bind(1, fromMs)
                try s.bind(2, toMs)
                if let deviceText { try s.bind(3, deviceText) } else { try s.bindNull(3) }
                if let patientText { try s.bind(4, patientText) } else { try s.bindNull(4) }
            }
            let pending = try db.withStatement("SELECT count(*) FROM readings WHERE delivered = 0 AND \(filter)",
                                               operation: "resend: count pending") { (s) throws(StoreError) in
                try bindFilter(s)
                _ = try s.step()
                return s.int64(0)
            }
            // The selection, in lane order: its first sequence and size (one more than the
            // limit tells whether it was cut).
            let (first, count) = try db.withStatement("""
                SELECT min(seq), count(*) FROM (SELECT seq FROM readings WHERE delivered = 1 AND \(filter) ORDER BY seq LIMIT ?5)
                """, operation: "resend: select") { (s) throws(StoreError) in
                try bindFilter(s)
                try s.bind(5, Int64(limit) + 1)
                _ = try s.step()
                return (s.isNull(0) ? 0 : s.int64(0), s.int64(1))
            }
            var moved: Int64 = 0
            if count > 0 {
                let top = try db.withStatement("""
                    SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'readings'), 0),
                               coalesce((SELECT max(seq) FROM readings), 0))
                    """, operation: "resend: newest sequence") { (s) throws(StoreError) in
                    _ = try s.step()
                    return s.int64(0)
                }
                // Every selected row moves by the same offset past the newest sequence, so
                // none collides with an existing row and their order is kept.
                try db.withStatement("""
                    UPDATE readings SET seq = seq + ?6, delivered = 0 WHERE seq IN
                        (SELECT seq FROM readings WHERE delivered = 1 AND \(filter) ORDER BY seq LIMIT ?5)
                    """, operation: "resend: re-queue") { (s) throws(StoreError) in
                    try bindFilter(s)
                    try s.bind(5, Int64(limit))
                    try s.bind(6, top - first + 1)
                    try s.run()
                }
                moved = db.changes
                try db.execute("""
                    UPDATE sqlite_sequence SET seq = max(seq, (SELECT max(seq) FROM readings)) WHERE name = 'readings'
                    """, operation: "resend: raise sequence")
                c.readingsUndelivered += moved
            }
            let oldest = try db.withStatement("SELECT min(measured_at) FROM readings", operation: "resend: oldest") {
                (s) throws(StoreError) -> Int64? in
                _ = try s.step()
                return s.isNull(0) ? nil : s.int64(0)
            }
            let deletedBefore = c.readingsPrunedTotal + c.readingsEvictedTotal > 0
            let partly = deletedBefore && (oldest.map { $0 > fromMs } ?? true)
            box.withLock { $0 = ResendOutcome(requeued: moved, alreadyPending: pending, truncated: count > Int64(limit),
                                              rangePartlyPruned: partly) }
        }
        var request = WriteRequest()
        request.steps = [step, Self.recordStep(record, pruneIssuedBefore: pruneIssuedBefore)]
        try await writerSubmit(request)
        guard let outcome = box.withLock({ $0 }) else {
            throw StoreError(code: .invalidArgument, message: "resend step did not run", operation: "resend")
        }
        return outcome
    }

    /// The stored ids, newest first (tests, diagnostics).
    public func downlinkCommandRecords(limit: Int = 100) throws(StoreError) -> [DownlinkCommandRecord] {
        try readQuery { (db) throws(StoreError) in
            try db.withStatement("""
                SELECT id, command, issued_at, received_at, outcome FROM downlink_commands
                ORDER BY received_at DESC, id LIMIT ?1
                """, operation: "downlink: records") { (s) throws(StoreError) in
                try s.bind(1, Int64(max(0, limit)))
                var out: [DownlinkCommandRecord] = []
                while try s.step() {
                    out.append(DownlinkCommandRecord(
                        id: s.text(0), command: s.text(1), issuedAt: Timestamp(millisecondsSinceEpoch: s.int64(2)),
                        receivedAt: Timestamp(millisecondsSinceEpoch: s.int64(3)), outcome: s.text(4)))
                }
                return out
            }
        }
    }

    private static func recordStep(_ r: DownlinkCommandRecord, pruneIssuedBefore: Timestamp) -> WriteStep {
        { (db, _) throws(StoreError) in
            try db.withStatement("DELETE FROM downlink_commands WHERE issued_at < ?1", operation: "downlink: prune ids") {
                (s) throws(StoreError) in
                try s.bind(1, pruneIssuedBefore.millisecondsSinceEpoch)
                try s.run()
            }
            try db.withStatement("""
                INSERT INTO downlink_commands (id, command, issued_at, received_at, outcome) VALUES (?1, ?2, ?3, ?4, ?5)
                """, operation: "downlink: record id") { (s) throws(StoreError) in
                try s.bind(1, r.id)
                try s.bind(2, r.command)
                try s.bind(3, r.issuedAt.millisecondsSinceEpoch)
                try s.bind(4, r.receivedAt.millisecondsSinceEpoch)
                try s.bind(5, r.outcome)
                try s.run()
            }
        }
    }
}
