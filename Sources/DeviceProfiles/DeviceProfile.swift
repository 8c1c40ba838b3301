public import DeviceDecoding
public import VitalSigns

/// A device profile: the data that tells Vigil how to talk to one kind of device
/// (`devices/*.yaml`). Profiles hold no logic; they name a compiled decoder and give the
/// transport settings, match rules, vitals and plausible ranges.
///
/// ```yaml
/// id: masimo-rad8
/// name: Masimo Rad-8 pulse oximeter (ASCII 1 serial output)
/// transport: serial
/// serial: {baud: 9600, data_bits: 8, parity: none, stop_bits: 1}
/// match:
///   usb: [{vendor: "0403", product: "6001"}]
/// decoder: masimo-ascii1
/// vitals: [spo2, pulse_rate, perfusion_index]
/// ranges: {spo2: [0, 100], pulse_rate: [25, 240], perfusion_index: [0.02, 20]}
/// fixtures: [masimo-rad8/normal.capture]
/// ```
public struct DeviceProfile: Sendable, Hashable, Decodable {
    public enum Transport: String, Sendable, Hashable, Decodable { case serial, ble }

    public struct SerialParameters: Sendable, Hashable, Decodable {
        public enum Parity: String, Sendable, Hashable, Decodable { case none, even, odd }
        public var baud: Int
        public var dataBits: Int
        public var parity: Parity
        public var stopBits: Int

        enum CodingKeys: String, CodingKey {
            case baud, parity
            case dataBits = "data_bits"
            case stopBits = "stop_bits"
        }

