import VitalSigns

/// One rule of a plan, as the engine runs it.
struct Rule: Sendable, Hashable {
    enum Kind: Sendable, Hashable {
        case threshold(ThresholdRule)
        case news2(NEWS2Settings)
        case weightGain(WeightGainRule)
        case weightMACD(WeightMACD)
        case weightBaseline(WeightBaseline)
        case bpCrisis(BPCrisis)
        case hypotension(Hypotension)
        case glucoseLow(GlucoseModel)
        case glucoseHigh(GlucoseModel)
        case spo2Low(SpO2Model, NEWS2Scale)
        case spo2Fall(SpO2Model)
        case fever(TemperatureModel)
        case temperatureRise(TemperatureModel)
        case tachycardia(HeartRateModel)
        case bradycardia(HeartRateModel)
        case expected(ExpectedReading)
    }

    var id: String
    var kind: Kind
    var persistence: Persistence
    var vitals: [String]
    var realertOverride: Int64?

    func realertSeconds(_ plan: CarePlan) -> Int64 { realertOverride ?? plan.realertSeconds }

    static func all(for plan: CarePlan) -> [Rule] {
        var out: [Rule] = []
        let weight = [Vital.bodyWeight.key], hr = [Vital.pulseRate.key, Vital.heartRate.key]
        for t in plan.thresholds {
            out.append(Rule(id: t.id, kind: .threshold(t), persistence: t.persistence, vitals: [t.vital.key], realertOverride: t.realertSeconds))
        }
        let m = plan.models
        for w in m.weightGain { out.append(Rule(id: w.id, kind: .weightGain(w), persistence: .immediate, vitals: weight)) }
        if let x = m.weightMACD { out.append(Rule(id: WeightMACD.ruleID, kind: .weightMACD(x), persistence: .immediate, vitals: weight)) }
        if let x = m.weightBaseline { out.append(Rule(id: WeightBaseline.ruleID, kind: .weightBaseline(x), persistence: .immediate, vitals: weight)) }
        if let x = m.bpCrisis {
            out.append(Rule(id: BPCrisis.ruleID, kind: .bpCrisis(x), persistence: x.persistence,
                            vitals: [Vital.systolicPressure.key, Vital.diastolicPressure.key]))
        }
        if let x = m.hypotension {
            out.append(Rule(id: Hypotension.ruleID, kind: .hypotension(x), persistence: x.persistence, vitals: [Vital.systolicPressure.key]))
        }
        if let x = m.glucose {
            out.append(Rule(id: GlucoseModel.lowID, kind: .glucoseLow(x), persistence: x.persistence, vitals: [Vital.bloodGlucose.key]))
            out.append(Rule(id: GlucoseModel.highID, kind: .glucoseHigh(x), persistence: x.persistence, vitals: [Vital.bloodGlucose.key]))
        }
        if let x = m.spo2 {
            out.append(Rule(id: SpO2Model.lowID, kind: .spo2Low(x, plan.news2?.scale ?? .scale1), persistence: x.persistence, vitals: [Vital.spo2.key]))
            out.append(Rule(id: SpO2Model.fallID, kind: .spo2Fall(x), persistence: x.persistence, vitals: [Vital.spo2.key]))
        }
        if let x = m.temperature {
            out.append(Rule(id: TemperatureModel.feverID, kind: .fever(x), persistence: x.persistence, vitals: [Vital.bodyTemperature.key]))
            out.append(Rule(id: TemperatureModel.riseID, kind: .temperatureRise(x), persistence: x.persistence, vitals: [Vital.bodyTemperature.key]))
        }
        if let x = m.heartRate {
            out.append(Rule(id: HeartRateModel.tachyID, kind: .tachycardia(x), persistence: x.persistence, vitals: hr))
            out.append(Rule(id: HeartRateModel.bradyID, kind: .bradycardia(x), persistence: x.persistence, vitals: hr))
        }
        if let n = plan.news2 {
            out.append(Rule(id: NEWS2Settings.ruleID, kind: .news2(n), persistence: .immediate,
                            vitals: [Vital.respiratoryRate.key, Vital.spo2.key, Vital.systolicPressure.key,
                                     Vital.pulseRate.key, Vital.heartRate.key, Vital.bodyTemperature.key]))
        }
        for x in plan.expectedReadings {
            out.append(Rule(id: x.id, kind: .expected(x), persistence: .immediate, vitals: [x.vital.key]))
        }
        return out
    }

