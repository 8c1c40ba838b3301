import Glibc
import Testing
@testable import ReadingStore
import VitalSigns

@Suite struct RoundTripTests {
    @Test func readingsRoundTripWithEveryField() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        let readings = [
            makeReading(1, flags: [.lowPerfusion, .artifact, .deviceClockUnreliable, .deviceAlarm], sequence: nil),
            makeReading(2, vital: .systolicPressure, value: -0.0, sequence: UInt64.max),
            makeReading(3, device: "pod-2", patient: "patient-2", vital: .bodyTemperature, value: 36.65, sequence: 0),
            makeReading(4, vital: .perfusionIndex, value: .infinity, flags: QualityFlags(rawValue: 0xFFFF_FFFF)),
            makeReading(5, vital: .bloodGlucose, value: 1e-300),
        ]
        try await store.commit(readings)
        let items = try await store.pending(lane: .readings, after: 0, limit: 100)
        #expect(items.compactMap(\.reading) == readings)
        #expect(items.map(\.key.lane) == Array(repeating: .readings, count: 5))
        // readings(since:) returns the same values, oldest first.
        #expect(try store.readings(since: Timestamp(millisecondsSinceEpoch: 0), limit: 100) == readings)
        await store.close()
    }

    @Test func notANumberComesBackAsNaN() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        try await store.commit([makeReading(1, value: .nan)])
        let back = try #require(try await store.pending(lane: .readings, after: 0, limit: 1).first?.reading)
        #expect(back.quantity.value.isNaN)
        #expect(back.quantity.unit == "%")
        await store.close()
    }

    @Test func escalationsAndEventsRoundTrip() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        var escalation = makeEscalation(1)
        escalation.values.append(TriggerValue(reading: ReadingID(rawValue: "ff"), vital: "pulse_rate", value: -1.5,
                                              unit: "/min", measuredAt: Timestamp(millisecondsSinceEpoch: -5)))
        escalation.triggeringReadings.append(ReadingID(rawValue: ""))
        let bare = Escalation(patient: "p", rule: "", severity: .emergency, state: .acknowledged, triggeringReadings: [],
                              values: [], carePlanVersion: -1, openedAt: Timestamp(millisecondsSinceEpoch: 0),
                              at: Timestamp(millisecondsSinceEpoch: 1), summary: "")
        let event = GatewayEvent(kind: "device_connected", at: Timestamp(millisecondsSinceEpoch: baseTime),
                                 count: nil, detail: ["device": "rad8-bedroom", "transport": "serial"])
        let counted = GatewayEvent(kind: GatewayEvent.dataLoss, at: Timestamp(millisecondsSinceEpoch: baseTime),
                                   count: 0, detail: [:])
        try await store.commit(readings: [], escalations: [escalation, bare], events: [event, counted])
        let items = try await store.pending(lane: .priority, after: 0, limit: 10)
        #expect(items.count == 4)
        #expect(items.first?.escalation == escalation)
        #expect(items.dropFirst().first?.escalation == bare)
        #expect(items.dropFirst(2).first?.event == event)
        #expect(items.dropFirst(3).first?.event == counted)
        #expect(Set(try store.openEscalations()) == [escalation, bare])
        await store.close()
    }

    @Test func escalationStateIsUpsertedAndResolvedOnesAreNotOpen() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        let open = makeEscalation(1)
        var renotified = open
        renotified.state = .renotified
        renotified.at = open.at.adding(seconds: 600)
        var resolved = makeEscalation(2)
        try await store.commit(escalations: [open, resolved])
        try await store.commit(escalations: [renotified])
        resolved.state = .resolved
        try await store.commit(escalations: [resolved])
        // One event row per committed value; one current state per escalation.
        #expect(try await store.pending(lane: .priority, after: 0, limit: 10).count == 4)
        #expect(try store.openEscalations() == [renotified])
        await store.close()
    }
}