        public static let supportedBauds = [1200, 2400, 4800, 9600, 19_200, 38_400, 57_600, 115_200]

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            baud = try c.decode(Int.self, forKey: .baud)
            guard Self.supportedBauds.contains(baud) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .baud, in: c,
                    debugDescription: "unsupported baud rate; expected one of \(Self.supportedBauds.map(String.init).joined(separator: ", "))")
            }
            dataBits = try c.decodeIfPresent(Int.self, forKey: .dataBits) ?? 8
            guard (5...8).contains(dataBits) else {
                throw DecodingError.dataCorruptedError(forKey: .dataBits, in: c, debugDescription: "must be 5, 6, 7 or 8")
            }
            parity = try c.decodeIfPresent(Parity.self, forKey: .parity) ?? .none
            stopBits = try c.decodeIfPresent(Int.self, forKey: .stopBits) ?? 1
            guard stopBits == 1 || stopBits == 2 else {
                throw DecodingError.dataCorruptedError(forKey: .stopBits, in: c, debugDescription: "must be 1 or 2")
            }
        }
    }

    public struct USBMatch: Sendable, Hashable, Decodable {
        /// Four hexadecimal digits, as `lsusb` prints them.
        public var vendor: String
        public var product: String

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            vendor = try c.decode(String.self, forKey: .vendor).lowercased()
            product = try c.decode(String.self, forKey: .product).lowercased()
            for (key, v) in [(CodingKeys.vendor, vendor), (.product, product)] {
                guard v.count == 4, v.allSatisfy(\.isHexDigit) else {
                    throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "must be four hexadecimal digits")
                }
            }
        }
        enum CodingKeys: String, CodingKey { case vendor, product }
    }

    public struct Match: Sendable, Hashable, Decodable {
        public var usb: [USBMatch]?
        /// BLE local-name prefixes.
        public var namePrefix: [String]?
        /// BLE service UUIDs (16-bit as four hex digits, or 128-bit).
        public var services: [String]?
        enum CodingKeys: String, CodingKey {
            case usb, services
            case namePrefix = "name_prefix"
        }
    }

    public var id: String
    public var name: String
    public var transport: Transport
    public var serial: SerialParameters?
    /// How to talk GATT to a Bluetooth LE device (present exactly when `transport: ble`).
    public var ble: BLEParameters?
    public var match: Match?
    /// The compiled decoder's registered name (`masimo-ascii1`).
    public var decoder: String
    public var vitals: [Vital]
    /// Plausible range per vital, inclusive, in the vital's canonical unit. A decoded value
    /// outside it is rejected as implausible rather than stored.
    public var ranges: [String: ClosedRange<Double>]
    /// Captures in `firmware-fixtures/` that prove the decoder on this device.
    public var fixtures: [String]
    /// The line protocol, for `decoder: line` (present exactly then).
    public var line: LineProtocolSpec?

    /// The decoder name of a protocol defined by the profile's `line:` section.
    public static let lineDecoderName = "line"

    enum CodingKeys: String, CodingKey { case id, name, transport, serial, ble, match, decoder, vitals, ranges, fixtures, line }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        guard !id.isEmpty, id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            throw DecodingError.dataCorruptedError(forKey: .id, in: c, debugDescription: "must be letters, digits, '-' or '_'")
        }
        name = try c.decode(String.self, forKey: .name)
        transport = try c.decode(Transport.self, forKey: .transport)
        serial = try c.decodeIfPresent(SerialParameters.self, forKey: .serial)
        if transport == .serial, serial == nil {
            throw DecodingError.dataCorruptedError(forKey: .serial, in: c, debugDescription: "a serial profile needs serial settings")
        }
        ble = try c.decodeIfPresent(BLEParameters.self, forKey: .ble)
        switch transport {
        case .ble where ble == nil:
            throw DecodingError.dataCorruptedError(forKey: .ble, in: c, debugDescription: "a ble profile needs a ble section")
        case .serial where ble != nil:
            throw DecodingError.dataCorruptedError(forKey: .ble, in: c, debugDescription: "a serial profile cannot have a ble section")
        default: break
        }
        if transport == .ble, serial != nil {
            throw DecodingError.dataCorruptedError(forKey: .serial, in: c, debugDescription: "a ble profile cannot have serial settings")
        }
        match = try c.decodeIfPresent(Match.self, forKey: .match)
        self.decoder = try c.decode(String.self, forKey: .decoder)
        if transport == .ble, self.decoder != BLEParameters.decoderName {
            throw DecodingError.dataCorruptedError(
                forKey: .decoder, in: c, debugDescription: "a ble profile uses decoder '\(BLEParameters.decoderName)'")
        }
        let keys = try c.decode([String].self, forKey: .vitals)
        vitals = try keys.map { key in
            guard let v = Vital.named(key) else {
                throw DecodingError.dataCorruptedError(forKey: .vitals, in: c, debugDescription: "unknown vital '\(key)'")
            }
            return v
        }
        let rawRanges = try c.decodeIfPresent([String: [Double]].self, forKey: .ranges) ?? [:]
        var ranges: [String: ClosedRange<Double>] = [:]
        for (key, bounds) in rawRanges {
            guard keys.contains(key) else {
                throw DecodingError.dataCorruptedError(forKey: .ranges, in: c, debugDescription: "range for '\(key)', which is not in vitals")
            }
            guard bounds.count == 2, bounds[0].isFinite, bounds[1].isFinite, bounds[0] <= bounds[1] else {
                throw DecodingError.dataCorruptedError(forKey: .ranges, in: c, debugDescription: "range for '\(key)' must be [low, high] with low ≤ high")
            }
            ranges[key] = bounds[0]...bounds[1]
        }
        self.ranges = ranges
        fixtures = try c.decodeIfPresent([String].self, forKey: .fixtures) ?? []
        line = try c.decodeIfPresent(LineProtocolSpec.self, forKey: .line)
        switch (self.decoder == Self.lineDecoderName, line) {
        case (true, nil):
            throw DecodingError.dataCorruptedError(forKey: .line, in: c, debugDescription: "decoder 'line' needs a line section")
        case (false, _?):
            throw DecodingError.dataCorruptedError(forKey: .line, in: c, debugDescription: "a line section needs decoder: line")
        default: break
        }
        if let line {
            for field in line.fields where !vitals.contains(field.vital) {
                throw DecodingError.dataCorruptedError(
                    forKey: .line, in: c, debugDescription: "the line protocol reads \(field.vital.key), which is not in vitals")
            }
        }
    }

    /// A fresh stream decoder for this profile: the compiled decoder it names, or its line
    /// protocol. Nil for a BLE profile or a name this build does not have.
    public func makeStreamDecoder() -> (any StreamDecoder)? {
        if let line { return try? LineProtocolDecoder(spec: line) }
        return makeDecoder(named: decoder)
    }

    /// The profile's USB-serial adapter ids as a serial link address
    /// (`usb:0403:6001,067b:2303`), or nil when it names none.
    public var usbAddress: String? {
        guard let usb = match?.usb, !usb.isEmpty else { return nil }
        return "usb:" + usb.map { "\($0.vendor):\($0.product)" }.joined(separator: ",")
    }

    /// Whether a value is within the profile's plausible range (true when none is given).
    public func isPlausible(_ value: Double, for vital: Vital) -> Bool {
        guard value.isFinite else { return false }
        guard let r = ranges[vital.key] else { return true }
        return r.contains(value)
    }
}
