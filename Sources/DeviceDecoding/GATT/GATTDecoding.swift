public import VitalSigns

/// A characteristic's 16-bit Bluetooth SIG assigned number (GATT Specification Supplement;
/// Assigned Numbers §3.8). The values Vigil decodes are named below; any other UUID is
/// reported as unsupported, never guessed at.
public struct GATTCharacteristic: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Parses `2A35`, `0x2a35` or the 128-bit Bluetooth base form
    /// `00002a35-0000-1000-8000-00805f9b34fb`; nil for anything else.
    public init?(parsing text: String) {
        var t = text.lowercased()
        if t.hasPrefix("0x") { t.removeFirst(2) }
        let base = "-0000-1000-8000-00805f9b34fb"
        if t.count == 36, t.hasSuffix(base), t.hasPrefix("0000") {
            t = String(t.dropFirst(4).prefix(4))
        }
        guard t.count == 4, let v = UInt16(t, radix: 16) else { return nil }
        rawValue = v
    }

    /// Four upper-case hex digits, as the SIG prints them (`2A35`).
    public var description: String {
        let h = String(rawValue, radix: 16, uppercase: true)
        return String(repeating: "0", count: 4 - h.count) + h
    }

    public static let batteryLevel = GATTCharacteristic(rawValue: 0x2A19)
    public static let currentTime = GATTCharacteristic(rawValue: 0x2A2B)
    public static let dateTime = GATTCharacteristic(rawValue: 0x2A08)
    public static let heartRateMeasurement = GATTCharacteristic(rawValue: 0x2A37)
    public static let bloodPressureMeasurement = GATTCharacteristic(rawValue: 0x2A35)
    public static let intermediateCuffPressure = GATTCharacteristic(rawValue: 0x2A36)
    public static let temperatureMeasurement = GATTCharacteristic(rawValue: 0x2A1C)
    public static let intermediateTemperature = GATTCharacteristic(rawValue: 0x2A1E)
    public static let plxSpotCheckMeasurement = GATTCharacteristic(rawValue: 0x2A5E)
    public static let plxContinuousMeasurement = GATTCharacteristic(rawValue: 0x2A5F)
    public static let weightMeasurement = GATTCharacteristic(rawValue: 0x2A9D)
    public static let bodyCompositionMeasurement = GATTCharacteristic(rawValue: 0x2A9C)
    public static let glucoseMeasurement = GATTCharacteristic(rawValue: 0x2A18)
    public static let glucoseMeasurementContext = GATTCharacteristic(rawValue: 0x2A34)
    public static let cgmMeasurement = GATTCharacteristic(rawValue: 0x2AA7)
    public static let recordAccessControlPoint = GATTCharacteristic(rawValue: 0x2A52)
}

/// Why a characteristic value could not be decoded. Names the characteristic and the field;
/// never echoes a value (values are patient data).
public struct GATTDecodeError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Hashable, Sendable, CaseIterable {
        /// The value ended before a field its flags announced.
        case truncated
        /// Bytes left over after every announced field.
        case trailingBytes
        /// A field held a value the specification reserves or forbids.
        case invalidField
        /// An E2E-CRC did not match.
        case crc
        /// Vigil has no decoder for this characteristic.
        case unsupportedCharacteristic
        /// A value that only makes sense after another (a context with no measurement).
        case outOfSequence
    }

    public var code: Code
    public var characteristic: GATTCharacteristic
    /// What went wrong and where, for example "field Systolic: truncated at byte 1".
    public var message: String

    public init(_ code: Code, _ characteristic: GATTCharacteristic, _ message: String) {
        self.code = code
        self.characteristic = characteristic
        self.message = message
    }

    public var description: String { "\(characteristic) \(code.rawValue): \(message)" }
}

/// What one notification or indication value meant.
public enum GATTEvent: Hashable, Sendable {
    /// Finished measurements, to commit as readings. A value can carry several (blood
    /// pressure gives systolic, diastolic, mean and pulse; CGM packs several records).
    case measurement([VitalSample])
    /// Live progress values (intermediate cuff pressure or temperature): shown, never stored.
    case intermediate([VitalSample])
    /// Part of a measurement that continues in a later value (multi-packet weight or body
    /// composition, a glucose measurement awaiting its context). Nothing to commit yet.
    case incomplete
    /// Battery Level, in percent (0–100).
    case batteryLevel(Int)
    /// The device's clock (Current Time or Date Time characteristic), in its own zone; nil
    /// when the device says its date is not known (year, month or day 0: GATT Specification
    /// Supplement §3.70) or sends an impossible one (`CivilDateTime.isValid` false): its clock
    /// is not set and needs a Current Time write.
    case deviceTime(CivilDateTime?)
    /// A Record Access Control Point indication (0x2A52): the answer to a request Vigil wrote.
    case racp(RACPResponse)
}

