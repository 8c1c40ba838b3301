import Logging
import Synchronization
import Testing
@testable import ReadingStore
import VitalSigns

/// Collects every log record of one test in memory (no global bootstrap).
final class RecordingLogHandler: LogHandler, Sendable {
    let records = Mutex<[String]>([])
    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }
    var logLevel: Logger.Level {
        get { .trace }
        set {}
    }
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }
    func log(event: LogEvent) {
        let meta = (event.metadata ?? [:]).map { "\($0.key)=\($0.value)" }.sorted().joined(separator: " ")
        records.withLock { $0.append("\(event.level) \(event.message) \(meta)") }
    }
}

@Suite struct FailureTests {
    @Test func aFailedTransactionChangesNothingAndTheNextOneWorks() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir) { $0.busyTimeoutMilliseconds = 20 }
        try await store.commit((0..<5).map { makeReading($0) })
        // Another process holds the write lock for longer than busy_timeout.
        let other = try SQLiteConnection(path: store.path, readOnly: false, create: false)
        try other.execute("BEGIN IMMEDIATE", operation: "hold lock")
        let error = await #expect(throws: StoreError.self) {
            try await store.commit((5..<8).map { makeReading($0) })
        }
        #expect(error?.sqliteCode?.primary == .busy)
        #expect(error?.code == .sqlite)
        try other.execute("ROLLBACK", operation: "release lock")
        other.close()
        #expect(try store.stats().totalReadings == 5)
        try await store.commit((5..<8).map { makeReading($0) })
        let stats = try store.stats()
        #expect(stats.totalReadings == 8)
        #expect(stats.undeliveredReadings == 8)
        #expect(try await store.pending(lane: .readings, after: 0, limit: 100).count == 8)
        await store.close()
    }
}

@Suite struct CorruptRowTests {
    @Test func tamperedRowsAreTypedErrorsNotCrashes() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        try await store.commit(readings: [makeReading(1)], escalations: [makeEscalation(1)])
        let other = try SQLiteConnection(path: store.path, readOnly: false, create: false)
        try other.execute("UPDATE readings SET vital = 'from_the_future'", operation: "tamper")
        try other.execute("UPDATE priority_outbox SET payload = x'0102'", operation: "tamper")
        try other.execute("UPDATE escalations SET payload = x''", operation: "tamper")
        other.close()
        // The strict read reports the damage as a typed error, not a crash.
        let readingError = #expect(throws: StoreError.self) {
            try store.pendingNow(lane: .readings, after: 0, limit: 10)
        }
        #expect(readingError?.code == .corruptRow)
        #expect(readingError?.message.contains("from_the_future") == true)
        let priorityError = #expect(throws: StoreError.self) {
            try store.pendingNow(lane: .priority, after: 0, limit: 10)
        }
        #expect(priorityError?.code == .corruptRow)

        // The outbox read the forwarder uses quarantines instead of stalling: the bad rows
        // leave their lanes and one corrupt_row event per lane says so, loudly.
        try await store.commit([makeReading(2)])
        let readings = try await store.pending(lane: .readings, after: 0, limit: 10)
        #expect(readings.map(\.key.sequence) == [2], "the row after the damaged one flows")
        #expect(try await store.pending(lane: .readings, after: 0, limit: 10).count == 1, "the damaged row stays out")
        // The first read quarantines the damaged escalation row; its event is committed after
        // that read, so the second read sees it.
        _ = try await store.pending(lane: .priority, after: 0, limit: 10)
        let priority = try await store.pending(lane: .priority, after: 0, limit: 10)
        let events = priority.compactMap { item -> GatewayEvent? in
            if case .event(let e) = item.payload { e } else { nil }
        }
        #expect(events.map(\.kind) == ["corrupt_row", "corrupt_row"])
        #expect(events.map { $0.detail["lane"] } == ["readings", "escalations"])
        #expect(events.allSatisfy { $0.count == 1 })
        // Nothing is deleted: the damaged rows are still in the database as evidence.
        let check = try SQLiteConnection(path: store.path, readOnly: true, create: false)
        let kept = try check.withStatement("SELECT COUNT(*) FROM readings WHERE vital = 'from_the_future'", operation: "count") { (st) throws(StoreError) -> Int64 in
            _ = try st.step()
            return st.int64(0)
        }
        #expect(kept == 1)
        check.close()
        // Start-up skips an unreadable escalation rather than refusing to run.
        #expect(try store.openEscalations().isEmpty)
        await store.close()
    }
}

@Suite struct LoggingTests {
    @Test func logsCarryCountsAndPathsButNoPatientData() async throws {
        let dir = TemporaryDirectory()
        let handler = RecordingLogHandler()
        let logger = Logger(label: "vigil.store.test", factory: { _ in handler })
        var options = StoreOptions(path: dir.file("vigil.sqlite"), capacityReadings: 10, evictionHeadroom: 0, clock: fixedClock)
        options.busyTimeoutMilliseconds = 100
        let store = try ReadingStore(options: options, logger: logger)
        let secretPatient = "patient-SECRET-4711"
        try await store.commit(readings: (0..<25).map { makeReading($0, patient: secretPatient, value: 77.125) },
                               escalations: [makeEscalation(1, patient: secretPatient)])
        await store.close()
        let records = handler.records.withLock { $0 }
        #expect(records.contains { $0.contains("store opened") })
        #expect(records.contains { $0.contains("evicted undelivered") && $0.contains("store.evicted=15") })
        #expect(records.contains { $0.contains("store closed") })
        #expect(!records.contains { $0.contains("SECRET") || $0.contains("77.125") })
    }
}
