import VitalSigns

/// CGM Measurement (0x2AA7): Continuous Glucose Monitoring Service 1.0.1 §3.2; GATT
/// Specification Supplement §3.58. One value holds one or more records, each:
///
/// Size (uint8, the record's length including Size and E2E-CRC), Flags (uint8: bit 0 CGM
/// Trend Information present, bit 1 CGM Quality present, bits 2–4 reserved, bit 5 Sensor
/// Status Annunciation Warning-Octet present, bit 6 Cal/Temp-Octet present, bit 7
/// Status-Octet present), CGM Glucose Concentration (SFLOAT, mg/dL), Time Offset (uint16,
/// minutes since the session start), Sensor Status Annunciation (only its present octets,
/// least significant first: Status, then Cal/Temp, then Warning), Trend (SFLOAT,
/// mg/dL/min), Quality (SFLOAT, %), E2E-CRC (uint16) when the CGM Feature says so.
///
/// Annunciation order: the SIG's characteristic definition (org.bluetooth.characteristic.
/// cgm_measurement; CGMS 1.0.1 §3.2.1.5) makes Sensor Status Annunciation one field of up to
/// three octets, bits 0–7 Status, 8–15 Cal/Temp, 16–23 Warning, fields "in the order of LSO
/// to MSO", "only the affected octet(s) shall be added"; CGM Status (0x2AA9) carries the same
/// structure, always three octets. Wireshark's btatt dissector and the UHN (ehealthinnovation)
/// collector read it that way. Nordic's Android-BLE-Common-Library and Cypress's PSoC CGMS
/// example read/write Warning first; that contradicts the field definition (it follows the
/// flag bit numbering, 0x20 Warning … 0x80 Status, not the bit positions of the field).
///
/// E2E-CRC: CRC-CCITT, polynomial x^16 + x^12 + x^5 + 1, bits processed least significant
/// first, seed 0xFFFF, no final XOR (CGMS §3.10 "E2E-CRC"), over the record minus the CRC.
///
/// The record has no absolute time (the Session Start Time characteristic gives it), so the
/// sample has no `deviceTime`; its Time Offset is its `sequence`, the key RACP uses for CGM
/// records (filter type "Time Offset").
enum CGMMeasurement {
    static func decode(_ value: [UInt8], crcPresent: Bool, _ out: inout GATTOutput) throws(GATTDecodeError) -> GATTEvent {
        let c = GATTCharacteristic.cgmMeasurement
        guard !value.isEmpty else { throw GATTDecodeError(.truncated, c, "field Size: truncated at byte 0") }
        var all: [VitalSample] = []
        var start = 0
        var index = 0
        while start < value.count {
            index += 1
            let size = Int(value[start])
            guard size >= 6 else {
                throw GATTDecodeError(.invalidField, c, "record \(index) field Size: below the 6-byte minimum")
            }
            guard start + size <= value.count else {
                throw GATTDecodeError(.truncated, c, "record \(index): Size runs past the end of the value (byte \(value.count))")
            }
            let record = Array(value[start..<(start + size)])
            all += try decodeRecord(record, index: index, crcPresent: crcPresent, &out)
            start += size
        }
        return .measurement(all)
    }

