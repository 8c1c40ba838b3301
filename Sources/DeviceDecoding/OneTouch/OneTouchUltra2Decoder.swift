import VitalSigns

/// LifeScan OneTouch Ultra / Ultra 2: the meter's answer to the `DMP` (dump memory) command,
/// 9600 8N1, ASCII lines terminated by CR LF.
///
/// A dump is a header line then `nnn` record lines, newest record first:
///
///     P 003,"GMF600DCY","MG/DL " 05A6
///     P "SAT","03/21/15","16:45:24   ","  081 ","N","03", 00 09B6      (Ultra 2)
///     P "SAT","05/27/06","16:42:08   ","  051 ", 00 0829               (Ultra)
///
/// - Header: `P nnn,"SSSSSSSSS","UUUUUU" CCCC`: record count (3 digits), serial number
///   (9 of `0-9A-Z`), unit as displayed, `MG/DL ` or `MMOL/L`.
/// - Record: `P "DDD","MM/DD/YY","HH:MM:SS   ","F VVVp"` then `,"M","CC", 00 CCCC` (Ultra 2:
///   meal `N`/`B`/`A`, comment `00`–`11`) or `, 00 CCCC` (Ultra). `F` is `C` for a
///   control-solution test, else a space; `VVV` the value in mg/dL, or `HIGH` in place of
///   ` VVV` above 600 mg/dL; `p` is `?` when the meter marks a parity error, else a space.
///   Year is 2000 + YY.
/// - `CCCC`: four upper-case hex digits, the 16-bit sum of every byte of the line before the
///   space that precedes the checksum (worked example: the header above sums to 0x05A6).
///
/// Units: the meter stores and dumps values in mg/dL whatever unit it displays; the header's
/// unit is the display setting only (glucometerutils `otultra2.py`; Tidepool
/// `oneTouchUltra2.js`: "even mmol/L meters store data in mg/dL"; the value field has three
/// digits and no decimal point). So values are emitted as read, in mg/dL, never converted.
///
/// Each result is one line: a good header and a control-solution record are `.samples([])`;
/// a HI/LO record (`HIGH`, or a value above 600 or below 20 mg/dL, the meter's reportable
/// range) is a sample at the range's edge flagged `aboveMeasuringRange`/`belowMeasuringRange`,
/// so a dangerous glucose still reaches the rules; a good glucose record is one
/// `bloodGlucose` sample with the meter's clock as
/// `deviceTime` and `sequence` = the record's index counted from the OLDEST record
/// (`count − 1 − position`, since records come newest first), so a record keeps its
/// sequence when later downloads add newer records.
///
/// Rejections: checksum mismatch → `.checksum`; a line that does not have the header or
/// record form, a record before a header or beyond the announced count, or a parity-error
/// mark → `.malformedField`; bytes that start no line → `.garbage` (the decoder resyncs on
/// the last `P "` / `P d` in a line, so garbage costs only its own bytes); a dump that ends
/// (stream end, or a new header) with fewer records than announced → `.truncated`.
/// Sources and field tables: `firmware-fixtures/README.md`, section onetouch-ultra2.
public struct OneTouchUltra2Decoder: StreamDecoder {
    /// Longest line kept while waiting for a terminator. An Ultra 2 record is 59 bytes.
    public static let maxLineLength = 128
    /// The meter's reportable range, mg/dL (values outside are its LO / HI results).
    public static let reportableRange: ClosedRange<Int> = 20...600

    /// The unit the meter displays (the dump itself is always in mg/dL).
    public enum DisplayUnit: Sendable, Hashable { case mgdL, mmolL }

    struct Dump: Sendable, Hashable {
        var count: Int
        var received: Int
        var unit: DisplayUnit
    }

    private var line: [UInt8] = []
    private var dump: Dump?
    /// The display unit of the last good header, if any.
    public private(set) var displayUnit: DisplayUnit?
    /// How many dumps have arrived whole: every record the header announced has taken its
    /// place (good or rejected). A download driver waits for this to grow.
    public private(set) var dumpsCompleted = 0

