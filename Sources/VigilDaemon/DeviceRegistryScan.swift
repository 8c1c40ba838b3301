import BluetoothLink
import DeviceProfiles
import Glibc
import Logging
import VitalSigns

/// `scan` on the control socket: live BLE discovery through vigild, which holds the radio (and,
/// under systemd, the capabilities an LE scan needs), so `vigilctl scan --daemon` works for a
/// technician without root. Advertisers are matched against every profile in
/// `paths.device_profiles`, most specific first. `.admin`: it is the first step of pairing.
extension DeviceRegistryCommands {
    var scanCommand: ControlCommand {
        let me = self
        return ControlCommand("scan", access: .admin) { request, _ in await me.scan(request) }
    }

    /// `{"command":"scan","seconds":10}` → `{"ok":true,"advertisers":[{address, rssi_dbm, name,
    /// services, profiles}]}`, or `{"ok":false,"code":"bluetooth_unavailable",…}`.
    func scan(_ request: JSONValue) async -> JSONValue {
        let seconds = request["seconds"]?.doubleValue ?? 10
        guard seconds.isFinite, (1...60).contains(seconds) else {
            return .object([("ok", false), ("error", "seconds must be between 1 and 60"), ("code", "invalid")])
        }
        let known = await manager.allProfiles()
        let scanner: LEScanner
        do {
            scanner = try await LEScanner.start(active: true)
        } catch {
            let reason = error.reason.hasPrefix("Bluetooth unavailable") ? error.reason : "Bluetooth unavailable: \(error.reason)"
            return .object([("ok", false), ("error", .string(reason)), ("code", "bluetooth_unavailable")])
        }
        let (heard, error) = await scanner.collect(for: .milliseconds(Int64(seconds * 1000)), limit: 256)
        if let error { logger.notice("scan ended early", metadata: ["error": "\(error)"]) }
        let advertisers: [JSONValue] = heard.map { s in
            let services = s.data.serviceUUIDs.map(\.description)
            let matches = profiles(matching: s.data.localName, serviceUUIDs: services, in: known).map(\.id)
            return .object([
                ("address", .string(s.address)),
                ("rssi_dbm", s.rssi.map { .int(Int64($0)) } ?? .null),
                ("name", s.data.localName.map { .string($0) } ?? .null),
                ("services", .array(services.map { .string($0) })),
                ("profiles", .array(matches.map { .string($0) })),
            ])
        }
        return .object([("ok", true), ("seconds", .double(seconds)), ("advertisers", .array(advertisers))])
    }
}

extension DeviceManager {
    /// Every profile in the profiles directory that loads (the others are skipped: `vigild
    /// --check-config` and pairing name their problems).
    func allProfiles() -> [DeviceProfile] {
        guard let dir = opendir(profilesDirectory) else { return [] }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name.hasSuffix(".yaml") { names.append(String(name.dropLast(5))) }
        }
        closedir(dir)
        return names.sorted().compactMap { try? profile(named: $0) }
    }
}
