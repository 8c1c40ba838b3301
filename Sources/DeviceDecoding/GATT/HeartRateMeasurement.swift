import VitalSigns

/// Heart Rate Measurement (0x2A37), Heart Rate Service 1.0 §3.1 and the GATT Specification
/// Supplement §3.113.
///
/// Flags: bit 0 value format (0 = uint8, 1 = uint16, /min); bits 1–2 sensor contact status
/// (bit 2 = feature supported, bit 1 = contact detected); bit 3 Energy Expended present
/// (uint16, kJ); bit 4 RR-Interval present (uint16 each, 1/1024 s, as many as fit).
/// Bits 5–7 are reserved for future use: ignored, as the specification asks of a client.
enum HeartRateMeasurement {
    static func decode(_ value: [UInt8]) throws(GATTDecodeError) -> [VitalSample] {
        var r = GATTReader(value, .heartRateMeasurement)
        let flags = try r.uint8("Flags")
        let rate = flags & 0x01 != 0 ? Int(try r.uint16("Heart Rate Measurement Value")) : Int(try r.uint8("Heart Rate Measurement Value"))
        if flags & 0x08 != 0 { _ = try r.uint16("Energy Expended") }
        if flags & 0x10 != 0 {
            // RR-Intervals fill the rest of the value in whole uint16s.
            guard r.remaining > 0, r.remaining % 2 == 0 else {
                throw GATTDecodeError(.truncated, .heartRateMeasurement, "field RR-Interval: \(r.remaining) bytes, not a whole number of intervals")
            }
            while r.remaining > 0 { _ = try r.uint16("RR-Interval") }
        }
        try r.end()
        var quality = QualityFlags()
        // Contact supported (bit 2) but not detected (bit 1): the strap is not on the skin.
        if flags & 0x06 == 0x04 { quality.insert(.sensorOff) }
        return [VitalSample(vital: .heartRate, quantity: Quantity(Double(rate), "/min"), deviceTime: nil, flags: quality)]
    }
}
