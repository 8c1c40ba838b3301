/// The Attribute Protocol PDUs Vigil sends and understands (Core v5.3 Vol 3 Part F §3.4).
/// Pure: parse and serialize only, no I/O. Any byte sequence parses to a PDU or a typed
/// ``ATTPDUError``; nothing traps. Multi-byte fields are little-endian.
public enum ATTPDU: Hashable, Sendable {
    /// Error Response (0x01): the request opcode, the handle in error, the ATT error code.
    case errorResponse(requestOpcode: UInt8, handle: UInt16, error: UInt8)
    /// Exchange MTU Request (0x02): the client's receive MTU, in octets (≥ 23).
    case exchangeMTURequest(clientRxMTU: UInt16)
    /// Exchange MTU Response (0x03): the server's receive MTU, in octets.
    case exchangeMTUResponse(serverRxMTU: UInt16)
    /// Find Information Request (0x04): the handle range to list descriptors in.
    case findInformationRequest(start: UInt16, end: UInt16)
    /// Find Information Response (0x05): handle–type pairs (all 16-bit or all 128-bit).
    case findInformationResponse([HandleUUID])
    /// Read By Type Request (0x08).
    case readByTypeRequest(start: UInt16, end: UInt16, type: BluetoothUUID)
    /// Read By Type Response (0x09): handle–value pairs of one length.
    case readByTypeResponse([HandleValue])
    /// Read Request (0x0A).
    case readRequest(handle: UInt16)
    /// Read Response (0x0B): the value, at most MTU − 1 octets.
    case readResponse(value: [UInt8])
    /// Read By Group Type Request (0x10).
    case readByGroupTypeRequest(start: UInt16, end: UInt16, type: BluetoothUUID)
    /// Read By Group Type Response (0x11): attribute handle, end group handle and value.
    case readByGroupTypeResponse([GroupValue])
    /// Write Request (0x12).
    case writeRequest(handle: UInt16, value: [UInt8])
    /// Write Response (0x13).
    case writeResponse
    /// Write Command (0x52): no response.
    case writeCommand(handle: UInt16, value: [UInt8])
    /// Handle Value Notification (0x1B).
    case notification(handle: UInt16, value: [UInt8])
    /// Handle Value Indication (0x1D): the client must answer with a confirmation.
    case indication(handle: UInt16, value: [UInt8])
    /// Handle Value Confirmation (0x1E).
    case confirmation

    public struct HandleUUID: Hashable, Sendable {
        public var handle: UInt16
        public var uuid: BluetoothUUID
        public init(handle: UInt16, uuid: BluetoothUUID) { self.handle = handle; self.uuid = uuid }
    }

    public struct HandleValue: Hashable, Sendable {
        public var handle: UInt16
        public var value: [UInt8]
        public init(handle: UInt16, value: [UInt8]) { self.handle = handle; self.value = value }
    }

    public struct GroupValue: Hashable, Sendable {
        public var handle: UInt16
        public var endGroupHandle: UInt16
        public var value: [UInt8]
        public init(handle: UInt16, endGroupHandle: UInt16, value: [UInt8]) {
            self.handle = handle; self.endGroupHandle = endGroupHandle; self.value = value
        }
    }

    /// Opcodes (Core v5.3 Vol 3 Part F §3.4.8, table 3.37).
    public enum Opcode {
        public static let errorResponse: UInt8 = 0x01
        public static let exchangeMTURequest: UInt8 = 0x02
        public static let exchangeMTUResponse: UInt8 = 0x03
        public static let findInformationRequest: UInt8 = 0x04
        public static let findInformationResponse: UInt8 = 0x05
        public static let readByTypeRequest: UInt8 = 0x08
        public static let readByTypeResponse: UInt8 = 0x09
        public static let readRequest: UInt8 = 0x0A
        public static let readResponse: UInt8 = 0x0B
        public static let readByGroupTypeRequest: UInt8 = 0x10
        public static let readByGroupTypeResponse: UInt8 = 0x11
        public static let writeRequest: UInt8 = 0x12
        public static let writeResponse: UInt8 = 0x13
        public static let notification: UInt8 = 0x1B
        public static let indication: UInt8 = 0x1D
        public static let confirmation: UInt8 = 0x1E
        public static let writeCommand: UInt8 = 0x52
    }

