import ClinicalRules
import Testing
import VitalSigns

/// Seeded property tests over random histories of every vital, with every model on.
@Suite struct PropertyTests {
    static let everyModel = """
        realert_minutes: 10
        thresholds:
          - {id: rr-high, vital: respiratory_rate, above: 24, severity: urgent, sustained_seconds: 30}
        news2: {air_or_oxygen: air, consciousness: alert}
        models:
          weight_gain: [{id: wg, amount: 2, days: 3}]
          weight_macd: {short_days: 2, long_days: 4, threshold: 0.3}
          weight_baseline: {days: 5, k: 1, consecutive: 1}
          bp_crisis: {}
          hypotension: {}
          glucose: {}
          spo2: {}
          temperature: {}
          heart_rate: {}
        expected_readings: [{id: weight-missing, vital: body_weight, by: "11:00"}]
        """

    static let vitals: [(Vital, ClosedRange<Double>)] = [
        (.spo2, 80...100), (.pulseRate, 30...160), (.heartRate, 30...160), (.respiratoryRate, 5...35),
        (.systolicPressure, 70...220), (.diastolicPressure, 40...130), (.bodyTemperature, 34.5...40.5),
        (.bodyWeight, 75...85), (.bloodGlucose, 40...320),
    ]

    static func history(seed: UInt64, count: Int, flags: (inout Mix) -> QualityFlags) -> [Reading] {
        var rng = Mix(state: seed)
        var t: Int64 = 0
        return (0..<count).map { _ in
            t += Int64(1 + rng.below(rng.below(10) == 0 ? 20_000 : 15))
            let (v, range) = vitals[rng.below(vitals.count)]
            return reading(v, (rng.uniform(range.lowerBound, range.upperBound) * 10).rounded() / 10, at: t, flags: flags(&rng))
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func flaggedReadingsNeverEscalateOnTheirOwn(seed: UInt64) throws {
        let unreliable = QualityFlags.names.map(\.0).filter { !$0.isDisjoint(with: .clinicallyUnreliable) }
        let readings = Self.history(seed: seed, count: 600) { rng in unreliable[rng.below(unreliable.count)] }
        var e = RuleEngine(plan: try plan(Self.everyModel))
        #expect(e.feed(readings).isEmpty)
    }

    @Test(arguments: [11, 12, 13] as [UInt64])
    func aFlaggedReadingAmongCleanOnesChangesNothing(seed: UInt64) throws {
        // Inserting flagged copies (with extreme values) between clean readings leaves the
        // escalations exactly as without them.
        let clean = Self.history(seed: seed, count: 500) { _ in [] }
        var rng = Mix(state: seed &* 31)
        var mixed: [Reading] = []
        for r in clean {
            mixed.append(r)
            if rng.below(3) == 0 {
                var f = reading(r.vital, r.vital == .spo2 ? 70 : 300, at: r.measuredAt.milliseconds(since: midnight) / 1000,
                                flags: .artifact, device: "noisy")
                f.measuredAt = r.measuredAt
                mixed.append(f)
            }
        }
        var a = RuleEngine(plan: try plan(Self.everyModel)), b = RuleEngine(plan: try plan(Self.everyModel))
        let withFlagged = a.feed(mixed), without = b.feed(clean)
        #expect(withFlagged.map(\.id) == without.map(\.id))
        #expect(withFlagged.map(\.state) == without.map(\.state))
        #expect(!without.isEmpty, "the history does raise something")
    }

    @Test(arguments: [21, 22, 23] as [UInt64])
    func severityNeverGoesDownWithUnchangedValues(seed: UInt64) throws {
        // Once a rule is open, feeding the same value again and again never lowers its severity.
        var e = RuleEngine(plan: try plan(Self.everyModel))
        var lastSeverity: [String: Severity] = [:]
        for r in Self.history(seed: seed, count: 400, flags: { _ in [] }) {
            for ev in e.ingest(r) + e.ingest(reading(r.vital, r.quantity.value, at: r.measuredAt.milliseconds(since: midnight) / 1000 + 1)) {
                if ev.state == .open { lastSeverity[ev.id] = ev.severity }
                else if ev.state != .resolved, let s = lastSeverity[ev.id] {
                    #expect(ev.severity >= s)
                    lastSeverity[ev.id] = ev.severity
                }
            }
            for open in e.raised { #expect(open.severity >= (lastSeverity[open.id] ?? .advisory)) }
        }
    }

    @Test(arguments: [31, 32] as [UInt64])
    func replayingTheSameHistoryTwiceGivesTheSameEscalations(seed: UInt64) throws {
        let readings = Self.history(seed: seed, count: 800) { rng in rng.below(5) == 0 ? .bodyMovement : [] }
        func run() throws -> [Replay.Output] {
            var r = Replay(plan: try plan(Self.everyModel))
            return readings.flatMap { r.feed($0) }
        }
        let a = try run(), b = try run()
        #expect(a == b)
        #expect(a.count > 5)
    }
}
