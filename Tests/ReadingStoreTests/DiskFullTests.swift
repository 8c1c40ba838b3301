import Glibc
import Testing
@testable import ReadingStore
import VitalSigns

/// A full disk (issue 8, docs/faults.md "Disk full"): on SQLITE_FULL the store makes room in
/// the capacity eviction order — delivered readings first, then the oldest undelivered ones,
/// counted and reported as `data_loss` — never touching the priority lane, and commits resume.
@Suite struct DiskFullTests {
    /// Commits like the daemon's commit path: retried (with a pause) until durable. Returns
    /// the number of failed attempts; gives up after 50.
    @discardableResult
    static func commitRetrying(_ store: ReadingStore, _ readings: [Reading]) async throws -> Int {
        var failures = 0
        while true {
            let result: Result<Void, StoreError>
            do throws(StoreError) {
                try await store.commit(readings)
                result = .success(())
            } catch {
                result = .failure(error)
            }
            switch result {
            case .success: return failures
            case .failure(let error):
                guard error.isDiskFull, failures < 50 else { throw error }
                failures += 1
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Every reading index still stored, in the readings lane's order, and the lane's items.
    static func storedIndexes(_ store: ReadingStore) throws -> [Int] {
        try store.readQuery { (db) throws(StoreError) -> [Int] in
            try db.withStatement("SELECT measured_at FROM readings ORDER BY seq", operation: "test") { (s) throws(StoreError) in
                var out: [Int] = []
                while try s.step() { out.append(Int((s.int64(0) - baseTime) / 1000)) }
                return out
            }
        }
    }

    static func dataLossEvents(_ store: ReadingStore) async throws -> [GatewayEvent] {
        try await store.pending(lane: .priority, after: 0, limit: 10_000).compactMap(\.event)
            .filter { $0.kind == GatewayEvent.dataLoss }
    }

    /// `PRAGMA max_page_count` on a real file: the database cannot grow past its size, so the
    /// next commits fail with SQLITE_FULL until the store frees pages inside the file.
    @Test func aFullDatabaseEvictsDeliveredFirstThenTheOldestAndCommitsResume() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir) { $0.evictionChunk = 2_000 }
        // 600 readings; the first 200 delivered. An escalation and an event in the priority lane.
        for start in stride(from: 0, to: 600, by: 50) {
            try await store.commit((start..<start + 50).map { makeReading($0) })
        }
        try await store.commit(readings: [], escalations: [makeEscalation(1)],
                               events: [GatewayEvent(kind: "test_event", at: fixedClock(), count: 1)])
        let first = try await store.pending(lane: .readings, after: 0, limit: 200)
        try await store.markDelivered(first.map(\.key))
        let pages = try await store.withWriteConnection { (db) throws(StoreError) -> Int64 in
            _ = try db.pragma("wal_checkpoint(TRUNCATE)", operation: "test")
            let n = Int64(try db.pragma("page_count", operation: "test") ?? "") ?? 0
            _ = try db.pragma("max_page_count = \(n)", operation: "test")
            return n
        }
        #expect(pages > 10)

        // Keep committing, 3 readings at a time like a line from an oximeter.
        var failures = 0
        for start in stride(from: 600, to: 1_500, by: 3) {
            failures += try await Self.commitRetrying(store, (start..<start + 3).map { makeReading($0) })
        }
        let stats = try store.stats()
        #expect(stats.space.fullFailures >= 1, "the database did fill up")
        #expect(stats.space.lastFullError?.contains("SQLITE_FULL") == true)
        // Commits resumed: the newest reading is stored, and the database never grew.
        let stored = try Self.storedIndexes(store)
        #expect(stored.last == 1_499)
        print("disk-full max_page_count: failed commit attempts \(failures), failed writes \(stats.space.fullFailures), pruned \(stats.prunedForSpaceTotal), evicted \(stats.evictedForSpaceTotal)")
        let pagesNow = try await store.withWriteConnection { (db) throws(StoreError) in
            Int64(try db.pragma("page_count", operation: "test") ?? "") ?? 0
        }
        #expect(pagesNow <= pages)

        // The eviction order: the delivered 200 went first (all of them, or evicting
        // undelivered ones would have been wrong), then the oldest undelivered ones: what is
        // left is one unbroken run ending at the newest reading.
        #expect(stats.prunedForSpaceTotal == 200, "every delivered reading went before any undelivered one")
        #expect(stats.evictedForSpaceTotal > 0, "then undelivered readings")
        #expect(stored == Array(stored.first!...1_499), "what is left is the newest, unbroken")
        #expect(stored.first == 200 + Int(stats.evictedForSpaceTotal), "the oldest undelivered went first")
        #expect(stats.evictedTotal == stats.evictedForSpaceTotal)
        #expect(stats.totalReadings == Int64(stored.count))
        #expect(stats.undeliveredReadings == Int64(stored.count))

        // Reported: data_loss events whose counts add up, each saying why; the escalation and
        // the other event are still there (the priority lane is never evicted).
        let losses = try await Self.dataLossEvents(store)
        #expect(!losses.isEmpty)
        #expect(losses.allSatisfy { $0.detail["reason"] == "disk full" })
        #expect(losses.reduce(Int64(0)) { $0 + ($1.count ?? 0) } == stats.evictedForSpaceTotal)
        let priority = try await store.pending(lane: .priority, after: 0, limit: 10_000)
        #expect(priority.contains { $0.escalation?.rule == "spo2-low-1" })
        #expect(priority.contains { $0.event?.kind == "test_event" })

        // Marking delivered works on the full database too.
        let pending = try await store.pending(lane: .readings, after: 0, limit: 10_000)
        try await store.markDelivered(pending.map(\.key) + priority.map(\.key))
        let after = try store.stats()
        #expect(after.undeliveredReadings == 0)
        #expect(after.undeliveredPriority == 0)
        await store.close()
    }

    /// The same against a real size-limited file system: a 1 MiB tmpfs (needs root for
    /// mount(2); skipped otherwise). The store keeps a 192 KiB reserve, releases it when the
    /// disk fills, makes room and carries on; once space comes back (a ballast file deleted)
    /// the reserve is made again and the full state clears.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func aFullTmpfsReleasesTheReserveEvictsInOrderAndRecovers() async throws {
        let dir = TemporaryDirectory()
        let mountPoint = dir.file("disk")
        mkdir(mountPoint, 0o700)
        guard mount("tmpfs", mountPoint, "tmpfs", 0, "size=1024k,mode=0700") == 0 else {
            Issue.record("mount failed: errno \(errno)")
            return
        }
        defer { umount2(mountPoint, Int32(MNT_DETACH)) }
        // Ballast, deleted at the end: space coming back from outside.
        let ballast = mountPoint + "/ballast"
        #expect(DiskSpace.createReserve(ballast, bytes: 256 * 1024) == nil)

        var options = StoreOptions(path: mountPoint + "/vigil.sqlite", clock: fixedClock)
        options.diskReserveBytes = 192 * 1024
        let store = try ReadingStore(options: options, logger: testLogger)
        #expect(await eventually { store.space.reserveHeld }, "the reserve is made at start")
        #expect(DiskSpace.fileSize(options.reservePath) == Int64(192 * 1024))
        #expect(store.space.lowSpace, "1 MiB is low space: frequent checkpoints")

        // Phase 1: 300 readings, delivered. Then an escalation.
        var next = 0
        while next < 300 {
            try await Self.commitRetrying(store, (next..<next + 3).map { makeReading($0) })
            next += 3
        }
        try await store.markDelivered(try await store.pending(lane: .readings, after: 0, limit: 1_000).map(\.key))
        try await store.commit(escalations: [makeEscalation(1)])

        // Phase 2: the broker is away; readings until the disk has been full for a while.
        var failures = 0
        while next < 30_000 {
            failures += try await Self.commitRetrying(store, (next..<next + 3).map { makeReading($0) })
            next += 3
            if store.space.full, try store.stats().evictedForSpaceTotal > 300 { break }
        }
        let stats = try store.stats()
        #expect(stats.space.full, "the disk is full")
        #expect(!stats.space.reserveHeld, "the reserve was released")
        #expect(DiskSpace.fileSize(options.reservePath) == nil)
        #expect(stats.space.fullFailures >= 1)
        print("disk-full unit: \(next) readings offered, \(stats.totalReadings) stored, pruned for space \(stats.prunedForSpaceTotal), evicted for space \(stats.evictedForSpaceTotal), failed writes \(stats.space.fullFailures), failed commit attempts \(failures), last error \(stats.space.lastFullError ?? "-")")

        let stored = try Self.storedIndexes(store)
        #expect(stored.last == next - 1, "commits resumed: the newest reading is stored")
        #expect(stats.prunedForSpaceTotal == 300, "the delivered readings went first")
        #expect(stored == Array(stored.first!...(next - 1)), "what is left is the newest, unbroken")
        #expect(stored.first == 300 + Int(stats.evictedForSpaceTotal))
        let losses = try await Self.dataLossEvents(store)
        #expect(losses.reduce(Int64(0)) { $0 + ($1.count ?? 0) } == stats.evictedForSpaceTotal)
        #expect(try await store.pending(lane: .priority, after: 0, limit: 1_000).contains { $0.escalation?.rule == "spo2-low-1" })

        // The broker is back: marking everything delivered works on the full disk.
        let pending = try await store.pending(lane: .readings, after: 0, limit: 100_000)
        let priority = try await store.pending(lane: .priority, after: 0, limit: 1_000)
        try await store.markDelivered(pending.map(\.key) + priority.map(\.key))
        #expect(try store.stats().undeliveredReadings == 0)

        // Space comes back: the reserve is made again and the full state clears.
        unlink(ballast)
        #expect(await eventually { store.space.reserveHeld && !store.space.full }, "recovers once space is back")
        #expect(DiskSpace.fileSize(options.reservePath) == Int64(192 * 1024))
        try await store.commit([makeReading(next)])
        #expect(try Self.storedIndexes(store).last == next)
        await store.close()
    }

    /// A failure that is not for lack of space is not one.
    @Test func onlySpaceErrorsCountAsDiskFull() {
        func error(_ code: Int32, errno: Int32? = nil) -> StoreError {
            StoreError(code: .sqlite, message: "m", operation: "o", sqliteCode: SQLiteResultCode(rawValue: code), systemErrno: errno)
        }
        #expect(error(13).isDiskFull)                      // SQLITE_FULL
        #expect(error(10 | (19 << 8), errno: ENOSPC).isDiskFull)   // SQLITE_IOERR_SHMSIZE, ENOSPC
        #expect(error(10 | (3 << 8), errno: EDQUOT).isDiskFull)    // SQLITE_IOERR_WRITE, quota
        #expect(!error(10 | (3 << 8), errno: EIO).isDiskFull)
        #expect(!error(5).isDiskFull)                      // SQLITE_BUSY
        #expect(!StoreError(code: .closed, message: "m", operation: "o").isDiskFull)
    }
}

/// Polls `condition` every 100 ms for up to 15 s.
private func eventually(_ condition: () throws -> Bool) async -> Bool {
    for _ in 0..<150 {
        if (try? condition()) == true { return true }
        try? await Task.sleep(for: .milliseconds(100))
    }
    return (try? condition()) == true
}
