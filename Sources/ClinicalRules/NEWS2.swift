public import VitalSigns

// NEWS2: National Early Warning Score 2.
//
// Royal College of Physicians. National Early Warning Score (NEWS) 2: Standardising the
// assessment of acute-illness severity in the NHS. Updated report of a working party.
// London: RCP, 2017. NEWS2 © Royal College of Physicians 2017, reproduced without change.
//
// Clinical reference: /work/shared/CLINICAL.md §1 (§1.1 Chart 1 bands and rounding,
// §1.2 thresholds and triggers, §1.4 missing-parameter handling).

/// The SpO2 scale of NEWS2 Chart 1 (CLINICAL.md §1.1).
///
/// Scale 2 is for patients with hypercapnic (type 2) respiratory failure whose target
/// saturation is 88–92 %. It is a clinician-prescribed, per-patient choice taken from the
/// care plan; it must never be inferred from a diagnosis such as COPD.
public enum NEWS2Scale: String, Sendable, Hashable, CaseIterable {
    /// Target saturation 94–98 %: everyone not prescribed Scale 2.
    case scale1
    /// Target saturation 88–92 %: hypercapnic respiratory failure, by prescription only.
    case scale2
}

/// Level of consciousness on the ACVPU scale (NEWS2 Chart 1, "Consciousness" row).
public enum ACVPU: String, Sendable, Hashable, CaseIterable {
    /// Alert: scores 0.
    case alert
    /// New confusion (or new disorientation or delirium, or worsening confusion): scores 3.
    case confusion
    /// Responds to voice: scores 3.
    case voice
    /// Responds to pain: scores 3.
    case pain
    /// Unresponsive: scores 3.
    case unresponsive
}

/// The "Air or oxygen?" row of NEWS2 Chart 1: whether the patient breathes room air or
/// receives supplemental oxygen. Air scores 0, oxygen scores 2, on both SpO2 scales.
public enum AirOrOxygen: String, Sendable, Hashable, CaseIterable {
    case air
    case oxygen
}

/// One NEWS2 parameter, in the row order of Chart 1.
public enum NEWS2Parameter: String, Sendable, Hashable, CaseIterable, Comparable {
    /// Respiration rate, breaths /min.
    case respirationRate = "respiration_rate"
    /// SpO2, % (scored on Scale 1 or Scale 2).
    case spo2
    /// Air or supplemental oxygen.
    case airOrOxygen = "air_or_oxygen"
    /// Systolic blood pressure, mm[Hg].
    case systolicBP = "systolic_bp"
    /// Pulse, /min.
    case pulse
    /// Consciousness, ACVPU.
    case consciousness
    /// Temperature, Cel.
    case temperature

    public static func < (a: NEWS2Parameter, b: NEWS2Parameter) -> Bool {
        (allCases.firstIndex(of: a) ?? 0) < (allCases.firstIndex(of: b) ?? 0)
    }
}

/// A parameter's value with the time it was measured.
public struct NEWS2Measurement<Value: Sendable & Hashable>: Sendable, Hashable {
    public var value: Value
    /// When the value was measured (device time in UTC, see `Reading.measuredAt`).
    public var measuredAt: Timestamp
    public init(_ value: Value, at measuredAt: Timestamp) {
        self.value = value
        self.measuredAt = measuredAt
    }
}

/// Everything the NEWS2 scorer needs: the latest value of each parameter with its time,
/// the prescribed SpO2 scale, the evaluation time and the staleness window.
///
/// Numeric values are in the units of Chart 1: respiration and pulse /min, SpO2 %,
/// systolic BP mm[Hg], temperature Cel. A parameter that is nil is missing.
public struct NEWS2Input: Sendable, Hashable {
    public var respirationRate: NEWS2Measurement<Double>?
    public var spo2: NEWS2Measurement<Double>?
    public var airOrOxygen: NEWS2Measurement<AirOrOxygen>?
    public var systolicBP: NEWS2Measurement<Double>?
    public var pulse: NEWS2Measurement<Double>?
    public var consciousness: NEWS2Measurement<ACVPU>?
    public var temperature: NEWS2Measurement<Double>?
    /// The SpO2 scale the care plan prescribes; Scale 1 unless the plan says Scale 2.
    public var scale: NEWS2Scale
    /// The instant the score is computed for. Pure code never reads the clock.
    public var evaluatedAt: Timestamp
    /// A parameter measured more than this many seconds before `evaluatedAt` is stale.
    /// A parameter exactly this old is still fresh. Negative windows count as 0.
    public var stalenessSeconds: Int64

