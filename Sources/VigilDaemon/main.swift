import ClinicalRules
import DeviceDecoding
import DeviceProfiles
import Glibc
import Logging
import ReadingStore
import SerialLink
import ServiceLifecycle
import StrictYAML
import UnixSignals
import Uplink
import VitalSigns

// vigild: the Vigil gateway daemon. Start-up reads top to bottom:
// arguments → config → logging → device profiles → care plans → store → rule state →
// uplink → services (forwarder, device pipelines, control socket, watchdog) → run → drain.

let arguments: DaemonArguments
do {
    arguments = try DaemonArguments.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    writeStderr("vigild: \(error)\n\(DaemonArguments.usage)")
    exit(ExitCode.usage)
}
if arguments.showHelp {
    print(DaemonArguments.usage, terminator: "")
    exit(0)
}
if arguments.showVersion {
    print("vigild \(VigilVersion.string)")
    exit(0)
}

// Configuration. Any error names the file, line and field, and exits EX_CONFIG.
let setup: DaemonSetup
do {
    setup = try DaemonSetup.load(arguments)
} catch {
    writeStderr("vigild: \(error)\n")
    exit(ExitCode.config)
}
if arguments.checkOnly {
    print("vigild: configuration OK: \(setup.config.devices.count) device(s), \(setup.plans.count) care plan(s)")
    exit(0)
}

let logLevel = Logger.Level(rawValue: setup.config.logLevel) ?? .info
// Under systemd stderr is a journal stream: prefix lines with syslog priorities.
let toJournal = getenv("JOURNAL_STREAM") != nil
LoggingSystem.bootstrap { label in JournalLogHandler(label: label, level: logLevel, syslogPrefix: toJournal) }
let logger = Logger(label: "vigild")
// Care-plan file names may carry patient identifiers: the refusal is logged by position,
// with the full reason (file, line, field) at debug level and from `vigild --check-config`.
for (index, problem) in setup.planProblems.enumerated() {
    logger.error("care plan refused: that patient has no rules in force until it is fixed (vigild --check-config shows why)", metadata: ["plan.problem": "\(index + 1)"])
    logger.debug("care plan refused", metadata: ["reason": "\(problem)"])
}

// The durable store: opened before anything can produce a reading.
let store: ReadingStore
do {
    store = try ReadingStore(
        options: StoreOptions(path: setup.config.paths.database, capacityReadings: setup.config.outbox.capacityReadings),
        logger: Logger(label: "vigild.store"))
} catch {
    logger.critical("cannot open the database", metadata: ["path": "\(setup.config.paths.database)", "error": "\(error)"])
    exit(ExitCode.cantCreate)
}

// Rule state, rebuilt from open escalations and a bounded window of recent readings.
let rules = RuleEvaluator(plans: setup.plans, logger: Logger(label: "vigild.rules"))
do {
    let started = realtimeNow()
    let rebuilt = try await rules.rebuild(from: store, now: started)
    if !(rebuilt.escalations.isEmpty && rebuilt.events.isEmpty) {
        try await store.commit(escalations: rebuilt.escalations, events: rebuilt.events)
    }
    let patients = await rules.patientCount
    logger.info("rule state rebuilt", metadata: [
        "rules.patients": "\(patients)", "rules.replayed": "\(rebuilt.replayed)",
        "escalations.recovered": "\(rebuilt.escalations.count)",
        "elapsed_ms": "\(realtimeNow().milliseconds(since: started))",
    ])
} catch {
    logger.critical("cannot rebuild rule state from the database", metadata: ["error": "\(error)"])
    exit(ExitCode.ioError)
}

