public import DeviceDecoding

/// The `ble:` section of a device profile: which GATT characteristics to subscribe to and how
/// the device bends the Bluetooth SIG health profiles. Data only; the daemon's BLE supervisor
/// acts on it.
///
/// ```yaml
/// ble:
///   services: ["1810", "180F"]
///   subscribe:
///     - {characteristic: "2A35", mode: indicate}
///     - {characteristic: "2A36", mode: notify, optional: true}
///   read: ["2A19"]
///   bonding: required
///   address_type: public
///   racp: false
///   current_time: write
///   clock: {zone: local, correct: true, max_offset_seconds: 120}
///   quirks: [time_write_before_data, disconnects_after_transfer]
/// ```
public struct BLEParameters: Sendable, Hashable, Decodable {
    /// The `decoder:` every BLE profile names: the one `GATTDeviceDecoder`, which decodes
    /// every SIG health characteristic with no per-device code.
    public static let decoderName = "gatt"

    /// Bonding (LE pairing with stored keys). A device that needs it refuses to send
    /// measurements, or to accept CCCD writes, over an unencrypted link; the ATT socket's
    /// security level is then raised to medium before discovery (Core v5.3 Vol 3 Part C §10).
    public enum Bonding: String, Sendable, Hashable, Decodable { case required, none }

    /// The LE address type the device advertises with (Core v5.3 Vol 6 Part B §1.3):
    /// `public` (IEEE-assigned) or `random` (static random, as most consumer devices use).
    public enum AddressType: String, Sendable, Hashable, Decodable { case `public`, random }

    /// What the gateway does with the device's Current Time Service (CTS, 0x1805):
    /// `write` sets the device clock to the gateway's after connecting, `read` only reads it
    /// to measure the offset, `none` leaves it alone (no CTS, or writes are harmful).
    public enum CurrentTime: String, Sendable, Hashable, Decodable { case write, read, none }

    /// Notifications carry no confirmation; indications are confirmed by the gateway, and
    /// only after the reading is committed (ATT, Core v5.3 Vol 3 Part F §3.4.7).
    public enum SubscriptionMode: String, Sendable, Hashable, Decodable { case notify, indicate }

    /// One characteristic to enable with its Client Characteristic Configuration descriptor.
    public struct Subscription: Sendable, Hashable, Decodable {
        public var characteristic: GATTCharacteristic
        public var mode: SubscriptionMode
        /// When true the device may lack it (an intermediate cuff pressure), and its absence
        /// is not an error.
        public var optional: Bool

        enum CodingKeys: String, CodingKey { case characteristic, mode, optional }

        public init(characteristic: GATTCharacteristic, mode: SubscriptionMode, optional: Bool = false) {
            self.characteristic = characteristic
            self.mode = mode
            self.optional = optional
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            characteristic = try BLEParameters.characteristic(try c.decode(String.self, forKey: .characteristic), c, .characteristic)
            mode = try c.decode(SubscriptionMode.self, forKey: .mode)
            optional = try c.decodeIfPresent(Bool.self, forKey: .optional) ?? false
        }
    }

    /// How far the device's clock can be believed.
    public struct Clock: Sendable, Hashable, Decodable {
        /// The zone the device keeps its clock in. `utc`: SIG timestamps are UTC-less civil
        /// times (GATT Specification Supplement §3.70, Date Time), but CTS-writing gateways set
        /// them to UTC; `local`: the user set the clock to local time on the device (the
        /// site's `clock_utc_offset` then applies).
        public enum Zone: String, Sendable, Hashable, Decodable { case utc, local }

        public var zone: Zone
        /// False for a device with no real-time clock, whose timestamps (if any) are ignored
        /// and whose readings are stamped with the gateway's receive time.
        public var hasClock: Bool
        /// When true, timestamps are corrected by the offset measured at connection (device
        /// time minus gateway time, from Current Time) and not flagged; when false, readings
        /// from a device whose clock is off by more than `maxOffsetSeconds` are flagged
        /// `device_clock_unreliable`.
        public var correct: Bool
        /// Seconds; an offset beyond this makes the device's clock unreliable. Default 120.
        public var maxOffsetSeconds: Int

