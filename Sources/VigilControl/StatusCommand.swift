import ArgumentParser
import Glibc
import VitalSigns

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Is this home OK? Uplink, devices, outbox, disk, clock and escalations on one screen.",
        discussion: """
            Prints a verdict line (OK, or ATTENTION with each problem), then one line per part \
            of the gateway, then what to do next for each problem. Needs membership of the \
            'vigil' group (control.member_group). Shows no patient data. \
            Exit status: 0 everything is working, 1 something needs attention, 69 vigild is \
            not reachable, 77 permission denied.
            """)

    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let status = try ViewClient.call("status", connection: connection, key: "status")
        let report = StatusReport(status)
        if connection.json {
            print(JSONValue.object([
                ("verdict", .string(report.verdict)), ("problems", .array(report.problems.map { .string($0) })),
                ("next_steps", .array(report.problems.indices.map { i in
                    .object([("problem", .string(report.problems[i])), ("do", .string(report.actions[i]))])
                })),
                ("warnings", .array(report.warnings.map { .string($0) })),
                ("status", status),
            ]).serialized)
        } else {
            print(report.text)
        }
        if !report.problems.isEmpty { throw ExitStatus.problem }
    }
}

extension ExitStatus {
    /// EX_SOFTWARE: vigild answered with an error (the message is printed).
    static let daemonError = ExitCode(70)
    /// EX_NOPERM: the caller's groups do not allow the command.
    static let noPermission = ExitCode(77)
}

/// Calls one view command on vigild and maps every failure to a message and an exit status:
/// 69 unreachable, 77 permission denied, 70 any other error vigild reports.
enum ViewClient {
    static func call(_ command: String, _ arguments: [(String, JSONValue)] = [], connection: ConnectionOptions,
                     key: String? = nil) throws -> JSONValue {
        let reply: JSONValue
        do {
            reply = try ControlClient.request(.object([("command", .string(command))] + arguments), socketPath: connection.socketPath)
        } catch {
            printError(error.description)
            // The socket's file mode refused the connection: the caller is not in the group.
            throw error.reason.hasPrefix("permission denied") ? ExitStatus.noPermission : ExitStatus.unavailable
        }
        guard reply["ok"]?.boolValue == true else {
            let message = reply["error"]?.stringValue ?? "no reason given"
            if reply["code"]?.stringValue == "permission_denied" {
                printError(message)
                throw ExitStatus.noPermission
            }
            if message.hasPrefix("unknown command") {
                printError("this vigild does not support '\(command)' (\(message)); upgrade vigild")
                throw ExitStatus.unavailable
            }
            printError("vigild: \(message)")
            throw ExitStatus.daemonError
        }
        if let key {
            guard let value = reply[key] else {
                printError("vigild's reply has no '\(key)'")
                throw ExitStatus.daemonError
            }
            return value
        }
        return reply
    }

    /// `--since` as vigild wants it: RFC 3339 as given, or a relative age (`90s`, `30m`, `2h`,
    /// `7d`) turned into a UTC time by this machine's clock.
    static func since(_ text: String?) throws -> JSONValue {
        guard let text else { return .null }
        if let t = Timestamp(iso8601: text) { return .string(t.iso8601) }
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        guard let unit = text.last, let scale = units[unit], let n = Int64(text.dropLast()), n >= 0, n < 100_000 else {
            throw ValidationError("--since must be an RFC 3339 time (2026-11-25T08:00:00Z) or an age such as 90s, 30m, 2h, 7d")
        }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let ms = Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000 - n * scale * 1000
        return .string(Timestamp(millisecondsSinceEpoch: ms).iso8601)
    }
}

