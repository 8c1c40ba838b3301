public import VitalSigns

/// NEWS2 as a care-plan model (RCP 2017; CLINICAL.md §1).
///
/// Consciousness (ACVPU) and air/oxygen are not device vitals (VitalSigns has no vital for
/// either), so they come from the plan: `air_or_oxygen` for a patient on long-term oxygen,
/// `consciousness` as the care team's recorded baseline. A plan value never goes stale (it
/// is the standing prescription). If a plan omits one, it is missing and no total is given
/// (Open eObs semantics), but red scores still alert.
public struct NEWS2Settings: Sendable, Hashable, Decodable {
    public static let ruleID = "news2"

    public var scale: NEWS2Scale
    /// A parameter older than this is stale (seconds).
    public var windowSeconds: Int64
    public var airOrOxygen: AirOrOxygen?
    public var consciousness: ACVPU?
    /// Severity by aggregate (CLINICAL.md §1.2 home mapping): total ≥ `advisoryAt` advisory,
    /// ≥ `urgentAt` urgent, ≥ `emergencyAt` emergency; a red score (3 in one parameter)
    /// is at least `redScoreSeverity`.
    public var advisoryAt: Int
    public var urgentAt: Int
    public var emergencyAt: Int
    public var redScoreSeverity: Severity
    /// Resolves when the total is known and at or below `advisoryAt - 1 - hysteresis`, with no red score.
    public var hysteresis: Int

    public init(scale: NEWS2Scale = .scale1, windowSeconds: Int64 = 3600, airOrOxygen: AirOrOxygen? = nil,
                consciousness: ACVPU? = nil, advisoryAt: Int = 1, urgentAt: Int = 5, emergencyAt: Int = 7,
                redScoreSeverity: Severity = .urgent, hysteresis: Int = 0) {
        self.scale = scale
        self.windowSeconds = windowSeconds
        self.airOrOxygen = airOrOxygen
        self.consciousness = consciousness
        self.advisoryAt = advisoryAt
        self.urgentAt = urgentAt
        self.emergencyAt = emergencyAt
        self.redScoreSeverity = redScoreSeverity
        self.hysteresis = hysteresis
    }

    enum CodingKeys: String, CodingKey {
        case scale, consciousness, hysteresis
        case windowMinutes = "window_minutes"
        case airOrOxygen = "air_or_oxygen"
        case advisoryAt = "advisory_at", urgentAt = "urgent_at", emergencyAt = "emergency_at"
        case redScoreSeverity = "red_score_severity"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.integer(.scale, default: 1, in: 1...2) {
        case 2: scale = .scale2
        default: scale = .scale1
        }
        windowSeconds = try c.integer(.windowMinutes, default: 60, in: 1...10_080) * 60
        if let text = try c.decodeIfPresent(String.self, forKey: .airOrOxygen) {
            guard let v = AirOrOxygen(rawValue: text) else { throw c.refuse(.airOrOxygen, "must be air or oxygen") }
            airOrOxygen = v
        } else { airOrOxygen = nil }
        if let text = try c.decodeIfPresent(String.self, forKey: .consciousness) {
            guard let v = ACVPU(rawValue: text) else {
                throw c.refuse(.consciousness, "must be one of alert, confusion, voice, pain, unresponsive")
            }
            consciousness = v
        } else { consciousness = nil }
        advisoryAt = Int(try c.integer(.advisoryAt, default: 1, in: 1...20))
        urgentAt = Int(try c.integer(.urgentAt, default: 5, in: 1...20))
        emergencyAt = Int(try c.integer(.emergencyAt, default: 7, in: 1...20))
        guard advisoryAt <= urgentAt, urgentAt <= emergencyAt else {
            throw c.refuse(.urgentAt, "needs advisory_at ≤ urgent_at ≤ emergency_at")
        }
        redScoreSeverity = try c.severity(.redScoreSeverity, default: .urgent)
        hysteresis = Int(try c.integer(.hysteresis, default: 0, in: 0...19))
    }
}

/// Heart-failure weight gain by rule of thumb (CLINICAL.md §2.1): gained more than (or at
/// least) `amount` within `days` days. Today's daily weight is compared with the lowest
/// daily weight of the previous `days` local days.
public struct WeightGainRule: Sendable, Hashable, Decodable {
    public enum Comparison: String, Sendable, Hashable { case greater = ">", greaterOrEqual = ">=" }
    public var id: String
    /// In kilograms (a plan in lb is converted: 1 lb = 0.45359237 kg exactly).
    public var amountKg: Double
    public var days: Int
    public var comparison: Comparison
    public var severity: Severity

