import ArgumentParser
import VitalSigns

/// `vigilctl escalations`: the open escalations (and recent ones with --all).
struct Escalations: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List open escalations (--all: the most recent of any state).",
        discussion: """
            One row per escalation episode, most recently updated first, with its severity, \
            state, patient, rule and summary. This shows patient data: every call is recorded \
            in the audit log. Needs membership of the 'vigil' group. \
            Exit status: 0 success, 69 vigild is not reachable, 70 vigild reported an error, \
            77 permission denied.
            """)

    @Flag(help: "Include acknowledged and resolved escalations (the most recent --limit).")
    var all = false

    @Option(name: [.short, .long], help: ArgumentHelp("How many with --all (1–1000).", valueName: "n"))
    var limit: Int = 50

    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        guard (1...1000).contains(limit) else { throw ValidationError("--limit must be between 1 and 1000") }
    }

    func run() async throws {
        var args: [(String, JSONValue)] = [("all", .bool(all))]
        if all { args.append(("limit", .int(Int64(limit)))) }
        let list = try ViewClient.call("escalations", args, connection: connection, key: "escalations")
        if connection.json {
            print(JSONValue.object([("escalations", list)]).serialized)
            return
        }
        print(Self.render(list.arrayValue ?? [], all: all))
    }

    static func render(_ list: [JSONValue], all: Bool) -> String {
        guard !list.isEmpty else { return all ? "No escalations recorded." : "No open escalations." }
        let rows = list.map { e -> [String] in
            [
                (e["severity"]?.stringValue ?? "?").uppercased(),
                e["state"]?.stringValue ?? "?",
                shortTime(e["opened_at"]),
                shortTime(e["updated_at"]),
                e["patient"]?.stringValue ?? "?",
                e["rule"]?.stringValue ?? "?",
                e["summary"]?.stringValue ?? "",
            ]
        }
        let head = all ? "\(list.count) most recent escalation(s)" : "\(list.count) open escalation(s)"
        return head + "\n" + textTable(["SEVERITY", "STATE", "OPENED (UTC)", "UPDATED (UTC)", "PATIENT", "RULE", "SUMMARY"], rows)
    }
}
