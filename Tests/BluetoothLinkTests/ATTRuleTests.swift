import Testing
import Glibc
import BluetoothLink
import DeviceDecoding
import VigilTestKit
import VitalSigns

/// ATT rules (Core v5.3 Vol 3 Part F §3.3) and the indication/confirmation contract, checked
/// against a SimulatedPeripheral over a socketpair.
@Suite("ATT rules and indications")
struct ATTRuleTests {
    /// A blood pressure monitor: Blood Pressure service (0x1810) with Blood Pressure
    /// Measurement (0x2A35, indicate; handles 3 value / 4 CCCD) and Blood Pressure Feature
    /// (0x2A49, read; handle 6).
    static func bloodPressure(script: String) throws -> ATTCapture {
        try ATTCapture.parse("""
            service 1810
            char 2A35 indicate
            char 2A49 read = 00 00
            script:
            \(script)
            """)
    }

    static let reading1: [UInt8] = [0x06, 0x78, 0x00, 0x50, 0x00, 0x5D, 0x00, 0xEA, 0x07, 0x0B, 0x19, 0x08, 0x1E, 0x00, 0x48, 0x00]
    static let reading2: [UInt8] = [0x06, 0x7A, 0x00, 0x52, 0x00, 0x5F, 0x00, 0xEA, 0x07, 0x0B, 0x19, 0x08, 0x1F, 0x00, 0x46, 0x00]

    static func connect(_ capture: ATTCapture, timeout: Duration = .seconds(30)) throws -> (GATTClient, SimulatedPeripheral) {
        let (bearer, peripheral) = try ScriptedPeripheral.pair(capture: capture)
        return (GATTClient.connect(bearer: bearer, configuration: .init(transactionTimeout: timeout)), peripheral)
    }

    static func characteristic(_ client: GATTClient, _ uuid: UInt16) async throws -> GATTCharacteristicInfo {
        let all = try await client.discover().flatMap(\.characteristics)
        return try #require(all.first { $0.uuid == BluetoothUUID(uuid) })
    }

    /// Reads a value: on an ordered SOCK_SEQPACKET link, the response proves the peer has
    /// processed every PDU the client sent before the request.
    static func barrier(_ client: GATTClient) async throws {
        _ = try await client.read(handle: 6)
    }

    @Test("Characteristic Value Indication — confirmation held until committed")
    func indicationConfirmationHeld() async throws {
        let capture = try Self.bloodPressure(script: """
            wait-subscribed 2A35
            indicate 2A35 = \(hexString(Self.reading1))
            indicate 2A35 = \(hexString(Self.reading2))
            """)
        let (client, peripheral) = try Self.connect(capture)
        defer { client.close() }
        let bpm = try await Self.characteristic(client, 0x2A35)
        try await client.subscribe(bpm, .indications)
        #expect(await peripheral.subscription(of: bpm.uuid) == 2)

        var it = client.values.makeAsyncIterator()
        let first = try #require(try await it.next())
        #expect(first.bytes == Self.reading1)
        #expect(first.characteristic == .bloodPressureMeasurement)
        let token = try #require(first.indication)
        #expect(!token.isConfirmed)

        // Not committed yet: after a full round trip the peer has still seen no confirmation,
        // and (ATT allows one indication at a time) has sent nothing more.
        try await Self.barrier(client)
        try await Self.barrier(client)
        #expect(await peripheral.confirmationsReceived == 0)
        #expect(await !peripheral.receivedOpcodes.contains(ATTPDU.Opcode.confirmation))

        // "Committed": now confirm; the device sends its next measurement.
        try token.confirm()
        #expect(token.isConfirmed)
        let second = try #require(try await it.next())
        #expect(second.bytes == Self.reading2)
        #expect(await peripheral.confirmationsReceived == 1)

        // A second confirm() of the same token sends nothing.
        try token.confirm()
        try await Self.barrier(client)
        #expect(await peripheral.confirmationsReceived == 1)
        try #require(second.indication).confirm()
        try await Self.barrier(client)
        #expect(await peripheral.confirmationsReceived == 2)
    }

    @Test("Transaction timeout closes the bearer with a typed error")
    func transactionTimeout() async throws {
        let (client, _) = try Self.connect(try Self.bloodPressure(script: "stall"), timeout: .milliseconds(200))
        let error = await #expect(throws: BluetoothError.self) { try await client.exchangeMTU() }
        #expect(error?.code == .timeout)
        #expect(error?.operation == "Exchange MTU")
        #expect(client.failure?.code == .timeout)
        // The link is gone: later calls fail at once with the same error, values end with it.
        let again = await #expect(throws: BluetoothError.self) { _ = try await client.read(handle: 6) }
        #expect(again?.code == .timeout)
        let ended = await #expect(throws: BluetoothError.self) { for try await _ in client.values {} }
        #expect(ended?.code == .timeout)
    }

