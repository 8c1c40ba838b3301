public import VitalSigns

/// A patient's care plan: the thresholds and models the care team set for them.
///
/// Plans are YAML documents (`care-plans/<patient>.yaml`), versioned by the care team.
/// A plan that does not validate is refused as a whole, with an error naming the field
/// (`plan.yaml:12:5: models.weight_gain[0].amount: …`); the previous plan stays in force.
/// The full schema, each model and its sources are in docs/care-plans.md.
///
/// ```yaml
/// patient: patient-0001
/// version: 3
/// utc_offset_minutes: 60        # the patient's local time, for "expected by 11:00"
/// realert_minutes: 30           # default re-alert interval for every rule
/// thresholds:
///   - id: spo2-low
///     vital: spo2
///     below: 90
///     sustained_seconds: 60
///     severity: urgent
///     hysteresis: 1
/// news2: {scale: 1, window_minutes: 60, air_or_oxygen: air, consciousness: alert}
/// models:
///   weight_gain: [{id: weight-gain-3d, amount: 2, unit: kg, days: 3, comparison: ">"}]
///   bp_crisis: {}
/// expected_readings: [{id: weight-missing, vital: body_weight, by: "11:00"}]
/// ```
public struct CarePlan: Sendable, Hashable, Decodable {
    public var patient: PatientID
    /// Monotonic version set by the care team; every escalation names it.
    public var version: Int
    public var thresholds: [ThresholdRule]
    /// The patient's offset from UTC in minutes (east positive), for local-day rules
    /// (daily weights, "expected by 11:00"). A fixed offset: the care team pushes a new
    /// plan version at a daylight-saving change.
    public var utcOffsetMinutes: Int
    /// Default re-alert interval, seconds (CLINICAL.md §3.6 rule 3: 30 min default).
    public var realertSeconds: Int64
    /// NEWS2 as a model; nil = off.
    public var news2: NEWS2Settings?
    public var models: ModelSettings
    public var expectedReadings: [ExpectedReading]
    /// A device of this patient silent this long is reported once as a `device_silent`
    /// gateway event (a device problem, not an escalation). nil = not watched.
    public var deviceSilentSeconds: Int64?

    public init(patient: PatientID, version: Int, thresholds: [ThresholdRule], utcOffsetMinutes: Int = 0,
                realertSeconds: Int64 = 1800, news2: NEWS2Settings? = nil, models: ModelSettings = ModelSettings(),
                expectedReadings: [ExpectedReading] = [], deviceSilentSeconds: Int64? = nil) {
        self.patient = patient
        self.version = version
        self.thresholds = thresholds
        self.utcOffsetMinutes = utcOffsetMinutes
        self.realertSeconds = realertSeconds
        self.news2 = news2
        self.models = models
        self.expectedReadings = expectedReadings
        self.deviceSilentSeconds = deviceSilentSeconds
    }

    enum CodingKeys: String, CodingKey {
        case patient, version, thresholds, news2, models
        case utcOffsetMinutes = "utc_offset_minutes"
        case realertMinutes = "realert_minutes"
        case expectedReadings = "expected_readings"
        case deviceSilentMinutes = "device_silent_minutes"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let patient = try c.decode(String.self, forKey: .patient)
        guard !patient.isEmpty, patient.utf8.count <= 128, !patient.contains(where: { $0.isNewline || $0 == "/" }) else {
            throw DecodingError.dataCorruptedError(
                forKey: .patient, in: c, debugDescription: "patient must be 1–128 characters with no '/' or line breaks")
        }
        self.patient = PatientID(patient)
        version = try c.decode(Int.self, forKey: .version)
        guard version >= 0 else {
            throw DecodingError.dataCorruptedError(forKey: .version, in: c, debugDescription: "version must not be negative")
        }
        thresholds = try c.decodeIfPresent([ThresholdRule].self, forKey: .thresholds) ?? []
        utcOffsetMinutes = Int(try c.integer(.utcOffsetMinutes, default: 0, in: -720...840))
        realertSeconds = try c.integer(.realertMinutes, default: 30, in: 1...10_080) * 60
        news2 = try c.decodeIfPresent(NEWS2Settings.self, forKey: .news2)
        models = try c.decodeIfPresent(ModelSettings.self, forKey: .models) ?? ModelSettings()
        expectedReadings = try c.decodeIfPresent([ExpectedReading].self, forKey: .expectedReadings) ?? []
        deviceSilentSeconds = c.contains(.deviceSilentMinutes) ? try c.integer(.deviceSilentMinutes, default: 60, in: 1...10_080) * 60 : nil
        // Rule ids name escalations (patient, rule): they must be unique across the plan.
        var seen = Set<String>()
        for id in ruleIDs where !seen.insert(id).inserted {
            let key: CodingKeys = thresholds.contains { $0.id == id } ? .thresholds : .models
            throw DecodingError.dataCorruptedError(
                forKey: key, in: c, debugDescription: "rule id '\(id)' is used twice")
        }
    }