    /// ATT error codes Vigil names (Core v5.3 Vol 3 Part F §3.4.1.1, table 3.4).
    public enum ErrorCode {
        public static let invalidHandle: UInt8 = 0x01
        public static let readNotPermitted: UInt8 = 0x02
        public static let writeNotPermitted: UInt8 = 0x03
        public static let invalidPDU: UInt8 = 0x04
        public static let insufficientAuthentication: UInt8 = 0x05
        public static let requestNotSupported: UInt8 = 0x06
        public static let invalidOffset: UInt8 = 0x07
        public static let insufficientAuthorization: UInt8 = 0x08
        public static let attributeNotFound: UInt8 = 0x0A
        public static let attributeNotLong: UInt8 = 0x0B
        public static let invalidAttributeValueLength: UInt8 = 0x0D
        public static let unlikelyError: UInt8 = 0x0E
        public static let insufficientEncryption: UInt8 = 0x0F
        public static let unsupportedGroupType: UInt8 = 0x10
        /// Client Characteristic Configuration Descriptor improperly configured (CSS Part B §1.2).
        public static let cccdImproperlyConfigured: UInt8 = 0xFD
        /// Procedure already in progress (CSS Part B §1.2), e.g. a second RACP request.
        public static let procedureAlreadyInProgress: UInt8 = 0xFE
    }

    /// The PDU's opcode.
    public var opcode: UInt8 {
        switch self {
        case .errorResponse: Opcode.errorResponse
        case .exchangeMTURequest: Opcode.exchangeMTURequest
        case .exchangeMTUResponse: Opcode.exchangeMTUResponse
        case .findInformationRequest: Opcode.findInformationRequest
        case .findInformationResponse: Opcode.findInformationResponse
        case .readByTypeRequest: Opcode.readByTypeRequest
        case .readByTypeResponse: Opcode.readByTypeResponse
        case .readRequest: Opcode.readRequest
        case .readResponse: Opcode.readResponse
        case .readByGroupTypeRequest: Opcode.readByGroupTypeRequest
        case .readByGroupTypeResponse: Opcode.readByGroupTypeResponse
        case .writeRequest: Opcode.writeRequest
        case .writeResponse: Opcode.writeResponse
        case .writeCommand: Opcode.writeCommand
        case .notification: Opcode.notification
        case .indication: Opcode.indication
        case .confirmation: Opcode.confirmation
        }
    }

    /// The PDU's name as the specification spells it, for errors and logs.
    public static func name(ofOpcode op: UInt8) -> String {
        switch op {
        case Opcode.errorResponse: "Error Response"
        case Opcode.exchangeMTURequest: "Exchange MTU Request"
        case Opcode.exchangeMTUResponse: "Exchange MTU Response"
        case Opcode.findInformationRequest: "Find Information Request"
        case Opcode.findInformationResponse: "Find Information Response"
        case Opcode.readByTypeRequest: "Read By Type Request"
        case Opcode.readByTypeResponse: "Read By Type Response"
        case Opcode.readRequest: "Read Request"
        case Opcode.readResponse: "Read Response"
        case Opcode.readByGroupTypeRequest: "Read By Group Type Request"
        case Opcode.readByGroupTypeResponse: "Read By Group Type Response"
        case Opcode.writeRequest: "Write Request"
        case Opcode.writeResponse: "Write Response"
        case Opcode.writeCommand: "Write Command"
        case Opcode.notification: "Handle Value Notification"
        case Opcode.indication: "Handle Value Indication"
        case Opcode.confirmation: "Handle Value Confirmation"
        default: "opcode 0x" + hex(op)
        }
    }

    /// The response opcode a request expects (nil for PDUs that are not requests).
    public var expectedResponseOpcode: UInt8? {
        switch self {
        case .exchangeMTURequest: Opcode.exchangeMTUResponse
        case .findInformationRequest: Opcode.findInformationResponse
        case .readByTypeRequest: Opcode.readByTypeResponse
        case .readRequest: Opcode.readResponse
        case .readByGroupTypeRequest: Opcode.readByGroupTypeResponse
        case .writeRequest: Opcode.writeResponse
        default: nil
        }
    }

    // MARK: Serialize

