import Testing
import Glibc
import BluetoothLink
import VigilTestKit

/// Advertising Data parsing (Core v5.3 Vol 3 Part C §11, CSS Part A §1) on published
/// advertisement bytes, and the HCI LE Advertising Report event (Vol 4 Part E §7.7.65.2).
@Suite("LE advertising data")
struct AdvertisingDataTests {
    @Test("Apple iBeacon example (AirLocate UUID): flags and manufacturer data 0x004C")
    func iBeacon() throws {
        // From Apple's "Getting Started with iBeacon" layout and the AirLocate sample UUID.
        let bytes = parseHex("02 01 06 1A FF 4C 00 02 15 E2 C5 6D B5 DF FB 48 D2 B0 60 D0 F5 A7 10 96 E0 00 00 00 00 C5")!
        let ad = try AdvertisingData.parse(bytes)
        #expect(ad.flags == 0x06)
        #expect(ad.manufacturerData.count == 1)
        #expect(ad.manufacturerData[0].companyID == 0x004C)
        #expect(ad.manufacturerData[0].data.prefix(2) == [0x02, 0x15])
        #expect(ad.manufacturerData[0].data.count == 23)
        #expect(ad.localName == nil && ad.serviceUUIDs.isEmpty)
    }

    @Test("Eddystone-URL example: 16-bit service list and service data 0xFEAA")
    func eddystone() throws {
        // An Eddystone-URL frame for "https://www.google.com", laid out per the Eddystone-URL spec
        // (frame type 0x10, TX power 0, scheme 0x01 "https://www.", ".com" = 0x07).
        let bytes = parseHex("02 01 06 03 03 AA FE 0D 16 AA FE 10 00 01 67 6F 6F 67 6C 65 07")!
        let ad = try AdvertisingData.parse(bytes)
        #expect(ad.serviceUUIDs == [BluetoothUUID(0xFEAA)])
        #expect(!ad.serviceUUIDsIncomplete)
        #expect(ad.serviceData == [.init(uuid: BluetoothUUID(0xFEAA), data: parseHex("10 00 01 67 6F 6F 67 6C 65 07")!)])
        #expect(ad.advertises(BluetoothUUID(0xFEAA)))
    }

    @Test("A heart-rate strap: complete name, Heart Rate service, appearance, TX power")
    func heartRateStrap() throws {
        // Flags; 16-bit UUIDs 0x180D, 0x180F; complete name "Polar H10 1A2B3C4D"; appearance 0x0341
        // (heart rate belt); TX power 0 dBm.
        let bytes = parseHex("02 01 06 05 03 0D 18 0F 18 13 09 50 6F 6C 61 72 20 48 31 30 20 31 41 32 42 33 43 34 44 03 19 41 03 02 0A 00")!
        let ad = try AdvertisingData.parse(bytes)
        #expect(ad.localName == "Polar H10 1A2B3C4D" && ad.localNameIsComplete)
        #expect(ad.serviceUUIDs == [BluetoothUUID(0x180D), BluetoothUUID(0x180F)])
        #expect(ad.appearance == 0x0341)
        #expect(ad.txPowerLevel == 0)
    }

    @Test("128-bit service UUID list, shortened name, zero-length padding")
    func wideAndPadding() throws {
        // Nordic UART Service 6E400001-B5A3-F393-E0A9-E50E24DCCA9E, shortened name "A&D", then padding.
        let bytes = parseHex("11 07 9E CA DC 24 0E E5 A9 E0 93 F3 A3 B5 01 00 40 6E 04 08 41 26 44 00 00 00")!
        let ad = try AdvertisingData.parse(bytes)
        #expect(ad.serviceUUIDs == [BluetoothUUID(parsing: "6e400001-b5a3-f393-e0a9-e50e24dcca9e")!])
        #expect(ad.localName == "A&D" && !ad.localNameIsComplete)
    }

