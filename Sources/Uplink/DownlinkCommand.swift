public import VitalSigns

// The downlink's pure half: topic → command name, size limit, strict JSON schema, id and
// replay-window checks. No I/O, no clock (time is an input), no logging, so issue 8's fuzzer
// can drive it directly. The daemon (`Sources/VigilDaemon/Downlink*.swift`) applies what it
// returns. The contract is docs/downlink.md and docs/schemas/cmd-*.schema.json.

/// The commands the gateway accepts on `<prefix>/cmd/<name>`.
public enum DownlinkCommandName: String, Sendable, Hashable, CaseIterable {
    case carePlan = "care-plan"
    case ack
    case config
    case ping
    case resend
}

/// Limits the parser enforces (config `downlink:`).
public struct DownlinkLimits: Sendable, Hashable {
    /// Largest payload accepted, bytes; checked before any parsing (default 64 KiB).
    public var maxBytes: Int
    /// How far `issued_at` may lie from the gateway's clock, either way, seconds (default 300).
    public var replayWindowSeconds: Int64

    public static let defaultMaxBytes = 65_536
    public static let defaultReplayWindowSeconds: Int64 = 300

    public init(maxBytes: Int = DownlinkLimits.defaultMaxBytes,
                replayWindowSeconds: Int64 = DownlinkLimits.defaultReplayWindowSeconds) {
        self.maxBytes = maxBytes
        self.replayWindowSeconds = replayWindowSeconds
    }
}

/// A setting the `config` command may change: the safe subset (docs/downlink.md). Nothing
/// here can disconnect the gateway for good, move its files or touch credentials.
public enum DownlinkSetting: Sendable, Hashable {
    /// `log_level`: one of trace, debug, info, notice, warning, error, critical.
    case logLevel(String)
    /// `downlink.max_bytes`: 1024…1048576.
    case downlinkMaxBytes(Int)
    /// `downlink.replay_window_seconds`: 30…86400.
    case replayWindowSeconds(Int64)

    /// The key as it appears in `args.set`.
    public var key: String {
        switch self {
        case .logLevel: "log_level"
        case .downlinkMaxBytes: "downlink.max_bytes"
        case .replayWindowSeconds: "downlink.replay_window_seconds"
        }
    }

    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
    public static let keys = ["log_level", "downlink.max_bytes", "downlink.replay_window_seconds"]
}

/// A command's validated arguments.
public enum DownlinkArguments: Sendable, Hashable {
    /// Sets or replaces one patient's care plan. `planYAML` is the plan document exactly as a
    /// file in `paths.care_plans` would hold it (docs/care-plans.md); `patient` must match it.
    case carePlan(patient: String, planYAML: String)
    /// Acknowledges an escalation: who (a care-team member's identifier) and an optional note.
    case ack(escalation: String, by: String, detail: String?)
    /// Changes settings of the safe subset, all or none.
    case config([DownlinkSetting])
    case ping
    /// Re-sends stored readings measured in `[from, to)`, optionally of one device or patient,
    /// at most `limit` of them.
    case resend(from: Timestamp, to: Timestamp, device: String?, patient: String?, limit: Int)
}

/// A command that passed every check the parser can make.
public struct DownlinkCommand: Sendable, Hashable {
    /// 1–64 characters `[A-Za-z0-9._:-]`: the reply goes to `<prefix>/reply/<id>`.
    public var id: String
    public var issuedAt: Timestamp
    public var name: DownlinkCommandName
    public var arguments: DownlinkArguments
}

