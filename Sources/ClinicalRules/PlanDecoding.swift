import VitalSigns

// Small helpers for validating care-plan fields while decoding. Every refusal is a
// DecodingError at the offending key, which StrictYAML reports as file:line:col and the
// field's path; messages never echo the value (it may be patient data).

extension KeyedDecodingContainer {
    func number(_ key: Key, default value: Double, in range: ClosedRange<Double>) throws -> Double {
        guard let v = try decodeIfPresent(Double.self, forKey: key) else { return value }
        guard v.isFinite, range.contains(v) else {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: self, debugDescription: "must be a number between \(Self.text(range.lowerBound)) and \(Self.text(range.upperBound))")
        }
        return v
    }

    func optionalNumber(_ key: Key, in range: ClosedRange<Double>) throws -> Double? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        return try number(key, default: 0, in: range)
    }

    func integer(_ key: Key, default value: Int64, in range: ClosedRange<Int64>) throws -> Int64 {
        guard let v = try decodeIfPresent(Int64.self, forKey: key) else { return value }
        guard range.contains(v) else {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: self, debugDescription: "must be a whole number between \(range.lowerBound) and \(range.upperBound)")
        }
        return v
    }

    func severity(_ key: Key, default value: Severity) throws -> Severity {
        try decodeIfPresent(Severity.self, forKey: key) ?? value
    }

    func flag(_ key: Key, default value: Bool) throws -> Bool {
        try decodeIfPresent(Bool.self, forKey: key) ?? value
    }

    func refuse(_ key: Key, _ message: String) -> DecodingError {
        DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: message)
    }

    static func text(_ d: Double) -> String {
        var s = String(d)
        if s.hasSuffix(".0") { s.removeLast(2) }
        return s
    }
}

/// How long a condition must hold before it raises (CLINICAL.md §3.6 rule 1).
public enum Persistence: Sendable, Hashable {
    /// The first clean breaching reading raises (daily weights, spot checks the plan trusts).
    case immediate
    /// Continuous streams: the breach must last `seconds` of device time, with clean
    /// breaching readings no more than `maxGapSeconds` apart (a longer gap restarts it).
    case sustained(seconds: Int64, maxGapSeconds: Int64)
    /// Spot checks: a second clean breaching reading, measured later than the first and at
    /// most `withinSeconds` after it, confirms the first (AHA: repeat after 1–5 min).
    case confirm(withinSeconds: Int64)

    /// The history a rebuild must replay to restore a half-accumulated breach, in seconds.
    var replaySeconds: Int64 {
        switch self {
        case .immediate: 0
        case .sustained(let s, let gap): s + gap
        case .confirm(let w): w
        }
    }
}

enum PersistenceKeys: String, CodingKey {
    case sustainedSeconds = "sustained_seconds"
    case maxGapSeconds = "max_gap_seconds"
    case confirmWithinMinutes = "confirm_within_minutes"
}

extension Persistence {
    /// Reads `sustained_seconds` (+ `max_gap_seconds`) or `confirm_within_minutes`; they
    /// exclude each other. Both absent gives `fallback`.
    static func decode(from decoder: any Decoder, default fallback: Persistence) throws -> Persistence {
        let c = try decoder.container(keyedBy: PersistenceKeys.self)
        let sustained = try c.decodeIfPresent(Int64.self, forKey: .sustainedSeconds)
        let gap = try c.integer(.maxGapSeconds, default: 10, in: 1...86_400)
        let confirm = try c.decodeIfPresent(Int64.self, forKey: .confirmWithinMinutes)
        if let sustained, !(0...86_400).contains(sustained) {
            throw c.refuse(.sustainedSeconds, "must be between 0 and 86400 seconds")
        }
        if let confirm, !(1...1_440).contains(confirm) {
            throw c.refuse(.confirmWithinMinutes, "must be between 1 and 1440 minutes")
        }
        switch (sustained, confirm) {
        case (let s?, nil): return s == 0 ? .immediate : .sustained(seconds: s, maxGapSeconds: gap)
        case (nil, let m?): return .confirm(withinSeconds: m * 60)
        case (nil, nil):
            if case .sustained(let s, _) = fallback, c.contains(.maxGapSeconds) { return .sustained(seconds: s, maxGapSeconds: gap) }
            return fallback
        case (.some(let s), .some):
            if s == 0 { return .confirm(withinSeconds: (confirm ?? 1) * 60) }
            throw c.refuse(.confirmWithinMinutes, "give sustained_seconds (continuous streams) or confirm_within_minutes (spot checks), not both")
        }
    }
}
