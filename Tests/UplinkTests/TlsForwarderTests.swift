import Glibc
import Logging
import ReadingStore
import Testing
import Uplink
import VigilTestKit
import VitalSigns

/// Vigil JSON, plus a message expiry on *every* message: the forwarder must strip it from the
/// priority lane (issue 6: never for escalations).
struct ExpiringEncoding: UplinkEncoding {
    func messages(for items: [OutboxItem], topics: Topics) -> [UplinkMessage] {
        VigilJSONEncoding().messages(for: items, topics: topics).map {
            var m = $0
            m.properties.messageExpirySeconds = 3600
            m.properties.contentType = "application/json"
            return m
        }
    }
}

/// One message of `size` bytes per item, whatever the item.
struct HugeEncoding: UplinkEncoding {
    var size: Int
    func messages(for items: [OutboxItem], topics: Topics) -> [UplinkMessage] {
        items.map { UplinkMessage(topic: topics.topic(for: $0.payload), payload: [UInt8](repeating: 0x20, count: size), keys: [$0.key]) }
    }
}

/// A real store in a temp directory, a forwarder over an mTLS connection.
struct StoreRig {
    let directory: String
    let store: ReadingStore
    let connection: MQTTConnection
    let forwarder: Forwarder
    let task: Task<Void, Never>

    static func start(options: MQTTOptions, topics: Topics, encoding: any UplinkEncoding = VigilJSONEncoding()) throws -> StoreRig {
        var template = Array("/tmp/vigil-tls-store-XXXXXX".utf8CString)
        _ = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        let directory = String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var logger = Logger(label: "test.tls")
        logger.logLevel = .error
        let store = try ReadingStore(options: StoreOptions(path: directory + "/vigil.sqlite"), logger: logger)
        let connection = try MQTTConnection(options: options)
        let forwarder = Forwarder(connection: connection, source: store,
                                  configuration: .init(topics: topics, deliveredBatchInterval: .milliseconds(10), encoding: encoding),
                                  logger: logger)
        let task = Task { await forwarder.run() }
        try connection.start()
        return StoreRig(directory: directory, store: store, connection: connection, forwarder: forwarder, task: task)
    }

    func stop() async {
        task.cancel()
        await task.value
        await connection.stop()
        await store.close()
        for f in ["vigil.sqlite", "vigil.sqlite-wal", "vigil.sqlite-shm"] { unlink(directory + "/" + f) }
        rmdir(directory)
    }
}

@Suite("Forwarder refusals, quarantine and MQTT 5 properties against a real mosquitto")
struct TlsForwarderTests {
    static func acl(user: String, topics: Topics, allow kinds: [String]) -> [String] {
        ["user \(user)"] + kinds.map { "topic write \(topics.topic(kind: $0))" }
    }

    @Test("ACL denial on publish (MQTT 5 PUBACK 0x87): readings are quarantined, escalations flow, publish_refused goes up")
    func aclDenialQuarantines() async throws {
        let world = try TlsWorld()
        defer { world.cleanUp() }
        let topics = try Topics(site: uniqueName("site"), gateway: "gw1")
        // The gateway may publish escalations, events and status, but not readings.
        let broker = try world.broker(acl: Self.acl(user: world.clientName, topics: topics, allow: ["escalations", "events", "status"]))
        defer { broker.cleanUp() }
        let sub = try await TestSubscriber.start(broker: broker, filter: topics.prefix + "/#", clientID: uniqueName("sub"))
        let rig = try StoreRig.start(options: world.options(broker, tls: world.mtls(), protocolVersion: .mqtt5), topics: topics)
        try await rig.store.commit(readings: (1...3).map { Fixtures.reading($0) }, escalations: [Fixtures.escalation(1)])
        rig.forwarder.notify()

        let escalation = try await sub.waitFor(count: 1, timeout: 10) { $0.topic == topics.escalations }
        #expect(escalation.count == 1)
        #expect(await eventually(timeout: 10) { (try? rig.store.quarantinedKeys(lane: .readings).count) == 3 })
        // One publish_refused event per flush of refusals: their counts add up to 3.
        #expect(await eventually(timeout: 10) {
            sub.messages.filter { $0.topic == topics.events }.reduce(0) { n, m in
                n + (m.text.contains(#""count":1,"#) ? 1 : m.text.contains(#""count":2,"#) ? 2 : m.text.contains(#""count":3,"#) ? 3 : 0)
            } == 3
        })
        for event in sub.messages.filter({ $0.topic == topics.events }) {
            let text = event.text
            #expect(text.contains(#""kind":"publish_refused""#), "\(text)")
            #expect(text.contains("0x87"), "\(text)")
            #expect(text.contains(#""lane":"readings""#), "\(text)")
            // No payload bytes, no patient data in the event.
            #expect(!text.contains("patient-001"))
            #expect(!text.contains("rad8-bedroom"))
        }
        #expect(await eventually(timeout: 10) { (try? rig.store.stats().undeliveredReadings) == 0 })
        #expect(await eventually(timeout: 10) { (try? rig.store.stats().undeliveredPriority) == 0 })
        let q = try rig.store.quarantineStats()
        #expect(q.total == 3 && q.readings == 3)
        _ = try rig.store.stats()
        #expect(q.lastReason?.lowercased().contains("not authorized") == true, "\(q.lastReason ?? "")")
        #expect(rig.forwarder.stats.quarantined == 3)
        #expect(rig.forwarder.stats.lastPublishRefusal?.contains("0x87") == true)
        // The readings never reached a subscriber.
        #expect(sub.messages.allSatisfy { $0.topic != topics.readings })
        // The connection itself stays up: a publish refusal is not a connection refusal.
        #expect(rig.connection.snapshot.connected)
        #expect(rig.connection.snapshot.refusal == nil)
        await rig.stop()
        await sub.stop()
    }

