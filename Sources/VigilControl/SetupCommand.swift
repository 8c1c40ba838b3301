import ArgumentParser
import Glibc
import StrictYAML
import Synchronization
import Uplink
import VitalSigns

/// `vigilctl setup`: installs a gateway step by step (issue 7) — identity, broker (tested with a
/// real MQTT connection), the config file, vigild, each device paired and assigned — and ends
/// with a checklist that shows a real reading from every device delivered to the broker.
///
/// Idempotent: the config is rewritten only when its bytes would change (atomically, mode
/// 0640), vigild is restarted only then (or when it is not running), and pairing an already
/// paired device with the same answers changes nothing and announces nothing. Devices go into
/// vigild's registry with live control commands, never into the config file.
struct Setup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Set up this gateway: identity, broker, devices, patients; prove a reading reaches the broker.",
        discussion: """
            Interactive on a terminal: each answer is asked for, with the current one as default. \
            Non-interactive with --non-interactive and flags, or --from FILE (YAML: site, \
            gateway, broker {host, port, username, password_file, topic_prefix}, paths \
            {database, control_socket, care_plans, device_profiles}, log_level, and devices, a \
            list of {id, profile, port | address [transport], patient, clock_utc_offset, \
            download_interval_seconds}). Flags override the file. Running it again with the same \
            answers changes nothing. See docs/field-guide.md.

            Exit status: 0 everything checked, 1 a device's reading did not reach the broker in \
            time, 64 bad arguments, 65 invalid answers (or a device vigild refused), 66 --from \
            file unreadable, 67 a device id taken otherwise, 69 broker or vigild not reachable, \
            73 the config cannot be written, 74 the registry could not be written.
            """)

    @Option(help: "The config file to write.")
    var config = "/etc/vigil/vigild.yaml"

    @Option(help: "Answers from a YAML file (see the discussion above).")
    var from: String?

    @Flag(help: "Never prompt: take the answers from --from and the flags only.")
    var nonInteractive = false

    @Option(help: "The site id (a topic level: letters, digits, - and _).")
    var site: String?

    @Option(help: "This gateway's id (same rules).")
    var gateway: String?

    @Option(name: .customLong("broker-host"), help: "The MQTT broker's host name or address.")
    var brokerHost: String?

    @Option(name: .customLong("broker-port"), help: "The MQTT broker's port (default 1883).")
    var brokerPort: Int?

    @Option(name: .customLong("broker-username"), help: "The MQTT user name, if the broker wants one.")
    var brokerUsername: String?

    @Option(name: .customLong("broker-password-file"), help: "A file holding the MQTT password (readable by vigild).")
    var brokerPasswordFile: String?

    @Option(name: .customLong("device"), help: ArgumentHelp(
        "A device, as id=…,profile=…,port=…|address=…[,transport=…],patient=…[,clock_utc_offset=…]. Repeatable.",
        valueName: "spec"))
    var devices: [String] = []

    @Option(name: .customLong("restart-command"), help: "How to (re)start vigild when the config changed or it is not running.")
    var restartCommand = "systemctl restart vigild.service"

    @Option(name: .customLong("reading-timeout"), help: "Seconds to wait for a reading from each device.")
    var readingTimeout: Double = 120

    @Option(help: "Path of vigild's control socket (default: the answers' paths.control_socket, else /run/vigil/control.sock).")
    var socket: String?

    @Flag(help: "Print the checklist as JSON.")
    var json = false

    func validate() throws {
        guard readingTimeout > 0, readingTimeout <= 3600 else { throw ValidationError("--reading-timeout must be between 0 and 3600 seconds") }
    }

    func run() async throws {
        var checklist = Checklist(json: json)
        // 1. Answers.
        var answers = SetupAnswers()
        if let from {
            do {
                answers = try SetupAnswers.load(from)
            } catch {
                checklist.fail("answers", error.message)
                throw checklist.finish(ExitCode(66))
            }
        }
        do throws(SetupFailure) {
            try apply(flags: &answers)
            let interactive = !nonInteractive && isatty(0) == 1
            if interactive { try answers.prompt() }
            try answers.validate()
        } catch {
            checklist.fail("answers", error.message)
            throw checklist.finish(ExitCode(65))
        }
        checklist.pass("identity", "site \(answers.site ?? ""), gateway \(answers.gateway ?? "")")

        // 2. The broker, live: a real MQTT connection, kept to watch for readings.
        let watcher: ReadingWatcher
        do {
            watcher = try await ReadingWatcher.connect(answers)
        } catch {
            checklist.fail("broker", error.message)
            throw checklist.finish(ExitStatus.unavailable)
        }
        checklist.pass("broker", "\(answers.brokerHost ?? ""):\(answers.brokerPort ?? 1883) accepted the connection")
        let code = await install(answers, watcher: watcher, checklist: &checklist)
        await watcher.stop()
        throw code
    }

    /// Steps 3–6, with the broker connection open to watch for readings.
    func install(_ answers: SetupAnswers, watcher: ReadingWatcher, checklist: inout Checklist) async -> ExitCode {

        // 3. The config, atomically and only when it changes.
        let text = answers.configText()
        let changed: Bool
        do {
            changed = try ConfigFile.write(text, to: config)
        } catch {
            checklist.fail("config", error.message)
            return checklist.finish(ExitCode(73))
        }
        checklist.pass("config", changed ? "\(config) written" : "\(config) unchanged")

        // 4. vigild: restarted only when the config changed or it is not answering.
        let socketPath = socket ?? answers.controlSocket ?? "/run/vigil/control.sock"
        let running = (try? ControlClient.request(.object([("command", "ping")]), socketPath: socketPath, timeoutSeconds: 2))?["ok"]?.boolValue == true
        if changed || !running {
            let status = Self.shell(restartCommand)
            guard status == 0 else {
                checklist.fail("vigild", "'\(restartCommand)' failed with exit status \(status)")
                return checklist.finish(ExitStatus.unavailable)
            }
            guard await Self.waitForDaemon(socketPath, seconds: 30) else {
                checklist.fail("vigild", "vigild did not answer on \(socketPath) within 30 s after '\(restartCommand)'; see journalctl -u vigild")
                return checklist.finish(ExitStatus.unavailable)
            }
            checklist.pass("vigild", running ? "restarted with the new config" : "started")
        } else {
            checklist.pass("vigild", "running; no restart needed")
        }

        // 5. Devices: paired and assigned through vigild, live.
        for d in answers.devices {
            var members: [(String, JSONValue)] = [("command", "pair")]
            for (key, value) in d.fields { members.append((key, .string(value))) }
            let reply: JSONValue
            do {
                reply = try ControlClient.request(.object(members), socketPath: socketPath, timeoutSeconds: 30)
            } catch {
                checklist.fail("device \(d.id)", error.description)
                return checklist.finish(ExitStatus.unavailable)
            }
            guard reply["ok"]?.boolValue == true else {
                checklist.fail("device \(d.id)", reply["error"]?.stringValue ?? "refused")
                return checklist.finish(RegistryRequest.exitCode(for: reply["code"]?.stringValue))
            }
            let changed = reply["changed"]?.boolValue == true
            checklist.pass("device \(d.id)", (changed ? "paired" : "already paired") + " and assigned to patient \(d.fields["patient"] ?? "")")
        }

        // 6. The proof: a reading from every device, seen on the broker.
        let missing = await watcher.waitForReadings(from: Set(answers.devices.map(\.id)), seconds: readingTimeout)
        for d in answers.devices {
            if missing.contains(d.id) {
                checklist.fail("reading \(d.id)", "no reading from \(d.id) reached the broker within \(Int(readingTimeout)) s; is it switched on and measuring? (vigilctl status shows its state)")
            } else {
                checklist.pass("reading \(d.id)", "a reading from \(d.id) reached the broker")
            }
        }
        if !missing.isEmpty { return checklist.finish(ExitStatus.problem) }
        return checklist.finish(ExitCode.success)
    }

    func apply(flags answers: inout SetupAnswers) throws(SetupFailure) {
        if let site { answers.site = site }
        if let gateway { answers.gateway = gateway }
        if let brokerHost { answers.brokerHost = brokerHost }
        if let brokerPort { answers.brokerPort = brokerPort }
        if let brokerUsername { answers.brokerUsername = brokerUsername }
        if let brokerPasswordFile { answers.brokerPasswordFile = brokerPasswordFile }
        for spec in devices { answers.devices.append(try SetupAnswers.Device(spec: spec)) }
    }

    /// Runs `command` with /bin/sh; returns its exit status.
    static func shell(_ command: String) -> Int32 {
        var child: pid_t = 0
        let words: [String] = ["/bin/sh", "-c", command]
        let argv = words.map { strdup($0) }
        defer { for a in argv { free(a) } }
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv + [nil]
        // The command gets stdin, stdout and stderr only: a daemon it starts must not inherit
        // (and hold open) vigilctl's MQTT socket or its caller's pipes.
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd in openDescriptors() where fd > 2 { posix_spawn_file_actions_addclose(&actions, fd) }
        let rc = cArgs.withUnsafeMutableBufferPointer { buffer -> Int32 in
            guard let base = buffer.baseAddress else { return ENOMEM }
            return posix_spawn(&child, "/bin/sh", &actions, nil, base, environ)
        }
        guard rc == 0 else { return 127 }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 {
            if errno != EINTR { return 127 }
        }
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// The descriptors open in this process (from /proc/self/fd). glibc ignores a close action
    /// for one closed meanwhile.
    static func openDescriptors() -> [Int32] {
        guard let dir = opendir("/proc/self/fd") else { return [] }
        defer { closedir(dir) }
        let own = dirfd(dir)
        var out: [Int32] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if let fd = Int32(name), fd != own { out.append(fd) }
        }
        return out
    }

    static func waitForDaemon(_ socketPath: String, seconds: Int) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(seconds))
        while clock.now < deadline {
            if (try? ControlClient.request(.object([("command", "ping")]), socketPath: socketPath, timeoutSeconds: 2))?["ok"]?.boolValue == true {
                return true
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }
}

