/// Record Access Control Point (0x2A52) requests Vigil writes: Glucose Service 1.0 §3.110
/// and the GATT Specification Supplement §3.188 (the same procedure serves GLS, CGMS, PLXS
/// and WSS/BCS user data). Value: Op Code (uint8), Operator (uint8), Operand.
///
/// Op codes: 1 Report Stored Records, 2 Delete Stored Records, 3 Abort Operation, 4 Report
/// Number of Stored Records, 5 Number of Stored Records Response, 6 Response Code.
/// Operators: 0 Null, 1 All records, 2 ≤, 3 ≥, 4 within range, 5 first, 6 last record.
/// A ≥ operand is a Filter Type (uint8: 0x01 Sequence Number in GLS/PLXS, Time Offset in
/// CGMS) and the value (uint16).
public enum RACPRequest: Hashable, Sendable {
    /// Report every stored record.
    case reportAllRecords
    /// Report records whose sequence number (CGM: time offset) is ≥ `from`, the back-fill
    /// request after the last committed sequence number + 1.
    case reportRecords(from: UInt16)
    /// Count every stored record.
    case reportNumberOfAllRecords
    /// Count records whose sequence number (CGM: time offset) is ≥ `from`.
    case reportNumberOfRecords(from: UInt16)
    /// Abort the operation in progress (operator Null, no operand).
    case abort

    /// The bytes to write to the control point.
    public var encoded: [UInt8] {
        switch self {
        case .reportAllRecords: [0x01, 0x01]
        case .reportRecords(let s): [0x01, 0x03, 0x01, UInt8(s & 0xFF), UInt8(s >> 8)]
        case .reportNumberOfAllRecords: [0x04, 0x01]
        case .reportNumberOfRecords(let s): [0x04, 0x03, 0x01, UInt8(s & 0xFF), UInt8(s >> 8)]
        case .abort: [0x03, 0x00]
        }
    }
}

/// The RACP Response Code values (GLS 1.0 Table 3.x; GSS §3.188): what the device said about
/// a request. Unknown values are kept (reserved for future use), never guessed at.
public struct RACPResponseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let success = RACPResponseCode(rawValue: 0x01)
    public static let opCodeNotSupported = RACPResponseCode(rawValue: 0x02)
    public static let invalidOperator = RACPResponseCode(rawValue: 0x03)
    public static let operatorNotSupported = RACPResponseCode(rawValue: 0x04)
    public static let invalidOperand = RACPResponseCode(rawValue: 0x05)
    public static let noRecordsFound = RACPResponseCode(rawValue: 0x06)
    public static let abortUnsuccessful = RACPResponseCode(rawValue: 0x07)
    public static let procedureNotCompleted = RACPResponseCode(rawValue: 0x08)
    public static let operandNotSupported = RACPResponseCode(rawValue: 0x09)

    static let names = ["", "success", "op_code_not_supported", "invalid_operator", "operator_not_supported",
                        "invalid_operand", "no_records_found", "abort_unsuccessful", "procedure_not_completed",
                        "operand_not_supported"]

    /// `success`, `no_records_found`, … or `reserved_0xNN`.
    public var description: String {
        (1..<Self.names.count).contains(Int(rawValue)) ? Self.names[Int(rawValue)] : "reserved_" + hexByte(rawValue)
    }
}

/// A Record Access Control Point indication.
public enum RACPResponse: Hashable, Sendable {
    /// Op code 5: the answer to "report number of stored records".
    case numberOfRecords(Int)
    /// Op code 6: the outcome of the request with op code `request`.
    case responseCode(request: UInt8, code: RACPResponseCode)

    /// Decodes an indication. Only the two response op codes are valid from a device; the
    /// operator must be Null (0).
    public init(decoding value: [UInt8]) throws(GATTDecodeError) {
        var r = GATTReader(value, .recordAccessControlPoint)
        let op = try r.uint8("Op Code")
        let oper = try r.uint8("Operator")
        guard oper == 0 else {
            throw GATTDecodeError(.invalidField, .recordAccessControlPoint, "field Operator: not Null in a response")
        }
        switch op {
        case 0x05:
            self = .numberOfRecords(Int(try r.uint16("Number of Records")))
        case 0x06:
            let request = try r.uint8("Request Op Code")
            let code = try r.uint8("Response Code Value")
            self = .responseCode(request: request, code: RACPResponseCode(rawValue: code))
        default:
            throw GATTDecodeError(.invalidField, .recordAccessControlPoint, "field Op Code: not a response op code")
        }
        try r.end()
    }
}

func hexByte(_ b: UInt8) -> String {
    let h = Array("0123456789ABCDEF")
    return "0x" + String(h[Int(b >> 4)]) + String(h[Int(b & 0xF)])
}
