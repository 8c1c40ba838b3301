import Glibc
import Testing
import Uplink
import VigilTestKit
import VitalSigns

@Suite("MQTTConnection against a real mosquitto")
struct MQTTConnectionTests {
    @Test("connect, publish at QoS 1, and the PUBACK arrives as .published(mid)")
    func publishGetsPuback() async throws {
        let broker = try MosquittoBroker()
        defer { broker.cleanUp() }
        let topic = uniqueName("t/puback")
        let sub = try await TestSubscriber.start(broker: broker, filter: topic, clientID: uniqueName("sub"))
        let conn = try MQTTConnection(options: MQTTOptions(host: broker.host, port: broker.port, clientID: uniqueName("c")))
        let connected = conn.events()
        try conn.start()
        let first = await awaitEvent(connected, timeout: 5) { if case .connected = $0 { true } else { false } }
        #expect(first == .connected(sessionPresent: false))
        #expect(conn.snapshot.connected)
        #expect(conn.snapshot.lastConnectedAt != nil)

        let acks = conn.events()
        let mid = try conn.publish(topic: topic, payload: Array("hello".utf8), qos: 1)
        let ack = await awaitEvent(acks, timeout: 5) { $0 == .published(mid: mid) }
        #expect(ack == .published(mid: mid))
        let got = try await sub.waitFor(count: 1, timeout: 5)
        #expect(got.first?.text == "hello")

        await conn.stop()
        #expect(conn.snapshot.connected == false)
        #expect(conn.snapshot.running == false)
        // After stop, publishing fails with a typed error instead of queueing silently.
        #expect(throws: MQTTError.self) { _ = try conn.publish(topic: topic, payload: [1], qos: 0) }
        await sub.stop()
    }

    @Test("the last will (retained offline) is delivered when the socket dies without DISCONNECT")
    func willOnAbruptLoss() async throws {
        let broker = try MosquittoBroker()
        defer { broker.cleanUp() }
        let topics = try Topics(site: uniqueName("site"), gateway: "gw1")
        let watcher = try await TestSubscriber.start(broker: broker, filter: topics.status, clientID: uniqueName("w"))
        let conn = try MQTTConnection(options: MQTTOptions(host: broker.host, port: broker.port, clientID: uniqueName("gw"),
                                                           will: topics.offlineWill,
                                                           reconnectDelayMin: .seconds(60), reconnectDelayMax: .seconds(60)))
        // The backoff (half to all of 60 s) outlasts every wait below even on a busy machine,
        // so the state checked after the loss is not already a reconnect; stop() cuts it short.
        let events = conn.events()
        try conn.start()
        #expect(await awaitEvent(events, timeout: 5) { if case .connected = $0 { true } else { false } } != nil)
        _ = try conn.publish(topic: topics.status, payload: PayloadEncoder.status(.online, at: Fixtures.t0), retain: true)
        let online = try await watcher.waitFor(count: 1, timeout: 5)
        #expect(online.first?.text.contains("\"state\":\"online\"") == true)

        let lost = conn.events()
        conn.simulateNetworkFailure()
        let offline = try await watcher.waitFor(count: 2, timeout: 5)
        #expect(offline.last?.text == #"{"schema":"vigil.status/1","state":"offline"}"#)
        // The connection noticed the loss and says why.
        #expect(await awaitEvent(lost, timeout: 5) { if case .disconnected = $0 { true } else { false } } != nil)
        #expect(conn.snapshot.connected == false)
        #expect(conn.snapshot.lastError != nil)

        // Retained: a client subscribing afterwards is told at once.
        let late = try await TestSubscriber.start(broker: broker, filter: topics.status, clientID: uniqueName("late"))
        let retained = try await late.waitFor(count: 1, timeout: 5)
        #expect(retained.first?.text.contains("offline") == true)

        await conn.stop()
        await late.stop()
        await watcher.stop()
    }

    @Test("stop() disconnects cleanly: the will is not sent")
    func cleanStopSendsNoWill() async throws {
        let broker = try MosquittoBroker()
        defer { broker.cleanUp() }
        let topics = try Topics(site: uniqueName("site"), gateway: "gw1")
        let watcher = try await TestSubscriber.start(broker: broker, filter: topics.status, clientID: uniqueName("w"))
        let conn = try MQTTConnection(options: MQTTOptions(host: broker.host, port: broker.port, clientID: uniqueName("gw"),
                                                           will: topics.offlineWill))
        let events = conn.events()
        try conn.start()
        #expect(await awaitEvent(events, timeout: 5) { if case .connected = $0 { true } else { false } } != nil)
        _ = try conn.publish(topic: topics.status, payload: PayloadEncoder.status(.online, at: Fixtures.t0), retain: true)
        _ = try await watcher.waitFor(count: 1, timeout: 5)
        await conn.stop()
        // Absence needs a window: nothing more may arrive within a second.
        await #expect(throws: TestSubscriberTimeout.self) { try await watcher.waitFor(count: 2, timeout: 1) }
        #expect(watcher.messages.allSatisfy { !$0.text.contains("offline") })
        await watcher.stop()
    }

