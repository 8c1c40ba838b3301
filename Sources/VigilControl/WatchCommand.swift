import ArgumentParser
import Glibc
import StrictYAML
import Uplink
import VitalSigns

/// `vigilctl watch`: a care coordinator's view of a site's escalations, straight from the
/// broker, with acknowledgement through the downlink (`<prefix>/cmd/ack`, docs/downlink.md).
struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Show escalations as they arrive at the broker, and acknowledge them.",
        discussion: """
            Connects to the MQTT broker (not to vigild), subscribes to <prefix>/escalations and \
            prints one line per escalation: time, severity, rule, patient, state, summary, id. \
            Type `ack N [note]` (N is the number in brackets) to acknowledge one; --by names you.

            With --ack ID --by NAME, sends one acknowledgement and waits for the gateway's reply: \
            exit 0 when it was applied, 1 when the gateway refused it (the reason is printed), \
            69 when the broker or the reply did not come within --timeout, 64 for bad arguments.
            """)

    @Option(name: .long, help: ArgumentHelp("Read broker host, port, prefix and credentials from vigild's config.", valueName: "path"))
    var config: String?
    @Option(name: .long, help: "Broker host (default 127.0.0.1, or the config's).")
    var host: String?
    @Option(name: .long, help: "Broker port (default 1883, or the config's).")
    var port: Int?
    @Option(name: .customLong("topic-prefix"), help: ArgumentHelp("Topic prefix, e.g. vigil/v1/site/gw.", valueName: "prefix"))
    var topicPrefix: String?
    @Option(name: .long, help: "Site (with --gateway: prefix vigil/v1/SITE/GATEWAY).")
    var site: String?
    @Option(name: .long, help: "Gateway (with --site).")
    var gateway: String?
    @Option(name: .long, help: ArgumentHelp("CA certificate for TLS (broker.tls.ca_file).", valueName: "path"))
    var cafile: String?
    @Option(name: .long, help: ArgumentHelp("Client certificate for mTLS (broker.tls.cert_file).", valueName: "path"))
    var cert: String?
    @Option(name: .long, help: ArgumentHelp("Client key for mTLS (broker.tls.key_file).", valueName: "path"))
    var key: String?
    @Option(name: .long, help: "Broker user name.")
    var username: String?
    @Option(name: .customLong("password-file"), help: ArgumentHelp("File holding the broker password.", valueName: "path"))
    var passwordFile: String?
    @Flag(name: .long, help: "Also show gateway events (<prefix>/events).")
    var events = false
    @Flag(name: .long, help: "Print each message's JSON as received.")
    var json = false
    @Option(name: .long, help: ArgumentHelp("Acknowledge this escalation id and exit.", valueName: "id"))
    var ack: String?
    @Option(name: .long, help: ArgumentHelp("Who acknowledges (a care-team member's identifier).", valueName: "name"))
    var by: String?
    @Option(name: .long, help: ArgumentHelp("A note stored with the acknowledgement.", valueName: "text"))
    var detail: String?
    @Option(name: .long, help: "Seconds to wait: for the reply with --ack (default 10); else stop watching after this long.")
    var timeout: Double?
    @Option(name: .long, help: "Stop after this many escalations.")
    var count: Int?
    @Option(name: .customLong("ack-first-by"), help: ArgumentHelp("Acknowledge the first escalation seen as NAME (demo).", valueName: "name"))
    var ackFirstBy: String?

    func run() async throws {
        let settings = try resolve()
        if cafile != nil || cert != nil || key != nil {
            throw ValidationError("--cafile/--cert/--key need TLS in the MQTT client, which this build does not have yet (broker.tls)")
        }
        if ack != nil, by == nil { throw ValidationError("--ack needs --by NAME") }
        if let ack, !DownlinkParser.isValidID(ack) { throw ValidationError("--ack must be an escalation id") }
        var options = MQTTOptions(host: settings.host, port: settings.port, clientID: "vigilctl-watch-\(getpid())",
                                  keepAliveSeconds: 30, cleanSession: true,
                                  reconnectDelayMin: .milliseconds(200), reconnectDelayMax: .seconds(5))
        options.username = settings.username
        options.password = settings.password
        let connection: MQTTConnection
        do { connection = try MQTTConnection(options: options) } catch {
            throw ValidationError("cannot set up the MQTT client: \(error)")
        }
        let session = WatchSession(connection: connection, prefix: settings.prefix, json: json)
        let status: Int32
        if let ack, let by {
            status = await session.acknowledge(escalation: ack, by: by, detail: detail, timeout: timeout ?? 10)
        } else {
            status = await session.watch(events: events, by: by ?? ackFirstBy, ackFirst: ackFirstBy != nil, detail: detail,
                                         timeout: timeout, count: count)
        }
        await connection.stop()
        if status != 0 { throw ExitCode(status) }
    }

    struct Settings {
        var host = "127.0.0.1"
        var port = 1883
        var prefix: String
        var username: String?
        var password: String?
    }

    /// The broker settings: the daemon's config (if given), overridden by flags.
    func resolve() throws -> Settings {
        var host = "127.0.0.1", port = 1883
        var prefix: String?
        var username: String?
        var passwordPath: String?
        if let config {
            let node: YAMLNode
            do { node = try YAMLNode.parse(try WatchFiles.read(config), fileName: config) } catch {
                throw ValidationError("\(error)")
            }
            let site = node.scalar("site"), gateway = node.scalar("gateway")
            let broker = node.child("broker")
            if let h = broker?.scalar("host") { host = h }
            if let p = broker?.scalar("port").flatMap({ Int($0) }) { port = p }
            let template = broker?.scalar("topic_prefix") ?? "vigil/v1/{site}/{gateway}"
            if let site, let gateway {
                prefix = template.replacing("{site}", with: site).replacing("{gateway}", with: gateway)
            }
            username = broker?.scalar("username")
            passwordPath = broker?.scalar("password_file")
        }
        if let h = self.host { host = h }
        if let p = self.port { port = p }
        if let site, let gateway { prefix = "vigil/v1/\(site)/\(gateway)" }
        if let topicPrefix { prefix = topicPrefix }
        if let u = self.username { username = u }
        if let f = passwordFile { passwordPath = f }
        guard (1...65_535).contains(port) else { throw ValidationError("--port must be 1–65535") }
        guard var prefix, !prefix.isEmpty, !prefix.contains("+"), !prefix.contains("#") else {
            throw ValidationError("give --topic-prefix, --site and --gateway, or --config")
        }
        while prefix.hasSuffix("/") { prefix.removeLast() }
        var password: String?
        if let passwordPath {
            do {
                var text = try WatchFiles.read(passwordPath)
                while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
                password = text
            } catch {
                throw ValidationError("\(error)")
            }
        }
        return Settings(host: host, port: port, prefix: prefix, username: username, password: password)
    }
}