        enum CodingKeys: String, CodingKey {
            case zone, correct
            case hasClock = "has_clock"
            case maxOffsetSeconds = "max_offset_seconds"
        }

        public init(zone: Zone = .utc, hasClock: Bool = true, correct: Bool = false, maxOffsetSeconds: Int = 120) {
            self.zone = zone
            self.hasClock = hasClock
            self.correct = correct
            self.maxOffsetSeconds = maxOffsetSeconds
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let d = Clock()
            zone = try c.decodeIfPresent(Zone.self, forKey: .zone) ?? d.zone
            hasClock = try c.decodeIfPresent(Bool.self, forKey: .hasClock) ?? d.hasClock
            correct = try c.decodeIfPresent(Bool.self, forKey: .correct) ?? d.correct
            maxOffsetSeconds = try c.decodeIfPresent(Int.self, forKey: .maxOffsetSeconds) ?? d.maxOffsetSeconds
            guard (1...31_536_000).contains(maxOffsetSeconds) else {
                throw DecodingError.dataCorruptedError(forKey: .maxOffsetSeconds, in: c, debugDescription: "must be between 1 and 31536000")
            }
        }
    }

    /// Known ways real devices bend the SIG profiles. Each has one documented meaning, and a
    /// new quirk needs code, never just a new word. vigild's BLE supervisor acts on
    /// `time_write_before_data`, `time_via_date_time`, `disconnects_after_transfer`,
    /// `throttle_continuous` and `racp_no_records_is_success`; `sends_stored_on_connect` and
    /// `vendor_service_ignored` need no action beyond the standard session; `multi_user` and
    /// `variable_name` are recorded for pairing and matching, which are not yet built.
    public enum Quirk: String, Sendable, Hashable, Decodable, CaseIterable {
        /// The device sends its measurements only after its clock has been written (A&D
        /// UA/UC series: "set the time after pairing"), so the time write comes before the
        /// CCCD writes instead of after.
        case timeWriteBeforeData = "time_write_before_data"
        /// The device sets its clock through the Date Time characteristic (0x2A08) of its
        /// measurement service rather than the Current Time Service.
        case timeViaDateTime = "time_via_date_time"
        /// The device disconnects by itself once its stored measurements have been sent. That
        /// is the end of a session, not a link failure: reconnect without backing off.
        case disconnectsAfterTransfer = "disconnects_after_transfer"
        /// On connection the device indicates every stored measurement without being asked
        /// (no RACP); records are deleted once confirmed, so confirmations wait for the commit.
        case sendsStoredOnConnect = "sends_stored_on_connect"
        /// Several users share the device; the measurement's User ID field (BLS v1.1.1 §3.1,
        /// flags bit 3; WSS flags bit 2) tells them apart; keeping only one user's readings needs a
        /// per-device user index, not yet built.
        case multiUser = "multi_user"
        /// The device's advertised name changes (carries a serial number or user index):
        /// match on service UUIDs and address, never the full name.
        case variableName = "variable_name"
        /// The device answers RACP "report stored records" with "no records found" instead of
        /// an empty success when the filter matches nothing; both mean "up to date".
        case racpNoRecordsIsSuccess = "racp_no_records_is_success"
        /// The device streams PLX continuous values faster than a reading per second; only one
        /// per second is committed.
        case throttleContinuous = "throttle_continuous"
        /// The device exposes a vendor service beside the SIG one; Vigil reads only the SIG one.
        case vendorServiceIgnored = "vendor_service_ignored"
    }

