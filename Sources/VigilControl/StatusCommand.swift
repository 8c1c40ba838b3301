import ArgumentParser
import Glibc
import VitalSigns

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Is this home OK? Uplink, outbox, devices and store on one screen.",
        discussion: "Exit status 0 when everything is working, 1 when something needs attention, 69 when vigild is not reachable.")

    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let reply: JSONValue
        do {
            reply = try ControlClient.request(.object([("command", "status")]), socketPath: connection.socketPath)
        } catch {
            printError(error.description)
            throw ExitStatus.unavailable
        }
        guard reply["ok"]?.boolValue == true, let status = reply["status"] else {
            printError("vigild refused the request: \(reply["error"]?.stringValue ?? "no reason given")")
            throw ExitStatus.unavailable
        }
        let report = StatusReport(status)
        if connection.json {
            print(JSONValue.object([("verdict", .string(report.verdict)), ("problems", .array(report.problems.map { .string($0) })),
                                    ("status", status)]).serialized)
        } else {
            print(report.text)
        }
        if !report.problems.isEmpty { throw ExitStatus.problem }
    }
}

/// Turns vigild's status document into a verdict and a screen a technician can read in ten seconds.
struct StatusReport {
    let status: JSONValue
    var problems: [String] = []
    var lines: [String] = []

    init(_ status: JSONValue) {
        self.status = status
        build()
    }

    var verdict: String { problems.isEmpty ? "ok" : "attention" }

    var text: String {
        let head = problems.isEmpty
            ? "VERDICT: OK — readings are being stored and forwarded."
            : "VERDICT: ATTENTION — " + problems.joined(separator: "; ")
        return ([head, ""] + lines).joined(separator: "\n")
    }

    private static func age(_ seconds: Double?) -> String {
        guard let s = seconds else { return "never" }
        if s < 1 { return "just now" }
        if s < 120 { return "\(Int(s)) s ago" }
        if s < 7200 { return "\(Int(s / 60)) min ago" }
        if s < 172_800 { return "\(Int(s / 3600)) h ago" }
        return "\(Int(s / 86_400)) days ago"
    }

    private static func bytes(_ n: Int64) -> String {
        if n < 1024 { return "\(n) B" }
        if n < 1 << 20 { return "\(n >> 10) KiB" }
        if n < 1 << 30 { return "\((n * 10) >> 20 / 10).\(((n * 10) >> 20) % 10) MiB" }
        return "\(n >> 30) GiB"
    }

    /// `BLE connected · bonded · battery 80 % · clock +3.0 s · MTU 247 · bad values 2`.
    static func bleLine(_ b: JSONValue) -> String {
        let connected = b["connected"]?.boolValue == true
        var parts = ["BLE " + (connected ? "connected" : "not connected")]
        if b["link"]?.stringValue == "seqpacket" { parts.append("simulated (seqpacket)") }
        switch b["bonded"]?.boolValue {
        case true?: parts.append("bonded")
        case false?: parts.append("not bonded")
        case nil: break
        }
        parts.append(b["battery_percent"]?.int64Value.map { "battery \($0) %" } ?? "battery ?")
        if let c = b["clock_offset_seconds"]?.doubleValue {
            let tenths = Int((abs(c) * 10).rounded())
            parts.append("clock \(c < 0 ? "-" : "+")\(tenths / 10).\(tenths % 10) s")
        } else {
            parts.append("clock offset unknown")
        }
        if let m = b["mtu"]?.int64Value { parts.append("MTU \(m)") }
        let bad = b["bad_payloads"]?.int64Value ?? 0
        if bad > 0 { parts.append("bad values \(bad)") }
        return parts.joined(separator: " · ")
    }