    public init(id: String, amountKg: Double, days: Int, comparison: Comparison = .greater, severity: Severity = .urgent) {
        self.id = id
        self.amountKg = amountKg
        self.days = days
        self.comparison = comparison
        self.severity = severity
    }

    enum CodingKeys: String, CodingKey { case id, amount, unit, days, comparison, severity }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try RuleID.decode(c, .id)
        let amount = try c.number(.amount, default: .nan, in: 0.01...50)
        guard !amount.isNaN else { throw c.refuse(.amount, "is required") }
        amountKg = try WeightUnit.decode(c, .unit).kilograms(amount)
        days = Int(try c.integer(.days, default: 3, in: 1...60))
        let text = try c.decodeIfPresent(String.self, forKey: .comparison) ?? ">"
        guard let cmp = Comparison(rawValue: text) else { throw c.refuse(.comparison, "must be \">\" or \">=\"") }
        comparison = cmp
        severity = try c.severity(.severity, default: .urgent)
    }

    public func breaches(gainKg: Double) -> Bool {
        // Compare in grams rounded to 0.1 g so 2.0 kg entered as 4.40925 lb, or a sum of
        // decimals such as 81.2 − 79.2, sits exactly on the boundary instead of a hair off it.
        let g = (gainKg * 10_000).rounded(), a = (amountKg * 10_000).rounded()
        return comparison == .greater ? g > a : g >= a
    }
}

enum WeightUnit: String {
    case kg, lb
    static let kgPerPound = 0.45359237
    func kilograms(_ v: Double) -> Double { self == .kg ? v : v * Self.kgPerPound }
    static func decode<K: CodingKey>(_ c: KeyedDecodingContainer<K>, _ key: K) throws -> WeightUnit {
        let text = try c.decodeIfPresent(String.self, forKey: key) ?? "kg"
        guard let u = WeightUnit(rawValue: text) else { throw c.refuse(key, "must be kg or lb") }
        return u
    }
}

/// MACD on daily weights (Zhang et al. 2009; CLINICAL.md §2.2): EMA_short − EMA_long of
/// daily weights, EMA_N(t) = α·w(t) + (1−α)·EMA_N(t−1), α = 2/(N+1), alert when
/// MACD > threshold. The published windows and threshold are not available ([U]), so the
/// plan must give all three; there are no defaults.
public struct WeightMACD: Sendable, Hashable, Decodable {
    public static let ruleID = "weight-macd"
    public var shortDays: Int
    public var longDays: Int
    public var thresholdKg: Double
    public var severity: Severity

    public init(shortDays: Int, longDays: Int, thresholdKg: Double, severity: Severity = .advisory) {
        self.shortDays = shortDays
        self.longDays = longDays
        self.thresholdKg = thresholdKg
        self.severity = severity
    }

    enum CodingKeys: String, CodingKey { case threshold, unit, severity; case shortDays = "short_days", longDays = "long_days" }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        shortDays = Int(try c.decode(Int64.self, forKey: .shortDays))
        longDays = Int(try c.decode(Int64.self, forKey: .longDays))
        guard (1...60).contains(shortDays) else { throw c.refuse(.shortDays, "must be between 1 and 60") }
        guard (2...120).contains(longDays), longDays > shortDays else { throw c.refuse(.longDays, "must be between 2 and 120 and more than short_days") }
        let t = try c.decode(Double.self, forKey: .threshold)
        guard t.isFinite, t > 0, t <= 50 else { throw c.refuse(.threshold, "must be a number above 0 and at most 50") }
        thresholdKg = try WeightUnit.decode(c, .unit).kilograms(t)
        severity = try c.severity(.severity, default: .advisory)
    }
}

/// A personal baseline on daily weights: today's weight outside mean ± k·SD of the
/// previous `days` daily weights, on `consecutive` daily weights in a row (HeartPhone,
/// CLINICAL.md §2.4: individual moving average ± 1 SD, consecutive alerts; exact count [U]).
public struct WeightBaseline: Sendable, Hashable, Decodable {
    public static let ruleID = "weight-baseline"
    public var days: Int
    public var k: Double
    /// Fewest daily weights in the window before the rule judges (default half the window, at least 3).
    public var minDays: Int
    public var consecutive: Int
    /// `true`: only gains above mean + k·SD alert; `false`: both sides (a loss may be over-diuresis).
    public var gainOnly: Bool
    public var severity: Severity