    @Test("reconnect backoff grows and is capped (nothing listening on the port)")
    func backoffGrowsAndIsCapped() async throws {
        // A port that was free a moment ago: connect() is refused at once, so only the
        // backoff paces the attempts.
        let probe = try MosquittoBroker()
        let port = probe.port
        probe.cleanUp()
        let conn = try MQTTConnection(options: MQTTOptions(host: "127.0.0.1", port: port, clientID: uniqueName("c"),
                                                           reconnectDelayMin: .milliseconds(20),
                                                           reconnectDelayMax: .milliseconds(160)))
        let failures = conn.events()
        let clock = ContinuousClock()
        let started = clock.now
        try conn.start()
        let failed = await awaitEvent(failures, timeout: 5) { if case .connectFailed = $0 { true } else { false } }
        #expect(failed != nil)
        // Attempts are counted over a window; the delays come from the snapshot's history.
        try await Task.sleep(for: .seconds(2))
        let snap = conn.snapshot
        let elapsed = clock.now - started
        await conn.stop()
        #expect(snap.connected == false)
        #expect(snap.lastError?.contains("refused") == true, "lastError: \(snap.lastError ?? "nil")")
        // Not a tight loop (that would be thousands), not stuck either. The upper bound is what
        // the backoff floors (10, 20, 40, then 80 ms) allow in the time that really passed: a
        // loaded machine can stretch the 2 s sleep, but never make attempts come faster.
        var allowed = 1
        var spent = Duration.zero
        while spent + min(Duration.milliseconds(10 << min(allowed - 1, 3)), .milliseconds(80)) <= elapsed {
            spent += min(Duration.milliseconds(10 << min(allowed - 1, 3)), .milliseconds(80))
            allowed += 1
        }
        #expect(snap.connectAttempts >= 5 && snap.connectAttempts <= allowed,
                "attempts: \(snap.connectAttempts) in \(elapsed), backoff allows \(allowed)")
        #expect(snap.consecutiveFailures == snap.connectAttempts)
        // Equal jitter: delay n lies in [D/2, D] with D = min(160 ms, 20 ms · 2^n), so the
        // delays never shrink before the cap (20, 40, 80 ms ceilings), all stay within the
        // cap, and later ones sit in the capped band [80, 160] ms.
        let delays = snap.backoffHistory
        #expect(delays.count >= 5, "\(delays)")
        #expect(delays.allSatisfy { $0 <= .milliseconds(160) }, "\(delays)")
        #expect((delays.first ?? .zero) <= .milliseconds(20) && (delays.first ?? .zero) >= .milliseconds(10), "\(delays)")
        if delays.count >= 4 {
            #expect(delays[0] <= delays[1] && delays[1] <= delays[2] && delays[2] <= delays[3], "\(delays)")
        }
        #expect(delays.dropFirst(4).allSatisfy { $0 >= .milliseconds(80) }, "\(delays)")
    }

    @Test("backoff(attempt:): doubling ceiling, capped, jittered within [D/2, D]")
    func backoffFormula() {
        let minD = Duration.milliseconds(500), maxD = Duration.seconds(30)
        for attempt in 0..<40 {
            let ceiling = min(maxD, minD * (1 << min(attempt, 30)))
            var seen = Set<Duration>()
            for _ in 0..<200 {
                let d = MQTTConnection.backoff(attempt: attempt, min: minD, max: maxD)
                #expect(d >= ceiling / 2 - .microseconds(1) && d <= ceiling, "attempt \(attempt): \(d)")
                seen.insert(d)
            }
            #expect(seen.count > 1, "no jitter at attempt \(attempt)")
        }
    }

    @Test("a refused CONNECT (wrong password) is reported with the broker's reason and backs off")
    func refusedConnectionHasReason() async throws {
        let broker = try MosquittoBroker(options: .init(users: ["vigil": "right-password"]))
        defer { broker.cleanUp() }
        let conn = try MQTTConnection(options: MQTTOptions(host: broker.host, port: broker.port, clientID: uniqueName("gw"),
                                                           username: "vigil", password: "wrong-password",
                                                           reconnectDelayMin: .milliseconds(200), reconnectDelayMax: .seconds(2)))
        let events = conn.events()
        let clock = ContinuousClock()
        let started = clock.now
        try conn.start()
        let refused = await awaitEvent(events, timeout: 5) { if case .connectFailed = $0 { true } else { false } }
        guard case .connectFailed(let code, let reason) = refused else {
            Issue.record("no connectFailed event; snapshot: \(conn.snapshot)")
            await conn.stop()
            return
        }
        #expect(code == 4 || code == 5, "CONNACK code \(code)")
        #expect(reason.contains("Connection Refused"), "\(reason)")
        let ok = await eventually(timeout: 3) { conn.snapshot.connectAttempts >= 2 }
        #expect(ok)
        let snap = conn.snapshot
        #expect(snap.connected == false)
        #expect(snap.lastError?.contains("broker refused the connection") == true, "\(snap.lastError ?? "nil")")
        #expect(snap.lastError?.contains("wrong-password") == false)
        // 200 ms, 400 ms, 800 ms … (each at least half that, capped at 2 s): never a tight
        // loop. The bound is what the backoff allows in the time that actually passed, so a
        // test task starved by a loaded machine does not make the count look like a storm.
        let elapsed = clock.now - started
        var allowed = 1
        var spent = Duration.zero
        while true {
            let floor = min(Duration.milliseconds(200 << min(allowed - 1, 10)), .seconds(2)) / 2
            if spent + floor > elapsed { break }
            spent += floor
            allowed += 1
        }
        #expect(snap.connectAttempts <= allowed, "attempts: \(snap.connectAttempts) in \(elapsed), backoff allows \(allowed)")
        #expect(snap.backoffHistory.count >= 1 && snap.backoffHistory.allSatisfy { $0 >= .milliseconds(100) }, "\(snap.backoffHistory)")
        await conn.stop()

        // The right password gets in.
        let good = try MQTTConnection(options: MQTTOptions(host: broker.host, port: broker.port, clientID: uniqueName("gw"),
                                                           username: "vigil", password: "right-password"))
        let goodEvents = good.events()
        try good.start()
        #expect(await awaitEvent(goodEvents, timeout: 5) { if case .connected = $0 { true } else { false } } != nil)
        await good.stop()
    }
}
