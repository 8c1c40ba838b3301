public import VitalSigns

/// The uplink's topics, all under one configurable prefix such as `vigil/v1/{site}/{gateway}`
/// (ARCHITECTURE.md, Contracts; documented in docs/asyncapi.yaml).
///
/// - `<prefix>/readings`: `vigil.reading/1`, QoS 1, not retained.
/// - `<prefix>/escalations`: `vigil.escalation/1`, QoS 1, not retained.
/// - `<prefix>/events`: `vigil.event/1`, QoS 1, not retained.
/// - `<prefix>/status`: `vigil.status/1`, QoS 1, retained; the last will sets it `offline`.
public struct Topics: Sendable, Hashable {
    /// The prefix, without a trailing `/`.
    public let prefix: String

    /// - Throws: when the prefix is empty, has MQTT wildcards (`+`, `#`) or a NUL, which a
    ///   PUBLISH topic may not contain (MQTT 3.1.1 §4.7.1, §4.7.3).
    public init(prefix: String) throws(MQTTError) {
        var p = Substring(prefix)
        while p.hasSuffix("/") { p = p.dropLast() }
        guard !p.isEmpty else {
            throw MQTTError(code: .invalid, operation: "Topics.init", reason: "the topic prefix is empty")
        }
        guard !p.contains("+"), !p.contains("#"), !p.utf8.contains(0) else {
            throw MQTTError(code: .invalid, operation: "Topics.init", reason: "the topic prefix \(prefix) contains a wildcard or NUL")
        }
        self.prefix = String(p)
    }

    /// `vigil/v1/<site>/<gateway>`.
    public init(site: String, gateway: String) throws(MQTTError) {
        try self.init(prefix: "vigil/v1/\(site)/\(gateway)")
    }

    public var readings: String { prefix + "/readings" }
    public var escalations: String { prefix + "/escalations" }
    public var events: String { prefix + "/events" }
    public var status: String { prefix + "/status" }

    /// Where an outbox payload goes.
    public func topic(for payload: OutboxPayload) -> String {
        switch payload {
        case .reading: readings
        case .escalation: escalations
        case .event: events
        }
    }

    /// The last will to put in `MQTTOptions`: `{"schema":"vigil.status/1","state":"offline"}`,
    /// QoS 1, retained.
    public var offlineWill: MQTTWill {
        MQTTWill(topic: status, payload: PayloadEncoder.status(.offline), qos: 1, retain: true)
    }
}
