public import VitalSigns

/// Renders GATT decoder results as the JSON lines `vigilctl decode --characteristic` prints
/// and `firmware-fixtures/gatt/*.expected.jsonl` holds.
///
/// A reading: {"payload", "vital", "loinc", "value", "unit", "measured_at", "flags",
/// "sequence", "details"?}; other events: {"payload", "event": "battery" | "device_time" |
/// "racp" | "intermediate" | "incomplete" | "no_reading", …}; a failure: {"payload",
/// "error": "<code>: <message>"}. `payload` is the 1-based number of the value a line came
/// from (omitted when rendering a single value); a glucose measurement held for its context
/// is attributed to its own value, not to the context that released it.
public struct GATTBatchRenderer: Sendable {
    /// False for a single value: no "payload" member.
    public var numbered: Bool
    /// Which payload a glucose measurement waiting for its context came from, by sequence number.
    var heldGlucose: [UInt64: Int] = [:]

    public init(numbered: Bool) { self.numbered = numbered }

    /// The lines for what payload `line` decoded to. `released` is
    /// `GATTDeviceDecoder.releasedDetails`: the details of a held glucose measurement this
    /// value released without its context, printed with that measurement's readings.
    public mutating func render(_ event: GATTEvent, details: [GATTDetail], released: [GATTDetail]? = nil,
                                line: Int) -> [JSONValue] {
        // A glucose measurement left waiting for its context names its sequence number: it
        // came from this value, whatever the event (`.incomplete`, or `.measurement` of an
        // earlier measurement this one released). Recorded after the samples are placed, so a
        // repeated sequence number attributes the released one to its own value.
        defer {
            if let seq = details.first(where: { $0.name == "sequence" }).flatMap({ UInt64($0.value) }) {
                heldGlucose[seq] = line
            }
        }
        switch event {
        case .measurement(let samples):
            if samples.isEmpty { return [object(line, [("event", .string("no_reading"))] + detailsMember(details))] }
            return samples.map { s in
                if let held = heldOrigin(of: s) {
                    return sample(s, details: released ?? details, event: nil, line: held)
                }
                return sample(s, details: details, event: nil, line: line)
            }
        case .intermediate(let samples):
            if samples.isEmpty { return [object(line, [("event", .string("intermediate"))] + detailsMember(details))] }
            return samples.map { sample($0, details: details, event: "intermediate", line: line) }
        case .incomplete:
            return [object(line, [("event", .string("incomplete"))] + detailsMember(details))]
        case .batteryLevel(let level):
            return [object(line, [("event", .string("battery")), ("value", .int(Int64(level))), ("unit", .string("%"))])]
        case .deviceTime(let t?):
            return [object(line, [("event", .string("device_time")), ("measured_at", Self.civil(t)),
                                  ("millisecond", .int(Int64(t.millisecond)))])]
        case .deviceTime(nil):
            // The device's date is "not known" or impossible: say so rather than print it.
            return [object(line, [("event", .string("device_time")), ("measured_at", .null),
                                  ("flags", .array([.string("device_clock_unreliable")])),
                                  ("details", .object([("device_clock", .string("not set: date not known or not a valid date"))]))])]
        case .racp(.numberOfRecords(let n)):
            return [object(line, [("event", .string("racp")), ("number_of_records", .int(Int64(n)))])]
        case .racp(.responseCode(let request, let code)):
            return [object(line, [("event", .string("racp")), ("request_op_code", .int(Int64(request))),
                                  ("response_code", .string(code.description))])]
        }
    }

    /// The line for a value that failed to decode.
    public func error(_ error: GATTDecodeError, line: Int) -> JSONValue {
        object(line, [("error", .string(error.code.rawValue + ": " + error.message))])
    }

    /// The lines for samples released by `GATTDeviceDecoder.finish()` after the last value;
    /// `held` is `GATTDeviceDecoder.heldDetails` read before `finish()`: the waiting glucose
    /// measurement's own details.
    public mutating func finished(_ samples: [VitalSample], held: [GATTDetail]? = nil, line: Int) -> [JSONValue] {
        samples.map { s in
            if let origin = heldOrigin(of: s) { return sample(s, details: held ?? [], event: nil, line: origin) }
            return sample(s, details: [], event: nil, line: line)
        }
    }

    /// The payload a released glucose reading was held from, or nil for any other reading.
    mutating func heldOrigin(of s: VitalSample) -> Int? {
        // Only the held measurement's own readings; an HbA1c belongs to the context's payload.
        guard s.vital == .bloodGlucose || s.vital == .interstitialGlucose, let seq = s.sequence else { return nil }
        return heldGlucose.removeValue(forKey: seq)
    }

