import VitalSigns

/// Temperature Measurement (0x2A1C) and Intermediate Temperature (0x2A1E): Health
/// Thermometer Service 1.0 §3.1, §3.3; GATT Specification Supplement §3.216 / §3.128.
///
/// Flags (uint8): bit 0 units (0 Celsius, 1 Fahrenheit); bit 1 Time Stamp present; bit 2
/// Temperature Type present; bits 3–7 reserved, ignored. Fields: Temperature Measurement
/// Value (FLOAT), Time Stamp (Date Time), Temperature Type (uint8, §3.217: 1 armpit, 2 body
/// (general), 3 ear (usually earlobe), 4 finger, 5 gastro-intestinal tract, 6 mouth,
/// 7 rectum, 8 toe, 9 tympanum; 0 and 10–255 reserved, reported as "reserved").
enum TemperatureMeasurement {
    static let types = ["", "armpit", "body", "ear", "finger", "gastrointestinal_tract", "mouth", "rectum", "toe", "tympanum"]

    static func decode(_ value: [UInt8], _ c: GATTCharacteristic, _ out: inout GATTOutput) throws(GATTDecodeError) -> GATTEvent {
        var r = GATTReader(value, c)
        let flags = try r.uint8("Flags")
        let temperature = try r.float("Temperature Measurement Value")
        let time = flags & 0x02 != 0 ? try r.dateTime("Time Stamp") : nil
        if flags & 0x04 != 0 {
            let t = Int(try r.uint8("Temperature Type"))
            out.detail("temperature_type", (1..<types.count).contains(t) ? types[t] : "reserved")
        }
        try r.end()
        out.add(.bodyTemperature, temperature, flags & 0x01 != 0 ? "[degF]" : "Cel")
        let samples = out.stamped(time: time, sequence: nil, flags: [])
        return c == .intermediateTemperature ? .intermediate(samples) : .measurement(samples)
    }
}