@Suite struct DurabilityTests {
    @Test func pragmasAreWALAndFull() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir) { $0.busyTimeoutMilliseconds = 1234 }
        let values = try await store.withWriteConnection { (db) throws(StoreError) in
            [try db.pragma("journal_mode", operation: "t"), try db.pragma("synchronous", operation: "t"),
             try db.pragma("foreign_keys", operation: "t"), try db.pragma("busy_timeout", operation: "t")]
        }
        #expect(values == ["wal", "2", "1", "1234"])
        // WAL is recorded in the file: an independent connection sees it too.
        let other = try SQLiteConnection(path: store.path, readOnly: true, create: false)
        #expect(try other.pragma("journal_mode", operation: "t") == "wal")
        other.close()
        await store.close()
    }

    @Test func duplicateReadingIDsAreIgnored() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        let a = makeReading(1)
        var sameID = makeReading(1)
        sameID.quantity.value = 42 // same ID, different value: the first one stays
        // Same device and instant, another vital: a different ID, so it is kept.
        let pulse = makeReading(1, vital: .pulseRate, value: 61)
        try await store.commit([a, a, makeReading(2)])
        try await store.commit([sameID, pulse])
        let stats = try store.stats()
        #expect(stats.totalReadings == 3)
        #expect(stats.undeliveredReadings == 3)
        let items = try await store.pending(lane: .readings, after: 0, limit: 10)
        #expect(items.compactMap(\.reading) == [a, makeReading(2), pulse])
        await store.close()
    }

    @Test func concurrentCommitsShareTransactions() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir) { $0.groupCommitWindow = .milliseconds(20) }
        let failures = await withTaskGroup(of: Int.self) { group in
            for i in 0..<200 {
                group.addTask {
                    do { try await store.commit([makeReading(i, device: "dev-\(i % 4)")]); return 0 } catch { return 1 }
                }
            }
            return await group.reduce(0, +)
        }
        #expect(failures == 0)
        let stats = try store.stats()
        #expect(stats.totalReadings == 200)
        #expect(stats.transactionsCommitted >= 1)
        #expect(stats.transactionsCommitted <= 20, "200 commits took \(stats.transactionsCommitted) transactions")
        #expect(stats.lastReadingByDevice.count == 4)
        await store.close()
    }

    @Test func concurrentCommitsWithoutWindowStillComplete() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<200 {
                group.addTask { try await store.commit([makeReading(i)]) }
            }
            try await group.waitForAll()
        }
        let stats = try store.stats()
        #expect(stats.totalReadings == 200)
        #expect(stats.transactionsCommitted <= 200)
        await store.close()
    }

    @Test func crashCopyOfALiveDatabaseKeepsEveryCommittedRow() async throws {
        let dir = TemporaryDirectory()
        let copyDir = TemporaryDirectory()
        let store = try openStore(dir)
        let readings = (0..<500).map { makeReading($0, device: "dev-\($0 % 3)") }
        for chunk in stride(from: 0, to: readings.count, by: 50) {
            try await store.commit(Array(readings[chunk..<(chunk + 50)]))
        }
        try await store.commit(escalations: [makeEscalation(1), makeEscalation(2)])
        let delivered = try await store.pending(lane: .readings, after: 0, limit: 120).map(\.key)
        try await store.markDelivered(delivered)
        let before = try store.stats()

        // The store is still open: copy the files as a power cut would leave them.
        for suffix in ["", "-wal", "-shm"] where fileExists(dir.file("vigil.sqlite" + suffix)) {
            #expect(copyFile(dir.file("vigil.sqlite" + suffix), copyDir.file("vigil.sqlite" + suffix)))
        }
        #expect(fileExists(copyDir.file("vigil.sqlite-wal")))
        let copy = try openStore(copyDir)
        let after = try copy.stats()
        #expect(after.totalReadings == 500)
        #expect(after.undeliveredReadings == 380)
        #expect(after.undeliveredPriority == 2)
        #expect(after.lastReadingByDevice == before.lastReadingByDevice)
        #expect(after.evictedTotal == before.evictedTotal)
        let pending = try await copy.pending(lane: .readings, after: 0, limit: 1000)
        #expect(pending.compactMap(\.reading) == Array(readings[120...]))
        #expect(try copy.readings(since: Timestamp(millisecondsSinceEpoch: 0), limit: 1000) == readings)
        #expect(try copy.openEscalations().count == 2)
        await copy.close()
        await store.close()
    }
}

