/// The Advertising Data (or Scan Response Data) of an LE advertisement: a list of AD
/// structures, each `length, AD type, data` (Core v5.3 Vol 3 Part C §11; the AD types are in
/// the Core Specification Supplement Part A §1). Pure: any byte sequence parses or gives a
/// typed ``AdvertisingDataError``.
public struct AdvertisingData: Hashable, Sendable {
    /// Flags (CSS Part A §1.3): bit 0 LE Limited Discoverable, bit 1 LE General Discoverable,
    /// bit 2 BR/EDR Not Supported, bits 3–4 simultaneous LE and BR/EDR.
    public var flags: UInt8?
    /// The Complete (0x09) or Shortened (0x08) Local Name.
    public var localName: String?
    /// True when ``localName`` came from a Complete Local Name.
    public var localNameIsComplete = false
    /// Service UUIDs from the 16-, 32- and 128-bit lists (complete or incomplete), in order.
    public var serviceUUIDs: [BluetoothUUID] = []
    /// True when any service UUID list was marked incomplete.
    public var serviceUUIDsIncomplete = false
    /// Service Data (0x16, 0x20, 0x21): the service UUID and its data, in order.
    public var serviceData: [ServiceData] = []
    /// Manufacturer Specific Data (0xFF): the company identifier and the data after it.
    public var manufacturerData: [ManufacturerData] = []
    /// TX Power Level (0x0A), dBm.
    public var txPowerLevel: Int8?
    /// Appearance (0x19, Assigned Numbers §2.6): category and sub-category.
    public var appearance: UInt16?
    /// AD structures of other types: type and data, kept for logs.
    public var other: [ADStructure] = []

    public struct ServiceData: Hashable, Sendable {
        public var uuid: BluetoothUUID
        public var data: [UInt8]
        public init(uuid: BluetoothUUID, data: [UInt8]) { self.uuid = uuid; self.data = data }
    }

    public struct ManufacturerData: Hashable, Sendable {
        /// Bluetooth SIG company identifier (Assigned Numbers §7), e.g. 0x004C Apple.
        public var companyID: UInt16
        public var data: [UInt8]
        public init(companyID: UInt16, data: [UInt8]) { self.companyID = companyID; self.data = data }
    }

    public struct ADStructure: Hashable, Sendable {
        public var type: UInt8
        public var data: [UInt8]
        public init(type: UInt8, data: [UInt8]) { self.type = type; self.data = data }
    }

    public init() {}

    /// Whether the advertisement lists `uuid` among its services (or carries service data for it).
    public func advertises(_ uuid: BluetoothUUID) -> Bool {
        serviceUUIDs.contains(uuid) || serviceData.contains { $0.uuid == uuid }
    }

    /// Parses Advertising Data (up to 31 bytes legacy, 254 extended; any length accepted).
    /// A zero length octet ends the significant part (the rest is padding, §11).
    public static func parse(_ bytes: [UInt8]) throws(AdvertisingDataError) -> AdvertisingData {
        var ad = AdvertisingData()
        var i = 0
        while i < bytes.count {
            let length = Int(bytes[i])
            if length == 0 { break }
            guard i + 1 + length <= bytes.count else {
                throw AdvertisingDataError(.truncated, offset: i, "an AD structure of \(length) bytes runs past the end (\(bytes.count - i - 1) left)")
            }
            let type = bytes[i + 1]
            let data = Array(bytes[(i + 2)..<(i + 1 + length)])
            try ad.add(type: type, data: data, offset: i)
            i += 1 + length
        }
        return ad
    }