    /// The PDU's bytes, opcode first. Lists are written as given (callers keep them within the MTU).
    public func serialize() -> [UInt8] {
        var out: [UInt8] = [opcode]
        func u16(_ v: UInt16) { out.append(UInt8(v & 0xFF)); out.append(UInt8(v >> 8)) }
        switch self {
        case let .errorResponse(req, handle, error):
            out.append(req); u16(handle); out.append(error)
        case let .exchangeMTURequest(m): u16(m)
        case let .exchangeMTUResponse(m): u16(m)
        case let .findInformationRequest(s, e): u16(s); u16(e)
        case let .findInformationResponse(list):
            let wide = list.contains { $0.uuid.shortValue == nil }
            out.append(wide ? 2 : 1)
            for item in list {
                u16(item.handle)
                out += wide ? item.uuid.littleEndianBytes : item.uuid.wireBytes
            }
        case let .readByTypeRequest(s, e, t), let .readByGroupTypeRequest(s, e, t):
            u16(s); u16(e); out += t.wireBytes
        case let .readByTypeResponse(list):
            out.append(UInt8(truncatingIfNeeded: 2 + (list.first?.value.count ?? 0)))
            for item in list { u16(item.handle); out += item.value }
        case let .readRequest(h): u16(h)
        case let .readResponse(v): out += v
        case let .readByGroupTypeResponse(list):
            out.append(UInt8(truncatingIfNeeded: 4 + (list.first?.value.count ?? 0)))
            for item in list { u16(item.handle); u16(item.endGroupHandle); out += item.value }
        case let .writeRequest(h, v), let .writeCommand(h, v), let .notification(h, v), let .indication(h, v):
            u16(h); out += v
        case .writeResponse, .confirmation: break
        }
        return out
    }

    // MARK: Parse

    /// Parses one PDU (one datagram). Throws ``ATTPDUError`` naming the opcode and the problem.
    public static func parse(_ bytes: [UInt8]) throws(ATTPDUError) -> ATTPDU {
        guard let op = bytes.first else { throw ATTPDUError(.empty, opcode: nil, "empty PDU") }
        var r = Cursor(bytes: bytes, offset: 1, opcode: op)
        switch op {
        case Opcode.errorResponse:
            let req = try r.u8("Request Opcode In Error"), h = try r.u16("Attribute Handle In Error"), e = try r.u8("Error Code")
            try r.end()
            return .errorResponse(requestOpcode: req, handle: h, error: e)
        case Opcode.exchangeMTURequest:
            let m = try r.u16("Client Rx MTU"); try r.end()
            return .exchangeMTURequest(clientRxMTU: m)
        case Opcode.exchangeMTUResponse:
            let m = try r.u16("Server Rx MTU"); try r.end()
            return .exchangeMTUResponse(serverRxMTU: m)
        case Opcode.findInformationRequest:
            let s = try r.u16("Starting Handle"), e = try r.u16("Ending Handle"); try r.end()
            return .findInformationRequest(start: s, end: e)
        case Opcode.findInformationResponse:
            let format = try r.u8("Format")
            let uuidLength: Int
            switch format {
            case 1: uuidLength = 2
            case 2: uuidLength = 16
            default: throw ATTPDUError(.invalidField, opcode: op, "field Format: reserved value \(format)")
            }
            guard r.remaining > 0, r.remaining % (2 + uuidLength) == 0 else {
                throw ATTPDUError(.badLength, opcode: op, "information data of \(r.remaining) bytes is not a whole number of \(2 + uuidLength)-byte pairs")
            }
            var list: [HandleUUID] = []
            while r.remaining > 0 {
                let h = try r.u16("Handle")
                guard let u = BluetoothUUID(littleEndian: try r.bytes(uuidLength, "UUID")) else {
                    throw ATTPDUError(.invalidField, opcode: op, "field UUID: bad length")
                }
                list.append(HandleUUID(handle: h, uuid: u))
            }
            return .findInformationResponse(list)
        case Opcode.readByTypeRequest, Opcode.readByGroupTypeRequest:
            let s = try r.u16("Starting Handle"), e = try r.u16("Ending Handle")
            guard r.remaining == 2 || r.remaining == 16, let t = BluetoothUUID(littleEndian: try r.bytes(r.remaining, "Attribute Type")) else {
                throw ATTPDUError(.badLength, opcode: op, "field Attribute Type: \(r.remaining) bytes, not 2 or 16")
            }
            return op == Opcode.readByTypeRequest ? .readByTypeRequest(start: s, end: e, type: t) : .readByGroupTypeRequest(start: s, end: e, type: t)
        case Opcode.readByTypeResponse:
            let length = Int(try r.u8("Length"))
            guard length >= 2, r.remaining > 0, r.remaining % length == 0 else {
                throw ATTPDUError(.badLength, opcode: op, "attribute data list of \(r.remaining) bytes is not a whole number of \(length)-byte entries")
            }
            var list: [HandleValue] = []
            while r.remaining > 0 {
                let h = try r.u16("Attribute Handle")
                list.append(HandleValue(handle: h, value: try r.bytes(length - 2, "Attribute Value")))
            }
            return .readByTypeResponse(list)
        case Opcode.readRequest:
            let h = try r.u16("Attribute Handle"); try r.end()
            return .readRequest(handle: h)
        case Opcode.readResponse:
            return .readResponse(value: r.rest())
        case Opcode.readByGroupTypeResponse:
            let length = Int(try r.u8("Length"))
            guard length >= 4, r.remaining > 0, r.remaining % length == 0 else {
                throw ATTPDUError(.badLength, opcode: op, "attribute data list of \(r.remaining) bytes is not a whole number of \(length)-byte entries")
            }
            var list: [GroupValue] = []
            while r.remaining > 0 {
                let h = try r.u16("Attribute Handle"), e = try r.u16("End Group Handle")
                list.append(GroupValue(handle: h, endGroupHandle: e, value: try r.bytes(length - 4, "Attribute Value")))
            }
            return .readByGroupTypeResponse(list)
        case Opcode.writeRequest, Opcode.writeCommand, Opcode.notification, Opcode.indication:
            let h = try r.u16("Attribute Handle")
            let v = r.rest()
            switch op {
            case Opcode.writeRequest: return .writeRequest(handle: h, value: v)
            case Opcode.writeCommand: return .writeCommand(handle: h, value: v)
            case Opcode.notification: return .notification(handle: h, value: v)
            default: return .indication(handle: h, value: v)
            }
        case Opcode.writeResponse:
            try r.end(); return .writeResponse
        case Opcode.confirmation:
            try r.end(); return .confirmation
        default:
            throw ATTPDUError(.unknownOpcode, opcode: op, "unsupported opcode 0x\(hex(op))")
        }
    }