@Suite struct OutboxTests {
    @Test func lanesAreIndependentAndOrdered() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        // Two devices interleaved across several commits.
        var committed: [Reading] = []
        for batch in 0..<5 {
            let readings = (0..<10).map { makeReading(batch * 10 + $0, device: $0 % 2 == 0 ? "a" : "b") }
            committed += readings
            try await store.commit(readings: readings, escalations: batch == 2 ? [makeEscalation(batch)] : [],
                                   events: batch == 3 ? [GatewayEvent(kind: "device_lost", at: fixedClock())] : [])
        }
        let priority = try await store.pending(lane: .priority, after: 0, limit: 100)
        #expect(priority.count == 2)
        #expect(priority.first?.escalation != nil)
        #expect(priority.last?.event?.kind == "device_lost")
        #expect(priority.allSatisfy { $0.key.lane == .priority })

        let readings = try await store.pending(lane: .readings, after: 0, limit: 1000)
        let sequences = readings.map(\.key.sequence)
        #expect(sequences == sequences.sorted() && Set(sequences).count == sequences.count)
        for device in ["a", "b"] {
            #expect(readings.compactMap(\.reading).filter { $0.device.rawValue == device }
                == committed.filter { $0.device.rawValue == device })
        }
        // Paging with the cursor.
        let firstPage = try await store.pending(lane: .readings, after: 0, limit: 7)
        let nextPage = try await store.pending(lane: .readings, after: firstPage.last?.key.sequence ?? 0, limit: 7)
        #expect(firstPage + nextPage == Array(readings.prefix(14)))

        // Delivering the priority lane does not touch readings and vice versa.
        try await store.markDelivered(priority.map(\.key) + [OutboxKey(lane: .priority, sequence: 999)])
        #expect(try await store.pending(lane: .priority, after: 0, limit: 100).isEmpty)
        #expect(try await store.pending(lane: .readings, after: 0, limit: 1000).count == 50)
        try await store.markDelivered(Array(readings.prefix(20)).map(\.key))
        try await store.markDelivered(Array(readings.prefix(20)).map(\.key)) // again: ignored
        let rest = try await store.pending(lane: .readings, after: 0, limit: 1000)
        #expect(rest == Array(readings.dropFirst(20)))
        let stats = try store.stats()
        #expect(stats.undeliveredReadings == 30)
        #expect(stats.undeliveredPriority == 0)
        #expect(stats.totalReadings == 50)
        #expect(stats.oldestUndeliveredReadingReceivedAt == committed[20].receivedAt)
        #expect(stats.oldestUndeliveredPriorityCreatedAt == nil)
        await store.close()
    }

    @Test func sequencesKeepIncreasingAfterEverythingIsEvicted() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir) { $0.capacityReadings = 5; $0.evictionHeadroom = 0 }
        try await store.commit((0..<5).map { makeReading($0) })
        let first = try await store.pending(lane: .readings, after: 0, limit: 10)
        try await store.markDelivered(first.map(\.key))
        try await store.commit((5..<10).map { makeReading($0) })
        let second = try await store.pending(lane: .readings, after: 0, limit: 10)
        #expect(second.count == 5)
        #expect((second.first?.key.sequence ?? 0) > (first.last?.key.sequence ?? .max))
        await store.close()
    }
}

