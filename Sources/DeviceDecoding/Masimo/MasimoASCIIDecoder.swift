import VitalSigns

/// Masimo Rad-8 (and Radical-5/-7) serial output in "ASCII 1" mode.
///
/// The device sends one line a second at 9600 8N1, terminated by CR LF, for example
///
///     02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800
///
/// Date `MM/DD/YY` and time `HH:MM:SS` are the device's local clock (Rad-8 Operator's
/// Manual, "Trend data format": date MM/DD/YY, time HH:MM:SS). Dashes mean "no value".
/// `ALARM` and `EXC` are hexadecimal bit masks; the bit tables, with their public sources,
/// are in `firmware-fixtures/README.md` and in ``MasimoExceptionBit`` / ``MasimoAlarmBit``.
///
/// Framing: a line ends at CR or LF (empty lines between CR and LF are ignored). Each line
/// must start with the 17-byte date and time header; the decoder resynchronises on the
/// *last* header in a line, so garbage, NULs or a line cut short by a power-cycle directly
/// before a good line cost only the bad bytes. A line is accepted or rejected as a whole:
/// a single bad field rejects every value on it.
public struct MasimoASCIIDecoder: StreamDecoder {
    /// The longest line kept while waiting for a terminator, in bytes. A Radical-7 line with
    /// every field is about 130 bytes; twice that leaves room for firmware additions.
    public static let maxLineLength = 256

    /// The fields every ASCII 1 line carries; a line without one of them was cut short.
    static let requiredFields = ["SPO2", "BPM", "PI", "ALARM", "EXC"]

    private var line: [UInt8] = []

    public init() { line.reserveCapacity(Self.maxLineLength + 1) }

    public mutating func decode(_ bytes: some Collection<UInt8>) -> [DecodeResult] {
        var out: [DecodeResult] = []
        // Byte at a time, so every decision (terminator, overflow) happens at the same
        // logical point whatever the chunking: results do not depend on read sizes.
        for byte in bytes {
            if byte == ASCII.cr || byte == ASCII.lf {
                if !line.isEmpty {
                    Self.complete(line[...], into: &out)
                    line.removeAll(keepingCapacity: true)
                }
                continue
            }
            line.append(byte)
            if line.count > Self.maxLineLength { overflow(into: &out) }
        }
        return out
    }

    public mutating func finish() -> [DecodeResult] {
        defer { line.removeAll(keepingCapacity: true) }
        guard !line.isEmpty else { return [] }
        if Self.hasHeader(line[...], at: 0) {
            return [.rejected(FrameError(.truncated, "the stream ended inside a line", bytesSkipped: line.count))]
        }
        return [.rejected(FrameError(.garbage, "the stream ended with bytes that start no line", bytesSkipped: line.count))]
    }

    /// No terminator within `maxLineLength`: drop what cannot be a line start, keeping the
    /// newest header (or the last 16 bytes, which may be the start of one).
    private mutating func overflow(into out: inout [DecodeResult]) {
        let dropCount: Int
        if let k = Self.lastHeaderStart(line[...], from: 1) {
            dropCount = k
        } else {
            dropCount = line.count - (ASCII.headerLength - 1)
        }
        out.append(.rejected(FrameError(.lineTooLong, "no line end within \(Self.maxLineLength) bytes", bytesSkipped: dropCount)))
        line.removeFirst(dropCount)
    }

    private static func complete(_ line: ArraySlice<UInt8>, into out: inout [DecodeResult]) {
        guard let k = lastHeaderStart(line, from: 0) else {
            out.append(.rejected(FrameError(.garbage, "a line does not start with a date and time", bytesSkipped: line.count)))
            return
        }
        let start = line.startIndex
        if k > 0 {
            if hasHeader(line, at: 0) {
                out.append(.rejected(FrameError(.truncated, "a line was cut off before its end", bytesSkipped: k)))
            } else {
                out.append(.rejected(FrameError(.garbage, "bytes before a line's date and time", bytesSkipped: k)))
            }
        }
        let body = line[(start + k)...]
        switch parse(body) {
        case .success(let samples): out.append(.samples(samples))
        case .failure(let error): out.append(.rejected(error))
        }
    }

    // MARK: - Line parsing

