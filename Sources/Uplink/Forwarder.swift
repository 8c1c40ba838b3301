public import Logging
public import VitalSigns
import Synchronization

/// Drains the durable outbox to the broker at QoS 1 (ARCHITECTURE.md, flow step 5–6).
///
/// Rules:
/// - An item is marked delivered only when its PUBACK arrives (`MQTTEvent.published` for
///   its mid, mosquitto.h "on_publish"). A late PUBACK for a mid from an earlier
///   connection still marks its key.
/// - The priority lane (escalations, gateway events) is read before every readings batch,
///   and at most `maxInFlight` messages are unacknowledged, so a new escalation waits
///   behind at most that many messages, never behind the whole backlog.
/// - Readings go out in sequence order.
/// - On every (re)connect both lane cursors rewind to the oldest undelivered item. What
///   libmosquitto still held may then go out twice; consumers de-duplicate by ID.
/// - `markDelivered` is batched: every `deliveredBatchInterval` or `deliveredBatchSize` keys.
/// - `notify()` never blocks; idle, the forwarder sleeps (plus a slow fallback timer).
/// - A message the broker refuses (MQTT 5 PUBACK reason ≥ 0x80, `MQTTEvent.publishRefused`)
///   or that exceeds the hub's message size is quarantined (`OutboxSource.quarantine`): its
///   items leave the lane, are counted and kept in the store, and the store queues one
///   `publish_refused` event per batch; the rest keeps flowing. Under MQTT 3.1.1 a broker
///   acknowledges an ACL-denied publish like any other, so nothing can be noticed there.
/// - Every message carries the MQTT 5 user property `schema` (`vigil.reading/1`, …) unless the
///   encoding set one, and messages of the priority lane never carry a message expiry.
public final class Forwarder: Sendable {
    public struct Configuration: Sendable {
        public var topics: Topics
        /// Unacknowledged messages at most (default 256).
        public var maxInFlight: Int
        /// Readings fetched from the outbox per query, at most.
        public var readingsBatch: Int
        public var deliveredBatchInterval: Duration
        public var deliveredBatchSize: Int
        /// Re-checks the outbox this often even without `notify()`, in case a signal was missed.
        public var fallbackInterval: Duration
        /// Publish an `online` status on every connect (retained where the hub keeps retained
        /// messages, `Topics.retainStatus`).
        public var publishStatus: Bool
        /// How outbox items become MQTT messages (default: one `vigil.*/1` JSON message each).
        public var encoding: any UplinkEncoding

        public init(topics: Topics, maxInFlight: Int = 256, readingsBatch: Int = 128,
                    deliveredBatchInterval: Duration = .milliseconds(20), deliveredBatchSize: Int = 256,
                    fallbackInterval: Duration = .seconds(5), publishStatus: Bool = true,
                    encoding: any UplinkEncoding = VigilJSONEncoding()) {
            self.topics = topics
            self.maxInFlight = max(1, maxInFlight)
            self.readingsBatch = max(1, readingsBatch)
            self.deliveredBatchInterval = deliveredBatchInterval
            self.deliveredBatchSize = max(1, deliveredBatchSize)
            self.fallbackInterval = fallbackInterval
            self.publishStatus = publishStatus
            self.encoding = encoding
        }
    }

    public struct Stats: Sendable, Hashable {
        /// Outbox items handed to libmosquitto (republished ones count again; a batch message
        /// counts each item it carries).
        public var published: Int = 0
        /// Outbox items whose message's PUBACK arrived.
        public var acknowledged: Int = 0
        /// Of those, PUBACKs for a mid published on an earlier connection (libmosquitto
        /// re-sends its in-flight messages with their old mids after a reconnect).
        public var lateAcknowledged: Int = 0
        /// Keys passed to `markDelivered` successfully.
        public var markedDelivered: Int = 0
        /// Messages published in this connection and not yet acknowledged.
        public var inFlight: Int = 0
        public var lastPublishError: String?
        public var lastSourceError: String?
        /// Whether the forwarder believes the broker connection is up.
        public var connected: Bool = false
        /// Outbox items quarantined because the broker refused their message or it broke the
        /// hub's limits.
        public var quarantined: Int = 0
        /// The last refusal in words (reason code and text, lane; never payload bytes).
        public var lastPublishRefusal: String?
        public var lastPublishRefusalAt: Timestamp?
    }

