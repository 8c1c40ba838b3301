public import VitalSigns

/// A cloud IoT hub with fixed topic shapes and limits (`broker.hub` in the configuration;
/// docs/cloud-topics.md has the mapping and the sources of each limit).
public enum CloudHub: String, Sendable, Hashable, CaseIterable {
    /// Any standard MQTT broker (mosquitto, EMQX, HiveMQ…): Vigil's own topic tree.
    case generic
    /// Azure IoT Hub: one device-to-cloud topic `devices/{device_id}/messages/events/` with
    /// message properties in the topic (a URL-encoded property bag), MQTT 3.1.1 only, QoS 0/1,
    /// no retained messages, 256 KiB per message.
    case azureIoTHub = "azure-iot-hub"
    /// AWS IoT Core: free topics, but none may start with `$` (reserved `$aws/…`), at most 7
    /// `/` (8 levels) and 256 bytes per topic, QoS 0/1, retained supported, MQTT 5 supported,
    /// 128 KiB per message.
    case awsIoTCore = "aws-iot-core"

    /// Largest PUBLISH payload the hub accepts, in bytes (MQTT's own limit for `generic`).
    public var maxMessageBytes: Int {
        switch self {
        case .generic: 268_435_455
        case .azureIoTHub: 262_144
        case .awsIoTCore: 131_072
        }
    }
}

/// The uplink's topics (ARCHITECTURE.md, Contracts; documented in docs/asyncapi.yaml and
/// docs/cloud-topics.md). By default all under one prefix such as `vigil/v1/{site}/{gateway}`:
///
/// - `<prefix>/readings`: `vigil.reading/1`, QoS 1, not retained.
/// - `<prefix>/escalations`: `vigil.escalation/1`, QoS 1, not retained.
/// - `<prefix>/events`: `vigil.event/1`, QoS 1, not retained.
/// - `<prefix>/status`: `vigil.status/1`, QoS 1, retained; the last will sets it `offline`.
///
/// A *template* with a `{kind}` placeholder (`readings`, `escalations`, `events`, `status`)
/// reshapes the tree; for Azure IoT Hub the kind goes into the topic's property bag instead.
public struct Topics: Sendable, Hashable {
    /// The part shared by every kind's topic, without a trailing `/`: `<prefix>` for the
    /// default tree; for a template, the text before `/{kind}` (or the whole Azure events topic
    /// without its trailing `/`).
    public let prefix: String
    /// The hub whose limits these topics obey.
    public let hub: CloudHub
    /// The template with `{kind}` still in it (for Azure: the events topic, ending in `/`).
    public let template: String

