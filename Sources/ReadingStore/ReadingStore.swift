import CSQLite
import Glibc
public import Logging
import Synchronization
public import VitalSigns

/// How a store is opened.
public struct StoreOptions: Sendable {
    /// The database file. Its `-wal` and `-shm` companions live next to it. The directory
    /// must exist (systemd's `StateDirectory` creates `/var/lib/vigil/`).
    public var path: String
    /// Most readings kept (delivered and undelivered together). Default 10 368 000:
    /// 30 days × 1 reading/s × 4 devices.
    public var capacityReadings: Int
    /// Extra fraction of capacity evicted when eviction runs (0.01 = 1 %), so commits at the
    /// limit do not each evict a handful of rows.
    public var evictionHeadroom: Double
    /// Most readings one commit evicts beyond twice what it inserted, so one commit never
    /// stalls for long (for example after capacity was lowered).
    public var evictionChunk: Int
    /// How long the writer waits after the first queued request before starting a
    /// transaction, to collect more. Zero (the default) means "whatever queued while the
    /// previous transaction was syncing", which already batches under load and adds no
    /// latency when idle.
    public var groupCommitWindow: Duration
    /// `PRAGMA busy_timeout`, in milliseconds: how long a connection waits on a lock held by
    /// another process (for example `sqlite3` opened by a technician) before failing.
    public var busyTimeoutMilliseconds: Int
    /// The wall clock, for migration and data-loss timestamps. Injectable for tests.
    public var clock: @Sendable () -> Timestamp
    /// Page cache per connection, in KiB (`PRAGMA cache_size = -N`). Default 512.
    public var cacheKiBPerConnection: Int = 512
    /// Size of the reserve file kept beside the database (`reservePath`), released when a
    /// write fails because the disk is full so the store has room to make room (docs/faults.md,
    /// "Disk full"). 0 (the default here; vigild's is `outbox.disk_reserve_kib`) keeps none:
    /// a full disk is then still handled, but a checkpoint that must grow the file can fail.
    public var diskReserveBytes: Int = 0
    /// `<path>.reserve`.
    public var reservePath: String { path + ".reserve" }

    public init(path: String, capacityReadings: Int = 10_368_000, evictionHeadroom: Double = 0.01,
                evictionChunk: Int = 10_000, groupCommitWindow: Duration = .zero,
                busyTimeoutMilliseconds: Int = 5_000,
                clock: @escaping @Sendable () -> Timestamp = StoreOptions.systemClock) {
        self.path = path
        self.capacityReadings = capacityReadings
        self.evictionHeadroom = evictionHeadroom
        self.evictionChunk = evictionChunk
        self.groupCommitWindow = groupCommitWindow
        self.busyTimeoutMilliseconds = busyTimeoutMilliseconds
        self.clock = clock
    }

    /// `clock_gettime(CLOCK_REALTIME)` in milliseconds.
    @Sendable public static func systemClock() -> Timestamp {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Timestamp(millisecondsSinceEpoch: Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000)
    }
}

/// What the daemon's status query and the control socket report. Every figure is O(1) or
/// O(devices) to obtain: counters are kept in the commit transactions, never counted.
public struct StoreStats: Sendable, Hashable {
    /// Readings stored (delivered and undelivered).
    public var totalReadings: Int64
    /// Readings waiting for the broker's PUBACK.
    public var undeliveredReadings: Int64
    /// Escalation and gateway events waiting for the broker's PUBACK.
    public var undeliveredPriority: Int64
    /// Receive time of the oldest undelivered reading (nil when none wait).
    public var oldestUndeliveredReadingReceivedAt: Timestamp?
    /// Creation time (`at`) of the oldest undelivered priority item (nil when none wait).
    public var oldestUndeliveredPriorityCreatedAt: Timestamp?
    /// Undelivered readings evicted for capacity since the database was created (data lost,
    /// each batch reported upstream as a `data_loss` event).
    public var evictedTotal: Int64
    /// Delivered readings deleted for capacity since the database was created (history, not loss).
    public var prunedDeliveredTotal: Int64
    /// Priority-lane items ever committed (escalation events and gateway events).
    public var priorityTotal: Int64
    /// Size of the database file plus its WAL, in bytes.
    public var databaseBytes: Int64
    /// The latest receive time of a reading from each device.
    public var lastReadingByDevice: [DeviceID: Timestamp]
    /// Transactions the writer committed since this store was opened.
    public var transactionsCommitted: Int64
    /// The part of `evictedTotal` evicted to make room on a full disk.
    public var evictedForSpaceTotal: Int64 = 0
    /// The part of `prunedDeliveredTotal` deleted to make room on a full disk.
    public var prunedForSpaceTotal: Int64 = 0
    /// Free space, the reserve and whether the disk is full (see `StoreSpaceStatus`).
    public var space = StoreSpaceStatus()