    /// A little-endian cursor that names the field it failed on.
    struct Cursor {
        let bytes: [UInt8]
        var offset: Int
        let opcode: UInt8
        var remaining: Int { bytes.count - offset }

        mutating func u8(_ field: String) throws(ATTPDUError) -> UInt8 {
            guard remaining >= 1 else { throw truncated(field) }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func u16(_ field: String) throws(ATTPDUError) -> UInt16 {
            guard remaining >= 2 else { throw truncated(field) }
            defer { offset += 2 }
            return UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
        }

        mutating func bytes(_ n: Int, _ field: String) throws(ATTPDUError) -> [UInt8] {
            guard n >= 0, remaining >= n else { throw truncated(field) }
            defer { offset += n }
            return Array(bytes[offset..<offset + n])
        }

        mutating func rest() -> [UInt8] {
            defer { offset = bytes.count }
            return Array(bytes[offset...])
        }

        func end() throws(ATTPDUError) {
            guard remaining == 0 else {
                throw ATTPDUError(.badLength, opcode: opcode, "\(remaining) bytes after the last field")
            }
        }

        func truncated(_ field: String) -> ATTPDUError {
            ATTPDUError(.truncated, opcode: opcode, "field \(field): truncated at byte \(offset)")
        }
    }
}

/// Why bytes are not a valid ATT PDU. Names the opcode and field, never the value.
public struct ATTPDUError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Hashable, Sendable, CaseIterable {
        case empty, unknownOpcode, truncated, badLength, invalidField
    }
    public var code: Code
    public var opcode: UInt8?
    public var message: String

    public init(_ code: Code, opcode: UInt8?, _ message: String) {
        self.code = code
        self.opcode = opcode
        self.message = message
    }

    public var description: String {
        let name = opcode.map { ATTPDU.name(ofOpcode: $0) } ?? "PDU"
        return "malformed \(name): \(message)"
    }
}
