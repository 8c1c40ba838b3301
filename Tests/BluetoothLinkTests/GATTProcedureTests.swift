import Testing
import Glibc
import BluetoothLink
import DeviceDecoding
import VigilTestKit
import VitalSigns

/// Scripted-peer tests in the style of BlueZ unit/test-gatt.c, named after the GATT procedure
/// (Core v5.3 Vol 3 Part G §4) they check. Each runs the real GATTClient against a
/// SimulatedPeripheral over a SOCK_SEQPACKET socketpair or a listening path.
@Suite("GATT procedures over the SOCK_SEQPACKET seam")
struct GATTProcedureTests {
    static func heartRate() throws -> ATTCapture { try ScriptedPeripheral.loadCapture("heart-rate-strap") }

    static func client(_ capture: ATTCapture, timeout: Duration = .seconds(30)) throws -> (GATTClient, SimulatedPeripheral) {
        let (bearer, peripheral) = try ScriptedPeripheral.pair(capture: capture)
        let client = GATTClient.connect(bearer: bearer, configuration: .init(transactionTimeout: timeout))
        return (client, peripheral)
    }

    @Test("Exchange MTU")
    func exchangeMTU() async throws {
        let (client, peripheral) = try Self.client(try Self.heartRate())
        defer { client.close() }
        #expect(client.mtu == 23)
        let mtu = try await client.exchangeMTU()
        #expect(mtu == 185)   // min(client 247, server 185)
        #expect(client.mtu == 185)
        #expect(await peripheral.mtu == 185)
    }

    @Test("Discover All Primary Services")
    func discoverPrimaryServices() async throws {
        let (client, _) = try Self.client(try Self.heartRate())
        defer { client.close() }
        let services = try await client.discoverPrimaryServices()
        #expect(services.map(\.uuid) == [BluetoothUUID(0x1800), BluetoothUUID(0x180D), BluetoothUUID(0x180F)])
        #expect(services.map(\.startHandle) == [1, 4, 10])
        #expect(services.map(\.endHandle) == [3, 9, 13])
    }

    @Test("Discover All Characteristics of a Service")
    func discoverCharacteristics() async throws {
        let (client, _) = try Self.client(try Self.heartRate())
        defer { client.close() }
        let services = try await client.discoverPrimaryServices()
        let hr = try #require(services.first { $0.uuid == BluetoothUUID(0x180D) })
        let chars = try await client.discoverCharacteristics(of: hr)
        #expect(chars.map(\.uuid) == [BluetoothUUID(GATTCharacteristic.heartRateMeasurement), BluetoothUUID(0x2A38)])
        #expect(chars[0].properties == .notify)
        #expect(chars[0].declarationHandle == 5 && chars[0].valueHandle == 6 && chars[0].endHandle == 7)
        #expect(chars[1].properties == .read && chars[1].valueHandle == 9 && chars[1].endHandle == 9)
    }

    @Test("Discover All Characteristic Descriptors")
    func discoverDescriptors() async throws {
        let (client, _) = try Self.client(try Self.heartRate())
        defer { client.close() }
        let services = try await client.discover()
        let hrm = try #require(services.flatMap(\.characteristics).first { $0.characteristic == .heartRateMeasurement })
        #expect(hrm.descriptors == [GATTDescriptor(handle: 7, uuid: .clientCharacteristicConfiguration)])
        #expect(hrm.cccdHandle == 7)
        let location = try #require(services.flatMap(\.characteristics).first { $0.uuid == BluetoothUUID(0x2A38) })
        #expect(location.descriptors.isEmpty)
        #expect(try await client.read(handle: location.valueHandle) == [0x01])
    }

    @Test("Characteristic Value Notification")
    func notification() async throws {
        let (client, peripheral) = try Self.client(try Self.heartRate())
        defer { client.close() }
        try await client.exchangeMTU()
        let services = try await client.discover()
        let hrm = try #require(services.flatMap(\.characteristics).first { $0.characteristic == .heartRateMeasurement })
        try await client.subscribe(hrm, .notifications)
        #expect(await peripheral.subscription(of: hrm.uuid) == 1)
        var decoder = GATTDeviceDecoder()
        var rates: [Double] = []
        for try await value in client.values {
            #expect(value.handle == hrm.valueHandle)
            #expect(value.characteristic == .heartRateMeasurement)
            #expect(!value.isIndication)
            guard case .measurement(let samples) = try decoder.decode(.heartRateMeasurement, value.bytes) else { continue }
            rates += samples.filter { $0.vital == .heartRate }.map { $0.quantity.value }
            if rates.count == 4 { break }
        }
        #expect(rates == [72, 76, 78, 80])
    }
}