    public func undelivered(_ lane: OutboxLane) -> Int64 {
        lane == .priority ? undeliveredPriority : undeliveredReadings
    }
}

/// Vigil's durable store and two-lane outbox, over the system libsqlite3.
///
/// - Writes go through one dedicated writer thread with group commit: concurrent `commit`
///   calls share one transaction, and each returns only when its rows are durable
///   (`journal_mode=WAL`, `synchronous=FULL`: the WAL is fsynced at COMMIT).
/// - Reads (`pending`, `stats`, `readings(since:)`, `openEscalations`) use a second,
///   read-only connection behind a mutex. WAL lets it read while the writer syncs, so a slow
///   fsync never blocks a status query. Reads are short indexed queries and run on the
///   caller's thread.
public final class ReadingStore: OutboxSource {
    private let writer: StoreWriter
    private let reader: Mutex<SQLiteConnection>
    private let logger: Logger
    /// Internal (not private) for the query extensions in other files (Quarantine.swift).
    let clock: @Sendable () -> Timestamp
    /// The database file path.
    public let path: String
    /// The migrations this open applied, in order (empty when the schema was already current).
    public let appliedMigrations: [String]
    /// The first damage any connection of this store met (Damage.swift, `reportedDamage`).
    let damageLatch: DamageLatch

    /// Opens (creating if needed) the store, sets and verifies the pragmas, applies pending
    /// migrations and starts the writer thread. Blocking: call it during start-up, not on a
    /// hot path.
    ///
    /// - Throws: `.notADatabase` for a file that is not Vigil's SQLite database,
    ///   `.unknownSchema` for one made by a newer Vigil, `.pragmaNotApplied` when WAL or FULL
    ///   cannot be set, `.openFailed` when the file cannot be opened.
    public init(options: StoreOptions, logger: Logger) throws(StoreError) {
        self.path = options.path
        self.logger = logger
        self.clock = options.clock
        let db = try SQLiteConnection(path: options.path, readOnly: false, create: true)
        try Self.configure(db, options: options, readOnly: false)
        let applied = try Schema.migrate(db) { options.clock().millisecondsSinceEpoch }
        appliedMigrations = applied
        let counters = try Counters.load(db, operation: "open \(options.path)")
        let readConnection = try SQLiteConnection(path: options.path, readOnly: true, create: false)
        try Self.configure(readConnection, options: options, readOnly: true)
        let latch = DamageLatch()
        db.damageLatch = latch
        readConnection.damageLatch = latch
        damageLatch = latch
        reader = Mutex(readConnection)
        writer = StoreWriter(db: db, counters: counters, options: options, logger: logger)
        try writer.start()
        logger.info("store opened", metadata: [
            "store.path": "\(options.path)", "store.migrations_applied": "\(applied.count)",
            "store.readings": "\(counters.readingsTotal)", "store.undelivered": "\(counters.readingsUndelivered)",
            "store.priority_undelivered": "\(counters.priorityUndelivered)",
        ])
    }

    deinit {
        // Without an explicit close() the writer still finishes what is queued, checkpoints
        // and closes its connection; the read connection closes when the mutex is released.
        writer.requestStop()
    }

