import Glibc
import Logging
import Synchronization
import VitalSigns

/// What one caller asked to make durable, in order: readings, then escalations, then events,
/// then delivery marks.
struct WriteRequest: Sendable {
    var readings: [Reading] = []
    var escalations: [Escalation] = []
    var events: [GatewayEvent] = []
    var delivered: [OutboxKey] = []
    /// Further statements for the same transaction, run after the rows above (the downlink's
    /// command records and re-queues): each sees the write connection and may adjust counters.
    var steps: [WriteStep] = []
}

/// One extra step of a write transaction (see `WriteRequest.steps`). Throwing rolls back the
/// whole transaction.
typealias WriteStep = @Sendable (SQLiteConnection, inout Counters) throws(StoreError) -> Void

/// The counters table, mirrored in memory on the writer thread.
struct Counters: Equatable, Sendable {
    var readingsTotal: Int64 = 0
    var readingsUndelivered: Int64 = 0
    /// Undelivered readings evicted for capacity (lost data, reported as `data_loss`).
    var readingsEvictedTotal: Int64 = 0
    /// Delivered readings deleted for capacity (history, not data loss).
    var readingsPrunedTotal: Int64 = 0
    var priorityTotal: Int64 = 0
    var priorityUndelivered: Int64 = 0
    /// The part of `readingsEvictedTotal` evicted to make room on a full disk.
    var readingsEvictedForSpaceTotal: Int64 = 0
    /// The part of `readingsPrunedTotal` deleted to make room on a full disk.
    var readingsPrunedForSpaceTotal: Int64 = 0

    /// The rows of the `counters` table. A name missing from the table (a counter added after
    /// the database was created) reads as 0 and is inserted by the first commit that moves it.
    static var names: [(String, WritableKeyPath<Counters, Int64>)] {[
        ("readings_total", \.readingsTotal), ("readings_undelivered", \.readingsUndelivered),
        ("readings_evicted_total", \.readingsEvictedTotal), ("readings_pruned_total", \.readingsPrunedTotal),
        ("priority_total", \.priorityTotal), ("priority_undelivered", \.priorityUndelivered),
        ("readings_evicted_for_space_total", \.readingsEvictedForSpaceTotal),
        ("readings_pruned_for_space_total", \.readingsPrunedForSpaceTotal),
    ]}

    static func load(_ db: SQLiteConnection, operation: String) throws(StoreError) -> Counters {
        try db.withStatement("SELECT name, value FROM counters", operation: operation) { (s) throws(StoreError) in
            var c = Counters()
            while try s.step() {
                let name = s.text(0)
                if let path = names.first(where: { $0.0 == name })?.1 { c[keyPath: path] = s.int64(1) }
            }
            return c
        }
    }
}

/// The one thread that writes: it owns the write connection and turns queued requests into
/// group-committed transactions.
///
/// Callers enqueue a request and suspend on a continuation; the thread takes everything that
/// queued (while the previous transaction was syncing, plus an optional window), applies it
/// all in ONE transaction, commits (with `synchronous=FULL` the commit returns after the WAL
/// is fsynced), and only then resumes every caller. If a shared transaction fails, each
/// request is retried alone so one bad request cannot fail its neighbours.
///
/// Why a dedicated pthread rather than a Task: a commit blocks in fsync for milliseconds,
/// and the Swift cooperative pool has only two threads here.
///
/// A full disk (see "Disk space" below and docs/faults.md) is handled here too: the writer
/// keeps a reserve file beside the database, releases it at the first `SQLITE_FULL`, makes
/// room in the capacity eviction order and retries the transaction once.
final class StoreWriter: @unchecked Sendable {
    // Safety: this is the only @unchecked Sendable type in the store. Its invariant:
    //  - `queue`, `stopRequested`, `closeWaiters` and `exited` are read and written only with
    //    `mutex` locked;
    //  - `db`, `counters` and everything else `var` is touched only by the writer thread once
    //    `start()` has launched it (before that only by `init`, on the creating thread, which
    //    hands them over by starting the thread; pthread_create is a memory barrier);
    //  - `transactionsCommitted` and `spaceStatus` are atomic / behind their own mutex; the
    //    remaining `let`s are immutable and Sendable.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var queue: [(WriteRequest, CheckedContinuation<Result<Void, StoreError>, Never>)] = []
    private var stopRequested = false
    private var exited = false
    private var closeWaiters: [CheckedContinuation<Void, Never>] = []
    /// Work to run on the writer thread between transactions (diagnostics, tests).
    private var tasks: [@Sendable (SQLiteConnection) -> Void] = []

    private let db: SQLiteConnection
    private var counters: Counters
    private let options: StoreOptions
    private let logger: Logger
    /// Transactions committed since this store was opened (for tests and diagnostics).
    let transactionsCommitted = Atomic<Int64>(0)

