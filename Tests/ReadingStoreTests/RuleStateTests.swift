import Testing
@testable import ReadingStore
import VitalSigns

/// Schema 0002-rule-state: hourly summaries for the rules' baselines, the latest escalation
/// per rule, and the escalation payload's lifecycle fields.
@Suite struct RuleStateTests {
    static let hour: Int64 = 3_600_000
    /// An hour boundary near baseTime.
    static let h0 = baseTime / hour * hour

    static func weight(_ value: Double, at ms: Int64, flags: QualityFlags = [], unit: String = "kg", patient: String = "patient-1") -> Reading {
        let t = Timestamp(millisecondsSinceEpoch: ms)
        return Reading(id: .derive(device: "scale", vital: .bodyWeight, measuredAt: t, sequence: nil, arrival: t),
                       patient: PatientID(patient), device: "scale", vital: .bodyWeight, quantity: Quantity(value, unit),
                       measuredAt: t, receivedAt: t, flags: flags, sequence: nil)
    }

    @Test func cleanReadingsAreSummarisedPerHourInTheCommit() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        let h0 = Self.h0
        let a = Self.weight(80, at: h0 + 600_000), b = Self.weight(82, at: h0 + 1_200_000)
        try await store.commit([a, b,
                                Self.weight(99, at: h0 + 900_000, flags: .bodyMovement),   // flagged: not summarised
                                Self.weight(.nan, at: h0 + 901_000),                        // no value
                                Self.weight(176, at: h0 + 902_000, unit: "[lb_av]"),        // not the canonical unit
                                Self.weight(70, at: h0 + Self.hour + 1, patient: "patient-2")])
        try await store.commit([a])                                                         // a duplicate is not counted twice
        try await store.commit([Self.weight(79, at: h0 + 60_000)])                          // earlier: becomes the hour's first
        let rows = try store.vitalHourSummaries(from: Timestamp(millisecondsSinceEpoch: h0), to: Timestamp(millisecondsSinceEpoch: h0 + 2 * Self.hour))
        #expect(rows.count == 2)
        let p1 = try #require(rows.first { $0.patient == "patient-1" })
        #expect(p1.count == 3 && p1.sum == 241 && p1.vital == "body_weight")
        #expect(p1.firstValue == 79 && p1.firstAt.millisecondsSinceEpoch == h0 + 60_000)
        #expect(p1.lastValue == 82 && p1.lastAt == b.measuredAt)
        #expect(p1.hourStart.millisecondsSinceEpoch == h0)
        // Bounded by time and by patient.
        #expect(try store.vitalHourSummaries(patient: "patient-2", from: Timestamp(millisecondsSinceEpoch: h0),
                                             to: Timestamp(millisecondsSinceEpoch: h0 + 2 * Self.hour)).map(\.count) == [1])
        #expect(try store.vitalHourSummaries(from: Timestamp(millisecondsSinceEpoch: h0 + Self.hour),
                                             to: Timestamp(millisecondsSinceEpoch: h0 + Self.hour + 1)).map(\.patient) == ["patient-2"])
        await store.close()
    }

    @Test func theLatestEventOfEachRuleAndEveryOpenOneAreRestored() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        var a = makeEscalation(1)
        try await store.commit(escalations: [a])
        a.state = .resolved
        a.at = a.at.adding(seconds: 60)
        let b = makeEscalation(2)
        var c = makeEscalation(3)
        c.rule = a.rule
        c.patient = "patient-2"
        try await store.commit(escalations: [a, b, c])
        let latest = try store.latestEscalationPerRule()
        #expect(Set(latest) == [a, b, c])
        #expect(latest.first { $0.rule == a.rule && $0.patient == "patient-1" }?.state == .resolved)
        // Reopen a's rule with a new episode: the open one and nothing older comes back.
        var d = makeEscalation(4)
        d.rule = a.rule
        try await store.commit(escalations: [d])
        #expect(Set(try store.latestEscalationPerRule()) == [d, b, c])
        await store.close()
    }

    @Test func acknowledgementAndDetailSurviveTheStoreAndOldPayloadsStillDecode() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        var e = makeEscalation(1, state: .acknowledged)
        e.acknowledgedBy = "nurse-7"
        e.acknowledgedAt = Timestamp(millisecondsSinceEpoch: baseTime + 99)
        e.detail = ["label": "NEWS2 (home-measured, not validated outside hospital)", "total": "5"]
        try await store.commit(escalations: [e])
        #expect(try store.openEscalations() == [e])
        #expect(try store.escalationState(id: e.id) == .acknowledged)
        // A format-1 row (written before schema 0002) is the format-2 encoding without its
        // three trailing "absent" markers.
        var plain = makeEscalation(2)
        plain.detail = nil
        var bytes = PayloadCodec.encode(plain)
        bytes.removeLast(3)
        bytes[0] = 1
        #expect(try PayloadCodec.decodeEscalation(bytes, row: "old") == plain)
        bytes[0] = 9
        #expect(throws: StoreError.self) { try PayloadCodec.decodeEscalation(bytes, row: "old") }
        await store.close()
    }

    @Test func theMigrationBackFillsSummariesFromReadingsAlreadyStored() async throws {
        let dir = TemporaryDirectory()
        let path = dir.file("old.sqlite")
        // A database at schema 0001 with readings in it, as an earlier Vigil left it.
        do {
            let db = try SQLiteConnection(path: path, readOnly: false, create: true)
            _ = try db.pragma("journal_mode = WAL", operation: "test")
            _ = try Schema.migrate(db, list: Array(Schema.migrations.prefix(1))) { 0 }
            let h0 = Self.h0
            try db.execute("""
                INSERT INTO readings (reading_id, patient, device, vital, value, unit, measured_at, received_at, flags)
                VALUES ('r1', 'patient-1', 'scale', 'body_weight', 81.0, 'kg', \(h0 + 100), \(h0 + 100), 0),
                       ('r2', 'patient-1', 'scale', 'body_weight', 80.0, 'kg', \(h0 + 50), \(h0 + 50), 0),
                       ('r3', 'patient-1', 'scale', 'body_weight', 82.0, 'kg', \(h0 + 200), \(h0 + 200), 0),
                       ('r4', 'patient-1', 'scale', 'body_weight', 99.0, 'kg', \(h0 + 300), \(h0 + 300), 64),
                       ('r5', 'patient-1', 'scale', 'body_weight', 176, '[lb_av]', \(h0 + 400), \(h0 + 400), 0);
                """, operation: "test")
            db.close()
        }
        let store = try openStore(dir, name: "old.sqlite")
        #expect(store.appliedMigrations == Schema.migrations.dropFirst().map(\.name), "0002-rule-state and every later migration")
        let rows = try store.vitalHourSummaries(from: Timestamp(millisecondsSinceEpoch: 0), to: Timestamp(millisecondsSinceEpoch: .max))
        #expect(rows.count == 1)
        #expect(rows.first.map { ($0.count, $0.sum, $0.firstValue, $0.lastValue) } ?? (0, 0, 0, 0) == (3, 243, 80, 82))
        await store.close()
    }
}
