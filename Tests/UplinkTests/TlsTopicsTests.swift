import Testing
import Uplink
import VitalSigns

/// Topic templates and cloud hub limits (docs/cloud-topics.md), and refusal classification.
@Suite("Topic templates, hub limits and refusal kinds")
struct TlsTopicsTests {
    @Test("the default tree is unchanged: <prefix>/<kind>, retained status")
    func defaultTree() throws {
        let t = try Topics(prefix: "vigil/v1/site/gw")
        #expect(t.readings == "vigil/v1/site/gw/readings")
        #expect(t.status == "vigil/v1/site/gw/status")
        #expect(t.hub == .generic && t.retainStatus)
        #expect(t.offlineWill.retain)
        #expect(t.publishTopic(t.readings, properties: .init(userProperties: [.init("schema", "vigil.reading/1")])) == t.readings)
        let same = try Topics(template: "vigil/v1/site/gw/{kind}", hub: .generic)
        #expect(same.readings == t.readings && same.prefix == t.prefix)
    }

    @Test("a template may put {kind} anywhere, as one whole level")
    func kindInTheMiddle() throws {
        let t = try Topics(template: "clinic/{kind}/site-1/gw-1", hub: .generic)
        #expect(t.escalations == "clinic/escalations/site-1/gw-1")
        #expect(throws: MQTTError.self) { try Topics(template: "clinic/site-1/gw-1", hub: .generic) }
        #expect(throws: MQTTError.self) { try Topics(template: "clinic/x{kind}", hub: .generic) }
        #expect(throws: MQTTError.self) { try Topics(template: "clinic/{kind}/{kind}", hub: .generic) }
        #expect(throws: MQTTError.self) { try Topics(template: "clinic/+/{kind}", hub: .generic) }
        #expect(throws: MQTTError.self) { try Topics(template: "clinic/{site}/{kind}", hub: .generic) }
    }

    @Test("Azure IoT Hub: one events topic, the kind and properties in the property bag, no retain, 3.1.1 only")
    func azure() throws {
        let t = try Topics(template: "devices/gw-1/messages/events/", hub: .azureIoTHub)
        #expect(t.readings == "devices/gw-1/messages/events/kind=readings")
        #expect(t.status == "devices/gw-1/messages/events/kind=status")
        #expect(!t.retainStatus)
        #expect(!t.offlineWill.retain)
        #expect(t.maxMessageBytes == 262_144)
        let props = PublishProperties(messageExpirySeconds: 60, contentType: "application/fhir+json",
                                      userProperties: [.init("schema", "vigil.reading/1")])
        #expect(t.publishTopic(t.readings, properties: props)
                == "devices/gw-1/messages/events/kind=readings&schema=vigil.reading%2F1&$.ct=application%2Ffhir%2Bjson&$.ce=utf-8")
        #expect(throws: MQTTError.self) { try t.check(protocol: .mqtt5) }
        try t.check(protocol: .mqtt311)
        for bad in ["devices/gw-1/messages/events", "devices/gw-1/messages/events/{kind}", "vigil/{kind}",
                    "devices//messages/events/", "devices/gw-1/messages/devicebound/"] {
            #expect(throws: MQTTError.self, "\(bad)") { try Topics(template: bad, hub: .azureIoTHub) }
        }
    }

    @Test("AWS IoT Core: no $ topics, at most 7 slashes and 256 bytes, 128 KiB messages")
    func aws() throws {
        let t = try Topics(template: "vigil/v1/site/gw/{kind}", hub: .awsIoTCore)
        #expect(t.escalations == "vigil/v1/site/gw/escalations")
        #expect(t.retainStatus)
        #expect(t.maxMessageBytes == 131_072)
        try t.check(protocol: .mqtt5)
        _ = try Topics(template: "a/b/c/d/e/f/g/{kind}", hub: .awsIoTCore)  // 7 slashes
        do {
            _ = try Topics(template: "a/b/c/d/e/f/g/h/{kind}", hub: .awsIoTCore)
            Issue.record("8 slashes must be refused")
        } catch {
            #expect(error.reason.contains("7"))
        }
        do {
            _ = try Topics(template: "$aws/things/gw/{kind}", hub: .awsIoTCore)
            Issue.record("$aws must be refused")
        } catch {
            #expect(error.reason.contains("$"))
        }
        #expect(throws: MQTTError.self) { try Topics(template: String(repeating: "x", count: 250) + "/{kind}", hub: .awsIoTCore) }
        // The same shapes are fine on a generic broker.
        _ = try Topics(template: "a/b/c/d/e/f/g/h/{kind}", hub: .generic)
    }

    @Test("CONNACK codes map to refusal kinds, 3.1.1 and MQTT 5")
    func connackKinds() {
        #expect(MQTTRefusal.kind(connackCode: 1, mqtt5: false) == .unsupportedProtocolVersion)
        #expect(MQTTRefusal.kind(connackCode: 4, mqtt5: false) == .badCredentials)
        #expect(MQTTRefusal.kind(connackCode: 5, mqtt5: false) == .notAuthorized)
        #expect(MQTTRefusal.kind(connackCode: 0x84, mqtt5: true) == .unsupportedProtocolVersion)
        #expect(MQTTRefusal.kind(connackCode: 0x86, mqtt5: true) == .badCredentials)
        #expect(MQTTRefusal.kind(connackCode: 0x87, mqtt5: true) == .notAuthorized)
        #expect(MQTTRefusal.kind(connackCode: 0x8A, mqtt5: true) == .serverUnavailable)
        #expect(MQTTRefusal.kind(connackCode: 0x99, mqtt5: true) == .refused)
    }

    @Test("OpenSSL log lines map to TLS refusal kinds")
    func tlsKinds() {
        #expect(MQTTRefusal.kind(tlsLog: ["OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed"]) == .serverCertificateUntrusted)
        #expect(MQTTRefusal.kind(tlsLog: ["OpenSSL Error[0]: error:0A000415:SSL routines::sslv3 alert certificate expired"]) == .clientCertificateExpired)
        #expect(MQTTRefusal.kind(tlsLog: ["OpenSSL Error[0]: error:0A000418:SSL routines::tlsv1 alert unknown ca"]) == .clientCertificateRejected)
        #expect(MQTTRefusal.kind(tlsLog: ["OpenSSL Error[0]: error:0A00045C:SSL routines::tlsv13 alert certificate required"]) == .clientCertificateRequired)
        #expect(MQTTRefusal.kind(tlsLog: ["OpenSSL Error[0]: error:0A00010B:SSL routines::wrong version number"]) == .tlsFailure)
        #expect(MQTTRefusal.kind(tlsLog: ["Connection refused"]) == nil)
    }
}