    /// Judges one clean reading (the engine has already gated flagged ones).
    func assess(_ r: Reading, engine: RuleEngine, newWeightDay: Bool) -> Assessment {
        let v = r.quantity.value
        switch kind {
        case .threshold(let t):
            return t.breaches(v) ? .breach(t.severity, summary: t.summary, detail: nil) : (t.clears(v) ? .clear : .neutral)

        case .expected:
            return .clear

        case .news2(let n):
            return Self.news2(n, engine: engine, at: r.measuredAt)

        case .weightGain(let w):
            guard newWeightDay else { return .ignore }
            let d = engine.dayOf(r.measuredAt)
            let previous = engine.series.firstValues(Vital.bodyWeight.key, days: (d - Int64(w.days))...(d - 1))
            guard let reference = previous.min(by: { $0.value < $1.value }) else { return .ignore }
            let gain = v - reference.value
            let detail = ["gain_kg": JSONValue.format(gain), "reference_kg": JSONValue.format(reference.value),
                          "reference_measured_at": reference.at.iso8601]
            let summary = "weight gain \(w.comparison.rawValue) \(JSONValue.format(w.amountKg)) kg within \(w.days) day(s)"
            return w.breaches(gainKg: gain) ? .breach(w.severity, summary: summary, detail: detail) : .clear

        case .weightMACD(let m):
            guard newWeightDay else { return .ignore }
            let d = engine.dayOf(r.measuredAt)
            let series = engine.series.firstValues(Vital.bodyWeight.key, days: (d - Int64(5 * m.longDays))...d)
            guard let macd = WeightTrend.macd(series.map(\.value), short: m.shortDays, long: m.longDays) else { return .ignore }
            let detail = ["macd_kg": JSONValue.format(macd), "threshold_kg": JSONValue.format(m.thresholdKg)]
            return macd > m.thresholdKg
                ? .breach(m.severity, summary: "weight MACD(\(m.shortDays),\(m.longDays)) above \(JSONValue.format(m.thresholdKg)) kg", detail: detail)
                : .clear

        case .weightBaseline(let b):
            guard newWeightDay else { return .ignore }
            let d = engine.dayOf(r.measuredAt)
            let series = engine.series.firstValues(Vital.bodyWeight.key, days: (d - Int64(b.days + b.consecutive))...d)
            guard let outcome = WeightTrend.baselineOutside(series.map { ($0.day, $0.value) }, b) else { return .ignore }
            let detail = ["mean_kg": JSONValue.format(outcome.mean), "sd_kg": JSONValue.format(outcome.sd)]
            return outcome.alert
                ? .breach(b.severity, summary: "daily weight outside its \(b.days)-day mean ± \(JSONValue.format(b.k)) SD on \(b.consecutive) day(s) in a row", detail: detail)
                : .clear

        case .bpCrisis(let x):
            // Systolic and diastolic of one measurement are judged together ("and/or").
            let sys = engine.latestReading(.systolicPressure).flatMap { $0.measuredAt == r.measuredAt ? $0.quantity.value : nil }
            let dia = engine.latestReading(.diastolicPressure).flatMap { $0.measuredAt == r.measuredAt ? $0.quantity.value : nil }
            func over(_ value: Double?, _ limit: Double) -> Bool { value.map { x.inclusive ? $0 >= limit : $0 > limit } ?? false }
            if over(sys, x.systolic) || over(dia, x.diastolic) {
                return .breach(x.severity, summary: "blood pressure \(x.inclusive ? "≥" : ">") \(JSONValue.format(x.systolic))/\(JSONValue.format(x.diastolic)) mm[Hg], confirmed by a repeat", detail: nil)
            }
            // Wait for the other half of the measurement before calling it normal.
            guard let s = sys, let di = dia else { return .ignore }
            return s < x.systolic - x.hysteresis && di < x.diastolic - x.hysteresis ? .clear : .neutral

        case .hypotension(let x):
            if v <= x.systolic { return .breach(x.severity, summary: "systolic ≤ \(JSONValue.format(x.systolic)) mm[Hg], confirmed by a repeat", detail: nil) }
            return v > x.systolic + x.hysteresis ? .clear : .neutral

        case .glucoseLow(let g):
            guard let mg = GlucoseModel.milligramsPerDecilitre(r.quantity) else { return .ignore }
            if mg < g.level2Below { return .breach(g.level2Severity, summary: "glucose level 2 hypoglycaemia (< \(JSONValue.format(g.level2Below)) mg/dL)", detail: nil) }
            if mg < g.level1Below { return .breach(g.level1Severity, summary: "glucose level 1 hypoglycaemia (< \(JSONValue.format(g.level1Below)) mg/dL)", detail: nil) }
            return mg >= g.level1Below + g.hysteresis ? .clear : .neutral

        case .glucoseHigh(let g):
            guard let mg = GlucoseModel.milligramsPerDecilitre(r.quantity) else { return .ignore }
            if mg > g.hyperAbove { return .breach(g.hyperSeverity, summary: "glucose hyperglycaemia (> \(JSONValue.format(g.hyperAbove)) mg/dL)", detail: nil) }
            return mg <= g.hyperAbove - g.hysteresis ? .clear : .neutral

        case .spo2Low(let s, let scale):
            let target = s.target(scale: scale)
            if v < target.emergency { return .breach(.emergency, summary: "spo2 below \(JSONValue.format(target.emergency)) %", detail: nil) }
            if v < target.low { return .breach(s.severity, summary: "spo2 below the target range (\(JSONValue.format(target.low)) %)", detail: nil) }
            return v >= target.low + s.hysteresis ? .clear : .neutral

        case .spo2Fall(let s):
            let d = engine.dayOf(r.measuredAt)
            let base = engine.series.meanOfDailyMeans(Vital.spo2.key, days: (d - Int64(s.baselineDays))...(d - 1))
            guard base.days >= s.minBaselineDays, base.mean.isFinite else { return .ignore }
            let drop = base.mean - v
            if drop >= s.fallPoints - 1e-9 {
                return .breach(s.fallSeverity, summary: "spo2 \(JSONValue.format(s.fallPoints)) points or more below the personal baseline",
                               detail: ["baseline_percent": JSONValue.format((base.mean * 10).rounded() / 10), "baseline_days": String(base.days)])
            }
            return drop <= s.fallPoints - s.hysteresis && (s.hysteresis > 0 || drop < s.fallPoints) ? .clear : .neutral

        case .fever(let t):
            if v >= t.feverAt - 1e-9 { return .breach(t.severity, summary: "fever (≥ \(JSONValue.format(t.feverAt)) Cel)", detail: nil) }
            return v <= t.feverAt - t.hysteresis ? .clear : .neutral

        case .temperatureRise(let t):
            let d = engine.dayOf(r.measuredAt)
            let base = engine.series.meanOfDailyMeans(Vital.bodyTemperature.key, days: (d - Int64(t.baselineDays))...(d - 1))
            guard base.days >= t.minBaselineDays, base.mean.isFinite else { return .ignore }
            let rise = v - base.mean
            if rise > t.rise + 1e-9 {
                return .breach(t.riseSeverity, summary: "temperature more than \(JSONValue.format(t.rise)) Cel above the personal baseline",
                               detail: ["baseline_cel": JSONValue.format((base.mean * 100).rounded() / 100)])
            }
            return rise <= t.rise - t.hysteresis ? .clear : .neutral

        case .tachycardia(let h):
            if v >= h.tachyAt { return .breach(h.severity, summary: "heart rate ≥ \(JSONValue.format(h.tachyAt)) /min", detail: nil) }
            return v <= h.tachyAt - max(h.hysteresis, 1) ? .clear : .neutral

        case .bradycardia(let h):
            if v <= h.bradyAt { return .breach(h.severity, summary: "heart rate ≤ \(JSONValue.format(h.bradyAt)) /min", detail: nil) }
            return v >= h.bradyAt + max(h.hysteresis, 1) ? .clear : .neutral
        }
    }

