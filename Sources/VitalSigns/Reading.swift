/// A value with its UCUM unit.
public struct Quantity: Hashable, Sendable, Codable, CustomStringConvertible {
    public var value: Double
    /// UCUM case-sensitive unit code, for example `%`, `/min`, `mm[Hg]`.
    public var unit: String
    public init(_ value: Double, _ unit: String) {
        self.value = value
        self.unit = unit
    }
    public var description: String { "\(value) \(unit)" }
}

/// One decoded measurement, before the gateway gives it an identity.
///
/// Decoders produce samples: they know what the device said, but not which patient it
/// belongs to nor when the bytes arrived (decoders never read the clock).
public struct VitalSample: Hashable, Sendable, Codable {
    public var vital: Vital
    public var quantity: Quantity
    /// The time the device stamped on the measurement, in its own clock, if it sent one.
    public var deviceTime: CivilDateTime?
    public var flags: QualityFlags
    /// The device's own record or sequence number, if it has one.
    public var sequence: UInt64?

    public init(vital: Vital, quantity: Quantity, deviceTime: CivilDateTime?, flags: QualityFlags = [], sequence: UInt64? = nil) {
        self.vital = vital
        self.quantity = quantity
        self.deviceTime = deviceTime
        self.flags = flags
        self.sequence = sequence
    }
}

/// A reading's deterministic identifier: the first 128 bits of SHA-256 over the device
/// identity, the vital, the device-measured time and the sequence number, as 32 hex digits.
///
/// The same measurement always gets the same ID, so any consumer of the at-least-once
/// stream can drop duplicates.
///
/// A device with no sequence numbers that streams live (a serial oximeter) sends each
/// measurement exactly once, and its clock can repeat a time (set back for daylight saving,
/// or by hand). For such a reading the gateway's arrival time stands in for the sequence
/// (`arrival`), so a repeated device time never makes a new measurement look like a duplicate
/// and vanish. The ID is fixed when the reading is committed; every resend carries it.
public struct ReadingID: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
    public static func < (a: ReadingID, b: ReadingID) -> Bool { a.rawValue < b.rawValue }
    public func encode(to encoder: any Encoder) throws { var c = encoder.singleValueContainer(); try c.encode(rawValue) }
    public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }

    /// Fields are joined with a unit separator (0x1F), which no field may contain, so two
    /// different inputs cannot produce the same preimage.
    public static func derive(device: DeviceID, vital: Vital, measuredAt: Timestamp, sequence: UInt64?,
                              arrival: Timestamp? = nil) -> ReadingID {
        var bytes = [UInt8]()
        bytes.append(contentsOf: "vigil.reading.v1".utf8)
        var fields = [device.rawValue, vital.key, String(measuredAt.millisecondsSinceEpoch), sequence.map { String($0) } ?? "-"]
        if sequence == nil, let arrival { fields.append("arrival:" + String(arrival.millisecondsSinceEpoch)) }
        for field in fields {
            bytes.append(0x1F)
            bytes.append(contentsOf: field.utf8)
        }
        return ReadingID(rawValue: SHA256.hash(bytes).prefix(16).hexString)
    }
}

/// A committed-to-be vital-sign reading with its full identity.
public struct Reading: Hashable, Sendable, Codable {
    public var id: ReadingID
    public var patient: PatientID
    public var device: DeviceID
    public var vital: Vital
    public var quantity: Quantity
    /// When the measurement was taken: the device's time converted to UTC; the gateway receive
    /// time when the device has no clock; or the receive time with `.deviceClockUnreliable`
    /// when the device's time could not be believed.
    public var measuredAt: Timestamp
    /// When the gateway received the bytes.
    public var receivedAt: Timestamp
    public var flags: QualityFlags
    public var sequence: UInt64?

    /// How old a stored record may be and still be believed: a meter holds months of results.
    public static let maxStoredRecordAgeSeconds: Int64 = 400 * 86_400

    public init(id: ReadingID, patient: PatientID, device: DeviceID, vital: Vital, quantity: Quantity,
                measuredAt: Timestamp, receivedAt: Timestamp, flags: QualityFlags, sequence: UInt64?) {
        self.id = id
        self.patient = patient
        self.device = device
        self.vital = vital
        self.quantity = quantity
        self.measuredAt = measuredAt
        self.receivedAt = receivedAt
        self.flags = flags
        self.sequence = sequence
    }

    /// Gives a decoded sample its identity.
    ///
    /// - Parameters:
    ///   - deviceUTCOffsetSeconds: the zone the device's clock is set in, seconds east of UTC.
    ///   - maxClockSkewSeconds: a device time further than this from `receivedAt` is not
    ///     trusted; the reading is stamped with `receivedAt` and flagged. A stored record (one
    ///     the device numbers: a meter's memory, a RACP back-fill, a trend dump) may be older,
    ///     up to ``maxStoredRecordAgeSeconds``; it was measured when the device says.
    ///
    /// The ID comes from what the device said (its own valid time and record number), not
    /// from whether the gateway believed the time: a record sent again — a repeated download,
    /// an indication re-sent after a crash — gets the same ID however its clock was judged.
    public init(sample: VitalSample, device: DeviceID, patient: PatientID, receivedAt: Timestamp,
                deviceUTCOffsetSeconds: Int = 0, maxClockSkewSeconds: Int64 = 86_400) {
        var flags = sample.flags
        var measuredAt = receivedAt
        var deviceInstant: Timestamp?
        // A device with no clock (a streaming oximeter) measures "now": the receive time is
        // its time, and nothing is wrong with it. A device that sends a time we cannot
        // believe (invalid, or further than the skew limit) is flagged.
        if let civil = sample.deviceTime {
            let t = civil.timestamp(utcOffsetSeconds: deviceUTCOffsetSeconds)
            let ahead = t.milliseconds(since: receivedAt)
            let pastLimit = sample.sequence == nil ? maxClockSkewSeconds : max(maxClockSkewSeconds, Self.maxStoredRecordAgeSeconds)
            if civil.isValid { deviceInstant = t }
            if civil.isValid, ahead <= maxClockSkewSeconds * 1000, -ahead <= pastLimit * 1000 {
                measuredAt = t
            } else {
                flags.insert(.deviceClockUnreliable)
            }
        }
        self.init(
            id: .derive(device: device, vital: sample.vital, measuredAt: deviceInstant ?? measuredAt, sequence: sample.sequence,
                        arrival: receivedAt),
            patient: patient, device: device, vital: sample.vital, quantity: sample.quantity,
            measuredAt: measuredAt, receivedAt: receivedAt, flags: flags, sequence: sample.sequence)
    }
}