    /// Every rule id this plan can raise, thresholds first.
    public var ruleIDs: [String] {
        thresholds.map(\.id) + models.ruleIDs + (news2 != nil ? [NEWS2Settings.ruleID] : []) + expectedReadings.map(\.id)
    }

    /// The longest span of recent readings any rule needs replayed to rebuild its state
    /// (a breach being sustained or awaiting its confirmation), in seconds.
    public var rebuildWindowSeconds: Int64 {
        var longest = thresholds.map(\.persistence.replaySeconds).max() ?? 0
        longest = max(longest, models.replaySeconds)
        if let n = news2 { longest = max(longest, n.windowSeconds) }
        return longest
    }

    /// How many days of daily summaries the baseline and trend models need (0 if none).
    public var historyDays: Int { models.historyDays }
}

/// A fixed threshold on one vital.
///
/// The condition holds while clean readings stay beyond `below`/`above`. Persistence is
/// `sustained_seconds` (continuous streams, readings no more than `max_gap_seconds`
/// apart) or `confirm_within_minutes` (spot checks: a later repeat reading within M
/// minutes). It resolves when a clean reading comes back past the threshold by the
/// `hysteresis` margin. Readings with clinically unreliable quality flags neither start,
/// extend nor end an episode.
public struct ThresholdRule: Sendable, Hashable, Decodable {
    public enum Direction: String, Sendable, Hashable { case below, above }

    /// The rule's name in escalations, unique within the plan (`spo2-low`).
    public var id: String
    public var vital: Vital
    public var direction: Direction
    /// The threshold, in the vital's canonical UCUM unit. A value strictly beyond it breaches.
    public var limit: Double
    public var severity: Severity
    /// How long the breach must last; 0 raises on the first clean breaching reading.
    public var sustainedSeconds: Int64
    /// How far back past the limit a value must return to resolve (same unit as `limit`).
    public var hysteresis: Double
    /// A longer gap between breaching readings restarts the episode (continuous streams).
    public var maxGapSeconds: Int64
    /// Spot checks: a confirming repeat within this many seconds (0 = not used).
    public var confirmWithinSeconds: Int64
    /// Overrides the plan's re-alert interval for this rule, seconds.
    public var realertSeconds: Int64?

    public init(id: String, vital: Vital, direction: Direction, limit: Double, severity: Severity,
                sustainedSeconds: Int64 = 0, hysteresis: Double = 0, maxGapSeconds: Int64 = 10,
                confirmWithinSeconds: Int64 = 0, realertSeconds: Int64? = nil) {
        self.id = id
        self.vital = vital
        self.direction = direction
        self.limit = limit
        self.severity = severity
        self.sustainedSeconds = sustainedSeconds
        self.hysteresis = hysteresis
        self.maxGapSeconds = maxGapSeconds
        self.confirmWithinSeconds = confirmWithinSeconds
        self.realertSeconds = realertSeconds
    }

    public var persistence: Persistence {
        if confirmWithinSeconds > 0 { return .confirm(withinSeconds: confirmWithinSeconds) }
        return sustainedSeconds > 0 ? .sustained(seconds: sustainedSeconds, maxGapSeconds: maxGapSeconds) : .immediate
    }