    public init(days: Int = 7, k: Double = 1, minDays: Int? = nil, consecutive: Int = 2, gainOnly: Bool = false,
                severity: Severity = .advisory) {
        self.days = days
        self.k = k
        self.minDays = minDays ?? max(3, days / 2)
        self.consecutive = consecutive
        self.gainOnly = gainOnly
        self.severity = severity
    }

    enum CodingKeys: String, CodingKey { case days, k, consecutive, severity; case minDays = "min_days", gainOnly = "gain_only" }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        days = Int(try c.integer(.days, default: 7, in: 3...90))
        k = try c.number(.k, default: 1, in: 0.1...10)
        minDays = Int(try c.integer(.minDays, default: Int64(max(3, days / 2)), in: 2...Int64(days)))
        consecutive = Int(try c.integer(.consecutive, default: 2, in: 1...14))
        gainOnly = try c.flag(.gainOnly, default: false)
        severity = try c.severity(.severity, default: .advisory)
    }
}

/// Blood-pressure crisis (AHA, CLINICAL.md §3.1): systolic ≥ 180 and/or diastolic ≥ 120
/// (inclusive by default), confirmed by a repeat reading within 5 minutes.
public struct BPCrisis: Sendable, Hashable, Decodable {
    public static let ruleID = "bp-crisis"
    public var systolic: Double
    public var diastolic: Double
    /// `true` (default): ≥; `false`: > (the older AHA chart wording "higher than").
    public var inclusive: Bool
    public var persistence: Persistence
    public var hysteresis: Double
    public var severity: Severity

    public init(systolic: Double = 180, diastolic: Double = 120, inclusive: Bool = true,
                persistence: Persistence = .confirm(withinSeconds: 300), hysteresis: Double = 0, severity: Severity = .urgent) {
        self.systolic = systolic
        self.diastolic = diastolic
        self.inclusive = inclusive
        self.persistence = persistence
        self.hysteresis = hysteresis
        self.severity = severity
    }

    enum CodingKeys: String, CodingKey { case systolic, diastolic, inclusive, hysteresis, severity }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        systolic = try c.number(.systolic, default: 180, in: 100...300)
        diastolic = try c.number(.diastolic, default: 120, in: 60...200)
        inclusive = try c.flag(.inclusive, default: true)
        hysteresis = try c.number(.hysteresis, default: 0, in: 0...50)
        severity = try c.severity(.severity, default: .urgent)
        persistence = try Persistence.decode(from: decoder, default: .confirm(withinSeconds: 300))
    }
}

/// Hypotension: systolic at or below `systolic` (NEWS2 red band ≤ 90, CLINICAL.md §3.1),
/// confirmed by a repeat within 5 minutes by default.
public struct Hypotension: Sendable, Hashable, Decodable {
    public static let ruleID = "hypotension"
    public var systolic: Double
    public var persistence: Persistence
    public var hysteresis: Double
    public var severity: Severity

    public init(systolic: Double = 90, persistence: Persistence = .confirm(withinSeconds: 300), hysteresis: Double = 0,
                severity: Severity = .urgent) {
        self.systolic = systolic
        self.persistence = persistence
        self.hysteresis = hysteresis
        self.severity = severity
    }

    enum CodingKeys: String, CodingKey { case hysteresis, severity; case systolic = "systolic_at_or_below" }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        systolic = try c.number(.systolic, default: 90, in: 50...140)
        hysteresis = try c.number(.hysteresis, default: 0, in: 0...50)
        severity = try c.severity(.severity, default: .urgent)
        persistence = try Persistence.decode(from: decoder, default: .confirm(withinSeconds: 300))
    }
}

/// Glucose (ADA Standards §6, CLINICAL.md §3.2): level 1 below 70 mg/dL, level 2 below 54,
/// hyperglycaemia above 250. Thresholds in the plan's `unit`; readings in mmol/L are
/// converted with 1 mmol/L = 18.016 mg/dL (glucose, 180.16 g/mol).
public struct GlucoseModel: Sendable, Hashable, Decodable {
    public static let lowID = "glucose-low", highID = "glucose-high"
    public static let mgPerMmol = 18.016
    /// mg/dL.
    public var level1Below: Double
    public var level2Below: Double
    public var hyperAbove: Double
    public var level1Severity: Severity
    public var level2Severity: Severity
    public var hyperSeverity: Severity
    public var persistence: Persistence
    /// mg/dL.
    public var hysteresis: Double