    private mutating func add(type: UInt8, data: [UInt8], offset: Int) throws(AdvertisingDataError) {
        func uuids(_ width: Int) throws(AdvertisingDataError) -> [BluetoothUUID] {
            guard data.count % width == 0 else {
                throw AdvertisingDataError(.badLength, offset: offset, "AD type 0x\(hex(type)): \(data.count) bytes is not a list of \(width)-byte UUIDs")
            }
            return stride(from: 0, to: data.count, by: width).compactMap { BluetoothUUID(littleEndian: data[$0..<($0 + width)]) }
        }
        func name() throws(AdvertisingDataError) -> String {
            guard let s = String(validating: data, as: UTF8.self) else {
                throw AdvertisingDataError(.invalidField, offset: offset, "the local name is not UTF-8")
            }
            return s
        }
        switch type {
        case 0x01:
            guard data.count >= 1 else { throw AdvertisingDataError(.badLength, offset: offset, "empty Flags") }
            flags = data[0]
        case 0x02, 0x03:
            serviceUUIDs += try uuids(2)
            if type == 0x02 { serviceUUIDsIncomplete = true }
        case 0x04, 0x05:
            serviceUUIDs += try uuids(4)
            if type == 0x04 { serviceUUIDsIncomplete = true }
        case 0x06, 0x07:
            serviceUUIDs += try uuids(16)
            if type == 0x06 { serviceUUIDsIncomplete = true }
        case 0x08:
            // A complete name wins over a shortened one, whichever comes first.
            if !localNameIsComplete { localName = try name() }
        case 0x09:
            localName = try name()
            localNameIsComplete = true
        case 0x0A:
            guard data.count == 1 else { throw AdvertisingDataError(.badLength, offset: offset, "TX Power Level of \(data.count) bytes, not 1") }
            txPowerLevel = Int8(bitPattern: data[0])
        case 0x16, 0x20, 0x21:
            let width = type == 0x16 ? 2 : (type == 0x20 ? 4 : 16)
            guard data.count >= width, let u = BluetoothUUID(littleEndian: data[0..<width]) else {
                throw AdvertisingDataError(.badLength, offset: offset, "Service Data shorter than its \(width)-byte UUID")
            }
            serviceData.append(ServiceData(uuid: u, data: Array(data[width...])))
        case 0x19:
            guard data.count == 2 else { throw AdvertisingDataError(.badLength, offset: offset, "Appearance of \(data.count) bytes, not 2") }
            appearance = UInt16(data[0]) | UInt16(data[1]) << 8
        case 0xFF:
            guard data.count >= 2 else { throw AdvertisingDataError(.badLength, offset: offset, "Manufacturer Specific Data without a company identifier") }
            manufacturerData.append(ManufacturerData(companyID: UInt16(data[0]) | UInt16(data[1]) << 8, data: Array(data[2...])))
        default:
            other.append(ADStructure(type: type, data: data))
        }
    }
}

/// Advertising data that does not follow the AD structure format. Names the offset and AD
/// type, never the content.
public struct AdvertisingDataError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Hashable, Sendable, CaseIterable { case truncated, badLength, invalidField }
    public var code: Code
    /// Byte offset of the AD structure in error.
    public var offset: Int
    public var message: String
    public init(_ code: Code, offset: Int, _ message: String) {
        self.code = code
        self.offset = offset
        self.message = message
    }
    public var description: String { "advertising data \(code.rawValue) at byte \(offset): \(message)" }
}

/// One LE Advertising Report (HCI LE Meta event 0x3E, subevent 0x02; Core v5.3 Vol 4 Part E
/// §7.7.65.2).
public struct AdvertisingReport: Hashable, Sendable {
    /// ADV_IND 0, ADV_DIRECT_IND 1, ADV_SCAN_IND 2, ADV_NONCONN_IND 3, SCAN_RSP 4.
    public var eventType: UInt8
    public var address: String
    public var addressType: LEAddressType
    /// dBm; nil when the controller reports 127 (not available).
    public var rssi: Int8?
    /// The raw advertising data.
    public var rawData: [UInt8]
    /// The parsed data, or the reason it could not be parsed.
    public var data: Result<AdvertisingData, AdvertisingDataError>

    public init(eventType: UInt8, address: String, addressType: LEAddressType, rssi: Int8?, rawData: [UInt8]) {
        self.eventType = eventType
        self.address = address
        self.addressType = addressType
        self.rssi = rssi
        self.rawData = rawData
        self.data = Result { () throws(AdvertisingDataError) in try AdvertisingData.parse(rawData) }
    }

    /// Parses an HCI event packet as read from a raw HCI socket (packet type 0x04 first):
    /// the advertising reports of an LE Advertising Report event; [] for any other event.
    /// Malformed packets throw; nothing traps.
    public static func parseHCIEvent(_ p: [UInt8]) throws(AdvertisingDataError) -> [AdvertisingReport] {
        // 0x04 HCI event packet, 0x3E LE Meta, parameter length, subevent 0x02.
        guard p.count >= 5, p[0] == 0x04, p[1] == 0x3E, p[3] == 0x02 else { return [] }
        guard Int(p[2]) == p.count - 3 else {
            throw AdvertisingDataError(.badLength, offset: 2, "HCI event parameter length \(p[2]) but \(p.count - 3) bytes")
        }
        let n = Int(p[4])
        var i = 5
        var reports: [AdvertisingReport] = []
        for _ in 0..<n {
            guard i + 9 <= p.count else { throw AdvertisingDataError(.truncated, offset: i, "advertising report header cut short") }
            let eventType = p[i]
            let addrType: LEAddressType = (p[i + 1] & 0x01) == 0 ? .public : .random
            let addr = p[(i + 2)..<(i + 8)].reversed().map { hex($0) }.joined(separator: ":")
            let length = Int(p[i + 8])
            guard i + 9 + length + 1 <= p.count else { throw AdvertisingDataError(.truncated, offset: i, "advertising report data cut short") }
            let data = Array(p[(i + 9)..<(i + 9 + length)])
            let rssiByte = Int8(bitPattern: p[i + 9 + length])
            reports.append(AdvertisingReport(eventType: eventType, address: addr, addressType: addrType,
                                             rssi: rssiByte == 127 ? nil : rssiByte, rawData: data))
            i += 10 + length
        }
        return reports
    }
}