    enum CodingKeys: String, CodingKey {
        case id, vital, below, above, severity, hysteresis
        case realertMinutes = "realert_minutes"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try RuleID.decode(c, .id)
        let key = try c.decode(String.self, forKey: .vital)
        guard let v = Vital.named(key) else {
            throw DecodingError.dataCorruptedError(
                forKey: .vital, in: c,
                debugDescription: "unknown vital; expected one of \(Vital.all.map(\.key).joined(separator: ", "))")
        }
        vital = v
        let below = try c.decodeIfPresent(Double.self, forKey: .below)
        let above = try c.decodeIfPresent(Double.self, forKey: .above)
        switch (below, above) {
        case let (b?, nil): direction = .below; limit = b
        case let (nil, a?): direction = .above; limit = a
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .below, in: c, debugDescription: "give exactly one of 'below' or 'above'")
        }
        guard limit.isFinite, abs(limit) < 1_000_000 else {
            throw DecodingError.dataCorruptedError(forKey: direction == .below ? .below : .above, in: c,
                                                   debugDescription: "the limit must be a number between -1000000 and 1000000")
        }
        severity = try c.decode(Severity.self, forKey: .severity)
        switch try Persistence.decode(from: decoder, default: .immediate) {
        case .immediate: (sustainedSeconds, maxGapSeconds, confirmWithinSeconds) = (0, 10, 0)
        case .sustained(let s, let g): (sustainedSeconds, maxGapSeconds, confirmWithinSeconds) = (s, g, 0)
        case .confirm(let w): (sustainedSeconds, maxGapSeconds, confirmWithinSeconds) = (0, 10, w)
        }
        hysteresis = try c.decodeIfPresent(Double.self, forKey: .hysteresis) ?? 0
        guard hysteresis.isFinite, hysteresis >= 0, hysteresis < 1_000_000 else {
            throw DecodingError.dataCorruptedError(forKey: .hysteresis, in: c, debugDescription: "must be zero or more")
        }
        realertSeconds = c.contains(.realertMinutes) ? try c.integer(.realertMinutes, default: 30, in: 1...10_080) * 60 : nil
    }

    /// Whether `value` is beyond the limit.
    public func breaches(_ value: Double) -> Bool {
        direction == .below ? value < limit : value > limit
    }

    /// Whether `value` is back inside the limit by at least the hysteresis margin.
    public func clears(_ value: Double) -> Bool {
        direction == .below ? value >= limit + hysteresis : value <= limit - hysteresis
    }

    /// A summary with no patient data, for example "spo2 below 90 % for 60 s".
    public var summary: String {
        var s = "\(vital.key) \(direction.rawValue) \(KeyedDecodingContainer<RuleID.Key>.text(limit)) \(vital.unit)"
        if sustainedSeconds > 0 { s += " for \(sustainedSeconds) s" }
        if confirmWithinSeconds > 0 { s += ", confirmed by a repeat within \(confirmWithinSeconds / 60) min" }
        return s
    }
}

enum RuleID {
    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// A rule id: 1–64 characters of a–z, 0–9, '-' or '_'.
    static func decode<K: CodingKey>(_ c: KeyedDecodingContainer<K>, _ key: K) throws -> String {
        let id = try c.decode(String.self, forKey: key)
        guard valid(id) else {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: c, debugDescription: "rule id must be 1–64 characters of a–z, 0–9, '-' or '_'")
        }
        return id
    }

    static func valid(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64
            && id.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" })
    }
}

/// "Expected reading missing": no clean reading of `vital` by `by` local time (the plan's
/// UTC offset) on a day. Distinct from "device silent" (a device problem, reported as a
/// gateway event) and from "gateway offline" (the care team sees it on the status topic).
public struct ExpectedReading: Sendable, Hashable, Decodable {
    public var id: String
    public var vital: Vital
    /// Minutes after local midnight (11:00 → 660).
    public var byMinute: Int
    public var severity: Severity

    public init(id: String, vital: Vital, byMinute: Int, severity: Severity = .advisory) {
        self.id = id
        self.vital = vital
        self.byMinute = byMinute
        self.severity = severity
    }

    enum CodingKeys: String, CodingKey { case id, vital, by, severity }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try RuleID.decode(c, .id)
        guard let v = Vital.named(try c.decode(String.self, forKey: .vital)) else {
            throw c.refuse(.vital, "unknown vital; expected one of \(Vital.all.map(\.key).joined(separator: ", "))")
        }
        vital = v
        let text = try c.decode(String.self, forKey: .by)
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 2, parts[1].count == 2, let h = Int(parts[0]), let m = Int(parts[1]),
              (0...23).contains(h), (0...59).contains(m) else {
            throw c.refuse(.by, "must be a local time HH:MM (24-hour), quoted")
        }
        byMinute = h * 60 + m
        severity = try c.severity(.severity, default: .advisory)
    }
}