/// Why a command was refused. Never carries payload content or patient data: the message
/// names the field and the rule it broke.
public struct DownlinkError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The topic is not `<prefix>/cmd/<name>`: ignored, never answered.
        public static let topicNotAllowed = Code(rawValue: "topic_not_allowed")
        public static let tooLarge = Code(rawValue: "too_large")
        public static let malformedJSON = Code(rawValue: "malformed_json")
        public static let invalidEnvelope = Code(rawValue: "invalid_envelope")
        public static let invalidID = Code(rawValue: "invalid_id")
        public static let unknownCommand = Code(rawValue: "unknown_command")
        public static let stale = Code(rawValue: "stale")
        public static let issuedInFuture = Code(rawValue: "issued_in_future")
        public static let invalidArguments = Code(rawValue: "invalid_arguments")
        /// The id was seen before (within the window): not applied a second time.
        public static let replayed = Code(rawValue: "replayed")
        // Apply-time refusals (the daemon).
        public static let planInvalid = Code(rawValue: "plan_invalid")
        public static let versionNotNewer = Code(rawValue: "version_not_newer")
        public static let unknownEscalation = Code(rawValue: "unknown_escalation")
        public static let settingRefused = Code(rawValue: "setting_refused")
        public static let storeFailed = Code(rawValue: "store_failed")
        public static let internalError = Code(rawValue: "internal_error")
    }

    public var code: Code
    /// What went wrong, naming the field; no payload content.
    public var message: String
    /// The command's id when it was readable and valid (then a reply can be sent), else nil.
    public var id: String?
    /// The command name from the topic, when the topic was allowed.
    public var command: String?

    public init(_ code: Code, _ message: String, id: String? = nil, command: String? = nil) {
        self.code = code
        self.message = message
        self.id = id
        self.command = command
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// Parses and validates downlink commands. Pure: the caller passes the time.
public struct DownlinkParser: Sendable {
    /// The gateway's topic prefix, without a trailing `/`.
    public var prefix: String
    public var limits: DownlinkLimits

    /// Longest `ack.by`, characters.
    public static let maxByLength = 128
    /// Longest `ack.detail`, characters.
    public static let maxDetailLength = 1024
    /// Most readings one `resend` may re-queue, and its default.
    public static let maxResendLimit = 100_000
    public static let defaultResendLimit = 10_000
    /// Longest time range one `resend` may cover (31 days).
    public static let maxResendRangeSeconds: Int64 = 31 * 86_400

    public init(prefix: String, limits: DownlinkLimits = DownlinkLimits()) {
        self.prefix = prefix
        self.limits = limits
    }

    /// The subscription filter for commands: `<prefix>/cmd/+`.
    public var subscription: String { prefix + "/cmd/+" }

    /// `<prefix>/reply/<id>`.
    public func replyTopic(id: String) -> String { prefix + "/reply/" + id }

    /// The command name a topic addresses, or a `topicNotAllowed` error for anything but
    /// exactly `<prefix>/cmd/<one level>`.
    public func commandName(topic: String) throws(DownlinkError) -> String {
        let head = prefix + "/cmd/"
        guard topic.hasPrefix(head) else {
            throw DownlinkError(.topicNotAllowed, "commands are accepted only on <prefix>/cmd/<name>")
        }
        let name = String(topic.dropFirst(head.count))
        guard !name.isEmpty, !name.contains("/"), name.utf8.count <= 64 else {
            throw DownlinkError(.topicNotAllowed, "the command topic must be <prefix>/cmd/<name> with one name level of 1–64 bytes")
        }
        return name
    }

    /// Every check in order: topic, size (before parsing), JSON, envelope, id, command name,
    /// `issued_at` window, arguments. The replay guard (ids seen before) is the store's job.
    public func parse(topic: String, payload: [UInt8], now: Timestamp) throws(DownlinkError) -> DownlinkCommand {
        let name = try commandName(topic: topic)
        guard payload.count <= limits.maxBytes else {
            throw DownlinkError(.tooLarge, "the payload of \(payload.count) bytes exceeds downlink.max_bytes (\(limits.maxBytes))", command: name)
        }
        let json: JSONValue
        do {
            json = try JSONValue.parse(payload, maxDepth: 16)
        } catch {
            throw DownlinkError(.malformedJSON, "the payload is not JSON (\(error.reason) at byte \(error.offset))", command: name)
        }
        guard case .object(let members) = json else {
            throw DownlinkError(.invalidEnvelope, "the payload must be a JSON object", command: name)
        }
        // The id first, so every later refusal can be answered.
        var id: String?
        if let raw = members.first(where: { $0.0 == "id" })?.1, case .string(let s) = raw, Self.isValidID(s) {
            id = s
        }
        let fields = try Fields(members, path: "", id: id, command: name)
        guard let id else {
            throw DownlinkError(fields.has("id") ? .invalidID : .invalidEnvelope,
                                fields.has("id") ? "id must be a string of 1–64 characters [A-Za-z0-9._:-]" : "missing field 'id'",
                                command: name)
        }
        try fields.allow(["id", "issued_at", "args"])
        guard let command = DownlinkCommandName(rawValue: name) else {
            throw DownlinkError(.unknownCommand,
                                "unknown command; this gateway accepts \(DownlinkCommandName.allCases.map(\.rawValue).joined(separator: ", "))",
                                id: id, command: name)
        }
        let issuedText = try fields.string("issued_at", code: .invalidEnvelope)
        guard issuedText.utf8.count <= 40, issuedText.hasSuffix("Z"), let issuedAt = Timestamp(iso8601: issuedText) else {
            throw DownlinkError(.invalidEnvelope, "issued_at must be an RFC 3339 UTC time such as 2026-11-25T11:48:15Z", id: id, command: name)
        }
        let window = limits.replayWindowSeconds * 1000
        let skew = now.milliseconds(since: issuedAt)
        if skew > window {
            throw DownlinkError(.stale, "issued_at is more than \(limits.replayWindowSeconds) s in the past", id: id, command: name)
        }
        if skew < -window {
            throw DownlinkError(.issuedInFuture, "issued_at is more than \(limits.replayWindowSeconds) s in the future", id: id, command: name)
        }
        guard let argsValue = fields.value("args") else {
            throw DownlinkError(.invalidEnvelope, "missing field 'args' (an object, {} when the command takes none)", id: id, command: name)
        }
        guard case .object(let argMembers) = argsValue else {
            throw DownlinkError(.invalidArguments, "args must be an object", id: id, command: name)
        }
        let args = try Fields(argMembers, path: "args.", id: id, command: name, code: .invalidArguments)
        let arguments = try Self.arguments(command, args)
        return DownlinkCommand(id: id, issuedAt: issuedAt, name: command, arguments: arguments)
    }

    /// 1–64 characters of `[A-Za-z0-9._:-]`: safe as one MQTT topic level and in logs.
    public static func isValidID(_ s: String) -> Bool {
        let u = s.utf8
        guard (1...64).contains(u.count) else { return false }
        return u.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == 0x2E || b == 0x5F || b == 0x3A || b == 0x2D
        }
    }

    private static func arguments(_ command: DownlinkCommandName, _ a: Fields) throws(DownlinkError) -> DownlinkArguments {
        switch command {
        case .ping:
            try a.allow([])
            return .ping
        case .carePlan:
            try a.allow(["patient", "plan"])
            let patient = try a.string("patient", maxLength: 128)
            let plan = try a.string("plan", maxLength: 60_000)
            return .carePlan(patient: patient, planYAML: plan)
        case .ack:
            try a.allow(["escalation", "by", "detail"])
            let escalation = try a.string("escalation", maxLength: 64)
            guard escalation.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
                throw a.error("args.escalation must be an escalation id (lower-case hexadecimal)")
            }
            let by = try a.string("by", maxLength: maxByLength)
            let detail = a.has("detail") ? try a.string("detail", maxLength: maxDetailLength, allowEmpty: true) : nil
            return .ack(escalation: escalation, by: by, detail: detail)
        case .config:
            try a.allow(["set"])
            guard let setValue = a.value("set"), case .object(let members) = setValue else {
                throw a.error(a.has("set") ? "args.set must be an object" : "missing field 'args.set'")
            }
            let s = try Fields(members, path: "args.set.", id: a.id, command: a.command, code: .invalidArguments)
            guard !members.isEmpty else { throw a.error("args.set must name at least one setting") }
            try s.allow(DownlinkSetting.keys, hint: "; the settings a command may change are \(DownlinkSetting.keys.joined(separator: ", "))")
            var out: [DownlinkSetting] = []
            if s.has("log_level") {
                let level = try s.string("log_level", maxLength: 16)
                guard DownlinkSetting.logLevels.contains(level) else {
                    throw a.error("args.set.log_level must be one of \(DownlinkSetting.logLevels.joined(separator: ", "))")
                }
                out.append(.logLevel(level))
            }
            if s.has("downlink.max_bytes") {
                out.append(.downlinkMaxBytes(Int(try s.integer("downlink.max_bytes", in: 1024...1_048_576))))
            }
            if s.has("downlink.replay_window_seconds") {
                out.append(.replayWindowSeconds(try s.integer("downlink.replay_window_seconds", in: 30...86_400)))
            }
            return .config(out)
        case .resend:
            try a.allow(["from", "to", "device", "patient", "limit"])
            let fromText = try a.string("from", maxLength: 40)
            let toText = try a.string("to", maxLength: 40)
            guard let from = Timestamp(iso8601: fromText) else { throw a.error("args.from must be an RFC 3339 time") }
            guard let to = Timestamp(iso8601: toText) else { throw a.error("args.to must be an RFC 3339 time") }
            guard from < to else { throw a.error("args.from must be before args.to") }
            guard to.milliseconds(since: from) <= maxResendRangeSeconds * 1000 else {
                throw a.error("args.from to args.to may span at most \(maxResendRangeSeconds / 86_400) days")
            }
            let device = a.has("device") ? try a.string("device", maxLength: 64) : nil
            let patient = a.has("patient") ? try a.string("patient", maxLength: 128) : nil
            let limit = a.has("limit") ? Int(try a.integer("limit", in: 1...Int64(maxResendLimit))) : defaultResendLimit
            return .resend(from: from, to: to, device: device, patient: patient, limit: limit)
        }
    }
}