    /// Parses one line that starts with a date and time header.
    static func parse(_ line: ArraySlice<UInt8>) -> Result<[VitalSample], FrameError> {
        let n = line.count
        func fail(_ code: FrameError.Code, _ message: String) -> Result<[VitalSample], FrameError> {
            .failure(FrameError(code, message, bytesSkipped: n))
        }
        let s = line.startIndex
        func two(_ at: Int) -> Int { Int(line[s + at] &- ASCII.zero) * 10 + Int(line[s + at + 1] &- ASCII.zero) }
        // Two-digit year: the Rad-8 clock starts at 2000, so 20YY.
        let time = CivilDateTime(year: 2000 + two(6), month: two(0), day: two(3),
                                 hour: two(9), minute: two(12), second: two(15))
        guard time.isValid else { return fail(.malformedField, "date and time: not a valid calendar date or time") }

        // Tokenise NAME=value fields separated by spaces.
        var fields: [String: ArraySlice<UInt8>] = [:]
        var badTokens = 0
        var lastTokenBad = false
        var duplicate: String?
        var i = s + ASCII.headerLength
        let end = line.endIndex
        while i < end {
            if line[i] == ASCII.space { i += 1; continue }
            var j = i
            while j < end, line[j] != ASCII.space { j += 1 }
            let token = line[i..<j]
            i = j
            guard let eq = token.firstIndex(of: ASCII.equals), eq > token.startIndex,
                  token[token.startIndex..<eq].allSatisfy(ASCII.isNameByte) else {
                badTokens += 1
                lastTokenBad = true
                continue
            }
            lastTokenBad = false
            let name = String(decoding: token[token.startIndex..<eq], as: UTF8.self)
            if fields[name] != nil {
                duplicate = requiredFields.contains(name) ? name : "an unrecognised field"
            }
            fields[name] = token[(eq + 1)...]
        }
        // A bad token anywhere but at the end is corruption, not a cut.
        if badTokens > (lastTokenBad ? 1 : 0) { return fail(.malformedField, "a field does not have the NAME=value form") }
        // A missing required field means the line was cut short (its last token may be a
        // partial one, such as `BP`).
        if let missing = requiredFields.first(where: { fields[$0] == nil }) {
            return fail(.truncated, "the line ends before field \(missing)")
        }
        if badTokens > 0 { return fail(.malformedField, "a field does not have the NAME=value form") }
        if let duplicate { return fail(.malformedField, "field \(duplicate) appears twice") }

        let spo2: Double?, bpm: Double?, pi: Double?, alarm: UInt32, exc: UInt32
        do throws(FrameError) {
            spo2 = try number(fields["SPO2"] ?? [], name: "SPO2", max: 100, integer: true, total: n)
            bpm = try number(fields["BPM"] ?? [], name: "BPM", max: 999, integer: true, total: n)
            pi = try number(fields["PI"] ?? [], name: "PI", max: 100, integer: false, total: n)
            alarm = try hex(fields["ALARM"] ?? [], name: "ALARM", total: n)
            exc = try hex(fields["EXC"] ?? [], name: "EXC", total: n)
        } catch {
            return .failure(error)
        }

        let common = MasimoExceptionBit.flags(for: exc)
        var samples: [VitalSample] = []
        if let spo2 {
            samples.append(VitalSample(vital: .spo2, quantity: Quantity(spo2, Vital.spo2.unit), deviceTime: time,
                                       flags: common.union(MasimoAlarmBit.flags(for: alarm, vital: .spo2))))
        }
        if let bpm {
            samples.append(VitalSample(vital: .pulseRate, quantity: Quantity(bpm, Vital.pulseRate.unit), deviceTime: time,
                                       flags: common.union(MasimoAlarmBit.flags(for: alarm, vital: .pulseRate))))
        }
        if let pi {
            samples.append(VitalSample(vital: .perfusionIndex, quantity: Quantity(pi, Vital.perfusionIndex.unit), deviceTime: time,
                                       flags: common.union(MasimoAlarmBit.flags(for: alarm, vital: .perfusionIndex))))
        }
        return .success(samples)
    }

