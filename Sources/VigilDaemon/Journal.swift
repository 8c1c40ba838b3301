import Glibc
import Logging
import Synchronization

/// Writes log lines to stderr with a syslog priority prefix (`<6>`), which journald reads
/// (sd-daemon(3), `SyslogLevelPrefix=`). Metadata follows the message as `key=value`.
///
/// Vigil never puts patient data in a log line at info level or above: values and patient
/// identifiers may only appear at debug/trace, and the default level is info.
struct JournalLogHandler: LogHandler {
    var label: String
    /// The level from the config, unless a downlink `config` command set one for every
    /// logger at run time (`runtimeLevel`).
    var logLevel: Logger.Level {
        get {
            // Read on every log call: an atomic load, not a lock.
            let i = Self.runtimeLevelIndex.load(ordering: .relaxed)
            return Logger.Level.allCases.indices.contains(i) ? Logger.Level.allCases[i] : configuredLevel
        }
        set { configuredLevel = newValue }
    }
    private var configuredLevel: Logger.Level
    /// Set by the downlink `config` command (`log_level`): an index into `Logger.Level.allCases`,
    /// or -1 for each handler's own level.
    static let runtimeLevelIndex = Atomic<Int>(-1)
    static func setRuntimeLevel(_ level: Logger.Level) {
        runtimeLevelIndex.store(Logger.Level.allCases.firstIndex(of: level) ?? -1, ordering: .relaxed)
    }
    var metadata: Logger.Metadata = [:]
    /// Whether to prefix each line with its syslog priority (stderr attached to journald)
    /// or with a readable level name (a terminal).
    let syslogPrefix: Bool

    init(label: String, level: Logger.Level, syslogPrefix: Bool) {
        self.label = label
        self.configuredLevel = level
        self.syslogPrefix = syslogPrefix
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        var line = syslogPrefix ? "<\(Self.priority(event.level))>" : "\(event.level) "
        line += Self.escaped(event.message.description)
        for key in merged.keys.sorted() {
            line += " \(key)=\(Self.escaped(merged[key].map { "\($0)" } ?? ""))"
        }
        line += "\n"
        writeStderr(line)
    }

    /// One log record is one line: control characters (a newline could forge a journal
    /// line with its own priority) are escaped, and very long values are cut.
    static func escaped(_ text: String, limit: Int = 2048) -> String {
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            count += 1
            if count > limit {
                out += "…"
                break
            }
            switch scalar.value {
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0..<0x20, 0x7F: out += "\\x" + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }
}

/// Writes all of `text` to file descriptor 2, looping on partial writes and EINTR.
func writeStderr(_ text: String) {
    let bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
        if n < 0, errno == EINTR { continue }
        if n <= 0 { return }
        offset += n
    }
}

/// The sd_notify(3) protocol, written directly: one datagram to `$NOTIFY_SOCKET`.
/// A handful of lines, which spares a libsystemd dependency.
enum SystemdNotifier {
    /// Sends `state` (for example `READY=1`) if the service runs under systemd with
    /// `Type=notify`; does nothing otherwise. Errors are ignored, as sd_notify does.
    static func notify(_ state: String) {
        guard let path = getenv("NOTIFY_SOCKET").map({ String(cString: $0) }), !path.isEmpty else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        // A leading '@' names an abstract socket: its first byte on the wire is NUL.
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
        let message = Array(state.utf8)
        _ = withUnsafePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                message.withUnsafeBytes { m in
                    sendto(fd, m.baseAddress, m.count, Int32(MSG_NOSIGNAL), sa, length)
                }
            }
        }
    }

    /// The watchdog interval systemd asked for (`WATCHDOG_USEC`), if it is for this process.
    static var watchdogInterval: Duration? {
        guard let usecText = getenv("WATCHDOG_USEC").map({ String(cString: $0) }), let usec = Int64(usecText), usec > 0 else { return nil }
        if let pidText = getenv("WATCHDOG_PID").map({ String(cString: $0) }), let pid = Int32(pidText), pid != getpid() { return nil }
        return .microseconds(usec)
    }
}
