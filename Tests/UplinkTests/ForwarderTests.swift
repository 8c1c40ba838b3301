import FoundationEssentials
import Glibc
import Logging
import Testing
import Uplink
import VigilTestKit
import VitalSigns

/// Just the ID, to compare what arrived with what was committed.
private struct IDOnly: Decodable { var id: String; var schema: String }

private func decodeID(_ m: ReceivedMessage) -> IDOnly? {
    try? JSONDecoder().decode(IDOnly.self, from: Data(m.payload))
}

@Suite("Forwarder against a real mosquitto")
struct ForwarderTests {
    @Test("delivers everything, and marks delivered only after the PUBACK")
    func marksDeliveredOnlyAfterPuback() async throws {
        let broker = try MosquittoBroker()
        defer { broker.cleanUp() }
        let topics = try Topics(site: uniqueName("site"), gateway: "gw")
        let source = MemoryOutbox()
        let rig = try ForwarderRig.start(broker: broker, source: source, topics: topics)
        #expect(await eventually(timeout: 5) { rig.forwarder.stats.connected })

        // Frozen broker: the kernel still takes our bytes, but no PUBACK comes back.
        broker.pause()
        for n in 0..<50 { await source.commit(.reading(Fixtures.reading(n))) }
        await source.commit(.escalation(Fixtures.escalation()))
        rig.forwarder.notify()
        #expect(await eventually(timeout: 5) { rig.forwarder.stats.published == 51 })
        // Longer than the 20 ms delivered-batch interval: nothing may be marked.
        try await Task.sleep(for: .milliseconds(300))
        #expect(await source.delivered.isEmpty)
        #expect(rig.forwarder.stats.acknowledged == 0)
        #expect(rig.forwarder.stats.inFlight == 51)

        broker.resume()
        #expect(await eventually(timeout: 10) { await source.undeliveredCount == 0 })
        let stats = rig.forwarder.stats
        #expect(stats.acknowledged >= 51)
        #expect(stats.inFlight == 0)
        // Batched: far fewer markDelivered calls than items.
        #expect(await source.markCalls < 51)
        await rig.stop()
    }

    @Test("a PUBACK for a mid from before a reconnect still marks its key delivered")
    func latePubackMarksDelivered() async throws {
        let broker = try MosquittoBroker()
        defer { broker.cleanUp() }
        let topics = try Topics(site: uniqueName("site"), gateway: "gw")
        let source = MemoryOutbox()
        let rig = try ForwarderRig.start(broker: broker, source: source, topics: topics)
        #expect(await eventually(timeout: 5) { rig.forwarder.stats.connected })
        broker.pause()
        for n in 0..<20 { await source.commit(.reading(Fixtures.reading(n))) }
        rig.forwarder.notify()
        #expect(await eventually(timeout: 5) { rig.forwarder.stats.published == 20 })
        // Drop the connection while all 20 wait for PUBACKs; the reconnect's CONNECT waits
        // in the frozen broker's backlog.
        rig.connection.simulateNetworkFailure()
        #expect(await eventually(timeout: 5) { !rig.forwarder.stats.connected })
        broker.resume()
        #expect(await eventually(timeout: 10) { await source.undeliveredCount == 0 })
        let stats = rig.forwarder.stats
        // libmosquitto re-sent its 20 in-flight messages under their old mids after the
        // reconnect; their PUBACKs matched keys of the previous connection.
        #expect(stats.lateAcknowledged > 0, "\(stats)")
        #expect(await source.delivered.count == 20)
        await rig.stop()
    }

    @Test("the priority lane goes first: 500 readings and 1 escalation committed while disconnected")
    func escalationBeforeBacklog() async throws {
        // Persistence lets the subscriber's session (and the messages queued for it) live
        // across the broker restart, so arrival order is the broker's receive order.
        let broker = try MosquittoBroker(options: .init(persistence: true))
        defer { broker.cleanUp() }
        let topics = try Topics(site: uniqueName("site"), gateway: "gw")
        let sub = try await TestSubscriber.start(broker: broker, filter: topics.prefix + "/+", clientID: uniqueName("sub"),
                                                 cleanSession: false)
        broker.stop()

        let source = MemoryOutbox()
        let rig = try ForwarderRig.start(broker: broker, source: source, topics: topics)
        for n in 0..<500 { await source.commit(.reading(Fixtures.reading(n))) }
        let escalation = Fixtures.escalation()
        await source.commit(.escalation(escalation))
        rig.forwarder.notify()
        #expect(rig.forwarder.stats.connected == false)
        #expect(rig.forwarder.stats.published == 0)

        try broker.start()
        let notStatus: @Sendable (ReceivedMessage) -> Bool = { !$0.topic.hasSuffix("/status") }
        let got = try await sub.waitFor(count: 501, timeout: 15, matching: notStatus)
        #expect(got.first?.topic == topics.escalations)
        #expect(got.first.flatMap(decodeID)?.id == escalation.id)
        // Readings in sequence order (IDs were derived from sequence numbers 0…499).
        let readingIDs = got.filter { $0.topic == topics.readings }.compactMap { decodeID($0)?.id }
        let expected = (0..<500).map { Fixtures.reading($0).id.rawValue }
        #expect(Array(readingIDs.prefix(500)) == expected)
        #expect(await eventually(timeout: 10) { await source.undeliveredCount == 0 })
        await rig.stop()
        await sub.stop()
    }

