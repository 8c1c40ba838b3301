import DeviceDecoding
import VitalSigns

/// Builds characteristic values field by field, little-endian, the way a device would.
struct GATTPayload {
    var bytes: [UInt8] = []

    mutating func u8(_ v: Int) { bytes.append(UInt8(truncatingIfNeeded: v)) }
    mutating func u16(_ v: Int) { bytes += [UInt8(truncatingIfNeeded: v), UInt8(truncatingIfNeeded: v >> 8)] }
    mutating func u24(_ v: Int) { u16(v & 0xFFFF); u8(v >> 16) }
    mutating func sfloat(_ m: Int, _ e: Int) { u16((e & 0xF) << 12 | (m & 0x0FFF)) }
    mutating func float(_ m: Int, _ e: Int) { u16(m & 0xFFFF); u8((m >> 16) & 0xFF); u8(e & 0xFF) }
    mutating func time(_ y: Int, _ mo: Int, _ d: Int, _ h: Int, _ mi: Int, _ s: Int) {
        u16(y); u8(mo); u8(d); u8(h); u8(mi); u8(s)
    }
}

/// A decoded value, for checks: the samples of a measurement or intermediate event.
func samples(_ event: GATTEvent) -> [VitalSample] {
    switch event {
    case .measurement(let s), .intermediate(let s): s
    default: []
    }
}

func sample(_ event: GATTEvent, _ vital: Vital) -> VitalSample? { samples(event).first { $0.vital == vital } }

func details(_ decoder: GATTDeviceDecoder) -> [String: String] {
    var out: [String: String] = [:]
    for d in decoder.details where out[d.name] == nil { out[d.name] = d.value }
    return out
}

let testTime = CivilDateTime(year: 2026, month: 11, day: 25, hour: 14, minute: 30, second: 5)

/// CRC-16/MCRF4XX written out independently of the decoder's (bitwise, the textbook way).
func referenceCRC(_ bytes: [UInt8]) -> UInt16 {
    var crc: UInt16 = 0xFFFF
    for b in bytes {
        for i in 0..<8 {
            let bit = (UInt16(b) >> UInt16(i)) & 1
            let top = crc & 1
            crc >>= 1
            if top ^ bit != 0 { crc ^= 0x8408 }
        }
    }
    return crc
}

/// Valid payloads of every characteristic, from the flag loops, for the truncation and
/// fuzz tests. Glucose contexts follow their measurement.
enum GATTCorpus {
    static func bloodPressure(_ flags: Int, status: Int = 0x25) -> [UInt8] {
        var p = GATTPayload()
        p.u8(flags)
        if flags & 1 != 0 { p.sfloat(160, -1); p.sfloat(107, -1); p.sfloat(133, -1) } else { p.sfloat(120, 0); p.sfloat(80, 0); p.sfloat(93, 0) }
        if flags & 2 != 0 { p.time(2026, 11, 25, 14, 30, 5) }
        if flags & 4 != 0 { p.sfloat(72, 0) }
        if flags & 8 != 0 { p.u8(3) }
        if flags & 16 != 0 { p.u16(status) }
        return p.bytes
    }

    static func temperature(_ flags: Int, type: Int = 6) -> [UInt8] {
        var p = GATTPayload()
        p.u8(flags)
        if flags & 1 != 0 { p.float(986, -1) } else { p.float(367, -1) }
        if flags & 2 != 0 { p.time(2026, 11, 25, 14, 30, 5) }
        if flags & 4 != 0 { p.u8(type) }
        return p.bytes
    }

    static func plxSpot(_ flags: Int, ms: Int = 0x0080, dss: Int = 0x000020) -> [UInt8] {
        var p = GATTPayload()
        p.u8(flags)
        p.sfloat(97, 0); p.sfloat(64, 0)
        if flags & 1 != 0 { p.time(2026, 11, 25, 14, 30, 5) }
        if flags & 2 != 0 { p.u16(ms) }
        if flags & 4 != 0 { p.u24(dss) }
        if flags & 8 != 0 { p.sfloat(52, -1) }
        return p.bytes
    }

    static func plxContinuous(_ flags: Int, ms: Int = 0x0080, dss: Int = 0x000020) -> [UInt8] {
        var p = GATTPayload()
        p.u8(flags)
        p.sfloat(96, 0); p.sfloat(70, 0)
        if flags & 1 != 0 { p.sfloat(95, 0); p.sfloat(71, 0) }
        if flags & 2 != 0 { p.sfloat(97, 0); p.sfloat(69, 0) }
        if flags & 4 != 0 { p.u16(ms) }
        if flags & 8 != 0 { p.u24(dss) }
        if flags & 16 != 0 { p.sfloat(18, -1) }
        return p.bytes
    }

    static func weight(_ flags: Int) -> [UInt8] {
        var p = GATTPayload()
        p.u8(flags)
        p.u16(flags & 1 != 0 ? 15432 : 14000)
        if flags & 2 != 0 { p.time(2026, 11, 25, 7, 0, 0) }
        if flags & 4 != 0 { p.u8(1) }
        if flags & 8 != 0 { p.u16(245); p.u16(flags & 1 != 0 ? 689 : 1750) }
        return p.bytes
    }

