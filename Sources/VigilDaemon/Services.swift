import Logging
import ReadingStore
import SerialLink
import ServiceLifecycle
import Uplink
import VitalSigns

/// Drains the outbox to the broker. First in the service list, so it is the last to stop:
/// on SIGTERM the devices stop first, then the forwarder flushes what the broker has
/// acknowledged, publishes a retained `offline` status and disconnects cleanly.
struct ForwardingService: Service {
    let connection: MQTTConnection
    let forwarder: Forwarder
    let topics: Topics
    let logger: Logger
    /// The retained `online` status's detail (version, uptime, outbox depth, device states);
    /// published on every connect and every `statusInterval` while connected.
    var statusDetail: (@Sendable () async -> PayloadEncoder.StatusDetail)?
    var statusInterval: Duration = .seconds(60)

    func run() async throws {
        try connection.start()
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await forwarder.run() }
                if let statusDetail { group.addTask { await publishStatus(statusDetail) } }
                await group.next()
                group.cancelAll()
            }
        }
        // Graceful shutdown: tell the care team this gateway is going away on purpose.
        _ = try? connection.publish(topic: topics.status, payload: PayloadEncoder.status(.offline), qos: 1, retain: topics.retainStatus)
        await connection.stop()
        logger.info("uplink stopped", metadata: ["outbox.acknowledged": "\(forwarder.stats.acknowledged)"])
    }
}

extension ForwardingService {
    /// Publishes the retained `online` status (version, uptime, outbox depth, device states)
    /// after each connect and then every `statusInterval`, so the outbox depth a dashboard
    /// sees is never older than that. Retained only where the hub allows (`Topics.retainStatus`).
    private func publishStatus(_ detail: @Sendable () async -> PayloadEncoder.StatusDetail) async {
        let events = connection.events()
        let interval = statusInterval
        let connection = self.connection
        let topic = topics.status
        let retain = topics.retainStatus
        await withTaskGroup(of: Void.self) { group in
            let (ticks, tick) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
            group.addTask {
                for await e in events { if case .connected = e { tick.yield() } }
                tick.finish()
            }
            group.addTask {
                while !Task.isCancelled {
                    do { try await Task.sleep(for: interval) } catch { break }
                    tick.yield()
                }
                tick.finish()
            }
            if connection.snapshot.connected { tick.yield() }
            for await _ in ticks {
                if Task.isCancelled { break }
                guard connection.snapshot.connected else { continue }
                let payload = PayloadEncoder.status(.online, at: realtimeNow(), detail: await detail())
                _ = try? connection.publish(topic: topic, payload: payload, qos: 1, retain: retain)
            }
            group.cancelAll()
        }
    }
}

/// Serves `vigilctl` on the control socket: checks each caller's role, dispatches the request
/// to its `ControlCommand` and audits access to patient data (ControlDispatcher).
struct ControlService: Service {
    let path: String
    let logger: Logger
    let commands: [ControlCommand]
    let policy: AccessPolicy
    let store: ReadingStore

    func run() async throws {
        let store = self.store
        policy.logProblems(logger)
        let dispatcher = ControlDispatcher(commands: commands, policy: policy, logger: logger) { record throws(StoreError) in
            try await store.appendAudit(record)
        }
        let server = ControlServer(path: path, socketGroup: policy.memberGID, logger: logger) { request, caller in
            await dispatcher.handle(request, caller: caller)
        }
        try server.start()
        // Ready once vigilctl can reach us: the store is open, rule state rebuilt, and the
        // other services were started before this one.
        SystemdNotifier.notify("READY=1")
        try? await gracefulShutdown()
        // The first service to stop (after the watchdog): tell systemd the drain has begun.
        SystemdNotifier.notify("STOPPING=1")
        server.stop()
    }
}

/// Pings systemd's watchdog (`WatchdogSec=`) at half the interval, each time after a round
/// trip through the store's writer thread: a daemon whose writer has wedged (a hung fsync, a
/// lock never released) stops pinging and is restarted.
struct WatchdogService: Service {
    let store: ReadingStore

    func run() async throws {
        guard let interval = SystemdNotifier.watchdogInterval else {
            try? await gracefulShutdown()
            return
        }
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            if (try? await store.checkWriter()) != nil { SystemdNotifier.notify("WATCHDOG=1") }
            try? await Task.sleep(for: interval / 2)
        }
    }
}

extension StatusReporter {
    /// `status` and `ping`.
    var commands: [ControlCommand] {
        let reporter = self
        return [
            ControlCommand("status", access: .member) { _, _ in .object([("ok", true), ("status", await reporter.status())]) },
            ControlCommand("ping", access: .member) { _, _ in .object([("ok", true)]) },
        ]
    }
}

/// Assembles the status document `vigilctl status` shows. No patient data: devices, counts,
/// times and reasons only.
struct StatusReporter: Sendable {
    let config: VigilConfig
    let startedAt: Timestamp
    let store: ReadingStore
    let connection: MQTTConnection
    let forwarder: Forwarder
    let board: DeviceBoard
    /// A damaged database this vigild moved aside at start-up (shown as `store.replaced`).
    var databaseQuarantine: DatabaseQuarantine? = nil
    /// The outbox's drain rate (Views.swift), sampled by `DrainSampler`.
    let drainMeter = DrainMeter()

