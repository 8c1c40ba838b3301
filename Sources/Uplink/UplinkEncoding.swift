public import VitalSigns

/// Per-message MQTT 5 properties. Ignored (not sent) on an MQTT 3.1.1 connection.
///
/// Rule (issue 6): routine readings may carry a message expiry; escalations never do.
public struct PublishProperties: Sendable, Hashable {
    /// MQTT 5 Message Expiry Interval, seconds (§3.3.2.3.3); nil: the message never expires.
    public var messageExpirySeconds: UInt32?
    /// MQTT 5 Content Type (§3.3.2.3.9), e.g. `application/fhir+json`.
    public var contentType: String?
    /// MQTT 5 User Properties (§3.3.2.3.7), in order, e.g. `("schema", "vigil.reading/1")`.
    public var userProperties: [UserProperty]

    public struct UserProperty: Sendable, Hashable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    /// Whether there is nothing to send.
    public var isEmpty: Bool { messageExpirySeconds == nil && contentType == nil && userProperties.isEmpty }

    public init(messageExpirySeconds: UInt32? = nil, contentType: String? = nil, userProperties: [UserProperty] = []) {
        self.messageExpirySeconds = messageExpirySeconds
        self.contentType = contentType
        self.userProperties = userProperties
    }
}

/// One MQTT message the forwarder publishes, carrying one or more outbox items (a FHIR
/// Bundle or a compressed batch carries many). All `keys` are marked delivered together
/// when the message's PUBACK arrives.
public struct UplinkMessage: Sendable, Hashable {
    public var topic: String
    public var payload: [UInt8]
    public var properties: PublishProperties
    /// The outbox items this message carries, in outbox order. Never empty.
    public var keys: [OutboxKey]

    public init(topic: String, payload: [UInt8], properties: PublishProperties = .init(), keys: [OutboxKey]) {
        self.topic = topic
        self.payload = payload
        self.properties = properties
        self.keys = keys
    }
}

/// Turns outbox items into MQTT messages. The forwarder calls it with items of one lane, in
/// outbox order; every item must end up in exactly one message, and messages keep that order.
public protocol UplinkEncoding: Sendable {
    func messages(for items: [OutboxItem], topics: Topics) -> [UplinkMessage]
}

/// Vigil's own JSON (`vigil.reading/1`, …; see `PayloadEncoder`), one message per item.
public struct VigilJSONEncoding: UplinkEncoding {
    public init() {}
    public func messages(for items: [OutboxItem], topics: Topics) -> [UplinkMessage] {
        items.map { item in
            UplinkMessage(topic: topics.topic(for: item.payload), payload: PayloadEncoder.encode(item.payload), keys: [item.key])
        }
    }
}
