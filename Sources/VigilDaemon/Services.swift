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
        _ = try? connection.publish(topic: topics.status, payload: PayloadEncoder.status(.offline), qos: 1, retain: true)
        await connection.stop()
        logger.info("uplink stopped", metadata: ["outbox.acknowledged": "\(forwarder.stats.acknowledged)"])
    }
}

extension ForwardingService {
    /// Publishes the rich retained status after each connect (the forwarder's own bare
    /// `online` goes first) and then every `statusInterval`, so the outbox depth a dashboard
    /// sees is never older than that.
    private func publishStatus(_ detail: @Sendable () async -> PayloadEncoder.StatusDetail) async {
        let events = connection.events()
        let interval = statusInterval
        let connection = self.connection
        let topic = topics.status
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
                _ = try? connection.publish(topic: topic, payload: payload, qos: 1, retain: true)
            }
            group.cancelAll()
        }
    }
}

/// Serves `vigilctl` on the control socket: dispatches each request to its `ControlCommand`.
struct ControlService: Service {
    let path: String
    let logger: Logger
    let commands: [ControlCommand]

    func run() async throws {
        let logger = self.logger
        var table: [String: ControlCommand] = [:]
        for c in commands { table[c.name] = c }
        let known = commands.map(\.name).sorted().joined(separator: ", ")
        let byName = table
        let server = ControlServer(path: path, logger: logger) { request, caller in
            let name = request["command"]?.stringValue
            if let name, let command = byName[name] { return await command.run(request, caller) }
            switch name {
            case let other?:
                let shown = other.count > 40 ? String(other.prefix(40)) + "…" : other
                logger.notice("control request refused", metadata: ["command": "\(shown)", "caller.uid": "\(caller.uid)"])
                return ControlCommand.failure("unknown command '\(shown)'; this vigild knows \(known)")
            case nil:
                return ControlCommand.failure("the request needs a \"command\" string")
            }
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

    func status() async -> JSONValue {
        let now = realtimeNow()
        func age(_ t: Timestamp?) -> JSONValue {
            guard let t else { return .null }
            return .double(Double(now.milliseconds(since: t)) / 1000)
        }
        func time(_ t: Timestamp?) -> JSONValue { t.map { .string($0.iso8601) } ?? .null }

        let mqtt = connection.snapshot
        let fwd = forwarder.stats
        let uplink: JSONValue = .object([
            ("broker", .string("\(config.broker.host):\(config.broker.port)")),
            ("connected", .bool(mqtt.connected)),
            ("last_error", mqtt.lastError.map { .string($0) } ?? .null),
            ("last_connected_at", time(mqtt.lastConnectedAt)),
            ("reconnect_attempts", .int(Int64(mqtt.connectAttempts))),
            ("consecutive_failures", .int(Int64(mqtt.consecutiveFailures))),
            ("published", .int(Int64(fwd.published))),
            ("acknowledged", .int(Int64(fwd.acknowledged))),
            ("in_flight", .int(Int64(fwd.inFlight))),
            ("last_publish_error", fwd.lastPublishError.map { .string($0) } ?? .null),
        ])

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
            storeDoc = .object([
                ("path", .string(config.paths.database)),
                ("size_bytes", .int(s.databaseBytes)),
                ("readings", .int(s.totalReadings)),
                ("capacity_readings", .int(Int64(config.outbox.capacityReadings))),
                ("evicted_total", .int(s.evictedTotal)),
                ("pruned_delivered_total", .int(s.prunedDeliveredTotal)),
                ("transactions", .int(s.transactionsCommitted)),
            ])
            openEscalations = Int64((try? store.openEscalations().count) ?? 0)
        } catch {
            storeDoc = .object([("error", .string("\(error)"))])
        }

        let devices = await board.snapshot().map { d -> JSONValue in
            .object([
                ("id", .string(d.id.rawValue)),
                ("profile", .string(d.profile)),
                ("transport", .string(d.transport)),
                ("port", .string(d.port)),
                ("state", .string(d.state)),
                ("reason", d.reason.map { .string($0) } ?? .null),
                ("last_reading_at", time(d.lastReadingAt)),
                ("last_reading_age_seconds", age(d.lastReadingAt)),
                ("readings", .int(d.readings)),
                ("rejected_frames", .int(d.rejectedFrames)),
                ("implausible_values", .int(d.implausibleValues)),
                ("bytes_read", .int(d.bytesRead)),
                ("last_error", d.lastError.map { .string($0) } ?? .null),
                ("ble", d.ble.map { b -> JSONValue in
                    .object([
                        ("link", .string(b.link)),
                        ("connected", .bool(b.connected)),
                        ("bonded", b.bonded.map { .bool($0) } ?? .null),
                        ("mtu", b.mtu.map { .int(Int64($0)) } ?? .null),
                        ("battery_percent", b.batteryPercent.map { .int(Int64($0)) } ?? .null),
                        ("clock_offset_seconds", b.clockOffsetSeconds.map { .double($0) } ?? .null),
                        ("connections", .int(b.connections)),
                        ("last_connected_at", time(b.lastConnectedAt)),
                        ("bad_payloads", .int(b.badPayloads)),
                    ])
                } ?? .null),
            ])
        }

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
        ])
    }
}
