public import VitalSigns

/// A simple line protocol described entirely by data in a device profile (`decoder: line`),
/// for scales, thermometers and meters that print one reading per line, such as
/// `WT,  72.4,kg\r\n` or `TEMP=36.8C`.
///
/// ```yaml
/// line:
///   terminator: crlf            # lf, cr or crlf
///   max_length: 128             # longest line kept while waiting for a terminator
///   # Either positional fields after splitting on a separator …
///   separator: ","
///   fields:
///     - {vital: body_weight, index: 1, unit: kg}
///   # … or a regular expression whose named groups are vital keys:
///   # pattern: '^TEMP=(?<body_temperature>[0-9]+\.[0-9])C$'
///   # units: {body_temperature: Cel}
///   require: '^WT'              # optional: lines that do not match are ignored, not rejected
/// ```
///
/// Each field names a vital from Vigil's registry (which gives the LOINC code) and the UCUM
/// unit the device prints, which must be one of the units the registry accepts for that
/// vital. Values are kept in the device's unit, exactly as printed.
public struct LineProtocolSpec: Sendable, Hashable, Decodable {
    public enum Terminator: String, Sendable, Hashable, Decodable {
        case lf, cr, crlf

        public init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            guard let t = Terminator(rawValue: try c.decode(String.self)) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "must be lf, cr or crlf")
            }
            self = t
        }
    }

    public struct Field: Sendable, Hashable, Decodable {
        public var vital: Vital
        /// 0-based index of the field after splitting (positional form only).
        public var index: Int?
        public var unit: String

        enum CodingKeys: String, CodingKey { case vital, index, unit }

        public init(vital: Vital, index: Int?, unit: String) {
            self.vital = vital
            self.index = index
            self.unit = unit
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let key = try c.decode(String.self, forKey: .vital)
            guard let vital = Vital.named(key) else {
                throw DecodingError.dataCorruptedError(forKey: .vital, in: c, debugDescription: "unknown vital '\(key)'")
            }
            self.vital = vital
            index = try c.decodeIfPresent(Int.self, forKey: .index)
            if let index, !(0...63).contains(index) {
                throw DecodingError.dataCorruptedError(forKey: .index, in: c, debugDescription: "must be between 0 and 63")
            }
            unit = try c.decode(String.self, forKey: .unit)
            guard LineProtocolSpec.accepts(unit: unit, for: vital) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .unit, in: c,
                    debugDescription: "'\(unit)' is not a UCUM unit Vigil accepts for \(key); use one of \(LineProtocolSpec.units(for: vital).joined(separator: ", "))")
            }
        }
    }

    public var terminator: Terminator
    public var maxLength: Int
    public var separator: String?
    public var fields: [Field]
    /// The regular expression's source, when the pattern form is used.
    public var pattern: String?
    public var require: String?

    enum CodingKeys: String, CodingKey {
        case terminator, separator, fields, pattern, units, require
        case maxLength = "max_length"
    }

    /// The UCUM units a line protocol may print for each vital (the registry's canonical unit
    /// first). Anything else is refused when the profile loads.
    public static func units(for vital: Vital) -> [String] {
        switch vital.key {
        case Vital.bodyWeight.key: ["kg", "[lb_av]", "g"]
        case Vital.bodyTemperature.key: ["Cel", "[degF]"]
        case Vital.bloodGlucose.key: ["mg/dL", "mmol/L"]
        case Vital.systolicPressure.key, Vital.diastolicPressure.key, Vital.meanArterialPressure.key: ["mm[Hg]", "kPa"]
        default: [vital.unit]
        }
    }

    public static func accepts(unit: String, for vital: Vital) -> Bool { units(for: vital).contains(unit) }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        terminator = try c.decodeIfPresent(Terminator.self, forKey: .terminator) ?? .crlf
        maxLength = try c.decodeIfPresent(Int.self, forKey: .maxLength) ?? 256
        guard (8...4096).contains(maxLength) else {
            throw DecodingError.dataCorruptedError(forKey: .maxLength, in: c, debugDescription: "must be between 8 and 4096")
        }
        separator = try c.decodeIfPresent(String.self, forKey: .separator)
        pattern = try c.decodeIfPresent(String.self, forKey: .pattern)
        require = try c.decodeIfPresent(String.self, forKey: .require)
        if let require {
            do { _ = try Regex(require) } catch {
                throw DecodingError.dataCorruptedError(forKey: .require, in: c, debugDescription: "not a valid regular expression: \(error)")
            }
        }
        switch (separator, pattern) {
        case (.some(let sep), nil):
            guard !sep.isEmpty, sep.count <= 8, !sep.contains(where: \.isNewline) else {
                throw DecodingError.dataCorruptedError(forKey: .separator, in: c, debugDescription: "must be 1–8 characters, no line breaks")
            }
            if c.contains(.units) {
                throw DecodingError.dataCorruptedError(forKey: .units, in: c, debugDescription: "units belong in each field when a separator is used")
            }
            fields = try c.decode([Field].self, forKey: .fields)
            guard !fields.isEmpty else {
                throw DecodingError.dataCorruptedError(forKey: .fields, in: c, debugDescription: "at least one field is needed")
            }
            guard fields.allSatisfy({ $0.index != nil }) else {
                throw DecodingError.dataCorruptedError(forKey: .fields, in: c, debugDescription: "every field needs an index when a separator is used")
            }
            guard Set(fields.map(\.vital)).count == fields.count else {
                throw DecodingError.dataCorruptedError(forKey: .fields, in: c, debugDescription: "a vital appears twice")
            }
        case (nil, .some(let source)):
            if c.contains(.fields) {
                throw DecodingError.dataCorruptedError(forKey: .fields, in: c, debugDescription: "with a pattern, name vitals as the pattern's groups and give units under 'units'")
            }
            let regex: Regex<AnyRegexOutput>
            do { regex = try Regex(source) } catch {
                throw DecodingError.dataCorruptedError(forKey: .pattern, in: c, debugDescription: "not a valid regular expression: \(error)")
            }
            let units = try c.decode([String: String].self, forKey: .units)
            let groups = Self.groupNames(of: regex, source: source)
            guard !groups.isEmpty else {
                throw DecodingError.dataCorruptedError(forKey: .pattern, in: c, debugDescription: "needs at least one named group (?<vital_key>…)")
            }
            var fields: [Field] = []
            for name in groups {
                guard let vital = Vital.named(name) else {
                    throw DecodingError.dataCorruptedError(forKey: .pattern, in: c, debugDescription: "group '\(name)' is not a known vital")
                }
                guard let unit = units[name] else {
                    throw DecodingError.dataCorruptedError(forKey: .units, in: c, debugDescription: "no unit for '\(name)'")
                }
                guard Self.accepts(unit: unit, for: vital) else {
                    throw DecodingError.dataCorruptedError(
                        forKey: .units, in: c,
                        debugDescription: "'\(unit)' is not a UCUM unit Vigil accepts for \(name); use one of \(Self.units(for: vital).joined(separator: ", "))")
                }
                fields.append(Field(vital: vital, index: nil, unit: unit))
            }
            for key in units.keys where !groups.contains(key) {
                throw DecodingError.dataCorruptedError(forKey: .units, in: c, debugDescription: "'\(key)' is not a group of the pattern")
            }
            self.fields = fields
        default:
            throw DecodingError.dataCorruptedError(forKey: .separator, in: c, debugDescription: "give exactly one of 'separator' (with fields) or 'pattern' (with units)")
        }
    }

    /// The names of the pattern's named groups, `(?<name>…)` or `(?P<name>…)`, in order.
    /// Read from the source: a runtime regex shows its capture names only on a match.
    static func groupNames(of regex: Regex<AnyRegexOutput>, source: String) -> [String] {
        let chars = Array(source)
        var names: [String] = []
        var i = 0
        while i < chars.count {
            if chars[i] == "\\" { i += 2; continue }
            if chars[i] == "(", i + 2 < chars.count, chars[i + 1] == "?" {
                var j = i + 2
                if j < chars.count, chars[j] == "P" { j += 1 }
                if j < chars.count, chars[j] == "<", j + 1 < chars.count, chars[j + 1] != "=", chars[j + 1] != "!" {
                    var name = ""
                    j += 1
                    while j < chars.count, chars[j] != ">" { name.append(chars[j]); j += 1 }
                    if !name.isEmpty { names.append(name) }
                }
            }
            i += 1
        }
        return names
    }
}

