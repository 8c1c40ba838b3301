public import VitalSigns
import StrictYAML

/// A care plan that failed to load: where and why (file:line:col: field: message), never a value.
public struct CarePlanError: Error, Hashable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension CarePlan {
    /// Parses and validates a plan. Refused as a whole on any error.
    public static func load(yaml bytes: [UInt8], fileName: String) throws(CarePlanError) -> CarePlan {
        do {
            return try YAMLDecoder().decode(CarePlan.self, from: bytes, fileName: fileName)
        } catch {
            throw CarePlanError(error.description)
        }
    }
}

/// The reading format of `vigilctl evaluate --readings` (docs/care-plans.md): one JSON
/// object per line.
///
///     {"vital": "spo2", "value": 88, "unit": "%", "measured_at": "2026-11-25T10:00:00Z",
///      "patient": "p-1", "device": "ox-1", "flags": ["body_movement"], "id": "r-17"}
///
/// Required: `vital` (a Vigil vital key), `value`, `measured_at` (ISO 8601 with a zone).
/// Optional: `unit` (default the vital's canonical unit; glucose may be `mmol/L`),
/// `patient` (default the plan's), `device` (default `replay`), `flags` (quality flag
/// names), `id` (default derived like the gateway's), `received_at` (default measured_at).
/// Blank lines and lines starting with `#` are skipped.
public enum ReplayReadings {
    public struct LineError: Error, Hashable, Sendable, CustomStringConvertible {
        public var line: Int
        public var reason: String
        public var description: String { "line \(line): \(reason)" }
    }

    public static func parse(line text: String, number: Int, defaultPatient: PatientID) throws(LineError) -> Reading? {
        let trimmed = text.drop(while: { $0 == " " || $0 == "\t" })
        if trimmed.isEmpty || trimmed.hasPrefix("#") || trimmed.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\r" }) { return nil }
        func fail(_ reason: String) -> LineError { LineError(line: number, reason: reason) }
        let json: JSONValue
        do { json = try JSONValue.parse(String(trimmed)) } catch { throw fail("\(error)") }
        guard case .object = json else { throw fail("not a JSON object") }
        guard let key = json["vital"]?.stringValue else { throw fail("'vital' is missing") }
        guard let vital = Vital.named(key) else { throw fail("unknown vital; expected one of \(Vital.all.map(\.key).joined(separator: ", "))") }
        guard let value = json["value"]?.doubleValue else { throw fail("'value' must be a number") }
        guard let timeText = json["measured_at"]?.stringValue, let measuredAt = Timestamp(iso8601: timeText) else {
            throw fail("'measured_at' must be an ISO 8601 time with a zone")
        }
        let receivedAt = json["received_at"]?.stringValue.flatMap { Timestamp(iso8601: $0) } ?? measuredAt
        let unit = json["unit"]?.stringValue ?? vital.unit
        var quantity = Quantity(value, unit)
        if vital == .bloodGlucose, unit == "mmol/L" { quantity = Quantity(value * GlucoseModel.mgPerMmol, "mg/dL") }
        var flags: QualityFlags = []
        if let names = json["flags"]?.arrayValue {
            let strings = names.compactMap(\.stringValue)
            guard strings.count == names.count, let f = QualityFlags(names: strings) else { throw fail("'flags' has an unknown flag name") }
            flags = f
        }
        let patient = json["patient"]?.stringValue.map { PatientID($0) } ?? defaultPatient
        let device = DeviceID(json["device"]?.stringValue ?? "replay")
        let id = json["id"]?.stringValue.map { ReadingID(rawValue: $0) }
            ?? ReadingID.derive(device: device, vital: vital, measuredAt: measuredAt, sequence: nil, arrival: receivedAt)
        return Reading(id: id, patient: patient, device: device, vital: vital, quantity: quantity,
                       measuredAt: measuredAt, receivedAt: receivedAt, flags: flags, sequence: nil)
    }
}

/// Replays a history through the same engine the daemon runs, with ticks of replayed time
/// between readings (so "expected reading missing" and "device silent" fire as they would).
public struct Replay {
    public enum Output: Sendable, Hashable {
        case escalation(Escalation)
        case event(GatewayEvent)
    }

    public var engine: RuleEngine
    /// Replayed seconds between ticks (the daemon ticks once a minute).
    public var tickSeconds: Int64
    private var nextTick: Timestamp?
    private let needsTicks: Bool

    public init(plan: CarePlan, tickSeconds: Int64 = 60) {
        engine = RuleEngine(plan: plan)
        self.tickSeconds = max(1, tickSeconds)
        needsTicks = !plan.expectedReadings.isEmpty || plan.deviceSilentSeconds != nil
    }

    /// Ticks up to the reading's time, then feeds it. Readings should come in time order.
    public mutating func feed(_ r: Reading) -> [Output] {
        var out = advance(to: r.measuredAt)
        out += engine.ingest(r).map { .escalation($0) }
        return out
    }

    /// Ticks every `tickSeconds` of replayed time up to and including `t`.
    public mutating func advance(to t: Timestamp) -> [Output] {
        guard needsTicks else { return [] }
        var out: [Output] = []
        var next = nextTick ?? Timestamp(millisecondsSinceEpoch: floorDiv(t.millisecondsSinceEpoch, tickSeconds * 1000) * tickSeconds * 1000)
        while next <= t {
            let o = engine.tick(now: next)
            out += o.escalations.map { .escalation($0) } + o.events.map { .event($0) }
            next = next.adding(seconds: tickSeconds)
        }
        nextTick = next
        return out
    }
}

extension Escalation {
    /// The escalation as one JSON object: the uplink's `vigil.escalation/1` fields plus
    /// `acknowledged_by`, `acknowledged_at` and `detail`.
    public var json: JSONValue {
        var fields: [(String, JSONValue)] = [
            ("schema", "vigil.escalation/1"), ("id", .string(id)), ("patient", .string(patient.rawValue)),
            ("rule", .string(rule)), ("severity", .string(severity.name)), ("state", .string(state.rawValue)),
            ("triggering_readings", .array(triggeringReadings.map { .string($0.rawValue) })),
            ("values", .array(values.map { v in
                .object([("reading", .string(v.reading.rawValue)), ("vital", .string(v.vital)), ("value", .double(v.value)),
                         ("unit", .string(v.unit)), ("measured_at", .string(v.measuredAt.iso8601))])
            })),
            ("care_plan_version", .int(Int64(carePlanVersion))), ("opened_at", .string(openedAt.iso8601)),
            ("at", .string(at.iso8601)), ("summary", .string(summary)),
        ]
        if let acknowledgedBy { fields.append(("acknowledged_by", .string(acknowledgedBy))) }
        if let acknowledgedAt { fields.append(("acknowledged_at", .string(acknowledgedAt.iso8601))) }
        if let detail { fields.append(("detail", .object(detail.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }))) }
        return .object(fields)
    }
}

extension GatewayEvent {
    /// The event as one JSON object (`vigil.event/1`).
    public var json: JSONValue {
        .object([("schema", "vigil.event/1"), ("kind", .string(kind)), ("at", .string(at.iso8601)),
                 ("count", count.map { .int($0) } ?? .null),
                 ("detail", .object(detail.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }))])
    }
}