// The uplink.
let topics: Topics
let connection: MQTTConnection
do {
    topics = try Topics(prefix: setup.config.topicPrefix)
    var options = MQTTOptions(
        host: setup.config.broker.host, port: setup.config.broker.port, clientID: setup.config.clientID,
        keepAliveSeconds: Int32(setup.config.broker.keepAliveSeconds))
    options.cleanSession = false
    options.username = setup.config.broker.username
    options.password = setup.brokerPassword
    options.will = topics.offlineWill
    options.reconnectDelayMin = .milliseconds(setup.config.broker.reconnectMinMilliseconds)
    options.reconnectDelayMax = .milliseconds(setup.config.broker.reconnectMaxMilliseconds)
    options.maxInFlight = UInt32(setup.config.outbox.maxInFlight)
    connection = try MQTTConnection(options: options)
} catch {
    logger.critical("cannot set up the MQTT client", metadata: ["error": "\(error)"])
    exit(ExitCode.config)
}
let forwarder = Forwarder(
    connection: connection, source: store,
    // Delivery marks are batched for up to a second (or 256 keys): at a device's pace of one
    // reading a second, marking each one alone would double the SD card's fsyncs. A crash
    // loses at most a second of marks, which only means those readings are sent again.
    configuration: Forwarder.Configuration(
        topics: topics, maxInFlight: setup.config.outbox.maxInFlight,
        // A Bundle holds up to batch_max readings: fetch at least that many at a time.
        readingsBatch: max(128, setup.config.uplink.batchMax), deliveredBatchInterval: .seconds(1),
        // ForwardingService publishes the retained status, with outbox depth and device states.
        publishStatus: false,
        encoding: makeUplinkEncoding(
            setup.config.uplink.encoding, batchMax: setup.config.uplink.batchMax,
            readingExpirySeconds: setup.config.uplink.readingExpirySeconds, escalations: setup.config.uplink.escalations,
            deviceSystem: "urn:vigil:device-id:\(setup.config.site):\(setup.config.gateway)")),
    logger: Logger(label: "vigild.uplink"))

// Devices.
let board = DeviceBoard()
var pipelines: [DevicePipeline] = []
var bleSupervisors: [BLEDeviceSupervisor] = []
let lastSeen = (try? store.stats().lastReadingByDevice) ?? [:]
for device in setup.config.devices {
    guard let profile = setup.profiles[device.profile] else { continue }
    await board.register(id: device.id, profile: profile.id, transport: profile.transport.rawValue, port: device.endpoint)
    if let t = lastSeen[device.id] { await board.seedLastReading(device.id, t) }
    if let ble = profile.ble {
        // Bluetooth LE: a supervisor per device, feeding the same commit path.
        bleSupervisors.append(BLEDeviceSupervisor(
            device: device, profile: profile, ble: ble,
            commitPath: CommitPath(device: device.id, store: store, rules: rules, forwarder: forwarder, board: board,
                                   logger: Logger(label: "vigild.device")),
            board: board, logger: Logger(label: "vigild.ble")))
        continue
    }
    pipelines.append(DevicePipeline(
        device: device, profile: profile, store: store, rules: rules, forwarder: forwarder, board: board,
        logger: Logger(label: "vigild.device")))
}

let startedAt = realtimeNow()
let statusReporter = StatusReporter(
    config: setup.config, startedAt: startedAt, store: store, connection: connection, forwarder: forwarder, board: board)
let control = ControlService(
    path: setup.config.paths.controlSocket,
    logger: Logger(label: "vigild.control"),
    commands: statusReporter.commands)

var services: [any Service] = [ForwardingService(
    connection: connection, forwarder: forwarder, topics: topics, logger: logger,
    statusDetail: { [store, board] in
        let s = try? store.stats()
        let devices = await board.snapshot().map {
            PayloadEncoder.StatusDetail.Device(id: $0.id.rawValue, state: $0.state, lastReadingAt: $0.lastReadingAt)
        }
        return PayloadEncoder.StatusDetail(
            version: VigilVersion.string, uptimeSeconds: realtimeNow().milliseconds(since: startedAt) / 1000,
            outboxReadings: s?.undeliveredReadings ?? 0, outboxPriority: s?.undeliveredPriority ?? 0, devices: devices)
    })]
services += pipelines.map { $0 as any Service }
services += bleSupervisors.map { $0 as any Service }
services.append(control)
services.append(WatchdogService(store: store))
services.append(RuleTicker(rules: rules, store: store, forwarder: forwarder, logger: Logger(label: "vigild.rules")))

let group = ServiceGroup(configuration: .init(
    services: services.map { .init(service: $0) },
    gracefulShutdownSignals: [.sigterm, .sigint],
    cancellationSignals: [],
    logger: Logger(label: "vigild.lifecycle")))

logger.info("vigild started", metadata: [
    "version": "\(VigilVersion.string)", "devices": "\(pipelines.count + bleSupervisors.count)", "database": "\(setup.config.paths.database)",
])
SystemdNotifier.notify("STATUS=reading \(pipelines.count + bleSupervisors.count) device(s)")
var exitCode: Int32 = 0
do {
    try await group.run()
} catch {
    logger.error("a service stopped with an error", metadata: ["error": "\(error)"])
    exitCode = ExitCode.software
}
await store.close()
logger.info("vigild stopped")
exit(exitCode)