/// Plain-text tables: columns padded to their widest cell, two spaces apart.
func textTable(_ header: [String], _ rows: [[String]]) -> String {
    var widths = header.map(\.count)
    for row in rows {
        for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
    }
    func line(_ cells: [String]) -> String {
        var out = ""
        for (i, cell) in cells.enumerated() {
            out += i == cells.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count + 2)
        }
        return out
    }
    func trimmed(_ s: String) -> String {
        var s = s
        while s.last == " " { s.removeLast() }
        return s
    }
    return ([line(header)] + rows.map(line)).map(trimmed).joined(separator: "\n")
}

/// `2026-11-25 08:00:01` from an RFC 3339 UTC string (the views print UTC throughout).
func shortTime(_ value: JSONValue?) -> String {
    guard let s = value?.stringValue else { return "-" }
    let t = s.replacingOccurrences("T", " ").replacingOccurrences("Z", "")
    return String(t.prefix(19))
}

extension String {
    func replacingOccurrences(_ a: String, _ b: String) -> String { split(separator: a, omittingEmptySubsequences: false).joined(separator: b) }
}

/// Turns vigild's status document into a verdict and a screen a technician can read in ten seconds.
struct StatusReport {
    let status: JSONValue
    var problems: [String] = []
    /// What to do next, one per problem.
    var actions: [String] = []
    /// Worth knowing, but readings are still stored and forwarded.
    var warnings: [String] = []
    var lines: [String] = []

    private mutating func problem(_ text: String, do action: String) {
        problems.append(text)
        actions.append(action)
    }

    init(_ status: JSONValue) {
        self.status = status
        build()
    }

    var verdict: String { problems.isEmpty ? "ok" : "attention" }

