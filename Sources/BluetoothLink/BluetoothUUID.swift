public import DeviceDecoding

/// A Bluetooth UUID: 16-bit SIG assigned numbers and full 128-bit UUIDs, compared as 128-bit
/// values over the Bluetooth Base UUID (Core v5.3 Vol 3 Part B §2.5.1), so `2A37` and
/// `00002a37-0000-1000-8000-00805f9b34fb` are equal.
public struct BluetoothUUID: Hashable, Sendable, CustomStringConvertible {
    /// The 16 bytes in ATT wire order (little-endian, least significant byte first).
    public let littleEndianBytes: [UInt8]

    /// The Bluetooth Base UUID 00000000-0000-1000-8000-00805F9B34FB, little-endian.
    static let base: [UInt8] = [0xFB, 0x34, 0x9B, 0x5F, 0x80, 0x00, 0x00, 0x80, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]

    private init(raw: [UInt8]) { littleEndianBytes = raw }

    /// A 16-bit assigned number.
    public init(_ short: UInt16) {
        var b = Self.base
        b[12] = UInt8(short & 0xFF)
        b[13] = UInt8(short >> 8)
        self.init(raw: b)
    }

    /// A 32-bit assigned number (advertising data may carry them).
    public init(uint32 v: UInt32) {
        var b = Self.base
        b[12] = UInt8(v & 0xFF)
        b[13] = UInt8((v >> 8) & 0xFF)
        b[14] = UInt8((v >> 16) & 0xFF)
        b[15] = UInt8(v >> 24)
        self.init(raw: b)
    }

    /// A UUID from its ATT wire form: 2, 4 or 16 little-endian bytes; nil for any other length.
    public init?(littleEndian bytes: some Collection<UInt8>) {
        let a = Array(bytes)
        switch a.count {
        case 2: self.init(UInt16(a[0]) | UInt16(a[1]) << 8)
        case 4: self.init(uint32: UInt32(a[0]) | UInt32(a[1]) << 8 | UInt32(a[2]) << 16 | UInt32(a[3]) << 24)
        case 16: self.init(raw: a)
        default: return nil
        }
    }

    /// A characteristic's assigned number as a UUID.
    public init(_ characteristic: GATTCharacteristic) { self.init(characteristic.rawValue) }

    /// Parses `180D`, `0x180d` or `0000180d-0000-1000-8000-00805f9b34fb` (any case).
    public init?(parsing text: String) {
        var t = text.lowercased()
        if t.hasPrefix("0x") { t.removeFirst(2) }
        if t.count == 4, let v = UInt16(t, radix: 16) { self.init(v); return }
        let hexDigits = t.filter { $0 != "-" }
        guard t.count == 36, hexDigits.count == 32 else { return nil }
        var be: [UInt8] = []
        var i = hexDigits.startIndex
        while i < hexDigits.endIndex {
            let j = hexDigits.index(i, offsetBy: 2)
            guard let b = UInt8(hexDigits[i..<j], radix: 16) else { return nil }
            be.append(b)
            i = j
        }
        self.init(raw: be.reversed())
    }

    /// The 16-bit assigned number when this UUID lies on the Bluetooth Base UUID, else nil.
    public var shortValue: UInt16? {
        guard littleEndianBytes[14] == 0, littleEndianBytes[15] == 0,
              Array(littleEndianBytes[0..<12]) == Array(Self.base[0..<12]) else { return nil }
        return UInt16(littleEndianBytes[12]) | UInt16(littleEndianBytes[13]) << 8
    }

    /// The decoder's characteristic number, when this is a 16-bit UUID.
    public var characteristic: GATTCharacteristic? { shortValue.map { GATTCharacteristic(rawValue: $0) } }

    /// The shortest ATT wire form: 2 bytes for a 16-bit UUID, else 16.
    public var wireBytes: [UInt8] {
        if let s = shortValue { return [UInt8(s & 0xFF), UInt8(s >> 8)] }
        return littleEndianBytes
    }

    /// `2A37` for a 16-bit UUID, else the canonical lower-case 36-character form.
    public var description: String {
        if let s = shortValue { return hex(s) }
        let be = littleEndianBytes.reversed().map { b -> String in
            let h = String(b, radix: 16)
            return b < 16 ? "0" + h : h
        }
        let s = be.joined()
        let c = Array(s)
        return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32])
    }

    // GATT attribute types (Assigned Numbers §3.5, §3.7).
    public static let primaryService = BluetoothUUID(0x2800)
    public static let secondaryService = BluetoothUUID(0x2801)
    public static let include = BluetoothUUID(0x2802)
    public static let characteristicDeclaration = BluetoothUUID(0x2803)
    public static let clientCharacteristicConfiguration = BluetoothUUID(0x2902)
}