    public init(level1Below: Double = 70, level2Below: Double = 54, hyperAbove: Double = 250,
                level1Severity: Severity = .urgent, level2Severity: Severity = .emergency, hyperSeverity: Severity = .urgent,
                persistence: Persistence = .immediate, hysteresis: Double = 0) {
        self.level1Below = level1Below
        self.level2Below = level2Below
        self.hyperAbove = hyperAbove
        self.level1Severity = level1Severity
        self.level2Severity = level2Severity
        self.hyperSeverity = hyperSeverity
        self.persistence = persistence
        self.hysteresis = hysteresis
    }

    enum CodingKeys: String, CodingKey {
        case unit, hysteresis
        case level1Below = "level1_below", level2Below = "level2_below", hyperAbove = "hyper_above"
        case level1Severity = "level1_severity", level2Severity = "level2_severity", hyperSeverity = "hyper_severity"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let unit = try c.decodeIfPresent(String.self, forKey: .unit) ?? "mg/dL"
        guard unit == "mg/dL" || unit == "mmol/L" else { throw c.refuse(.unit, "must be mg/dL or mmol/L") }
        let f = unit == "mg/dL" ? 1 : Self.mgPerMmol
        let r: ClosedRange<Double> = unit == "mg/dL" ? 20...600 : 1...35
        level1Below = try c.number(.level1Below, default: 70 / f, in: r) * f
        level2Below = try c.number(.level2Below, default: 54 / f, in: r) * f
        hyperAbove = try c.number(.hyperAbove, default: 250 / f, in: r) * f
        guard level2Below <= level1Below else { throw c.refuse(.level2Below, "must not be above level1_below") }
        guard hyperAbove > level1Below else { throw c.refuse(.hyperAbove, "must be above level1_below") }
        hysteresis = try c.number(.hysteresis, default: 0, in: 0...(unit == "mg/dL" ? 100 : 5.5)) * f
        level1Severity = try c.severity(.level1Severity, default: .urgent)
        level2Severity = try c.severity(.level2Severity, default: .emergency)
        hyperSeverity = try c.severity(.hyperSeverity, default: .urgent)
        persistence = try Persistence.decode(from: decoder, default: .immediate)
    }

    /// A glucose value in mg/dL, or nil for a unit this model does not know.
    public static func milligramsPerDecilitre(_ q: Quantity) -> Double? {
        switch q.unit {
        case "mg/dL": q.value
        case "mmol/L": q.value * mgPerMmol
        default: nil
        }
    }
}

/// SpO2 (BTS 2017, CLINICAL.md §3.3): below the target range, or a fall of ≥ `fallPoints`
/// from the personal baseline (mean of the previous `baselineDays` daily means), sustained.
/// Defaults follow the NEWS2 scale in the plan: Scale 1 target 94–98 % (urgent below 94,
/// emergency at ≤ 92, NHS oximetry red), Scale 2 target 88–92 % (urgent below 88,
/// emergency below 86).
public struct SpO2Model: Sendable, Hashable, Decodable {
    public static let lowID = "spo2-below-target", fallID = "spo2-fall"
    public var targetLow: Double?
    public var emergencyBelow: Double?
    public var fallPoints: Double
    public var baselineDays: Int
    public var minBaselineDays: Int
    public var persistence: Persistence
    public var hysteresis: Double
    public var severity: Severity
    public var fallSeverity: Severity

    public init(targetLow: Double? = nil, emergencyBelow: Double? = nil, fallPoints: Double = 3, baselineDays: Int = 7,
                minBaselineDays: Int = 3, persistence: Persistence = .sustained(seconds: 20, maxGapSeconds: 10),
                hysteresis: Double = 1, severity: Severity = .urgent, fallSeverity: Severity = .urgent) {
        self.targetLow = targetLow
        self.emergencyBelow = emergencyBelow
        self.fallPoints = fallPoints
        self.baselineDays = baselineDays
        self.minBaselineDays = minBaselineDays
        self.persistence = persistence
        self.hysteresis = hysteresis
        self.severity = severity
        self.fallSeverity = fallSeverity
    }