    static func decodeRecord(_ record: [UInt8], index: Int, crcPresent: Bool, _ out: inout GATTOutput) throws(GATTDecodeError) -> [VitalSample] {
        let c = GATTCharacteristic.cgmMeasurement
        var r = GATTReader(record, c)
        _ = try r.uint8("Size")
        let flags = try r.uint8("Flags")
        var fields = 6
        if flags & 0x01 != 0 { fields += 2 }
        if flags & 0x02 != 0 { fields += 2 }
        fields += (flags & 0x20 != 0 ? 1 : 0) + (flags & 0x40 != 0 ? 1 : 0) + (flags & 0x80 != 0 ? 1 : 0)
        let hasCRC: Bool
        if record.count == fields + 2 {
            hasCRC = true
        } else if record.count == fields, !crcPresent {
            hasCRC = false
        } else {
            throw GATTDecodeError(.invalidField, c, "record \(index) field Size: disagrees with its flags"
                                  + (crcPresent ? " and the E2E-CRC" : ""))
        }
        if hasCRC {
            let sent = UInt16(record[fields]) | UInt16(record[fields + 1]) << 8
            guard crc16MCRF4XX(record[0..<fields]) == sent else {
                throw GATTDecodeError(.crc, c, "record \(index): E2E-CRC does not match")
            }
        }
        let glucose = try r.sfloat("CGM Glucose Concentration")
        let offset = try r.uint16("Time Offset")
        var annunciation: UInt32 = 0
        // One field, least significant octet first, only the present octets (see above).
        if flags & 0x80 != 0 { annunciation |= UInt32(try r.uint8("Sensor Status Annunciation Status")) }
        if flags & 0x40 != 0 { annunciation |= UInt32(try r.uint8("Sensor Status Annunciation Cal/Temp")) << 8 }
        if flags & 0x20 != 0 { annunciation |= UInt32(try r.uint8("Sensor Status Annunciation Warning")) << 16 }
        let trend = flags & 0x01 != 0 ? try r.sfloat("CGM Trend Information") : nil
        let quality = flags & 0x02 != 0 ? try r.sfloat("CGM Quality") : nil
        if hasCRC { _ = try r.uint16("E2E-CRC") }
        try r.end()

        var rec = GATTOutput()
        rec.detail("time_offset", String(offset) + " min")
        if let trend { rec.detail("trend", trend.doubleValue.map { JSONNumber.text($0) + " mg/dL/min" } ?? trend.description) }
        if let quality { rec.detail("quality", quality.doubleValue.map { JSONNumber.text($0) + " %" } ?? quality.description) }
        let q = annunciationFlags(annunciation, &rec)
        rec.add(.interstitialGlucose, glucose, "mg/dL")
        out.details += rec.details
        return rec.stamped(time: nil, sequence: UInt64(offset), flags: q)
    }

    /// Sensor Status Annunciation (CGMS §3.2.1.5): Status octet bits 0–7, Cal/Temp bits 8–15,
    /// Warning bits 16–23, as in the CGM Status characteristic.
    static func annunciationFlags(_ a: UInt32, _ out: inout GATTOutput) -> QualityFlags {
        func on(_ bit: Int) -> Bool { a >> UInt32(bit) & 1 != 0 }
        var q = QualityFlags()
        if on(0) { out.detail("session_stopped", "true") }
        if on(1) { out.detail("device_battery_low", "true") }
        if on(2) || on(3) || on(5) { q.insert(.sensorFault) }  // sensor type incorrect, malfunction, device fault
        if on(4) { q.insert(.deviceAlarm) }  // device specific alert
        if on(8) { out.detail("time_synchronization_required", "true") }
        if on(9) { out.detail("calibration_not_allowed", "true") }
        if on(10) { out.detail("calibration_recommended", "true") }
        if on(11) || on(12) || on(13) { q.insert(.questionableMeasurement) }  // calibration required, sensor temperature
        if (16...21).contains(where: on) { q.insert(.deviceAlarm) }  // patient levels, hypo/hyper, rate of change
        if on(22) { q.insert(.belowMeasuringRange) }  // lower than the device can process
        if on(23) { q.insert(.aboveMeasuringRange) }  // higher than the device can process
        return q
    }
}

/// CRC-16/MCRF4XX: CRC-CCITT reflected (0x8408), seed 0xFFFF, no final XOR.
func crc16MCRF4XX<C: Collection<UInt8>>(_ bytes: C) -> UInt16 {
    var crc: UInt16 = 0xFFFF
    for b in bytes {
        crc ^= UInt16(b)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x8408 : crc >> 1 }
    }
    return crc
}
