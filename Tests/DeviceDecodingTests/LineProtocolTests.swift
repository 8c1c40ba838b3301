import DeviceDecoding
import StrictYAML
import Testing
import VigilTestKit
import VitalSigns

@Suite("A line protocol defined entirely in a device profile")
struct LineProtocolTests {
    static func spec(_ yaml: String) throws -> LineProtocolSpec {
        try YAMLDecoder().decode(LineProtocolSpec.self, from: yaml, fileName: "line.yaml")
    }

    static func samples(_ results: [DecodeResult]) -> [[VitalSample]] {
        results.compactMap { if case .samples(let s) = $0 { s } else { nil } }
    }

    static let scale = """
        terminator: crlf
        separator: ","
        require: '^WT'
        fields:
          - {vital: body_weight, index: 1, unit: kg}
        """

    @Test("positional fields: a scale's weight lines, in any chunking, other lines ignored")
    func positional() throws {
        let bytes = Array("ID,0042\r\nWT,  72.4,kg\r\nWT,072.50,kg\r\n".utf8)
        for chunk in [1, 2, 5, bytes.count] {
            var d = try LineProtocolDecoder(spec: Self.spec(Self.scale))
            var results: [DecodeResult] = []
            var i = 0
            while i < bytes.count {
                results += d.decode(bytes[i..<min(i + chunk, bytes.count)])
                i += chunk
            }
            results += d.finish()
            #expect(Self.samples(results) == [
                [VitalSample(vital: .bodyWeight, quantity: Quantity(72.4, "kg"), deviceTime: nil)],
                [VitalSample(vital: .bodyWeight, quantity: Quantity(72.5, "kg"), deviceTime: nil)],
            ], "chunk \(chunk)")
            #expect(results.count == 2, "the ID line is skipped, not rejected")
        }
    }

    @Test("a regular expression with vitals as named groups: a thermometer in °F")
    func pattern() throws {
        let spec = try Self.spec("""
            terminator: lf
            pattern: '^T=(?<body_temperature>[0-9]+\\.[0-9])F P=(?<pulse_rate>[0-9]+)$'
            units: {body_temperature: "[degF]", pulse_rate: /min}
            """)
        var d = try LineProtocolDecoder(spec: spec)
        let results = d.decode(Array("T=98.6F P=72\nT=99.1F P=x\n".utf8))
        #expect(Self.samples(results) == [[
            VitalSample(vital: .bodyTemperature, quantity: Quantity(98.6, "[degF]"), deviceTime: nil),
            VitalSample(vital: .pulseRate, quantity: Quantity(72, "/min"), deviceTime: nil),
        ]])
        guard case .rejected(let e) = results.last else { Issue.record("second line must be rejected"); return }
        #expect(e.code == .malformedField)
    }

    @Test("values that are not plain decimals, missing fields, over-long lines, binary and a cut-off line are rejected, never guessed")
    func rejections() throws {
        var d = try LineProtocolDecoder(spec: Self.spec(Self.scale))
        let inputs: [(String, FrameError.Code)] = [
            ("WT,7e2,kg\r\n", .malformedField), ("WT,inf,kg\r\n", .malformedField), ("WT,0x10,kg\r\n", .malformedField),
            ("WT,,kg\r\n", .malformedField), ("WT\r\n", .malformedField), ("WT,72..4,kg\r\n", .malformedField),
            ("WT," + String(repeating: "9", count: 300) + "\r\n", .lineTooLong), ("WT,\u{01}72\r\n", .garbage),
        ]
        for (line, code) in inputs {
            let results = d.decode(Array(line.utf8))
            #expect(results.count == 1, "\(line.prefix(12))")
            guard case .rejected(let e) = results.first else { Issue.record("\(line.prefix(12)) not rejected"); continue }
            #expect(e.code == code, "\(line.prefix(12))")
            #expect(!e.message.contains("72"), "no value in the message")
        }
        _ = d.decode(Array("WT,72.".utf8))
        let end = d.finish()
        guard case .rejected(let e) = end.first else { Issue.record("a cut-off line must be reported"); return }
        #expect(e.code == .truncated)
        // The decoder recovers for the next connection.
        #expect(Self.samples(d.decode(Array("WT,70,kg\r\n".utf8))).count == 1)
    }

    @Test("random bytes never trap and never yield a sample that was not a decimal in the line")
    func randomBytes() throws {
        var rng = SplitMix64(state: 0x11E)
        var d = try LineProtocolDecoder(spec: Self.spec(Self.scale))
        for _ in 0..<2000 {
            let n = Int(rng.next() % 64)
            var bytes: [UInt8] = Array("WT,".utf8)
            for _ in 0..<n { bytes.append(UInt8(truncatingIfNeeded: rng.next())) }
            for r in d.decode(bytes) {
                if case .samples(let s) = r { #expect(s.allSatisfy { $0.quantity.value.isFinite }) }
            }
        }
        _ = d.finish()
    }

    @Test("a profile's line section that does not validate is refused, naming the field")
    func validation() {
        let bad: [(String, String)] = [
            ("separator: ','\nfields: [{vital: body_weight, index: 1, unit: lb}]", "not a UCUM unit Vigil accepts for body_weight"),
            ("separator: ','\nfields: [{vital: weight, index: 1, unit: kg}]", "unknown vital 'weight'"),
            ("separator: ','\nfields: [{vital: body_weight, unit: kg}]", "every field needs an index"),
            ("separator: ','\nfields: []", "at least one field"),
            ("fields: [{vital: body_weight, index: 1, unit: kg}]", "exactly one of 'separator'"),
            ("pattern: '^(?<body_weight>[0-9.]+'\nunits: {body_weight: kg}", "not a valid regular expression"),
            ("pattern: '^(?<mass>[0-9.]+)$'\nunits: {mass: kg}", "group 'mass' is not a known vital"),
            ("pattern: '^(?<body_weight>[0-9.]+)$'\nunits: {}", "no unit for 'body_weight'"),
            ("pattern: '^([0-9.]+)$'\nunits: {}", "needs at least one named group"),
            ("separator: ','\nmax_length: 2\nfields: [{vital: body_weight, index: 1, unit: kg}]", "max_length: must be between 8 and 4096"),
            ("separator: ','\nterminator: nul\nfields: [{vital: body_weight, index: 1, unit: kg}]", "terminator: must be lf, cr or crlf"),
        ]
        for (yaml, expected) in bad {
            do {
                _ = try Self.spec(yaml)
                Issue.record("accepted: \(yaml)")
            } catch let error as YAMLError {
                #expect(error.description.contains(expected), "\(error.description) — expected \(expected)")
                #expect(error.description.contains("line.yaml:"), "names the file and line")
            } catch {
                Issue.record("unexpected error \(error)")
            }
        }
    }
}