    private mutating func build() {
        let gw = status["gateway"]
        lines.append("Gateway    \(gw?["site"]?.stringValue ?? "?")/\(gw?["gateway"]?.stringValue ?? "?")  vigild \(gw?["version"]?.stringValue ?? "?")  up \(Int(gw?["uptime_seconds"]?.doubleValue ?? 0)) s")

        let up = status["uplink"]
        let broker = up?["broker"]?.stringValue ?? "?"
        if up?["connected"]?.boolValue == true {
            lines.append("Uplink     connected to \(broker)  published \(up?["published"]?.int64Value ?? 0)  acknowledged \(up?["acknowledged"]?.int64Value ?? 0)  in flight \(up?["in_flight"]?.int64Value ?? 0)")
        } else {
            let reason = up?["last_error"]?.stringValue ?? "not connected yet"
            if let refusal = up?["refusal"], let kind = refusal["kind"]?.stringValue {
                // The broker (or TLS) refuses us: say why, and since when (docs/security.md).
                let why = refusal["reason"]?.stringValue ?? kind
                lines.append("Uplink     REFUSED by \(broker) [\(kind)] since \(refusal["since"]?.stringValue ?? "?"): \(why)  (reconnect attempts \(up?["reconnect_attempts"]?.int64Value ?? 0))")
                problems.append("the broker refuses this gateway (\(kind)): \(why); readings are kept and will be sent once it is fixed")
            } else {
                lines.append("Uplink     NOT CONNECTED to \(broker): \(reason)  (reconnect attempts \(up?["reconnect_attempts"]?.int64Value ?? 0))")
                problems.append("the broker is unreachable (\(reason)); readings are kept and will be sent when it returns")
            }
        }
        if let q = up?["quarantined"]?.int64Value, q > 0 {
            let last = up?["last_publish_refusal"]?.stringValue ?? "refused by the broker"
            lines.append("           └ \(q) item(s) quarantined: the broker refused them (\(last))")
            problems.append("the broker refused \(q) message item(s), kept in the database as quarantined: \(last)")
        }

        let outbox = status["outbox"]
        var outboxLine = "Outbox    "
        for lane in ["escalations", "readings"] {
            let l = outbox?[lane]
            let depth = l?["depth"]?.int64Value ?? 0
            outboxLine += " \(lane) \(depth) waiting"
            if depth > 0 { outboxLine += " (oldest \(Self.age(l?["oldest_age_seconds"]?.doubleValue)))" }
            outboxLine += " ·"
            if let age = l?["oldest_age_seconds"]?.doubleValue, depth > 0, age > 300 {
                problems.append("\(lane) have waited \(Int(age / 60)) min to be delivered")
            }
        }
        lines.append(String(outboxLine.dropLast(2)))

        let devices = status["devices"]?.arrayValue ?? []
        if devices.isEmpty {
            lines.append("Devices    none configured")
            problems.append("no devices are configured")
        }
        for (i, d) in devices.enumerated() {
            let id = d["id"]?.stringValue ?? "?"
            let state = d["state"]?.stringValue ?? "?"
            var line = (i == 0 ? "Devices    " : "           ") + id.padding(18) + " " + state.padding(12)
            line += " last reading \(Self.age(d["last_reading_age_seconds"]?.doubleValue))"
            line += "  readings \(d["readings"]?.int64Value ?? 0)"
            let rejected = d["rejected_frames"]?.int64Value ?? 0
            if rejected > 0 { line += "  rejected frames \(rejected)" }
            if let ble = d["ble"], ble != .null {
                // Bluetooth LE devices sleep between measurements: "disconnected" is their normal
                // state. Only a radio that cannot work at all, or an error, needs attention.
                line += "\n           └ " + Self.bleLine(ble)
                if state != "connected", let reason = d["reason"]?.stringValue { line += "\n           └ \(reason)" }
                lines.append(line)
                if state == "unavailable" || state == "error" {
                    problems.append("device \(id) is \(state)\(d["reason"]?.stringValue.map { ": \($0)" } ?? "")")
                }
                continue
            }
            if state != "open", let reason = d["reason"]?.stringValue { line += "\n           └ \(reason)" }
            lines.append(line)
            if state != "open" {
                problems.append("device \(id) is \(state)\(d["reason"]?.stringValue.map { ": \($0)" } ?? "")")
            }
        }

        let store = status["store"]
        let evicted = store?["evicted_total"]?.int64Value ?? 0
        lines.append("Store      \(Self.bytes(store?["size_bytes"]?.int64Value ?? 0))  readings \(store?["readings"]?.int64Value ?? 0) of \(store?["capacity_readings"]?.int64Value ?? 0)  evicted \(evicted)")
        if evicted > 0 {
            problems.append("\(evicted) undelivered readings were evicted because the outbox was full (reported upstream)")
        }
        lines.append("Escalations \(status["escalations"]?["open"]?.int64Value ?? 0) open")
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
