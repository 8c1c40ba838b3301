import ClinicalRules
import Testing
import VitalSigns

/// Daily weights at 07:00 on consecutive days from day 0.
private func weights(_ values: [Double], unit: String = "kg") -> [Reading] {
    values.enumerated().map { reading(.bodyWeight, $0.element, at: Int64($0.offset) * day + 7 * 3600) }
}

@Suite struct WeightModelTests {
    @Test(arguments: [
        // (series, comparison, expected rule-of-thumb "more than 2 kg within 3 days" alert days)
        ([80.0, 80.5, 81.0, 82.0], ">", [Int]()),     // +2.0 exactly: not more than 2
        ([80.0, 80.5, 81.0, 82.0], ">=", [3]),        // +2.0 exactly: at least 2
        ([80.0, 80.5, 81.0, 82.1], ">", [3]),
        ([80.0, 81.0, 81.2, 81.3, 82.2], ">", [Int]()), // 82.2 − min(81.0, 81.2, 81.3) = 1.2
        ([80.0, 79.0, 80.0, 81.1], ">", [3]),         // reference is the lowest of the window (79.0)
        ([80.0, 81.2, 79.2, 81.2], ">=", [3]),        // 81.2 − 79.2 = 2.0 despite binary decimals
    ])
    func ruleOfThumbBoundary(series: [Double], comparison: String, alertDays: [Int]) throws {
        var e = RuleEngine(plan: try plan("models:\n  weight_gain:\n    - {id: wg, amount: 2, days: 3, comparison: \"\(comparison)\"}"))
        var opened: [Int] = []
        for (i, r) in weights(series).enumerated() where e.ingest(r).contains(where: { $0.state == .open }) { opened.append(i) }
        #expect(opened == alertDays)
    }

    @Test func poundsAreConvertedAndOnlyTheFirstWeightOfADayCounts() throws {
        // 3 lb = 1.36077711 kg. Day 1 is +1.37 kg (alert); a second weigh-in the same day is ignored.
        var e = RuleEngine(plan: try plan("models:\n  weight_gain:\n    - {id: wg3lb, amount: 3, unit: lb, days: 1, comparison: \">=\"}"))
        #expect(e.feed(weights([80.0])).isEmpty)
        let day1 = e.ingest(reading(.bodyWeight, 81.37, at: day + 7 * 3600))
        #expect(day1.map(\.state) == [.open])
        #expect(day1.first?.detail?["reference_kg"] == "80")
        #expect(e.ingest(reading(.bodyWeight, 80.0, at: day + 9 * 3600)).isEmpty, "second weight of the day")
        #expect(e.ingest(reading(.bodyWeight, 81.2, at: 2 * day + 7 * 3600)).map(\.state) == [.resolved])
    }

    @Test func aFlaggedWeightIsNotTheDailyWeight() throws {
        var e = RuleEngine(plan: try plan("models:\n  weight_gain:\n    - {id: wg, amount: 2, days: 3}"))
        _ = e.feed(weights([80.0]))
        #expect(e.ingest(reading(.bodyWeight, 90, at: day + 7 * 3600, flags: .bodyMovement)).isEmpty)
        #expect(e.ingest(reading(.bodyWeight, 80.2, at: day + 8 * 3600)).isEmpty, "the clean weight is the day's")
    }

    @Test func macdMatchesAHandComputedSeries() {
        // short 2 (α = 2/3), long 3 (α = 1/2), seeded with the first value.
        // w: 80, 80, 83 → S: 80, 80, 82; L: 80, 80, 81.5 → MACD 0.5.
        let m = WeightTrend.macd([80, 80, 83], short: 2, long: 3)
        #expect(m.map { abs($0 - 0.5) < 1e-12 } == true)
        #expect(WeightTrend.macd([80, 80], short: 2, long: 3) == nil, "needs long_days values")
        #expect(WeightTrend.macd(Array(repeating: 75, count: 30), short: 3, long: 10) == 0)
    }

    @Test func macdRuleAlertsAboveItsThresholdAndResolves() throws {
        var e = RuleEngine(plan: try plan("models:\n  weight_macd: {short_days: 2, long_days: 3, threshold: 0.5}"))
        // Exactly 0.5 is not above the threshold; 83.1 gives S 82.0667, L 81.55 → 0.5167.
        #expect(e.feed(weights([80, 80, 83])).isEmpty)
        var f = RuleEngine(plan: try plan("models:\n  weight_macd: {short_days: 2, long_days: 3, threshold: 0.5}"))
        let out = f.feed(weights([80, 80, 83.1, 80]))
        #expect(out.map(\.state) == [.open, .resolved])
        #expect(out.first?.rule == "weight-macd")
    }

    @Test func personalBaselineWithConsecutiveDays() throws {
        // 7 days alternating 80/81 (mean 80.43, SD 0.535): k = 2 → limit 81.5.
        let base: [Double] = [80, 81, 80, 81, 80, 81, 80]
        let yaml = "models:\n  weight_baseline: {days: 7, k: 2, consecutive: 2, gain_only: true}"
        var once = RuleEngine(plan: try plan(yaml))
        #expect(once.feed(weights(base + [82])).isEmpty, "one day outside is not two in a row")
        var twice = RuleEngine(plan: try plan(yaml))
        let out = twice.feed(weights(base + [82, 82.5]))
        #expect(out.map(\.state) == [.open])
        #expect(out.first?.detail?["sd_kg"] != nil)
        var loss = RuleEngine(plan: try plan("models:\n  weight_baseline: {days: 7, k: 2, consecutive: 1}"))
        #expect(loss.feed(weights(base + [78.5])).map(\.state) == [.open], "both sides when gain_only is false")
        var gainOnly = RuleEngine(plan: try plan("models:\n  weight_baseline: {days: 7, k: 2, consecutive: 1, gain_only: true}"))
        #expect(gainOnly.feed(weights(base + [78.5])).isEmpty)
    }

    @Test func meanAndSampleSD() {
        let (m, sd) = WeightTrend.meanSD([2, 4, 4, 4, 5, 5, 7, 9])
        #expect(m == 5)
        #expect(abs(sd - 2.138089935) < 1e-9)
    }
}