    @Test("Malformed AD structures give typed errors")
    func malformed() {
        let cases: [(String, AdvertisingDataError.Code)] = [
            ("05 09 41 42", .truncated),               // length past the end
            ("04 03 0D 18 0F", .badLength),            // 3 bytes of 16-bit UUIDs
            ("01 01", .badLength),                     // empty flags
            ("03 09 C3 28", .invalidField),            // not UTF-8
            ("02 FF 4C", .badLength),                  // manufacturer data without company id
            ("02 16 AA", .badLength),                  // service data shorter than its UUID
            ("03 0A 00 00", .badLength),               // 2-byte TX power
        ]
        for (hex, code) in cases {
            do {
                _ = try AdvertisingData.parse(parseHex(hex)!)
                Issue.record("\(hex) parsed")
            } catch {
                #expect(error.code == code, "\(hex)")
            }
        }
    }

    @Test("Random advertising data never traps")
    func fuzz() {
        var rng = SplitMix64(state: 31)
        for _ in 0..<20_000 {
            let bytes = (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = try? AdvertisingData.parse(bytes)
            _ = try? AdvertisingReport.parseHCIEvent([0x04, 0x3E, UInt8(truncatingIfNeeded: bytes.count + 1), 0x02] + bytes)
        }
    }

    @Test("HCI LE Advertising Report event: address, address type, RSSI, data")
    func hciReport() throws {
        let data = parseHex("02 01 06 03 03 10 18")!   // Blood Pressure service
        var event: [UInt8] = [0x04, 0x3E, 0, 0x02, 0x01, 0x00, 0x01, 0x66, 0x55, 0x44, 0x33, 0x22, 0xC1, UInt8(data.count)]
        event += data
        event.append(0xC4)   // −60 dBm
        event[2] = UInt8(event.count - 3)
        let reports = try AdvertisingReport.parseHCIEvent(event)
        #expect(reports.count == 1)
        #expect(reports[0].address == "C1:22:33:44:55:66")
        #expect(reports[0].addressType == .random)
        #expect(reports[0].rssi == -60)
        #expect(try reports[0].data.get().advertises(BluetoothUUID(0x1810)))
        // Other events are not advertising reports.
        #expect(try AdvertisingReport.parseHCIEvent([0x04, 0x0E, 0x04, 0x01, 0x0C, 0x20, 0x00]).isEmpty)
        var cut = event
        cut.removeLast(2)
        cut[2] = UInt8(cut.count - 3)
        #expect(throws: AdvertisingDataError.self) { try AdvertisingReport.parseHCIEvent(cut) }
    }
}

/// This kernel has no Bluetooth: the real transports fail with a typed `.unavailable`.
@Suite("Bluetooth unavailable on this kernel")
struct BluetoothUnavailableTests {
    /// Whether this kernel can open an AF_BLUETOOTH socket (it cannot on CI and development
    /// machines; on a real gateway these tests do not apply).
    static var kernelHasBluetooth: Bool {
        let fd = socket(AF_BLUETOOTH, 5 /* SOCK_SEQPACKET */, 0 /* BTPROTO_L2CAP */)
        if fd >= 0 { close(fd); return true }
        return errno != EAFNOSUPPORT
    }

    @Test("L2CAP bearer reports unavailable with EAFNOSUPPORT", .enabled(if: !kernelHasBluetooth))
    func l2capUnavailable() async {
        let error = await #expect(throws: BluetoothError.self) {
            _ = try await L2CAPBearer.connect(address: "00:1B:DC:0F:2A:11", addressType: .public, security: .medium)
        }
        #expect(error?.code == .unavailable)
        #expect(error?.errno == EAFNOSUPPORT)
        #expect(error?.operation == "socket")
        #expect(error?.reason.contains("Address family not supported") == true)
        #expect(throws: BluetoothError.self) { try L2CAPBearer.checkAvailable() }
    }

    @Test("LE scan reports unavailable", .enabled(if: !kernelHasBluetooth))
    func scanUnavailable() async {
        let error = await #expect(throws: BluetoothError.self) { _ = try await LEScanner.start() }
        #expect(error?.code == .unavailable)
    }

    @Test("A malformed address is refused before any socket is opened")
    func badAddress() async {
        let error = await #expect(throws: BluetoothError.self) {
            _ = try await L2CAPBearer.connect(address: "not-an-address", addressType: .random)
        }
        #expect(error?.code == .invalidUse)
    }
}