@Suite struct EvictionTests {
    @Test func deliveredGoFirstThenOldestUndeliveredWithADataLossEvent() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir) { $0.capacityReadings = 100; $0.evictionHeadroom = 0 }
        let all = (0..<150).map { makeReading($0, device: "dev-\($0 % 2)") }
        try await store.commit(Array(all[0..<60]))
        let firstSixty = try await store.pending(lane: .readings, after: 0, limit: 100)
        try await store.markDelivered(firstSixty.prefix(30).map(\.key))
        try await store.commit(escalations: (0..<150).map { makeEscalation($0) })

        // 120 > 100: the 20 oldest delivered rows go, nothing undelivered is lost.
        try await store.commit(Array(all[60..<120]))
        var stats = try store.stats()
        #expect(stats.totalReadings == 100)
        #expect(stats.prunedDeliveredTotal == 20)
        #expect(stats.evictedTotal == 0)
        #expect(stats.undeliveredReadings == 90)
        #expect(try await store.pending(lane: .priority, after: 0, limit: 1000).count == 150)

        // 130 > 100: the last 10 delivered go, then the 20 oldest undelivered, reported.
        try await store.commit(Array(all[120..<150]))
        stats = try store.stats()
        #expect(stats.totalReadings == 100)
        #expect(stats.prunedDeliveredTotal == 30)
        #expect(stats.evictedTotal == 20)
        #expect(stats.undeliveredReadings == 100)
        let remaining = try await store.pending(lane: .readings, after: 0, limit: 1000).compactMap(\.reading)
        #expect(remaining == Array(all[50..<150]))
        #expect(stats.oldestUndeliveredReadingReceivedAt == all[50].receivedAt)

        // Escalations are never evicted; the data_loss event follows them in the priority lane.
        let priority = try await store.pending(lane: .priority, after: 0, limit: 1000)
        #expect(priority.count == 151)
        #expect(priority.prefix(150).allSatisfy { $0.escalation != nil })
        let loss = try #require(priority.last?.event)
        #expect(loss.kind == "data_loss")
        #expect(loss.count == 20)
        #expect(loss.detail["reason"] == "outbox capacity")
        #expect(loss.detail["first_received_at"] == all[30].receivedAt.iso8601)
        #expect(loss.detail["last_received_at"] == all[49].receivedAt.iso8601)
        #expect(loss.at == fixedClock())
        #expect(try store.openEscalations().count == 150)
        await store.close()
    }

    @Test func headroomEvictsALittleMore() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir) { $0.capacityReadings = 100; $0.evictionHeadroom = 0.05 }
        try await store.commit((0..<101).map { makeReading($0) })
        let stats = try store.stats()
        #expect(stats.totalReadings == 95)
        #expect(stats.evictedTotal == 6)
        let loss = try await store.pending(lane: .priority, after: 0, limit: 10).compactMap(\.event)
        #expect(loss.map(\.count) == [6])
        await store.close()
    }
}

@Suite struct SchemaTests {
    @Test func reopeningAppliesNothingAndCountersSurvive() async throws {
        let dir = TemporaryDirectory()
        let first = try openStore(dir)
        #expect(first.appliedMigrations == Schema.migrations.map(\.name))
        try await first.commit((0..<30).map { makeReading($0, device: "d\($0 % 3)") })
        try await first.commit(escalations: [makeEscalation(1)])
        try await first.markDelivered(try await first.pending(lane: .readings, after: 0, limit: 10).map(\.key))
        let before = try first.stats()
        await first.close()
        // Close checkpoints: the WAL is empty afterwards.
        #expect(!fileExists(dir.file("vigil.sqlite-wal")) || TestFile.size(dir.file("vigil.sqlite-wal")) == 0)

        let second = try openStore(dir)
        #expect(second.appliedMigrations.isEmpty)
        let after = try second.stats()
        #expect(after.totalReadings == 30)
        #expect(after.undeliveredReadings == 20)
        #expect(after.undeliveredPriority == 1)
        #expect(after.lastReadingByDevice == before.lastReadingByDevice)
        #expect(after.transactionsCommitted == 0)
        await second.close()
    }

    @Test func startUpReadsCountersInsteadOfCounting() async throws {
        let dir = TemporaryDirectory()
        let first = try openStore(dir)
        try await first.commit((0..<10).map { makeReading($0) })
        await first.close()
        // Delete rows behind the store's back: a store that counted rows at start-up would
        // see 4; one that trusts its transactional counters still says 10.
        let raw = try SQLiteConnection(path: dir.file("vigil.sqlite"), readOnly: false, create: false)
        try raw.execute("DELETE FROM readings WHERE seq <= 6", operation: "tamper")
        raw.close()
        let second = try openStore(dir)
        #expect(try second.stats().totalReadings == 10)
        #expect(try await second.pending(lane: .readings, after: 0, limit: 100).count == 4)
        await second.close()
    }

    @Test func unknownMigrationIsRefused() async throws {
        let dir = TemporaryDirectory()
        let first = try openStore(dir)
        await first.close()
        let raw = try SQLiteConnection(path: dir.file("vigil.sqlite"), readOnly: false, create: false)
        try raw.execute("INSERT INTO migrations (ordinal, name, applied_at) VALUES (99, '0099-from-the-future', 0)",
                        operation: "tamper")
        raw.close()
        let error = #expect(throws: StoreError.self) { try openStore(dir) }
        #expect(error?.code == .unknownSchema)
        #expect(error?.message.contains("0099-from-the-future") == true)
        #expect(error?.message.contains("newer Vigil") == true)
    }

