import VitalSigns

/// The store's own binary encoding of escalations and gateway events in the priority lane.
///
/// Why not JSON: the I/O targets avoid Foundation (binary size), and the store needs only a
/// private, exact round trip, not an interchange format (the uplink owns the wire format).
/// Layout: one format byte (1), then fields in declaration order. Integers are little-endian
/// Int64, doubles their IEEE 754 bit pattern, strings a UInt32 byte count and UTF-8, arrays
/// and dictionaries a UInt32 count (dictionaries sorted by key, so equal values encode
/// equally). Decoding checks every length against the bytes left and never traps.
enum PayloadCodec {
    static let format: UInt8 = 1

    /// Escalations are written in format 2 (format 1 plus acknowledgement and detail).
    static let escalationFormat: UInt8 = 2

    static func encode(_ e: Escalation) -> [UInt8] {
        var w = BlobWriter()
        w.byte(escalationFormat)
        w.string(e.id)
        w.string(e.patient.rawValue)
        w.string(e.rule)
        w.int(Int64(e.severity.rawValue))
        w.string(e.state.rawValue)
        w.count(e.triggeringReadings.count)
        for id in e.triggeringReadings { w.string(id.rawValue) }
        w.count(e.values.count)
        for v in e.values {
            w.string(v.reading.rawValue)
            w.string(v.vital)
            w.double(v.value)
            w.string(v.unit)
            w.int(v.measuredAt.millisecondsSinceEpoch)
        }
        w.int(Int64(e.carePlanVersion))
        w.int(e.openedAt.millisecondsSinceEpoch)
        w.int(e.at.millisecondsSinceEpoch)
        w.string(e.summary)
        // Format 2 appends the lifecycle fields; format 1 rows (written before) end here.
        if let by = e.acknowledgedBy { w.byte(1); w.string(by) } else { w.byte(0) }
        if let at = e.acknowledgedAt { w.byte(1); w.int(at.millisecondsSinceEpoch) } else { w.byte(0) }
        if let detail = e.detail {
            w.byte(1)
            let pairs = detail.sorted { $0.key < $1.key }
            w.count(pairs.count)
            for (k, v) in pairs { w.string(k); w.string(v) }
        } else {
            w.byte(0)
        }
        return w.bytes
    }

    static func decodeEscalation(_ bytes: [UInt8], row: String) throws(StoreError) -> Escalation {
        var r = BlobReader(bytes: bytes, row: row)
        let version = try r.byte()
        guard version == format || version == escalationFormat else { throw r.corrupt("unknown format \(version)") }
        let id = try r.string()
        let patient = PatientID(try r.string())
        let rule = try r.string()
        let severityRaw = try r.int()
        guard let severity = Severity(rawValue: Int(truncatingIfNeeded: severityRaw)) else {
            throw r.corrupt("unknown severity \(severityRaw)")
        }
        let stateName = try r.string()
        guard let state = EscalationState(rawValue: stateName) else { throw r.corrupt("unknown escalation state") }
        var triggering: [ReadingID] = []
        for _ in 0..<(try r.count()) { triggering.append(ReadingID(rawValue: try r.string())) }
        var values: [TriggerValue] = []
        for _ in 0..<(try r.count()) {
            values.append(TriggerValue(reading: ReadingID(rawValue: try r.string()), vital: try r.string(),
                                       value: try r.double(), unit: try r.string(),
                                       measuredAt: Timestamp(millisecondsSinceEpoch: try r.int())))
        }
        let carePlanVersion = Int(truncatingIfNeeded: try r.int())
        let openedAt = Timestamp(millisecondsSinceEpoch: try r.int())
        let at = Timestamp(millisecondsSinceEpoch: try r.int())
        let summary = try r.string()
        var ackBy: String?, ackAt: Timestamp?, detail: [String: String]?
        if version == escalationFormat {
            if try r.byte() == 1 { ackBy = try r.string() }
            if try r.byte() == 1 { ackAt = Timestamp(millisecondsSinceEpoch: try r.int()) }
            if try r.byte() == 1 {
                var d: [String: String] = [:]
                for _ in 0..<(try r.count()) {
                    let k = try r.string()
                    d[k] = try r.string()
                }
                detail = d
            }
        }
        try r.expectEnd()
        var e = Escalation(patient: patient, rule: rule, severity: severity, state: state,
                           triggeringReadings: triggering, values: values, carePlanVersion: carePlanVersion,
                           openedAt: openedAt, at: at, summary: summary,
                           acknowledgedBy: ackBy, acknowledgedAt: ackAt, detail: detail)
        // Keep the stored ID even if it was derived differently (an older derivation).
        e.id = id
        return e
    }

