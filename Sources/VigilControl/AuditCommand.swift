import ArgumentParser
import VitalSigns

/// `vigilctl audit`: who looked at which patient's data, and when. Admins only.
struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the audit log of access to patient data (administrators only).",
        discussion: """
            Every control command that shows patient data (readings, escalations, audit) \
            leaves one append-only record: when, who (user, uid, pid), the role granted, the \
            command and the names of its arguments (never their values), and the patients the \
            reply named. Records cannot be changed or deleted, not even with sqlite3. Needs \
            membership of the 'vigil-admin' group (control.admin_group) or root; reading the \
            log is itself recorded. \
            Exit status: 0 success, 64 bad arguments, 69 vigild is not reachable, 70 vigild \
            reported an error, 77 permission denied.
            """)

    @Option(help: ArgumentHelp("Only records since this RFC 3339 time or age (30m, 2h, 7d).", valueName: "time"))
    var since: String?

    @Option(name: [.short, .long], help: ArgumentHelp("How many of the newest records (1–1000).", valueName: "n"))
    var limit: Int = 100

    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        guard (1...1000).contains(limit) else { throw ValidationError("--limit must be between 1 and 1000") }
        _ = try ViewClient.since(since)
    }

    func run() async throws {
        var args: [(String, JSONValue)] = [("limit", .int(Int64(limit)))]
        let sinceValue = try ViewClient.since(since)
        if sinceValue != .null { args.append(("since", sinceValue)) }
        let records = try ViewClient.call("audit", args, connection: connection, key: "records")
        if connection.json {
            print(JSONValue.object([("records", records)]).serialized)
            return
        }
        print(Self.render(records.arrayValue ?? []))
    }

    static func render(_ records: [JSONValue]) -> String {
        guard !records.isEmpty else { return "No audit records." }
        let rows = records.map { r -> [String] in
            [
                "\(r["seq"]?.int64Value ?? 0)",
                shortTime(r["at"]),
                "\(r["user"]?.stringValue ?? "?") (\(r["uid"]?.int64Value ?? -1))",
                "\(r["pid"]?.int64Value ?? 0)",
                r["role"]?.stringValue ?? "?",
                r["command"]?.stringValue ?? "?",
                (r["arguments"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ","),
                (r["patients"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ","),
                r["succeeded"]?.boolValue == true ? "shown" : "failed",
            ]
        }
        return textTable(["SEQ", "AT (UTC)", "USER (UID)", "PID", "ROLE", "COMMAND", "ARGUMENTS", "PATIENTS", "RESULT"], rows)
    }
}
