import Testing
import BluetoothLink
import VigilTestKit

/// The ATT PDU codec (Core v5.3 Vol 3 Part F §3.4): every opcode Vigil uses, byte for byte,
/// and typed errors for anything else.
@Suite("ATT PDU codec")
struct ATTPDUTests {
    static let examples: [(ATTPDU, [UInt8])] = [
        (.errorResponse(requestOpcode: 0x10, handle: 0x0001, error: 0x0A), [0x01, 0x10, 0x01, 0x00, 0x0A]),
        (.exchangeMTURequest(clientRxMTU: 517), [0x02, 0x05, 0x02]),
        (.exchangeMTUResponse(serverRxMTU: 23), [0x03, 0x17, 0x00]),
        (.findInformationRequest(start: 0x0008, end: 0xFFFF), [0x04, 0x08, 0x00, 0xFF, 0xFF]),
        (.findInformationResponse([.init(handle: 0x0009, uuid: .clientCharacteristicConfiguration)]), [0x05, 0x01, 0x09, 0x00, 0x02, 0x29]),
        (.readByTypeRequest(start: 0x0001, end: 0xFFFF, type: .characteristicDeclaration), [0x08, 0x01, 0x00, 0xFF, 0xFF, 0x03, 0x28]),
        (.readByTypeResponse([.init(handle: 0x0002, value: [0x10, 0x03, 0x00, 0x37, 0x2A]),
                              .init(handle: 0x0005, value: [0x02, 0x06, 0x00, 0x38, 0x2A])]),
         [0x09, 0x07, 0x02, 0x00, 0x10, 0x03, 0x00, 0x37, 0x2A, 0x05, 0x00, 0x02, 0x06, 0x00, 0x38, 0x2A]),
        (.readRequest(handle: 0x0003), [0x0A, 0x03, 0x00]),
        (.readResponse(value: [0x5A]), [0x0B, 0x5A]),
        (.readByGroupTypeRequest(start: 0x0001, end: 0xFFFF, type: .primaryService), [0x10, 0x01, 0x00, 0xFF, 0xFF, 0x00, 0x28]),
        (.readByGroupTypeResponse([.init(handle: 0x0001, endGroupHandle: 0x0005, value: [0x0D, 0x18])]),
         [0x11, 0x06, 0x01, 0x00, 0x05, 0x00, 0x0D, 0x18]),
        (.writeRequest(handle: 0x0004, value: [0x02, 0x00]), [0x12, 0x04, 0x00, 0x02, 0x00]),
        (.writeResponse, [0x13]),
        (.writeCommand(handle: 0x0004, value: [0x01]), [0x52, 0x04, 0x00, 0x01]),
        (.notification(handle: 0x0003, value: [0x00, 0x48]), [0x1B, 0x03, 0x00, 0x00, 0x48]),
        (.indication(handle: 0x0003, value: [0x06, 0x78, 0x00]), [0x1D, 0x03, 0x00, 0x06, 0x78, 0x00]),
        (.confirmation, [0x1E]),
    ]

    @Test("Every opcode Vigil uses serializes to the specification's bytes and parses back")
    func roundTrip() throws {
        for (pdu, bytes) in Self.examples {
            #expect(pdu.serialize() == bytes, "\(ATTPDU.name(ofOpcode: pdu.opcode))")
            #expect(try ATTPDU.parse(bytes) == pdu, "\(ATTPDU.name(ofOpcode: pdu.opcode))")
        }
    }

    @Test("128-bit UUIDs in Find Information and Read By Type")
    func wideUUIDs() throws {
        let nus = try #require(BluetoothUUID(parsing: "6e400001-b5a3-f393-e0a9-e50e24dcca9e"))
        #expect(nus.shortValue == nil)
        #expect(nus.description == "6e400001-b5a3-f393-e0a9-e50e24dcca9e")
        let rsp = ATTPDU.findInformationResponse([.init(handle: 0x0010, uuid: nus)])
        #expect(rsp.serialize().count == 2 + 2 + 16)
        #expect(try ATTPDU.parse(rsp.serialize()) == rsp)
        let req = ATTPDU.readByTypeRequest(start: 1, end: 0xFFFF, type: nus)
        #expect(try ATTPDU.parse(req.serialize()) == req)
        #expect(BluetoothUUID(parsing: "00002a37-0000-1000-8000-00805f9b34fb") == BluetoothUUID(0x2A37))
    }