    /// NEWS2 from the latest clean value of each device parameter plus the plan's
    /// air/oxygen and consciousness (fresh by definition: the standing prescription).
    static func news2(_ n: NEWS2Settings, engine: RuleEngine, at t: Timestamp) -> Assessment {
        let readings = [Vital.respiratoryRate, .spo2, .systolicPressure, .pulseRate, .heartRate, .bodyTemperature]
            .compactMap { engine.latestReading($0) }
        let input = NEWS2Input(
            readings: readings, patient: engine.plan.patient,
            airOrOxygen: n.airOrOxygen.map { NEWS2Measurement($0, at: t) },
            consciousness: n.consciousness.map { NEWS2Measurement($0, at: t) },
            scale: n.scale, evaluatedAt: t, stalenessSeconds: n.windowSeconds)
        let result = NEWS2.score(input)
        var severity: Severity?
        if let total = result.total {
            if total >= n.emergencyAt { severity = .emergency } else if total >= n.urgentAt { severity = .urgent } else if total >= n.advisoryAt { severity = .advisory }
        }
        if result.hasRedScore { severity = max(severity ?? n.redScoreSeverity, n.redScoreSeverity) }
        guard let severity else {
            if let total = result.total, total <= n.advisoryAt - 1 - n.hysteresis { return .clear }
            return .neutral
        }
        // The detail is built only for a breach: at 1 Hz it would dominate the cost.
        var detail: [String: String] = [
            "label": NEWS2Result.homeMeasuredLabel, "scale": n.scale == .scale2 ? "2" : "1",
            "total": result.total.map { String($0) } ?? "unavailable",
            "band": result.band?.rawValue ?? (result.minimumBand.map { "at least " + $0.rawValue } ?? "unavailable"),
            "red_parameters": result.redParameters.map(\.rawValue).joined(separator: ","),
            "missing": result.missing.map(\.rawValue).joined(separator: ","),
            "stale": result.stale.map(\.rawValue).joined(separator: ","),
        ]
        for p in NEWS2Parameter.allCases { if let s = result.subScore(p) { detail["score." + p.rawValue] = String(s) } }
        let what = result.total.map { "NEWS2 \($0) (\(result.band?.rawValue ?? ""))" } ?? "NEWS2 red score, total unavailable"
        return .breach(severity, summary: "\(what); \(NEWS2Result.homeMeasuredLabel)", detail: detail)
    }
}

