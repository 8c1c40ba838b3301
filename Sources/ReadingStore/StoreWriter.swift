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

    static var names: [(String, WritableKeyPath<Counters, Int64>)] {[
        ("readings_total", \.readingsTotal), ("readings_undelivered", \.readingsUndelivered),
        ("readings_evicted_total", \.readingsEvictedTotal), ("readings_pruned_total", \.readingsPrunedTotal),
        ("priority_total", \.priorityTotal), ("priority_undelivered", \.priorityUndelivered),
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
final class StoreWriter: @unchecked Sendable {
    // Safety: this is the only @unchecked Sendable type in the store. Its invariant:
    //  - `queue`, `stopRequested`, `closeWaiters` and `exited` are read and written only with
    //    `mutex` locked;
    //  - `db`, `counters` and everything else `var` is touched only by the writer thread once
    //    `start()` has launched it (before that only by `init`, on the creating thread, which
    //    hands them over by starting the thread; pthread_create is a memory barrier);
    //  - `transactionsCommitted` is atomic; the remaining `let`s are immutable and Sendable.
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

    init(db: SQLiteConnection, counters: Counters, options: StoreOptions, logger: Logger) {
        self.db = db
        self.counters = counters
        self.options = options
        self.logger = logger
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
        while let (batch, tasks) = nextBatch() {
            if !batch.isEmpty { process(batch) }
            for task in tasks { task(db) }
        }
        shutdown()
    }

    /// Waits for work, then lets the group-commit window collect more.
    private func nextBatch() -> ([(WriteRequest, CheckedContinuation<Result<Void, StoreError>, Never>)],
                                 [@Sendable (SQLiteConnection) -> Void])? {
        lock()
        defer { unlock() }
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
        let result = transact(batch.map(\.0))
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
            try writeCounters(from: counters, to: c)
            try db.execute("COMMIT", operation: "commit")
            counters = c
            transactionsCommitted.add(1, ordering: .relaxed)
            return .success(())
        } catch {
            // After a failed COMMIT SQLite may already have rolled back; a second ROLLBACK
            // then fails harmlessly.
            try? db.execute("ROLLBACK", operation: "commit: rollback")
            logger.error("store transaction failed", metadata: [
                "store.error": "\(error.code)", "sqlite.code": "\(error.sqliteCode?.rawValue ?? 0)",
                "store.requests": "\(requests.count)",
            ])
            return .failure(error)
        }
    }

    /// Returns false when a reading with the same ID is already stored: re-committing a
    /// reading is a no-op, which makes replays and back-fill idempotent. The conflict target
    /// is the unique key (device, measured_at, reading_id), which holds the same readings as
    /// reading_id alone because the ID is derived from device and measured time (see the
    /// schema). Only that conflict is ignored (ON CONFLICT … DO NOTHING, unlike INSERT OR
    /// IGNORE, does not also swallow NOT NULL or CHECK failures).
    /// Finds an earlier copy of a reading whose device clock was not believed (``insert(_:)``).
    static let resentRecordQuery =
        "SELECT 1 FROM readings WHERE device = ? AND reading_id = ? AND (flags & 2048) != 0 LIMIT 1"

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
        var target = min(excess + headroom, bound, c.readingsTotal)

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
            target -= pruned
            logger.debug("store pruned delivered readings", metadata: ["store.pruned": "\(pruned)"])
        }
        guard target > 0, c.readingsUndelivered > 0 else { return }

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
        guard evicted > 0 else { return }
        c.readingsTotal -= evicted
        c.readingsUndelivered -= evicted
        c.readingsEvictedTotal += evicted
        let event = GatewayEvent(kind: GatewayEvent.dataLoss, at: options.clock(), count: evicted, detail: [
            "first_received_at": Timestamp(millisecondsSinceEpoch: range.first).iso8601,
            "last_received_at": Timestamp(millisecondsSinceEpoch: range.last).iso8601,
            "reason": "outbox capacity",
        ])
        try insert(event)
        c.priorityTotal += 1
        c.priorityUndelivered += 1
        logger.warning("store evicted undelivered readings for capacity", metadata: [
            "store.evicted": "\(evicted)", "store.capacity": "\(capacity)",
            "store.evicted_total": "\(c.readingsEvictedTotal)",
        ])
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