    public init(respirationRate: NEWS2Measurement<Double>? = nil, spo2: NEWS2Measurement<Double>? = nil,
                airOrOxygen: NEWS2Measurement<AirOrOxygen>? = nil, systolicBP: NEWS2Measurement<Double>? = nil,
                pulse: NEWS2Measurement<Double>? = nil, consciousness: NEWS2Measurement<ACVPU>? = nil,
                temperature: NEWS2Measurement<Double>? = nil, scale: NEWS2Scale = .scale1,
                evaluatedAt: Timestamp, stalenessSeconds: Int64) {
        self.respirationRate = respirationRate
        self.spo2 = spo2
        self.airOrOxygen = airOrOxygen
        self.systolicBP = systolicBP
        self.pulse = pulse
        self.consciousness = consciousness
        self.temperature = temperature
        self.scale = scale
        self.evaluatedAt = evaluatedAt
        self.stalenessSeconds = stalenessSeconds
    }
}

extension NEWS2Input {
    /// Builds the input from a patient's readings: for each vital, the latest clean reading
    /// measured at or before `evaluatedAt`.
    ///
    /// - A reading is ignored when it belongs to another patient, carries any of
    ///   `QualityFlags.clinicallyUnreliable`, is not in the vital's canonical unit, has a
    ///   non-finite or negative value, or was measured after `evaluatedAt` (so a replay
    ///   "as of" a past instant never sees the future).
    /// - Vitals: `respiratory_rate`, `spo2`, `systolic_bp`, `pulse_rate` or `heart_rate`
    ///   (the later of the two), `body_temperature`. Other vitals are ignored.
    /// - Ties on `measuredAt` go to the later `receivedAt`, then the greater reading ID, so
    ///   the result does not depend on the order of `readings`.
    /// - Air/oxygen and consciousness are not device vitals: pass them explicitly (nil =
    ///   missing).
    public init(readings: some Sequence<Reading>, patient: PatientID,
                airOrOxygen: NEWS2Measurement<AirOrOxygen>? = nil, consciousness: NEWS2Measurement<ACVPU>? = nil,
                scale: NEWS2Scale = .scale1, evaluatedAt: Timestamp, stalenessSeconds: Int64) {
        var latest: [NEWS2Parameter: Reading] = [:]
        for r in readings {
            guard r.patient == patient, r.measuredAt <= evaluatedAt,
                  r.flags.isDisjoint(with: .clinicallyUnreliable),
                  r.quantity.unit == r.vital.unit,
                  r.quantity.value.isFinite, r.quantity.value >= 0,
                  let parameter = Self.parameter(for: r.vital) else { continue }
            if let current = latest[parameter], !Self.isLater(r, than: current) { continue }
            latest[parameter] = r
        }
        func measurement(_ p: NEWS2Parameter) -> NEWS2Measurement<Double>? {
            latest[p].map { NEWS2Measurement($0.quantity.value, at: $0.measuredAt) }
        }
        self.init(respirationRate: measurement(.respirationRate), spo2: measurement(.spo2),
                  airOrOxygen: airOrOxygen, systolicBP: measurement(.systolicBP), pulse: measurement(.pulse),
                  consciousness: consciousness, temperature: measurement(.temperature),
                  scale: scale, evaluatedAt: evaluatedAt, stalenessSeconds: stalenessSeconds)
    }

    static func parameter(for vital: Vital) -> NEWS2Parameter? {
        switch vital.key {
        case Vital.respiratoryRate.key: .respirationRate
        case Vital.spo2.key: .spo2
        case Vital.systolicPressure.key: .systolicBP
        case Vital.pulseRate.key, Vital.heartRate.key: .pulse
        case Vital.bodyTemperature.key: .temperature
        default: nil
        }
    }

    static func isLater(_ a: Reading, than b: Reading) -> Bool {
        if a.measuredAt != b.measuredAt { return a.measuredAt > b.measuredAt }
        if a.receivedAt != b.receivedAt { return a.receivedAt > b.receivedAt }
        return a.id > b.id
    }
}

/// What became of one parameter.
public enum NEWS2ParameterStatus: Sendable, Hashable {
    /// Present, fresh and scored: the Chart 1 sub-score (0–3).
    case scored(Int)
    /// No value was given.
    case missing
    /// The value was measured more than the staleness window before the evaluation time.
    case stale(ageSeconds: Int64)
    /// A value was given but is not a number the chart can score (non-finite or negative).
    case invalid
    /// Scale 2 SpO2 of 93 % or more with the air/oxygen parameter missing or stale: Chart 1
    /// scores it 0 on air and 1–3 on oxygen, so it cannot be scored.
    case undetermined

