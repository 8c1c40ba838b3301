import ClinicalRules
import Testing
import VitalSigns

/// Lifecycle tests: time is the readings' measured time and `tick(now:)`; nothing sleeps.
@Suite struct LifecycleTests {
    /// SpO2 below 90 urgent, below 85 emergency (two severities of one rule via the SpO2 model
    /// is the model's job; here a plain threshold plus hysteresis).
    static let yaml = """
        realert_minutes: 30
        thresholds:
          - {id: spo2-low, vital: spo2, below: 90, severity: urgent, hysteresis: 2}
        """

    @Test func renotifiesOncePerIntervalWhileUnacknowledgedAndNotAfterAcknowledgement() throws {
        var e = RuleEngine(plan: try plan(Self.yaml))
        let open = e.ingest(reading(.spo2, 88, at: 0))
        #expect(open.map(\.state) == [.open])
        #expect(e.ingest(reading(.spo2, 88, at: 1799)).isEmpty, "inside the re-alert interval: suppressed")
        let again = e.ingest(reading(.spo2, 88, at: 1800))
        #expect(again.map(\.state) == [.renotified] && again.first?.id == open.first?.id)
        let acknowledged = e.acknowledge(id: open[0].id, by: "nurse-7", at: midnight.adding(seconds: 1900))
        let ack = try #require(acknowledged)
        #expect(ack.state == .acknowledged && ack.acknowledgedBy == "nurse-7" && ack.acknowledgedAt == midnight.adding(seconds: 1900))
        let twice = e.acknowledge(id: open[0].id, by: "nurse-7", at: midnight.adding(seconds: 1901))
        #expect(twice == nil, "idempotent")
        let unknown = e.acknowledge(id: "no-such-id", by: "x", at: midnight)
        #expect(unknown == nil)
        #expect(e.feed((0..<10).map { reading(.spo2, 88, at: 4000 + Int64($0) * 1800) }).isEmpty, "acknowledged: no re-alerts")
        #expect(e.raised.first?.state == .acknowledged)
    }

    @Test func hysteresisHoldsTheEscalationUntilTheValueIsPastTheBand() throws {
        var e = RuleEngine(plan: try plan(Self.yaml))
        _ = e.ingest(reading(.spo2, 88, at: 0))
        #expect(e.ingest(reading(.spo2, 90, at: 10)).isEmpty, "at the limit: not breaching, not clear")
        #expect(e.ingest(reading(.spo2, 91.9, at: 20)).isEmpty)
        let resolved = e.ingest(reading(.spo2, 92, at: 30))
        #expect(resolved.map(\.state) == [.resolved])
        #expect(resolved.first?.values.last?.value == 92, "the resolving value is traced")
        #expect(e.raised.isEmpty)
    }

    @Test func anUpgradePassesAtOnceEvenWhenAcknowledgedAndEmergencyIsNeverSuppressed() throws {
        var e = RuleEngine(plan: try plan("models: {spo2: {sustained_seconds: 0}}"))
        let first = e.ingest(reading(.spo2, 93, at: 0))
        #expect(first.map(\.severity) == [.urgent])
        _ = e.acknowledge(id: first[0].id, by: "n", at: midnight.adding(seconds: 5))
        let up = e.ingest(reading(.spo2, 91, at: 10))
        #expect(up.map(\.state) == [.renotified] && up.map(\.severity) == [.emergency], "upgrade bypasses ack and interval")
        #expect(up.first?.id == first.first?.id, "same episode")
        #expect(e.ingest(reading(.spo2, 97, at: 20)).map(\.state) == [.resolved])
        // A new emergency episode within the interval of that resolution is sent at once…
        #expect(e.ingest(reading(.spo2, 90, at: 30)).map(\.state) == [.open])
        _ = e.ingest(reading(.spo2, 97, at: 40))
        // …but a new urgent one within it is held back, then sent once the interval has passed.
        #expect(e.ingest(reading(.spo2, 93, at: 50)).isEmpty)
        let late = e.ingest(reading(.spo2, 93, at: 40 + 1800))
        #expect(late.map(\.state) == [.open] && late.first?.severity == .urgent)
    }