    enum CodingKeys: String, CodingKey {
        case hysteresis, severity
        case targetLow = "target_low", emergencyBelow = "emergency_below", fallPoints = "fall_points"
        case baselineDays = "baseline_days", minBaselineDays = "min_baseline_days", fallSeverity = "fall_severity"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        targetLow = try c.optionalNumber(.targetLow, in: 70...100)
        emergencyBelow = try c.optionalNumber(.emergencyBelow, in: 50...100)
        fallPoints = try c.number(.fallPoints, default: 3, in: 1...20)
        baselineDays = Int(try c.integer(.baselineDays, default: 7, in: 2...60))
        minBaselineDays = Int(try c.integer(.minBaselineDays, default: 3, in: 1...Int64(baselineDays)))
        hysteresis = try c.number(.hysteresis, default: 1, in: 0...10)
        severity = try c.severity(.severity, default: .urgent)
        fallSeverity = try c.severity(.fallSeverity, default: .urgent)
        persistence = try Persistence.decode(from: decoder, default: .sustained(seconds: 20, maxGapSeconds: 10))
    }

    func target(scale: NEWS2Scale) -> (low: Double, emergency: Double) {
        let low = targetLow ?? (scale == .scale2 ? 88 : 94)
        return (low, emergencyBelow ?? (scale == .scale2 ? 86 : 93))
    }
}

/// Temperature (CLINICAL.md §3.4): fever at or above `feverAt` °C (CDC 38.0), and a rise of
/// more than `rise` °C above the personal baseline (older adults in long-term care: > 1.1 °C;
/// verify against IDSA 2009 before relying on it).
public struct TemperatureModel: Sendable, Hashable, Decodable {
    public static let feverID = "fever", riseID = "temperature-rise"
    public var feverAt: Double
    public var rise: Double
    public var baselineDays: Int
    public var minBaselineDays: Int
    public var persistence: Persistence
    public var hysteresis: Double
    public var severity: Severity
    public var riseSeverity: Severity

    public init(feverAt: Double = 38.0, rise: Double = 1.1, baselineDays: Int = 14, minBaselineDays: Int = 3,
                persistence: Persistence = .immediate, hysteresis: Double = 0.2, severity: Severity = .urgent,
                riseSeverity: Severity = .advisory) {
        self.feverAt = feverAt
        self.rise = rise
        self.baselineDays = baselineDays
        self.minBaselineDays = minBaselineDays
        self.persistence = persistence
        self.hysteresis = hysteresis
        self.severity = severity
        self.riseSeverity = riseSeverity
    }

    enum CodingKeys: String, CodingKey {
        case rise, hysteresis, severity
        case feverAt = "fever_at", baselineDays = "baseline_days", minBaselineDays = "min_baseline_days"
        case riseSeverity = "rise_severity"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        feverAt = try c.number(.feverAt, default: 38.0, in: 36...42)
        rise = try c.number(.rise, default: 1.1, in: 0.1...5)
        baselineDays = Int(try c.integer(.baselineDays, default: 14, in: 2...60))
        minBaselineDays = Int(try c.integer(.minBaselineDays, default: 3, in: 1...Int64(baselineDays)))
        hysteresis = try c.number(.hysteresis, default: 0.2, in: 0...3)
        severity = try c.severity(.severity, default: .urgent)
        riseSeverity = try c.severity(.riseSeverity, default: .advisory)
        persistence = try Persistence.decode(from: decoder, default: .immediate)
    }
}

/// Heart rate (NEWS2 red bands, CLINICAL.md §3.5): tachycardia at or above `tachyAt`
/// (default 131/min), bradycardia at or below `bradyAt` (default 40/min), sustained.
/// Uses `pulse_rate` and `heart_rate` readings alike.
public struct HeartRateModel: Sendable, Hashable, Decodable {
    public static let tachyID = "tachycardia", bradyID = "bradycardia"
    public var tachyAt: Double
    public var bradyAt: Double
    public var persistence: Persistence
    public var hysteresis: Double
    public var severity: Severity

    public init(tachyAt: Double = 131, bradyAt: Double = 40, persistence: Persistence = .sustained(seconds: 20, maxGapSeconds: 10),
                hysteresis: Double = 5, severity: Severity = .urgent) {
        self.tachyAt = tachyAt
        self.bradyAt = bradyAt
        self.persistence = persistence
        self.hysteresis = hysteresis
        self.severity = severity
    }