    @Test("One outstanding request: a second request waits for the first transaction")
    func oneOutstandingRequest() async throws {
        let (client, peripheral) = try Self.connect(try Self.bloodPressure(script: "stall"), timeout: .milliseconds(300))
        async let a: [UInt8] = client.read(handle: 6)
        async let b: [UInt8] = client.read(handle: 3)
        let ra = try? await a
        let rb = try? await b
        #expect(ra == nil && rb == nil)
        // Only one Read Request ever reached the stalled peer: the other was still queued
        // when the timeout closed the link.
        #expect(await peripheral.receivedOpcodes.filter { $0 == ATTPDU.Opcode.readRequest }.count == 1)
    }

    @Test("Protocol violation disconnects: unexpected response opcode")
    func unexpectedResponse() async throws {
        // An Exchange MTU Response nobody asked for.
        let (client, _) = try Self.connect(try Self.bloodPressure(script: "raw 03 17 00"))
        let error = await #expect(throws: BluetoothError.self) { for try await _ in client.values {} }
        #expect(error?.code == .protocolViolation)
        #expect(error?.reason.contains("unexpected Exchange MTU Response") == true)
        let later = await #expect(throws: BluetoothError.self) { _ = try await client.read(handle: 6) }
        #expect(later?.code == .protocolViolation)
    }

    @Test("Protocol violation disconnects: a second indication before the confirmation")
    func secondIndication() async throws {
        let (client, _) = try Self.connect(try Self.bloodPressure(script: """
            wait-subscribed 2A35
            raw 1D 03 00 06 78 00 50 00 5D 00
            raw 1D 03 00 06 7A 00 52 00 5F 00
            """))
        let bpm = try await Self.characteristic(client, 0x2A35)
        try await client.subscribe(bpm, .indications)
        var received = 0
        let error = await #expect(throws: BluetoothError.self) {
            for try await _ in client.values { received += 1 }
        }
        #expect(received == 1)
        #expect(error?.code == .protocolViolation)
        #expect(error?.reason.contains("second Handle Value Indication") == true)
        // The error names the rule, never the value.
        #expect(error?.description.contains("78") == false)
    }

    @Test("Protocol violation disconnects: a malformed PDU")
    func malformedPDU() async throws {
        // A notification too short to hold its handle.
        let (client, _) = try Self.connect(try Self.bloodPressure(script: "raw 1B 03"))
        let error = await #expect(throws: BluetoothError.self) { for try await _ in client.values {} }
        #expect(error?.code == .protocolViolation)
        #expect(error?.reason.contains("malformed Handle Value Notification") == true)
    }

    @Test("Disconnect mid-measurement: the unconfirmed indication is sent again after reconnecting")
    func disconnectMidMeasurement() async throws {
        let path = "/tmp/vigil-ble-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let capture = try Self.bloodPressure(script: """
            wait-subscribed 2A35
            raw 1D 03 00 06 78 00 50 00 5D 00
            disconnect
            """)
        let peer = try ScriptedPeripheral.listen(path: path, capture: capture)
        defer { peer.stop() }

        let client = GATTClient.connect(bearer: try SeqPacketBearer.connect(path: path))
        let bpm = try await Self.characteristic(client, 0x2A35)
        try await client.subscribe(bpm, .indications)
        var tokens: [IndicationConfirmation] = []
        let error = await #expect(throws: BluetoothError.self) {
            for try await v in client.values { if let t = v.indication { tokens.append(t) } }
        }
        #expect(error?.code == .disconnected)
        #expect(tokens.count == 1)
        // The commit could not finish before the link dropped: confirming now fails, so the
        // daemon knows the device still holds the measurement.
        let confirmError = #expect(throws: BluetoothError.self) { try tokens[0].confirm() }
        #expect(confirmError?.code == .disconnected)
        #expect(tokens[0].isConfirmed == false)

        // Reconnect: the device indicates the same measurement again.
        let again = GATTClient.connect(bearer: try SeqPacketBearer.connect(path: path))
        defer { again.close() }
        try await again.subscribe(try await Self.characteristic(again, 0x2A35), .indications)
        var it = again.values.makeAsyncIterator()
        let resent = try #require(try await it.next())
        #expect(resent.bytes == [0x06, 0x78, 0x00, 0x50, 0x00, 0x5D, 0x00])
    }
}

/// `06 78 00`: bytes as capture-file hex.
func hexString(_ bytes: [UInt8]) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
}