    /// Body Composition with every optional field numbered so each can be checked.
    static func bodyComposition(_ flags: Int) -> [UInt8] {
        var p = GATTPayload()
        p.u16(flags)
        p.u16(215)  // 21.5 %
        if flags & 0x0002 != 0 { p.time(2026, 11, 25, 7, 0, 0) }
        if flags & 0x0004 != 0 { p.u8(2) }
        if flags & 0x0008 != 0 { p.u16(6500) }
        if flags & 0x0010 != 0 { p.u16(402) }
        for bit in [0x0020, 0x0040, 0x0080, 0x0100] where flags & bit != 0 { p.u16(5000 + bit) }
        if flags & 0x0200 != 0 { p.u16(5123) }
        if flags & 0x0400 != 0 { p.u16(flags & 1 != 0 ? 15432 : 14000) }
        if flags & 0x0800 != 0 { p.u16(flags & 1 != 0 ? 689 : 1750) }
        return p.bytes
    }

    static func glucose(_ flags: Int, sequence: Int = 7, ssa: Int = 0, typeLocation: Int = 0x11) -> [UInt8] {
        var p = GATTPayload()
        p.u8(flags)
        p.u16(sequence)
        p.time(2026, 11, 25, 7, 55, 0)
        if flags & 1 != 0 { p.u16(-5) }
        if flags & 2 != 0 {
            if flags & 4 != 0 { p.sfloat(55, -4) } else { p.sfloat(95, -5) }
            p.u8(typeLocation)
        }
        if flags & 8 != 0 { p.u16(ssa) }
        return p.bytes
    }

    static func glucoseContext(_ flags: Int, sequence: Int = 7) -> [UInt8] {
        var p = GATTPayload()
        p.u8(flags)
        p.u16(sequence)
        if flags & 0x80 != 0 { p.u8(0) }
        if flags & 0x01 != 0 { p.u8(1); p.sfloat(45, -3) }
        if flags & 0x02 != 0 { p.u8(1) }
        if flags & 0x04 != 0 { p.u8(0x51) }
        if flags & 0x08 != 0 { p.u16(1800); p.u8(40) }
        if flags & 0x10 != 0 { p.u8(1); p.sfloat(4, -6) }
        if flags & 0x40 != 0 { p.sfloat(62, -1) }
        return p.bytes
    }

    static func cgmRecord(_ flags: Int, glucose: Int = 112, offset: Int = 600, crc: Bool, annunciation: (Int, Int, Int) = (0x10, 0x08, 0x02)) -> [UInt8] {
        var p = GATTPayload()
        p.u8(0)
        p.u8(flags)
        p.sfloat(glucose, 0)
        p.u16(offset)
        // `annunciation` is (Warning, Cal/Temp, Status); on the air the field goes least
        // significant octet first, only the present ones: Status, Cal/Temp, Warning
        // (org.bluetooth.characteristic.cgm_measurement, CGMS 1.0.1 §3.2.1.5).
        if flags & 0x80 != 0 { p.u8(annunciation.2) }
        if flags & 0x40 != 0 { p.u8(annunciation.1) }
        if flags & 0x20 != 0 { p.u8(annunciation.0) }
        if flags & 0x01 != 0 { p.sfloat(-15, -1) }
        if flags & 0x02 != 0 { p.sfloat(98, 0) }
        p.bytes[0] = UInt8(p.bytes.count + (crc ? 2 : 0))
        if crc {
            let c = referenceCRC(p.bytes)
            p.u16(Int(c))
        }
        return p.bytes
    }

    static let cgmFlagValues: [Int] = (0..<32).map { i in (i & 3) | (i >> 2) << 5 }

    /// Every valid payload the flag loops produce, with its characteristic, each decodable
    /// on its own by a fresh decoder (no glucose context: it needs its measurement first).
    static var all: [(GATTCharacteristic, [UInt8])] {
        var out: [(GATTCharacteristic, [UInt8])] = []
        for f in 0..<32 { out.append((.bloodPressureMeasurement, bloodPressure(f))); out.append((.intermediateCuffPressure, bloodPressure(f))) }
        for f in 0..<8 { out.append((.temperatureMeasurement, temperature(f))); out.append((.intermediateTemperature, temperature(f))) }
        for f in 0..<32 { out.append((.plxSpotCheckMeasurement, plxSpot(f))); out.append((.plxContinuousMeasurement, plxContinuous(f))) }
        for f in 0..<16 { out.append((.weightMeasurement, weight(f))) }
        for f in stride(from: 0, to: 0x1000, by: 7) { out.append((.bodyCompositionMeasurement, bodyComposition(f))) }
        for f in 0..<32 { out.append((.glucoseMeasurement, glucose(f))) }
        for f in cgmFlagValues { out.append((.cgmMeasurement, cgmRecord(f, crc: false))); out.append((.cgmMeasurement, cgmRecord(f, crc: true))) }
        out.append((.recordAccessControlPoint, [0x05, 0x00, 0x2A, 0x00]))
        out.append((.recordAccessControlPoint, [0x06, 0x00, 0x01, 0x06]))
        out.append((.currentTime, [0xEA, 0x07, 11, 25, 14, 30, 5, 3, 128, 1]))
        out.append((.dateTime, [0xEA, 0x07, 11, 25, 14, 30, 5]))
        out.append((.batteryLevel, [55]))
        for f in 0..<32 where f & 0x10 == 0 {
            var p = GATTPayload()
            p.u8(f)
            if f & 1 != 0 { p.u16(72) } else { p.u8(72) }
            if f & 8 != 0 { p.u16(300) }
            if f & 0x10 != 0 { p.u16(800) }
            out.append((.heartRateMeasurement, p.bytes))
        }
        return out
    }
}
