public import VitalSigns

/// The gateway's own state, published retained on `<prefix>/status`.
public enum GatewayState: String, Sendable {
    case online
    case offline
}

/// Hand-written JSON for the uplink's hot path: one growing byte buffer, no Codable, no
/// Foundation. Keys are always written in the order below, so equal inputs give
/// byte-identical payloads (and stable hashes). Strings are escaped per RFC 8259 §7
/// (`"`, `\`, and every control character below U+0020); numbers never use exponent
/// notation; NaN and ±infinity, which JSON cannot carry, become `null`.
///
/// Schemas (timestamps are ISO 8601 UTC with milliseconds, `2026-11-25T11:48:15.000Z`):
///
/// - `vigil.reading/1` on `<prefix>/readings`:
///   `{"schema","id","patient","device","vital","loinc","mdc"(number|null),"value"(number|null),
///   "unit"(UCUM),"measured_at","received_at","flags"([names]),"sequence"(number|null)}`.
///   `id` is the deterministic reading ID: consumers de-duplicate on it.
/// - `vigil.escalation/1` on `<prefix>/escalations`:
///   `{"schema","id","patient","rule","severity"("advisory"|"urgent"|"emergency"),
///   "state"("open"|"renotified"|"acknowledged"|"resolved"),"triggering_readings"([ids]),
///   "values"([{"reading","vital","value","unit","measured_at"}]),"care_plan_version",
///   "opened_at","at","summary","acknowledged_by"?,"acknowledged_at"?,"detail"?({string: string})}`.
///   The last three are present only when set: who acknowledged it and when (downlink `ack`),
///   and the model's detail (NEWS2 band, baseline; plus `ack_detail`, the acknowledger's note).
/// - `vigil.event/1` on `<prefix>/events`:
///   `{"schema","kind","at","count"(number|null),"detail"({string: string}, keys sorted)}`.
/// - `vigil.status/1` on `<prefix>/status`, retained: `{"schema","state"("online"|"offline"),"at"?,
///   "version"?,"uptime_seconds"?,"outbox"?({"readings","priority"}),"devices"?([{"id","state","last_reading_at"}])}`.
///   The offline form is the last will and has no `at` (it is fixed at connect time).
///
/// The FHIR R4 encoding of readings (ARCHITECTURE.md, Contracts) will sit beside this one.
public enum PayloadEncoder {
    public static func encode(_ payload: OutboxPayload) -> [UInt8] {
        switch payload {
        case .reading(let r): reading(r)
        case .escalation(let e): escalation(e)
        case .event(let e): event(e)
        }
    }

    public static func reading(_ r: Reading) -> [UInt8] {
        var w = JSONWriter(capacity: 384)
        w.begin()
        w.field("schema", "vigil.reading/1")
        w.field("id", r.id.rawValue)
        w.field("patient", r.patient.rawValue)
        w.field("device", r.device.rawValue)
        w.field("vital", r.vital.key)
        w.field("loinc", r.vital.loinc)
        w.key("mdc")
        if let mdc = r.vital.mdc { w.integer(Int64(mdc)) } else { w.null() }
        w.key("value"); w.number(r.quantity.value)
        w.field("unit", r.quantity.unit)
        w.time("measured_at", r.measuredAt)
        w.time("received_at", r.receivedAt)
        w.key("flags")
        w.beginArray()
        for name in r.flags.nameList { w.element(); w.string(name) }
        w.endArray()
        w.key("sequence")
        if let s = r.sequence { w.unsigned(s) } else { w.null() }
        w.end()
        return w.bytes
    }

    public static func escalation(_ e: Escalation) -> [UInt8] {
        var w = JSONWriter(capacity: 512)
        w.begin()
        w.field("schema", "vigil.escalation/1")
        w.field("id", e.id)
        w.field("patient", e.patient.rawValue)
        w.field("rule", e.rule)
        w.field("severity", e.severity.name)
        w.field("state", e.state.rawValue)
        w.key("triggering_readings")
        w.beginArray()
        for id in e.triggeringReadings { w.element(); w.string(id.rawValue) }
        w.endArray()
        w.key("values")
        w.beginArray()
        for v in e.values {
            w.element()
            w.begin()
            w.field("reading", v.reading.rawValue)
            w.field("vital", v.vital)
            w.key("value"); w.number(v.value)
            w.field("unit", v.unit)
            w.time("measured_at", v.measuredAt)
            w.end()
        }
        w.endArray()
        w.key("care_plan_version"); w.integer(Int64(e.carePlanVersion))
        w.time("opened_at", e.openedAt)
        w.time("at", e.at)
        w.field("summary", e.summary)
        // Optional, after the original fields (issue 6 downlink `ack`): present only when set.
        if let by = e.acknowledgedBy { w.field("acknowledged_by", by) }
        if let at = e.acknowledgedAt { w.time("acknowledged_at", at) }
        if let detail = e.detail {
            w.key("detail")
            w.begin()
            for k in detail.keys.sorted() { w.field(k, detail[k] ?? "") }
            w.end()
        }
        w.end()
        return w.bytes
    }