    // Disk space (writer thread only, published to `spaceStatus` after each change).
    private var space = StoreSpaceStatus()
    /// A copy of `space` for status queries from other threads.
    let spaceStatus: Mutex<StoreSpaceStatus>
    private let directory: String
    private var pageSize: Int64 = 4096
    /// The connection's own `wal_autocheckpoint` (pages) and `journal_size_limit` (bytes),
    /// restored when space is no longer low.
    private var walDefaults: (autocheckpoint: Int64, journalSizeLimit: Int64) = (1000, -1)
    /// CLOCK_MONOTONIC nanoseconds of the last free-space check and the last room-making.
    private var lastSpaceCheck: Int64 = .min
    private var lastMadeRoom: Int64 = .min

    init(db: SQLiteConnection, counters: Counters, options: StoreOptions, logger: Logger) {
        self.db = db
        self.counters = counters
        self.options = options
        self.logger = logger
        directory = DiskSpace.directory(of: options.path)
        space.reservePath = options.reservePath
        space.reserveBytes = Int64(max(0, options.diskReserveBytes))
        spaceStatus = Mutex(space)
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        // A monotonic clock for the group-commit window: wall-clock steps must not stretch it.
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Launches the writer thread. The thread keeps the writer alive until it exits.
    ///
    /// The corresponding C functions are `pthread_create` and `pthread_detach`.
    func start() throws(StoreError) {
        let context = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            let writer = Unmanaged<StoreWriter>.fromOpaque(raw).takeRetainedValue()
            writer.run()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<StoreWriter>.fromOpaque(context).release()
            throw StoreError(code: .threadFailed, message: "pthread_create failed with errno \(rc)",
                             operation: "start writer thread")
        }
        pthread_detach(thread)
    }

    private func lock() { pthread_mutex_lock(mutex) }
    private func unlock() { pthread_mutex_unlock(mutex) }

    /// Queues a request and returns once it is durable (or failed).
    func submit(_ request: WriteRequest) async throws(StoreError) {
        let result: Result<Void, StoreError> = await withCheckedContinuation { continuation in
            lock()
            if stopRequested {
                unlock()
                continuation.resume(returning: .failure(SQLiteConnection.closedError("commit")))
                return
            }
            queue.append((request, continuation))
            pthread_cond_signal(condition)
            unlock()
        }
        try result.get()
    }