    static func encode(_ event: GatewayEvent) -> [UInt8] {
        var w = BlobWriter()
        w.byte(format)
        w.string(event.kind)
        w.int(event.at.millisecondsSinceEpoch)
        if let count = event.count {
            w.byte(1)
            w.int(count)
        } else {
            w.byte(0)
        }
        let detail = event.detail.sorted { $0.key < $1.key }
        w.count(detail.count)
        for (key, value) in detail {
            w.string(key)
            w.string(value)
        }
        return w.bytes
    }

    static func decodeEvent(_ bytes: [UInt8], row: String) throws(StoreError) -> GatewayEvent {
        var r = BlobReader(bytes: bytes, row: row)
        try r.expectFormat(format)
        let kind = try r.string()
        let at = Timestamp(millisecondsSinceEpoch: try r.int())
        let hasCount = try r.byte()
        let count: Int64? = hasCount == 1 ? try r.int() : nil
        guard hasCount <= 1 else { throw r.corrupt("bad count marker") }
        var detail: [String: String] = [:]
        for _ in 0..<(try r.count()) {
            let key = try r.string()
            detail[key] = try r.string()
        }
        try r.expectEnd()
        return GatewayEvent(kind: kind, at: at, count: count, detail: detail)
    }
}

struct BlobWriter {
    var bytes: [UInt8] = []

    mutating func byte(_ b: UInt8) { bytes.append(b) }

    mutating func int(_ v: Int64) {
        var x = UInt64(bitPattern: v)
        for _ in 0..<8 {
            bytes.append(UInt8(truncatingIfNeeded: x))
            x >>= 8
        }
    }

    mutating func double(_ v: Double) { int(Int64(bitPattern: v.bitPattern)) }

    mutating func count(_ n: Int) {
        let v = UInt32(clamping: n)
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(shift))) }
    }

    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        count(utf8.count)
        bytes.append(contentsOf: utf8)
    }
}

struct BlobReader {
    let bytes: [UInt8]
    /// Names the row in errors ("priority_outbox seq 12"), never its content.
    let row: String
    var offset = 0

    init(bytes: [UInt8], row: String) {
        self.bytes = bytes
        self.row = row
    }

    func corrupt(_ what: String) -> StoreError {
        StoreError(code: .corruptRow, message: "\(row): stored payload is malformed (\(what) at byte \(offset))",
                   operation: "decode \(row)")
    }

    mutating func take(_ n: Int) throws(StoreError) -> ArraySlice<UInt8> {
        guard n >= 0, bytes.count - offset >= n else { throw corrupt("truncated") }
        defer { offset += n }
        return bytes[offset..<(offset + n)]
    }

    mutating func byte() throws(StoreError) -> UInt8 {
        try take(1).first ?? 0
    }

    mutating func int() throws(StoreError) -> Int64 {
        var x: UInt64 = 0
        for (i, b) in try take(8).enumerated() { x |= UInt64(b) << UInt64(8 * i) }
        return Int64(bitPattern: x)
    }

    mutating func double() throws(StoreError) -> Double { Double(bitPattern: UInt64(bitPattern: try int())) }

    /// A count, checked against the bytes left so a corrupt count cannot make us loop or allocate
    /// for billions of elements (every element takes at least 4 bytes).
    mutating func count() throws(StoreError) -> Int {
        var v: UInt32 = 0
        for (i, b) in try take(4).enumerated() { v |= UInt32(b) << UInt32(8 * i) }
        let n = Int(v)
        guard n <= (bytes.count - offset) else { throw corrupt("count \(n) exceeds the payload") }
        return n
    }

    mutating func string() throws(StoreError) -> String {
        let n = try count()
        return String(decoding: try take(n), as: UTF8.self)
    }

    mutating func expectFormat(_ format: UInt8) throws(StoreError) {
        let b = try byte()
        guard b == format else { throw corrupt("unknown format \(b)") }
    }

    func expectEnd() throws(StoreError) {
        guard offset == bytes.count else { throw corrupt("\(bytes.count - offset) trailing bytes") }
    }
}