    @Test("Malformed and unknown PDUs give typed errors naming the opcode")
    func malformed() {
        let cases: [([UInt8], ATTPDUError.Code)] = [
            ([], .empty),
            ([0x01, 0x10, 0x01], .truncated),                 // Error Response cut short
            ([0x02, 0x17], .truncated),                       // MTU request, 1 byte of 2
            ([0x03, 0x17, 0x00, 0x00], .badLength),           // trailing byte
            ([0x05, 0x03, 0x01, 0x00, 0x02, 0x29], .invalidField), // Find Information format 3
            ([0x05, 0x01, 0x01, 0x00, 0x02], .badLength),     // half an entry
            ([0x08, 0x01, 0x00, 0xFF, 0xFF, 0x03], .badLength), // 1-byte type
            ([0x09, 0x01, 0x02, 0x00], .badLength),           // length 1 < handle
            ([0x09, 0x07, 0x02, 0x00, 0x10], .badLength),     // not a whole entry
            ([0x11, 0x03, 0x01, 0x00, 0x05], .badLength),     // group length 3 < 4
            ([0x1B, 0x03], .truncated),                       // notification without a handle
            ([0x1E, 0x00], .badLength),                       // confirmation with a body
            ([0x0C, 0x01, 0x00, 0x00, 0x00], .unknownOpcode), // Read Blob Request: not used by Vigil
            ([0xFF], .unknownOpcode),
        ]
        for (bytes, code) in cases {
            #expect(throws: ATTPDUError.self, "\(bytes)") { try ATTPDU.parse(bytes) }
            do {
                _ = try ATTPDU.parse(bytes)
            } catch {
                #expect(error.code == code, "\(bytes)")
                if let op = bytes.first { #expect(error.opcode == op) }
            }
        }
    }

    @Test("Random bytes never trap; whatever parses serializes to a PDU that parses the same")
    func randomBytes() {
        var rng = SplitMix64(state: 0xA77_2026)
        var parsed = 0
        for _ in 0..<50_000 {
            let n = Int.random(in: 0...24, using: &rng)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Bias the first byte towards opcodes Vigil knows, so the parsers get exercised.
            if n > 0, Bool.random(using: &rng) {
                bytes[0] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x08, 0x09, 0x0A, 0x0B, 0x10, 0x11, 0x12, 0x13, 0x1B, 0x1D, 0x1E, 0x52].randomElement(using: &rng)!
            }
            guard let pdu = try? ATTPDU.parse(bytes) else { continue }
            parsed += 1
            #expect((try? ATTPDU.parse(pdu.serialize())) == pdu)
        }
        #expect(parsed > 2_500)
    }

    @Test("Current Time value: date, ISO day of week, fractions256 and adjust reason (CTS §3.1)")
    func currentTimeBytes() {
        // Wednesday 25 November 2026, 14:05:30.500.
        let t = CivilDateTimeFixture.make(2026, 11, 25, 14, 5, 30, 500)
        #expect(GATTClient.currentTimeBytes(t) == [0xEA, 0x07, 11, 25, 14, 5, 30, 3, 128, 0x01])
        // 29 February 2024 was a Thursday; 1 January 2023 a Sunday.
        #expect(GATTClient.currentTimeBytes(CivilDateTimeFixture.make(2024, 2, 29, 0, 0, 0, 0))[7] == 4)
        #expect(GATTClient.currentTimeBytes(CivilDateTimeFixture.make(2023, 1, 1, 0, 0, 0, 0))[7] == 7)
    }
}
