import VitalSigns

/// Blood Pressure Measurement (0x2A35) and Intermediate Cuff Pressure (0x2A36): Blood
/// Pressure Service 1.0 §3.1–3.2; GATT Specification Supplement §3.31 / §3.127.
///
/// Flags (uint8): bit 0 units (0 mmHg, 1 kPa); bit 1 Time Stamp present; bit 2 Pulse Rate
/// present; bit 3 User ID present; bit 4 Measurement Status present; bits 5–7 reserved for
/// future use, ignored as the specification asks of a client.
/// Fields: systolic, diastolic, mean arterial pressure (SFLOAT, in the flagged unit), Time
/// Stamp (Date Time), Pulse Rate (SFLOAT, /min), User ID (uint8), Measurement Status (uint16).
/// Intermediate Cuff Pressure carries the current cuff pressure in the systolic field; its
/// diastolic and mean fields are unused (NaN) and ignored.
///
/// Measurement Status: bit 0 body movement, bit 1 cuff fit (too loose), bit 2 irregular
/// pulse, bits 3–4 pulse rate range (0 within, 1 above upper limit, 2 below lower limit,
/// 3 reserved), bit 5 improper measurement position, bits 6–15 reserved.
enum BloodPressureMeasurement {
    static func decode(_ value: [UInt8], _ c: GATTCharacteristic, _ out: inout GATTOutput) throws(GATTDecodeError) -> GATTEvent {
        var r = GATTReader(value, c)
        let flags = try r.uint8("Flags")
        let unit = flags & 0x01 != 0 ? "kPa" : "mm[Hg]"
        let intermediate = c == .intermediateCuffPressure
        let systolic = try r.sfloat(intermediate ? "Current Cuff Pressure" : "Systolic")
        let diastolic = try r.sfloat("Diastolic")
        let mean = try r.sfloat("Mean Arterial Pressure")
        let time = flags & 0x02 != 0 ? try r.dateTime("Time Stamp") : nil
        let pulse = flags & 0x04 != 0 ? try r.sfloat("Pulse Rate") : nil
        if flags & 0x08 != 0 { out.detail("user_id", userIDText(try r.uint8("User ID"))) }
        let status = flags & 0x10 != 0 ? try r.uint16("Measurement Status") : 0
        try r.end()

        var quality = QualityFlags()
        if status & 0x0001 != 0 { quality.insert(.bodyMovement) }
        if status & 0x0002 != 0 { quality.insert(.cuffFit) }
        if status & 0x0004 != 0 { quality.insert(.irregularPulse) }
        if status & 0x0020 != 0 { quality.insert(.position) }
        var pulseFlags = QualityFlags()
        switch (status >> 3) & 0x03 {
        case 1: pulseFlags.insert(.pulseRateRange); out.detail("pulse_rate_range", "above_upper_limit")
        case 2: pulseFlags.insert(.pulseRateRange); out.detail("pulse_rate_range", "below_lower_limit")
        default: break  // 0 within range; 3 reserved: no claim either way
        }

        if intermediate {
            out.add(.cuffPressure, systolic, unit)
        } else {
            out.add(.systolicPressure, systolic, unit)
            out.add(.diastolicPressure, diastolic, unit)
            out.add(.meanArterialPressure, mean, unit)
        }
        // The pulse-range status speaks of the pulse only, never of the pressures.
        if let pulse { out.add(.pulseRate, pulse, "/min", flags: pulseFlags) }
        let samples = out.stamped(time: time, sequence: nil, flags: quality)
        return intermediate ? .intermediate(samples) : .measurement(samples)
    }
}
