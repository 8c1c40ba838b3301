import ClinicalRules
import Logging
import ReadingStore
import SerialLink
import ServiceLifecycle
import Synchronization
import StrictYAML
import Uplink
import VitalSigns

/// Receives the care team's commands on `<prefix>/cmd/+` and applies them one at a time
/// (docs/downlink.md). Subscribes on every `.connected` (the session is persistent, but a
/// broker that lost it must not leave the gateway deaf), consumes `MQTTEvent.message`.
struct DownlinkService: Service {
    let connection: MQTTConnection
    let processor: DownlinkProcessor
    let logger: Logger

    func run() async throws {
        let events = connection.events()
        let filter = await processor.subscription
        let connection = self.connection
        let logger = self.logger
        @Sendable func subscribe() {
            do { try connection.subscribe(filter, qos: 1) } catch {
                logger.error("cannot subscribe to downlink commands", metadata: ["error": "\(error)"])
            }
        }
        // The forwarder's service may have connected before this stream existed.
        if connection.snapshot.connected { subscribe() }
        let processor = self.processor
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    // Coalesced `command_refused` events are flushed once a minute.
                    while !Task.isCancelled {
                        do { try await Task.sleep(for: .seconds(60)) } catch { return }
                        await processor.flushRefusals()
                    }
                }
                for await event in events {
                    switch event {
                    case .connected: subscribe()
                    case .message(let topic, let payload): await processor.handle(topic: topic, payload: payload)
                    default: break
                    }
                }
                group.cancelAll()
            }
        }
        await processor.flushRefusals()
    }
}

