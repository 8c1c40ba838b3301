import VitalSigns

/// A glucose measurement held until its context arrives.
struct GlucosePending: Sendable {
    var sequence: UInt16
    var samples: [VitalSample]
    var details: [GATTDetail]
    var time: CivilDateTime?
    var flags: QualityFlags
}

/// Glucose Measurement (0x2A18) and Glucose Measurement Context (0x2A34): Glucose Service
/// 1.0 §3.106–3.107 (GATT Specification Supplement §3.105–3.106).
///
/// Measurement flags (uint8): bit 0 Time Offset present, bit 1 Glucose Concentration, Type
/// and Sample Location present, bit 2 concentration units (0 kg/L, 1 mol/L), bit 3 Sensor
/// Status Annunciation present, bit 4 Context Information follows; bits 5–7 reserved.
/// Fields: Sequence Number (uint16), Base Time (Date Time), Time Offset (sint16, minutes),
/// Glucose Concentration (SFLOAT), Type (low nibble) and Sample Location (high nibble),
/// Sensor Status Annunciation (uint16).
///
/// kg/L is reported as mg/dL (× 10^5) and mol/L as mmol/L (× 10^3), by moving the decimal
/// exponent, so the value stays exact; the quantity keeps the device's dimension (no molar
/// mass conversion). The sequence number becomes `VitalSample.sequence`, which RACP back-fill
/// resumes from.
enum GlucoseMeasurement {
    static let types = ["", "capillary_whole_blood", "capillary_plasma", "venous_whole_blood", "venous_plasma",
                        "arterial_whole_blood", "arterial_plasma", "undetermined_whole_blood", "undetermined_plasma",
                        "interstitial_fluid", "control_solution"]
    static let locations = ["", "finger", "alternate_site_test", "earlobe", "control_solution"]

    struct Decoded {
        var pending: GlucosePending
        var contextFollows: Bool
    }

    static func decode(_ value: [UInt8], _ out: inout GATTOutput) throws(GATTDecodeError) -> Decoded {
        var r = GATTReader(value, .glucoseMeasurement)
        let flags = try r.uint8("Flags")
        let sequence = try r.uint16("Sequence Number")
        let base = try r.dateTime("Base Time")
        let offset = flags & 0x01 != 0 ? Int(Int16(bitPattern: try r.uint16("Time Offset"))) : 0
        var concentration: MDERFloat?
        var type = 0, location = 0
        if flags & 0x02 != 0 {
            concentration = try r.sfloat("Glucose Concentration")
            let tl = try r.uint8("Type-Sample Location")
            type = Int(tl & 0x0F)
            location = Int(tl >> 4)
        }
        let ssa = flags & 0x08 != 0 ? try r.uint16("Sensor Status Annunciation") : 0
        try r.end()

        var quality = QualityFlags()
        var time: CivilDateTime? = addingMinutes(base, offset)
        if concentration != nil {
            out.detail("sample_type", (1..<types.count).contains(type) ? types[type] : "reserved")
            out.detail("sample_location", location == 15 ? "not_available"
                       : (1..<locations.count).contains(location) ? locations[location] : "reserved")
            if type == 10 || location == 4 { quality.insert(.notPatientData) }
        }
        func on(_ bit: Int) -> Bool { ssa >> UInt16(bit) & 1 != 0 }
        if on(0) { out.detail("device_battery_low", "true") }
        if on(1) || on(10) { quality.insert(.sensorFault) }  // sensor malfunction, general device fault
        if on(2) || on(3) || on(4) || on(7) || on(8) || on(9) {
            // sample size insufficient, strip insertion error, strip type incorrect,
            // temperature too high / too low for a valid test, read interrupted
            quality.insert(.questionableMeasurement)
        }
        if on(5) { quality.insert(.aboveMeasuringRange) }  // result higher than the device can process
        if on(6) { quality.insert(.belowMeasuringRange) }  // result lower than the device can process
        if on(11) {  // time fault: the base time cannot be believed
            quality.insert(.deviceClockUnreliable)
            time = nil
        }
        if let concentration {
            let vital: Vital = type == 9 ? .interstitialGlucose : .bloodGlucose
            if flags & 0x04 != 0 {
                out.add(vital, concentration, "mmol/L", shift: 3)
            } else {
                out.add(vital, concentration, "mg/dL", shift: 5)
            }
        }
        let samples = out.stamped(time: time, sequence: UInt64(sequence), flags: quality)
        return Decoded(pending: GlucosePending(sequence: sequence, samples: samples, details: out.details, time: time,
                                               flags: quality),
                       contextFollows: flags & 0x10 != 0)
    }

    static let carbohydrates = ["", "breakfast", "lunch", "dinner", "snack", "drink", "supper", "brunch"]
    static let meals = ["", "preprandial", "postprandial", "fasting", "casual", "bedtime"]
    static let testers = ["", "self", "health_care_professional", "lab_test"]
    static let healths = ["", "minor_health_issues", "major_health_issues", "during_menses", "under_stress", "no_health_issues"]
    static let medications = ["", "rapid_acting_insulin", "short_acting_insulin", "intermediate_acting_insulin",
                              "long_acting_insulin", "pre_mixed_insulin"]