/// Pure trend computations on daily weights (kg), oldest first.
public enum WeightTrend {
    /// MACD(t) = EMA_short(t) − EMA_long(t) at the last value, with EMA seeded by the first
    /// value and α = 2/(N+1) (CLINICAL.md §2.2). Missing days are skipped (the EMA advances
    /// per daily weight, not per calendar day). Nil until there are at least `long` values.
    public static func macd(_ weights: [Double], short: Int, long: Int) -> Double? {
        guard weights.count >= long, let first = weights.first else { return nil }
        let aS = 2 / Double(short + 1), aL = 2 / Double(long + 1)
        var s = first, l = first
        for w in weights.dropFirst() {
            s = aS * w + (1 - aS) * s
            l = aL * w + (1 - aL) * l
        }
        return s - l
    }

    /// Mean and sample SD (n − 1) of values.
    public static func meanSD(_ values: [Double]) -> (mean: Double, sd: Double) {
        let n = Double(values.count)
        guard n > 0 else { return (.nan, .nan) }
        let mean = values.reduce(0, +) / n
        guard n > 1 else { return (mean, 0) }
        let ss = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
        return (mean, (ss / (n - 1)).squareRoot())
    }

    /// Whether the last `consecutive` daily weights each lie outside mean ± k·SD of the
    /// `days` calendar days before their own day. Nil when the last one lacks `minDays` of baseline.
    static func baselineOutside(_ series: [(day: Int64, value: Double)], _ b: WeightBaseline)
        -> (alert: Bool, mean: Double, sd: Double)?
    {
        guard let last = series.last else { return nil }
        func judge(_ i: Int) -> (outside: Bool, mean: Double, sd: Double)? {
            let d = series[i].day
            let window = series.filter { $0.day >= d - Int64(b.days) && $0.day < d }.map(\.value)
            guard window.count >= b.minDays else { return nil }
            let (mean, sd) = meanSD(window)
            let w = series[i].value
            let tol = 1e-9
            let above = w > mean + b.k * sd + tol
            let below = !b.gainOnly && w < mean - b.k * sd - tol
            return (above || below, mean, sd)
        }
        guard let current = judge(series.count - 1) else { return nil }
        _ = last
        var run = current.outside ? 1 : 0
        var i = series.count - 2
        while current.outside, run < b.consecutive, i >= 0, let j = judge(i), j.outside {
            run += 1
            i -= 1
        }
        return (current.outside && run >= b.consecutive, current.mean, current.sd)
    }
}