/// Device quirks and feature-dependent layouts the characteristic value itself cannot tell.
public struct GATTDecoderOptions: Hashable, Sendable {
    /// CGM Feature (0x2AA8) bit 12 "E2E-CRC Supported": every CGM Measurement record ends in
    /// a CRC (CGMS 1.0.1 §3.2; CRC-CCITT, reflected, seed 0xFFFF). When false, a record whose
    /// Size announces two more bytes than its fields is still accepted and its CRC checked.
    public var cgmCRCPresent: Bool

    public init(cgmCRCPresent: Bool = false) {
        self.cgmCRCPresent = cgmCRCPresent
    }
}

/// One descriptive field of the last decoded value that has no place in a `VitalSample`
/// (temperature type, user ID, glucose sample type, meal context…). For display and logs;
/// names are stable snake_case, values plain text.
public struct GATTDetail: Hashable, Sendable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// Decodes the values one device sends, in order. Holds the little state some profiles need
/// across values (multi-packet measurements, glucose measurement and context pairs), so one
/// instance serves one device connection. Pure: no I/O, no clock, no logging; any byte
/// sequence yields an event or a typed error.
public struct GATTDeviceDecoder: Sendable {
    public var options: GATTDecoderOptions
    /// Descriptive fields of the value last decoded (see `GATTDetail`); empty after an error.
    /// A glucose measurement left waiting for its context names its `sequence` here (the event
    /// is `.incomplete`, or `.measurement` of an earlier one it released);
    /// a special value names its field (`special_value`: `systolic_bp=NaN`).
    public private(set) var details: [GATTDetail] = []
    /// The descriptive fields of a glucose measurement that was waiting for its context and
    /// that the last value released without it (the next measurement came first); nil when
    /// the last value released none. Its samples, in the `.measurement` event, belong with
    /// these, not with `details` (which describe the value just decoded).
    public internal(set) var releasedDetails: [GATTDetail]?
    /// The descriptive fields of the glucose measurement waiting for its context (sample type
    /// and location…), or nil when none waits: what `finish()` releases it with.
    public var heldDetails: [GATTDetail]? { pendingGlucose?.details }
    /// A glucose measurement whose context (0x2A34) was announced and has not arrived.
    var pendingGlucose: GlucosePending?
    /// The first part of a multi-packet Body Composition Measurement.
    var pendingBodyComposition: BodyCompositionPart?

    public init() { options = GATTDecoderOptions() }
    public init(options: GATTDecoderOptions) { self.options = options }

    /// Decodes one value received from `characteristic`.
    public mutating func decode(_ characteristic: GATTCharacteristic, _ value: [UInt8]) throws(GATTDecodeError) -> GATTEvent {
        details = []
        releasedDetails = nil
        var out = GATTOutput()
        let event: GATTEvent
        switch characteristic {
        case .heartRateMeasurement: event = .measurement(try HeartRateMeasurement.decode(value))
        case .batteryLevel: event = try Self.batteryLevel(value)
        case .bloodPressureMeasurement, .intermediateCuffPressure:
            event = try BloodPressureMeasurement.decode(value, characteristic, &out)
        case .temperatureMeasurement, .intermediateTemperature:
            event = try TemperatureMeasurement.decode(value, characteristic, &out)
        case .plxSpotCheckMeasurement: event = try PLXMeasurement.spotCheck(value, &out)
        case .plxContinuousMeasurement: event = try PLXMeasurement.continuous(value, &out)
        case .weightMeasurement: event = try WeightMeasurement.decode(value, &out)
        case .bodyCompositionMeasurement: event = try decodeBodyComposition(value, &out)
        case .glucoseMeasurement: event = try decodeGlucose(value, &out)
        case .glucoseMeasurementContext: event = try decodeGlucoseContext(value, &out)
        case .cgmMeasurement: event = try CGMMeasurement.decode(value, crcPresent: options.cgmCRCPresent, &out)
        case .recordAccessControlPoint: event = .racp(try RACPResponse(decoding: value))
        case .currentTime: event = .deviceTime(DeviceTime.known(try DeviceTime.decodeCurrentTime(value)))
        case .dateTime: event = .deviceTime(DeviceTime.known(try DeviceTime.decodeDateTime(value)))
        default:
            throw GATTDecodeError(.unsupportedCharacteristic, characteristic, "no decoder for this characteristic")
        }
        details = out.details
        return event
    }