    @Test func migrationsNotAPrefixAreRefused() throws {
        let dir = TemporaryDirectory()
        let db = try SQLiteConnection(path: dir.file("x.sqlite"), readOnly: false, create: true)
        let applied = try Schema.migrate(db, list: [Migration(name: "a", sql: "CREATE TABLE a (x)")]) { 0 }
        #expect(applied == ["a"])
        #expect(try Schema.migrate(db, list: [Migration(name: "a", sql: ""), Migration(name: "b", sql: "CREATE TABLE b (x)")]) { 0 } == ["b"])
        let error = #expect(throws: StoreError.self) {
            try Schema.migrate(db, list: [Migration(name: "a", sql: ""), Migration(name: "c", sql: "")]) { 0 }
        }
        #expect(error?.code == .unknownSchema)
        db.close()
    }

    @Test func failingMigrationRollsBack() throws {
        let dir = TemporaryDirectory()
        let db = try SQLiteConnection(path: dir.file("x.sqlite"), readOnly: false, create: true)
        let error = #expect(throws: StoreError.self) {
            try Schema.migrate(db, list: [Migration(name: "bad", sql: "CREATE TABLE t (x); SELECT nonsense FROM nowhere")]) { 0 }
        }
        #expect(error?.code == .migrationFailed)
        #expect(try db.pragma("table_info(t)", operation: "t") == nil)
        #expect(try Schema.migrate(db, list: [Migration(name: "bad", sql: "CREATE TABLE t (x)")]) { 0 } == ["bad"])
        db.close()
    }

    @Test func aFileThatIsNotSQLiteIsAClearError() throws {
        let dir = TemporaryDirectory()
        writeFile(dir.file("vigil.sqlite"), Array(String(repeating: "not a database, just text\n", count: 200).utf8))
        let error = #expect(throws: StoreError.self) { try openStore(dir) }
        #expect(error?.code == .notADatabase)
        #expect(error?.sqliteCode?.primary == .notADatabase)
        #expect(error?.description.contains("not an SQLite database") == true)
    }

    @Test func anotherApplicationsDatabaseIsRefused() throws {
        let dir = TemporaryDirectory()
        let raw = try SQLiteConnection(path: dir.file("vigil.sqlite"), readOnly: false, create: true)
        try raw.execute("CREATE TABLE contacts (name TEXT)", operation: "other app")
        raw.close()
        let error = #expect(throws: StoreError.self) { try openStore(dir) }
        #expect(error?.code == .notADatabase)
    }

    @Test func aMissingDirectoryIsAClearError() throws {
        let error = #expect(throws: StoreError.self) {
            try ReadingStore(options: StoreOptions(path: "/nonexistent-vigil-dir/vigil.sqlite"), logger: testLogger)
        }
        #expect(error?.code == .openFailed)
        #expect(error?.sqliteCode?.primary == .cannotOpen)
    }

    @Test func closedStoreRefusesWork() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        await store.close()
        let error = await #expect(throws: StoreError.self) { try await store.commit([makeReading(1)]) }
        #expect(error?.code == .closed)
        #expect(throws: StoreError.self) { try store.stats() }
    }
}

@Suite struct PayloadCodecTests {
    @Test func truncatedOrGarbagePayloadsAreErrorsNotCrashes() {
        let good = PayloadCodec.encode(makeEscalation(1))
        for length in 0..<good.count {
            #expect(throws: StoreError.self) { try PayloadCodec.decodeEscalation(Array(good.prefix(length)), row: "t") }
        }
        #expect(throws: StoreError.self) { try PayloadCodec.decodeEscalation(good + [0], row: "t") }
        #expect(throws: StoreError.self) { try PayloadCodec.decodeEvent([1, 0xFF, 0xFF, 0xFF, 0xFF], row: "t") }
        #expect(throws: StoreError.self) { try PayloadCodec.decodeEvent([2], row: "t") }
    }
}

enum TestFile {
    static func size(_ path: String) -> Int64 {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : -1
    }
}
