import Testing
@testable import ReadingStore
import VitalSigns

/// Migration 0004-downlink: the replay guard's ids, and `resend`'s re-queue.
@Suite struct DownlinkStoreTests {
    func record(_ id: String, at ms: Int64 = baseTime, outcome: String = "ok") -> DownlinkCommandRecord {
        DownlinkCommandRecord(id: id, command: "ping", issuedAt: Timestamp(millisecondsSinceEpoch: ms),
                              receivedAt: Timestamp(millisecondsSinceEpoch: ms + 10), outcome: outcome)
    }

    @Test func idsAreRememberedAndASecondRecordOfOneIDChangesNothing() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        #expect(try store.downlinkCommand(id: "a") == nil)
        try await store.recordDownlinkCommand(record("a"), pruneIssuedBefore: Timestamp(millisecondsSinceEpoch: 0))
        #expect(try store.downlinkCommand(id: "a")?.outcome == "ok")

        // The same id with an escalation: refused as a whole, the escalation is not committed.
        let before = try store.stats().priorityTotal
        await #expect(throws: StoreError.self) {
            try await store.recordDownlinkCommand(self.record("a"), escalations: [makeEscalation(1)],
                                                  pruneIssuedBefore: Timestamp(millisecondsSinceEpoch: 0))
        }
        #expect(try store.stats().priorityTotal == before)
        await store.close()

        // Durable: a reopened store still knows the id.
        let again = try openStore(dir)
        #expect(try again.downlinkCommand(id: "a") != nil)
        await again.close()
    }

    @Test func idsIssuedBeforeTheWindowArePruned() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        try await store.recordDownlinkCommand(record("old", at: baseTime - 100_000_000), pruneIssuedBefore: Timestamp(millisecondsSinceEpoch: 0))
        try await store.recordDownlinkCommand(record("new", at: baseTime), pruneIssuedBefore: Timestamp(millisecondsSinceEpoch: baseTime - 1000))
        #expect(try store.downlinkCommand(id: "old") == nil)
        #expect(try store.downlinkCommand(id: "new") != nil)
        #expect(try store.downlinkCommandRecords().map(\.id) == ["new"])
        await store.close()
    }

    @Test func resendRequeuesDeliveredReadingsInOrderAtTheLaneTail() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        let readings = (0..<10).map { makeReading($0) } + (10..<15).map { makeReading($0, device: "scale", patient: "patient-2") }
        try await store.commit(readings)
        let all = try store.pendingNow(lane: .readings, after: .min, limit: 100)
        try await store.markDelivered(all.map(\.key))
        try await store.commit([makeReading(20)])  // still undelivered
        #expect(try store.stats().undeliveredReadings == 1)
        let lastSeq = try store.pendingNow(lane: .readings, after: .min, limit: 100).last?.key.sequence ?? 0

        // Readings 2…7 of the first device, limit 4: the first four by lane order.
        let outcome = try await store.resend(
            from: Timestamp(millisecondsSinceEpoch: baseTime + 2000), to: Timestamp(millisecondsSinceEpoch: baseTime + 8000),
            device: DeviceID("rad8-bedroom"), patient: nil, limit: 4, record: record("r1"),
            pruneIssuedBefore: Timestamp(millisecondsSinceEpoch: 0))
        #expect(outcome.requeued == 4)
        #expect(outcome.truncated)
        #expect(outcome.alreadyPending == 0)
        #expect(!outcome.rangePartlyPruned)
        #expect(try store.stats().undeliveredReadings == 5, "the counter follows")

        // After the newest row, in their original order, found by a cursor past everything.
        let requeued = try store.pendingNow(lane: .readings, after: lastSeq, limit: 100)
        #expect(requeued.compactMap(\.reading).map(\.id) == (2..<6).map { makeReading($0).id })
        #expect(try store.stats().totalReadings == 16, "nothing deleted")
        #expect(try store.downlinkCommand(id: "r1") != nil, "recorded in the same transaction")

        // A new reading gets a sequence after the moved ones.
        try await store.commit([makeReading(21)])
        let newest = try store.pendingNow(lane: .readings, after: lastSeq, limit: 100)
        #expect(newest.last?.reading?.id == makeReading(21).id)
        #expect(Set(newest.map(\.key.sequence)).count == newest.count)

        // The patient filter, and readings that are still pending anyway.
        let second = try await store.resend(
            from: Timestamp(millisecondsSinceEpoch: baseTime), to: Timestamp(millisecondsSinceEpoch: baseTime + 30_000),
            device: nil, patient: PatientID("patient-2"), limit: 100, record: record("r2"),
            pruneIssuedBefore: Timestamp(millisecondsSinceEpoch: 0))
        #expect(second.requeued == 5 && !second.truncated)
        let third = try await store.resend(
            from: Timestamp(millisecondsSinceEpoch: baseTime), to: Timestamp(millisecondsSinceEpoch: baseTime + 30_000),
            device: nil, patient: PatientID("patient-2"), limit: 100, record: record("r3"),
            pruneIssuedBefore: Timestamp(millisecondsSinceEpoch: 0))
        #expect(third.requeued == 0 && third.alreadyPending == 5)
        await store.close()
    }

    @Test func resendReportsARangeThatWasPartlyPruned() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir) { $0.capacityReadings = 100; $0.evictionHeadroom = 0; $0.evictionChunk = 1000 }
        for chunk in 0..<3 {
            let batch = (chunk * 50..<(chunk + 1) * 50).map { makeReading($0) }
            try await store.commit(batch)
            try await store.markDelivered(try store.pendingNow(lane: .readings, after: .min, limit: 1000).map(\.key))
        }
        let outcome = try await store.resend(
            from: Timestamp(millisecondsSinceEpoch: baseTime), to: Timestamp(millisecondsSinceEpoch: baseTime + 200_000),
            device: nil, patient: nil, limit: 1000, record: record("p"), pruneIssuedBefore: Timestamp(millisecondsSinceEpoch: 0))
        #expect(outcome.rangePartlyPruned)
        #expect(outcome.requeued == 100)
        await store.close()
    }
}
