/// What a device said about the quality of one measurement.
///
/// Flags travel with the reading to the care team and gate the clinical rules: a flagged
/// reading is forwarded but never raises an escalation on its own.
public struct QualityFlags: OptionSet, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// The sensor is off the patient or disconnected.
    public static let sensorOff = QualityFlags(rawValue: 1 << 0)
    /// Pulse amplitude too low for a trustworthy value.
    public static let lowPerfusion = QualityFlags(rawValue: 1 << 1)
    /// Motion or interference artifact.
    public static let artifact = QualityFlags(rawValue: 1 << 2)
    /// The device is searching for a pulse; values are not yet settled.
    public static let searching = QualityFlags(rawValue: 1 << 3)
    /// The device reports a weak or poor-quality signal.
    public static let lowSignal = QualityFlags(rawValue: 1 << 4)
    /// The sensor is defective, unrecognised or missing.
    public static let sensorFault = QualityFlags(rawValue: 1 << 5)
    /// Body movement during the measurement (BLS §3.1.1.5).
    public static let bodyMovement = QualityFlags(rawValue: 1 << 6)
    /// Cuff too loose or too tight.
    public static let cuffFit = QualityFlags(rawValue: 1 << 7)
    /// Irregular pulse detected.
    public static let irregularPulse = QualityFlags(rawValue: 1 << 8)
    /// Pulse rate outside the device's range.
    public static let pulseRateRange = QualityFlags(rawValue: 1 << 9)
    /// Improper measurement position.
    public static let position = QualityFlags(rawValue: 1 << 10)
    /// The device's clock could not be trusted; the measured time is the gateway's estimate.
    public static let deviceClockUnreliable = QualityFlags(rawValue: 1 << 11)
    /// The device raised an alarm with this value.
    public static let deviceAlarm = QualityFlags(rawValue: 1 << 12)
    /// The true value is above the device's measuring range (a meter's "HI"); the quantity is
    /// the top of that range. Not a quality problem: a HI glucose must still escalate.
    public static let aboveMeasuringRange = QualityFlags(rawValue: 1 << 13)
    /// The true value is below the device's measuring range (a meter's "LO"); the quantity is
    /// the bottom of that range. Not a quality problem: a LO glucose must still escalate.
    public static let belowMeasuringRange = QualityFlags(rawValue: 1 << 14)
    /// Another field of the same measurement held an IEEE 11073 special value (NaN, NRes,
    /// ±INF, reserved) or a "measurement unsuccessful" code, and gave no reading. The values
    /// that did arrive were measured: not clinically unreliable by itself.
    public static let specialValue = QualityFlags(rawValue: 1 << 15)
    /// The device took this from its measurement storage rather than measuring it now
    /// (PLXS 1.0.1 Table 3.4 bit 9). Not unreliable by itself; the time may be.
    public static let storedData = QualityFlags(rawValue: 1 << 16)
    /// Not a patient measurement: demonstration or test data (PLXS Table 3.4 bits 10–11) or a
    /// control-solution test (GLS 1.0 §3.106 sample type/location). Never escalates.
    public static let notPatientData = QualityFlags(rawValue: 1 << 17)
    /// The device itself calls the value questionable (PLXS Table 3.4 bit 14, Table 3.5 bit 8;
    /// a glucose strip or sample problem; a CGM calibration or temperature annunciation).
    public static let questionableMeasurement = QualityFlags(rawValue: 1 << 18)
    /// The device says the measurement is invalid or unavailable (PLXS Table 3.4 bits 13, 15).
    public static let invalidMeasurement = QualityFlags(rawValue: 1 << 19)

    /// Flags that make a value unfit to raise an escalation by itself.
    public static let clinicallyUnreliable: QualityFlags = [
        .sensorOff, .lowPerfusion, .artifact, .searching, .sensorFault, .bodyMovement, .cuffFit,
        .irregularPulse, .lowSignal, .position,
        // Appended with the GATT decoders (CLINICAL.md §5.2: questionable readings never fire
        // threshold alerts on their own; demo/test/control-solution values are no patient's).
        .notPatientData, .questionableMeasurement, .invalidMeasurement,
    ]

    /// The stable names used in payloads and on the command line, in bit order.
    public static let names: [(QualityFlags, String)] = [
        (.sensorOff, "sensor_off"), (.lowPerfusion, "low_perfusion"), (.artifact, "artifact"),
        (.searching, "searching"), (.lowSignal, "low_signal"), (.sensorFault, "sensor_fault"),
        (.bodyMovement, "body_movement"), (.cuffFit, "cuff_fit"), (.irregularPulse, "irregular_pulse"),
        (.pulseRateRange, "pulse_rate_range"), (.position, "position"),
        (.deviceClockUnreliable, "device_clock_unreliable"), (.deviceAlarm, "device_alarm"),
        (.aboveMeasuringRange, "above_measuring_range"), (.belowMeasuringRange, "below_measuring_range"),
        (.specialValue, "special_value"), (.storedData, "stored_data"), (.notPatientData, "not_patient_data"),
        (.questionableMeasurement, "questionable_measurement"), (.invalidMeasurement, "invalid_measurement"),
    ]

    /// The set flags' names, in bit order.
    public var nameList: [String] { Self.names.filter { contains($0.0) }.map(\.1) }

    public var description: String { nameList.joined(separator: ",") }

    /// Parses a list of flag names; returns nil naming nothing if any name is unknown.
    public init?(names: [String]) {
        var flags = QualityFlags()
        for name in names {
            guard let flag = Self.names.first(where: { $0.1 == name })?.0 else { return nil }
            flags.insert(flag)
        }
        self = flags
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(nameList)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let list = try container.decode([String].self)
        guard let flags = QualityFlags(names: list) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "unknown quality flag in \(list)")
        }
        self = flags
    }
}
