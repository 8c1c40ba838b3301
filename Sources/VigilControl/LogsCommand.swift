import ArgumentParser
import Glibc
import VitalSigns

/// `vigilctl logs`: vigild's recent journal through `journalctl -o json`, shown at priority
/// info and above. vigild logs patient identifiers and values only at debug (docs/operations.md),
/// so the default view holds no patient data, and `--debug` is kept for root and vigil-admin.
struct Logs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show vigild's recent journal, without patient data.",
        discussion: """
            Reads the systemd journal of the vigild unit (journalctl -u vigild -o json) and shows \
            entries of priority info and above: vigild logs patient identifiers and values only at \
            debug, so this view holds no patient data. --debug adds debug entries and is refused \
            unless you are root or a member of the vigil-admin group. Reading the journal itself \
            needs root or membership of systemd-journal or adm.

            Exit status: 0 success, 64 bad arguments, 69 the journal cannot be read (no journalctl, \
            or journalctl failed), 77 --debug refused.
            """)

    @Option(name: [.customShort("n"), .long], help: ArgumentHelp("How many of the most recent entries to show.", valueName: "count"))
    var lines = 50

    @Option(name: .long, help: ArgumentHelp("Show entries since this time (as journalctl --since takes it: \"2026-11-25 08:00\", \"1 hour ago\", today).", valueName: "time"))
    var since: String?

    @Flag(name: [.customShort("f"), .long], help: "Keep showing new entries as they arrive (Ctrl-C ends).")
    var follow = false

    @Flag(name: .long, help: "Include debug entries, which may hold patient data (root or vigil-admin only).")
    var debug = false

    @Flag(name: .long, help: "Print one JSON object per entry instead of text.")
    var json = false

    @Option(name: .long, help: ArgumentHelp("The systemd unit whose journal to show.", valueName: "unit"))
    var unit = "vigild.service"

    /// The journalctl executable (tests substitute a script that plays recorded entries).
    @Option(name: .long, help: .hidden)
    var journalctl = "journalctl"

    func validate() throws {
        guard (1...100_000).contains(lines) else { throw ValidationError("--lines must be between 1 and 100000") }
        guard !unit.isEmpty, !unit.hasPrefix("-") else { throw ValidationError("--unit needs a unit name") }
        if let since, since.isEmpty || since.hasPrefix("-") { throw ValidationError("--since needs a time") }
    }

    func run() throws {
        if debug, !JournalAccess.mayReadDebug() {
            printError("--debug shows entries that may hold patient data; it needs root or membership of group vigil-admin")
            throw ExitCode(77)
        }
        let maxPriority = debug ? 7 : 6
        var argv = [journalctl, "--unit", unit, "--output", "json", "--no-pager", "--lines", String(lines),
                    "--priority", debug ? "debug" : "info"]
        if let since { argv += ["--since", since] }
        if follow { argv.append("--follow") }
        var shown = 0
        let status: Int32
        do {
            status = try Subprocess.lines(argv) { line in
                guard let entry = JournalEntry(jsonLine: line), entry.priority <= maxPriority else { return }
                shown += 1
                writeStdout((json ? entry.json.serialized : entry.text) + "\n")
            }
        } catch {
            printError("cannot run \(journalctl): \(error); is systemd's journalctl installed?")
            throw ExitStatus.unavailable
        }
        if status != 0 {
            printError("journalctl exited with status \(status); reading the journal needs root or group systemd-journal or adm")
            throw ExitStatus.unavailable
        }
        if shown == 0, !json, !follow {
            printError("no journal entries for \(unit)\(since.map { " since \($0)" } ?? "") at priority \(debug ? "debug" : "info") or above")
        }
    }
}

/// One journal entry, from a line of `journalctl -o json` (systemd.journal-fields(7)).
struct JournalEntry: Equatable {
    /// Syslog priority: 0 emerg … 6 info, 7 debug.
    var priority: Int
    /// `__REALTIME_TIMESTAMP`, microseconds since the epoch.
    var microseconds: Int64
    var pid: Int64?
    var message: String

    static let levels = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]

    /// Nil for a line that is not a journal entry or has no PRIORITY: an entry whose priority
    /// is unknown is never shown as if it were info.
    init?(jsonLine line: some Collection<UInt8>) {
        guard let value = try? JSONValue.parse(line), value.objectValue != nil else { return nil }
        guard let p = value["PRIORITY"]?.stringValue.flatMap({ Int($0) }) ?? value["PRIORITY"]?.int64Value.map({ Int($0) }),
              (0...7).contains(p) else { return nil }
        priority = p
        microseconds = value["__REALTIME_TIMESTAMP"]?.stringValue.flatMap { Int64($0) } ?? 0
        pid = value["_PID"]?.stringValue.flatMap { Int64($0) }
        switch value["MESSAGE"] {
        case .string(let s)?:
            message = s
        case .array(let bytes)?:
            // journalctl gives a message that is not valid UTF-8 as an array of byte values.
            message = String(decoding: bytes.compactMap { $0.int64Value.flatMap { UInt8(exactly: $0) } }, as: UTF8.self)
        default:
            message = ""
        }
    }

    var level: String { Self.levels[priority] }

    var timestamp: Timestamp { Timestamp(millisecondsSinceEpoch: microseconds / 1000) }

    var text: String {
        let pad = String(repeating: " ", count: max(1, 8 - level.count))
        // One entry, one line: a message with a newline cannot forge a second entry.
        let oneLine = message.replacing("\n", with: "\\n").replacing("\r", with: "\\r")
        return "\(timestamp.iso8601) \(level)\(pad)\(oneLine)"
    }

    var json: JSONValue {
        .object([("at", .string(timestamp.iso8601)), ("priority", .int(Int64(priority))), ("level", .string(level)),
                 ("pid", pid.map { .int($0) } ?? .null), ("message", .string(message))])
    }
}

enum JournalAccess {
    /// Root, or a member of vigil-admin (by the process's supplementary or primary groups).
    static func mayReadDebug() -> Bool {
        if geteuid() == 0 { return true }
        guard let group = getgrnam("vigil-admin") else { return false }
        let admin = group.pointee.gr_gid
        if getegid() == admin { return true }
        let count = getgroups(0, nil)
        guard count > 0 else { return false }
        var groups = [gid_t](repeating: 0, count: Int(count))
        let n = getgroups(count, &groups)
        return n > 0 && groups.prefix(Int(n)).contains(admin)
    }
}

/// Writes all of `text` to stdout unbuffered, so `--follow` shows each entry as it arrives.
func writeStdout(_ text: String) {
    let bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        offset += n
    }
}
