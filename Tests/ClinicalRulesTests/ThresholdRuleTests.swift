import ClinicalRules
import Testing
import VitalSigns

private let patient = PatientID("patient-test")
private let t0 = Timestamp(secondsSinceEpoch: 1_764_000_000)

private func spo2(_ value: Double, at second: Int64, flags: QualityFlags = []) -> Reading {
    let sample = VitalSample(vital: .spo2, quantity: Quantity(value, "%"), deviceTime: CivilDateTime(utc: t0.adding(seconds: second)), flags: flags)
    return Reading(sample: sample, device: "ox-1", patient: patient, receivedAt: t0.adding(seconds: second))
}

private let lowRule = ThresholdRule(id: "spo2-low", vital: .spo2, direction: .below, limit: 90, severity: .urgent,
                                    sustainedSeconds: 60, hysteresis: 2, maxGapSeconds: 10)
private func engine() -> RuleEngine { RuleEngine(plan: CarePlan(patient: patient, version: 7, thresholds: [lowRule])) }

@Suite struct ThresholdRuleTests {
    @Test func raisesOnlyOnceTheBreachHasLastedTheSustainedDuration() {
        var e = engine()
        var events: [Escalation] = []
        for s in 0..<60 { events += e.ingest(spo2(88, at: Int64(s))) }
        #expect(events.isEmpty, "59 s of breach must not raise a 60 s rule")
        events += e.ingest(spo2(87, at: 60))
        #expect(events.count == 1)
        let raised = events[0]
        #expect(raised.state == .open)
        #expect(raised.rule == "spo2-low")
        #expect(raised.severity == .urgent)
        #expect(raised.carePlanVersion == 7)
        #expect(raised.patient == patient)
        #expect(raised.openedAt == t0.adding(seconds: 60))
        #expect(raised.triggeringReadings.count == RuleEngine.maxTriggeringReadings)
        #expect(raised.triggeringReadings.first == spo2(88, at: 0).id)
        #expect(raised.triggeringReadings.last == spo2(87, at: 60).id)
        #expect(raised.summary == "spo2 below 90 % for 60 s")
        // Still breaching: no repeat.
        #expect(e.ingest(spo2(86, at: 61)).isEmpty)
    }

    @Test func aValueAtTheLimitDoesNotBreach() {
        var e = RuleEngine(plan: CarePlan(patient: patient, version: 1, thresholds: [
            ThresholdRule(id: "spo2-low", vital: .spo2, direction: .below, limit: 90, severity: .urgent),
        ]))
        #expect(e.ingest(spo2(90, at: 0)).isEmpty)
        #expect(e.ingest(spo2(89.9, at: 1)).count == 1)
    }

    @Test func aCleanReadingInsideTheLimitEndsTheEpisodeBeforeItRaises() {
        var e = engine()
        for s in 0..<50 { _ = e.ingest(spo2(88, at: Int64(s))) }
        _ = e.ingest(spo2(95, at: 50))
        var events: [Escalation] = []
        for s in 51..<100 { events += e.ingest(spo2(88, at: Int64(s))) }
        #expect(events.isEmpty, "the 60 s window restarts after a normal reading")
        events += e.ingest(spo2(88, at: 111))
        #expect(events.isEmpty, "a gap longer than max_gap_seconds restarts the window")
    }

    @Test func flaggedReadingsNeitherStartExtendNorEndAnEpisode() {
        var e = engine()
        var events: [Escalation] = []
        for s in 0...120 { events += e.ingest(spo2(70, at: Int64(s), flags: .artifact)) }
        #expect(events.isEmpty, "artifact-flagged values never escalate on their own")
        for s in 200...260 { events += e.ingest(spo2(85, at: Int64(s))) }
        #expect(events.count == 1)
        events += e.ingest(spo2(99, at: 261, flags: .sensorOff))
        #expect(events.count == 1, "a flagged normal value does not resolve")
    }

    @Test func resolvesOnlyPastTheHysteresisBand() {
        var e = engine()
        for s in 0...60 { _ = e.ingest(spo2(85, at: Int64(s))) }
        #expect(e.raised.count == 1)
        let openID = e.raised.first?.id
        #expect(e.ingest(spo2(91, at: 61)).isEmpty, "91 is inside the 2-point hysteresis band")
        let resolved = e.ingest(spo2(92, at: 62))
        #expect(resolved.count == 1)
        #expect(resolved.first?.state == .resolved)
        #expect(resolved.first?.id == openID)
        #expect(e.raised.isEmpty)
    }

    @Test func restoredEscalationsAreNotRaisedAgain() {
        var first = engine()
        var raised: [Escalation] = []
        for s in 0...60 { raised += first.ingest(spo2(85, at: Int64(s))) }
        #expect(raised.count == 1)
        var second = engine()
        second.restore(open: raised)
        var again: [Escalation] = []
        for s in 61...200 { again += second.ingest(spo2(85, at: Int64(s))) }
        #expect(again.isEmpty)
        let resolved = second.ingest(spo2(97, at: 201))
        #expect(resolved.map(\.id) == raised.map(\.id))
    }

    @Test func replayingTheSameHistoryGivesTheSameEscalations() {
        let history = (0..<400).map { s in spo2(s % 150 < 90 ? 86 : 97, at: Int64(s)) }
        // A one-minute re-alert interval: each 150 s cycle is a fresh, notified episode.
        func run() -> [Escalation] {
            var e = RuleEngine(plan: CarePlan(patient: patient, version: 7, thresholds: [lowRule], realertSeconds: 60))
            return history.flatMap { e.ingest($0) }
        }
        let a = run(), b = run()
        #expect(a == b)
        #expect(a.filter { $0.state == .open }.count == 3)
        // With the default 30-minute interval the later episodes open within it of the first
        // resolution and are held back (suppressed): only the first is sent.
        var e = engine()
        let d = history.flatMap { e.ingest($0) }
        #expect(d.map(\.state) == [.open, .resolved])
    }

    @Test func otherPatientsAndVitalsAreIgnored() {
        var e = engine()
        let other = Reading(sample: VitalSample(vital: .spo2, quantity: Quantity(50, "%"), deviceTime: nil),
                            device: "ox-2", patient: "someone-else", receivedAt: t0)
        let pulse = Reading(sample: VitalSample(vital: .pulseRate, quantity: Quantity(20, "/min"), deviceTime: nil),
                            device: "ox-1", patient: patient, receivedAt: t0)
        for _ in 0..<5 { #expect(e.ingest(other).isEmpty); #expect(e.ingest(pulse).isEmpty) }
    }
}
