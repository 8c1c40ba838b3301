public import DeviceDecoding
public import VitalSigns
import FoundationEssentials
import Glibc

/// Loads device captures and their expected decoder output from `firmware-fixtures/`.
public enum Fixtures {
    /// The repository root: the nearest directory above this source file that holds
    /// `Package.swift`.
    public static var repositoryRoot: String {
        var dir = String(#filePath)
        while let slash = dir.lastIndex(of: "/"), slash > dir.startIndex {
            dir = String(dir[..<slash])
            if access(dir + "/Package.swift", F_OK) == 0 { return dir }
        }
        return "."
    }

    /// `firmware-fixtures/` in the repository.
    public static var fixturesDirectory: String { repositoryRoot + "/firmware-fixtures" }

    /// Reads a whole file.
    public static func readFile(_ path: String) throws(FixtureError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FixtureError(path: path, line: nil, message: "cannot open (errno \(errno))") }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FixtureError(path: path, line: nil, message: "read failed (errno \(errno))")
            }
            if n == 0 { break }
            out.append(contentsOf: buffer[0..<n])
        }
        return out
    }

    /// Parses a capture, `relative` to `firmware-fixtures/` (for example
    /// `masimo-rad8/normal.capture`) or an absolute path.
    public static func capture(_ relative: String) throws(FixtureError) -> Capture {
        let path = resolve(relative)
        let text = String(decoding: try readFile(path), as: UTF8.self)
        do {
            return try Capture.parse(text)
        } catch {
            throw FixtureError(path: path, line: error.line, message: error.description)
        }
    }

    /// The expected results next to a capture: `<name>.expected.jsonl`.
    public static func expected(forCapture relative: String) throws(FixtureError) -> [ExpectedResult] {
        let path = expectedPath(forCapture: resolve(relative))
        let bytes = try readFile(path)
        var results: [ExpectedResult] = []
        var lineNumber = 0
        for line in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D }) { continue }
            let raw: RawExpected
            do {
                raw = try JSONDecoder().decode(RawExpected.self, from: Data(line))
            } catch {
                throw FixtureError(path: path, line: lineNumber, message: "not a JSON expected result")
            }
            results.append(try raw.convert(path: path, line: lineNumber))
        }
        return results
    }

    /// `<dir>/<name>.capture` (or `.att`, `.values`) → `<dir>/<name>.expected.jsonl`.
    public static func expectedPath(forCapture path: String) -> String {
        var base = path
        for ext in [".capture", ".att", ".values"] where path.hasSuffix(ext) {
            base = String(path.dropLast(ext.count))
        }
        return base + ".expected.jsonl"
    }

    /// Every `.capture` file under `firmware-fixtures/`, relative to it, sorted.
    public static func allCaptures() -> [String] {
        var found: [String] = []
        let root = fixturesDirectory
        for sub in list(root) where isDirectory(root + "/" + sub) {
            for name in list(root + "/" + sub) where name.hasSuffix(".capture") {
                found.append(sub + "/" + name)
            }
        }
        return found.sorted()
    }

    public static func fileExists(_ path: String) -> Bool { access(resolve(path), F_OK) == 0 }

    static func resolve(_ relative: String) -> String {
        relative.hasPrefix("/") ? relative : fixturesDirectory + "/" + relative
    }

    /// The names in a directory (no `.`/`..`), sorted.
    public static func list(_ dir: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }
}

/// One expected decoder result, as a fixture's `.expected.jsonl` states it.
public enum ExpectedResult: Sendable, Hashable, CustomStringConvertible {
    case samples([VitalSample])
    /// A rejection with its code and, where the fixture states it, the bytes skipped.
    case rejected(FrameError.Code, skipped: Int?)

    /// Whether a decoder result is what this line expects (messages are not compared).
    public func matches(_ result: DecodeResult) -> Bool {
        switch (self, result) {
        case (.samples(let a), .samples(let b)): a == b
        case (.rejected(let code, let skipped), .rejected(let error)):
            code == error.code && (skipped == nil || skipped == error.bytesSkipped)
        default: false
        }
    }

    public var description: String {
        switch self {
        case .samples(let s): "samples(\(s.map { "\($0.vital.key)=\($0.quantity.value) \($0.flags)" }.joined(separator: ", ")))"
        case .rejected(let code, let skipped): "rejected(\(code.rawValue), skipped: \(skipped.map(String.init) ?? "any"))"
        }
    }
}

/// A fixture file that is missing or malformed.
public struct FixtureError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var line: Int?
    public var message: String
    public var description: String { "\(path)\(line.map { ":\($0)" } ?? ""): \(message)" }
}

struct RawExpected: Decodable {
    struct Sample: Decodable {
        var vital: String
        var value: Double
        var unit: String
        /// Null for devices whose protocol carries no clock (Nonin SDF #2).
        var device_time: String?
        var flags: [String]
        /// The device's record number, for protocols that number their records (absent: nil).
        var sequence: UInt64?
    }
    var samples: [Sample]?
    var rejected: String?
    var skipped: Int?

    func convert(path: String, line: Int) throws(FixtureError) -> ExpectedResult {
        func fail(_ m: String) -> FixtureError { FixtureError(path: path, line: line, message: m) }
        if let rejected {
            guard samples == nil else { throw fail("both samples and rejected") }
            guard let code = FrameError.Code(rawValue: rejected) else { throw fail("unknown rejection code \(rejected)") }
            return .rejected(code, skipped: skipped)
        }
        guard let samples else { throw fail("neither samples nor rejected") }
        var out: [VitalSample] = []
        for s in samples {
            guard let vital = Vital.named(s.vital) else { throw fail("unknown vital \(s.vital)") }
            guard s.unit == vital.unit else { throw fail("unit \(s.unit) is not \(vital.key)'s \(vital.unit)") }
            guard let flags = QualityFlags(names: s.flags) else { throw fail("unknown flag in \(s.flags)") }
            var time: CivilDateTime?
            if let text = s.device_time {
                guard let parsed = parseCivil(text) else { throw fail("device_time is not YYYY-MM-DDTHH:MM:SS") }
                time = parsed
            }
            out.append(VitalSample(vital: vital, quantity: Quantity(s.value, vital.unit), deviceTime: time, flags: flags, sequence: s.sequence))
        }
        return .samples(out)
    }

    func parseCivil(_ text: String) -> CivilDateTime? {
        let b = Array(text.utf8)
        guard b.count == 19, b[4] == 0x2D, b[7] == 0x2D, b[10] == 0x54, b[13] == 0x3A, b[16] == 0x3A else { return nil }
        func num(_ from: Int, _ n: Int) -> Int? {
            var v = 0
            for i in from..<(from + n) {
                guard b[i] >= 0x30, b[i] <= 0x39 else { return nil }
                v = v * 10 + Int(b[i] - 0x30)
            }
            return v
        }
        guard let y = num(0, 4), let mo = num(5, 2), let d = num(8, 2), let h = num(11, 2), let mi = num(14, 2),
              let s = num(17, 2) else { return nil }
        let t = CivilDateTime(year: y, month: mo, day: d, hour: h, minute: mi, second: s)
        return t.isValid ? t : nil
    }
}
