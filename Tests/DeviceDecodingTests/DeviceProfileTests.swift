import DeviceDecoding
import DeviceProfiles
import StrictYAML
import Testing
import VigilTestKit
import VitalSigns

@Suite struct DeviceProfileTests {
    static var profilePaths: [String] {
        Fixtures.list(Fixtures.repositoryRoot + "/devices").filter { $0.hasSuffix(".yaml") }
            .map { $0.hasPrefix("/") ? $0 : Fixtures.repositoryRoot + "/devices/" + $0 }
    }

    @Test func everyShippedProfileValidatesAndNamesACompiledDecoder() throws {
        #expect(!Self.profilePaths.isEmpty)
        for path in Self.profilePaths {
            let profile = try YAMLDecoder().decode(DeviceProfile.self, from: Fixtures.readFile(path), fileName: path)
            #expect(path.hasSuffix("/" + profile.id + ".yaml"), "the file is named for the profile id")
            #expect(makeDecoder(named: profile.decoder) != nil, "\(path): decoder \(profile.decoder) is built in")
            #expect(!profile.fixtures.isEmpty, "\(path): every profile has firmware fixtures")
            for fixture in profile.fixtures {
                #expect(Fixtures.fileExists(Fixtures.fixturesDirectory + "/" + fixture), "\(path): fixture \(fixture) exists")
            }
        }
    }

    @Test func rad8ProfileReadsAsWritten() throws {
        let path = Fixtures.repositoryRoot + "/devices/masimo-rad8.yaml"
        let p = try YAMLDecoder().decode(DeviceProfile.self, from: Fixtures.readFile(path), fileName: path)
        #expect(p.transport == .serial)
        #expect(p.serial?.baud == 9600 && p.serial?.dataBits == 8 && p.serial?.parity == DeviceProfile.SerialParameters.Parity.none)
        #expect(p.vitals == [.spo2, .pulseRate, .perfusionIndex])
        #expect(p.isPlausible(97, for: .spo2) && !p.isPlausible(101, for: .spo2) && !p.isPlausible(.nan, for: .spo2))
        #expect(p.match?.usb?.first?.vendor == "0403")
    }

    @Test(arguments: [
        ("id: x\nname: y\ntransport: serial\ndecoder: masimo-ascii1\nvitals: [spo2]\n", "", "a serial profile needs serial settings"),
        ("id: x\nname: y\ntransport: serial\nserial: {baud: 9601}\ndecoder: d\nvitals: [spo2]\n", "serial.baud", "unsupported baud rate"),
        ("id: x\nname: y\ntransport: serial\nserial: {baud: 9600}\ndecoder: d\nvitals: [spo3]\n", "vitals", "unknown vital"),
        ("id: x\nname: y\ntransport: serial\nserial: {baud: 9600}\ndecoder: d\nvitals: [spo2]\nranges: {spo2: [100, 0]}\n", "ranges", "low ≤ high"),
        ("id: x\nname: y\ntransport: usb\ndecoder: d\nvitals: [spo2]\n", "transport", ""),
        ("id: x\nname: y\ntransport: serial\nserial: {baud: 9600}\ndecoder: d\nvitals: [spo2]\nmatch: {usb: [{vendor: 403, product: \"6001\"}]}\n", "match.usb[0].vendor", ""),
    ])
    func aBadProfileIsRefusedNamingTheField(text: String, field: String, message: String) {
        do {
            _ = try YAMLDecoder().decode(DeviceProfile.self, from: text, fileName: "bad.yaml")
            Issue.record("accepted an invalid profile")
        } catch {
            #expect(error.path == field, "\(error)")
            #expect(error.description.hasPrefix("bad.yaml:"), "\(error)")
            #expect(message.isEmpty || error.message.contains(message), "\(error)")
        }
    }
}