    func sample(_ s: VitalSample, details: [GATTDetail], event: String?, line: Int) -> JSONValue {
        var members: [(String, JSONValue)] = []
        if let event { members.append(("event", .string(event))) }
        members += [
            ("vital", .string(s.vital.key)), ("loinc", .string(s.vital.loinc)), ("value", .double(s.quantity.value)),
            ("unit", .string(s.quantity.unit)), ("measured_at", Self.civil(s.deviceTime)),
            ("flags", .array(s.flags.nameList.map { .string($0) })),
            ("sequence", s.sequence.map { .int(Int64(truncatingIfNeeded: $0)) } ?? .null),
        ]
        return object(line, members + detailsMember(details))
    }

    func detailsMember(_ details: [GATTDetail]) -> [(String, JSONValue)] {
        guard !details.isEmpty else { return [] }
        var seen = Set<String>()
        var members: [(String, JSONValue)] = []
        for d in details where seen.insert(d.name).inserted { members.append((d.name, .string(d.value))) }
        return [("details", .object(members))]
    }

    func object(_ line: Int, _ members: [(String, JSONValue)]) -> JSONValue {
        .object(numbered ? [("payload", .int(Int64(line)))] + members : members)
    }

    /// A device's wall clock carries no zone: printed without one, to the second.
    public static func civil(_ t: CivilDateTime?) -> JSONValue {
        t.map { .string(String($0.iso8601(utcOffsetSeconds: 0).dropLast(5))) } ?? .null
    }
}

/// The `vigilctl decode --characteristic … --file` batch: one hex value per line (blank lines
/// and `#` comments ignored), or `<UUID> <hex>` per line when no characteristic is given
/// (the `firmware-fixtures/gatt/*.values` format), all through one decoder in order.
public enum GATTBatch {
    /// What a batch held.
    public struct Summary: Hashable, Sendable {
        /// Values (non-blank, non-comment lines).
        public var payloads = 0
        /// Readings (samples of measurements, including those released at the end).
        public var readings = 0
        /// Lines that failed: a bad line, bad hex, or a decode error.
        public var errors = 0
        public var ok: Bool { errors == 0 }
    }

    /// Decodes every line of `text`, handing each JSON line to `emit` as it is made (none
    /// when `render` is false: a count only, for the decode-cost benchmark).
    @discardableResult
    public static func run(_ text: String, characteristic fixed: GATTCharacteristic?,
                           options: GATTDecoderOptions = GATTDecoderOptions(), render: Bool = true,
                           emit: (JSONValue) -> Void) -> Summary {
        var decoder = GATTDeviceDecoder(options: options)
        var renderer = GATTBatchRenderer(numbered: true)
        var summary = Summary()
        var lineNumber = 0
        func fail(_ message: String) {
            if render { emit(.object([("payload", .int(Int64(lineNumber))), ("error", .string(message))])) }
            summary.errors += 1
        }
        // Lines are split on bytes, not Characters: grapheme breaking a 100 000-line file
        // costs more than decoding it.
        for rawLine in text.utf8.split(separator: 0x0A, omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = rawLine
            if let hash = line.firstIndex(of: 0x23) { line = line[..<hash] }
            line = line.drop(while: { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D })
            guard line.contains(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0D }) else { continue }
            let c: GATTCharacteristic
            if let fixed {
                c = fixed
            } else {
                let token = line.prefix(while: { $0 != 0x20 && $0 != 0x09 })
                guard let parsed = GATTCharacteristic(parsing: String(decoding: token, as: UTF8.self)),
                      token.count < line.count else {
                    fail("bad_line: expected '<UUID> <hex>'")
                    continue
                }
                c = parsed
                line = line.dropFirst(token.count)
            }
            summary.payloads += 1
            guard let bytes = parseHex(bytes: line) else {
                fail("bad_hex: not an even number of hexadecimal digits")
                continue
            }
            do {
                let event = try decoder.decode(c, bytes)
                if case .measurement(let s) = event { summary.readings += s.count }
                if render {
                    for l in renderer.render(event, details: decoder.details, released: decoder.releasedDetails,
                                             line: lineNumber) { emit(l) }
                }
            } catch {
                if render { emit(renderer.error(error, line: lineNumber)) }
                summary.errors += 1
            }
        }
        let held = decoder.heldDetails
        let rest = decoder.finish()
        summary.readings += rest.count
        if render {
            for l in renderer.finished(rest, held: held, line: lineNumber) { emit(l) }
        }
        return summary
    }

    /// Hex digits, whitespace ignored; nil for any other character or an odd digit count.
    public static func parseHex<S: StringProtocol>(_ text: S) -> [UInt8]? { parseHex(bytes: text.utf8) }

    static func parseHex<C: Collection<UInt8>>(bytes text: C) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.count / 2)
        var high: UInt8?
        for c in text {
            let v: UInt8
            switch c {
            case 0x30...0x39: v = c - 0x30
            case 0x41...0x46: v = c - 0x41 + 10
            case 0x61...0x66: v = c - 0x61 + 10
            case 0x20, 0x09, 0x0D, 0x0A: continue
            default: return nil
            }
            if let h = high {
                out.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        return high == nil ? out : nil
    }
}