    /// The connection ended: drops any partial multi-packet measurement and any glucose
    /// measurement still waiting for its context. Returns how many partial values were
    /// dropped, for the caller's event log. (Call `finish()` first to keep a waiting glucose
    /// measurement without its context.)
    public mutating func reset() -> Int {
        let n = (pendingGlucose == nil ? 0 : 1) + (pendingBodyComposition == nil ? 0 : 1)
        pendingGlucose = nil
        pendingBodyComposition = nil
        return n
    }

    /// Samples held back waiting for a later value (a glucose measurement whose context never
    /// came, the first part of a body composition measurement), released as they are. The
    /// decoder is empty afterwards.
    public mutating func finish() -> [VitalSample] {
        var out: [VitalSample] = []
        if let g = pendingGlucose { out += g.samples }
        if let b = pendingBodyComposition { out += b.samples() }
        pendingGlucose = nil
        pendingBodyComposition = nil
        return out
    }

    /// Battery Level (0x2A19): one uint8, percent; 101–255 are reserved.
    static func batteryLevel(_ value: [UInt8]) throws(GATTDecodeError) -> GATTEvent {
        var r = GATTReader(value, .batteryLevel)
        let level = try r.uint8("Battery Level")
        try r.end()
        guard level <= 100 else { throw GATTDecodeError(.invalidField, .batteryLevel, "field Battery Level: above 100 %") }
        return .batteryLevel(Int(level))
    }
}

/// A little-endian cursor over a characteristic value that names the field it failed on.
struct GATTReader {
    let bytes: [UInt8]
    let characteristic: GATTCharacteristic
    private(set) var offset = 0

    init(_ bytes: [UInt8], _ characteristic: GATTCharacteristic) {
        self.bytes = bytes
        self.characteristic = characteristic
    }

    var remaining: Int { bytes.count - offset }

    mutating func uint8(_ field: String) throws(GATTDecodeError) -> UInt8 {
        guard remaining >= 1 else { throw truncated(field) }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func uint16(_ field: String) throws(GATTDecodeError) -> UInt16 {
        guard remaining >= 2 else { throw truncated(field) }
        defer { offset += 2 }
        return UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }

    mutating func uint24(_ field: String) throws(GATTDecodeError) -> UInt32 {
        guard remaining >= 3 else { throw truncated(field) }
        defer { offset += 3 }
        return UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
    }

    mutating func uint32(_ field: String) throws(GATTDecodeError) -> UInt32 {
        guard remaining >= 4 else { throw truncated(field) }
        defer { offset += 4 }
        return UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
            | UInt32(bytes[offset + 3]) << 24
    }

    mutating func sfloat(_ field: String) throws(GATTDecodeError) -> MDERFloat {
        MDERFloat(sfloat: try uint16(field))
    }

    mutating func float(_ field: String) throws(GATTDecodeError) -> MDERFloat {
        MDERFloat(float: try uint32(field))
    }

    /// Date Time (GATT Specification Supplement §3.70): year uint16 (1582–9999, 0 unknown),
    /// month, day (0 unknown), hours, minutes, seconds. Out-of-range values are kept as
    /// sent (`CivilDateTime.isValid` false); `GATTOutput.stamped` then gives the samples no
    /// device time and the `device_clock_unreliable` flag, and Current Time reports the
    /// time as not known.
    mutating func dateTime(_ field: String) throws(GATTDecodeError) -> CivilDateTime {
        guard remaining >= 7 else { throw truncated(field) }
        let year = try uint16(field)
        let month = try uint8(field), day = try uint8(field)
        let hour = try uint8(field), minute = try uint8(field), second = try uint8(field)
        return CivilDateTime(year: Int(year), month: Int(month), day: Int(day), hour: Int(hour),
                             minute: Int(minute), second: Int(second))
    }

    /// Fails when bytes remain after the last announced field.
    func end() throws(GATTDecodeError) {
        guard remaining == 0 else {
            throw GATTDecodeError(.trailingBytes, characteristic, "\(remaining) bytes after the last field")
        }
    }

    func truncated(_ field: String) -> GATTDecodeError {
        GATTDecodeError(.truncated, characteristic, "field \(field): truncated at byte \(offset)")
    }
}
