import DeviceDecoding
import DeviceProfiles
import StrictYAML
import Testing
import VigilTestKit
import VitalSigns

/// Every capture a device profile lists, replayed through the decoder that profile names,
/// byte by byte, in odd chunks, whole, and as recorded: the results must equal the
/// capture's expected output every time (the drip-feed check of swift-nio's
/// ByteToMessageDecoderVerifier). A new protocol needs no new replay test, only a profile
/// and its fixtures.
@Suite struct FixtureReplayTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var capture: String
        var decoder: String
        var testDescription: String { "\(capture) via \(decoder)" }
    }

    static var cases: [Case] {
        let dir = Fixtures.repositoryRoot + "/devices"
        return Fixtures.list(dir).filter { $0.hasSuffix(".yaml") }.flatMap { name -> [Case] in
            let path = dir + "/" + name
            guard let bytes = try? Fixtures.readFile(path),
                  let profile = try? YAMLDecoder().decode(DeviceProfile.self, from: bytes, fileName: path) else { return [] }
            // Byte-stream captures only: BLE profiles' ATT sessions and characteristic values
            // are replayed by BluetoothLinkTests and GATTFixtureTests.
            return profile.fixtures.filter { $0.hasSuffix(".capture") }.map { Case(capture: $0, decoder: profile.decoder) }
        }
    }

    @Test func everyCaptureBelongsToAProfile() {
        let listed = Set(Self.cases.map(\.capture))
        #expect(listed.count >= 15)
        for capture in Fixtures.allCaptures() {
            #expect(listed.contains(capture), "\(capture) is in firmware-fixtures/ but no device profile lists it")
        }
    }

    @Test(arguments: cases)
    func replaysToItsExpectedResultsAtEveryChunkSize(_ c: Case) throws {
        let capture = try Fixtures.capture(c.capture)
        let expected = try Fixtures.expected(forCapture: c.capture)
        #expect(!expected.isEmpty)
        for chunk in [1, 2, 3, 7, 64, nil] as [Int?] {
            assertMatches(replay(capture.allBytes, chunk: chunk, decoder: c.decoder), expected,
                          "\(c.capture) chunk \(chunk.map(String.init) ?? "whole")")
        }
        guard var decoder = makeDecoder(named: c.decoder) else {
            Issue.record("no decoder \(c.decoder)")
            return
        }
        var results: [DecodeResult] = []
        for record in capture.records { results += decoder.decode(record.bytes) }
        results += decoder.finish()
        assertMatches(results, expected, "\(c.capture) as recorded")
    }
}
