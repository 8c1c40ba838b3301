import DeviceDecoding
import Testing
import VigilTestKit
import VitalSigns

/// Replays `bytes` into a fresh decoder in chunks of `chunk` bytes (nil: all at once), then
/// finishes the stream.
func replay(_ bytes: [UInt8], chunk: Int?, decoder name: String = "masimo-ascii1") -> [DecodeResult] {
    guard var decoder = makeDecoder(named: name) else { return [] }
    var results: [DecodeResult] = []
    let size = chunk ?? max(bytes.count, 1)
    var i = 0
    while i < bytes.count {
        let end = min(i + size, bytes.count)
        results += decoder.decode(bytes[i..<end])
        i = end
    }
    results += decoder.finish()
    return results
}

func assertMatches(_ results: [DecodeResult], _ expected: [ExpectedResult], _ label: String,
                   sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(results.count == expected.count, "\(label): \(results.count) results, expected \(expected.count)",
            sourceLocation: sourceLocation)
    for (i, (r, e)) in zip(results, expected).enumerated() where !e.matches(r) {
        Issue.record("\(label) result \(i + 1): got \(r), expected \(e)", sourceLocation: sourceLocation)
        return
    }
}

@Suite("Masimo fixtures")
struct MasimoFixtureTests {
    static let captures = Fixtures.allCaptures().filter { $0.hasPrefix("masimo-rad8/") }

    @Test("the fixture set is there")
    func fixtureSetIsThere() {
        for name in ["normal", "exceptions", "missing-values", "corrupt", "truncated", "garbage", "desaturation"] {
            #expect(Self.captures.contains("masimo-rad8/\(name).capture"), "missing \(name).capture")
        }
    }

    @Test("the desaturation capture drives an escalation: SpO2 < 90 % for ≥ 90 s, ≥ 180 lines")
    func desaturationShape() throws {
        let expected = try Fixtures.expected(forCapture: "masimo-rad8/desaturation.capture")
        #expect(expected.count >= 180)
        var run = 0, best = 0
        var previous: CivilDateTime?
        for e in expected {
            guard case .samples(let samples) = e, let spo2 = samples.first(where: { $0.vital == .spo2 }) else {
                Issue.record("every desaturation line has SpO2")
                return
            }
            if let p = previous, let t = spo2.deviceTime {
                #expect(t.timestamp(utcOffsetSeconds: 0).milliseconds(since: p.timestamp(utcOffsetSeconds: 0)) == 1000)
            }
            previous = spo2.deviceTime
            run = spo2.quantity.value < 90 ? run + 1 : 0
            best = max(best, run)
        }
        #expect(best >= 90)
    }
}

@Suite("Device profiles name fixtures that exist")
struct ProfileFixtureTests {
    /// The `fixtures:` list of a profile (block `- item` or flow `[a, b]` style). A small
    /// reader is enough here: DeviceProfiles validates the full schema.
    static func fixtureList(_ yaml: String) -> [String] {
        var out: [String] = []
        var inList = false
        for raw in yaml.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            if line.hasPrefix("fixtures:") {
                let rest = line.dropFirst("fixtures:".count).trimmingSpaces
                if rest.hasPrefix("[") {
                    out += rest.dropFirst().dropLast().split(separator: ",").map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
                    return out
                }
                inList = true
                continue
            }
            if inList {
                let t = line.trimmingSpaces
                if t.hasPrefix("- ") { out.append(String(t.dropFirst(2)).trimmingSpaces) } else if !t.isEmpty { inList = false }
            }
        }
        return out
    }

    @Test("every devices/*.yaml names fixtures that exist, each with an expected file")
    func profilesNameExistingFixtures() throws {
        let devices = Fixtures.repositoryRoot + "/devices"
        let profiles = try listYAML(devices)
        #expect(!profiles.isEmpty)
        for profile in profiles {
            let text = String(decoding: try Fixtures.readFile(devices + "/" + profile), as: UTF8.self)
            let list = Self.fixtureList(text)
            #expect(!list.isEmpty, "\(profile) names no fixtures")
            for f in list {
                #expect(Fixtures.fileExists(f), "\(profile) names \(f), which is missing")
                #expect(Fixtures.fileExists(Fixtures.expectedPath(forCapture: f)), "\(f) has no expected file")
            }
        }
    }

    @Test("every capture in firmware-fixtures has an expected file")
    func everyCaptureHasExpected() {
        let all = Fixtures.allCaptures()
        #expect(!all.isEmpty)
        for c in all {
            #expect(Fixtures.fileExists(Fixtures.expectedPath(forCapture: c)), "\(c) has no .expected.jsonl")
        }
    }

    func listYAML(_ dir: String) throws -> [String] {
        Fixtures.list(dir).filter { $0.hasSuffix(".yaml") }
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" || s.last == "\r" { s = s.dropLast() }
        if s.count >= 2, (s.first == "\"" && s.last == "\"") || (s.first == "'" && s.last == "'") { s = s.dropFirst().dropLast() }
        return String(s)
    }
}