    /// Runs `body` on the writer thread with the write connection, between transactions.
    /// For diagnostics and tests (for example reading the connection's own pragmas).
    func withConnection<R: Sendable>(
        _ body: @escaping @Sendable (SQLiteConnection) throws(StoreError) -> R
    ) async throws(StoreError) -> R {
        let result: Result<R, StoreError> = await withCheckedContinuation { continuation in
            lock()
            if stopRequested {
                unlock()
                continuation.resume(returning: .failure(SQLiteConnection.closedError("inspect")))
                return
            }
            tasks.append { db in
                do throws(StoreError) {
                    continuation.resume(returning: .success(try body(db)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            pthread_cond_signal(condition)
            unlock()
        }
        return try result.get()
    }

    /// Asks the thread to finish what is queued, checkpoint, close the connection and exit.
    /// Does not wait; used from `deinit`.
    func requestStop() {
        lock()
        stopRequested = true
        pthread_cond_signal(condition)
        unlock()
    }

    /// Stops the thread and waits until the connection is closed.
    func stop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            lock()
            stopRequested = true
            if exited {
                unlock()
                continuation.resume()
                return
            }
            closeWaiters.append(continuation)
            pthread_cond_signal(condition)
            unlock()
        }
    }

    // MARK: The writer thread

    private func run() {
        prepareSpace()
        while let (batch, tasks) = nextBatch() {
            if !batch.isEmpty { process(batch) }
            for task in tasks { task(db) }
            checkSpaceIfDue()
        }
        shutdown()
    }

    /// Waits for work, then lets the group-commit window collect more.
    private func nextBatch() -> ([(WriteRequest, CheckedContinuation<Result<Void, StoreError>, Never>)],
                                 [@Sendable (SQLiteConnection) -> Void])? {
        lock()
        defer { unlock() }
        // While space is short (or the reserve is missing) the thread wakes every few seconds
        // even when idle, so status clears and the reserve comes back without a commit.
        let watch = space.full || space.lowSpace || (space.reserveBytes > 0 && !space.reserveHeld)
        if watch && queue.isEmpty && tasks.isEmpty && !stopRequested {
            var deadline = timespec()
            clock_gettime(CLOCK_MONOTONIC, &deadline)
            deadline.tv_sec += 2
            while queue.isEmpty && tasks.isEmpty && !stopRequested {
                if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT { return ([], []) }
            }
        }
        while queue.isEmpty && tasks.isEmpty && !stopRequested { pthread_cond_wait(condition, mutex) }
        if queue.isEmpty && tasks.isEmpty { return nil }
        if queue.isEmpty {
            let pendingTasks = tasks
            tasks.removeAll()
            return ([], pendingTasks)
        }
        let windowNanoseconds = Self.nanoseconds(options.groupCommitWindow)
        if windowNanoseconds > 0 && !stopRequested {
            var deadline = timespec()
            clock_gettime(CLOCK_MONOTONIC, &deadline)
            let total = Int64(deadline.tv_nsec) + windowNanoseconds
            deadline.tv_sec += Int(total / 1_000_000_000)
            deadline.tv_nsec = Int(total % 1_000_000_000)
            // pthread_cond_timedwait returns ETIMEDOUT at the deadline; other wake-ups
            // (a new request, a spurious wake-up) just wait again.
            while !stopRequested {
                if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT { break }
            }
        }
        let batch = queue
        queue.removeAll(keepingCapacity: true)
        let pendingTasks = tasks
        tasks.removeAll()
        return (batch, pendingTasks)
    }

    static func nanoseconds(_ d: Duration) -> Int64 {
        let (seconds, attoseconds) = d.components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        return min(seconds, 10) * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    private func process(_ batch: [(WriteRequest, CheckedContinuation<Result<Void, StoreError>, Never>)]) {
        let requests = batch.map(\.0)
        var result = transact(requests)
        // Out of space: make room (at most once a second) and try the same transaction once
        // more. A caller whose commit still fails retries with its own back-off.
        if case .failure(let error) = result, error.isDiskFull,
           makeRoom(inserting: Int64(requests.reduce(0) { $0 + $1.readings.count })) {
            result = transact(requests)
        }
        if case .failure = result, batch.count > 1 {
            for (request, continuation) in batch { continuation.resume(returning: transact([request])) }
        } else {
            for (_, continuation) in batch { continuation.resume(returning: result) }
        }
    }

    private func shutdown() {
        do throws(StoreError) {
            _ = try db.pragma("wal_checkpoint(TRUNCATE)", operation: "close \(db.path)")
        } catch {
            logger.warning("store checkpoint at close failed", metadata: [
                "store.path": "\(db.path)", "store.error": "\(error.code)",
                "sqlite.code": "\(error.sqliteCode?.rawValue ?? 0)",
            ])
        }
        db.close()
        logger.info("store closed", metadata: ["store.path": "\(db.path)"])
        lock()
        exited = true
        let waiters = closeWaiters
        closeWaiters.removeAll()
        unlock()
        for waiter in waiters { waiter.resume() }
    }

    /// Applies requests in one transaction. On failure nothing is applied and the in-memory
    /// counters are left as they were.
    private func transact(_ requests: [WriteRequest]) -> Result<Void, StoreError> {
        var c = counters
        do throws(StoreError) {
            try db.execute("BEGIN IMMEDIATE", operation: "commit: begin")
            var inserted: Int64 = 0
            var lastSeen: [String: (received: Int64, measured: Int64)] = [:]
            for request in requests {
                for reading in request.readings {
                    if try insert(reading) {
                        inserted += 1
                        let previous = lastSeen[reading.device.rawValue]
                        lastSeen[reading.device.rawValue] = (
                            max(previous?.received ?? .min, reading.receivedAt.millisecondsSinceEpoch),
                            max(previous?.measured ?? .min, reading.measuredAt.millisecondsSinceEpoch))
                    }
                }
                for escalation in request.escalations { try insert(escalation) }
                for event in request.events { try insert(event) }
                c.priorityTotal += Int64(request.escalations.count + request.events.count)
                c.priorityUndelivered += Int64(request.escalations.count + request.events.count)
                try markDelivered(request.delivered, &c)
                for step in request.steps { try step(db, &c) }
            }
            c.readingsTotal += inserted
            c.readingsUndelivered += inserted
            try updateLastSeen(lastSeen)
            try evictIfNeeded(&c, inserted: inserted)
            if space.full { try keepRoomInFile(&c, inserted: inserted) }
            try writeCounters(from: counters, to: c)
            try db.execute("COMMIT", operation: "commit")
            counters = c
            transactionsCommitted.add(1, ordering: .relaxed)
            return .success(())
        } catch {
            // After a failed COMMIT SQLite may already have rolled back; a second ROLLBACK
            // then fails harmlessly.
            try? db.execute("ROLLBACK", operation: "commit: rollback")
            if error.isDiskFull { noteFull(error) }
            logger.error("store transaction failed", metadata: [
                "store.error": "\(error.code)", "sqlite.code": "\(error.sqliteCode?.rawValue ?? 0)",
                "store.requests": "\(requests.count)",
            ])
            return .failure(error)
        }
    }

    /// Finds an earlier copy of a reading whose device clock was not believed (``insert(_:)``).
    static let resentRecordQuery =
        "SELECT 1 FROM readings WHERE device = ? AND reading_id = ? AND (flags & 2048) != 0 LIMIT 1"

    /// Returns false when a reading with the same ID is already stored: re-committing a
    /// reading is a no-op, which makes replays and back-fill idempotent. The conflict target
    /// is the unique key (device, measured_at, reading_id), which holds the same readings as
    /// reading_id alone because the ID is derived from device and measured time (see the
    /// schema). Only that conflict is ignored (ON CONFLICT … DO NOTHING, unlike INSERT OR
    /// IGNORE, does not also swallow NOT NULL or CHECK failures).
    private func insert(_ r: Reading) throws(StoreError) -> Bool {
        // A stored record whose clock the gateway did not believe is stamped with its receive
        // time, so the unique key above cannot see it arrive again (a repeated meter download,
        // an indication re-sent after a crash). Its ID comes from what the device said, so
        // look for the ID itself — with or without a record number: a blood pressure cuff
        // numbers nothing, and without this a re-sent measurement got a second outbox row and
        // was forwarded again (docs/faults.md, kill9-ble). The earlier copy carries the same
        // flag, so the partial index of migration 0007 (the `flags & 2048` term must match it
        // for SQLite to use it) finds it without walking the device's other rows.
        if r.flags.contains(.deviceClockUnreliable) {
            var seen = false
            try db.withStatement(Self.resentRecordQuery,
                                 operation: "commit: find a re-sent record") { (s) throws(StoreError) in
                try s.bind(1, r.device.rawValue)
                try s.bind(2, r.id.rawValue)
                seen = try s.step()
            }
            if seen { return false }
        }
        try db.withStatement("""
            INSERT INTO readings (reading_id, patient, device, vital, value, unit, measured_at, received_at, flags, sequence)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, measured_at, reading_id) DO NOTHING
            """, operation: "commit: insert reading") { (s) throws(StoreError) in
            try s.bind(1, r.id.rawValue)
            try s.bind(2, r.patient.rawValue)
            try s.bind(3, r.device.rawValue)
            try s.bind(4, r.vital.key)
            try s.bind(5, r.quantity.value)
            try s.bind(6, r.quantity.unit)
            try s.bind(7, r.measuredAt.millisecondsSinceEpoch)
            try s.bind(8, r.receivedAt.millisecondsSinceEpoch)
            try s.bind(9, Int64(r.flags.rawValue))
            if let sequence = r.sequence { try s.bind(10, Int64(bitPattern: sequence)) } else { try s.bindNull(10) }
            try s.run()
        }
        guard db.changes == 1 else { return false }
        try summarize(r)
        return true
    }

    /// Adds a clean reading to its hour's summary (schema 0002-rule-state), in the same
    /// transaction as the reading, so the two can never disagree after a crash.
    private func summarize(_ r: Reading) throws(StoreError) {
        guard r.flags.isDisjoint(with: .clinicallyUnreliable), r.quantity.value.isFinite,
              r.quantity.unit == r.vital.unit, r.measuredAt.millisecondsSinceEpoch >= 0 else { return }
        let t = r.measuredAt.millisecondsSinceEpoch
        try db.withStatement("""
            INSERT INTO vital_hourly (patient, vital, hour_start, n, sum, first_value, first_at, last_value, last_at)
            VALUES (?1, ?2, ?3, 1, ?4, ?4, ?5, ?4, ?5)
            ON CONFLICT (patient, hour_start, vital) DO UPDATE SET
                n = n + 1, sum = sum + excluded.sum,
                first_value = CASE WHEN excluded.first_at < first_at THEN excluded.first_value ELSE first_value END,
                first_at = min(first_at, excluded.first_at),
                last_value = CASE WHEN excluded.last_at >= last_at THEN excluded.last_value ELSE last_value END,
                last_at = max(last_at, excluded.last_at)
            """, operation: "commit: summarize reading") { (s) throws(StoreError) in
            try s.bind(1, r.patient.rawValue)
            try s.bind(2, r.vital.key)
            try s.bind(3, (t / 3_600_000) * 3_600_000)
            try s.bind(4, r.quantity.value)
            try s.bind(5, t)
            try s.run()
        }
    }

    private func insert(_ e: Escalation) throws(StoreError) {
        let payload = PayloadCodec.encode(e)
        try db.withStatement("""
            INSERT INTO priority_outbox (kind, escalation_id, created_at, payload) VALUES ('escalation', ?, ?, ?)
            """, operation: "commit: insert escalation event") { (s) throws(StoreError) in
            try s.bind(1, e.id)
            try s.bind(2, e.at.millisecondsSinceEpoch)
            try s.bind(3, payload)
            try s.run()
        }
        let sequence = db.lastInsertRowID
        try db.withStatement("""
            INSERT INTO escalations (id, patient, rule, severity, state, opened_at, updated_at, last_event_seq, payload)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (id) DO UPDATE SET patient = excluded.patient, rule = excluded.rule,
                severity = excluded.severity, state = excluded.state, opened_at = excluded.opened_at,
                updated_at = excluded.updated_at, last_event_seq = excluded.last_event_seq, payload = excluded.payload
            """, operation: "commit: upsert escalation") { (s) throws(StoreError) in
            try s.bind(1, e.id)
            try s.bind(2, e.patient.rawValue)
            try s.bind(3, e.rule)
            try s.bind(4, Int64(e.severity.rawValue))
            try s.bind(5, e.state.rawValue)
            try s.bind(6, e.openedAt.millisecondsSinceEpoch)
            try s.bind(7, e.at.millisecondsSinceEpoch)
            try s.bind(8, sequence)
            try s.bind(9, payload)
            try s.run()
        }
    }

    private func insert(_ event: GatewayEvent) throws(StoreError) {
        try db.withStatement("""
            INSERT INTO priority_outbox (kind, created_at, payload) VALUES ('event', ?, ?)
            """, operation: "commit: insert gateway event") { (s) throws(StoreError) in
            try s.bind(1, event.at.millisecondsSinceEpoch)
            try s.bind(2, PayloadCodec.encode(event))
            try s.run()
        }
    }

    private func markDelivered(_ keys: [OutboxKey], _ c: inout Counters) throws(StoreError) {
        for key in keys {
            switch key.lane {
            case .readings:
                try db.withStatement("UPDATE readings SET delivered = 1 WHERE seq = ? AND delivered = 0",
                                     operation: "mark delivered") { (s) throws(StoreError) in
                    try s.bind(1, key.sequence)
                    try s.run()
                }
                c.readingsUndelivered -= db.changes
            case .priority:
                try db.withStatement("UPDATE priority_outbox SET delivered = 1 WHERE seq = ? AND delivered = 0",
                                     operation: "mark delivered") { (s) throws(StoreError) in
                    try s.bind(1, key.sequence)
                    try s.run()
                }
                c.priorityUndelivered -= db.changes
            }
        }
    }

    private func updateLastSeen(_ lastSeen: [String: (received: Int64, measured: Int64)]) throws(StoreError) {
        for (device, times) in lastSeen {
            try db.withStatement("""
                INSERT INTO device_last_seen (device, received_at, measured_at) VALUES (?, ?, ?)
                ON CONFLICT (device) DO UPDATE SET received_at = max(received_at, excluded.received_at),
                    measured_at = max(measured_at, excluded.measured_at)
                """, operation: "commit: device last seen") { (s) throws(StoreError) in
                try s.bind(1, device)
                try s.bind(2, times.received)
                try s.bind(3, times.measured)
                try s.run()
            }
        }
    }

    /// Keeps the readings table within `capacityReadings`: oldest delivered rows first, then
    /// the oldest undelivered rows, which are counted and reported as one `data_loss` event
    /// in this same transaction. Escalations and events are never evicted.
    ///
    /// It evicts `evictionHeadroom` (a fraction of capacity) beyond what is needed so the next
    /// commits do not each evict a few rows, and at most `max(evictionChunk, 2 × inserted)` per
    /// commit so a lowered capacity is worked off over several commits instead of one long stall
    /// (each commit still removes more than it adds, so the table converges).
    private func evictIfNeeded(_ c: inout Counters, inserted: Int64) throws(StoreError) {
        let capacity = Int64(max(options.capacityReadings, 0))
        let excess = c.readingsTotal - capacity
        guard excess > 0 else { return }
        let headroom = Int64(Double(capacity) * max(0, min(options.evictionHeadroom, 1)))
        let bound = max(Int64(max(options.evictionChunk, 1)), 2 * inserted)
        let target = min(excess + headroom, bound, c.readingsTotal)
        let evicted = try evict(target, &c, reason: .capacity)
        if evicted > 0 {
            logger.warning("store evicted undelivered readings for capacity", metadata: [
                "store.evicted": "\(evicted)", "store.capacity": "\(capacity)",
                "store.evicted_total": "\(c.readingsEvictedTotal)",
            ])
        }
    }

    enum EvictionReason {
        /// More than `capacityReadings` readings.
        case capacity
        /// No space left on the disk (`SQLITE_FULL`).
        case diskFull

        /// The `reason` of the `data_loss` event (docs/payloads.md).
        var eventReason: String { self == .capacity ? "outbox capacity" : "disk full" }
    }

    /// Deletes up to `target` readings in the capacity order — the oldest delivered rows, then
    /// the oldest undelivered rows — in the current transaction, keeping the counters and
    /// committing one `data_loss` event for the undelivered ones. The priority lane
    /// (escalations, events) is never touched. Returns how many undelivered rows went.
    private func evict(_ target: Int64, _ c: inout Counters, reason: EvictionReason) throws(StoreError) -> Int64 {
        var target = target
        let deliveredRows = c.readingsTotal - c.readingsUndelivered
        let pruneCount = min(target, deliveredRows)
        if pruneCount > 0 {
            try db.withStatement("""
                DELETE FROM readings WHERE seq IN
                    (SELECT seq FROM readings WHERE delivered = 1 ORDER BY seq LIMIT ?)
                """, operation: "evict delivered readings") { (s) throws(StoreError) in
                try s.bind(1, pruneCount)
                try s.run()
            }
            let pruned = db.changes
            c.readingsTotal -= pruned
            c.readingsPrunedTotal += pruned
            if reason == .diskFull { c.readingsPrunedForSpaceTotal += pruned }
            target -= pruned
            logger.debug("store pruned delivered readings", metadata: ["store.pruned": "\(pruned)", "reason": "\(reason.eventReason)"])
        }
        guard target > 0, c.readingsUndelivered > 0 else { return 0 }

        let range = try db.withStatement("""
            SELECT count(*), min(received_at), max(received_at) FROM
                (SELECT received_at FROM readings WHERE delivered = 0 ORDER BY seq LIMIT ?)
            """, operation: "evict undelivered readings") { (s) throws(StoreError) in
            try s.bind(1, target)
            _ = try s.step()
            return (count: s.int64(0), first: s.int64(1), last: s.int64(2))
        }
        try db.withStatement("""
            DELETE FROM readings WHERE seq IN
                (SELECT seq FROM readings WHERE delivered = 0 ORDER BY seq LIMIT ?)
            """, operation: "evict undelivered readings") { (s) throws(StoreError) in
            try s.bind(1, target)
            try s.run()
        }
        let evicted = db.changes
        guard evicted > 0 else { return 0 }
        c.readingsTotal -= evicted
        c.readingsUndelivered -= evicted
        c.readingsEvictedTotal += evicted
        if reason == .diskFull { c.readingsEvictedForSpaceTotal += evicted }
        let event = GatewayEvent(kind: GatewayEvent.dataLoss, at: options.clock(), count: evicted, detail: [
            "first_received_at": Timestamp(millisecondsSinceEpoch: range.first).iso8601,
            "last_received_at": Timestamp(millisecondsSinceEpoch: range.last).iso8601,
            "reason": reason.eventReason,
        ])
        try insert(event)
        c.priorityTotal += 1
        c.priorityUndelivered += 1
        return evicted
    }

    private func writeCounters(from old: Counters, to new: Counters) throws(StoreError) {
        for (name, path) in Counters.names where old[keyPath: path] != new[keyPath: path] {
            try db.withStatement("""
                INSERT INTO counters (name, value) VALUES (?, ?)
                ON CONFLICT (name) DO UPDATE SET value = excluded.value
                """, operation: "commit: counters") { (s) throws(StoreError) in
                try s.bind(1, name)
                try s.bind(2, new[keyPath: path])
                try s.run()
            }
        }
    }
}

// MARK: Disk space

// Why this design (docs/faults.md, "Disk full"): with WAL, a transaction first appends its
// pages to the `-wal` file, and only a checkpoint copies them into the database file, growing
// it. So on a full disk
//  - deleting rows needs WAL space too, and the pages it frees stay inside the database file
//    (the freelist): they make room for later inserts, not on the disk;
//  - a checkpoint of a WAL holding new pages must grow the database file first, so it fails
//    on a full disk and the WAL can then never be reset: nothing can be written again until
//    space comes from outside. That is what stalled commits in the old fault runs.
// Hence: (1) a reserve file, released at the first SQLITE_FULL, gives the checkpoint the room
// to grow the file; (2) while free space is low the WAL is checkpointed every few pages, so
// what a checkpoint must grow by stays below the reserve; (3) after the checkpoint the WAL is
// truncated (its space goes back to the disk), readings are evicted in the capacity order
// until the file holds free pages for the next commits, and the transaction is retried once;
// (4) while the disk stays full every commit keeps those free pages topped up, so the file
// stops growing and the store runs in the space it has. Room is made at most once a second
// and each eviction is bounded (`evictionChunk`); callers back off between their retries.
extension StoreWriter {
    /// Bytes of free pages the database file should hold while the disk is full: what the
    /// next commits and a checkpoint need. The reserve's size, at least 64 KiB.
    private var spaceTarget: Int64 { max(space.reserveBytes, 65_536) }

    /// Pages the WAL may hold before a checkpoint while space is low: half the reserve (at
    /// least 8 pages), so a checkpoint never has to grow the file by more than the reserve.
    private var lowSpaceWALPages: Int64 {
        space.reserveBytes > 0 ? max(8, space.reserveBytes / 2 / pageSize) : 64
    }

    private static func monotonicNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }

    private func publishSpace() {
        let copy = space
        spaceStatus.withLock { $0 = copy }
    }

    /// At start, on the writer thread: the page size and WAL settings, the reserve, a first check.
    func prepareSpace() {
        let operation = "prepare disk space \(db.path)"
        pageSize = (try? db.pragma("page_size", operation: operation)).flatMap { $0.flatMap { Int64($0) } } ?? 4096
        let autocheckpoint = (try? db.pragma("wal_autocheckpoint", operation: operation)).flatMap { $0.flatMap { Int64($0) } }
        let sizeLimit = (try? db.pragma("journal_size_limit", operation: operation)).flatMap { $0.flatMap { Int64($0) } }
        walDefaults = (autocheckpoint ?? 1000, sizeLimit ?? -1)
        if space.reserveBytes > 0 {
            if DiskSpace.fileSize(space.reservePath) == space.reserveBytes {
                space.reserveHeld = true
            } else {
                // Missing, or another size (the setting changed): made again below if there is room.
                _ = DiskSpace.releaseReserve(space.reservePath)
            }
        }
        checkSpace()
        if space.reserveBytes > 0 && !space.reserveHeld {
            logger.warning("store: no room for the disk reserve; it is made once space allows", metadata: [
                "store.reserve": "\(space.reservePath)", "store.reserve_bytes": "\(space.reserveBytes)",
                "disk.free_bytes": "\(space.freeBytes ?? -1)",
            ])
        }
    }

    func checkSpaceIfDue() {
        let now = Self.monotonicNanoseconds()
        guard lastSpaceCheck == .min || now - lastSpaceCheck >= 1_000_000_000 else { return }
        checkSpace()
    }

    /// Reads the free space (statvfs) and moves between the states: low space on and off,
    /// the reserve made again, the full state cleared.
    private func checkSpace() {
        lastSpaceCheck = Self.monotonicNanoseconds()
        defer { publishSpace() }
        guard let free = DiskSpace.freeBytes(directory) else {
            space.freeBytes = nil
            return
        }
        space.freeBytes = free
        let reserve = space.reserveBytes
        // A normal WAL grows to wal_autocheckpoint pages (4 MiB by default) between checkpoints.
        let normalWAL = (walDefaults.autocheckpoint > 0 ? walDefaults.autocheckpoint : 1000) * pageSize
        let lowBelow = normalWAL + 2 * reserve + (1 << 20)
        if !space.lowSpace && free < lowBelow {
            setLowSpace(true)
        } else if space.lowSpace && !space.full && free >= 2 * lowBelow {
            setLowSpace(false)
        }
        // Space came back: room for the reserve twice over (at least 256 KiB), and 2 % of the
        // file system up to 64 MiB, so a large disk clears only with a real margin and not
        // because of the reserve and WAL the store itself released.
        let total = DiskSpace.totalBytes(directory) ?? 0
        let recovered = free >= max(2 * reserve, 256 << 10, min(total / 50, 64 << 20))
        if reserve > 0 && !space.reserveHeld && (space.full ? recovered : free >= 2 * reserve) {
            if let failure = DiskSpace.createReserve(space.reservePath, bytes: reserve) {
                logger.warning("store: cannot make the disk reserve", metadata: [
                    "store.reserve": "\(space.reservePath)", "errno": "\(failure)",
                    "error": "\(DiskSpace.errnoText(failure))",
                ])
            } else {
                space.reserveHeld = true
                space.freeBytes = free - reserve
                logger.info("store: disk reserve in place", metadata: [
                    "store.reserve": "\(space.reservePath)", "store.reserve_bytes": "\(reserve)",
                ])
            }
        }
        if space.full && recovered && (reserve == 0 || space.reserveHeld) {
            space.full = false
            space.fullSince = nil
            logger.notice("store: disk space recovered; no longer evicting for space", metadata: [
                "disk.free_bytes": "\(space.freeBytes ?? free)",
                "store.evicted_for_space_total": "\(counters.readingsEvictedForSpaceTotal)",
            ])
        }
    }

    /// Low space: checkpoint every few pages and keep the WAL file small, or back to the
    /// connection's defaults.
    private func setLowSpace(_ on: Bool) {
        guard space.lowSpace != on else { return }
        let pages = on ? lowSpaceWALPages : walDefaults.autocheckpoint
        let limit = on ? 2 * lowSpaceWALPages * pageSize : walDefaults.journalSizeLimit
        do throws(StoreError) {
            _ = try db.pragma("wal_autocheckpoint = \(pages)", operation: "low disk space: WAL checkpoints")
            _ = try db.pragma("journal_size_limit = \(limit)", operation: "low disk space: WAL size")
            space.lowSpace = on
            logger.notice(on ? "store: disk space low; checkpointing the WAL often" : "store: disk space no longer low",
                          metadata: ["disk.free_bytes": "\(space.freeBytes ?? -1)", "wal.autocheckpoint_pages": "\(pages)"])
        } catch {
            logger.warning("store: cannot change the WAL checkpoint interval", metadata: ["store.error": "\(error)"])
        }
        publishSpace()
    }

    /// Records a write that failed for lack of space; the first one starts the full state.
    func noteFull(_ error: StoreError) {
        space.fullFailures += 1
        space.lastFullError = "\(error.sqliteCode.map { "\($0)" } ?? "\(error.code)") during \(error.operation)"
        if !space.full {
            space.full = true
            space.fullSince = options.clock()
            logger.error("store: the disk holding the database is full; making room in the eviction order", metadata: [
                "store.path": "\(db.path)", "store.error": "\(space.lastFullError ?? "")",
                "disk.free_bytes": "\(DiskSpace.freeBytes(directory) ?? -1)",
            ])
        }
        setLowSpace(true)
        publishSpace()
    }

    /// After a write failed for lack of space: release the reserve, checkpoint and truncate the
    /// WAL, evict (bounded, capacity order) until the file has free pages, truncate again.
    /// At most once a second. True when something was freed and the write is worth retrying.
    func makeRoom(inserting inserted: Int64) -> Bool {
        let now = Self.monotonicNanoseconds()
        guard lastMadeRoom == .min || now - lastMadeRoom >= 1_000_000_000 else { return false }
        lastMadeRoom = now
        space.lastMadeRoomAt = options.clock()
        defer { publishSpace() }
        var freed = false
        if space.reserveHeld {
            space.reserveHeld = false
            freed = DiskSpace.releaseReserve(space.reservePath)
            logger.warning("store: released the disk reserve", metadata: [
                "store.reserve": "\(space.reservePath)", "store.reserve_bytes": "\(space.reserveBytes)",
            ])
        }
        if checkpointTruncate() { freed = true }
        let evicted = evictForSpace(inserting: inserted)
        if evicted.pruned + evicted.evicted > 0 {
            freed = true
            _ = checkpointTruncate()
        }
        logger.warning("store: made room on a full disk", metadata: [
            "store.pruned": "\(evicted.pruned)", "store.evicted": "\(evicted.evicted)",
            "store.evicted_for_space_total": "\(counters.readingsEvictedForSpaceTotal)",
            "disk.free_bytes": "\(DiskSpace.freeBytes(directory) ?? -1)",
        ])
        return freed
    }

    /// `PRAGMA wal_checkpoint(TRUNCATE)`: copies the WAL into the database file and truncates
    /// it to zero bytes. True when it completed (no reader held it back).
    private func checkpointTruncate() -> Bool {
        do throws(StoreError) {
            let busy = try db.withStatement("PRAGMA wal_checkpoint(TRUNCATE)", operation: "full disk: checkpoint") {
                (s) throws(StoreError) -> Int64 in
                guard try s.step() else { return 1 }
                return s.int64(0)
            }
            return busy == 0
        } catch {
            logger.warning("store: checkpoint on a full disk failed", metadata: [
                "store.error": "\(error)",
            ])
            return false
        }
    }

    /// How many readings to evict so the file holds `spaceTarget` bytes of free pages, from
    /// the average size of a stored reading; 0 when it already does. Bounded by
    /// `evictionChunk` (and at least twice what the commit inserts, 16 at least).
    private func spaceEvictionCount(_ c: Counters, inserted: Int64, threshold: Int64) throws(StoreError) -> Int64 {
        guard c.readingsTotal > 0 else { return 0 }
        let operation = "full disk: free pages"
        let freePages = Int64(try db.pragma("freelist_count", operation: operation) ?? "") ?? 0
        let pages = Int64(try db.pragma("page_count", operation: operation) ?? "") ?? 0
        let freeInFile = freePages * pageSize
        guard freeInFile < threshold else { return 0 }
        let perReading = max(32, max(1, pages - freePages) * pageSize / c.readingsTotal)
        let wanted = (spaceTarget - freeInFile + perReading - 1) / perReading
        return min(max(wanted, 2 * inserted, 16), Int64(max(options.evictionChunk, 1)), c.readingsTotal)
    }

    /// In a commit while the disk is full: when the file's free pages fall below half the
    /// target, evict (capacity order) back up to it in the same transaction.
    func keepRoomInFile(_ c: inout Counters, inserted: Int64) throws(StoreError) {
        let count = try spaceEvictionCount(c, inserted: inserted, threshold: spaceTarget / 2)
        guard count > 0 else { return }
        let evicted = try evict(count, &c, reason: .diskFull)
        logger.warning("store: evicted readings to keep room on a full disk", metadata: [
            "store.target": "\(count)", "store.evicted": "\(evicted)",
            "store.evicted_for_space_total": "\(c.readingsEvictedForSpaceTotal)",
        ])
    }

    /// Eviction for space in a transaction of its own (after a failed write).
    private func evictForSpace(inserting inserted: Int64) -> (pruned: Int64, evicted: Int64) {
        var c = counters
        do throws(StoreError) {
            try db.execute("BEGIN IMMEDIATE", operation: "full disk: evict")
            let count = try spaceEvictionCount(c, inserted: inserted, threshold: spaceTarget)
            guard count > 0 else {
                try db.execute("ROLLBACK", operation: "full disk: evict")
                return (0, 0)
            }
            let prunedBefore = c.readingsPrunedTotal
            let evicted = try evict(count, &c, reason: .diskFull)
            try writeCounters(from: counters, to: c)
            try db.execute("COMMIT", operation: "full disk: evict")
            counters = c
            transactionsCommitted.add(1, ordering: .relaxed)
            return (c.readingsPrunedTotal - prunedBefore, evicted)
        } catch {
            try? db.execute("ROLLBACK", operation: "full disk: evict: rollback")
            logger.error("store: eviction on a full disk failed", metadata: ["store.error": "\(error)"])
            return (0, 0)
        }
    }
}
