import DeviceDecoding
import Testing
import VigilTestKit
import VitalSigns

/// Replays every `firmware-fixtures/gatt/*.values` file through the batch decoder (the code
/// behind `vigilctl decode --file`) and compares with `<name>.expected.jsonl`, which
/// `firmware-fixtures/gatt/generate.py` wrote from the field values it encoded. Every key an
/// expected line gives must match; `details` must hold at least the members given.
@Suite struct GATTFixtureTests {
    static let directory = Fixtures.fixturesDirectory + "/gatt"
    static var names: [String] {
        Fixtures.list(directory).filter { $0.hasSuffix(".values") }.map { String($0.dropLast(7)) }.sorted()
    }

    @Test func everyCharacteristicHasFixtures() {
        #expect(Self.names.count >= 8)
        var uuids = Set<String>()
        for name in Self.names {
            guard let bytes = try? Fixtures.readFile(Self.directory + "/" + name + ".values") else { continue }
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
                uuids.insert(String(line.prefix(4)))
            }
        }
        for c in ["2A35", "2A36", "2A1C", "2A1E", "2A5E", "2A5F", "2A9D", "2A9C", "2A18", "2A34", "2AA7", "2A52", "2A2B",
                  "2A08", "2A19", "2A37"] {
            #expect(uuids.contains(c), "no fixture for \(c)")
        }
    }

    @Test(arguments: names)
    func replaysToItsExpectedLines(_ name: String) throws {
        let values = try Fixtures.readFile(Self.directory + "/" + name + ".values")
        let expectedText = try Fixtures.readFile(Self.directory + "/" + name + ".expected.jsonl")
        var actual: [JSONValue] = []
        _ = GATTBatch.run(String(decoding: values, as: UTF8.self), characteristic: nil) { actual.append($0) }
        let expected = try String(decoding: expectedText, as: UTF8.self).split(separator: "\n").map { try JSONValue.parse(String($0)) }
        #expect(actual.count == expected.count, "\(name): \(actual.count) lines, expected \(expected.count)")
        for (i, (a, e)) in zip(actual, expected).enumerated() {
            #expect(Self.matches(a, e), "\(name) line \(i + 1): got \(a.serialized), expected \(e.serialized)")
        }
    }

    static func matches(_ actual: JSONValue, _ expected: JSONValue) -> Bool {
        guard case .object(let members) = expected else { return actual == expected }
        for (key, value) in members {
            guard let a = actual[key] else { return false }
            if key == "details" {
                guard matches(a, value) else { return false }
            } else if a != value {
                return false
            }
        }
        return true
    }
}