    /// Sets the pragmas durability depends on, then reads each back: a pragma SQLite does not
    /// recognise or cannot apply is silently ignored, so setting alone proves nothing.
    private static func configure(_ db: SQLiteConnection, options: StoreOptions, readOnly: Bool) throws(StoreError) {
        let operation = "configure \(options.path)"
        func require(_ name: String, _ expected: String, _ actual: String?) throws(StoreError) {
            guard actual?.lowercased() == expected else {
                throw StoreError(code: .pragmaNotApplied,
                                 message: "PRAGMA \(name) is \(actual ?? "unset"), expected \(expected); the database cannot be made durable here",
                                 operation: operation)
            }
        }
        let timeout = max(0, options.busyTimeoutMilliseconds)
        _ = try db.pragma("busy_timeout = \(timeout)", operation: operation)
        // A bounded page cache per connection (SQLite's default is 2 MB each): the gateway
        // has 512 MB in all, and the hot pages (outbox tail, counters) are few.
        let cacheKiB = max(64, options.cacheKiBPerConnection)
        _ = try db.pragma("cache_size = -\(cacheKiB)", operation: operation)
        try require("busy_timeout", "\(timeout)", try db.pragma("busy_timeout", operation: operation))
        if readOnly {
            // A read-only connection cannot change the journal mode; it must find WAL.
            try require("journal_mode", "wal", try db.pragma("journal_mode", operation: operation))
            return
        }
        // journal_mode returns the mode now in force, not an error, when WAL is refused.
        try require("journal_mode", "wal", try db.pragma("journal_mode = WAL", operation: operation))
        _ = try db.pragma("synchronous = FULL", operation: operation)
        try require("synchronous", "2", try db.pragma("synchronous", operation: operation))
        _ = try db.pragma("foreign_keys = ON", operation: operation)
        try require("foreign_keys", "1", try db.pragma("foreign_keys", operation: operation))
    }

    // MARK: Commit

    /// Makes readings, escalation events and gateway events durable in one transaction
    /// (shared with whatever else is queued), in that order. Returns once committed with
    /// `synchronous=FULL`. A reading whose ID is already stored is skipped.
    /// A round trip through the writer thread (an empty transaction: nothing is written).
    /// Returns only if the writer is alive and not wedged; the daemon's watchdog uses it.
    public func checkWriter() async throws(StoreError) {
        try await writer.submit(WriteRequest())
    }

    public func commit(readings: [Reading] = [], escalations: [Escalation] = [],
                       events: [GatewayEvent] = []) async throws(StoreError) {
        guard !(readings.isEmpty && escalations.isEmpty && events.isEmpty) else { return }
        try await writer.submit(WriteRequest(readings: readings, escalations: escalations, events: events))
    }

    /// Makes readings durable. See `commit(readings:escalations:events:)`.
    public func commit(_ readings: [Reading]) async throws(StoreError) {
        try await commit(readings: readings)
    }

    /// Makes escalation events durable: each value becomes one priority-lane event and
    /// updates the escalation's current state.
    public func commit(escalations: [Escalation]) async throws(StoreError) {
        try await commit(readings: [], escalations: escalations)
    }

    /// Makes gateway events durable in the priority lane.
    public func commit(events: [GatewayEvent]) async throws(StoreError) {
        try await commit(readings: [], events: events)
    }

    // MARK: Outbox

    /// Undelivered items of `lane` with a sequence greater than `after`, in sequence (commit)
    /// order, at most `limit`. Readings come in rowid order, which keeps each device's order.
    ///
    /// A row that cannot be decoded (a damaged payload, a vital this build does not know) must
    /// not stall the outbox for ever: it is quarantined — taken out of the outbox, kept in the
    /// database, and reported upstream as a `corrupt_row` gateway event with its lane and
    /// sequence — and the rows after it flow on.
    public func pending(lane: OutboxLane, after: Int64, limit: Int) async throws(StoreError) -> [OutboxItem] {
        let (items, corrupt) = try pendingRows(lane: lane, after: after, limit: limit, skipCorrupt: true)
        if !corrupt.isEmpty {
            try await quarantine(corrupt, lane: lane)
        }
        return items
    }