/// An object's members with strict checks: no duplicate keys, no unknown keys, typed getters
/// whose errors name the field (`args.by`) but never quote its value.
private struct Fields {
    let members: [(String, JSONValue)]
    let path: String
    let id: String?
    let command: String?
    let code: DownlinkError.Code

    init(_ members: [(String, JSONValue)], path: String, id: String?, command: String?,
         code: DownlinkError.Code = .invalidEnvelope) throws(DownlinkError) {
        self.members = members
        self.path = path
        self.id = id
        self.command = command
        self.code = code
        var seen = Set<String>()
        for (k, _) in members where !seen.insert(k).inserted {
            throw DownlinkError(code, "field '\(path)\(Self.shown(k))' appears twice", id: id, command: command)
        }
    }

    /// A key as it may appear in an error: short, printable ASCII only (it is sender input).
    static func shown(_ key: String) -> String {
        let clean = key.unicodeScalars.prefix(40).map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F ? Character($0) : "?" }
        return String(clean) + (key.unicodeScalars.count > 40 ? "…" : "")
    }

    func error(_ message: String) -> DownlinkError { DownlinkError(code, message, id: id, command: command) }

    func has(_ key: String) -> Bool { members.contains { $0.0 == key } }
    func value(_ key: String) -> JSONValue? { members.first { $0.0 == key }?.1 }

    func allow(_ keys: [String], hint: String = "") throws(DownlinkError) {
        if let unknown = members.first(where: { !keys.contains($0.0) }) {
            throw error("unknown field '\(path)\(Self.shown(unknown.0))'\(hint)")
        }
    }

    func string(_ key: String, code override: DownlinkError.Code? = nil, maxLength: Int = 256,
                allowEmpty: Bool = false) throws(DownlinkError) -> String {
        let err = { (m: String) in DownlinkError(override ?? code, m, id: id, command: command) }
        guard let v = value(key) else { throw err("missing field '\(path)\(key)'") }
        guard case .string(let s) = v else { throw err("\(path)\(key) must be a string") }
        guard allowEmpty || !s.isEmpty else { throw err("\(path)\(key) must not be empty") }
        guard s.count <= maxLength else { throw err("\(path)\(key) must be at most \(maxLength) characters") }
        guard !s.unicodeScalars.contains(where: { $0.value == 0 }) else { throw err("\(path)\(key) must not contain NUL") }
        return s
    }

    func integer(_ key: String, in range: ClosedRange<Int64>) throws(DownlinkError) -> Int64 {
        guard let v = value(key) else { throw error("missing field '\(path)\(key)'") }
        let n: Int64?
        switch v {
        case .int(let i): n = i
        case .double(let d) where d.rounded() == d && abs(d) < 9e15: n = Int64(d)
        default: n = nil
        }
        guard let n else { throw error("\(path)\(key) must be an integer") }
        guard range.contains(n) else { throw error("\(path)\(key) must be between \(range.lowerBound) and \(range.upperBound)") }
        return n
    }
}