    public init() { line.reserveCapacity(Self.maxLineLength + 1) }

    public mutating func decode(_ bytes: some Collection<UInt8>) -> [DecodeResult] {
        var out: [DecodeResult] = []
        // Byte at a time so results do not depend on how reads split the stream.
        for byte in bytes {
            if byte == OT.cr || byte == OT.lf {
                if !line.isEmpty {
                    complete(into: &out)
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
        var out: [DecodeResult] = []
        if !line.isEmpty {
            if Self.startsLine(line[...], at: 0) {
                out.append(.rejected(FrameError(.truncated, "the stream ended inside a line", bytesSkipped: line.count)))
            } else {
                out.append(.rejected(FrameError(.garbage, "the stream ended with bytes that start no line", bytesSkipped: line.count)))
            }
        }
        endDump(into: &out)
        line.removeAll(keepingCapacity: true)
        displayUnit = nil
        return out
    }

    /// A dump still expecting records ends: report the shortfall (no bytes are skipped).
    private mutating func endDump(into out: inout [DecodeResult]) {
        if let d = dump, d.received < d.count {
            out.append(.rejected(FrameError(.truncated, "the dump ended before all records the header announced", bytesSkipped: 0)))
        }
        dump = nil
    }

    /// No terminator within `maxLineLength`: keep the newest possible line start.
    private mutating func overflow(into out: inout [DecodeResult]) {
        var keep = line.count - 1
        var k = line.count - 2
        while k >= 1 {
            if Self.startsLine(line[...], at: k) { keep = k; break }
            k -= 1
        }
        // The last byte alone may be the `P` of a line start.
        if keep == line.count - 1, line[keep] != OT.p { keep = line.count }
        out.append(.rejected(FrameError(.lineTooLong, "no line end within \(Self.maxLineLength) bytes", bytesSkipped: keep)))
        line.removeFirst(keep)
    }

    private mutating func complete(into out: inout [DecodeResult]) {
        let all = line[...]
        var k = all.count - 3
        while k >= 0, !Self.startsLine(all, at: k) { k -= 1 }
        guard k >= 0 else {
            out.append(.rejected(FrameError(.garbage, "a line does not start with P", bytesSkipped: all.count)))
            return
        }
        if k > 0 {
            if Self.startsLine(all, at: 0) {
                out.append(.rejected(FrameError(.truncated, "a line was cut off before its end", bytesSkipped: k)))
            } else {
                out.append(.rejected(FrameError(.garbage, "bytes before a line start", bytesSkipped: k)))
            }
        }
        let body = all[(all.startIndex + k)...]
        let n = body.count
        // Every record-shaped line the meter sent takes a place in the dump, even when it is
        // then rejected, so the records after it keep their positions (and sequences).
        let slot = body[body.startIndex + 2] == OT.quote ? takeSlot() : nil
        // Checksum first: a corrupted byte is a checksum failure, not a malformed field.
        guard n >= 7, body[body.endIndex - 5] == OT.space,
              let given = OT.hex4(body[(body.endIndex - 4)...]) else {
            out.append(.rejected(FrameError(.malformedField, "the line does not end with a 4-digit checksum", bytesSkipped: n)))
            return
        }
        let payload = body[body.startIndex..<(body.endIndex - 5)]
        guard Self.checksum(payload) == given else {
            out.append(.rejected(FrameError(.checksum, "line checksum does not match", bytesSkipped: n)))
            return
        }
        if payload[payload.startIndex + 2] == OT.quote {
            record(payload, slot: slot, total: n, into: &out)
        } else {
            header(payload, total: n, into: &out)
        }
    }

    /// The next record's position in the current dump and the dump's record count, or nil
    /// when no dump is expecting records (none started, or all announced ones arrived).
    private mutating func takeSlot() -> (position: Int, count: Int)? {
        guard var d = dump else { return nil }
        let position = d.received
        d.received += 1
        if d.received >= d.count {
            dump = nil
            dumpsCompleted += 1
        } else {
            dump = d
        }
        return (position, d.count)
    }

    private mutating func header(_ p: ArraySlice<UInt8>, total n: Int, into out: inout [DecodeResult]) {
        guard let (count, unit) = Self.parseHeader(p) else {
            out.append(.rejected(FrameError(.malformedField, "header: not the P nnn,\"serial\",\"unit\" form", bytesSkipped: n)))
            return
        }
        endDump(into: &out)
        dump = count == 0 ? nil : Dump(count: count, received: 0, unit: unit)
        if count == 0 { dumpsCompleted += 1 }
        displayUnit = unit
        out.append(.samples([]))
    }

    private func record(_ p: ArraySlice<UInt8>, slot: (position: Int, count: Int)?, total n: Int,
                        into out: inout [DecodeResult]) {
        guard let slot else {
            out.append(.rejected(FrameError(.malformedField, "a record outside a dump (no header, or more records than announced)", bytesSkipped: n)))
            return
        }
        switch Self.parseRecord(p) {
        case .failure(let error):
            out.append(.rejected(FrameError(.malformedField, error.message, bytesSkipped: n)))
        case .success(let r):
            if r.parityError {
                out.append(.rejected(FrameError(.malformedField, "value: the meter marked a parity error", bytesSkipped: n)))
            } else if r.control {
                // A control-solution test is not a patient reading.
                out.append(.samples([]))
            } else {
                // HI and LO are readings, and dangerous ones: they are reported at the edge of
                // the meter's range with a flag saying the true value lies beyond it, so the
                // rules still see a glucose of at least 600 (or at most 20) mg/dL.
                var value = r.value
                var flags: QualityFlags = []
                if value > Self.reportableRange.upperBound {
                    value = Self.reportableRange.upperBound
                    flags.insert(.aboveMeasuringRange)
                } else if value < Self.reportableRange.lowerBound {
                    value = Self.reportableRange.lowerBound
                    flags.insert(.belowMeasuringRange)
                }
                // Newest first: the oldest record (last sent) is 0.
                let sequence = UInt64(slot.count - 1 - slot.position)
                out.append(.samples([VitalSample(vital: .bloodGlucose, quantity: Quantity(Double(value), Vital.bloodGlucose.unit),
                                                 deviceTime: r.time, flags: flags, sequence: sequence)]))
            }
        }
    }

    // MARK: - Parsing (exposed for tests)

    /// The 16-bit sum of the bytes (LifeScan: the line's bytes before the checksum).
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt16 {
        bytes.reduce(UInt16(0)) { $0 &+ UInt16($1) }
    }

    /// Whether `P "` or `P <digit>` starts at offset `k`.
    static func startsLine(_ line: ArraySlice<UInt8>, at k: Int) -> Bool {
        guard k >= 0, line.count - k >= 3 else { return false }
        let s = line.startIndex + k
        return line[s] == OT.p && line[s + 1] == OT.space && (line[s + 2] == OT.quote || OT.isDigit(line[s + 2]))
    }

    /// `P nnn,"SSSSSSSSS","MG/DL "` or `…,"MMOL/L"` (without the checksum).
    static func parseHeader(_ p: ArraySlice<UInt8>) -> (Int, DisplayUnit)? {
        let b = Array(p)
        guard b.count == 26, b[0] == OT.p, b[1] == OT.space, b[5] == OT.comma, b[6] == OT.quote,
              b[16] == OT.quote, b[17] == OT.comma, b[18] == OT.quote, b[25] == OT.quote,
              let count = OT.decimal(b[2..<5]),
              b[7..<16].allSatisfy({ OT.isDigit($0) || (0x41...0x5A).contains($0) }) else { return nil }
        switch Array(b[19..<25]) {
        case Array("MG/DL ".utf8): return (count, .mgdL)
        case Array("MMOL/L".utf8): return (count, .mmolL)
        default: return nil
        }
    }

    struct Record: Sendable, Hashable {
        var time: CivilDateTime
        var control: Bool
        var value: Int
        var parityError: Bool
    }

    /// A record line without its checksum; the failure names the field, never a value.
    static func parseRecord(_ p: ArraySlice<UInt8>) -> Result<Record, RecordError> {
        let b = Array(p)
        func lit(_ at: Int, _ s: String) -> Bool {
            let u = Array(s.utf8)
            return b.count >= at + u.count && Array(b[at..<(at + u.count)]) == u
        }
        guard b.count == 54 || b.count == 45 else { return .failure(RecordError(stringLiteral: "record: wrong length")) }
        guard lit(0, "P \""), b[3...5].allSatisfy({ (0x41...0x5A).contains($0) }), lit(6, "\",\"") else {
            return .failure(RecordError(stringLiteral: "record: day of week"))
        }
        guard lit(11, "/"), lit(14, "/"), lit(17, "\",\""), lit(22, ":"), lit(25, ":"), lit(28, "   \",\""),
              let mo = OT.decimal(b[9..<11]), let d = OT.decimal(b[12..<14]), let y = OT.decimal(b[15..<17]),
              let h = OT.decimal(b[20..<22]), let mi = OT.decimal(b[23..<25]), let s = OT.decimal(b[26..<28]) else {
            return .failure(RecordError(stringLiteral: "record: date and time form"))
        }
        let time = CivilDateTime(year: 2000 + y, month: mo, day: d, hour: h, minute: mi, second: s)
        guard time.isValid else { return .failure(RecordError(stringLiteral: "record: not a valid calendar date or time")) }
        // `HIGH` (above 600 mg/dL) per LifeScan's Ultra spec; `REXC` read as high by one parser.
        let high = lit(35, "HIGH") || lit(35, "REXC")
        let digits = b[35] == OT.space ? OT.decimal(b[36..<39]) : nil
        guard b[34] == OT.c || b[34] == OT.space, let value = high ? Int.max : digits,
              b[39] == OT.space || b[39] == OT.question, b[40] == OT.quote else {
            return .failure(RecordError(stringLiteral: "record: value field form"))
        }
        if b.count == 54 {
            guard lit(41, ",\""), [OT.n, OT.b, OT.a].contains(b[43]), lit(44, "\",\""),
                  let comment = OT.decimal(b[47..<49]), comment <= 11, lit(49, "\", ") else {
                return .failure(RecordError(stringLiteral: "record: meal or comment code"))
            }
            guard OT.decimal(b[52..<54]) != nil else { return .failure(RecordError(stringLiteral: "record: trailing field")) }
        } else {
            guard lit(41, ", "), OT.decimal(b[43..<45]) != nil else { return .failure(RecordError(stringLiteral: "record: trailing field")) }
        }
        return .success(Record(time: time, control: b[34] == OT.c, value: value, parityError: b[39] == OT.question))
    }
}

/// A record field that failed; a fixed description, no values.
struct RecordError: Error, Sendable, Hashable, ExpressibleByStringLiteral {
    var message: String
    init(stringLiteral value: String) { message = value }
}

enum OT {
    static let cr: UInt8 = 0x0D, lf: UInt8 = 0x0A, space: UInt8 = 0x20, quote: UInt8 = 0x22, comma: UInt8 = 0x2C
    static let p: UInt8 = 0x50, c: UInt8 = 0x43, question: UInt8 = 0x3F, n: UInt8 = 0x4E, b: UInt8 = 0x42, a: UInt8 = 0x41
    static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
    static func decimal(_ s: ArraySlice<UInt8>) -> Int? {
        var v = 0
        for b in s {
            guard isDigit(b) else { return nil }
            v = v * 10 + Int(b - 0x30)
        }
        return s.isEmpty ? nil : v
    }
    /// Four upper-case hex digits (the meter sends upper case).
    static func hex4(_ s: ArraySlice<UInt8>) -> UInt16? {
        guard s.count == 4 else { return nil }
        var v: UInt16 = 0
        for b in s {
            let d: UInt8
            switch b {
            case 0x30...0x39: d = b - 0x30
            case 0x41...0x46: d = b - 0x41 + 10
            default: return nil
            }
            v = v << 4 | UInt16(d)
        }
        return v
    }
}
