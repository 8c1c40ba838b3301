import ArgumentParser
import Glibc
import VitalSigns

/// `vigilctl outbox`: what is waiting for the broker, and how fast it drains.
struct Outbox: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the outbox: depth per lane, oldest item, drain rate; --follow while a backlog drains.",
        discussion: """
            The escalations lane (escalations and gateway events, always sent first) and the \
            readings lane, each with how many items wait and the age of the oldest; the items \
            in flight, the total the broker acknowledged and the drain rate (acknowledgements \
            per second over the last 30 s, measured by vigild). --follow asks again every \
            --interval seconds and draws a progress bar until the outbox is empty (on a \
            terminal it redraws one line; otherwise it prints one line each time). \
            Shows no patient data; needs membership of the 'vigil' group. \
            Exit status: 0 success (with --follow: the outbox drained), 1 --follow gave up \
            after --timeout seconds, 69 vigild is not reachable, 70 vigild reported an error, \
            77 permission denied.
            """)

    @Flag(help: "Keep watching, with a progress bar, until the outbox is empty.")
    var follow = false

    @Option(help: ArgumentHelp("Seconds between updates with --follow.", valueName: "seconds"))
    var interval: Double = 1

    @Option(help: ArgumentHelp("Give up --follow after this many seconds (0: never).", valueName: "seconds"))
    var timeout: Double = 0

    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        guard interval >= 0.1, interval <= 60 else { throw ValidationError("--interval must be between 0.1 and 60 seconds") }
        guard timeout >= 0 else { throw ValidationError("--timeout must not be negative") }
    }

    func run() async throws {
        var reply = try ViewClient.call("outbox", connection: connection)
        if !follow {
            print(connection.json ? Self.document(reply).serialized : Self.render(reply))
            return
        }
        let tty = isatty(1) == 1 && !connection.json
        let start = Self.depth(reply)
        var waited = 0.0
        while true {
            let depth = Self.depth(reply)
            if connection.json {
                print(Self.document(reply).serialized)
            } else {
                let line = Self.progressLine(reply, start: start)
                if tty { print("\r\u{1B}[K" + line, terminator: "") } else { print(line) }
                fflush(nil)
            }
            if depth == 0 {
                if tty { print("") }
                if !connection.json { print("Outbox empty: everything has been delivered.") }
                return
            }
            if timeout > 0, waited >= timeout {
                if tty { print("") }
                printError("the outbox still holds \(depth) item(s) after \(JSONValue.format(timeout)) s")
                throw ExitStatus.problem
            }
            try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
            waited += interval
            reply = try ViewClient.call("outbox", connection: connection)
        }
    }

    static func depth(_ reply: JSONValue) -> Int64 {
        (reply["escalations"]?["depth"]?.int64Value ?? 0) + (reply["readings"]?["depth"]?.int64Value ?? 0)
    }

    static func document(_ reply: JSONValue) -> JSONValue {
        .object((reply.objectValue ?? []).filter { $0.0 != "ok" })
    }

    static func render(_ reply: JSONValue) -> String {
        var lines: [String] = []
        lines.append("Uplink       " + (reply["connected"]?.boolValue == true ? "connected" : "NOT CONNECTED"))
        for (lane, name) in [("escalations", "Escalations"), ("readings", "Readings")] {
            let l = reply[lane]
            let depth = l?["depth"]?.int64Value ?? 0
            var line = name.padding(13) + "\(depth) waiting"
            if depth > 0 { line += " (oldest \(Devices.age(l?["oldest_age_seconds"]?.doubleValue)), \(shortTime(l?["oldest_at"])) UTC)" }
            lines.append(line)
        }
        lines.append("In flight    \(reply["in_flight"]?.int64Value ?? 0)   acknowledged \(reply["acknowledged"]?.int64Value ?? 0)")
        lines.append("Drain rate   " + rate(reply))
        if let eta = reply["drain_eta_seconds"]?.int64Value { lines.append("Empty in     about \(duration(eta))") }
        return lines.joined(separator: "\n")
    }

    static func rate(_ reply: JSONValue) -> String {
        guard let r = reply["drain_rate_per_second"]?.doubleValue else { return "unknown yet (vigild measures it over 30 s)" }
        return "\(JSONValue.format(r)) items/s"
    }

    static func duration(_ seconds: Int64) -> String {
        if seconds < 120 { return "\(seconds) s" }
        if seconds < 7200 { return "\(seconds / 60) min" }
        return "\(seconds / 3600) h \(seconds % 3600 / 60) min"
    }

    /// `[##########----------]  50 %  1 200 left  42 items/s  about 29 s`
    static func progressLine(_ reply: JSONValue, start: Int64) -> String {
        let depth = depth(reply)
        let done = start > 0 ? Double(max(0, start - depth)) / Double(start) : 1
        let width = 30
        let filled = min(width, Int((done * Double(width)).rounded(.down)))
        var line = "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "]"
        line += " \(Int((done * 100).rounded(.down)).description.leftPadded(3)) %  \(depth) left  " + rate(reply)
        if let eta = reply["drain_eta_seconds"]?.int64Value { line += "  about \(duration(eta))" }
        if reply["connected"]?.boolValue != true { line += "  (uplink NOT connected)" }
        return line
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
    fileprivate func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
