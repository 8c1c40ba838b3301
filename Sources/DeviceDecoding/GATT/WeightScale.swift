import VitalSigns

/// Weight Measurement (0x2A9D): Weight Scale Service 1.0 §3.1; GATT Specification Supplement
/// §3.245. Flags (uint8): bit 0 units (0 SI, 1 imperial), bit 1 Time Stamp present, bit 2
/// User ID present, bit 3 BMI and Height present; bits 4–7 reserved. Fields: Weight (uint16;
/// SI 0.005 kg, imperial 0.01 lb; 0xFFFF "measurement unsuccessful"), Time Stamp, User ID,
/// BMI (uint16, 0.1 kg/m²), Height (uint16; SI 0.001 m, imperial 0.1 in).
enum WeightMeasurement {
    static func decode(_ value: [UInt8], _ out: inout GATTOutput) throws(GATTDecodeError) -> GATTEvent {
        var r = GATTReader(value, .weightMeasurement)
        let flags = try r.uint8("Flags")
        let imperial = flags & 0x01 != 0
        let weight = try r.uint16("Weight")
        let time = flags & 0x02 != 0 ? try r.dateTime("Time Stamp") : nil
        if flags & 0x04 != 0 { out.detail("user_id", userIDText(try r.uint8("User ID"))) }
        var bmi: UInt16?, height: UInt16?
        if flags & 0x08 != 0 {
            bmi = try r.uint16("BMI")
            height = try r.uint16("Height")
        }
        try r.end()
        addMass(&out, .bodyWeight, weight, imperial)
        if let bmi { out.add(.bodyMassIndex, raw: bmi, exponent: -1, "kg/m2") }
        if let height { addHeight(&out, height, imperial) }
        return .measurement(out.stamped(time: time, sequence: nil, flags: []))
    }

    /// A mass field: SI 0.005 kg, imperial 0.01 lb; 0xFFFF is "measurement unsuccessful".
    static func addMass(_ out: inout GATTOutput, _ vital: Vital, _ raw: UInt16, _ imperial: Bool) {
        if imperial {
            out.add(vital, raw: raw, exponent: -2, "[lb_av]")
        } else {
            out.add(vital, raw: raw, multiplier: 5, exponent: -3, "kg")
        }
    }

    static func addHeight(_ out: inout GATTOutput, _ raw: UInt16, _ imperial: Bool) {
        if imperial {
            out.add(.bodyHeight, raw: raw, exponent: -1, "[in_i]", unsuccessful: nil)
        } else {
            out.add(.bodyHeight, raw: raw, exponent: -3, "m", unsuccessful: nil)
        }
    }
}

/// One Body Composition Measurement value (a whole measurement, or the first of two parts).
struct BodyCompositionPart: Sendable {
    var samples0: [VitalSample]
    var details: [GATTDetail]
    var droppedSpecial: Bool
    var time: CivilDateTime?

    func samples() -> [VitalSample] {
        var out = GATTOutput()
        out.samples = samples0
        out.droppedSpecial = droppedSpecial
        return out.stamped(time: time, sequence: nil, flags: [])
    }
}