    static func name(_ table: [String], _ v: Int, notAvailable: Bool = false) -> String {
        if notAvailable, v == 15 { return "not_available" }
        return (1..<table.count).contains(v) ? table[v] : "reserved"
    }

    /// Glucose Measurement Context flags (uint8): bit 0 Carbohydrate ID and Carbohydrate
    /// present, 1 Meal, 2 Tester-Health, 3 Exercise Duration and Intensity, 4 Medication ID
    /// and Medication, 5 medication units (0 kg, 1 L), 6 HbA1c, 7 Extended Flags present.
    /// Fields in that order after Sequence Number (uint16) and Extended Flags (uint8):
    /// Carbohydrate ID (uint8), Carbohydrate (SFLOAT, kg), Meal (uint8), Tester (low nibble)
    /// and Health (high nibble), Exercise Duration (uint16, s; 65535 overrun), Exercise
    /// Intensity (uint8, %), Medication ID (uint8), Medication (SFLOAT, kg or L), HbA1c (SFLOAT, %).
    static func decodeContext(_ value: [UInt8], _ out: inout GATTOutput) throws(GATTDecodeError) -> (UInt16, MDERFloat?) {
        var r = GATTReader(value, .glucoseMeasurementContext)
        let flags = try r.uint8("Flags")
        let sequence = try r.uint16("Sequence Number")
        if flags & 0x80 != 0 { _ = try r.uint8("Extended Flags") }  // all bits reserved
        if flags & 0x01 != 0 {
            out.detail("carbohydrate_id", name(carbohydrates, Int(try r.uint8("Carbohydrate ID"))))
            let carbs = try r.sfloat("Carbohydrate")
            out.detail("carbohydrate", carbs.scaled(byPowerOfTen: 3).map { JSONNumber.text($0) + " g" } ?? carbs.description)
        }
        if flags & 0x02 != 0 { out.detail("meal", name(meals, Int(try r.uint8("Meal")))) }
        if flags & 0x04 != 0 {
            let th = Int(try r.uint8("Tester-Health"))
            out.detail("tester", name(testers, th & 0x0F, notAvailable: true))
            out.detail("health", name(healths, th >> 4, notAvailable: true))
        }
        if flags & 0x08 != 0 {
            let d = try r.uint16("Exercise Duration")
            out.detail("exercise_duration", d == 0xFFFF ? "overrun" : String(d) + " s")
            out.detail("exercise_intensity", String(try r.uint8("Exercise Intensity")) + " %")
        }
        if flags & 0x10 != 0 {
            out.detail("medication_id", name(medications, Int(try r.uint8("Medication ID"))))
            let m = try r.sfloat("Medication")
            let text = flags & 0x20 != 0 ? m.scaled(byPowerOfTen: 3).map { JSONNumber.text($0) + " mL" }
                : m.scaled(byPowerOfTen: 6).map { JSONNumber.text($0) + " mg" }
            out.detail("medication", text ?? m.description)
        }
        let hba1c = flags & 0x40 != 0 ? try r.sfloat("HbA1c") : nil
        try r.end()
        return (sequence, hba1c)
    }
}

extension GATTDeviceDecoder {
    mutating func decodeGlucose(_ value: [UInt8], _ out: inout GATTOutput) throws(GATTDecodeError) -> GATTEvent {
        let decoded = try GlucoseMeasurement.decode(value, &out)
        // A measurement still waiting means its context never came: release it as it is,
        // with its own details (`releasedDetails`), not this value's.
        let earlier = pendingGlucose?.samples ?? []
        if let held = pendingGlucose, !held.samples.isEmpty { releasedDetails = held.details }
        pendingGlucose = nil
        if decoded.contextFollows {
            pendingGlucose = decoded.pending
            // Names the measurement now held, whatever this value's event is (`.incomplete`,
            // or `.measurement` of an earlier one it released), so the renderer can attribute
            // it to this value when its context releases it.
            out.detail("sequence", String(decoded.pending.sequence))
            return earlier.isEmpty ? .incomplete : .measurement(earlier)
        }
        return .measurement(earlier + decoded.pending.samples)
    }

    mutating func decodeGlucoseContext(_ value: [UInt8], _ out: inout GATTOutput) throws(GATTDecodeError) -> GATTEvent {
        var ctx = GATTOutput()
        let (sequence, hba1c) = try GlucoseMeasurement.decodeContext(value, &ctx)
        guard let pending = pendingGlucose, pending.sequence == sequence else {
            throw GATTDecodeError(.outOfSequence, .glucoseMeasurementContext,
                                  "no glucose measurement awaits a context with this sequence number")
        }
        pendingGlucose = nil
        if let hba1c { ctx.add(.hemoglobinA1c, hba1c, "%") }
        out.details = pending.details + ctx.details
        // Only the HbA1c is new; the measurement's own samples keep their flags.
        let extra = ctx.stamped(time: pending.time, sequence: UInt64(sequence), flags: [])
        return .measurement(pending.samples + extra)
    }
}