    /// The sub-score, when scored.
    public var subScore: Int? {
        if case .scored(let s) = self { s } else { nil }
    }
}

/// NEWS2 response bands (Chart 3 "clinical risk", CLINICAL.md §1.2).
public enum NEWS2Band: String, Sendable, Hashable, CaseIterable, Comparable {
    /// Aggregate 0–4 with no red score: ward-based response.
    case low
    /// Aggregate 0–4 with a red score (3 in any single parameter): urgent ward-based response.
    /// The RCP label; some implementations (Open eObs) map this to medium instead.
    case lowMedium = "low_medium"
    /// Aggregate 5–6: key threshold for urgent response.
    case medium
    /// Aggregate 7 or more: urgent or emergency response.
    case high

    public static func < (a: NEWS2Band, b: NEWS2Band) -> Bool {
        (allCases.firstIndex(of: a) ?? 0) < (allCases.firstIndex(of: b) ?? 0)
    }

    /// The band of an aggregate score, with the red-score rule (CLINICAL.md §1.2).
    ///
    /// Precedence: ≥7 high; 5–6 medium (a red score does not raise it further); 0–4 with a
    /// red score low–medium; otherwise low.
    public static func of(total: Int, redScore: Bool) -> NEWS2Band {
        if total >= 7 { return .high }
        if total >= 5 { return .medium }
        return redScore ? .lowMedium : .low
    }
}

/// The outcome of one NEWS2 evaluation.
public struct NEWS2Result: Sendable, Hashable {
    /// The name every NEWS2 output carries (CLINICAL.md §1.1, home use): NEWS2 was
    /// developed and validated for hospital in-patients, not for measurements at home.
    public static let homeMeasuredLabel = "NEWS2 (home-measured, not validated outside hospital)"

    /// Always `NEWS2Result.homeMeasuredLabel`.
    public let label: String
    /// Always true: every score this gateway computes is from home measurements.
    public let isHomeMeasured: Bool
    public let scale: NEWS2Scale
    public let evaluatedAt: Timestamp
    /// Each parameter's status (all seven keys, always; iterate `NEWS2Parameter.allCases` for chart order).
    public let parameters: [NEWS2Parameter: NEWS2ParameterStatus]
    /// The aggregate score (0–20), only when all seven parameters are scored; else nil.
    public let total: Int?
    /// Parameters scoring 3 ("red score"), in chart order. Counted whether or not the
    /// total is available: a single red score is actionable on its own.
    public let redParameters: [NEWS2Parameter]
    /// The response band; nil when the total is unavailable.
    public let band: NEWS2Band?
    /// Parameters without a sub-score (missing, invalid, stale or undetermined), chart order.
    public let unavailable: [NEWS2Parameter]

    /// Whether any single parameter scored 3.
    public var hasRedScore: Bool { !redParameters.isEmpty }

    /// Parameters with no value, or an unusable one (`.missing` or `.invalid`).
    public var missing: [NEWS2Parameter] {
        unavailable.filter { parameters[$0] == .missing || parameters[$0] == .invalid }
    }

    /// Parameters whose value is older than the staleness window.
    public var stale: [NEWS2Parameter] {
        unavailable.filter { if case .stale = parameters[$0] { true } else { false } }
    }

    /// The least band the patient is known to be in: `band` when the total is known;
    /// otherwise low–medium if there is a red score (the red-score trigger does not need
    /// the total), else nil. The true band may be higher.
    public var minimumBand: NEWS2Band? {
        band ?? (hasRedScore ? .lowMedium : nil)
    }

    /// A parameter's sub-score, when scored.
    public func subScore(_ p: NEWS2Parameter) -> Int? { parameters[p]?.subScore }

    public subscript(_ p: NEWS2Parameter) -> NEWS2ParameterStatus { parameters[p] ?? .missing }
}

