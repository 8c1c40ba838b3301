/// Matching a Bluetooth LE advertisement against the device profiles, for scanning and pairing:
/// which profiles could this advertiser be, most specific first.
///
/// A profile that names model local-name prefixes (`match: name_prefix:`) matches only an
/// advertiser whose local name starts with one of them, and ranks above the generic profile for
/// the same service. A profile that names only services matches an advertiser listing any of
/// them. A serial profile, or a BLE profile with no `match:`, never matches.
extension DeviceProfile {
    /// The match's strength (higher is more specific), or nil when the advertiser is not this
    /// kind of device. `serviceUUIDs` are 16-bit (`1810`, `0x1810`) or 128-bit UUID strings.
    public func advertisementScore(localName: String?, serviceUUIDs: [String]) -> Int? {
        guard transport == .ble, let match else { return nil }
        let advertised = Set(serviceUUIDs.map(Self.normalizedUUID))
        let wanted = Set((match.services ?? []).map(Self.normalizedUUID))
        let servicesMatch = !wanted.isDisjoint(with: advertised)
        if let prefixes = match.namePrefix, !prefixes.isEmpty {
            guard let localName, prefixes.contains(where: { localName.hasPrefix($0) }) else { return nil }
            return servicesMatch ? 3 : 2
        }
        return servicesMatch ? 1 : nil
    }

    /// Upper-case hex; a 128-bit UUID on the Bluetooth base is shortened to its 16 bits.
    static func normalizedUUID(_ text: String) -> String {
        var t = text.uppercased()
        if t.hasPrefix("0X") { t.removeFirst(2) }
        let base = "-0000-1000-8000-00805F9B34FB"
        if t.count == 36, t.hasSuffix(base), t.hasPrefix("0000") { t = String(t.dropFirst(4).prefix(4)) }
        return t
    }
}

/// The profiles an advertiser could be, most specific first (ties in profile-id order).
public func profiles(matching localName: String?, serviceUUIDs: [String], in profiles: [DeviceProfile]) -> [DeviceProfile] {
    profiles.compactMap { p in p.advertisementScore(localName: localName, serviceUUIDs: serviceUUIDs).map { (p, $0) } }
        .sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0.id < $1.0.id }
        .map(\.0)
}