    public static func event(_ e: GatewayEvent) -> [UInt8] {
        var w = JSONWriter(capacity: 256)
        w.begin()
        w.field("schema", "vigil.event/1")
        w.field("kind", e.kind)
        w.time("at", e.at)
        w.key("count")
        if let c = e.count { w.integer(c) } else { w.null() }
        w.key("detail")
        w.begin()
        for k in e.detail.keys.sorted() {
            w.field(k, e.detail[k] ?? "")
        }
        w.end()
        w.end()
        return w.bytes
    }

    /// The retained status payload. `at` is omitted for the will (see the type's comment).
    /// `detail` (version, uptime, outbox depth, device states) is added to `online` statuses
    /// the daemon publishes (docs/schemas/status.schema.json).
    public static func status(_ state: GatewayState, at: Timestamp? = nil, detail: StatusDetail? = nil) -> [UInt8] {
        var w = JSONWriter(capacity: 96 + (detail?.devices.count ?? 0) * 96)
        w.begin()
        w.field("schema", "vigil.status/1")
        w.field("state", state.rawValue)
        if let at { w.time("at", at) }
        if let detail {
            w.field("version", detail.version)
            w.key("uptime_seconds"); w.integer(max(0, detail.uptimeSeconds))
            w.key("outbox")
            w.begin()
            w.key("readings"); w.integer(max(0, detail.outboxReadings))
            w.key("priority"); w.integer(max(0, detail.outboxPriority))
            w.end()
            w.key("devices")
            w.beginArray()
            for d in detail.devices {
                w.element()
                w.begin()
                w.field("id", d.id)
                w.field("state", d.state)
                w.key("last_reading_at")
                if let t = d.lastReadingAt { w.string(t.iso8601) } else { w.null() }
                w.end()
            }
            w.endArray()
        }
        w.end()
        return w.bytes
    }

    /// What the retained `online` status tells about the gateway. No patient data.
    public struct StatusDetail: Sendable, Hashable {
        public struct Device: Sendable, Hashable {
            public var id: String
            /// The device board's state (`connected`, `disconnected`, `downloading`, …).
            public var state: String
            public var lastReadingAt: Timestamp?
            public init(id: String, state: String, lastReadingAt: Timestamp?) {
                self.id = id
                self.state = state
                self.lastReadingAt = lastReadingAt
            }
        }
        public var version: String
        /// Seconds since vigild started.
        public var uptimeSeconds: Int64
        /// Undelivered routine readings.
        public var outboxReadings: Int64
        /// Undelivered escalations and events.
        public var outboxPriority: Int64
        public var devices: [Device]
        public init(version: String, uptimeSeconds: Int64, outboxReadings: Int64, outboxPriority: Int64, devices: [Device]) {
            self.version = version
            self.uptimeSeconds = uptimeSeconds
            self.outboxReadings = outboxReadings
            self.outboxPriority = outboxPriority
            self.devices = devices
        }
    }
}

/// A minimal streaming JSON writer over a byte array. Commas are tracked per nesting level
/// with one flag, because Vigil's payloads only ever write a value right after `key` or
/// `element`.
struct JSONWriter {
    private(set) var bytes: [UInt8]
    /// Whether the current container already has a member (so the next needs a comma).
    private var hasMember: [Bool] = []

    init(capacity: Int) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    mutating func begin() { bytes.append(UInt8(ascii: "{")); hasMember.append(false) }
    mutating func end() { bytes.append(UInt8(ascii: "}")); _ = hasMember.popLast() }
    mutating func beginArray() { bytes.append(UInt8(ascii: "[")); hasMember.append(false) }
    mutating func endArray() { bytes.append(UInt8(ascii: "]")); _ = hasMember.popLast() }

    private mutating func separator() {
        if let last = hasMember.indices.last {
            if hasMember[last] { bytes.append(UInt8(ascii: ",")) }
            hasMember[last] = true
        }
    }

    /// Starts an object member: `"name":`.
    mutating func key(_ name: String) {
        separator()
        string(name)
        bytes.append(UInt8(ascii: ":"))
    }

    /// Starts an array element.
    mutating func element() { separator() }

