import ArgumentParser
import VitalSigns

/// `vigilctl readings`: the latest readings, with a sparkline of each vital's recent trend.
struct Readings: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the latest readings (tail, or --since), with each vital's trend as a sparkline.",
        discussion: """
            Prints the newest --limit readings that match the filters, oldest first, times in \
            UTC, then one sparkline (▁▂▃▄▅▆▇█, scaled from the lowest to the highest value) per \
            patient and vital over its last --trend readings. SENT is 'yes' once the broker \
            has acknowledged the reading. This shows patient data: every call is recorded in \
            the audit log (vigilctl audit). Needs membership of the 'vigil' group. \
            Exit status: 0 success (also when nothing matches), 64 bad arguments, 69 vigild is \
            not reachable, 70 vigild reported an error, 77 permission denied.
            """)

    @Argument(help: ArgumentHelp("'tail' (the default): the newest readings.", valueName: "tail"))
    var mode: String = "tail"

    @Option(name: [.short, .long], help: ArgumentHelp("How many readings (1–1000).", valueName: "n"))
    var limit: Int = 20

    @Option(help: ArgumentHelp("Only readings measured since this RFC 3339 time or age (30m, 2h, 7d).", valueName: "time"))
    var since: String?

    @Option(help: ArgumentHelp("Only this device.", valueName: "id"))
    var device: String?

    @Option(help: ArgumentHelp("Only this patient.", valueName: "id"))
    var patient: String?

    @Option(help: ArgumentHelp("Only this vital (spo2, pulse_rate, body_weight, …).", valueName: "key"))
    var vital: String?

    @Option(help: ArgumentHelp("Readings per sparkline (2–120).", valueName: "n"))
    var trend: Int = 32

    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        guard mode == "tail" else { throw ValidationError("unknown mode '\(mode)'; the only mode is 'tail'") }
        guard (1...1000).contains(limit) else { throw ValidationError("--limit must be between 1 and 1000") }
        guard (2...120).contains(trend) else { throw ValidationError("--trend must be between 2 and 120") }
        _ = try ViewClient.since(since)
    }

    func run() async throws {
        var args: [(String, JSONValue)] = [("limit", .int(Int64(limit))), ("trend_points", .int(Int64(trend)))]
        let sinceValue = try ViewClient.since(since)
        if sinceValue != .null { args.append(("since", sinceValue)) }
        if let device { args.append(("device", .string(device))) }
        if let patient { args.append(("patient", .string(patient))) }
        if let vital { args.append(("vital", .string(vital))) }
        let reply = try ViewClient.call("readings", args, connection: connection)
        if connection.json {
            print(JSONValue.object([("readings", reply["readings"] ?? .array([])), ("trends", reply["trends"] ?? .array([]))]).serialized)
            return
        }
        print(Self.render(reply))
    }

    static func render(_ reply: JSONValue) -> String {
        let readings = reply["readings"]?.arrayValue ?? []
        guard !readings.isEmpty else { return "No readings match." }
        let rows = readings.map { r -> [String] in
            [
                shortTime(r["measured_at"]),
                r["patient"]?.stringValue ?? "?",
                r["device"]?.stringValue ?? "?",
                r["vital"]?.stringValue ?? "?",
                r["value"]?.doubleValue.map { JSONValue.format($0) } ?? "-",
                r["unit"]?.stringValue ?? "",
                (r["flags"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ","),
                r["delivered"]?.boolValue == true ? "yes" : "no",
            ]
        }
        var out = textTable(["MEASURED (UTC)", "PATIENT", "DEVICE", "VITAL", "VALUE", "UNIT", "FLAGS", "SENT"], rows)
        let trends = reply["trends"]?.arrayValue ?? []
        if !trends.isEmpty {
            out += "\n\nTrends (oldest → newest)\n"
            let trendRows = trends.map { t -> [String] in
                let values = (t["values"]?.arrayValue ?? []).compactMap(\.doubleValue)
                let unit = t["unit"]?.stringValue ?? ""
                let range = values.isEmpty ? "" : "\(JSONValue.format(values.min()!))–\(JSONValue.format(values.max()!)) \(unit)"
                return [t["patient"]?.stringValue ?? "?", t["vital"]?.stringValue ?? "?", sparkline(values), range,
                        "\(values.count) readings since \(shortTime(t["from"]))"]
            }
            out += textTable(["PATIENT", "VITAL", "TREND", "RANGE", ""], trendRows)
        }
        return out
    }

    /// One block character per value, from ▁ (the lowest) to █ (the highest); a flat series
    /// is drawn at mid height. Each value takes the nearest of the eight levels.
    static func sparkline(_ values: [Double]) -> String {
        let blocks: [Character] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]
        guard let lo = values.min(), let hi = values.max() else { return "" }
        guard hi > lo else { return String(repeating: "▄", count: values.count) }
        return String(values.map { v in blocks[max(0, min(7, Int(((v - lo) / (hi - lo) * 7).rounded())))] })
    }
}