    /// Primary services the device must expose (16-bit as four hex digits, or 128-bit).
    public var services: [String]
    public var subscribe: [Subscription]
    /// Characteristics read once per connection (Battery Level, 0x2A19).
    public var read: [GATTCharacteristic]
    public var bonding: Bonding
    public var addressType: AddressType
    /// Whether to back-fill stored records with the Record Access Control Point (0x2A52)
    /// "report stored records" from the last committed sequence number (GLS v1.0 §3.2, PLXS
    /// v1.0.1 §3.3, WSS has none: scales use `sends_stored_on_connect`).
    public var racp: Bool
    public var currentTime: CurrentTime
    public var clock: Clock
    public var quirks: [Quirk]

    enum CodingKeys: String, CodingKey {
        case services, subscribe, read, bonding, racp, clock, quirks
        case addressType = "address_type"
        case currentTime = "current_time"
    }

    public func has(_ quirk: Quirk) -> Bool { quirks.contains(quirk) }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        services = try c.decode([String].self, forKey: .services)
        guard !services.isEmpty else {
            throw DecodingError.dataCorruptedError(forKey: .services, in: c, debugDescription: "must list at least one service")
        }
        for s in services where !Self.isServiceUUID(s) {
            throw DecodingError.dataCorruptedError(
                forKey: .services, in: c, debugDescription: "'\(s.prefix(40))' is not a 16-bit (180D) or 128-bit service UUID")
        }
        subscribe = try c.decode([Subscription].self, forKey: .subscribe)
        guard !subscribe.isEmpty else {
            throw DecodingError.dataCorruptedError(forKey: .subscribe, in: c, debugDescription: "must list at least one characteristic")
        }
        var seen = Set<GATTCharacteristic>()
        for s in subscribe where !seen.insert(s.characteristic).inserted {
            throw DecodingError.dataCorruptedError(forKey: .subscribe, in: c, debugDescription: "characteristic \(s.characteristic) is listed twice")
        }
        read = try (c.decodeIfPresent([String].self, forKey: .read) ?? []).map { try Self.characteristic($0, c, .read) }
        bonding = try c.decodeIfPresent(Bonding.self, forKey: .bonding) ?? .none
        addressType = try c.decodeIfPresent(AddressType.self, forKey: .addressType) ?? .public
        racp = try c.decodeIfPresent(Bool.self, forKey: .racp) ?? false
        if racp, !subscribe.contains(where: { $0.characteristic == .recordAccessControlPoint && $0.mode == .indicate }) {
            throw DecodingError.dataCorruptedError(
                forKey: .racp, in: c, debugDescription: "racp: true needs the Record Access Control Point (2A52) subscribed with mode indicate")
        }
        currentTime = try c.decodeIfPresent(CurrentTime.self, forKey: .currentTime) ?? .none
        clock = try c.decodeIfPresent(Clock.self, forKey: .clock) ?? Clock()
        if currentTime == .write, !clock.hasClock {
            throw DecodingError.dataCorruptedError(forKey: .currentTime, in: c, debugDescription: "cannot be write for a device whose clock has has_clock: false")
        }
        quirks = try c.decodeIfPresent([Quirk].self, forKey: .quirks) ?? []
    }

    static func characteristic<K: CodingKey>(
        _ text: String, _ c: KeyedDecodingContainer<K>, _ key: K
    ) throws -> GATTCharacteristic {
        guard let ch = GATTCharacteristic(parsing: text) else {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: c, debugDescription: "'\(text.prefix(40))' is not a 16-bit characteristic UUID such as 2A35")
        }
        return ch
    }

    /// Four hex digits, or the 8-4-4-4-12 form of a 128-bit UUID.
    static func isServiceUUID(_ s: String) -> Bool {
        let hex = { (p: Substring) in p.allSatisfy(\.isHexDigit) }
        if s.count == 4 { return hex(Substring(s)) }
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        return parts.map(\.count) == [8, 4, 4, 4, 12] && parts.allSatisfy(hex)
    }
}
