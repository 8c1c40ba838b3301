import Testing
@testable import ReadingStore
import VitalSigns

/// The audit log and the technician views' queries, on a real SQLite file.
@Suite struct AccessViewsStoreTests {
    private func record(_ i: Int, patients: [String] = ["patient-1"]) -> AuditRecord {
        AuditRecord(at: Timestamp(millisecondsSinceEpoch: baseTime + Int64(i) * 1000), uid: 1000 + UInt32(i), user: "tech\(i)",
                    pid: 4000 + Int32(i), role: i == 0 ? "admin" : "member", command: "readings",
                    arguments: ["limit", "vital"], patients: patients.map { PatientID($0) }, succeeded: i != 2)
    }

    @Test func auditRecordsAreAppendedAndListedNewestLast() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        #expect(store.appliedMigrations.contains("0005-audit"))
        var sequences: [Int64] = []
        for i in 0..<5 { sequences.append(try await store.appendAudit(record(i, patients: i == 3 ? [] : ["patient-1", "p,2"]))) }
        #expect(sequences == [1, 2, 3, 4, 5])

        let all = try store.auditRecords(limit: 100)
        #expect(all.map(\.sequence) == [1, 2, 3, 4, 5])
        var expected = record(2, patients: ["patient-1", "p,2"])
        expected.sequence = 3
        #expect(all[2] == expected, "every field survives the round trip, a comma in a patient ID included")
        #expect(all[3].patients.isEmpty)
        #expect(try store.auditRecords(limit: 2).map(\.sequence) == [4, 5], "the newest, oldest first")
        let since = Timestamp(millisecondsSinceEpoch: baseTime + 3000)
        #expect(try store.auditRecords(since: since, limit: 100).map(\.sequence) == [4, 5])
        await store.close()
    }

    @Test func theAuditLogRefusesUpdateAndDelete() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        try await store.appendAudit(record(0))
        for sql in ["UPDATE audit_log SET user = 'mallory'", "DELETE FROM audit_log", "UPDATE audit_log SET patients = '[]' WHERE seq = 1"] {
            do {
                try await store.executeForTesting(sql)
                Issue.record("\(sql) succeeded")
            } catch {
                #expect(error.sqliteMessage?.contains("append-only") == true || error.message.contains("append-only"), "\(error)")
            }
        }
        #expect(try store.auditRecords(limit: 10).first?.user == "tech0", "the record is unchanged")
        await store.close()
    }

    @Test func latestReadingsFiltersAndBounds() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        var readings: [Reading] = []
        for i in 0..<60 {
            readings.append(makeReading(i, device: i % 2 == 0 ? "oxi" : "cuff", patient: i % 3 == 0 ? "patient-2" : "patient-1",
                                        vital: i % 2 == 0 ? .spo2 : .pulseRate))
        }
        try await store.commit(readings)

        let tail = try store.latestReadings(ReadingFilter(), limit: 5)
        #expect(tail.map(\.reading) == Array(readings.suffix(5)), "the newest five, oldest first")
        #expect(tail.allSatisfy { !$0.delivered })

        let oxi = try store.latestReadings(ReadingFilter(device: "oxi"), limit: 3)
        #expect(oxi.map(\.reading) == [readings[54], readings[56], readings[58]])
        let pulse = try store.latestReadings(ReadingFilter(vital: "pulse_rate"), limit: 2)
        #expect(pulse.map(\.reading) == [readings[57], readings[59]])
        let p2 = try store.latestReadings(ReadingFilter(patient: "patient-2", vital: "spo2"), limit: 100)
        #expect(p2.map(\.reading) == stride(from: 0, to: 60, by: 6).map { readings[$0] })
        let since = try store.latestReadings(ReadingFilter(since: readings[57].measuredAt), limit: 100)
        #expect(since.map(\.reading) == Array(readings[57...]))
        #expect(try store.latestReadings(ReadingFilter(device: "nobody"), limit: 10).isEmpty)
        await store.close()
    }

    /// Every form walks an index: no full scan of `readings`, no sort of all matching rows.
    @Test(arguments: [
        ReadingFilter(), ReadingFilter(device: "d"), ReadingFilter(patient: "p"), ReadingFilter(vital: "spo2"),
        ReadingFilter(device: "d", vital: "spo2"), ReadingFilter(patient: "p", vital: "spo2"),
        ReadingFilter(since: Timestamp(millisecondsSinceEpoch: 0)), ReadingFilter(patient: "p", since: Timestamp(millisecondsSinceEpoch: 0)),
    ])
    func latestReadingsUseAnIndex(_ filter: ReadingFilter) async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        let (sql, _) = ReadingStore.latestReadingsQuery(filter)
        let plan = try await store.withWriteConnection { (db) throws(StoreError) -> [String] in
            try db.withStatement("EXPLAIN QUERY PLAN " + sql, operation: "plan") { (s) throws(StoreError) in
                var rows: [String] = []
                while try s.step() { rows.append(s.text(3)) }
                return rows
            }
        }
        if filter == ReadingFilter() {
            // Unfiltered: the table itself is walked from its newest rowid, LIMIT rows.
            #expect(plan == ["SCAN readings"], "\(plan)")
        } else {
            #expect(!plan.contains { $0.hasPrefix("SCAN readings") && !$0.contains("USING") }, "\(plan)")
        }
        #expect(!plan.contains("USE TEMP B-TREE FOR ORDER BY"), "\(plan)")
        await store.close()
    }

    @Test func escalationsViewOpenOrRecent() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        try await store.commit(escalations: [makeEscalation(1), makeEscalation(2, state: .resolved), makeEscalation(3, state: .acknowledged)])
        #expect(try store.escalations(includeResolved: false, limit: 10).map(\.rule) == ["spo2-low-3", "spo2-low-1"])
        #expect(try store.escalations(includeResolved: true, limit: 2).map(\.rule) == ["spo2-low-3", "spo2-low-2"])
        await store.close()
    }
}
