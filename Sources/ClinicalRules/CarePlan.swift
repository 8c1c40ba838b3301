public import VitalSigns

/// A patient's care plan: the thresholds and models the care team set for them.
///
/// Plans are YAML documents (`care-plans/<patient>.yaml`), versioned by the care team.
/// A plan that does not validate is refused as a whole, with an error naming the field;
/// the previous plan stays in force.
///
/// ```yaml
/// patient: patient-0001
/// version: 3
/// thresholds:
///   - id: spo2-low
///     vital: spo2
///     below: 90
///     sustained_seconds: 60
///     severity: urgent
///     hysteresis: 1
/// ```
public struct CarePlan: Sendable, Hashable, Decodable {
    public var patient: PatientID
    /// Monotonic version set by the care team; every escalation names it.
    public var version: Int
    public var thresholds: [ThresholdRule]

    public init(patient: PatientID, version: Int, thresholds: [ThresholdRule]) {
        self.patient = patient
        self.version = version
        self.thresholds = thresholds
    }

    enum CodingKeys: String, CodingKey { case patient, version, thresholds }

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
        var seen = Set<String>()
        for rule in thresholds where !seen.insert(rule.id).inserted {
            throw DecodingError.dataCorruptedError(
                forKey: .thresholds, in: c, debugDescription: "rule id '\(rule.id)' is used twice")
        }
    }

    /// The longest span of history any rule needs to rebuild its state.
    public var rebuildWindowSeconds: Int64 {
        thresholds.map { $0.sustainedSeconds + $0.maxGapSeconds }.max() ?? 0
    }
}

/// A fixed threshold on one vital, sustained for a duration.
///
/// The condition holds while clean readings stay beyond `below`/`above`. The rule raises
/// when it has held continuously for `sustained_seconds` of device time (readings no more
/// than `max_gap_seconds` apart), and resolves when a clean reading comes back past the
/// threshold by the `hysteresis` margin. Readings with clinically unreliable quality flags
/// neither start, extend nor end an episode.
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

    public init(id: String, vital: Vital, direction: Direction, limit: Double, severity: Severity,
                sustainedSeconds: Int64 = 0, hysteresis: Double = 0, maxGapSeconds: Int64 = 10) {
        self.id = id
        self.vital = vital
        self.direction = direction
        self.limit = limit
        self.severity = severity
        self.sustainedSeconds = sustainedSeconds
        self.hysteresis = hysteresis
        self.maxGapSeconds = maxGapSeconds
    }

    enum CodingKeys: String, CodingKey {
        case id, vital, below, above, severity, hysteresis
        case sustainedSeconds = "sustained_seconds"
        case maxGapSeconds = "max_gap_seconds"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        guard !id.isEmpty, id.utf8.count <= 64,
              id.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" })
        else {
            throw DecodingError.dataCorruptedError(
                forKey: .id, in: c, debugDescription: "rule id must be 1–64 characters of a–z, 0–9, '-' or '_'")
        }
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
        sustainedSeconds = try c.decodeIfPresent(Int64.self, forKey: .sustainedSeconds) ?? 0
        guard (0...86_400).contains(sustainedSeconds) else {
            throw DecodingError.dataCorruptedError(
                forKey: .sustainedSeconds, in: c, debugDescription: "must be between 0 and 86400 seconds")
        }
        hysteresis = try c.decodeIfPresent(Double.self, forKey: .hysteresis) ?? 0
        guard hysteresis.isFinite, hysteresis >= 0, hysteresis < 1_000_000 else {
            throw DecodingError.dataCorruptedError(forKey: .hysteresis, in: c, debugDescription: "must be zero or more")
        }
        maxGapSeconds = try c.decodeIfPresent(Int64.self, forKey: .maxGapSeconds) ?? 10
        guard (1...86_400).contains(maxGapSeconds) else {
            throw DecodingError.dataCorruptedError(
                forKey: .maxGapSeconds, in: c, debugDescription: "must be between 1 and 86400 seconds")
        }
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
        // Limits are bounded at decode time, but format without an Int64 conversion anyway:
        // a summary must never be able to trap.
        var limitText = String(limit)
        if limitText.hasSuffix(".0") { limitText.removeLast(2) }
        var s = "\(vital.key) \(direction.rawValue) \(limitText) \(vital.unit)"
        if sustainedSeconds > 0 { s += " for \(sustainedSeconds) s" }
        return s
    }
}