    /// A decimal field such as `098`, `03.60`, with an optional trailing `%`; all dashes
    /// (`---`, `--.--`) means no value (nil).
    static func number(_ raw: ArraySlice<UInt8>, name: String, max: Double, integer: Bool, total: Int) throws(FrameError) -> Double? {
        var v = raw
        if v.last == ASCII.percent { v = v.dropLast() }
        guard !v.isEmpty else { throw FrameError(.malformedField, "field \(name) is empty", bytesSkipped: total) }
        if v.contains(ASCII.dash) {
            guard v.allSatisfy({ $0 == ASCII.dash || $0 == ASCII.dot }) else {
                throw FrameError(.malformedField, "field \(name): not a number", bytesSkipped: total)
            }
            return nil
        }
        var whole = 0.0, fraction = 0.0, scale = 1.0
        var digitsBefore = 0, digitsAfter = 0, seenDot = false
        for b in v {
            if b == ASCII.dot {
                guard !seenDot else { throw FrameError(.malformedField, "field \(name): not a number", bytesSkipped: total) }
                seenDot = true
            } else if ASCII.isDigit(b) {
                if seenDot {
                    scale /= 10
                    fraction += Double(b - ASCII.zero) * scale
                    digitsAfter += 1
                } else {
                    whole = whole * 10 + Double(b - ASCII.zero)
                    digitsBefore += 1
                }
            } else {
                throw FrameError(.malformedField, "field \(name): not a number", bytesSkipped: total)
            }
        }
        guard digitsBefore > 0, digitsBefore <= 6, !seenDot || digitsAfter > 0, digitsAfter <= 4 else {
            throw FrameError(.malformedField, "field \(name): not a number", bytesSkipped: total)
        }
        if integer, seenDot { throw FrameError(.malformedField, "field \(name): expected a whole number", bytesSkipped: total) }
        // Parse the canonical text so the value is the correctly rounded Double of what the
        // device printed (3.60 → 3.6 exactly as a literal would be), not an accumulated sum.
        let canonical = String(decoding: v, as: UTF8.self)
        let value = Double(canonical) ?? (whole + fraction)
        guard value <= max else { throw FrameError(.malformedField, "field \(name): outside 0–\(Int(max))", bytesSkipped: total) }
        return value
    }

    /// A hexadecimal bit mask of 1 to 8 digits.
    static func hex(_ raw: ArraySlice<UInt8>, name: String, total: Int) throws(FrameError) -> UInt32 {
        guard (1...8).contains(raw.count) else {
            throw FrameError(.malformedField, "field \(name): expected 1 to 8 hexadecimal digits", bytesSkipped: total)
        }
        var v: UInt32 = 0
        for b in raw {
            guard let d = ASCII.hexValue(b) else {
                throw FrameError(.malformedField, "field \(name): not hexadecimal", bytesSkipped: total)
            }
            v = v << 4 | UInt32(d)
        }
        return v
    }

    // MARK: - Header search

    /// Whether `MM/DD/YY HH:MM:SS` (digits and separators only; calendar validity is
    /// checked later) starts at offset `k`, followed by a space or the end of the line.
    static func hasHeader(_ line: ArraySlice<UInt8>, at k: Int) -> Bool {
        guard k >= 0, line.count - k >= ASCII.headerLength else { return false }
        let s = line.startIndex + k
        for (offset, kind) in ASCII.headerShape.enumerated() {
            let b = line[s + offset]
            switch kind {
            case 0: guard ASCII.isDigit(b) else { return false }
            default: guard b == kind else { return false }
            }
        }
        let after = s + ASCII.headerLength
        return after == line.endIndex || line[after] == ASCII.space
    }

    /// The offset of the last header at or after `from`, if any.
    static func lastHeaderStart(_ line: ArraySlice<UInt8>, from: Int) -> Int? {
        var k = line.count - ASCII.headerLength
        while k >= from {
            if hasHeader(line, at: k) { return k }
            k -= 1
        }
        return nil
    }
}

enum ASCII {
    static let cr: UInt8 = 0x0D, lf: UInt8 = 0x0A, space: UInt8 = 0x20, equals: UInt8 = 0x3D
    static let zero: UInt8 = 0x30, dash: UInt8 = 0x2D, dot: UInt8 = 0x2E, percent: UInt8 = 0x25
    static let headerLength = 17
    /// `MM/DD/YY HH:MM:SS`: 0 = a digit, otherwise the literal byte.
    static let headerShape: [UInt8] = [0, 0, 0x2F, 0, 0, 0x2F, 0, 0, 0x20, 0, 0, 0x3A, 0, 0, 0x3A, 0, 0]
    static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
    static func isNameByte(_ b: UInt8) -> Bool { isDigit(b) || (b >= 0x41 && b <= 0x5A) }
    static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: b - 0x30
        case 0x41...0x46: b - 0x41 + 10
        case 0x61...0x66: b - 0x61 + 10
        default: nil
        }
    }
}