    /// Takes undecodable rows out of the outbox (marked delivered, so they leave the lane but
    /// stay in the table as evidence) and commits one `corrupt_row` event naming them.
    private func quarantine(_ rows: [(sequence: Int64, reason: String)], lane: OutboxLane) async throws(StoreError) {
        logger.error("outbox rows quarantined: they cannot be decoded", metadata: [
            "outbox.lane": "\(lane)", "rows": "\(rows.count)", "first.seq": "\(rows[0].sequence)",
        ])
        let event = GatewayEvent(
            kind: "corrupt_row", at: clock(), count: Int64(rows.count),
            detail: ["lane": "\(lane)", "sequences": rows.map { String($0.sequence) }.joined(separator: ","),
                     "reason": rows[0].reason])
        try await commit(events: [event])
        try await markDelivered(rows.map { OutboxKey(lane: lane, sequence: $0.sequence) })
    }

    /// The synchronous form of `pending(lane:after:limit:)`.
    public func pendingNow(lane: OutboxLane, after: Int64, limit: Int) throws(StoreError) -> [OutboxItem] {
        try pendingRows(lane: lane, after: after, limit: limit, skipCorrupt: false).items
    }

    private func pendingRows(lane: OutboxLane, after: Int64, limit: Int, skipCorrupt: Bool) throws(StoreError)
        -> (items: [OutboxItem], corrupt: [(sequence: Int64, reason: String)])
    {
        guard limit > 0 else { return ([], []) }
        var corrupt: [(sequence: Int64, reason: String)] = []
        let items = try read { (db) throws(StoreError) in
            switch lane {
            case .readings:
                try db.withStatement("""
                    SELECT \(Self.readingColumns) FROM readings
                    WHERE delivered = 0 AND seq > ? ORDER BY seq LIMIT ?
                    """, operation: "pending readings") { (s) throws(StoreError) in
                    try s.bind(1, after)
                    try s.bind(2, Int64(limit))
                    var items: [OutboxItem] = []
                    while try s.step() {
                        do throws(StoreError) {
                            let (sequence, reading) = try Self.reading(from: s)
                            items.append(OutboxItem(key: OutboxKey(lane: .readings, sequence: sequence), payload: .reading(reading)))
                        } catch where skipCorrupt && error.code == .corruptRow {
                            corrupt.append((s.int64(0), error.message))
                        }
                    }
                    return items
                }
            case .priority:
                try db.withStatement("""
                    SELECT seq, kind, payload FROM priority_outbox
                    WHERE delivered = 0 AND seq > ? ORDER BY seq LIMIT ?
                    """, operation: "pending priority") { (s) throws(StoreError) in
                    try s.bind(1, after)
                    try s.bind(2, Int64(limit))
                    var items: [OutboxItem] = []
                    while try s.step() {
                        let sequence = s.int64(0)
                        let row = "priority_outbox seq \(sequence)"
                        do throws(StoreError) {
                            let payload: OutboxPayload = s.text(1) == "escalation"
                                ? .escalation(try PayloadCodec.decodeEscalation(s.blob(2), row: row))
                                : .event(try PayloadCodec.decodeEvent(s.blob(2), row: row))
                            items.append(OutboxItem(key: OutboxKey(lane: .priority, sequence: sequence), payload: payload))
                        } catch where skipCorrupt && error.code == .corruptRow {
                            corrupt.append((sequence, error.message))
                        }
                    }
                    return items
                }
            }
        }
        return (items, corrupt)
    }

    /// Marks items delivered (the broker's PUBACK arrived), in one transaction shared with
    /// other queued writes. Unknown or already-delivered keys are ignored.
    public func markDelivered(_ keys: [OutboxKey]) async throws(StoreError) {
        guard !keys.isEmpty else { return }
        try await writer.submit(WriteRequest(delivered: keys))
    }

    // MARK: Queries