/// Why setup stopped, in words for the person at the keyboard.
struct SetupFailure: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// The answers setup works from.
struct SetupAnswers: Decodable {
    var site: String?
    var gateway: String?
    var logLevel: String?
    var brokerHost: String?
    var brokerPort: Int?
    var brokerUsername: String?
    var brokerPasswordFile: String?
    var topicPrefix: String?
    var database: String?
    var controlSocket: String?
    var carePlans: String?
    var deviceProfiles: String?
    var devices: [Device] = []

    struct Device: Decodable {
        var id: String
        /// The pair request's members, as vigild's `pair` takes them.
        var fields: [String: String]

        static let keys = ["id", "profile", "port", "address", "transport", "patient", "clock_utc_offset", "download_interval_seconds"]

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: AnyKey.self)
            var fields: [String: String] = [:]
            for key in c.allKeys {
                guard Self.keys.contains(key.stringValue) else {
                    throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "unknown device field; expected \(Self.keys.joined(separator: ", "))")
                }
                if key.stringValue == "download_interval_seconds" {
                    fields[key.stringValue] = String(try c.decode(Int.self, forKey: key))
                } else {
                    fields[key.stringValue] = try c.decode(String.self, forKey: key)
                }
            }
            guard let id = fields["id"], fields["profile"] != nil, fields["patient"] != nil else {
                throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: "a device needs id, profile and patient"))
            }
            self.id = id
            self.fields = fields
        }

        /// `id=…,profile=…,port=…,patient=…`
        init(spec: String) throws(SetupFailure) {
            var fields: [String: String] = [:]
            for part in spec.split(separator: ",") {
                let kv = part.split(separator: "=", maxSplits: 1)
                guard kv.count == 2, Self.keys.contains(String(kv[0])) else {
                    throw SetupFailure("--device: '\(part.prefix(40))' is not key=value with key one of \(Self.keys.joined(separator: ", "))")
                }
                fields[String(kv[0])] = String(kv[1])
            }
            guard let id = fields["id"], fields["profile"] != nil, fields["patient"] != nil else {
                throw SetupFailure("--device needs id=, profile= and patient=")
            }
            self.id = id
            self.fields = fields
        }
    }

    init() {}

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    enum CodingKeys: String, CodingKey {
        case site, gateway, broker, paths, devices
        case logLevel = "log_level"
    }
    enum BrokerKeys: String, CodingKey {
        case host, port, username
        case passwordFile = "password_file"
        case topicPrefix = "topic_prefix"
    }
    enum PathKeys: String, CodingKey {
        case database
        case controlSocket = "control_socket"
        case carePlans = "care_plans"
        case deviceProfiles = "device_profiles"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        site = try c.decodeIfPresent(String.self, forKey: .site)
        gateway = try c.decodeIfPresent(String.self, forKey: .gateway)
        logLevel = try c.decodeIfPresent(String.self, forKey: .logLevel)
        if c.contains(.broker) {
            let b = try c.nestedContainer(keyedBy: BrokerKeys.self, forKey: .broker)
            brokerHost = try b.decodeIfPresent(String.self, forKey: .host)
            brokerPort = try b.decodeIfPresent(Int.self, forKey: .port)
            brokerUsername = try b.decodeIfPresent(String.self, forKey: .username)
            brokerPasswordFile = try b.decodeIfPresent(String.self, forKey: .passwordFile)
            topicPrefix = try b.decodeIfPresent(String.self, forKey: .topicPrefix)
        }
        if c.contains(.paths) {
            let p = try c.nestedContainer(keyedBy: PathKeys.self, forKey: .paths)
            database = try p.decodeIfPresent(String.self, forKey: .database)
            controlSocket = try p.decodeIfPresent(String.self, forKey: .controlSocket)
            carePlans = try p.decodeIfPresent(String.self, forKey: .carePlans)
            deviceProfiles = try p.decodeIfPresent(String.self, forKey: .deviceProfiles)
        }
        devices = try c.decodeIfPresent([Device].self, forKey: .devices) ?? []
    }

    static func load(_ path: String) throws(SetupFailure) -> SetupAnswers {
        let bytes: [UInt8]
        do {
            bytes = try readFile(path)
        } catch {
            throw SetupFailure("cannot read \(path): \(error.message)")
        }
        do {
            return try YAMLDecoder().decode(SetupAnswers.self, from: bytes, fileName: path)
        } catch {
            throw SetupFailure("\(error)")
        }
    }

    static func readFile(_ path: String) throws(SetupFailure) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SetupFailure(String(cString: strerror(errno))) }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SetupFailure(String(cString: strerror(errno)))
            }
            if n == 0 { return out }
            out += buffer[0..<n]
            if out.count > 1 << 20 { throw SetupFailure("larger than 1 MiB") }
        }
    }

    // MARK: Validation

    static func isTopicLevel(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 64 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
    }

    /// A value written into the config between double quotes: no quote, backslash or control
    /// character, so it needs no escaping and cannot break out of its line.
    static func isPlainValue(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 1024 && s.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0 != "\"" && $0 != "\\" && $0.value != 0x7F }
    }

    func validate() throws(SetupFailure) {
        guard let site, Self.isTopicLevel(site) else { throw SetupFailure("site must be 1–64 letters, digits, '-' or '_'") }
        guard let gateway, Self.isTopicLevel(gateway) else { throw SetupFailure("gateway must be 1–64 letters, digits, '-' or '_'") }
        guard let brokerHost, Self.isPlainValue(brokerHost), !brokerHost.contains(" ") else {
            throw SetupFailure("broker host is needed (a host name or address)")
        }
        if let p = brokerPort, !(1...65_535).contains(p) { throw SetupFailure("broker port must be between 1 and 65535") }
        if let u = brokerUsername, !Self.isPlainValue(u) { throw SetupFailure("broker username must be printable, without quotes or backslashes") }
        for (name, value) in [("broker password_file", brokerPasswordFile), ("paths.database", database),
                              ("paths.control_socket", controlSocket), ("paths.care_plans", carePlans),
                              ("paths.device_profiles", deviceProfiles)] {
            if let v = value, !(v.hasPrefix("/") && Self.isPlainValue(v)) { throw SetupFailure("\(name) must be an absolute path") }
        }
        if let t = topicPrefix, !(Self.isPlainValue(t) && !t.contains("#") && !t.contains("+") && !t.hasSuffix("/")) {
            throw SetupFailure("broker topic_prefix must be a topic with no wildcards and no trailing '/'")
        }
        if let l = logLevel, !["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(l) {
            throw SetupFailure("log_level must be one of trace, debug, info, notice, warning, error, critical")
        }
        var seen = Set<String>()
        for d in devices where !seen.insert(d.id).inserted { throw SetupFailure("device id '\(d.id.prefix(64))' is given twice") }
    }

    var readingsTopic: String {
        let prefix = (topicPrefix ?? "vigil/v1/{site}/{gateway}")
            .replacing("{site}", with: site ?? "").replacing("{gateway}", with: gateway ?? "")
        return prefix + "/readings"
    }

    // MARK: The config file

    /// The config text: the same answers always give the same bytes.
    func configText() -> String {
        var out = """
            # Written by vigilctl setup; running it again with the same answers leaves this file alone.
            # Devices paired with vigilctl live in vigild's database, not here (docs/configuration.md).
            site: \(site ?? "")
            gateway: \(gateway ?? "")

            """
        if let logLevel { out += "log_level: \(logLevel)\n" }
        let paths = [("database", database), ("control_socket", controlSocket), ("care_plans", carePlans), ("device_profiles", deviceProfiles)]
        if paths.contains(where: { $0.1 != nil }) {
            out += "paths:\n"
            for (key, value) in paths { if let value { out += "  \(key): \"\(value)\"\n" } }
        }
        out += "broker:\n  host: \"\(brokerHost ?? "")\"\n  port: \(brokerPort ?? 1883)\n"
        if let brokerUsername { out += "  username: \"\(brokerUsername)\"\n" }
        if let brokerPasswordFile { out += "  password_file: \"\(brokerPasswordFile)\"\n" }
        if let topicPrefix { out += "  topic_prefix: \"\(topicPrefix)\"\n" }
        return out
    }

    // MARK: Prompts

    /// Asks for each answer on the terminal, offering the current one as the default.
    mutating func prompt() throws(SetupFailure) {
        print("Vigil gateway setup. Press Enter to keep the value in [brackets].\n")
        site = try ask("Site id (the home or ward, e.g. home-0042)", site)
        gateway = try ask("Gateway id (this box, e.g. gw-01)", gateway)
        brokerHost = try ask("MQTT broker host", brokerHost)
        brokerPort = Int(try ask("MQTT broker port", String(brokerPort ?? 1883)) ?? "") ?? brokerPort
        let user = try ask("MQTT user name (empty for none)", brokerUsername ?? "")
        brokerUsername = user?.isEmpty == false ? user : nil
        if brokerUsername != nil { brokerPasswordFile = try ask("File holding the MQTT password", brokerPasswordFile) }
        while true {
            let more = try ask("Pair a device? (y/n)", devices.isEmpty ? "y" : "n")
            guard more?.lowercased().hasPrefix("y") == true else { break }
            var fields: [String: String] = [:]
            fields["id"] = try ask("  Device id (your name for it, e.g. oximeter-bedroom)", nil)
            fields["profile"] = try ask("  Profile (vigilctl scan lists them, e.g. masimo-rad8)", nil)
            let endpoint = try ask("  Serial port (/dev/serial/by-id/…, usb) or Bluetooth address (AA:BB:…)", nil) ?? ""
            fields[endpoint.hasPrefix("/") || endpoint.hasPrefix("usb") ? "port" : "address"] = endpoint
            fields["patient"] = try ask("  Patient identifier (from the care team)", nil)
            let spec = fields.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            devices.append(try Device(spec: spec))
        }
    }

    private func ask(_ question: String, _ current: String?) throws(SetupFailure) -> String? {
        print(current.map { "\(question) [\($0)]: " } ?? "\(question): ", terminator: "")
        guard let line = readLine() else { throw SetupFailure("input ended before setup was complete") }
        let answer = line.trimmingSpaces
        return answer.isEmpty ? current : answer
    }
}


