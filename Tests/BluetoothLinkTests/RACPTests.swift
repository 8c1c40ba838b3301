import Testing
import BluetoothLink
import DeviceDecoding
import VigilTestKit

/// Record Access Control Point back-fill (GLS v1.0 §3.2.2 / PLXS v1.0 §3.3): "report stored
/// records" with the all and greater-or-equal-sequence operators.
@Suite("RACP back-fill")
struct RACPTests {
    /// A glucose meter holding five stored records, numbered 1…5 (values are just markers).
    static func glucoseMeter() throws -> ATTCapture {
        var text = """
            service 1808
            char 2A18 notify
            char 2A52 write indicate

            """
        for n in 1...5 { text += "record 2A18 seq \(n) = 0\(n) AA\n" }
        return try ATTCapture.parse(text)
    }

    static func setUp(_ capture: ATTCapture) async throws -> (GATTClient, SimulatedPeripheral, GATTCharacteristicInfo, GATTCharacteristicInfo) {
        let (bearer, peripheral) = try ScriptedPeripheral.pair(capture: capture)
        let client = GATTClient.connect(bearer: bearer)
        let chars = try await client.discover().flatMap(\.characteristics)
        let racp = try #require(chars.first { $0.characteristic == .recordAccessControlPoint })
        let measurement = try #require(chars.first { $0.characteristic != .recordAccessControlPoint })
        return (client, peripheral, racp, measurement)
    }

    @Test("RACP report stored records from sequence N")
    func fromSequenceN() async throws {
        let (client, peripheral, racp, measurement) = try await Self.setUp(try Self.glucoseMeter())
        defer { client.close() }
        try await client.subscribe(measurement, .notifications)
        try await client.subscribe(racp, .indications)
        let outcome = try await client.reportStoredRecords(.fromSequenceNumber(3), racp: racp)
        #expect(outcome.succeeded)
        #expect(outcome.valuesReceived == 3)
        #expect(await peripheral.racpRequests == [[0x01, 0x03, 0x01, 0x03, 0x00]])
        var it = client.values.makeAsyncIterator()
        var got: [[UInt8]] = []
        for _ in 0..<3 { got.append(try #require(try await it.next()).bytes) }
        #expect(got == [[0x03, 0xAA], [0x04, 0xAA], [0x05, 0xAA]])
        // The RACP response itself was confirmed by the client, not handed out as a value.
        _ = try await client.read(handle: try #require(racp.cccdHandle))   // round trip: the peer has seen it
        #expect(await peripheral.confirmationsReceived == 1)
    }

    @Test("RACP report all stored records, then none left above the last sequence")
    func allThenNone() async throws {
        let (client, _, racp, measurement) = try await Self.setUp(try Self.glucoseMeter())
        defer { client.close() }
        try await client.subscribe(measurement, .notifications)
        try await client.subscribe(racp, .indications)
        let all = try await client.reportStoredRecords(.all, racp: racp)
        #expect(all.succeeded && all.valuesReceived == 5)
        let none = try await client.reportStoredRecords(.fromSequenceNumber(6), racp: racp)
        #expect(none.noRecordsFound && none.valuesReceived == 0)
    }

    @Test("RACP stored records as indications, each confirmed after its commit")
    func indicatedRecords() async throws {
        let capture = try ATTCapture.parse("""
            service 1822
            char 2A5E indicate
            char 2A52 write indicate
            record 2A5E seq 7 = 00 61 00 48 00
            record 2A5E seq 8 = 00 60 00 4A 00
            record 2A5E seq 9 = 00 62 00 47 00
            """)
        let (client, peripheral, racp, measurement) = try await Self.setUp(capture)
        defer { client.close() }
        try await client.subscribe(measurement, .indications)
        try await client.subscribe(racp, .indications)
        async let outcome = client.reportStoredRecords(.fromSequenceNumber(8), racp: racp)
        var committed: [[UInt8]] = []
        for try await value in client.values {
            committed.append(value.bytes)          // "commit"
            try value.indication?.confirm()        // then confirm
            if committed.count == 2 { break }
        }
        let result = try await outcome
        #expect(result.succeeded && result.valuesReceived == 2)
        #expect(committed == [[0x00, 0x60, 0x00, 0x4A, 0x00], [0x00, 0x62, 0x00, 0x47, 0x00]])
        _ = try await client.read(handle: try #require(racp.cccdHandle))   // round trip: the peer has seen it
        #expect(await peripheral.confirmationsReceived == 3)   // two records + the RACP response
    }

    @Test("RACP without indications enabled is refused by the device (CCCD improperly configured)")
    func racpWithoutCCCD() async throws {
        let (client, _, racp, _) = try await Self.setUp(try Self.glucoseMeter())
        defer { client.close() }
        let error = await #expect(throws: BluetoothError.self) { _ = try await client.reportStoredRecords(.all, racp: racp) }
        #expect(error?.code == .attError)
        #expect(error?.attErrorCode == 0xFD)
        // An ATT error response is not a violation: the link stays usable.
        #expect(client.failure == nil)
        try await client.subscribe(racp, .indications)
        #expect(try await client.reportStoredRecords(.all, racp: racp).valuesReceived == 5)
    }
}