/// Decodes a ``LineProtocolSpec`` line protocol. Each complete line is one result: the
/// samples of its fields (in the spec's order), or a rejection naming the field; a line the
/// spec's `require` pattern does not match is skipped without a result. Values must be plain
/// decimal numbers (an optional sign, digits, at most one point); anything else in a value
/// field rejects the line, never a guessed number.
public struct LineProtocolDecoder: StreamDecoder {
    public let spec: LineProtocolSpec
    private let regex: CompiledPattern?
    private let requirement: CompiledPattern?
    private var line: [UInt8] = []
    private var sawCR = false
    private var overflowing = false

    /// Fails only if the spec's expressions do not compile, which a spec decoded from a
    /// profile has already ruled out.
    public init(spec: LineProtocolSpec) throws {
        self.spec = spec
        regex = try spec.pattern.map { CompiledPattern(try Regex($0)) }
        requirement = try spec.require.map { CompiledPattern(try Regex($0)) }
    }

    public mutating func decode(_ bytes: some Collection<UInt8>) -> [DecodeResult] {
        var out: [DecodeResult] = []
        for byte in bytes {
            switch (spec.terminator, byte) {
            case (.lf, 0x0A), (.cr, 0x0D):
                endLine(into: &out)
            case (.crlf, 0x0D):
                if sawCR { line.append(0x0D) }
                sawCR = true
                continue
            case (.crlf, 0x0A) where sawCR:
                sawCR = false
                endLine(into: &out)
            default:
                if sawCR { line.append(0x0D); sawCR = false }
                append(byte, into: &out)
            }
            sawCR = sawCR && spec.terminator == .crlf && byte == 0x0D
        }
        return out
    }