    enum CodingKeys: String, CodingKey { case hysteresis, severity; case tachyAt = "tachy_at", bradyAt = "brady_at" }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        tachyAt = try c.number(.tachyAt, default: 131, in: 80...250)
        bradyAt = try c.number(.bradyAt, default: 40, in: 20...79)
        hysteresis = try c.number(.hysteresis, default: 5, in: 0...50)
        severity = try c.severity(.severity, default: .urgent)
        persistence = try Persistence.decode(from: decoder, default: .sustained(seconds: 20, maxGapSeconds: 10))
    }
}

/// Which models are on, with their parameters. A model is on when its key is present.
public struct ModelSettings: Sendable, Hashable, Decodable {
    public var weightGain: [WeightGainRule]
    public var weightMACD: WeightMACD?
    public var weightBaseline: WeightBaseline?
    public var bpCrisis: BPCrisis?
    public var hypotension: Hypotension?
    public var glucose: GlucoseModel?
    public var spo2: SpO2Model?
    public var temperature: TemperatureModel?
    public var heartRate: HeartRateModel?

    public init(weightGain: [WeightGainRule] = [], weightMACD: WeightMACD? = nil, weightBaseline: WeightBaseline? = nil,
                bpCrisis: BPCrisis? = nil, hypotension: Hypotension? = nil, glucose: GlucoseModel? = nil,
                spo2: SpO2Model? = nil, temperature: TemperatureModel? = nil, heartRate: HeartRateModel? = nil) {
        self.weightGain = weightGain
        self.weightMACD = weightMACD
        self.weightBaseline = weightBaseline
        self.bpCrisis = bpCrisis
        self.hypotension = hypotension
        self.glucose = glucose
        self.spo2 = spo2
        self.temperature = temperature
        self.heartRate = heartRate
    }

    enum CodingKeys: String, CodingKey {
        case hypotension, glucose, spo2, temperature
        case weightGain = "weight_gain", weightMACD = "weight_macd", weightBaseline = "weight_baseline"
        case bpCrisis = "bp_crisis", heartRate = "heart_rate"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        weightGain = try c.decodeIfPresent([WeightGainRule].self, forKey: .weightGain) ?? []
        weightMACD = try c.decodeIfPresent(WeightMACD.self, forKey: .weightMACD)
        weightBaseline = try c.decodeIfPresent(WeightBaseline.self, forKey: .weightBaseline)
        bpCrisis = try c.decodeIfPresent(BPCrisis.self, forKey: .bpCrisis)
        hypotension = try c.decodeIfPresent(Hypotension.self, forKey: .hypotension)
        glucose = try c.decodeIfPresent(GlucoseModel.self, forKey: .glucose)
        spo2 = try c.decodeIfPresent(SpO2Model.self, forKey: .spo2)
        temperature = try c.decodeIfPresent(TemperatureModel.self, forKey: .temperature)
        heartRate = try c.decodeIfPresent(HeartRateModel.self, forKey: .heartRate)
    }

    var ruleIDs: [String] {
        var ids = weightGain.map(\.id)
        if weightMACD != nil { ids.append(WeightMACD.ruleID) }
        if weightBaseline != nil { ids.append(WeightBaseline.ruleID) }
        if bpCrisis != nil { ids.append(BPCrisis.ruleID) }
        if hypotension != nil { ids.append(Hypotension.ruleID) }
        if glucose != nil { ids += [GlucoseModel.lowID, GlucoseModel.highID] }
        if spo2 != nil { ids += [SpO2Model.lowID, SpO2Model.fallID] }
        if temperature != nil { ids += [TemperatureModel.feverID, TemperatureModel.riseID] }
        if heartRate != nil { ids += [HeartRateModel.tachyID, HeartRateModel.bradyID] }
        return ids
    }

    var replaySeconds: Int64 {
        [bpCrisis?.persistence, hypotension?.persistence, glucose?.persistence, spo2?.persistence,
         temperature?.persistence, heartRate?.persistence].compactMap { $0?.replaySeconds }.max() ?? 0
    }

    /// Days of daily summaries the models need. MACD gets 5 × its long window of warm-up
    /// so the EMA's seed weighs less than e^-10 (see `WeightTrend`).
    var historyDays: Int {
        var days = weightGain.map { $0.days + 1 }.max() ?? 0
        if let m = weightMACD { days = max(days, 5 * m.longDays) }
        if let b = weightBaseline { days = max(days, b.days + b.consecutive + 1) }
        if let s = spo2 { days = max(days, s.baselineDays + 1) }
        if let t = temperature { days = max(days, t.baselineDays + 1) }
        return days
    }
}