    /// Counts, oldest waiting items, size and per-device last reading time. O(devices).
    public func stats() throws(StoreError) -> StoreStats {
        let transactions = writer.transactionsCommitted.load(ordering: .relaxed)
        var stats = try read { (db) throws(StoreError) -> StoreStats in
            // One read transaction, so every figure comes from the same snapshot.
            try db.execute("BEGIN", operation: "stats")
            defer { try? db.execute("COMMIT", operation: "stats") }
            let c = try Counters.load(db, operation: "stats")
            let oldestReading = try db.withStatement(
                "SELECT received_at FROM readings WHERE delivered = 0 ORDER BY seq LIMIT 1",
                operation: "stats") { (s) throws(StoreError) in
                try s.step() ? Timestamp(millisecondsSinceEpoch: s.int64(0)) : nil
            }
            let oldestPriority = try db.withStatement(
                "SELECT created_at FROM priority_outbox WHERE delivered = 0 ORDER BY seq LIMIT 1",
                operation: "stats") { (s) throws(StoreError) in
                try s.step() ? Timestamp(millisecondsSinceEpoch: s.int64(0)) : nil
            }
            let lastSeen = try db.withStatement("SELECT device, received_at FROM device_last_seen",
                                                operation: "stats") { (s) throws(StoreError) in
                var map: [DeviceID: Timestamp] = [:]
                while try s.step() { map[DeviceID(s.text(0))] = Timestamp(millisecondsSinceEpoch: s.int64(1)) }
                return map
            }
            return StoreStats(
                totalReadings: c.readingsTotal, undeliveredReadings: c.readingsUndelivered,
                undeliveredPriority: c.priorityUndelivered, oldestUndeliveredReadingReceivedAt: oldestReading,
                oldestUndeliveredPriorityCreatedAt: oldestPriority, evictedTotal: c.readingsEvictedTotal,
                prunedDeliveredTotal: c.readingsPrunedTotal, priorityTotal: c.priorityTotal, databaseBytes: 0,
                lastReadingByDevice: lastSeen, transactionsCommitted: 0,
                evictedForSpaceTotal: c.readingsEvictedForSpaceTotal, prunedForSpaceTotal: c.readingsPrunedForSpaceTotal)
        }
        stats.space = writer.spaceStatus.withLock { $0 }
        stats.databaseBytes = Self.fileSize(path) + Self.fileSize(path + "-wal")
        stats.transactionsCommitted = transactions
        return stats
    }

    /// The most recent readings measured at or after `since` (optionally for one patient),
    /// at most `limit`, oldest first: what the rules need to rebuild their state on start.
    /// When more than `limit` match, the newest `limit` are returned.
    public func readings(since: Timestamp, patient: PatientID? = nil, limit: Int) throws(StoreError) -> [Reading] {
        guard limit > 0 else { return [] }
        let filter = patient == nil ? "" : "AND patient = ?"
        let newestFirst = try read { (db) throws(StoreError) -> [Reading] in
            try db.withStatement("""
                SELECT \(Self.readingColumns) FROM readings
                WHERE measured_at >= ? \(filter) ORDER BY measured_at DESC, seq DESC LIMIT ?
                """, operation: "readings since") { (s) throws(StoreError) in
                try s.bind(1, since.millisecondsSinceEpoch)
                if let patient {
                    try s.bind(2, patient.rawValue)
                    try s.bind(3, Int64(limit))
                } else {
                    try s.bind(2, Int64(limit))
                }
                var out: [Reading] = []
                while try s.step() { out.append(try Self.reading(from: s).1) }
                return out
            }
        }
        return newestFirst.reversed()
    }

    /// The highest device record number committed for `device`, or nil when none has one: where
    /// a BLE device's RACP "report stored records" back-fill resumes (GLS v1.0.1 §4.9), so
    /// nothing is fetched twice after a reconnect. Uses the `readings_identity` index's device
    /// prefix, so it reads one device's rows only.
    public func lastDeviceSequence(device: DeviceID) throws(StoreError) -> UInt64? {
        try read { (db) throws(StoreError) -> UInt64? in
            try db.withStatement(
                "SELECT MAX(sequence) FROM readings WHERE device = ?", operation: "last device sequence"
            ) { (s) throws(StoreError) -> UInt64? in
                try s.bind(1, device.rawValue)
                guard try s.step(), !s.isNull(0) else { return nil }
                return UInt64(bitPattern: s.int64(0))
            }
        }
    }