/// The NEWS2 scorer: pure and deterministic (no clock, no I/O).
public enum NEWS2 {
    /// Scores an input against NEWS2 Chart 1 (RCP 2017; CLINICAL.md §1.1–1.4).
    ///
    /// - Each parameter is missing (nil), invalid (non-finite or negative), stale (measured
    ///   more than `stalenessSeconds` before `evaluatedAt`) or scored. A measurement time
    ///   after `evaluatedAt` counts as age 0.
    /// - Non-integer values are rounded to the chart's resolution before scoring (see
    ///   `roundToChart`): whole numbers for RR, SpO2, SBP and pulse; 0.1 °C for temperature.
    /// - The total is given only when all seven parameters are scored (Open eObs
    ///   semantics, CLINICAL.md §1.4); otherwise nil with the gaps in `unavailable`.
    /// - Red scores are reported whether or not the total is available.
    public static func score(_ input: NEWS2Input) -> NEWS2Result {
        let window = max(0, input.stalenessSeconds)

        func age(_ t: Timestamp) -> Int64 {
            let (ms, overflow) = input.evaluatedAt.millisecondsSinceEpoch.subtractingReportingOverflow(t.millisecondsSinceEpoch)
            if overflow { return t > input.evaluatedAt ? 0 : Int64.max / 1000 }
            return max(0, ms) / 1000 + (max(0, ms) % 1000 == 0 ? 0 : 1)
        }
        func isStale(_ t: Timestamp) -> Bool {
            let (ms, overflow) = input.evaluatedAt.millisecondsSinceEpoch.subtractingReportingOverflow(t.millisecondsSinceEpoch)
            if overflow { return t < input.evaluatedAt }
            let (limit, limitOverflow) = window.multipliedReportingOverflow(by: 1000)
            return !limitOverflow && ms > limit
        }
        func numeric(_ m: NEWS2Measurement<Double>?, _ score: (Double) -> Int) -> NEWS2ParameterStatus {
            guard let m else { return .missing }
            guard m.value.isFinite, m.value >= 0 else { return .invalid }
            if isStale(m.measuredAt) { return .stale(ageSeconds: age(m.measuredAt)) }
            return .scored(score(m.value))
        }

        var status: [NEWS2Parameter: NEWS2ParameterStatus] = [:]
        status[.respirationRate] = numeric(input.respirationRate, respirationScore)
        status[.systolicBP] = numeric(input.systolicBP, systolicScore)
        status[.pulse] = numeric(input.pulse, pulseScore)
        status[.temperature] = numeric(input.temperature, temperatureScore)

        let oxygen: AirOrOxygen?
        if let o = input.airOrOxygen {
            if isStale(o.measuredAt) {
                status[.airOrOxygen] = .stale(ageSeconds: age(o.measuredAt))
                oxygen = nil
            } else {
                status[.airOrOxygen] = .scored(airOrOxygenScore(o.value))
                oxygen = o.value
            }
        } else {
            status[.airOrOxygen] = .missing
            oxygen = nil
        }

        if let c = input.consciousness {
            status[.consciousness] = isStale(c.measuredAt) ? .stale(ageSeconds: age(c.measuredAt)) : .scored(consciousnessScore(c.value))
        } else {
            status[.consciousness] = .missing
        }

        // SpO2 last: on Scale 2 its score depends on the (fresh) air/oxygen status.
        let spo2Status = numeric(input.spo2) { _ in 0 }
        if case .scored = spo2Status, let m = input.spo2 {
            status[.spo2] = spo2Score(m.value, scale: input.scale, oxygen: oxygen).map { .scored($0) } ?? .undetermined
        } else {
            status[.spo2] = spo2Status
        }

        let order = NEWS2Parameter.allCases
        let unavailable = order.filter { status[$0]?.subScore == nil }
        let red = order.filter { status[$0]?.subScore == 3 }
        let total: Int? = unavailable.isEmpty ? order.reduce(0) { $0 + (status[$1]?.subScore ?? 0) } : nil
        return NEWS2Result(
            label: NEWS2Result.homeMeasuredLabel, isHomeMeasured: true, scale: input.scale,
            evaluatedAt: input.evaluatedAt, parameters: status, total: total, redParameters: red,
            band: total.map { NEWS2Band.of(total: $0, redScore: !red.isEmpty) }, unavailable: unavailable)
    }

    // MARK: Rounding

