public import VitalSigns

/// Current Time (0x2A2B; Current Time Service 1.1 §3.1, GSS §3.62) and Date Time (0x2A08;
/// GSS §3.70).
///
/// Current Time = Exact Time 256 + Adjust Reason: Date Time (7 bytes), Day of Week (uint8,
/// 1 Monday … 7 Sunday, 0 unknown), Fractions256 (uint8, 1/256 s), Adjust Reason (uint8:
/// bit 0 manual time update, 1 external reference, 2 time zone change, 3 DST change).
public enum GATTCurrentTime {
    /// The Current Time value to write so a device's clock reads `time` (its own zone's wall
    /// clock). Day of week is computed; milliseconds become Fractions256 (rounded down).
    public static func encode(_ time: CivilDateTime, adjustReason: UInt8 = 0x01) -> [UInt8] {
        var dow: UInt8 = 0
        if time.isValid {
            let midnight = CivilDateTime(year: time.year, month: time.month, day: time.day, hour: 0, minute: 0, second: 0)
            let days = midnight.timestamp(utcOffsetSeconds: 0).millisecondsSinceEpoch / 86_400_000
            // 1970-01-01 was a Thursday (4 in the GATT numbering, Monday = 1).
            let d = ((days % 7) + 7 + 3) % 7
            dow = UInt8(d + 1)
        }
        let y = UInt16(clamping: time.year)
        let fractions = UInt8(clamping: min(max(time.millisecond, 0), 999) * 256 / 1000)
        var out: [UInt8] = [UInt8(y & 0xFF), UInt8(y >> 8)]
        out.append(UInt8(clamping: time.month))
        out.append(UInt8(clamping: time.day))
        out.append(UInt8(clamping: time.hour))
        out.append(UInt8(clamping: time.minute))
        out.append(UInt8(clamping: time.second))
        out += [dow, fractions, adjustReason]
        return out
    }
}

enum DeviceTime {
    /// `t`, or nil when its date is "not known" (a 0 year, month or day, GSS §3.70) or
    /// impossible: such a clock names no instant, and printing it (0000-04-05T…) would look
    /// like a time.
    static func known(_ t: CivilDateTime) -> CivilDateTime? { t.isValid ? t : nil }

    static func decodeCurrentTime(_ value: [UInt8]) throws(GATTDecodeError) -> CivilDateTime {
        var r = GATTReader(value, .currentTime)
        var t = try r.dateTime("Date Time")
        _ = try r.uint8("Day of Week")  // derived from the date; a wrong one changes nothing
        let fractions = try r.uint8("Fractions256")
        _ = try r.uint8("Adjust Reason")
        try r.end()
        t.millisecond = Int(fractions) * 1000 / 256
        return t
    }

    static func decodeDateTime(_ value: [UInt8]) throws(GATTDecodeError) -> CivilDateTime {
        var r = GATTReader(value, .dateTime)
        let t = try r.dateTime("Date Time")
        try r.end()
        return t
    }
}
