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
            if profile.transport == .ble {
                #expect(profile.decoder == BLEParameters.decoderName && profile.ble != nil, "\(path): a BLE profile uses the GATT decoder")
            } else {
                #expect(makeDecoder(named: profile.decoder) != nil, "\(path): decoder \(profile.decoder) is built in")
                #expect(!profile.fixtures.isEmpty, "\(path): every serial profile has firmware fixtures")
            }
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

    // MARK: BLE profiles

    static let minimalBLE = """
        id: x
        name: y
        transport: ble
        decoder: gatt
        vitals: [systolic_bp]
        ble:
          services: ["1810"]
          subscribe:
            - {characteristic: "2A35", mode: indicate}

        """

    @Test func everyStandardProfileAndNamedModelIsShipped() throws {
        let ids = Set(Self.profilePaths.map { String($0.split(separator: "/").last ?? "").replacing(".yaml", with: "") })
        for id in ["ble-heart-rate", "ble-blood-pressure", "ble-thermometer", "ble-pulse-oximeter", "ble-weight-scale",
                   "ble-glucose-meter", "ble-cgm", "and-ua-651ble", "omron-hem-7150t", "nonin-3230", "and-uc-352ble",
                   "contour-next-one"] {
            #expect(ids.contains(id), "devices/\(id).yaml is shipped")
        }
    }

    @Test func ua651ProfileReadsAsWritten() throws {
        let path = Fixtures.repositoryRoot + "/devices/and-ua-651ble.yaml"
        let p = try YAMLDecoder().decode(DeviceProfile.self, from: Fixtures.readFile(path), fileName: path)
        let ble = try #require(p.ble)
        #expect(p.transport == .ble && p.serial == nil && p.decoder == "gatt")
        #expect(ble.services == ["1810"])
        #expect(ble.subscribe == [BLEParameters.Subscription(characteristic: .bloodPressureMeasurement, mode: .indicate)])
        #expect(ble.read == [.batteryLevel])
        #expect(ble.bonding == .required && ble.addressType == .public && !ble.racp && ble.currentTime == .write)
        #expect(ble.clock.zone == .local && ble.clock.hasClock && !ble.clock.correct && ble.clock.maxOffsetSeconds == 120)
        #expect(ble.has(.timeWriteBeforeData) && ble.has(.disconnectsAfterTransfer) && !ble.has(.multiUser))
        #expect(p.match?.namePrefix == ["A&D_UA-651"])
    }

    @Test func bleDefaultsAreConservative() throws {
        let p = try YAMLDecoder().decode(DeviceProfile.self, from: Self.minimalBLE, fileName: "min.yaml")
        let ble = try #require(p.ble)
        #expect(ble.bonding == .none && ble.addressType == .public && !ble.racp && ble.currentTime == .none)
        #expect(ble.clock == BLEParameters.Clock() && ble.quirks.isEmpty && ble.read.isEmpty)
        #expect(ble.subscribe.first?.optional == false)
    }

    @Test(arguments: [
        ("id: x\nname: y\ntransport: ble\ndecoder: gatt\nvitals: [spo2]\n", "", "a ble profile needs a ble section"),
        (Self.minimalBLE.replacing("decoder: gatt", with: "decoder: masimo-ascii1"), "decoder", "uses decoder 'gatt'"),
        (Self.minimalBLE + "serial: {baud: 9600}\n", "serial", "cannot have serial settings"),
        (Self.minimalBLE.replacing("\"2A35\", mode: indicate", with: "\"2A35\", mode: push"), "ble.subscribe[0].mode", ""),
        (Self.minimalBLE.replacing("\"2A35\"", with: "\"BP\""), "ble.subscribe[0].characteristic", "16-bit characteristic UUID"),
        (Self.minimalBLE.replacing("[\"1810\"]", with: "[\"18100\"]"), "ble.services", "service UUID"),
        (Self.minimalBLE.replacing("[\"1810\"]", with: "[]"), "ble.services", "at least one"),
        (Self.minimalBLE + "  bonding: maybe\n", "ble.bonding", ""),
        (Self.minimalBLE + "  address_type: static\n", "ble.address_type", ""),
        (Self.minimalBLE + "  current_time: set\n", "ble.current_time", ""),
        (Self.minimalBLE + "  racp: true\n", "ble.racp", "2A52"),
        (Self.minimalBLE + "  quirks: [flaky]\n", "ble.quirks[0]", ""),
        (Self.minimalBLE + "  clock: {max_offset_seconds: 0}\n", "ble.clock.max_offset_seconds", "between"),
        (Self.minimalBLE + "  clock: {zone: mars}\n", "ble.clock.zone", ""),
        (Self.minimalBLE + "  clock: {has_clock: false}\n  current_time: write\n", "ble.current_time", "has_clock"),
        (Self.minimalBLE + "  bondng: required\n", "ble", "bondng"),
        (Self.minimalBLE.replacing("transport: ble", with: "transport: serial") + "serial: {baud: 9600}\n", "ble", "serial profile cannot have a ble section"),
    ])
    func aBadBLEProfileIsRefusedNamingTheField(text: String, field: String, message: String) {
        do {
            _ = try YAMLDecoder().decode(DeviceProfile.self, from: text, fileName: "bad.yaml")
            Issue.record("accepted an invalid profile")
        } catch {
            #expect(error.path == field || (field == "ble" && error.path.hasPrefix("ble")), "\(error)")
            #expect(message.isEmpty || error.description.contains(message), "\(error)")
        }
    }

    static let scale = """
        id: shop-scale
        name: A scale that prints WT,<kg>,kg lines
        transport: serial
        serial: {baud: 9600}
        match:
          usb: [{vendor: "10c4", product: "ea60"}]
        decoder: line
        vitals: [body_weight]
        line:
          separator: ","
          require: '^WT'
          fields: [{vital: body_weight, index: 1, unit: kg}]

        """

    @Test func aLineProtocolProfileDecodesItsLinesAndNamesItsAdapter() throws {
        let profile = try YAMLDecoder().decode(DeviceProfile.self, from: Self.scale, fileName: "scale.yaml")
        var decoder = try #require(profile.makeStreamDecoder())
        let results = decoder.decode(Array("WT, 81.25,kg\r\n".utf8))
        #expect(results == [.samples([VitalSample(vital: .bodyWeight, quantity: Quantity(81.25, "kg"), deviceTime: nil)])])
        #expect(profile.usbAddress == "usb:10c4:ea60")
    }

    @Test(arguments: [
        (Self.scale.replacing("decoder: line", with: "decoder: masimo-ascii1"), "line", "needs decoder: line"),
        (Self.scale.split(separator: "\n").prefix(9).joined(separator: "\n") + "\n", "line", "needs a line section"),
        (Self.scale.replacing("vitals: [body_weight]", with: "vitals: [spo2]"), "line", "not in vitals"),
        (Self.scale.replacing("unit: kg", with: "unit: stone"), "line.fields[0].unit", "not a UCUM unit"),
    ])
    func aBadLineProfileIsRefusedNamingTheField(text: String, field: String, message: String) {
        do {
            _ = try YAMLDecoder().decode(DeviceProfile.self, from: text, fileName: "bad.yaml")
            Issue.record("accepted an invalid profile")
        } catch {
            #expect(error.path == field, "\(error)")
            #expect(error.description.contains(message), "\(error)")
        }
    }
}