/// Validates and applies downlink commands. An actor, so commands apply strictly one at a
/// time in arrival order.
actor DownlinkProcessor {
    private var parser: DownlinkParser
    private let store: ReadingStore
    private let rules: RuleEvaluator
    private let forwarder: Forwarder
    private let connection: MQTTConnection
    private let carePlansDirectory: String
    private let startedAt: Timestamp
    private let logger: Logger
    private let clock: @Sendable () -> Timestamp

    /// Refusals that could not be answered (no usable id), not yet reported upstream.
    private var unansweredRefusals: Int64 = 0
    private var unansweredCodes: [String: Int64] = [:]
    private var lastRefusalEventAt: Timestamp?
    /// Every command refused, answered or not, since start (tests, status).
    private(set) var refusedTotal: Int64 = 0
    private(set) var appliedTotal: Int64 = 0

    /// `command_refused` events are coalesced to at most one a minute: a flood of garbage
    /// must not grow the never-evicted priority lane without bound.
    static let refusalEventInterval: Int64 = 60_000

    init(prefix: String, limits: DownlinkLimits, store: ReadingStore, rules: RuleEvaluator, forwarder: Forwarder,
         connection: MQTTConnection, carePlansDirectory: String, startedAt: Timestamp, logger: Logger,
         clock: @escaping @Sendable () -> Timestamp = { realtimeNow() }) {
        parser = DownlinkParser(prefix: prefix, limits: limits)
        self.store = store
        self.rules = rules
        self.forwarder = forwarder
        self.connection = connection
        self.carePlansDirectory = carePlansDirectory
        self.startedAt = startedAt
        self.logger = logger
        self.clock = clock
    }

    var subscription: String { parser.subscription }

    /// One message from the broker. Never throws, never traps: every failure becomes a reply
    /// (when the command has a usable id) or a counted `command_refused` event, and a log line
    /// that names the reason but never the payload.
    func handle(topic: String, payload: [UInt8]) async {
        let now = clock()
        let command: DownlinkCommand
        do {
            command = try parser.parse(topic: topic, payload: payload, now: now)
        } catch {
            if error.code == .topicNotAllowed {
                // Not ours (a stale subscription, a misrouted publish): ignored, not answered.
                refusedTotal += 1
                logger.notice("downlink message ignored: not on <prefix>/cmd/<name>", metadata: ["bytes": "\(payload.count)"])
                return
            }
            await refuse(error, now: now, bytes: payload.count)
            return
        }
        // The replay guard: an id already received is answered, never applied again.
        do {
            if let seen = try store.downlinkCommand(id: command.id) {
                await refuse(DownlinkError(.replayed,
                                           "command id already received at \(seen.receivedAt.iso8601) (outcome \(seen.outcome)); not applied again",
                                           id: command.id, command: command.name.rawValue), now: now, bytes: payload.count)
                return
            }
        } catch {
            await refuse(DownlinkError(.storeFailed, "the replay guard cannot read the store", id: command.id,
                                       command: command.name.rawValue), now: now, bytes: payload.count)
            logger.error("downlink replay guard failed", metadata: ["error": "\(error)"])
            return
        }
        let outcome = await apply(command, now: now)
        switch outcome {
        case .success(let result):
            appliedTotal += 1
            logger.info("downlink command applied", metadata: ["command.id": "\(command.id)", "command.name": "\(command.name.rawValue)"])
            publish(DownlinkReply.success(id: command.id, command: command.name.rawValue, at: clock(), result: result))
        case .failure(let error):
            await refuse(error, now: now, bytes: payload.count, command: command)
        }
    }

    /// Flushes coalesced `command_refused` counts as one event.
    func flushRefusals() async {
        guard unansweredRefusals > 0 else { return }
        let now = clock()
        let detail = unansweredCodes.reduce(into: [String: String]()) { $0["code." + $1.key] = String($1.value) }
        let event = GatewayEvent(kind: "command_refused", at: now, count: unansweredRefusals,
                                 detail: detail.merging(["reason": "downlink commands refused without a usable id"]) { a, _ in a })
        do {
            try await store.commit(events: [event])
            unansweredRefusals = 0
            unansweredCodes = [:]
            lastRefusalEventAt = now
            forwarder.notify()
        } catch {
            logger.error("cannot commit a command_refused event", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - Refusals

    private func refuse(_ error: DownlinkError, now: Timestamp, bytes: Int, command parsed: DownlinkCommand? = nil) async {
        refusedTotal += 1
        logger.notice("downlink command refused", metadata: [
            "command.id": "\(error.id ?? "-")", "command.name": "\(Self.shownName(error.command))",
            "error.code": "\(error.code.rawValue)", "error": "\(error.message)", "bytes": "\(bytes)",
        ])
        // A parsed command refused when applied is recorded, so its id cannot be replayed.
        if let parsed, error.code != .replayed {
            do {
                try await store.recordDownlinkCommand(record(parsed, now: now, outcome: error.code.rawValue),
                                                      pruneIssuedBefore: pruneBefore(now))
            } catch {
                logger.error("cannot record a refused downlink command", metadata: ["error": "\(error)"])
            }
        }
        guard let id = error.id else {
            unansweredRefusals += 1
            unansweredCodes[error.code.rawValue, default: 0] += 1
            if lastRefusalEventAt.map({ now.milliseconds(since: $0) >= Self.refusalEventInterval }) ?? true {
                await flushRefusals()
            }
            return
        }
        publish(DownlinkReply.failure(id: id, command: Self.shownName(error.command), at: clock(), error: error))
    }

    /// A command name from the topic, as it may be echoed (sender input: printable ASCII, 64 at most).
    private static func shownName(_ name: String?) -> String {
        guard let name else { return "-" }
        return String(name.unicodeScalars.prefix(64).map { $0.isASCII && $0.value > 0x20 && $0.value < 0x7F ? Character($0) : "?" })
    }

    /// Replies go straight to the broker at QoS 1, not through the outbox: an answer must not
    /// wait behind a routine backlog, and one lost with the connection is recovered by sending
    /// the command again (answered `replayed`, with the first outcome).
    private func publish(_ reply: DownlinkReply) {
        do {
            _ = try connection.publish(topic: parser.replyTopic(id: reply.id), payload: reply.payload, qos: 1, retain: false)
        } catch {
            logger.warning("cannot publish a downlink reply", metadata: ["command.id": "\(reply.id)", "error": "\(error)"])
        }
    }

    private func record(_ c: DownlinkCommand, now: Timestamp, outcome: String) -> DownlinkCommandRecord {
        DownlinkCommandRecord(id: c.id, command: c.name.rawValue, issuedAt: c.issuedAt, receivedAt: now, outcome: outcome)
    }

    /// Ids are kept at least a day and twice the replay window: a copy issued earlier than that
    /// is refused as stale by the window check alone.
    private func pruneBefore(_ now: Timestamp) -> Timestamp {
        now.adding(seconds: -max(86_400, 2 * parser.limits.replayWindowSeconds))
    }

    // MARK: - Commands

    private func apply(_ c: DownlinkCommand, now: Timestamp) async -> Result<JSONValue, DownlinkError> {
        func fail(_ code: DownlinkError.Code, _ message: String) -> Result<JSONValue, DownlinkError> {
            .failure(DownlinkError(code, message, id: c.id, command: c.name.rawValue))
        }
        let prune = pruneBefore(now)
        switch c.arguments {
        case .ping:
            var outbox: JSONValue = .null
            if let s = try? store.stats() {
                outbox = .object([("escalations", .int(s.undeliveredPriority)), ("readings", .int(s.undeliveredReadings))])
            }
            do {
                try await store.recordDownlinkCommand(record(c, now: now, outcome: "ok"), pruneIssuedBefore: prune)
            } catch {
                return fail(.storeFailed, "cannot record the command: \(error.code)")
            }
            return .success(.object([
                ("version", .string(VigilVersion.string)),
                ("uptime_seconds", .double(Double(now.milliseconds(since: startedAt)) / 1000)),
                ("outbox_depth", outbox),
            ]))

        case .ack(let id, let by, let detail):
            guard var e = await rules.acknowledge(id: id, by: by, at: now) else {
                let state = try? store.escalationState(id: id)
                let why = switch state {
                case .acknowledged?: "escalation is already acknowledged"
                case .resolved?: "escalation is resolved"
                case nil: "no escalation with that id is raised on this gateway"
                default: "escalation is not raised under a care plan in force"
                }
                return fail(.unknownEscalation, why)
            }
            if let detail, !detail.isEmpty { e.detail = (e.detail ?? [:]).merging(["ack_detail": detail]) { _, new in new } }
            do {
                // The acknowledgement, its forwarded state and the id in one transaction.
                try await store.recordDownlinkCommand(record(c, now: now, outcome: "ok"), escalations: [e], pruneIssuedBefore: prune)
            } catch {
                logger.error("cannot commit an acknowledgement", metadata: ["command.id": "\(c.id)", "error": "\(error)"])
                return fail(.storeFailed, "cannot commit the acknowledgement: \(error.code)")
            }
            forwarder.notify()
            return .success(.object([
                ("escalation", .string(e.id)), ("state", .string(e.state.rawValue)),
                ("acknowledged_by", .string(by)), ("acknowledged_at", .string(now.iso8601)),
            ]))

        case .carePlan(let patient, let yaml):
            return await applyCarePlan(c, patient: patient, yaml: yaml, now: now, prune: prune)

        case .config(let settings):
            // Validated as a whole by the parser; applying these cannot fail.
            var applied: [(String, JSONValue)] = []
            for s in settings {
                switch s {
                case .logLevel(let name):
                    if let level = Logger.Level(rawValue: name) { JournalLogHandler.setRuntimeLevel(level) }
                    applied.append((s.key, .string(name)))
                case .downlinkMaxBytes(let n):
                    parser.limits.maxBytes = n
                    applied.append((s.key, .int(Int64(n))))
                case .replayWindowSeconds(let n):
                    parser.limits.replayWindowSeconds = n
                    applied.append((s.key, .int(n)))
                }
            }
            do {
                try await store.recordDownlinkCommand(record(c, now: now, outcome: "ok"), pruneIssuedBefore: prune)
            } catch {
                return fail(.storeFailed, "cannot record the command: \(error.code)")
            }
            logger.notice("downlink config applied until restart", metadata: ["settings": "\(applied.map(\.0).joined(separator: ","))"])
            return .success(.object([("applied", .object(applied)), ("persisted", .bool(false))]))

        case .resend(let from, let to, let device, let patient, let limit):
            do {
                let r = try await store.resend(from: from, to: to, device: device.map { DeviceID($0) },
                                               patient: patient.map { PatientID($0) }, limit: limit,
                                               record: record(c, now: now, outcome: "ok"), pruneIssuedBefore: prune)
                forwarder.notify()
                return .success(.object([
                    ("requeued", .int(r.requeued)), ("already_pending", .int(r.alreadyPending)),
                    ("truncated", .bool(r.truncated)), ("range_partly_pruned", .bool(r.rangePartlyPruned)),
                ]))
            } catch {
                logger.error("resend failed", metadata: ["command.id": "\(c.id)", "error": "\(error)"])
                return fail(.storeFailed, "cannot re-queue readings: \(error.code)")
            }
        }
    }

    /// Validate fully, persist atomically, then put in force; a refusal changes nothing.
    private func applyCarePlan(_ c: DownlinkCommand, patient: String, yaml: String, now: Timestamp,
                               prune: Timestamp) async -> Result<JSONValue, DownlinkError> {
        func fail(_ code: DownlinkError.Code, _ message: String) async -> Result<JSONValue, DownlinkError> {
            await planEvent("care_plan_refused", c, detail: ["reason": code.rawValue], now: now)
            return .failure(DownlinkError(code, message, id: c.id, command: c.name.rawValue))
        }
        let plan: CarePlan
        do {
            plan = try YAMLDecoder().decode(CarePlan.self, from: Array(yaml.utf8), fileName: "args.plan")
        } catch {
            // The decoder names line, column and field, never the value.
            return await fail(.planInvalid, "\(error)")
        }
        guard plan.patient.rawValue == patient else {
            return await fail(.planInvalid, "args.patient does not match the plan's patient")
        }
        let current = await rules.planVersion(patient: plan.patient)
        if let current, plan.version <= current {
            return await fail(.versionNotNewer, "plan version \(plan.version) is not newer than the version in force (\(current))")
        }
        let path = DownlinkCarePlans.path(for: plan.patient, in: carePlansDirectory)
        do {
            try DownlinkCarePlans.writeAtomically(Array(yaml.utf8), to: path)
        } catch {
            logger.error("cannot persist a care plan", metadata: ["command.id": "\(c.id)", "error": "\(error)"])
            return await fail(.storeFailed, "the plan was not applied: \(error)")
        }
        await rules.apply(plan: plan)
        await planEvent("care_plan_applied", c, detail: ["version": String(plan.version),
                                                         "previous_version": current.map(String.init) ?? "none"], now: now)
        logger.info("care plan applied", metadata: ["plan.version": "\(plan.version)", "command.id": "\(c.id)"])
        return .success(.object([
            ("patient", .string(plan.patient.rawValue)), ("version", .int(Int64(plan.version))),
            ("previous_version", current.map { .int(Int64($0)) } ?? .null),
        ]))
    }

    /// `care_plan_applied` / `care_plan_refused`, committed with the command's id. Events carry
    /// no patient data: the command id correlates it with the sender's request.
    private func planEvent(_ kind: String, _ c: DownlinkCommand, detail: [String: String], now: Timestamp) async {
        let event = GatewayEvent(kind: kind, at: now, count: nil, detail: detail.merging(["command_id": c.id]) { a, _ in a })
        do {
            if kind == "care_plan_applied" {
                try await store.recordDownlinkCommand(record(c, now: now, outcome: "ok"), events: [event], pruneIssuedBefore: pruneBefore(now))
            } else {
                // The refusal's id is recorded by `refuse`.
                try await store.commit(events: [event])
            }
            forwarder.notify()
        } catch {
            logger.error("cannot commit a care-plan event", metadata: ["command.id": "\(c.id)", "error": "\(error)"])
        }
    }
}
