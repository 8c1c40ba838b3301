import Testing
@testable import ReadingStore
import VitalSigns

/// A device whose clock the gateway does not believe and that numbers nothing (a BLE blood
/// pressure monitor with a wrong clock) sends an unconfirmed measurement again after a
/// reconnect — after a `kill -9` of vigild, every time. The gateway stamps each arrival with
/// its receive time, so the unique key (device, measured_at, reading_id) differs, but the ID
/// comes from what the device said and is the same: the second commit must be a no-op, or
/// the reading gets a second outbox row and is forwarded again (issue 8, kill9-ble duplicates).
@Suite struct ResentRecordTests {
    func resent(receivedAt: Int64, sequence: UInt64?) -> Reading {
        let device = DeviceID("bp-cuff")
        let stated = Timestamp(millisecondsSinceEpoch: 946_684_800_000)  // 2000-01-01: not believed
        let received = Timestamp(millisecondsSinceEpoch: receivedAt)
        return Reading(
            id: .derive(device: device, vital: .systolicPressure, measuredAt: stated, sequence: sequence),
            patient: PatientID("patient-1"), device: device, vital: .systolicPressure,
            quantity: Quantity(120, Vital.systolicPressure.unit),
            measuredAt: received, receivedAt: received, flags: [.deviceClockUnreliable], sequence: sequence)
    }

    @Test(arguments: [nil, 7] as [UInt64?])
    func aRecordSentAgainWithAnUnbelievedClockIsStoredOnce(sequence: UInt64?) async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        let first = resent(receivedAt: baseTime, sequence: sequence)
        let again = resent(receivedAt: baseTime + 5_000, sequence: sequence)
        #expect(first.id == again.id && first.measuredAt != again.measuredAt)
        try await store.commit([first])
        try await store.commit([again])
        let rows = try await store.pending(lane: .readings, after: 0, limit: 10)
        #expect(rows.count == 1, "one outbox row per reading ID")
        #expect(rows.first?.reading?.measuredAt == first.measuredAt)
        await store.close()
    }

    /// The look-up runs on every flagged insert: it must use the partial index of migration
    /// 0007, not walk the device's rows through readings_identity.
    @Test func theResentRecordLookUpUsesItsPartialIndex() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        let plan = try await store.withWriteConnection { (db) throws(StoreError) -> [String] in
            try db.withStatement("EXPLAIN QUERY PLAN " + StoreWriter.resentRecordQuery, operation: "plan") { (s) throws(StoreError) in
                var rows: [String] = []
                while try s.step() { rows.append(s.text(3)) }
                return rows
            }
        }
        #expect(plan.count == 1 && plan[0].contains("INDEX readings_unreliable_clock (device=? AND reading_id=?)"), "\(plan)")
        await store.close()
    }
}