    var text: String {
        let head = problems.isEmpty
            ? "VERDICT: OK — readings are being stored and forwarded."
            : "VERDICT: ATTENTION — " + problems.joined(separator: "; ")
        var out = [head, ""] + lines
        if !problems.isEmpty {
            out += ["", "What to do next:"] + problems.indices.map { "  • \(problems[$0]): \(actions[$0])" }
        }
        if !warnings.isEmpty {
            out += ["", "Note:"] + warnings.map { "  • \($0)" }
        }
        return out.joined(separator: "\n")
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
                problem("the broker refuses this gateway (\(kind)): \(why); readings are kept and will be sent once it is fixed",
                        do: "fix the gateway's broker credentials or certificates (docs/security.md), then run vigilctl diagnose")
            } else {
                lines.append("Uplink     NOT CONNECTED to \(broker): \(reason)  (reconnect attempts \(up?["reconnect_attempts"]?.int64Value ?? 0))")
                problem("the broker is unreachable (\(reason)); readings are kept and will be sent when it returns",
                        do: "check the home's internet connection and router, then run vigilctl diagnose (broker reachability, TLS certificates)")
            }
        }
        if let q = up?["quarantined"]?.int64Value, q > 0 {
            let last = up?["last_publish_refusal"]?.stringValue ?? "refused by the broker"
            lines.append("           └ \(q) item(s) quarantined: the broker refused them (\(last))")
            problem("the broker refused \(q) message item(s), kept in the database as quarantined: \(last)",
                    do: "ask the care team's broker administrator to allow this gateway's topics (ACL) or raise the message size limit")
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
                problem("\(lane) have waited \(Int(age / 60)) min to be delivered",
                        do: "watch the backlog drain with vigilctl outbox --follow; if it does not move, check the uplink (vigilctl diagnose)")
            }
        }
        lines.append(String(outboxLine.dropLast(2)))

        let devices = status["devices"]?.arrayValue ?? []
        if devices.isEmpty {
            lines.append("Devices    none configured")
            problem("no devices are configured", do: "pair the patient's devices (vigilctl pair, or vigilctl setup)")
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
                    problem("device \(id) is \(state)\(d["reason"]?.stringValue.map { ": \($0)" } ?? "")",
                            do: "check the device is switched on, charged and near the gateway; vigilctl devices shows its last error")
                }
                continue
            }
            if state != "open", let reason = d["reason"]?.stringValue { line += "\n           └ \(reason)" }
            lines.append(line)
            if state != "open" {
                problem("device \(id) is \(state)\(d["reason"]?.stringValue.map { ": \($0)" } ?? "")",
                        do: "check the cable and the device's power; vigilctl diagnose checks the serial ports and their permissions")
            }
        }

        let store = status["store"]
        let evicted = store?["evicted_total"]?.int64Value ?? 0
        lines.append("Store      \(Self.bytes(store?["size_bytes"]?.int64Value ?? 0))  readings \(store?["readings"]?.int64Value ?? 0) of \(store?["capacity_readings"]?.int64Value ?? 0)  evicted \(evicted)")
        if let replaced = store?["replaced"]?["problem"]?.stringValue {
            problem(replaced, do: "keep the quarantined file for analysis; tell the care team that undelivered readings may be lost")
        }
        // A full disk (docs/faults.md "Disk full"): vigild evicts to make room while it lasts.
        let space = store?["disk_full"]
        let forSpace = space?["evicted_for_space_total"]?.int64Value ?? 0
        if space?["full"]?.boolValue == true {
            let pruned = space?["pruned_for_space_total"]?.int64Value ?? 0
            lines.append("           └ DISK FULL since \(space?["since"]?.stringValue ?? "?"): making room in the eviction order; evicted for space \(forSpace) undelivered, \(pruned) delivered; reserve \(space?["reserve_held"]?.boolValue == true ? "held" : "released")")
            problem("the disk holding the database is full: vigild is evicting the oldest readings to make room (\(forSpace) undelivered evicted for space so far, reported upstream)",
                    do: "free space on the data partition, or lower outbox.capacity_readings so the store fits it; vigilctl diagnose checks the disk")
        }
        if evicted > 0 {
            if forSpace > 0 {
                problem("\(evicted) undelivered readings were evicted (\(evicted - forSpace) because the outbox was full, \(forSpace) to make room on a full disk; reported upstream)",
                        do: "restore the uplink so the backlog drains and keep the disk from filling; tell the care team that readings were lost")
            } else {
                problem("\(evicted) undelivered readings were evicted because the outbox was full (reported upstream)",
                        do: "restore the uplink so the backlog drains; tell the care team that readings were lost")
            }
        }

        if let disk = status["disk"], disk != .null {
            if let error = disk["error"]?.stringValue {
                lines.append("Disk       \(disk["path"]?.stringValue ?? "?"): \(error)")
                warnings.append("free disk space is unknown (\(error))")
            } else {
                let free = disk["free_bytes"]?.int64Value ?? 0
                let percent = disk["free_percent"]?.doubleValue ?? 0
                lines.append("Disk       \(Self.bytes(free)) free (\(JSONValue.format(percent)) %) on \(disk["path"]?.stringValue ?? "?")")
                if free < 64 << 20 || percent < 2 {
                    problem("the disk holding the database is almost full (\(Self.bytes(free)) free)",
                            do: "free space on \(disk["path"]?.stringValue ?? "the data partition") or replace the SD card; vigilctl diagnose checks its health")
                } else if percent < 10 {
                    warnings.append("the disk holding the database has \(JSONValue.format(percent)) % free")
                }
            }
        }

        if let clock = status["clock"], clock != .null {
            switch clock["synchronised"]?.boolValue {
            case true?:
                lines.append("Clock      synchronised (max error \(clock["max_error_ms"]?.int64Value ?? 0) ms)")
            case false?:
                lines.append("Clock      NOT synchronised")
                warnings.append("the system clock is not synchronised by NTP: reading times are only as good as this clock (enable systemd-timesyncd or chrony)")
            case nil:
                lines.append("Clock      sync state unknown")
            }
        }

        let open = status["escalations"]?["open"]?.int64Value ?? 0
        lines.append("Escalations \(open) open")
        if open > 0 {
            warnings.append("\(open) escalation(s) open: the care team has been alerted (vigilctl escalations)")
        }
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
