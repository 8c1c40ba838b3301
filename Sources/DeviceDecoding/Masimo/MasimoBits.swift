public import VitalSigns

/// One bit of the `EXC` (exception) mask of Masimo serial output.
///
/// Sources (see `firmware-fixtures/README.md`): Rad-8 Operator's Manual, section 4 "Trend
/// data format", exception bits 0x001–0x800; MD PnP `pox_rad/src/poxrad_discrete.h`
/// (Radical-5/-7 serial output), bits 0x000001–0x800000.
public struct MasimoExceptionBit: Sendable, Hashable {
    public var mask: UInt32
    /// The manual's name for the condition.
    public var name: String
    /// What the condition means for the values on the line.
    public var flags: QualityFlags

    /// Every documented bit, lowest first. Bits not listed (reserved) set no flag.
    public static let all: [MasimoExceptionBit] = [
        .init(mask: 0x000001, name: "No Sensor", flags: .sensorOff),
        .init(mask: 0x000002, name: "Defective Sensor", flags: .sensorFault),
        .init(mask: 0x000004, name: "Low Perfusion", flags: .lowPerfusion),
        .init(mask: 0x000008, name: "Pulse Search", flags: .searching),
        .init(mask: 0x000010, name: "Interference", flags: .artifact),
        .init(mask: 0x000020, name: "Sensor Off", flags: .sensorOff),
        .init(mask: 0x000040, name: "Ambient Light", flags: .artifact),
        .init(mask: 0x000080, name: "Unrecognized Sensor", flags: .sensorFault),
        // Radical-7 only (Rad-8 manual: reserved).
        .init(mask: 0x000100, name: "Incompatible Sensor", flags: .sensorFault),
        .init(mask: 0x000200, name: "reserved", flags: []),
        .init(mask: 0x000400, name: "Low Signal IQ", flags: .lowSignal),
        // Informational: the SET algorithm runs in full mode. Normal operation sets it.
        .init(mask: 0x000800, name: "Masimo SET", flags: []),
        // 0x001000 and above: Radical-7 (rainbow) cable and sensor conditions.
        .init(mask: 0x001000, name: "No Cable Connected", flags: .sensorOff),
        .init(mask: 0x002000, name: "Cable Life Expired", flags: .sensorFault),
        .init(mask: 0x004000, name: "Incompatible Cable", flags: .sensorFault),
        .init(mask: 0x008000, name: "Unrecognized Cable", flags: .sensorFault),
        .init(mask: 0x010000, name: "Defective Cable", flags: .sensorFault),
        // Values are not yet settled while the sensor calibrates: like pulse search.
        .init(mask: 0x020000, name: "Sensor Calibrating", flags: .searching),
        .init(mask: 0x040000, name: "Sensor Life Expired", flags: .sensorFault),
        .init(mask: 0x080000, name: "Emitter Temp Out of Range", flags: .sensorFault),
        .init(mask: 0x100000, name: "Sensor Current Limit Exceeded", flags: .sensorFault),
        // SpCO / SpMet confidence: Vigil does not read those parameters.
        .init(mask: 0x200000, name: "SpCO Low Confidence", flags: []),
        .init(mask: 0x400000, name: "SpMET Low Confidence", flags: []),
        .init(mask: 0x800000, name: "reserved", flags: []),
    ]

    /// The quality flags an `EXC` mask puts on every value of its line.
    public static func flags(for exc: UInt32) -> QualityFlags {
        var f = QualityFlags()
        for bit in all where exc & bit.mask != 0 { f.formUnion(bit.flags) }
        return f
    }
}

/// One bit of the `ALARM` mask of Masimo serial output.
///
/// Source: MD PnP `pox_rad/src/poxrad_discrete.h` `alarmmessage()` (Radical-5/-7). The
/// Rad-8 manual available to us does not tabulate the serial ALARM field; its Rad-8
/// subset (SpO2 and pulse-rate limits, alarm active/silenced, low battery) is assumed the
/// same, which the example line `ALARM=0000` is consistent with.
public struct MasimoAlarmBit: Sendable, Hashable {
    public var mask: UInt32
    public var name: String
    /// The vital whose value the alarm is about; nil for the device-wide "alarm active",
    /// which marks every value on the line.
    public var vital: Vital?
    /// Whether the bit marks values at all (silenced and low battery do not: they are
    /// device state, not a statement about a measurement).
    public var marksValues: Bool

    public static let all: [MasimoAlarmBit] = [
        .init(mask: 0x0001, name: "SpO2 High Alarm Limit violated", vital: .spo2, marksValues: true),
        .init(mask: 0x0002, name: "SpO2 Low Alarm Limit violated", vital: .spo2, marksValues: true),
        .init(mask: 0x0004, name: "Pulse Rate High Alarm Limit violated", vital: .pulseRate, marksValues: true),
        .init(mask: 0x0008, name: "Pulse Rate Low Alarm Limit violated", vital: .pulseRate, marksValues: true),
        .init(mask: 0x0010, name: "Alarm Active", vital: nil, marksValues: true),
        .init(mask: 0x0020, name: "Alarm Silenced", vital: nil, marksValues: false),
        .init(mask: 0x0040, name: "Low Battery", vital: nil, marksValues: false),
        .init(mask: 0x0080, name: "reserved", vital: nil, marksValues: false),
        .init(mask: 0x0100, name: "SpCO High Alarm Limit violated", vital: nil, marksValues: false),
        .init(mask: 0x0200, name: "SpCO Low Alarm Limit violated", vital: nil, marksValues: false),
        .init(mask: 0x0400, name: "SpMET High Alarm Limit violated", vital: nil, marksValues: false),
        .init(mask: 0x0800, name: "SpMET Low Alarm Limit violated", vital: nil, marksValues: false),
        .init(mask: 0x1000, name: "Desaturation Index Alarm violated", vital: .spo2, marksValues: true),
        .init(mask: 0x2000, name: "PI Rate of Change Alarm violated", vital: .perfusionIndex, marksValues: true),
    ]

    /// `.deviceAlarm` if an alarm bit about `vital` (or the device-wide alarm-active bit) is set.
    public static func flags(for alarm: UInt32, vital: Vital) -> QualityFlags {
        for bit in all where alarm & bit.mask != 0 && bit.marksValues && (bit.vital == nil || bit.vital == vital) {
            return .deviceAlarm
        }
        return []
    }
}