    mutating func field(_ name: String, _ value: String) {
        key(name)
        string(value)
    }

    /// A timestamp as an ISO 8601 UTC string with milliseconds, written digit by digit
    /// (same text as `Timestamp.iso8601`, without building intermediate strings).
    mutating func time(_ name: String, _ t: Timestamp) {
        key(name)
        let c = CivilDateTime(utc: t)
        bytes.append(UInt8(ascii: "\""))
        digits(c.year, 4); bytes.append(UInt8(ascii: "-"))
        digits(c.month, 2); bytes.append(UInt8(ascii: "-"))
        digits(c.day, 2); bytes.append(UInt8(ascii: "T"))
        digits(c.hour, 2); bytes.append(UInt8(ascii: ":"))
        digits(c.minute, 2); bytes.append(UInt8(ascii: ":"))
        digits(c.second, 2); bytes.append(UInt8(ascii: "."))
        digits(c.millisecond, 3); bytes.append(UInt8(ascii: "Z"))
        bytes.append(UInt8(ascii: "\""))
    }

    /// `v` zero-padded to `width` digits (more if it needs them; negative years never occur
    /// for valid timestamps but are written with a sign rather than garbled).
    private mutating func digits(_ v: Int, _ width: Int) {
        if v < 0 { bytes.append(UInt8(ascii: "-")) }
        var m = v.magnitude
        var count = 1
        var t = m / 10
        while t > 0 { count += 1; t /= 10 }
        let n = Swift.max(count, width)
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: n))
        var i = start + n - 1
        repeat {
            bytes[i] = UInt8(truncatingIfNeeded: 48 + m % 10)
            m /= 10
            i -= 1
        } while m > 0
    }

    mutating func null() { bytes.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C]) }

    /// RFC 8259 §7: `"` and `\` escaped, control characters as short escapes or `\u00XX`.
    /// Everything else, including non-ASCII, is copied as UTF-8.
    mutating func string(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { utf8 in
            for b in utf8 {
                switch b {
                case UInt8(ascii: "\""): bytes.append(UInt8(ascii: "\\")); bytes.append(b)
                case UInt8(ascii: "\\"): bytes.append(UInt8(ascii: "\\")); bytes.append(b)
                case 0x0A: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "n"))
                case 0x0D: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "r"))
                case 0x09: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "t"))
                case 0x08: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "b"))
                case 0x0C: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "f"))
                case 0x00..<0x20:
                    bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "u"))
                    bytes.append(UInt8(ascii: "0")); bytes.append(UInt8(ascii: "0"))
                    bytes.append(Self.hexDigit(b >> 4)); bytes.append(Self.hexDigit(b & 0xF))
                default: bytes.append(b)
                }
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private static func hexDigit(_ n: UInt8) -> UInt8 { n < 10 ? 48 + n : 87 + n }

    mutating func integer(_ v: Int64) { bytes.append(contentsOf: String(v).utf8) }
    mutating func unsigned(_ v: UInt64) { bytes.append(contentsOf: String(v).utf8) }

    /// A finite double in plain decimal notation (never `1e-05`), using Swift's shortest
    /// round-tripping digits; NaN and infinities as `null`.
    mutating func number(_ v: Double) {
        guard v.isFinite else { null(); return }
        if v == v.rounded(), abs(v) < 1e15 {
            integer(Int64(v))
            return
        }
        bytes.append(contentsOf: Self.plainDecimal(v.description).utf8)
    }

    /// Rewrites Swift's `description` of a finite double (`1.5`, `1e-05`, `1.25e+20`) without
    /// an exponent.
    static func plainDecimal(_ text: String) -> String {
        let parts = text.split(separator: "e", maxSplits: 1)
        guard parts.count == 2, let exponent = Int(parts[1]) else { return text }
        var mantissa = Substring(parts[0])
        var sign = ""
        if mantissa.hasPrefix("-") { sign = "-"; mantissa = mantissa.dropFirst() }
        let pieces = mantissa.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let intPart = pieces.first.map(String.init) ?? ""
        let fracPart = pieces.count > 1 ? String(pieces[1]) : ""
        var digits = intPart + fracPart
        var point = intPart.count + exponent
        // Trim leading zeros while keeping the decimal point position right.
        while digits.count > 1, digits.first == "0" { digits.removeFirst(); point -= 1 }
        if point <= 0 {
            return sign + "0." + String(repeating: "0", count: -point) + digits
        } else if point >= digits.count {
            return sign + digits + String(repeating: "0", count: point - digits.count)
        } else {
            let i = digits.index(digits.startIndex, offsetBy: point)
            return sign + digits[..<i] + "." + digits[i...]
        }
    }
}