    /// Escalations whose current state is not `resolved`, oldest episode first.
    /// The stored state of one escalation, or nil if the store has never seen its ID.
    /// Start-up uses it to tell an escalation lost to a crash from one already recorded.
    public func escalationState(id: String) throws(StoreError) -> EscalationState? {
        try read { (db) throws(StoreError) in
            try db.withStatement("SELECT state FROM escalations WHERE id = ?1", operation: "escalation state") { (s) throws(StoreError) in
                try s.bind(1, id)
                guard try s.step() else { return nil }
                return EscalationState(rawValue: s.text(0))
            }
        }
    }

    public func openEscalations() throws(StoreError) -> [Escalation] {
        try read { (db) throws(StoreError) in
            try db.withStatement("""
                SELECT id, payload FROM escalations WHERE state <> 'resolved' ORDER BY opened_at, id
                """, operation: "open escalations") { (s) throws(StoreError) in
                var out: [Escalation] = []
                var unreadable = 0
                while try s.step() {
                    // One damaged row must not stop the daemon from starting: skip it, say so.
                    do throws(StoreError) {
                        out.append(try PayloadCodec.decodeEscalation(s.blob(1), row: "escalations row"))
                    } catch where error.code == .corruptRow {
                        unreadable += 1
                    }
                }
                if unreadable > 0 {
                    logger.error("open escalations skipped: their stored rows cannot be decoded", metadata: ["rows": "\(unreadable)"])
                }
                return out
            }
        }
    }

    /// Finishes queued writes, checkpoints the WAL into the database file (so the `-wal` file
    /// is truncated) and closes both connections. Later calls fail with `.closed`.
    public func close() async {
        reader.withLock { $0.close() }
        await writer.stop()
    }

    /// Free space, the reserve and whether the disk is full, without touching the database.
    public var space: StoreSpaceStatus { writer.spaceStatus.withLock { $0 } }

    // MARK: Helpers

    /// Runs `body` on the writer thread with the write connection (tests, diagnostics).
    func withWriteConnection<R: Sendable>(
        _ body: @escaping @Sendable (SQLiteConnection) throws(StoreError) -> R
    ) async throws(StoreError) -> R {
        try await writer.withConnection(body)
    }

    /// Submits a write request to the writer thread, for the extensions in other files.
    func writerSubmit(_ request: WriteRequest) async throws(StoreError) {
        try await writer.submit(request)
    }

    /// A read on the read-only connection, for the query extensions in other files.
    func readQuery<R: Sendable>(_ body: (SQLiteConnection) throws(StoreError) -> R) throws(StoreError) -> R {
        try read(body)
    }

    private func read<R: Sendable>(_ body: (SQLiteConnection) throws(StoreError) -> R) throws(StoreError) -> R {
        try reader.withLock { (db) throws(StoreError) -> R in try body(db) }
    }

    private static let readingColumns =
        "seq, reading_id, patient, device, vital, value, unit, measured_at, received_at, flags, sequence"

    private static func reading(from s: Statement) throws(StoreError) -> (Int64, Reading) {
        let sequence = s.int64(0)
        let key = s.text(4)
        guard let vital = Vital.named(key) else {
            throw StoreError(code: .corruptRow,
                             message: "readings seq \(sequence): unknown vital key '\(key)'; written by a different Vigil?",
                             operation: "read reading")
        }
        let reading = Reading(
            id: ReadingID(rawValue: s.text(1)), patient: PatientID(s.text(2)), device: DeviceID(s.text(3)),
            vital: vital, quantity: Quantity(s.isNull(5) ? .nan : s.double(5), s.text(6)),
            measuredAt: Timestamp(millisecondsSinceEpoch: s.int64(7)),
            receivedAt: Timestamp(millisecondsSinceEpoch: s.int64(8)),
            flags: QualityFlags(rawValue: UInt32(truncatingIfNeeded: s.int64(9))),
            sequence: s.isNull(10) ? nil : UInt64(bitPattern: s.int64(10)))
        return (sequence, reading)
    }

    /// Size of a file in bytes, 0 when it does not exist. The corresponding C function is `stat`.
    private static func fileSize(_ path: String) -> Int64 {
        var info = Glibc.stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : 0
    }
}