    @Test("a denied events topic: publish_refused events are quarantined without queueing more (no loop)")
    func refusalCannotLoop() async throws {
        let world = try TlsWorld()
        defer { world.cleanUp() }
        let topics = try Topics(site: uniqueName("site"), gateway: "gw1")
        let broker = try world.broker(acl: Self.acl(user: world.clientName, topics: topics, allow: ["status"]))
        defer { broker.cleanUp() }
        let rig = try StoreRig.start(options: world.options(broker, tls: world.mtls(), protocolVersion: .mqtt5), topics: topics)
        try await rig.store.commit(readings: [Fixtures.reading(1)])
        rig.forwarder.notify()
        // reading refused → one publish_refused event → refused too → quarantined, no new event.
        #expect(await eventually(timeout: 30) {
            (try? rig.store.quarantineStats().total) == 2 && (try? rig.store.stats().undeliveredPriority) == 0
        })
        // Let the forwarder's next fallback tick and flush happen; still nothing new.
        try await Task.sleep(for: .milliseconds(300))
        #expect(try rig.store.quarantineStats().total == 2)
        #expect(try rig.store.quarantinedKeys(lane: .priority).count == 1)
        await rig.stop()
    }

    /// The documented limit: a 3.1.1 PUBACK has no reason code, and mosquitto acknowledges an
    /// ACL-denied publish like any other, so the gateway believes it delivered.
    @Test("under MQTT 3.1.1 an ACL-denied publish is acknowledged silently (documented limit)")
    func v311CannotSeeDenial() async throws {
        let world = try TlsWorld()
        defer { world.cleanUp() }
        let topics = try Topics(site: uniqueName("site"), gateway: "gw1")
        let broker = try world.broker(acl: Self.acl(user: world.clientName, topics: topics, allow: ["status"]))
        defer { broker.cleanUp() }
        let rig = try StoreRig.start(options: world.options(broker, tls: world.mtls(), protocolVersion: .mqtt311), topics: topics)
        try await rig.store.commit(readings: [Fixtures.reading(1), Fixtures.reading(2)])
        rig.forwarder.notify()
        #expect(await eventually(timeout: 10) { (try? rig.store.stats().undeliveredReadings) == 0 })
        #expect(try rig.store.quarantineStats().total == 0)
        #expect(rig.forwarder.stats.quarantined == 0)
        await rig.stop()
    }

    @Test("MQTT 5 properties as a v5 subscriber sees them: schema on every message, expiry on readings only")
    func propertiesOnTheWire() async throws {
        let world = try TlsWorld()
        defer { world.cleanUp() }
        let topics = try Topics(site: uniqueName("site"), gateway: "gw1")
        let broker = try world.broker()
        defer { broker.cleanUp() }
        let v5 = try await V5Subscriber.start(broker: broker, topic: topics.prefix + "/#", directory: world.pki.directory)
        defer { v5.stop() }
        var options = world.options(broker, tls: world.mtls())
        options.will = topics.offlineWill
        let rig = try StoreRig.start(options: options, topics: topics, encoding: ExpiringEncoding())
        try await rig.store.commit(readings: [Fixtures.reading(1)], escalations: [Fixtures.escalation(1)])
        rig.forwarder.notify()
        let lines = await v5.waitFor(count: 4)  // probe, status, escalation, reading
        let reading = lines.first { $0.hasPrefix(topics.readings + "|") } ?? ""
        let escalation = lines.first { $0.hasPrefix(topics.escalations + "|") } ?? ""
        let status = lines.first { $0.hasPrefix(topics.status + "|") } ?? ""
        #expect(reading.contains("props=schema:vigil.reading/1"), "\(lines)")
        #expect(reading.contains("ct=application/json"), "\(lines)")
        // Expiry is the remaining interval when delivered: at most 3600.
        #expect(reading.contains(/expiry=3[0-9]{3}\|/), "\(lines)")
        #expect(escalation.contains("props=schema:vigil.escalation/1"), "\(lines)")
        #expect(escalation.contains("expiry=|"), "an escalation must never expire: \(lines)")
        #expect(status.contains("props=schema:vigil.status/1"), "\(lines)")
        #expect(rig.connection.snapshot.protocolVersion == .mqtt5)
        // The last will carries the schema too.
        rig.connection.simulateNetworkFailure()
        let withWill = await v5.waitFor(count: 5)
        let will = withWill.last { $0.hasPrefix(topics.status + "|") && $0.contains("offline") } ?? ""
        #expect(will.contains("props=schema:vigil.status/1"), "\(withWill)")
        await rig.stop()
    }

    @Test("a message over the hub's size limit is quarantined, never sent")
    func oversizeQuarantined() async throws {
        let broker = try MosquittoBroker()
        defer { broker.cleanUp() }
        let topics = try Topics(template: "vigil/\(uniqueName("site"))/gw1/{kind}", hub: .awsIoTCore)
        let sub = try await TestSubscriber.start(broker: broker, filter: topics.readings, clientID: uniqueName("sub"))
        let options = MQTTOptions(host: broker.host, port: broker.port, clientID: uniqueName("gw"), protocolVersion: .mqtt5)
        let rig = try StoreRig.start(options: options, topics: topics, encoding: HugeEncoding(size: 131_073))
        try await rig.store.commit(readings: [Fixtures.reading(1)])
        rig.forwarder.notify()
        #expect(await eventually(timeout: 10) { (try? rig.store.quarantinedKeys(lane: .readings).count) == 1 })
        #expect(try rig.store.quarantineStats().lastReason?.contains("131072") == true)
        #expect(sub.messages.isEmpty)
        await rig.stop()
        await sub.stop()
    }
}