/// Writes the config atomically: a temporary file in the same directory, fsynced, mode 0640
/// (group: the existing file's, so vigild's group can still read it), renamed over the old one,
/// and the directory fsynced. A config not written by setup is kept once as `<path>.before-setup`.
enum ConfigFile {
    static let header = "# Written by vigilctl setup"

    /// Returns whether the file changed.
    static func write(_ text: String, to path: String) throws(SetupFailure) -> Bool {
        let bytes = Array(text.utf8)
        let existing = try? SetupAnswers.readFile(path)
        if existing == bytes { return false }
        var info = stat()
        let exists = stat(path, &info) == 0
        if let existing, !existing.starts(with: Array(header.utf8)) {
            let backup = path + ".before-setup"
            if access(backup, F_OK) != 0 { try put(existing, at: backup, group: exists ? info.st_gid : nil) }
        }
        try put(bytes, at: path, group: exists ? info.st_gid : nil)
        return true
    }

    private static func put(_ bytes: [UInt8], at path: String, group: gid_t?) throws(SetupFailure) {
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let dir = directory.isEmpty ? "/" : directory
        var template = Array((dir + "/.vigild.yaml.XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw SetupFailure("cannot create a file in \(dir): \(String(cString: strerror(errno)))") }
        let temp = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        func fail(_ what: String) -> SetupFailure {
            let reason = String(cString: strerror(errno))
            close(fd)
            unlink(temp)
            return SetupFailure("cannot write \(path) (\(what)): \(reason)")
        }
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw fail("write")
            }
            done += n
        }
        if let group, fchown(fd, uid_t.max, group) != 0, errno != EPERM { throw fail("fchown") }
        guard fchmod(fd, 0o640) == 0 else { throw fail("fchmod") }
        guard fsync(fd) == 0 else { throw fail("fsync") }
        close(fd)
        guard rename(temp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temp)
            throw SetupFailure("cannot replace \(path): \(reason)")
        }
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }
}

