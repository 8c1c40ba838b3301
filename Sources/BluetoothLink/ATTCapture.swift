/// A BLE ATT capture (`firmware-fixtures/ble/*.att`): a peripheral's GATT database, its stored
/// records for RACP, and the script of what it does once connected. Pure text parsing.
/// The format is defined in firmware-fixtures/README.md, section "BLE ATT captures".
public struct ATTCapture: Sendable, Hashable {
    /// The server's receive MTU, in octets (`mtu N`; default 23).
    public var mtu: UInt16
    public var services: [ServiceSpec]
    /// Stored records, served in order on a RACP "report stored records" request.
    public var records: [StoredRecord]
    public var script: [Step]

    public struct ServiceSpec: Sendable, Hashable {
        public var uuid: BluetoothUUID
        public var characteristics: [CharacteristicSpec]
        public init(uuid: BluetoothUUID, characteristics: [CharacteristicSpec]) {
            self.uuid = uuid
            self.characteristics = characteristics
        }
    }

    public struct CharacteristicSpec: Sendable, Hashable {
        public var uuid: BluetoothUUID
        public var properties: GATTCharacteristicProperties
        public var value: [UInt8]
        public init(uuid: BluetoothUUID, properties: GATTCharacteristicProperties, value: [UInt8] = []) {
            self.uuid = uuid
            self.properties = properties
            self.value = value
        }
    }

    public struct StoredRecord: Sendable, Hashable {
        public var characteristic: BluetoothUUID
        public var sequence: UInt16
        public var value: [UInt8]
        public init(characteristic: BluetoothUUID, sequence: UInt16, value: [UInt8]) {
            self.characteristic = characteristic
            self.sequence = sequence
            self.value = value
        }
    }

    public enum Step: Sendable, Hashable {
        /// Waits until the client has enabled notifications or indications on the characteristic.
        case waitSubscribed(BluetoothUUID)
        /// A Handle Value Notification.
        case notify(BluetoothUUID, [UInt8])
        /// A Handle Value Indication; the script waits for the confirmation before going on.
        case indicate(BluetoothUUID, [UInt8])
        /// Pauses, in milliseconds.
        case delay(milliseconds: Int)
        /// Stops answering requests (the link stays open): provokes a transaction timeout.
        case stall
        /// Closes the link.
        case disconnect
        /// Sends these bytes as one PDU, as they are (malformed or out-of-place PDUs).
        case raw([UInt8])
    }

    public init(mtu: UInt16 = 23, services: [ServiceSpec], records: [StoredRecord] = [], script: [Step] = []) {
        self.mtu = mtu
        self.services = services
        self.records = records
        self.script = script
    }

    /// Parses the text of a capture. Errors name the line.
    public static func parse(_ text: String) throws(ATTCaptureError) -> ATTCapture {
        var capture = ATTCapture(services: [])
        var inScript = false
        var lineNumber = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = Substring(raw)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let valuePart: Substring?
            if let eq = line.firstIndex(of: "=") {
                valuePart = line[line.index(after: eq)...]
                line = line[..<eq]
            } else {
                valuePart = nil
            }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard let keyword = words.first else { continue }
            func fail(_ message: String) -> ATTCaptureError { ATTCaptureError(line: lineNumber, message: message) }
            func uuid(_ i: Int) throws(ATTCaptureError) -> BluetoothUUID {
                guard i < words.count, let u = BluetoothUUID(parsing: words[i]) else { throw fail("expected a UUID after '\(keyword)'") }
                return u
            }
            func bytes(required: Bool = true) throws(ATTCaptureError) -> [UInt8] {
                guard let valuePart else {
                    if required { throw fail("expected '= hex bytes'") }
                    return []
                }
                guard let b = parseHex(valuePart) else { throw fail("the value is not hex bytes") }
                return b
            }
            if inScript {
                switch keyword {
                case "wait-subscribed": capture.script.append(.waitSubscribed(try uuid(1)))
                case "notify": capture.script.append(.notify(try uuid(1), try bytes()))
                case "indicate": capture.script.append(.indicate(try uuid(1), try bytes()))
                case "delay":
                    guard words.count == 2, let ms = Int(words[1]), ms >= 0, ms <= 600_000 else { throw fail("delay takes milliseconds (0…600000)") }
                    capture.script.append(.delay(milliseconds: ms))
                case "stall": capture.script.append(.stall)
                case "disconnect": capture.script.append(.disconnect)
                case "raw":
                    if valuePart == nil {
                        guard words.count > 1, let b = parseHex(words.dropFirst().joined()) else { throw fail("raw takes hex bytes") }
                        capture.script.append(.raw(b))
                    } else {
                        capture.script.append(.raw(try bytes()))
                    }
                default: throw fail("unknown script step '\(keyword)'")
                }
                continue
            }
            switch keyword {
            case "mtu":
                guard words.count == 2, let m = UInt16(words[1]), m >= 23, m <= 517 else { throw fail("mtu takes 23…517") }
                capture.mtu = m
            case "service":
                capture.services.append(ServiceSpec(uuid: try uuid(1), characteristics: []))
            case "char":
                guard !capture.services.isEmpty else { throw fail("'char' before any 'service'") }
                var props = GATTCharacteristicProperties()
                for w in words.dropFirst(2) {
                    switch w {
                    case "read": props.insert(.read)
                    case "write": props.insert(.write)
                    case "write-without-response": props.insert(.writeWithoutResponse)
                    case "notify": props.insert(.notify)
                    case "indicate": props.insert(.indicate)
                    default: throw fail("unknown property '\(w)'")
                    }
                }
                let spec = CharacteristicSpec(uuid: try uuid(1), properties: props, value: try bytes(required: false))
                capture.services[capture.services.count - 1].characteristics.append(spec)
            case "record":
                guard words.count == 4, words[2] == "seq", let n = UInt16(words[3]) else { throw fail("expected 'record <uuid> seq <n> = <hex>'") }
                capture.records.append(StoredRecord(characteristic: try uuid(1), sequence: n, value: try bytes()))
            case "script:":
                inScript = true
            default:
                throw fail("unknown keyword '\(keyword)'")
            }
        }
        return capture
    }
}

/// A capture file that does not follow the format; names the line.
public struct ATTCaptureError: Error, Sendable, Hashable, CustomStringConvertible {
    public var line: Int
    public var message: String
    public init(line: Int, message: String) { self.line = line; self.message = message }
    public var description: String { "line \(line): \(message)" }
}

/// Hex bytes separated by spaces or not (`06 48`, `0648`); nil when not hex.
public func parseHex(_ text: some StringProtocol) -> [UInt8]? {
    let digits = String(text.filter { !$0.isWhitespace })
    guard digits.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    out.reserveCapacity(digits.count / 2)
    var i = digits.startIndex
    while i < digits.endIndex {
        let j = digits.index(i, offsetBy: 2)
        guard let b = UInt8(digits[i..<j], radix: 16) else { return nil }
        out.append(b)
        i = j
    }
    return out
}
