// libFuzzer target: the ATT PDU parser (BluetoothLink `ATTPDU.parse`, Core Spec v5.3 Vol 3 Part F §3.4).
//
// Input: one PDU (one L2CAP datagram). Every PDU that parses must serialize to bytes that parse
// back to the same PDU.
import BluetoothLink

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzATT(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = FuzzInput(data, size).bytes
    guard let pdu = try? ATTPDU.parse(bytes) else { return 0 }
    _ = pdu.opcode
    _ = pdu.expectedResponseOpcode
    _ = ATTPDU.name(ofOpcode: pdu.opcode)
    let again: ATTPDU
    do { again = try ATTPDU.parse(pdu.serialize()) } catch { fuzzFail("serialized \(ATTPDU.name(ofOpcode: pdu.opcode)) does not parse: \(error)") }
    if again != pdu { fuzzFail("\(ATTPDU.name(ofOpcode: pdu.opcode)) does not round-trip") }
    return 0
}
