/// Something the gateway reports upstream about itself rather than about a patient:
/// data loss from eviction, a device coming or going, a care plan applied or refused.
public struct GatewayEvent: Hashable, Sendable, Codable {
    /// Stable event kind, for example `data_loss`.
    public var kind: String
    public var at: Timestamp
    /// A count where the kind has one (readings evicted, for `data_loss`).
    public var count: Int64?
    /// Further detail, with no patient data (device IDs, reasons, time ranges).
    public var detail: [String: String]

    public init(kind: String, at: Timestamp, count: Int64? = nil, detail: [String: String] = [:]) {
        self.kind = kind
        self.at = at
        self.count = count
        self.detail = detail
    }

    /// Kinds the gateway emits.
    public static let dataLoss = "data_loss"
    /// The broker refused messages (MQTT 5 PUBACK reason ≥ 0x80) or a message broke the
    /// hub's limits; `count` items were quarantined. Detail: lane, reason, reason_code.
    public static let publishRefused = "publish_refused"
}

/// The two outbox lanes. Everything in `.priority` (escalations and gateway events) goes
/// upstream before any routine reading.
public enum OutboxLane: Int, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case priority = 0
    case readings = 1
    public var description: String { self == .priority ? "escalations" : "readings" }
}

/// Identifies one outbox row: its lane and its position in commit order.
public struct OutboxKey: Hashable, Comparable, Sendable {
    public var lane: OutboxLane
    public var sequence: Int64
    public init(lane: OutboxLane, sequence: Int64) {
        self.lane = lane
        self.sequence = sequence
    }
    public static func < (a: OutboxKey, b: OutboxKey) -> Bool {
        (a.lane.rawValue, a.sequence) < (b.lane.rawValue, b.sequence)
    }
}

/// What waits in the outbox.
public enum OutboxPayload: Hashable, Sendable {
    case reading(Reading)
    case escalation(Escalation)
    case event(GatewayEvent)
}

public struct OutboxItem: Hashable, Sendable {
    public var key: OutboxKey
    public var payload: OutboxPayload
    public init(key: OutboxKey, payload: OutboxPayload) {
        self.key = key
        self.payload = payload
    }
}

/// The contract between the durable store and the uplink: the store implements it, the
/// forwarder drains it. Neither target imports the other; the daemon wires them.
public protocol OutboxSource: Sendable {
    /// Undelivered items of `lane` with a sequence greater than `after`, in sequence order.
    func pending(lane: OutboxLane, after: Int64, limit: Int) async throws -> [OutboxItem]
    /// Marks items delivered (the broker's PUBACK arrived). Unknown or already-delivered
    /// keys are ignored.
    func markDelivered(_ keys: [OutboxKey]) async throws
    /// Takes items out of the outbox for good because the broker refused them (MQTT 5 PUBACK
    /// reason ≥ 0x80, e.g. 0x87 "not authorized") or they break the hub's limits. A store
    /// keeps them as evidence, counts them and queues one `publish_refused` gateway event on
    /// the priority lane (none when the refused items are themselves `publish_refused`
    /// events, so a denied events topic cannot loop). `reason` carries no patient data.
    func quarantine(_ keys: [OutboxKey], reason: String) async throws
}

extension OutboxSource {
    /// For sources that keep no evidence (in-memory test outboxes): the items only leave
    /// the outbox.
    public func quarantine(_ keys: [OutboxKey], reason: String) async throws {
        try await markDelivered(keys)
    }
}