/// The watch loop and the one-shot acknowledgement, over one MQTT connection.
struct WatchSession {
    let connection: MQTTConnection
    let prefix: String
    let json: Bool

    enum Input: Sendable {
        case mqtt(MQTTEvent)
        case line(String)
        case timeout
    }

    /// Sends `cmd/ack` and waits for `reply/<id>`. Returns the exit status.
    func acknowledge(escalation: String, by: String, detail: String?, timeout: Double) async -> Int32 {
        let commandID = "watch-\(getpid())-\(Timestamp.now().millisecondsSinceEpoch)"
        let (stream, continuation) = AsyncStream<Input>.makeStream()
        let events = connection.events()
        let pump = Task {
            for await e in events { continuation.yield(.mqtt(e)) }
        }
        let timer = Task {
            try? await Task.sleep(for: .milliseconds(Int64(timeout * 1000)))
            continuation.yield(.timeout)
        }
        defer { pump.cancel(); timer.cancel() }
        do { try connection.start() } catch {
            printError("cannot start the MQTT client: \(error)")
            return 69
        }
        var sent = false
        for await input in stream {
            switch input {
            case .mqtt(.connected):
                guard !sent else { continue }
                do {
                    try connection.subscribe(prefix + "/reply/" + commandID, qos: 1)
                    _ = try connection.publish(topic: prefix + "/cmd/ack",
                                               payload: Self.ackCommand(id: commandID, escalation: escalation, by: by, detail: detail),
                                               qos: 1)
                    sent = true
                } catch {
                    printError("cannot send the acknowledgement: \(error)")
                    return 69
                }
            case .mqtt(.message(let topic, let payload)) where topic == prefix + "/reply/" + commandID:
                guard let reply = try? JSONValue.parse(payload) else { continue }
                if json { say(String(decoding: payload, as: UTF8.self)) }
                if reply["ok"]?.boolValue == true {
                    if !json { say("acknowledged \(escalation) as \(by)") }
                    return 0
                }
                let code = reply["error"]?["code"]?.stringValue ?? "error"
                let message = reply["error"]?["message"]?.stringValue ?? ""
                printError("the gateway refused the acknowledgement: \(code): \(message)")
                return 1
            case .mqtt(.connectFailed(_, let reason)):
                printError("broker \(connection.options.host):\(connection.options.port): \(reason); retrying")
            case .timeout:
                printError(sent ? "no reply from the gateway within \(timeout) s (is vigild connected to this broker?)"
                                : "could not reach the broker within \(timeout) s")
                return 69
            default:
                continue
            }
        }
        return 69
    }

