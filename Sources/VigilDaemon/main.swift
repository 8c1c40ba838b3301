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

// Two malloc arenas instead of one per busy thread (MallocArenas.swift): less resident slack.
limitMallocArenas(to: 2)

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
// A damaged file (not a database, or corrupt; or marked damaged by the previous run and
// failing PRAGMA integrity_check) is moved aside, kept, and replaced by a fresh one, loudly
// (DatabaseQuarantine.swift); anything else stops the daemon.
let store: ReadingStore
let databaseQuarantine: DatabaseQuarantine?
do {
    (store, databaseQuarantine) = try DatabaseQuarantine.openStore(
        options: {
            var options = StoreOptions(path: setup.config.paths.database, capacityReadings: setup.config.outbox.capacityReadings)
            options.diskReserveBytes = setup.config.outbox.diskReserveKiB * 1024
            return options
        }(),
        logger: logger)
    if let databaseQuarantine { try await store.commit(events: [databaseQuarantine.event]) }
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
    if let damage = store.reportedDamage { DatabaseDamage.stop(damage, store: store, logger: logger) }
    logger.critical("cannot rebuild rule state from the database", metadata: ["error": "\(error)"])
    exit(ExitCode.ioError)
}

// The uplink.
let topics: Topics
let connection: MQTTConnection
do {
    topics = try setup.config.topics()
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
    // TLS, MQTT version (docs/security.md, docs/cloud-topics.md). Azure IoT Hub: 3.1.1 only.
    options.tls = setup.config.broker.tls?.options
    options.protocolVersion = setup.config.broker.hub == .azureIoTHub ? .mqtt311 : setup.config.broker.protocolVersion
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

// Devices: the config file's (installer-provisioned) and the registry's (paired with
// vigilctl), all run by one DeviceManager that can start, stop and restart them at runtime.
let board = DeviceBoard()
let devices = DeviceManager(
    store: store, rules: rules, forwarder: forwarder, board: board,
    profilesDirectory: setup.config.paths.deviceProfiles, configDevices: setup.config.devices,
    profiles: setup.profiles, logger: Logger(label: "vigild.devices"))
do {
    try await devices.adoptRegistry(try store.pairedDevices())
    await devices.announce()
} catch let error as DeviceRegistryError {
    logger.critical("device registry conflicts with the config", metadata: ["error": "\(error)"])
    writeStderr("vigild: \(error)\n")
    exit(ExitCode.config)
} catch {
    if let damage = store.reportedDamage { DatabaseDamage.stop(damage, store: store, logger: logger) }
    logger.critical("cannot read the device registry", metadata: ["error": "\(error)"])
    exit(ExitCode.ioError)
}
let deviceCommands = DeviceRegistryCommands(manager: devices, store: store, logger: Logger(label: "vigild.devices"))

let startedAt = realtimeNow()
let statusReporter = StatusReporter(
    config: setup.config, startedAt: startedAt, store: store, connection: connection, forwarder: forwarder, board: board,
    databaseQuarantine: databaseQuarantine)
let control = ControlService(
    path: setup.config.paths.controlSocket,
    logger: Logger(label: "vigild.control"),
    commands: statusReporter.commands + statusReporter.viewCommands + deviceCommands.commands,
    policy: AccessPolicy.resolve(setup.config.control), store: store)

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
services.append(devices)
services.append(control)
services.append(WatchdogService(store: store))
// Damage met by any statement (an outbox read, a view) stops vigild for a check at restart.
services.append(DatabaseGuard(store: store, logger: logger))
services.append(DrainSampler(meter: statusReporter.drainMeter, forwarder: forwarder))
services.append(RuleTicker(rules: rules, store: store, forwarder: forwarder, logger: Logger(label: "vigild.rules")))
// The downlink: care-team commands on <prefix>/cmd/+ (DownlinkService.swift, docs/downlink.md).
if setup.config.downlink.enabled {
    services.append(DownlinkService(connection: connection, processor: DownlinkProcessor(
        prefix: topics.prefix, limits: setup.config.downlink.limits, store: store, rules: rules, forwarder: forwarder,
        connection: connection, carePlansDirectory: setup.config.paths.carePlans, startedAt: startedAt,
        logger: Logger(label: "vigild.downlink")), logger: Logger(label: "vigild.downlink")))
}

let group = ServiceGroup(configuration: .init(
    services: services.map { .init(service: $0) },
    gracefulShutdownSignals: [.sigterm, .sigint],
    cancellationSignals: [],
    logger: Logger(label: "vigild.lifecycle")))

let deviceCount = setup.config.devices.count + ((try? store.pairedDevices().count) ?? 0)
logger.info("vigild started", metadata: [
    "version": "\(VigilVersion.string)", "devices": "\(deviceCount)", "database": "\(setup.config.paths.database)",
])
SystemdNotifier.notify("STATUS=reading \(deviceCount) device(s)")
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