    @Test func aHeldBackEpisodeThatClearsSendsNothingAndAnUpgradeSendsItAtOnce() throws {
        var e = RuleEngine(plan: try plan("models: {spo2: {sustained_seconds: 0}}"))
        _ = e.feed([reading(.spo2, 93, at: 0), reading(.spo2, 97, at: 10)])
        #expect(e.feed([reading(.spo2, 93, at: 20), reading(.spo2, 97, at: 30)]).isEmpty, "held back and cleared: silent")
        #expect(e.ingest(reading(.spo2, 93, at: 40)).isEmpty)
        let up = e.ingest(reading(.spo2, 92, at: 50))
        #expect(up.map(\.state) == [.open] && up.first?.severity == .emergency)
    }

    @Test func confirmationWithinMinutesForSpotChecks() throws {
        var e = RuleEngine(plan: try plan("thresholds:\n  - {id: sbp-high, vital: systolic_bp, above: 160, severity: advisory, confirm_within_minutes: 5}"))
        #expect(e.ingest(reading(.systolicPressure, 170, at: 0)).isEmpty)
        #expect(e.ingest(reading(.systolicPressure, 150, at: 60)).isEmpty, "a normal repeat ends it")
        #expect(e.ingest(reading(.systolicPressure, 170, at: 120)).isEmpty)
        let out = e.ingest(reading(.systolicPressure, 165, at: 300))
        #expect(out.map(\.state) == [.open] && out.first?.triggeringReadings.count == 2)
    }

    @Test func restartInTheMiddleOfAnOpenEscalationNeitherLosesNorRepeatsIt() throws {
        let p = try plan(Self.yaml)
        let history = (0..<4000).map { reading(.spo2, $0 < 3000 ? 88 : 97, at: Int64($0)) }
        var uninterrupted = RuleEngine(plan: p)
        let expected = uninterrupted.feed(history)
        #expect(expected.map(\.state) == [.open, .renotified, .resolved])

        // Run to 2500 s, "crash", restore from what was stored (the latest event per rule)
        // and replay a window that starts before the last stored event.
        var before = RuleEngine(plan: p)
        let stored = before.feed(Array(history.prefix(2500)))
        var after = RuleEngine(plan: p)
        after.restore(open: [stored.last].compactMap { $0 })
        let replayed = after.feed(Array(history[1000...]))
        #expect(stored + replayed == expected)
    }

    @Test func aReplayWindowBeginningMidEpisodeDoesNotInventALookAlike() throws {
        let p = try plan(Self.yaml)
        var first = RuleEngine(plan: p)
        let stored = first.feed((0..<200).map { reading(.spo2, $0 < 100 ? 88 : 97, at: Int64($0)) })
        #expect(stored.map(\.state) == [.open, .resolved])
        var restarted = RuleEngine(plan: p)
        restarted.restore(open: [stored[1]])
        #expect(restarted.feed((50..<200).map { reading(.spo2, $0 < 100 ? 88 : 97, at: Int64($0)) }).isEmpty)
    }

    @Test func severityNeverGoesDownWhileOpen() throws {
        var e = RuleEngine(plan: try plan("models: {spo2: {sustained_seconds: 0}}"))
        _ = e.ingest(reading(.spo2, 91, at: 0))
        _ = e.ingest(reading(.spo2, 93, at: 4000))
        #expect(e.raised.first?.severity == .emergency)
    }

    @Test func applyingANewPlanKeepsUnchangedRulesEpisodes() throws {
        var e = RuleEngine(plan: try plan(Self.yaml))
        _ = e.ingest(reading(.spo2, 88, at: 0))
        e.apply(plan: try plan(Self.yaml + "\nmodels: {glucose: {}}"))
        #expect(e.raised.map(\.rule) == ["spo2-low"])
        e.apply(plan: try plan("thresholds:\n  - {id: spo2-low, vital: spo2, below: 85, severity: urgent}"))
        #expect(e.raised.isEmpty, "a changed definition starts afresh")
    }
}
