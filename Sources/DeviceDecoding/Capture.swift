import VitalSigns

/// A recorded byte stream with its timing: what a device sent, and when.
///
/// Text format (`firmware-fixtures/README.md`), one file per capture:
///
///     # free comment lines start with '#'; blank lines are ignored
///     <milliseconds since the capture started> <hex bytes>
///
/// for example `1000 30322f32322f3136 200d0a`. Hex digits may be split by spaces for
/// readability; a record holds at least one byte; offsets never decrease.
public struct Capture: Sendable, Hashable {
    public struct Record: Sendable, Hashable {
        /// Milliseconds since the start of the capture.
        public var offsetMilliseconds: Int64
        public var bytes: [UInt8]
        public init(offsetMilliseconds: Int64, bytes: [UInt8]) {
            self.offsetMilliseconds = offsetMilliseconds
            self.bytes = bytes
        }
    }

    public var records: [Record]
    public init(records: [Record]) { self.records = records }

    /// Every byte of the capture, in order.
    public var allBytes: [UInt8] { records.flatMap(\.bytes) }

    /// The capture's length in milliseconds (the last record's offset).
    public var durationMilliseconds: Int64 { records.last?.offsetMilliseconds ?? 0 }

    /// Parses the text form.
    public static func parse(_ text: String) throws(CaptureError) -> Capture {
        var records: [Record] = []
        var lineNumber = 0
        var previous: Int64 = 0
        let utf8 = Array(text.utf8)
        for rawLine in utf8.split(separator: 0x0A, omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = rawLine
            while let last = line.last, last == 0x0D || last == 0x20 || last == 0x09 { line = line.dropLast() }
            while let first = line.first, first == 0x20 || first == 0x09 { line = line.dropFirst() }
            if line.isEmpty || line.first == 0x23 { continue }

            // Offset: decimal digits up to the first space.
            var offset: Int64 = 0
            var digits = 0
            var i = line.startIndex
            while i < line.endIndex, line[i] >= 0x30, line[i] <= 0x39 {
                guard digits < 15 else { throw CaptureError(.badOffset, line: lineNumber) }
                offset = offset * 10 + Int64(line[i] - 0x30)
                digits += 1
                i += 1
            }
            guard digits > 0, i < line.endIndex, line[i] == 0x20 || line[i] == 0x09 else {
                throw CaptureError(digits == 0 ? .badOffset : .missingBytes, line: lineNumber)
            }
            guard offset >= previous else { throw CaptureError(.offsetDecreasing, line: lineNumber) }
            previous = offset

            var bytes: [UInt8] = []
            var high: UInt8?
            for c in line[i...] where c != 0x20 && c != 0x09 {
                guard let v = ASCII.hexValue(c) else { throw CaptureError(.badHex, line: lineNumber) }
                if let h = high {
                    bytes.append(h << 4 | v)
                    high = nil
                } else {
                    high = v
                }
            }
            guard high == nil else { throw CaptureError(.oddHexLength, line: lineNumber) }
            guard !bytes.isEmpty else { throw CaptureError(.missingBytes, line: lineNumber) }
            records.append(Record(offsetMilliseconds: offset, bytes: bytes))
        }
        return Capture(records: records)
    }

    /// The text form of this capture (no comments).
    public func formatted() -> String {
        var out = ""
        for r in records { out += "\(r.offsetMilliseconds) \(r.bytes.hexString)\n" }
        return out
    }
}

/// A capture file that cannot be parsed, with the 1-based line where it went wrong.
public struct CaptureError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        /// The line does not start with a decimal millisecond offset.
        case badOffset
        /// The offset is smaller than the previous record's.
        case offsetDecreasing
        /// A character that is not a hex digit.
        case badHex
        /// An odd number of hex digits.
        case oddHexLength
        /// An offset with no bytes after it.
        case missingBytes
    }

    public var code: Code
    public var line: Int

    public init(_ code: Code, line: Int) {
        self.code = code
        self.line = line
    }

    public var description: String {
        let what = switch code {
        case .badOffset: "expected a millisecond offset (decimal digits) at the start of the line"
        case .offsetDecreasing: "the offset is smaller than the previous record's"
        case .badHex: "a character that is not a hexadecimal digit"
        case .oddHexLength: "an odd number of hexadecimal digits"
        case .missingBytes: "an offset with no bytes after it"
        }
        return "capture line \(line): \(what)"
    }
}
