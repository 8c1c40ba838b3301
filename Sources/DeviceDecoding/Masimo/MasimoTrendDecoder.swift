import VitalSigns

/// Masimo trend dump: the lines a Rad-8 (and Rad-5/-57, Pronto) sends when its stored trend
/// memory is downloaded (TrendCom), one stored sample per line, every 2 s of monitoring:
///
///     09/21/08 09:56:12 SpO2=097 PR=069 PI=04.69 EXC=800:SET
///     09/21/08 09:56:14 SpO2=096 PR=074 PI=02.28 EXC=C00:LowSigIQ,SET
///     11/30/11 00:09:36 SpO2=100 PR=070 PI=01.32 SpCO=00.00 Met=00.00 SpHb=15.1 PVI=000 EXC=00000000
///
/// Source: Rad-8 Operator's Manual §4 "Trend data format" and "Sample trend output" (the
/// date, the time, `name=value` for each installed parameter, `EXC=` a hexadecimal exception
/// mask, 3 digits on the Rad-8, optionally followed by `:` and the conditions' short names);
/// Rad-57 and Pronto manuals, same section, for the wider lines. The EXC bits are those of the
/// live output (``MasimoExceptionBit``).
///
/// Each line is one result: SpO2 (`SpO2`, %), pulse rate (`PR`, /min) and perfusion index
/// (`PI`, %), with the line's EXC flags on each. A value of all zeros or dashes is "no value"
/// (the sample output shows `SpO2=000 PR=000 PI=00.00` with the sensor off) and yields no
/// sample. Other parameters (SpCO, Met, SpHb, PVI) are read past. The sample's sequence is its
/// time in seconds since 1970 on the device clock: a stored sample is unique by its time, so a
/// repeated download keeps each reading's ID and the store keeps one copy.
/// Rejections: a line without the date and time, with a malformed or repeated field, or without
/// EXC → `malformedField`; a line longer than 256 bytes → `lineTooLong`; bytes that are not
/// printable ASCII → `garbage`; a line cut off by the end of the stream → `truncated`.
public struct MasimoTrendDecoder: StreamDecoder {
    public static let maxLineLength = 256
    private var line: [UInt8] = []
    private var overflowing = false

    public init() {}

    public mutating func decode(_ bytes: some Collection<UInt8>) -> [DecodeResult] {
        var out: [DecodeResult] = []
        for b in bytes {
            if b == 0x0A || b == 0x0D {
                if overflowing {
                    overflowing = false
                } else if !line.isEmpty {
                    out.append(Self.parse(line))
                }
                line.removeAll(keepingCapacity: true)
                continue
            }
            if overflowing { continue }
            line.append(b)
            if line.count > Self.maxLineLength {
                out.append(.rejected(FrameError(.lineTooLong, "no line end within \(Self.maxLineLength) bytes", bytesSkipped: line.count)))
                line.removeAll(keepingCapacity: true)
                overflowing = true
            }
        }
        return out
    }

    public mutating func finish() -> [DecodeResult] {
        defer { line.removeAll(); overflowing = false }
        guard !line.isEmpty, !overflowing else { return [] }
        return [.rejected(FrameError(.truncated, "the stream ended inside a line", bytesSkipped: line.count))]
    }

    static func parse(_ bytes: [UInt8]) -> DecodeResult {
        let n = bytes.count
        guard bytes.allSatisfy({ (0x20...0x7E).contains($0) || $0 == 0x09 }) else {
            return .rejected(FrameError(.garbage, "line: bytes that are not printable ASCII", bytesSkipped: n))
        }
        let tokens = bytes.split(whereSeparator: { $0 == 0x20 || $0 == 0x09 }).map { String(decoding: $0, as: UTF8.self) }
        guard tokens.count >= 3, let time = civilTime(date: tokens[0], time: tokens[1]) else {
            return .rejected(FrameError(.malformedField, "line: does not start with MM/DD/YY HH:MM:SS", bytesSkipped: n))
        }
        var values: [String: String] = [:]
        for token in tokens.dropFirst(2) {
            guard let eq = token.firstIndex(of: "="), eq != token.startIndex else {
                return .rejected(FrameError(.malformedField, "line: a field without name=value", bytesSkipped: n))
            }
            let key = String(token[..<eq])
            guard values[key] == nil else {
                return .rejected(FrameError(.malformedField, "field \(key): repeated", bytesSkipped: n))
            }
            values[key] = String(token[token.index(after: eq)...])
        }
        guard let excText = values["EXC"] else {
            return .rejected(FrameError(.malformedField, "field EXC: missing", bytesSkipped: n))
        }
        let hex = excText.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
        guard (3...8).contains(hex.count), let exc = UInt32(hex, radix: 16) else {
            return .rejected(FrameError(.malformedField, "field EXC: not 3 to 8 hexadecimal digits", bytesSkipped: n))
        }
        let flags = MasimoExceptionBit.flags(for: exc)
        let seconds = UInt64(max(0, time.timestamp(utcOffsetSeconds: 0).millisecondsSinceEpoch / 1000))
        var samples: [VitalSample] = []
        for (key, vital, integer) in [("SpO2", Vital.spo2, true), ("PR", Vital.pulseRate, true), ("PI", Vital.perfusionIndex, false)] {
            guard let text = values[key] else { continue }
            switch number(text, integer: integer) {
            case .none:
                return .rejected(FrameError(.malformedField, "field \(key): not a number", bytesSkipped: n))
            case .some(nil):
                continue
            case .some(let value?):
                samples.append(VitalSample(vital: vital, quantity: Quantity(value, vital.unit), deviceTime: time,
                                           flags: flags, sequence: seconds))
            }
        }
        return .samples(samples)
    }

    /// nil: malformed; .some(nil): the "no value" form (all zeros or all dashes); else the value.
    static func number(_ text: String, integer: Bool) -> Double?? {
        if !text.isEmpty, text.allSatisfy({ $0 == "-" || $0 == "." }) { return .some(nil) }
        let digits = text.filter { $0 != "." }
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber),
              text.filter({ $0 == "." }).count <= (integer ? 0 : 1), text.first != ".", text.last != ".",
              let v = Double(text) else { return nil }
        return v == 0 ? .some(nil) : .some(v)
    }

    /// `MM/DD/YY` and `HH:MM:SS`, years 2000 + YY; nil if not a real date and time.
    static func civilTime(date: String, time: String) -> CivilDateTime? {
        let d = date.split(separator: "/", omittingEmptySubsequences: false)
        let t = time.split(separator: ":", omittingEmptySubsequences: false)
        guard d.count == 3, t.count == 3, (d + t).allSatisfy({ $0.count == 2 && $0.allSatisfy(\.isNumber) && $0.allSatisfy(\.isASCII) }),
              let mo = Int(d[0]), let da = Int(d[1]), let yy = Int(d[2]),
              let h = Int(t[0]), let mi = Int(t[1]), let s = Int(t[2]),
              (0...23).contains(h), (0...59).contains(mi), (0...59).contains(s) else { return nil }
        let civil = CivilDateTime(year: 2000 + yy, month: mo, day: da, hour: h, minute: mi, second: s)
        return civil.isValid ? civil : nil
    }
}