    func status() async -> JSONValue {
        let now = realtimeNow()
        func age(_ t: Timestamp?) -> JSONValue {
            guard let t else { return .null }
            return .double(Double(now.milliseconds(since: t)) / 1000)
        }
        func time(_ t: Timestamp?) -> JSONValue { t.map { .string($0.iso8601) } ?? .null }

        let mqtt = connection.snapshot
        let fwd = forwarder.stats
        // Built in pieces: one literal this long is beyond the type checker's time limit.
        let drainRate: JSONValue = drainMeter.ratePerSecond().map { .double(($0 * 10).rounded() / 10) } ?? .null
        let refusal: JSONValue = mqtt.refusal.map { r -> JSONValue in
            .object([("kind", .string(r.kind.rawValue)), ("reason", .string(r.reason)), ("since", time(r.since))])
        } ?? .null
        var uplinkFields: [(String, JSONValue)] = [
            ("broker", .string("\(config.broker.host):\(config.broker.port)")),
            ("connected", .bool(mqtt.connected)),
            ("last_error", mqtt.lastError.map { .string($0) } ?? .null),
            ("last_connected_at", time(mqtt.lastConnectedAt)),
            ("reconnect_attempts", .int(Int64(mqtt.connectAttempts))),
            ("consecutive_failures", .int(Int64(mqtt.consecutiveFailures))),
        ]
        uplinkFields += [
            ("published", .int(Int64(fwd.published))),
            ("acknowledged", .int(Int64(fwd.acknowledged))),
            ("in_flight", .int(Int64(fwd.inFlight))),
            ("drain_rate_per_second", drainRate),
            ("last_publish_error", fwd.lastPublishError.map { .string($0) } ?? .null),
        ]
        // Issue 6 (docs/security.md): TLS, MQTT version, why the broker refuses us, and
        // what it refused to accept (quarantined items).
        uplinkFields += [
            ("tls", .bool(mqtt.tls)),
            ("protocol", .string(mqtt.protocolVersion.rawValue)),
            ("refusal", refusal),
            ("quarantined", .int(Int64(fwd.quarantined))),
            ("last_publish_refusal", fwd.lastPublishRefusal.map { .string($0) } ?? .null),
        ]
        let uplink: JSONValue = .object(uplinkFields)

        var outbox: JSONValue = .null
        var storeDoc: JSONValue = .object([("error", "unavailable")])
        var openEscalations: Int64 = 0
        do {
            let s = try store.stats()
            outbox = .object([
                ("escalations", .object([
                    ("depth", .int(s.undeliveredPriority)),
                    ("oldest_at", time(s.oldestUndeliveredPriorityCreatedAt)),
                    ("oldest_age_seconds", age(s.oldestUndeliveredPriorityCreatedAt)),
                ])),
                ("readings", .object([
                    ("depth", .int(s.undeliveredReadings)),
                    ("oldest_at", time(s.oldestUndeliveredReadingReceivedAt)),
                    ("oldest_age_seconds", age(s.oldestUndeliveredReadingReceivedAt)),
                ])),
            ])
            var storeFields: [(String, JSONValue)] = [
                ("path", .string(config.paths.database)),
                ("size_bytes", .int(s.databaseBytes)),
                ("readings", .int(s.totalReadings)),
                ("capacity_readings", .int(Int64(config.outbox.capacityReadings))),
                ("evicted_total", .int(s.evictedTotal)),
                ("pruned_delivered_total", .int(s.prunedDeliveredTotal)),
                ("transactions", .int(s.transactionsCommitted)),
            ]
            // A full disk (docs/faults.md "Disk full"): whether the store is evicting to make
            // room now, what it evicted for space in all, and its reserve file.
            let sp = s.space
            storeFields.append(("disk_full", .object([
                ("full", .bool(sp.full)),
                ("since", time(sp.fullSince)),
                ("low_space", .bool(sp.lowSpace)),
                ("evicted_for_space_total", .int(s.evictedForSpaceTotal)),
                ("pruned_for_space_total", .int(s.prunedForSpaceTotal)),
                ("write_failures", .int(sp.fullFailures)),
                ("last_error", sp.lastFullError.map { .string($0) } ?? .null),
                ("last_made_room_at", time(sp.lastMadeRoomAt)),
                ("reserve_bytes", .int(sp.reserveBytes)),
                ("reserve_held", .bool(sp.reserveHeld)),
            ])))
            // Only after a damaged database was replaced at start-up (DatabaseQuarantine.swift).
            if let q = databaseQuarantine {
                storeFields.append(("replaced", .object([
                    ("at", .string(q.at.iso8601)), ("quarantined_as", .string(q.quarantinedPath)),
                    ("reason", .string(q.reason)), ("problem", .string(q.problem)),
                ])))
            }
            storeDoc = .object(storeFields)
            openEscalations = Int64((try? store.openEscalations().count) ?? 0)
        } catch {
            storeDoc = .object([("error", .string("\(error)"))])
        }

        let devices = await deviceDocuments(now: now)

        return .object([
            ("gateway", .object([
                ("site", .string(config.site)),
                ("gateway", .string(config.gateway)),
                ("version", .string(VigilVersion.string)),
                ("started_at", time(startedAt)),
                ("uptime_seconds", age(startedAt)),
                ("now", time(now)),
            ])),
            ("uplink", uplink),
            ("outbox", outbox),
            ("devices", .array(devices)),
            ("store", storeDoc),
            ("escalations", .object([("open", .int(openEscalations))])),
            ("disk", diskDocument()),
            ("clock", clockDocument()),
        ])
    }
}
