import ClinicalRules
import Testing
import VitalSigns

@Suite struct ModelTests {
    @Test(arguments: [
        (70.0, "mg/dL", nil as Severity?), (69.9, "mg/dL", .urgent), (54.0, "mg/dL", .urgent), (53.9, "mg/dL", .emergency),
        (3.9, "mmol/L", nil), (3.8, "mmol/L", .urgent), (2.9, "mmol/L", .emergency),
    ])
    func glucoseLowLevels(value: Double, unit: String, expected: Severity?) throws {
        // 3.9 mmol/L × 18.016 = 70.26 mg/dL: not below 70.
        var e = RuleEngine(plan: try plan("models: {glucose: {}}"))
        let out = e.ingest(reading(.bloodGlucose, value, at: 0, unit: unit))
        #expect(out.first?.severity == expected)
        #expect(out.allSatisfy { $0.rule == "glucose-low" })
    }

    @Test func glucoseHighIsStrictlyAbove250() throws {
        var e = RuleEngine(plan: try plan("models: {glucose: {}}"))
        #expect(e.ingest(reading(.bloodGlucose, 250, at: 0)).isEmpty)
        #expect(e.ingest(reading(.bloodGlucose, 250.1, at: 60)).map(\.rule) == ["glucose-high"])
    }

    @Test func bpCrisisNeedsALaterRepeatNotTheOtherHalfOfTheSameReading() throws {
        var e = RuleEngine(plan: try plan("models: {bp_crisis: {}}"))
        #expect(e.ingest(reading(.systolicPressure, 180, at: 0)).isEmpty, "≥ 180 breaches, but is not yet confirmed")
        #expect(e.ingest(reading(.diastolicPressure, 121, at: 0)).isEmpty, "same measurement: no confirmation")
        let out = e.ingest(reading(.systolicPressure, 150, at: 120)) + e.ingest(reading(.diastolicPressure, 120, at: 120))
        #expect(out.map(\.state) == [.open], "diastolic ≥ 120 alone, 2 min later, confirms")
        #expect(Set(out.first?.values.map(\.vital) ?? []) == ["systolic_bp", "diastolic_bp"])
        // Resolves only on a measurement with both below.
        #expect(e.ingest(reading(.systolicPressure, 140, at: 3600)).isEmpty)
        #expect(e.ingest(reading(.diastolicPressure, 85, at: 3600)).map(\.state) == [.resolved])
    }

    @Test func bpCrisisRepeatOutsideTheWindowStartsAgain() throws {
        var e = RuleEngine(plan: try plan("models: {bp_crisis: {}}"))
        #expect(e.ingest(reading(.systolicPressure, 185, at: 0)).isEmpty)
        #expect(e.ingest(reading(.systolicPressure, 185, at: 301)).isEmpty, "5 min + 1 s later: a new first reading")
        #expect(e.ingest(reading(.systolicPressure, 185, at: 400)).map(\.state) == [.open])
        var strict = RuleEngine(plan: try plan("models: {bp_crisis: {inclusive: false}}"))
        #expect(strict.feed([reading(.systolicPressure, 180, at: 0), reading(.systolicPressure, 180, at: 60)]).isEmpty)
    }

    @Test func hypotensionAtOrBelow90Confirmed() throws {
        var e = RuleEngine(plan: try plan("models: {hypotension: {}}"))
        #expect(e.feed([reading(.systolicPressure, 91, at: 0), reading(.systolicPressure, 90, at: 60)]).isEmpty)
        #expect(e.ingest(reading(.systolicPressure, 88, at: 120)).map(\.rule) == ["hypotension"])
    }

    @Test func spo2BelowTargetFollowsTheScaleAndIsSustained() throws {
        var s1 = RuleEngine(plan: try plan("models: {spo2: {}}"))
        let dip = (0...20).map { reading(.spo2, 93, at: Int64($0)) }
        #expect(s1.feed(Array(dip.prefix(20))).isEmpty, "19 s is not 20 s")
        #expect(s1.ingest(dip[20]).map(\.severity) == [.urgent])
        #expect(s1.feed((21...41).map { reading(.spo2, 92, at: Int64($0)) }).map(\.severity) == [.emergency], "≤ 92 sustained upgrades")
        var s2 = RuleEngine(plan: try plan("news2: {scale: 2}\nmodels: {spo2: {}}"))
        #expect(s2.feed(dip).filter { $0.rule == "spo2-below-target" }.isEmpty, "93 % is in the 88–92 % target's upper side")
    }

    @Test func spo2FallFromPersonalBaseline() throws {
        var e = RuleEngine(plan: try plan("models: {spo2: {target_low: 80, emergency_below: 70}}"))
        for d in 0..<3 { _ = e.feed((0..<10).map { reading(.spo2, 97, at: Int64(d) * day + 36_000 + Int64($0)) }) }
        // Baseline 97: 95 is a fall of 2, 94 of 3.
        #expect(e.feed((0...25).map { reading(.spo2, 95, at: 3 * day + 36_000 + Int64($0)) }).isEmpty)
        let out = e.feed((0...25).map { reading(.spo2, 94, at: 3 * day + 40_000 + Int64($0)) })
        #expect(out.map(\.rule) == ["spo2-fall"])
        #expect(out.first?.detail?["baseline_percent"] == "97")
    }