    /// The kinds a template must keep apart.
    public static let kinds = ["readings", "escalations", "events", "status"]

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
        self.hub = .generic
        self.template = String(p) + "/{kind}"
    }

    /// `vigil/v1/<site>/<gateway>`.
    public init(site: String, gateway: String) throws(MQTTError) {
        try self.init(prefix: "vigil/v1/\(site)/\(gateway)")
    }

    /// Topics from a template whose other placeholders are already filled in, checked against
    /// `hub`'s limits.
    ///
    /// - `generic`, `aws-iot-core`: the template must contain `{kind}` once, as a whole level.
    /// - `azure-iot-hub`: the template must be `devices/<device_id>/messages/events/`; the
    ///   kind travels in the property bag (`…/events/kind=readings`).
    ///
    /// - Throws: `MQTTError` (`.invalid`) naming the rule the template breaks.
    public init(template: String, hub: CloudHub) throws(MQTTError) {
        func fail(_ why: String) -> MQTTError {
            MQTTError(code: .invalid, operation: "Topics.init", reason: "topic template \(template): \(why)")
        }
        guard !template.contains("+"), !template.contains("#"), !template.utf8.contains(0) else {
            throw fail("contains a wildcard (+, #) or NUL, which a PUBLISH topic may not (MQTT §4.7.1)")
        }
        self.hub = hub
        switch hub {
        case .azureIoTHub:
            // Azure IoT Hub, "Communicate with an IoT hub using the MQTT protocol": a device
            // publishes to devices/{device_id}/messages/events/ or …/events/{property_bag}.
            let parts = template.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 5, parts[0] == "devices", !parts[1].isEmpty, !parts[1].contains("{"),
                  parts[2] == "messages", parts[3] == "events", parts[4].isEmpty else {
                throw fail("Azure IoT Hub accepts device-to-cloud messages only on devices/<device_id>/messages/events/ (with a trailing '/'; the kind goes into the property bag)")
            }
            self.template = template
            self.prefix = String(template.dropLast())
        case .generic, .awsIoTCore:
            let levels = template.split(separator: "/", omittingEmptySubsequences: false)
            guard levels.filter({ $0 == "{kind}" }).count == 1, !levels.contains(where: { $0 != "{kind}" && $0.contains("{") }) else {
                throw fail("must contain {kind} exactly once as a whole topic level, and no other unfilled placeholder")
            }
            self.template = template
            if template.hasSuffix("/{kind}") {
                self.prefix = String(template.dropLast("/{kind}".count))
            } else {
                self.prefix = template.split(separator: "{kind}", maxSplits: 1).first.map { String($0) } ?? ""
            }
            if hub == .awsIoTCore {
                // AWS IoT Core quotas ("AWS IoT Core message broker and protocol limits"):
                // topics starting with $ are reserved; at most 7 forward slashes; 256 bytes.
                guard !template.hasPrefix("$") else {
                    throw fail("AWS IoT Core reserves topics starting with $ ($aws/…)")
                }
                for kind in Self.kinds {
                    let t = template.replacing("{kind}", with: kind)
                    let slashes = t.utf8.filter { $0 == UInt8(ascii: "/") }.count
                    guard slashes <= 7 else {
                        throw fail("AWS IoT Core allows at most 7 '/' (8 levels) in a topic; \(t) has \(slashes)")
                    }
                    guard t.utf8.count <= 256 else {
                        throw fail("AWS IoT Core allows topics of at most 256 bytes; \(t) has \(t.utf8.count)")
                    }
                }
            }
        }
    }

    /// The topic for one kind (`readings`, `escalations`, `events`, `status`).
    public func topic(kind: String) -> String {
        switch hub {
        case .azureIoTHub: template + "kind=" + kind
        case .generic, .awsIoTCore: template.replacing("{kind}", with: kind)
        }
    }

    public var readings: String { topic(kind: "readings") }
    public var escalations: String { topic(kind: "escalations") }
    public var events: String { topic(kind: "events") }
    public var status: String { topic(kind: "status") }

    /// Whether the status message (and the last will) may be retained. Azure IoT Hub does
    /// not keep retained messages, so there the status is an ordinary message.
    public var retainStatus: Bool { hub != .azureIoTHub }

    /// Largest payload the hub accepts, in bytes.
    public var maxMessageBytes: Int { hub.maxMessageBytes }

    /// Whether the hub accepts `version`: Azure IoT Hub speaks MQTT 3.1.1 only.
    public func check(protocol version: MQTTProtocolVersion) throws(MQTTError) {
        if hub == .azureIoTHub, version == .mqtt5 {
            throw MQTTError(code: .invalid, operation: "Topics.check",
                            reason: "Azure IoT Hub speaks MQTT 3.1.1 only: set broker.protocol to mqtt311 or auto")
        }
    }

    /// The topic to publish `topic` on. For Azure IoT Hub, which has no MQTT 5 properties,
    /// the message's properties join the topic's property bag, URL-encoded (RFC 3986):
    /// user properties as `name=value`, the content type as the system property `$.ct`.
    /// Other hubs get `topic` unchanged (properties travel as MQTT 5 properties).
    public func publishTopic(_ topic: String, properties: PublishProperties) -> String {
        guard hub == .azureIoTHub, topic.hasPrefix(template) else { return topic }
        var bag = String(topic.dropFirst(template.count))
        func add(_ name: String, _ value: String) {
            if !bag.isEmpty { bag += "&" }
            bag += Self.urlEncode(name) + "=" + Self.urlEncode(value)
        }
        for p in properties.userProperties { add(p.name, p.value) }
        if let type = properties.contentType {
            add("$.ct", type)
            add("$.ce", "utf-8")
        }
        return template + bag
    }

    /// Percent-encodes everything but RFC 3986 unreserved characters (and `$` of `$.ct`).
    static func urlEncode(_ s: String) -> String {
        var out = ""
        let hex = Array("0123456789ABCDEF")
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                 UInt8(ascii: "~"), UInt8(ascii: "$"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                out.append("%")
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xF)])
            }
        }
        return out
    }

    /// Where an outbox payload goes.
    public func topic(for payload: OutboxPayload) -> String {
        switch payload {
        case .reading: readings
        case .escalation: escalations
        case .event: events
        }
    }

    /// The last will to put in `MQTTOptions`: `{"schema":"vigil.status/1","state":"offline"}`,
    /// QoS 1, retained where the hub keeps retained messages, with the `schema` user property
    /// on MQTT 5.
    public var offlineWill: MQTTWill {
        MQTTWill(topic: status, payload: PayloadEncoder.status(.offline), qos: 1, retain: retainStatus,
                 properties: PublishProperties(contentType: "application/json", userProperties: [.init("schema", "vigil.status/1")]))
    }
}