/// Body Composition Measurement (0x2A9C): Body Composition Service 1.0 §3.2; GATT
/// Specification Supplement §3.33.
///
/// Flags (uint16): bit 0 units (0 SI, 1 imperial), 1 Time Stamp, 2 User ID, 3 Basal
/// Metabolism, 4 Muscle Percentage, 5 Muscle Mass, 6 Fat Free Mass, 7 Soft Lean Mass, 8 Body
/// Water Mass, 9 Impedance, 10 Weight, 11 Height present; 12 Multiple Packet Measurement;
/// 13–15 reserved. Fields: Body Fat Percentage (uint16, 0.1 %, always present; 0xFFFF
/// "measurement unsuccessful"), Time Stamp, User ID, Basal Metabolism (uint16, kJ), Muscle
/// Percentage (0.1 %), four masses (SI 0.005 kg / imperial 0.01 lb), Impedance (0.1 Ω),
/// Weight (mass), Height (SI 0.001 m / imperial 0.1 in).
///
/// A measurement larger than one ATT payload is split in two values, both with bit 12 set
/// (BCS 1.0 §4.2.1.3; the largest value, 30 bytes, never needs more than two at the default
/// MTU): the first is `.incomplete`, the second completes the measurement. A field present in
/// both parts is taken from the first.
enum BodyCompositionMeasurement {
    static func decode(_ value: [UInt8]) throws(GATTDecodeError) -> (part: BodyCompositionPart, multiPacket: Bool) {
        var out = GATTOutput()
        var r = GATTReader(value, .bodyCompositionMeasurement)
        let flags = try r.uint16("Flags")
        let imperial = flags & 0x0001 != 0
        let massUnit = imperial ? "[lb_av]" : "kg"
        func mass(_ raw: UInt16) -> String {
            raw == 0xFFFF ? "unsuccessful"
                : JSONNumber.text(imperial ? decimalDouble(Int64(raw), -2) : decimalDouble(Int64(raw) * 5, -3)) + " " + massUnit
        }
        let fat = try r.uint16("Body Fat Percentage")
        let time = flags & 0x0002 != 0 ? try r.dateTime("Time Stamp") : nil
        if flags & 0x0004 != 0 { out.detail("user_id", userIDText(try r.uint8("User ID"))) }
        if flags & 0x0008 != 0 { out.detail("basal_metabolism", String(try r.uint16("Basal Metabolism")) + " kJ") }
        if flags & 0x0010 != 0 {
            out.detail("muscle_percentage", JSONNumber.text(decimalDouble(Int64(try r.uint16("Muscle Percentage")), -1)) + " %")
        }
        if flags & 0x0020 != 0 { out.detail("muscle_mass", mass(try r.uint16("Muscle Mass"))) }
        if flags & 0x0040 != 0 { out.detail("fat_free_mass", mass(try r.uint16("Fat Free Mass"))) }
        if flags & 0x0080 != 0 { out.detail("soft_lean_mass", mass(try r.uint16("Soft Lean Mass"))) }
        if flags & 0x0100 != 0 { out.detail("body_water_mass", mass(try r.uint16("Body Water Mass"))) }
        if flags & 0x0200 != 0 {
            out.detail("impedance", JSONNumber.text(decimalDouble(Int64(try r.uint16("Impedance")), -1)) + " Ohm")
        }
        let weight = flags & 0x0400 != 0 ? try r.uint16("Weight") : nil
        let height = flags & 0x0800 != 0 ? try r.uint16("Height") : nil
        try r.end()
        out.add(.bodyFatPercentage, raw: fat, exponent: -1, "%")
        if let weight { WeightMeasurement.addMass(&out, .bodyWeight, weight, imperial) }
        if let height { WeightMeasurement.addHeight(&out, height, imperial) }
        let part = BodyCompositionPart(samples0: out.samples, details: out.details, droppedSpecial: out.droppedSpecial, time: time)
        return (part, flags & 0x1000 != 0)
    }
}

extension GATTDeviceDecoder {
    mutating func decodeBodyComposition(_ value: [UInt8], _ out: inout GATTOutput) throws(GATTDecodeError) -> GATTEvent {
        let (part, multi) = try BodyCompositionMeasurement.decode(value)
        out.details = part.details
        guard let first = pendingBodyComposition else {
            if multi {
                pendingBodyComposition = part
                return .incomplete
            }
            return .measurement(part.samples())
        }
        pendingBodyComposition = nil
        guard multi else {
            // A whole measurement after a lone first part: the first part's values were
            // measured; release them with the new measurement rather than lose them.
            return .measurement(first.samples() + part.samples())
        }
        var merged = first
        let have = Set(first.samples0.map(\.vital.key))
        merged.samples0 += part.samples0.filter { !have.contains($0.vital.key) }
        merged.droppedSpecial = first.droppedSpecial || part.droppedSpecial
        merged.time = first.time ?? part.time
        out.details = first.details + part.details
        return .measurement(merged.samples())
    }
}