/// A real MQTT connection to the broker the answers name: it proves the broker accepts the
/// gateway's credentials, then watches the readings topic for each device's first reading.
final class ReadingWatcher: Sendable {
    let connection: MQTTConnection
    let topic: String
    private let seen = Mutex<Set<String>>([])
    private let consumer = Mutex<Task<Void, Never>?>(nil)

    private init(connection: MQTTConnection, topic: String) {
        self.connection = connection
        self.topic = topic
    }

    static func connect(_ answers: SetupAnswers, timeout: Duration = .seconds(10)) async throws(SetupFailure) -> ReadingWatcher {
        var password: String?
        if let file = answers.brokerPasswordFile {
            do {
                var text = String(decoding: try SetupAnswers.readFile(file), as: UTF8.self)
                while text.last == "\n" || text.last == "\r" { text.removeLast() }
                password = text
            } catch {
                throw SetupFailure("broker password_file \(file): \(error.message)")
            }
        }
        let options = MQTTOptions(
            host: answers.brokerHost ?? "", port: answers.brokerPort ?? 1883,
            clientID: "vigil-setup-\(answers.site ?? "")-\(answers.gateway ?? "")-\(getpid())", keepAliveSeconds: 30,
            cleanSession: true, username: answers.brokerUsername, password: password,
            reconnectDelayMin: .milliseconds(200), reconnectDelayMax: .seconds(2))
        let connection: MQTTConnection
        do {
            connection = try MQTTConnection(options: options)
        } catch {
            throw SetupFailure("cannot set up an MQTT client: \(error)")
        }
        let watcher = ReadingWatcher(connection: connection, topic: answers.readingsTopic)
        let events = connection.events()
        let (outcome, sink) = AsyncStream<String?>.makeStream(bufferingPolicy: .bufferingNewest(4))
        let task = Task { [watcher] in
            for await event in events {
                switch event {
                case .connected:
                    _ = try? watcher.connection.subscribe(watcher.topic, qos: 1)
                    sink.yield(nil)
                case .connectFailed(_, let reason):
                    sink.yield(reason)
                case .message(_, let payload):
                    if let device = (try? JSONValue.parse(payload))?["device"]?.stringValue {
                        watcher.seen.withLock { _ = $0.insert(device) }
                    }
                default:
                    break
                }
            }
            sink.finish()
        }
        watcher.consumer.withLock { $0 = task }
        do {
            try connection.start()
        } catch {
            await watcher.stop()
            throw SetupFailure("cannot reach the broker at \(options.host):\(options.port): \(error)")
        }
        let result: String?? = await withTaskGroup(of: String??.self) { group in
            group.addTask {
                for await o in outcome { return .some(o) }
                return .some("the connection ended")
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return .none
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        switch result {
        case .some(nil):
            return watcher
        case .some(let reason?):
            await watcher.stop()
            throw SetupFailure("the broker at \(options.host):\(options.port) refused the connection: \(reason)")
        case .none:
            let last = connection.snapshot.lastError ?? "no answer"
            await watcher.stop()
            throw SetupFailure("no MQTT connection to \(options.host):\(options.port) within \(timeout) (\(last)); check the host, port, firewall and credentials")
        }
    }

    /// Waits until a reading from each of `devices` has arrived, or `seconds` passed; returns
    /// the devices still missing.
    func waitForReadings(from devices: Set<String>, seconds: Double) async -> Set<String> {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .milliseconds(Int64(seconds * 1000)))
        while true {
            let missing = devices.subtracting(seen.withLock { $0 })
            if missing.isEmpty || clock.now >= deadline { return missing }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    func stop() async {
        await connection.stop()
        consumer.withLock { $0?.cancel() }
    }
}

/// The steps and their outcomes, printed as they happen (text) or at the end (--json).
struct Checklist {
    let json: Bool
    var steps: [(step: String, ok: Bool, detail: String)] = []

    mutating func pass(_ step: String, _ detail: String) { record(step, true, detail) }
    mutating func fail(_ step: String, _ detail: String) { record(step, false, detail) }

    private mutating func record(_ step: String, _ ok: Bool, _ detail: String) {
        steps.append((step, ok, detail))
        if !json { print("\(ok ? "✔" : "✘") \(step): \(detail)") }
    }

    /// Prints the summary and returns the exit status to throw.
    func finish(_ code: ExitCode) -> ExitCode {
        let ok = steps.allSatisfy(\.ok)
        if json {
            print(JSONValue.object([
                ("ok", .bool(ok)),
                ("steps", .array(steps.map { .object([("step", .string($0.step)), ("ok", .bool($0.ok)), ("detail", .string($0.detail))]) })),
            ]).serialized)
        } else {
            print(ok ? "\nSetup complete: every device's readings reach the care team." : "\nSetup is not complete: fix the ✘ step above and run vigilctl setup again.")
        }
        return code
    }
}