    @Test("an escalation committed during a long readings backlog overtakes it (bounded in-flight window)")
    func escalationOvertakesBacklog() async throws {
        let broker = try MosquittoBroker()
        defer { broker.cleanUp() }
        let topics = try Topics(site: uniqueName("site"), gateway: "gw")
        let sub = try await TestSubscriber.start(broker: broker, filter: topics.prefix + "/+", clientID: uniqueName("sub"))
        let source = MemoryOutbox()
        let total = 10_000
        for n in 0..<total { await source.commit(.reading(Fixtures.reading(n))) }
        let rig = try ForwarderRig.start(broker: broker, source: source, topics: topics, maxInFlight: 32)
        rig.forwarder.notify()
        _ = try await sub.waitFor(count: 100, timeout: 10) { $0.topic == topics.readings }
        let escalation = Fixtures.escalation(1)
        await source.commit(.escalation(escalation))
        rig.forwarder.notify()
        let notStatus: @Sendable (ReceivedMessage) -> Bool = { !$0.topic.hasSuffix("/status") }
        let got = try await sub.waitFor(count: total + 1, timeout: 30, matching: notStatus)
        guard let at = got.firstIndex(where: { $0.topic == topics.escalations }) else {
            Issue.record("the escalation never arrived")
            await rig.stop(); await sub.stop()
            return
        }
        // FIFO would put it last; the window of 32 lets it overtake nearly all the backlog.
        let readingsAfter = got[(at + 1)...].filter { $0.topic == topics.readings }.count
        #expect(readingsAfter > total / 5, "escalation arrived at \(at); \(readingsAfter) readings after it")
        print("overtake: escalation arrived as message \(at) of \(got.count); \(readingsAfter) readings after it")
        await rig.stop()
        await sub.stop()
    }

    @Test("survives a broker stop and restart mid-stream: nothing lost, duplicates carry the same IDs")
    func survivesBrokerRestart() async throws {
        let broker = try MosquittoBroker(options: .init(persistence: true))
        defer { broker.cleanUp() }
        let topics = try Topics(site: uniqueName("site"), gateway: "gw")
        let sub = try await TestSubscriber.start(broker: broker, filter: topics.readings, clientID: uniqueName("sub"),
                                                 cleanSession: false)
        let source = MemoryOutbox()
        let rig = try ForwarderRig.start(broker: broker, source: source, topics: topics, maxInFlight: 64)
        #expect(await eventually(timeout: 5) { rig.forwarder.stats.connected })

        let total = 3000
        for n in 0..<total { await source.commit(.reading(Fixtures.reading(n))) }
        rig.forwarder.notify()
        _ = try await sub.waitFor(count: 200, timeout: 10)
        broker.stop()
        #expect(await eventually(timeout: 5) { !rig.forwarder.stats.connected })
        let undeliveredDuringOutage = await source.undeliveredCount
        try broker.start()

        let drained = await eventually(timeout: 20) { await source.undeliveredCount == 0 }
        let left = await source.undeliveredCount
        #expect(drained, "undelivered: \(left); stats: \(rig.forwarder.stats)")
        let expected = Set((0..<total).map { Fixtures.reading($0).id.rawValue })
        let everything = await eventually(timeout: 15) {
            Set(sub.messages.compactMap { decodeID($0)?.id }).isSuperset(of: expected)
        }
        let received = sub.messages.compactMap { decodeID($0)?.id }
        #expect(everything, "received \(Set(received).count) distinct of \(total)")
        #expect(Set(received).isSubset(of: expected))
        print("restart: \(undeliveredDuringOutage) undelivered at the outage; \(received.count) messages received for \(total) readings (\(received.count - Set(received).count) duplicates)")
        await rig.stop()
        await sub.stop()
    }

    @Test("a dead broker never blocks notify(); stats show nothing published")
    func notifyNeverBlocks() async throws {
        let probe = try MosquittoBroker()
        let port = probe.port
        probe.cleanUp()
        let topics = try Topics(prefix: "vigil/v1/s/g")
        let source = MemoryOutbox()
        let options = MQTTOptions(host: "127.0.0.1", port: port, clientID: uniqueName("gw"),
                                  reconnectDelayMin: .milliseconds(50), reconnectDelayMax: .milliseconds(200))
        let connection = try MQTTConnection(options: options)
        let forwarder = Forwarder(connection: connection, source: source, configuration: .init(topics: topics),
                                  logger: Logger(label: "test"))
        let task = Task { await forwarder.run() }
        try connection.start()
        for n in 0..<1000 {
            await source.commit(.reading(Fixtures.reading(n)))
            forwarder.notify()
        }
        #expect(forwarder.stats.published == 0)
        #expect(forwarder.stats.connected == false)
        #expect(await source.undeliveredCount == 1000)
        task.cancel()
        await task.value
        await connection.stop()
    }

    @Test("informal throughput through the Forwarder to the local broker (printed, not asserted)")
    func throughput() async throws {
        let broker = try MosquittoBroker()
        defer { broker.cleanUp() }
        let topics = try Topics(site: uniqueName("site"), gateway: "gw")
        let source = MemoryOutbox()
        let total = 20_000
        for n in 0..<total { await source.commit(.reading(Fixtures.reading(n))) }
        let start = ContinuousClock.now
        let rig = try ForwarderRig.start(broker: broker, source: source, topics: topics)
        rig.forwarder.notify()
        let done = await eventually(timeout: 60) { await source.undeliveredCount == 0 }
        let elapsed = ContinuousClock.now - start
        #expect(done)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("throughput: \(total) readings published and PUBACKed in \(elapsed) = \(Int(Double(total) / seconds)) msg/s; markDelivered calls: \(await source.markCalls)")
        await rig.stop()
    }
}