    /// Prints escalations as they arrive; `ack N` on stdin acknowledges the N-th.
    func watch(events: Bool, by: String?, ackFirst: Bool, detail: String?, timeout: Double?, count: Int?) async -> Int32 {
        let (stream, continuation) = AsyncStream<Input>.makeStream()
        let mqtt = connection.events()
        let pump = Task {
            for await e in mqtt { continuation.yield(.mqtt(e)) }
            continuation.finish()
        }
        let timer = Task {
            guard let timeout else { return }
            try? await Task.sleep(for: .milliseconds(Int64(timeout * 1000)))
            continuation.yield(.timeout)
        }
        defer { pump.cancel(); timer.cancel() }
        // stdin is read on a thread of its own: a blocking read must not hold a thread of the
        // cooperative pool (two here), nor of Dispatch's global queues, which back that pool.
        if !ackFirst, !StdinThread.start({ continuation.yield(.line($0)) }) {
            printError("cannot start the stdin reader; typed commands are ignored")
        }
        do { try connection.start() } catch {
            printError("cannot start the MQTT client: \(error)")
            return 69
        }
        var seen: [String] = []
        var shown = 0
        var pendingAcks: Set<String> = []
        let replyFilter = prefix + "/reply/+"
        for await input in stream {
            switch input {
            case .mqtt(.connected):
                do {
                    try connection.subscribe(prefix + "/escalations", qos: 1)
                    if events { try connection.subscribe(prefix + "/events", qos: 1) }
                    try connection.subscribe(replyFilter, qos: 1)
                } catch {
                    printError("cannot subscribe: \(error)")
                    return 69
                }
                if !json { say("watching \(prefix)/escalations on \(connection.options.host):\(connection.options.port)") }
            case .mqtt(.connectFailed(_, let reason)):
                printError("broker \(connection.options.host):\(connection.options.port): \(reason); retrying")
            case .mqtt(.message(let topic, let payload)):
                if topic.hasPrefix(prefix + "/reply/") {
                    let id = String(topic.dropFirst(prefix.count + 7))
                    guard pendingAcks.remove(id) != nil, let reply = try? JSONValue.parse(payload) else { continue }
                    if json { say(String(decoding: payload, as: UTF8.self)); continue }
                    if reply["ok"]?.boolValue == true {
                        say("ack applied: \(reply["result"]?["escalation"]?.stringValue ?? "?") by \(reply["result"]?["acknowledged_by"]?.stringValue ?? "?")")
                    } else {
                        say("ack refused: \(reply["error"]?["code"]?.stringValue ?? "error"): \(reply["error"]?["message"]?.stringValue ?? "")")
                    }
                    continue
                }
                if json { say(String(decoding: payload, as: UTF8.self)) }
                guard let doc = try? JSONValue.parse(payload) else { continue }
                if topic == prefix + "/events" {
                    if !json { say(Self.eventLine(doc)) }
                    continue
                }
                guard let id = doc["id"]?.stringValue else { continue }
                if !seen.contains(id) { seen.append(id) }
                let n = (seen.firstIndex(of: id) ?? 0) + 1
                if !json { say(Self.escalationLine(doc, number: n)) }
                shown += 1
                if ackFirst, n == 1, doc["state"]?.stringValue != "acknowledged", doc["state"]?.stringValue != "resolved", let by {
                    if send(ack: id, by: by, detail: detail, pending: &pendingAcks) && !json { say("ack sent for [1] as \(by)") }
                }
                if let count, shown >= count, pendingAcks.isEmpty { return 0 }
            case .line(let line):
                let words = line.split(separator: " ", maxSplits: 2).map(String.init)
                guard words.first == "ack" else {
                    if !words.isEmpty { say("commands: ack N [note]") }
                    continue
                }
                guard let by else { say("start vigilctl watch with --by NAME to acknowledge"); continue }
                guard words.count >= 2, let n = Int(words[1]), (1...seen.count).contains(n) else {
                    say("ack N: N is the number in brackets (1…\(seen.count))")
                    continue
                }
                if send(ack: seen[n - 1], by: by, detail: words.count > 2 ? words[2] : detail, pending: &pendingAcks) {
                    say("ack sent for [\(n)]")
                }
            case .timeout:
                return 0
            default:
                continue
            }
        }
        return 0
    }

