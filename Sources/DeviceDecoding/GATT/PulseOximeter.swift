import VitalSigns

/// PLX Spot-Check Measurement (0x2A5E) and PLX Continuous Measurement (0x2A5F): Pulse
/// Oximeter Service 1.0.1 §3.1–3.2, Tables 3.4 and 3.5; GATT Specification Supplement
/// §3.175 / §3.174.
///
/// Spot-check flags (uint8): bit 0 Timestamp present, bit 1 Measurement Status present,
/// bit 2 Device and Sensor Status present, bit 3 Pulse Amplitude Index present, bit 4 device
/// clock is not set; bits 5–7 reserved. Fields: SpO2 (SFLOAT, %), PR (SFLOAT, /min),
/// Timestamp, Measurement Status (uint16), Device and Sensor Status (uint24), PAI (SFLOAT, %).
///
/// Continuous flags (uint8): bit 0 SpO2PR-Fast present, bit 1 SpO2PR-Slow present, bit 2
/// Measurement Status present, bit 3 Device and Sensor Status present, bit 4 PAI present;
/// bits 5–7 reserved. Fields: SpO2PR-Normal (2 × SFLOAT), -Fast, -Slow, status, status, PAI.
/// No timestamp: the gateway's receive time stands in.
enum PLXMeasurement {
    static func spotCheck(_ value: [UInt8], _ out: inout GATTOutput) throws(GATTDecodeError) -> GATTEvent {
        var r = GATTReader(value, .plxSpotCheckMeasurement)
        let flags = try r.uint8("Flags")
        let spo2 = try r.sfloat("SpO2")
        let pr = try r.sfloat("PR")
        var time = flags & 0x01 != 0 ? try r.dateTime("Timestamp") : nil
        let ms = flags & 0x02 != 0 ? try r.uint16("Measurement Status") : 0
        let dss = flags & 0x04 != 0 ? try r.uint24("Device and Sensor Status") : 0
        let pai = flags & 0x08 != 0 ? try r.sfloat("Pulse Amplitude Index") : nil
        try r.end()
        var quality = statusFlags(ms, dss, &out)
        // Bit 4: the device's clock was never set, so its timestamp names no real instant.
        if flags & 0x10 != 0 {
            quality.insert(.deviceClockUnreliable)
            time = nil
        }
        out.add(.spo2, spo2, "%")
        out.add(.pulseRate, pr, "/min")
        if let pai { out.add(.perfusionIndex, pai, "%") }
        return .measurement(out.stamped(time: time, sequence: nil, flags: quality))
    }

    static func continuous(_ value: [UInt8], _ out: inout GATTOutput) throws(GATTDecodeError) -> GATTEvent {
        var r = GATTReader(value, .plxContinuousMeasurement)
        let flags = try r.uint8("Flags")
        let spo2 = try r.sfloat("SpO2PR-Normal SpO2")
        let pr = try r.sfloat("SpO2PR-Normal PR")
        if flags & 0x01 != 0 {
            let s = try r.sfloat("SpO2PR-Fast SpO2"), p = try r.sfloat("SpO2PR-Fast PR")
            out.detail("spo2_fast", s.doubleValue.map { JSONNumber.text($0) } ?? s.description)
            out.detail("pr_fast", p.doubleValue.map { JSONNumber.text($0) } ?? p.description)
        }
        if flags & 0x02 != 0 {
            let s = try r.sfloat("SpO2PR-Slow SpO2"), p = try r.sfloat("SpO2PR-Slow PR")
            out.detail("spo2_slow", s.doubleValue.map { JSONNumber.text($0) } ?? s.description)
            out.detail("pr_slow", p.doubleValue.map { JSONNumber.text($0) } ?? p.description)
        }
        let ms = flags & 0x04 != 0 ? try r.uint16("Measurement Status") : 0
        let dss = flags & 0x08 != 0 ? try r.uint24("Device and Sensor Status") : 0
        let pai = flags & 0x10 != 0 ? try r.sfloat("Pulse Amplitude Index") : nil
        try r.end()
        var quality = statusFlags(ms, dss, &out)
        // Stored data on the continuous characteristic has no time of its own: the receive
        // time the gateway would give it is wrong (CLINICAL.md §5.2).
        if ms & 0x0200 != 0 { quality.insert(.deviceClockUnreliable) }
        out.add(.spo2, spo2, "%")
        out.add(.pulseRate, pr, "/min")
        if let pai { out.add(.perfusionIndex, pai, "%") }
        return .measurement(out.stamped(time: nil, sequence: nil, flags: quality))
    }

    /// Measurement Status (Table 3.4) and Device and Sensor Status (Table 3.5) as quality
    /// flags, following CLINICAL.md §5.2. Bits that report good news (validated, fully
    /// qualified, extended display update) or are reserved set nothing.
    static func statusFlags(_ ms: UInt16, _ dss: UInt32, _ out: inout GATTOutput) -> QualityFlags {
        var q = QualityFlags()
        func on(_ word: UInt32, _ bit: Int) -> Bool { word >> UInt32(bit) & 1 != 0 }
        let m = UInt32(ms)
        if on(m, 5) { q.insert(.searching) }  // measurement ongoing
        if on(m, 6) { q.insert(.searching) }  // early estimated data
        if on(m, 7) { out.detail("validated", "true") }
        if on(m, 8) { out.detail("fully_qualified", "true") }
        if on(m, 9) { q.insert(.storedData) }
        if on(m, 10) || on(m, 11) { q.insert(.notPatientData) }  // demonstration, testing
        if on(m, 12) { q.insert(.searching) }  // calibration ongoing
        if on(m, 13) || on(m, 15) { q.insert(.invalidMeasurement) }  // unavailable, invalid
        if on(m, 14) { q.insert(.questionableMeasurement) }
        if on(dss, 1) || on(dss, 12) || on(dss, 14) { q.insert(.sensorFault) }  // malfunction, unknown, sensor malfunctioning
        if on(dss, 2) || on(dss, 6) || on(dss, 10) { q.insert(.artifact) }  // processing irregularity, erratic, interference
        if on(dss, 3) || on(dss, 4) || on(dss, 7) { q.insert(.lowSignal) }  // inadequate, poor, non-pulsatile
        if on(dss, 5) { q.insert(.lowPerfusion) }
        if on(dss, 8) { q.insert(.questionableMeasurement) }  // questionable pulse
        if on(dss, 9) { q.insert(.searching) }  // signal analysis ongoing
        if on(dss, 11) || on(dss, 13) || on(dss, 15) { q.insert(.sensorOff) }  // unconnected, displaced, disconnected
        return q
    }
}

/// Shortest round-trip text of a number, as JSON prints it.
enum JSONNumber {
    static func text(_ d: Double) -> String { JSONValue.format(d) }
}
