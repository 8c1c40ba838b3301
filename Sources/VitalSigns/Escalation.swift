/// How urgently a care coordinator must act. Ordered: `advisory < urgent < emergency`.
public enum Severity: Int, Comparable, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case advisory = 1
    case urgent = 2
    case emergency = 3

    public static func < (a: Severity, b: Severity) -> Bool { a.rawValue < b.rawValue }
    public var name: String {
        switch self {
        case .advisory: "advisory"
        case .urgent: "urgent"
        case .emergency: "emergency"
        }
    }
    public init?(name: String) {
        guard let s = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = s
    }
    public var description: String { name }
    public func encode(to encoder: any Encoder) throws { var c = encoder.singleValueContainer(); try c.encode(name) }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let text = try c.decode(String.self)
        guard let s = Severity(name: text) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "unknown severity; expected advisory, urgent or emergency")
        }
        self = s
    }
}

/// Where an escalation is in its lifecycle.
public enum EscalationState: String, Sendable, Codable, CaseIterable {
    /// Raised and not yet acknowledged.
    case open
    /// Raised again while unacknowledged (re-alert interval passed, or severity rose).
    case renotified
    /// A care coordinator acknowledged it.
    case acknowledged
    /// The values returned past the hysteresis band.
    case resolved
}

/// One value that triggered an escalation.
public struct TriggerValue: Hashable, Sendable, Codable {
    public var reading: ReadingID
    public var vital: String
    public var value: Double
    public var unit: String
    public var measuredAt: Timestamp
    public init(reading: ReadingID, vital: String, value: Double, unit: String, measuredAt: Timestamp) {
        self.reading = reading
        self.vital = vital
        self.value = value
        self.unit = unit
        self.measuredAt = measuredAt
    }
}

/// A clinical escalation event: what the care team is told, and why.
public struct Escalation: Hashable, Sendable, Codable {
    /// Deterministic: patient, rule and the time the episode opened, so a replay yields the same ID.
    public var id: String
    public var patient: PatientID
    /// The rule's identifier in the care plan, for example `spo2-low`.
    public var rule: String
    public var severity: Severity
    public var state: EscalationState
    /// The readings that triggered it, by ID.
    public var triggeringReadings: [ReadingID]
    public var values: [TriggerValue]
    public var carePlanVersion: Int
    /// When the episode opened (the time of the reading that satisfied the rule).
    public var openedAt: Timestamp
    /// When this event (raise, re-notify, resolve) happened.
    public var at: Timestamp
    /// A short clinical summary with no identifiers, for example "SpO2 below 90 % for 60 s".
    public var summary: String
    /// Who acknowledged it (a care-team member's identifier from the downlink), once acknowledged.
    public var acknowledgedBy: String?
    /// When it was acknowledged.
    public var acknowledgedAt: Timestamp?
    /// Model output behind the escalation, as flat key/value text with no identifiers
    /// (for NEWS2: label, total, band, red_parameters, missing, stale; for trend models the
    /// baseline or reference used). nil when the rule has none.
    public var detail: [String: String]?

    public init(patient: PatientID, rule: String, severity: Severity, state: EscalationState,
                triggeringReadings: [ReadingID], values: [TriggerValue], carePlanVersion: Int,
                openedAt: Timestamp, at: Timestamp, summary: String,
                acknowledgedBy: String? = nil, acknowledgedAt: Timestamp? = nil, detail: [String: String]? = nil) {
        self.id = Escalation.deriveID(patient: patient, rule: rule, openedAt: openedAt)
        self.patient = patient
        self.rule = rule
        self.severity = severity
        self.state = state
        self.triggeringReadings = triggeringReadings
        self.values = values
        self.carePlanVersion = carePlanVersion
        self.openedAt = openedAt
        self.at = at
        self.summary = summary
        self.acknowledgedBy = acknowledgedBy
        self.acknowledgedAt = acknowledgedAt
        self.detail = detail
    }

    public static func deriveID(patient: PatientID, rule: String, openedAt: Timestamp) -> String {
        var bytes = Array("vigil.escalation.v1".utf8)
        for field in [patient.rawValue, rule, String(openedAt.millisecondsSinceEpoch)] {
            bytes.append(0x1F)
            bytes.append(contentsOf: field.utf8)
        }
        return SHA256.hash(bytes).prefix(16).hexString
    }
}
