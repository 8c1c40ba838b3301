import Testing
import Glibc
import BluetoothLink
import DeviceDecoding
import VigilTestKit

/// What the client does with errors that are not protocol violations: ATT Error Responses,
/// local misuse, an orderly close, values from handles it never discovered.
@Suite("GATT client edges")
struct GATTClientEdgeTests {
    /// Handles: 1 service, 2/3/4 Heart Rate Measurement (declaration, value, CCCD),
    /// 5/6 Body Sensor Location, 7/8 a writable characteristic.
    static func connect(_ script: String = "") throws -> (GATTClient, SimulatedPeripheral) {
        let capture = try ATTCapture.parse("""
            service 180D
            char 2A37 notify
            char 2A38 read = 01
            char 2A39 write
            script:
            \(script)
            """)
        let (bearer, peripheral) = try ScriptedPeripheral.pair(capture: capture)
        return (GATTClient.connect(bearer: bearer), peripheral)
    }

    @Test("An Error Response is a typed ATT error and the link stays up")
    func errorResponse() async throws {
        let (client, _) = try Self.connect()
        defer { client.close() }
        let invalid = await #expect(throws: BluetoothError.self) { _ = try await client.read(handle: 0x0099) }
        #expect(invalid?.code == .attError)
        #expect(invalid?.attErrorCode == ATTPDU.ErrorCode.invalidHandle)
        #expect(invalid?.reason.contains("Invalid Handle") == true)
        let notPermitted = await #expect(throws: BluetoothError.self) { try await client.write(handle: 6, value: [0x01]) }
        #expect(notPermitted?.attErrorCode == ATTPDU.ErrorCode.writeNotPermitted)
        #expect(client.failure == nil)
        #expect(try await client.read(handle: 6) == [0x01])
    }

    @Test("Writes longer than ATT_MTU − 3 are refused before sending")
    func writeTooLong() async throws {
        let (client, peripheral) = try Self.connect()
        defer { client.close() }
        let error = await #expect(throws: BluetoothError.self) { try await client.write(handle: 8, value: Array(repeating: 0, count: 21)) }
        #expect(error?.code == .invalidUse)
        try await client.write(handle: 8, value: Array(repeating: 0, count: 20))
        #expect(await peripheral.writes.map(\.value.count) == [20])
    }

    @Test("Subscribing needs a CCCD and the matching property")
    func subscribeChecks() async throws {
        let (client, _) = try Self.connect()
        defer { client.close() }
        let chars = try await client.discover().flatMap(\.characteristics)
        let location = try #require(chars.first { $0.uuid == BluetoothUUID(0x2A38) })
        let noCCCD = await #expect(throws: BluetoothError.self) { try await client.subscribe(location, .notifications) }
        #expect(noCCCD?.code == .notFound)
        let hrm = try #require(chars.first { $0.characteristic == .heartRateMeasurement })
        let noIndicate = await #expect(throws: BluetoothError.self) { try await client.subscribe(hrm, .indications) }
        #expect(noIndicate?.code == .invalidUse)
    }

    @Test("close() ends values normally and fails later calls")
    func orderlyClose() async throws {
        let (client, _) = try Self.connect()
        _ = try await client.discoverPrimaryServices()
        client.close()
        var count = 0
        for try await _ in client.values { count += 1 }
        #expect(count == 0)
        let after = await #expect(throws: BluetoothError.self) { _ = try await client.read(handle: 3) }
        #expect(after?.code == .disconnected)
    }

    @Test("A notification from an undiscovered handle is delivered without a UUID")
    func undiscoveredHandle() async throws {
        let (client, _) = try Self.connect("raw 1B 63 00 01 02")
        defer { client.close() }
        var it = client.values.makeAsyncIterator()
        let v = try #require(try await it.next())
        #expect(v.handle == 0x0063 && v.uuid == nil && v.bytes == [0x01, 0x02])
    }
}

@Suite("SOCK_SEQPACKET bearer")
struct SeqPacketBearerTests {
    @Test("Connecting to a path nobody listens on is a typed connect failure")
    func nobodyListening() {
        let error = #expect(throws: BluetoothError.self) {
            _ = try SeqPacketBearer.connect(path: "/tmp/vigil-ble-nobody-\(UInt32.random(in: 0...UInt32.max)).sock")
        }
        #expect(error?.code == .connectFailed)
        #expect(error?.errno == ENOENT)
        #expect(error?.link.hasPrefix("seqpacket:/tmp/") == true)
    }

    @Test("A socket path longer than sun_path is refused, not truncated")
    func pathTooLong() {
        let error = #expect(throws: BluetoothError.self) {
            _ = try SeqPacketBearer.connect(path: "/tmp/" + String(repeating: "x", count: 200))
        }
        #expect(error?.code == .invalidUse)
    }

    @Test("One PDU per datagram, both ways; the peer closing ends incoming with .disconnected")
    func datagrams() async throws {
        let (a, b) = try SeqPacketBearer.pair()
        try a.send([0x1B, 0x03, 0x00, 0x48])
        try a.send([0x1E])
        var it = b.incoming.makeAsyncIterator()
        #expect(try await it.next() == [0x1B, 0x03, 0x00, 0x48])
        #expect(try await it.next() == [0x1E])
        a.close()
        let error = await #expect(throws: BluetoothError.self) { _ = try await it.next() }
        #expect(error?.code == .disconnected)
        let sendError = #expect(throws: BluetoothError.self) { try a.send([0x1E]) }
        #expect(sendError?.code == .disconnected)
        b.close()
    }
}
