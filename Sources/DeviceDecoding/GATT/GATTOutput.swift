import VitalSigns

/// Collects what one characteristic value yields: samples, descriptive details, and whether a
/// field held a special value (which gives no sample and flags the rest of the measurement).
struct GATTOutput {
    var samples: [VitalSample] = []
    var details: [GATTDetail] = []
    var droppedSpecial = false

    mutating func detail(_ name: String, _ value: String) { details.append(GATTDetail(name, value)) }

    /// Adds a sample for an IEEE 11073 number shifted by 10^`shift`; a special value adds no
    /// sample, only a detail naming the field and which special value it was (not patient data).
    mutating func add(_ vital: Vital, _ number: MDERFloat, _ unit: String, shift: Int = 0, flags: QualityFlags = []) {
        if let v = number.scaled(byPowerOfTen: shift) {
            samples.append(VitalSample(vital: vital, quantity: Quantity(v, unit), deviceTime: nil, flags: flags))
        } else {
            special(vital.key, number.description)
        }
    }

    /// Adds a sample for an unsigned fixed-point field `raw × multiplier × 10^exponent`, where
    /// `unsuccessful` (if given) is the field's "measurement unsuccessful" code.
    mutating func add(_ vital: Vital, raw: UInt16, multiplier: Int64 = 1, exponent: Int, _ unit: String,
                      unsuccessful: UInt16? = 0xFFFF) {
        if let unsuccessful, raw == unsuccessful {
            special(vital.key, "unsuccessful")
            return
        }
        samples.append(VitalSample(vital: vital, quantity: Quantity(decimalDouble(Int64(raw) * multiplier, exponent), unit),
                                   deviceTime: nil))
    }

    mutating func special(_ field: String, _ what: String) {
        droppedSpecial = true
        detail("special_value", field + "=" + what)
    }

    /// Stamps every sample with the measurement's time, sequence and flags. A device time
    /// whose date is "not known" (year, month or day 0: GATT Specification Supplement §3.70)
    /// or impossible (`CivilDateTime.isValid` false: 2026-02-30, 25:00) names no instant: the
    /// samples get no `deviceTime` and the `device_clock_unreliable` flag, so the gateway
    /// stamps them with the receive time and says so (CLINICAL.md §5.2).
    func stamped(time: CivilDateTime?, sequence: UInt64?, flags: QualityFlags) -> [VitalSample] {
        var all = flags
        if droppedSpecial { all.insert(.specialValue) }
        var time = time
        if let t = time, !t.isValid {
            time = nil
            all.insert(.deviceClockUnreliable)
        }
        return samples.map { s in
            var s = s
            s.deviceTime = time
            s.sequence = sequence
            s.flags.formUnion(all)
            return s
        }
    }
}

/// User ID (GATT Specification Supplement: uint8, 0xFF = unknown user).
func userIDText(_ id: UInt8) -> String { id == 0xFF ? "unknown" : String(id) }

/// `civil` plus `minutes`, through UTC arithmetic (no zone is involved: both are wall-clock).
/// An invalid base time is returned unchanged so the reading is flagged, not silently moved.
func addingMinutes(_ civil: CivilDateTime, _ minutes: Int) -> CivilDateTime {
    guard civil.isValid else { return civil }
    return CivilDateTime(utc: civil.timestamp(utcOffsetSeconds: 0).adding(seconds: Int64(minutes) * 60))
}