    public mutating func finish() -> [DecodeResult] {
        defer { line.removeAll(); sawCR = false; overflowing = false }
        if overflowing { return [] }
        guard !line.isEmpty else { return [] }
        return [.rejected(FrameError(.truncated, "line: no terminator before the stream ended", bytesSkipped: line.count))]
    }

    private mutating func append(_ byte: UInt8, into out: inout [DecodeResult]) {
        if overflowing { return }
        line.append(byte)
        if line.count > spec.maxLength {
            out.append(.rejected(FrameError(.lineTooLong, "line: longer than max_length \(spec.maxLength) without a terminator", bytesSkipped: line.count)))
            line.removeAll(keepingCapacity: true)
            overflowing = true
        }
    }

    private mutating func endLine(into out: inout [DecodeResult]) {
        defer { line.removeAll(keepingCapacity: true) }
        if overflowing {
            overflowing = false
            return
        }
        guard !line.isEmpty else { return }
        guard line.allSatisfy({ $0 == 0x09 || (0x20...0x7E).contains($0) }) else {
            out.append(.rejected(FrameError(.garbage, "line: bytes that are not printable ASCII", bytesSkipped: line.count + 1)))
            return
        }
        let text = String(decoding: line, as: UTF8.self)
        if let requirement, (try? requirement.regex.firstMatch(in: text)) == nil { return }
        out.append(parse(text, length: line.count + 1))
    }

    private func parse(_ text: String, length: Int) -> DecodeResult {
        var samples: [VitalSample] = []
        if let regex {
            guard let match = try? regex.regex.wholeMatch(in: text) else {
                return .rejected(FrameError(.malformedField, "line: does not match the profile's pattern", bytesSkipped: length))
            }
            for field in spec.fields {
                guard let sub = match.output[field.vital.key]?.substring else {
                    return .rejected(FrameError(.malformedField, "field \(field.vital.key): not present", bytesSkipped: length))
                }
                guard let value = Self.number(sub) else {
                    return .rejected(FrameError(.malformedField, "field \(field.vital.key): not a decimal number", bytesSkipped: length))
                }
                samples.append(VitalSample(vital: field.vital, quantity: Quantity(value, field.unit), deviceTime: nil))
            }
        } else {
            let parts = Self.split(text, by: spec.separator ?? ",")
            for field in spec.fields {
                let index = field.index ?? 0
                guard index < parts.count else {
                    return .rejected(FrameError(.malformedField, "field \(field.vital.key): line has \(parts.count) fields, expected index \(index)", bytesSkipped: length))
                }
                guard let value = Self.number(parts[index]) else {
                    return .rejected(FrameError(.malformedField, "field \(field.vital.key): not a decimal number", bytesSkipped: length))
                }
                samples.append(VitalSample(vital: field.vital, quantity: Quantity(value, field.unit), deviceTime: nil))
            }
        }
        return .samples(samples)
    }

    static func split(_ text: String, by separator: String) -> [Substring] {
        var parts: [Substring] = []
        var rest = text[...]
        while let r = rest.firstRange(of: separator) {
            parts.append(rest[..<r.lowerBound])
            rest = rest[r.upperBound...]
        }
        parts.append(rest)
        return parts
    }

    /// A plain decimal: optional spaces, optional sign, digits with at most one point, at most
    /// 12 significant characters; nil otherwise (no exponents, no hex, no inf/nan).
    static func number(_ raw: Substring) -> Double? {
        let t = raw.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed()
        var s = String(t)
        guard !s.isEmpty, s.count <= 12 else { return nil }
        var negative = false
        if s.first == "+" || s.first == "-" {
            negative = s.first == "-"
            s.removeFirst()
        }
        guard !s.isEmpty, s.first != ".", s.last != ".",
              s.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              s.filter({ $0 == "." }).count <= 1, let v = Double(s) else { return nil }
        return negative ? -v : v
    }
}

/// A compiled expression shared by copies of a decoder. `Regex<AnyRegexOutput>` is not
/// `Sendable` only because its output type is not; the regex itself is an immutable value
/// whose lazily lowered program is published atomically (swift-experimental-string-processing,
/// `Regex.Program`), so sharing it across threads is safe.
struct CompiledPattern: @unchecked Sendable {
    let regex: Regex<AnyRegexOutput>
    init(_ regex: Regex<AnyRegexOutput>) { self.regex = regex }
}