    @Test func feverAndRiseAboveBaseline() throws {
        var e = RuleEngine(plan: try plan("models: {temperature: {}}"))
        for d in 0..<3 { _ = e.ingest(reading(.bodyTemperature, 36.5, at: Int64(d) * day + 32_400)) }
        #expect(e.ingest(reading(.bodyTemperature, 37.6, at: 3 * day)).isEmpty, "a rise of exactly 1.1 is not more than 1.1")
        #expect(e.ingest(reading(.bodyTemperature, 37.7, at: 3 * day + 60)).map(\.rule) == ["temperature-rise"])
        #expect(e.ingest(reading(.bodyTemperature, 38.0, at: 3 * day + 120)).map(\.rule) == ["fever"])
    }

    @Test func tachycardiaAndBradycardiaOnEitherHeartRateVital() throws {
        var e = RuleEngine(plan: try plan("models: {heart_rate: {sustained_seconds: 10}}"))
        #expect(e.feed((0...10).map { reading(.pulseRate, 131, at: Int64($0)) }).map(\.rule) == ["tachycardia"])
        #expect(e.feed((20...30).map { reading(.heartRate, 40, at: Int64($0)) }).map(\.rule).contains("bradycardia"))
    }

    @Test func expectedReadingMissingUsesThePatientsLocalTimeAndDeviceSilenceIsAnEvent() throws {
        // UTC+2: 11:00 local is 09:00 UTC.
        var e = RuleEngine(plan: try plan("""
            utc_offset_minutes: 120
            device_silent_minutes: 60
            expected_readings: [{id: weight-missing, vital: body_weight, by: "11:00"}]
            """))
        _ = e.ingest(reading(.spo2, 97, at: 0, device: "ox"))
        #expect(e.tick(now: midnight.adding(seconds: 1800)) == RuleOutput(), "30 min: not silent yet")
        let at1059 = e.tick(now: midnight.adding(seconds: 8 * 3600 + 3540))
        #expect(at1059.escalations.isEmpty, "10:59 local")
        #expect(at1059.events.map(\.kind) == ["device_silent"] && at1059.events.first?.detail["device"] == "ox")
        let at11 = e.tick(now: midnight.adding(seconds: 9 * 3600))
        #expect(at11.escalations.map(\.rule) == ["weight-missing"])
        #expect(at11.escalations.first?.severity == .advisory)
        #expect(e.tick(now: midnight.adding(seconds: 12 * 3600)) == RuleOutput(), "once a day, and silence reported once")
        // A restart the same day restores the open escalation and does not judge the day again.
        var restarted = RuleEngine(plan: e.plan)
        restarted.restore(open: at11.escalations)
        #expect(restarted.tick(now: midnight.adding(seconds: 12 * 3600)).escalations.isEmpty)
        #expect(restarted.raised.map(\.rule) == ["weight-missing"])
        #expect(e.ingest(reading(.bodyWeight, 80, at: 12 * 3600 + 60)).map(\.state) == [.resolved])
        _ = e.ingest(reading(.spo2, 97, at: 13 * 3600, device: "ox"))
        // Next local day before 11:00: the day already has no weight, but it is not yet due.
        #expect(e.tick(now: midnight.adding(seconds: day + 8 * 3600)).escalations.isEmpty)
    }

    @Test func news2AsAModelIsLabelledListsGapsAndRedScoresStillAlert() throws {
        var e = RuleEngine(plan: try plan("news2: {air_or_oxygen: air, consciousness: alert, window_minutes: 60}"))
        // Only SpO2 (91 → red 3): no total, urgent from the red score.
        let red = e.ingest(reading(.spo2, 91, at: 0))
        #expect(red.map(\.severity) == [.urgent])
        let d = try #require(red.first?.detail)
        #expect(d["label"] == "NEWS2 (home-measured, not validated outside hospital)")
        #expect(d["total"] == "unavailable" && d["red_parameters"] == "spo2")
        #expect(d["missing"] == "respiration_rate,systolic_bp,pulse,temperature")
        #expect(red.first?.summary.contains("home-measured") == true)
    }

    @Test func news2TotalMapsToSeverityAndResolves() throws {
        var e = RuleEngine(plan: try plan("news2: {window_minutes: 60, air_or_oxygen: air, consciousness: alert}"))
        // RR 22 (2), SpO2 95 (1), SBP 105 (1), pulse 95 (1), temp 37 (0), air, alert → 5: urgent.
        var out = e.feed([reading(.respiratoryRate, 22, at: 0), reading(.spo2, 95, at: 1), reading(.systolicPressure, 105, at: 2),
                          reading(.pulseRate, 95, at: 3)])
        #expect(out.isEmpty, "temperature missing: no total, no red")
        out = e.ingest(reading(.bodyTemperature, 37, at: 4))
        #expect(out.map(\.severity) == [.urgent])
        #expect(out.first?.detail?["total"] == "5" && out.first?.detail?["band"] == "medium")
        // Pulse 135 (3): total 7 → emergency, an upgrade sent at once.
        #expect(e.ingest(reading(.pulseRate, 135, at: 5)).map(\.state) == [.renotified])
        // Everything normal: total 0 → resolves.
        out = e.feed([reading(.respiratoryRate, 16, at: 10), reading(.spo2, 97, at: 11), reading(.systolicPressure, 125, at: 12),
                      reading(.pulseRate, 70, at: 13)])
        #expect(out.map(\.state) == [.resolved])
        // A stale parameter withholds the total again.
        #expect(e.ingest(reading(.pulseRate, 70, at: 7200)).isEmpty)
    }
}
