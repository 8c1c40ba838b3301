import ArgumentParser
import VitalSigns

/// `vigilctl devices`: every configured device, with what a technician checks first.
struct Devices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the devices: state, last reading, battery, firmware, clock offset, signal, errors.",
        discussion: """
            One row per configured device, in configuration order, then a line for each device \
            with an error or a problem reason. Values vigild does not know are shown as '-'. \
            Shows no patient data; needs membership of the 'vigil' group. \
            Exit status: 0 success, 69 vigild is not reachable, 70 vigild reported an error, \
            77 permission denied.
            """)

    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let devices = try ViewClient.call("devices", connection: connection, key: "devices")
        if connection.json {
            print(JSONValue.object([("devices", devices)]).serialized)
            return
        }
        print(Self.render(devices.arrayValue ?? []))
    }

    static func render(_ devices: [JSONValue]) -> String {
        guard !devices.isEmpty else { return "No devices are configured (vigilctl pair, or vigilctl setup)." }
        let rows = devices.map { d -> [String] in
            let clock = d["clock_offset_seconds"]?.doubleValue.map { c -> String in
                let tenths = Int((abs(c) * 10).rounded())
                return "\(c < 0 ? "-" : "+")\(tenths / 10).\(tenths % 10) s"
            } ?? "-"
            return [
                d["id"]?.stringValue ?? "?",
                d["profile"]?.stringValue ?? "?",
                d["transport"]?.stringValue ?? "?",
                d["state"]?.stringValue ?? "?",
                age(d["last_reading_age_seconds"]?.doubleValue),
                "\(d["readings"]?.int64Value ?? 0)",
                d["battery_percent"]?.int64Value.map { "\($0) %" } ?? "-",
                d["firmware"]?.stringValue ?? "-",
                clock,
                d["rssi_dbm"]?.int64Value.map { "\($0) dBm" } ?? "-",
                "\((d["rejected_frames"]?.int64Value ?? 0) + (d["ble"]?["bad_payloads"]?.int64Value ?? 0))",
            ]
        }
        var out = textTable(["DEVICE", "PROFILE", "LINK", "STATE", "LAST READING", "READINGS", "BATTERY", "FIRMWARE", "CLOCK", "SIGNAL", "ERRORS"], rows)
        for d in devices {
            let id = d["id"]?.stringValue ?? "?"
            if let reason = d["reason"]?.stringValue { out += "\n\(id): \(reason)" }
            if let error = d["last_error"]?.stringValue { out += "\n\(id): last error: \(error)" }
        }
        return out
    }

    static func age(_ seconds: Double?) -> String {
        guard let s = seconds else { return "never" }
        if s < 1 { return "just now" }
        if s < 120 { return "\(Int(s)) s ago" }
        if s < 7200 { return "\(Int(s / 60)) min ago" }
        if s < 172_800 { return "\(Int(s / 3600)) h ago" }
        return "\(Int(s / 86_400)) days ago"
    }
}