    /// Rounds a non-negative value to a whole number of `tenths ? 0.1 : 1` units, ties up,
    /// and returns it as an integer count of those units (e.g. 35.05 °C → 351 tenths).
    ///
    /// Chart 1 bands are whole numbers (RR, SpO2, SBP, pulse) and tenths of a degree
    /// (temperature); the chart does not say how to score values between them
    /// (CLINICAL.md §1.1). Vigil rounds to the chart's resolution first, then scores, the
    /// way a value is charted by hand. Ties (x.5) round up, which for the non-negative
    /// values scored here is the same as half away from zero and Swift's default
    /// `rounded()`. Half-up reproduces every x.5 expectation of the public test suite cited
    /// in CLINICAL.md §1.1 (RR 8.5→1, 20.5→2, 24.5→3; SBP 90.5→2, 219.5→3; HR 40.5→1,
    /// 130.5→3; temp 35.05→1, 38.05→1, 39.05→2); half-to-even would not (20.5→20→0).
    ///
    /// Decimal inputs such as 35.05 are stored in binary as 35.04999…; a tolerance of 1e-6
    /// of the chart step treats them as the tie they were written as. Values too large for
    /// an `Int` are clamped (they score in the chart's top band either way).
    public static func roundToChart(_ value: Double, tenths: Bool) -> Int {
        let scaled = tenths ? value * 10 : value
        let rounded = (scaled + 0.5 + 1e-6).rounded(.down)
        if !(rounded < 1e12) { return 1_000_000_000_000 }
        if !(rounded > 0) { return 0 }
        return Int(rounded)
    }

    // MARK: Chart 1 rows

    /// Respiration rate row: ≤8 → 3; 9–11 → 1; 12–20 → 0; 21–24 → 2; ≥25 → 3.
    public static func respirationScore(_ perMinute: Double) -> Int {
        switch roundToChart(perMinute, tenths: false) {
        case ...8: 3
        case 9...11: 1
        case 12...20: 0
        case 21...24: 2
        default: 3
        }
    }

    /// SpO2 rows, in %.
    ///
    /// Scale 1: ≤91 → 3; 92–93 → 2; 94–95 → 1; ≥96 → 0.
    /// Scale 2: ≤83 → 3; 84–85 → 2; 86–87 → 1; 88–92 → 0; ≥93 on air → 0;
    /// 93–94 on oxygen → 1; 95–96 on oxygen → 2; ≥97 on oxygen → 3.
    ///
    /// Returns nil only on Scale 2 with SpO2 ≥93 % and `oxygen` unknown. The oxygen
    /// row's own +2 is scored separately (`airOrOxygenScore`).
    public static func spo2Score(_ percent: Double, scale: NEWS2Scale, oxygen: AirOrOxygen?) -> Int? {
        let v = roundToChart(percent, tenths: false)
        switch scale {
        case .scale1:
            switch v {
            case ...91: return 3
            case 92...93: return 2
            case 94...95: return 1
            default: return 0
            }
        case .scale2:
            switch v {
            case ...83: return 3
            case 84...85: return 2
            case 86...87: return 1
            case 88...92: return 0
            default:
                guard let oxygen else { return nil }
                if oxygen == .air { return 0 }
                switch v {
                case 93...94: return 1
                case 95...96: return 2
                default: return 3
                }
            }
        }
    }

    /// Air or oxygen row: air → 0; oxygen → 2 (both scales).
    public static func airOrOxygenScore(_ o: AirOrOxygen) -> Int { o == .air ? 0 : 2 }

    /// Systolic BP row, mm[Hg]: ≤90 → 3; 91–100 → 2; 101–110 → 1; 111–219 → 0; ≥220 → 3.
    public static func systolicScore(_ mmHg: Double) -> Int {
        switch roundToChart(mmHg, tenths: false) {
        case ...90: 3
        case 91...100: 2
        case 101...110: 1
        case 111...219: 0
        default: 3
        }
    }

    /// Pulse row, /min: ≤40 → 3; 41–50 → 1; 51–90 → 0; 91–110 → 1; 111–130 → 2; ≥131 → 3.
    public static func pulseScore(_ perMinute: Double) -> Int {
        switch roundToChart(perMinute, tenths: false) {
        case ...40: 3
        case 41...50: 1
        case 51...90: 0
        case 91...110: 1
        case 111...130: 2
        default: 3
        }
    }

    /// Consciousness row: Alert → 0; new Confusion, Voice, Pain, Unresponsive → 3.
    public static func consciousnessScore(_ c: ACVPU) -> Int { c == .alert ? 0 : 3 }

    /// Temperature row, Cel: ≤35.0 → 3; 35.1–36.0 → 1; 36.1–38.0 → 0; 38.1–39.0 → 1;
    /// ≥39.1 → 2.
    public static func temperatureScore(_ celsius: Double) -> Int {
        switch roundToChart(celsius, tenths: true) {
        case ...350: 3
        case 351...360: 1
        case 361...380: 0
        case 381...390: 1
        default: 2
        }
    }
}