    private func send(ack escalation: String, by: String, detail: String?, pending: inout Set<String>) -> Bool {
        let id = "watch-\(getpid())-\(Timestamp.now().millisecondsSinceEpoch)-\(pending.count)"
        do {
            _ = try connection.publish(topic: prefix + "/cmd/ack",
                                       payload: Self.ackCommand(id: id, escalation: escalation, by: by, detail: detail), qos: 1)
            pending.insert(id)
            return true
        } catch {
            printError("cannot send the acknowledgement: \(error)")
            return false
        }
    }

    static func ackCommand(id: String, escalation: String, by: String, detail: String?) -> [UInt8] {
        var args: [(String, JSONValue)] = [("escalation", .string(escalation)), ("by", .string(by))]
        if let detail { args.append(("detail", .string(detail))) }
        let doc: JSONValue = .object([("id", .string(id)), ("issued_at", .string(Timestamp.now().iso8601)), ("args", .object(args))])
        return Array(doc.serialized.utf8)
    }

    /// `[1] 2026-11-25T11:48:15.000Z  URGENT     spo2-low  patient demo-patient-2  open  spo2 below 90 % for 15 s  id f37f…`
    static func escalationLine(_ e: JSONValue, number: Int) -> String {
        func s(_ k: String) -> String { e[k]?.stringValue ?? "?" }
        let severity = s("severity").uppercased()
        var line = "[\(number)] \(s("at"))  \(severity.padding(9))  \(s("rule"))  patient \(s("patient"))  \(s("state"))  \(s("summary"))  id \(s("id"))"
        if let by = e["acknowledged_by"]?.stringValue { line += "  by \(by)" }
        return line
    }

    static func eventLine(_ e: JSONValue) -> String {
        "event \(e["at"]?.stringValue ?? "?")  \(e["kind"]?.stringValue ?? "?")  count \(e["count"]?.int64Value.map(String.init) ?? "-")"
    }
}

/// Reads stdin line by line on a detached POSIX thread until end of file.
enum StdinThread {
    private final class Box {
        let onLine: @Sendable (String) -> Void
        init(_ onLine: @escaping @Sendable (String) -> Void) { self.onLine = onLine }
    }

    /// The corresponding C functions are `pthread_create` and `pthread_detach`.
    static func start(_ onLine: @escaping @Sendable (String) -> Void) -> Bool {
        let box = Unmanaged.passRetained(Box(onLine)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { arg in
            guard let arg else { return nil }
            let box = Unmanaged<Box>.fromOpaque(arg).takeRetainedValue()
            while let line = readLine() { box.onLine(line) }
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            return false
        }
        pthread_detach(thread)
        return true
    }
}

/// One line to stdout, written at once with write(2): under a pipe (the demo, a log) stdio's
/// stdout is block-buffered, and `fflush(NULL)` would wait on stdin's lock, held by the reader
/// thread blocked in getline.
private func say(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
        if n < 0, errno == EINTR { continue }
        if n <= 0 { return }
        offset += n
    }
}

private extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}

private extension YAMLNode {
    func child(_ key: String) -> YAMLNode? {
        guard case .mapping(let pairs) = kind else { return nil }
        return pairs.first { $0.key == key }?.value
    }
    func scalar(_ key: String) -> String? {
        guard let node = child(key), case .scalar(let text, _) = node.kind else { return nil }
        return text
    }
}

extension Timestamp {
    /// The wall clock (`clock_gettime(CLOCK_REALTIME)`).
    static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(millisecondsSinceEpoch: Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000)
    }
}

/// Small text files (config, password) with errno-aware errors.
enum WatchFiles {
    struct ReadError: Error, CustomStringConvertible {
        var path: String
        var errno: Int32
        var description: String { "\(path): cannot read: \(String(cString: strerror(errno)))" }
    }

    static func read(_ path: String) throws(ReadError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ReadError(path: path, errno: errno) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ReadError(path: path, errno: errno)
            }
            if n == 0 { break }
            bytes += buffer[0..<n]
            if bytes.count > 1 << 20 { throw ReadError(path: path, errno: EFBIG) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