    enum Input: Sendable {
        case notify
        case tick
        case flush
        case event(MQTTEvent)
    }

    public let connection: MQTTConnection
    public let source: any OutboxSource
    public let configuration: Configuration
    private let logger: Logger
    private let statsBox = Mutex(Stats())
    private let inputs = Mutex<AsyncStream<Input>.Continuation?>(nil)
    private let notifyPending = Atomic<Bool>(false)

    public init(connection: MQTTConnection, source: any OutboxSource, configuration: Configuration, logger: Logger) {
        self.connection = connection
        self.source = source
        self.configuration = configuration
        self.logger = logger
    }

    public var stats: Stats { statsBox.withLock { $0 } }

    /// Tells the forwarder new items were committed. Never blocks; signals coalesce.
    public func notify() {
        if notifyPending.exchange(true, ordering: .acquiringAndReleasing) { return }
        let sent = inputs.withLock { $0?.yield(.notify) }
        // Not running yet: clear the flag so a later notify is not swallowed (run() starts
        // with a pump anyway).
        if sent == nil { notifyPending.store(false, ordering: .releasing) }
    }

    /// Runs until the task is cancelled. Call it once. The connection must be started (and
    /// eventually stopped) by its owner; the forwarder only publishes through it.
    public func run() async {
        let (stream, continuation) = AsyncStream<Input>.makeStream(bufferingPolicy: .unbounded)
        let (flushArms, flushArm) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        inputs.withLock { $0 = continuation }
        let events = connection.events()
        let fallback = configuration.fallbackInterval
        let flushDelay = configuration.deliveredBatchInterval
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await e in events { continuation.yield(.event(e)) }
            }
            group.addTask {
                while !Task.isCancelled {
                    do { try await Task.sleep(for: fallback) } catch { return }
                    continuation.yield(.tick)
                }
            }
            group.addTask {
                // Armed when the first PUBACK of a batch arrives; no timer runs while idle.
                for await _ in flushArms {
                    do { try await Task.sleep(for: flushDelay) } catch { return }
                    continuation.yield(.flush)
                }
            }
            let engine = Engine(owner: self, armFlush: { flushArm.yield() })
            if connection.snapshot.connected { await engine.connected() }
            // Events are broadcast: a .connected that raced the subscription above arrives
            // again here and only causes one more (harmless) rewind.
            for await input in stream {
                if Task.isCancelled { break }
                await engine.handle(input)
            }
            await engine.flush()
            group.cancelAll()
        }
        inputs.withLock { $0 = nil }
        continuation.finish()
        flushArm.finish()
    }

    /// The `schema` user property of a Vigil JSON message carrying `payload`.
    public static func schema(of payload: OutboxPayload) -> String {
        switch payload {
        case .reading: "vigil.reading/1"
        case .escalation: "vigil.escalation/1"
        case .event: "vigil.event/1"
        }
    }

    fileprivate func updateStats(_ body: (inout Stats) -> Void) { statsBox.withLock { body(&$0) } }

    /// The forwarder's state; used only inside `run()`, one input at a time.
    private final class Engine {
        unowned let owner: Forwarder
        let armFlush: () -> Void
        var connected = false
        var cursor: [OutboxLane: Int64] = [.priority: Int64.min, .readings: Int64.min]
        /// mid → the keys its message carries, for this connection.
        var inFlight: [Int32: [OutboxKey]] = [:]
        /// mid → keys from earlier connections, for late PUBACKs.
        var stale: [Int32: [OutboxKey]] = [:]
        var acked: [OutboxKey] = []
        /// Refused keys waiting for `quarantine`, by reason, in arrival order.
        var refused: [(reason: String, keys: [OutboxKey])] = []
        var flushArmed = false

        init(owner: Forwarder, armFlush: @escaping () -> Void) {
            self.owner = owner
            self.armFlush = armFlush
        }

        var config: Configuration { owner.configuration }

        func handle(_ input: Input) async {
            switch input {
            case .notify:
                owner.notifyPending.store(false, ordering: .releasing)
                await pump()
            case .tick:
                if !acked.isEmpty || !refused.isEmpty { await flush() }
                await pump()
            case .flush:
                flushArmed = false
                let hadRefused = !refused.isEmpty
                await flush()
                // The store queued a publish_refused event: send it without waiting for a tick.
                if hadRefused { await pump() }
            case .event(.connected):
                await connected()
            case .event(.disconnected), .event(.connectFailed):
                if connected { owner.logger.info("uplink disconnected", metadata: ["outbox.in_flight": "\(inFlight.count)"]) }
                connected = false
                owner.updateStats { $0.connected = false }
            case .event(.published(let mid)):
                acknowledge(mid)
                if acked.count >= config.deliveredBatchSize { await flush() }
                // Refill once a quarter of the window is free: one outbox query per PUBACK
                // would cost more than the publish itself.
                if inFlight.count <= config.maxInFlight - max(1, config.maxInFlight / 4) { await pump() }
            case .event(.publishRefused(let mid, let code, let reason)):
                let text = "PUBACK reason 0x\(String(code, radix: 16, uppercase: true)) \(reason)"
                refuse(mid, reason: text)
                if inFlight.count <= config.maxInFlight - max(1, config.maxInFlight / 4) { await pump() }
            case .event(.message):
                break
            }
        }

        func connected() async {
            connected = true
            // Anything acknowledged must be recorded before the rewind, or it goes out again.
            await flush()
            for (mid, keys) in inFlight { stale[mid] = keys }
            inFlight.removeAll()
            cursor = [.priority: Int64.min, .readings: Int64.min]
            owner.updateStats {
                $0.connected = true
                $0.inFlight = 0
            }
            owner.logger.info("uplink connected; rewinding outbox cursors")
            if config.publishStatus {
                do {
                    let properties = PublishProperties(contentType: "application/json",
                                                       userProperties: [.init("schema", "vigil.status/1")])
                    _ = try owner.connection.publish(topic: config.topics.publishTopic(config.topics.status, properties: properties),
                                                     payload: PayloadEncoder.status(.online, at: .wallClockNow()),
                                                     qos: 1, retain: config.topics.retainStatus, properties: properties)
                } catch {
                    owner.updateStats { $0.lastPublishError = error.description }
                }
            }
            await pump()
        }

        func acknowledge(_ mid: Int32) {
            var late = 0
            let keys: [OutboxKey]
            if let k = inFlight.removeValue(forKey: mid) {
                keys = k
            } else if let k = stale.removeValue(forKey: mid) {
                keys = k
                late = k.count
            } else {
                return
            }
            acked.append(contentsOf: keys)
            let n = inFlight.count
            owner.updateStats {
                $0.acknowledged += keys.count
                $0.lateAcknowledged += late
                $0.inFlight = n
            }
            if !flushArmed {
                flushArmed = true
                armFlush()
            }
        }

        /// The broker refused `mid`'s message: its keys go to quarantine at the next flush.
        func refuse(_ mid: Int32, reason: String) {
            let keys: [OutboxKey]
            if let k = inFlight.removeValue(forKey: mid) {
                keys = k
            } else if let k = stale.removeValue(forKey: mid) {
                keys = k
            } else {
                return
            }
            queueQuarantine(keys, reason: reason)
        }

        func queueQuarantine(_ keys: [OutboxKey], reason: String) {
            if let i = refused.firstIndex(where: { $0.reason == reason }) {
                refused[i].keys += keys
            } else {
                refused.append((reason, keys))
            }
            let n = inFlight.count
            let lane = keys.first?.lane.description ?? "?"
            owner.updateStats {
                $0.inFlight = n
                $0.lastPublishRefusal = "\(reason) (\(keys.count) item(s), \(lane) lane)"
                $0.lastPublishRefusalAt = .wallClockNow()
            }
            owner.logger.warning("broker refused a message; its items are quarantined", metadata: [
                "outbox.lane": "\(lane)", "items": "\(keys.count)", "reason": "\(reason)",
            ])
            if !flushArmed {
                flushArmed = true
                armFlush()
            }
        }

        func flush() async {
            await flushRefused()
            guard !acked.isEmpty else { return }
            let keys = acked
            acked.removeAll(keepingCapacity: true)
            do {
                try await owner.source.markDelivered(keys)
                owner.updateStats { $0.markedDelivered += keys.count }
            } catch {
                // Kept for the next flush (fallback tick); the store is the one at fault.
                acked.append(contentsOf: keys)
                owner.updateStats { $0.lastSourceError = "markDelivered failed: \(error)" }
                owner.logger.error("outbox markDelivered failed", metadata: ["error": "\(error)"])
            }
        }

        func flushRefused() async {
            while let (reason, keys) = refused.first {
                do {
                    try await owner.source.quarantine(keys, reason: reason)
                    refused.removeFirst()
                    owner.updateStats { $0.quarantined += keys.count }
                } catch {
                    // Kept for the next flush; until then a rewind may publish them again,
                    // and the broker refuses them again.
                    owner.updateStats { $0.lastSourceError = "quarantine failed: \(error)" }
                    owner.logger.error("outbox quarantine failed", metadata: ["error": "\(error)"])
                    return
                }
            }
        }

        /// Publishes while connected and the window has room: priority first, then one
        /// readings batch, then priority again, and so on.
        func pump() async {
            while connected, !Task.isCancelled {
                let room = config.maxInFlight - inFlight.count
                if room <= 0 { return }
                if acked.count >= config.deliveredBatchSize { await flush() }
                guard let priority = await fetch(.priority, limit: room) else { return }
                if !priority.isEmpty {
                    if !publish(priority) { return }
                    continue
                }
                guard let readings = await fetch(.readings, limit: min(room, config.readingsBatch)) else { return }
                if readings.isEmpty { return }
                if !publish(readings) { return }
            }
        }

        private func fetch(_ lane: OutboxLane, limit: Int) async -> [OutboxItem]? {
            do {
                return try await owner.source.pending(lane: lane, after: cursor[lane] ?? Int64.min, limit: limit)
            } catch {
                owner.updateStats { $0.lastSourceError = "pending(\(lane)) failed: \(error)" }
                owner.logger.error("outbox read failed", metadata: ["outbox.lane": "\(lane)", "error": "\(error)"])
                return nil
            }
        }

        /// Returns false when publishing must pause until the next connect.
        private func publish(_ items: [OutboxItem]) -> Bool {
            var published = 0
            defer {
                let n = inFlight.count
                owner.updateStats {
                    $0.published += published
                    $0.inFlight = n
                }
            }
            let payloads = Dictionary(items.map { ($0.key, $0.payload) }, uniquingKeysWith: { a, _ in a })
            for message in config.encoding.messages(for: items, topics: config.topics) {
                guard let last = message.keys.last else { continue }
                if message.payload.count > config.topics.maxMessageBytes {
                    // The hub would refuse it (or cut the connection): never send it.
                    cursor[last.lane] = last.sequence
                    queueQuarantine(message.keys, reason: "message of \(message.payload.count) bytes exceeds \(config.topics.hub.rawValue)'s limit of \(config.topics.maxMessageBytes) bytes")
                    continue
                }
                var properties = message.properties
                if last.lane == .priority { properties.messageExpirySeconds = nil }  // issue 6: never for escalations
                if !properties.userProperties.contains(where: { $0.name == "schema" }),
                   let first = message.keys.first, let payload = payloads[first] {
                    properties.userProperties.insert(.init("schema", Forwarder.schema(of: payload)), at: 0)
                }
                let topic = config.topics.publishTopic(message.topic, properties: properties)
                do {
                    let mid = try owner.connection.publish(topic: topic, payload: message.payload, qos: 1,
                                                           retain: false, properties: properties)
                    // mids wrap at 65535: a reused mid supersedes the stale entry.
                    stale.removeValue(forKey: mid)
                    inFlight[mid] = message.keys
                    cursor[last.lane] = last.sequence
                    published += message.keys.count
                } catch {
                    owner.updateStats { $0.lastPublishError = error.description }
                    if error.isTransient {
                        // Wait for the next `.connected`; the rewind picks this item up again.
                        connected = false
                        owner.updateStats { $0.connected = false }
                        return false
                    }
                    // A permanent refusal (size, malformed topic) would block the lane forever:
                    // skip it for this connection; the next rewind retries it.
                    owner.logger.error("publish refused", metadata: ["outbox.lane": "\(last.lane)",
                                                                     "outbox.sequence": "\(last.sequence)",
                                                                     "error": "\(error)"])
                    cursor[last.lane] = last.sequence
                }
            }
            return true
        }
    }
}
