import DeviceProfiles
import Logging
import ReadingStore
import ServiceLifecycle
import StrictYAML
import Uplink
import VitalSigns

/// Owns every device runner — a ``DevicePipeline`` per serial device, a
/// ``BLEDeviceSupervisor`` per Bluetooth LE device — and starts, stops and restarts them at
/// runtime, so a device paired, unpaired or reassigned with `vigilctl` takes effect without a
/// restart (issue 7). One service in main.swift's list instead of one per device, at the place
/// the devices had: devices stop before the forwarder drains.
///
/// Runners are detached tasks stopped by cancellation, which is what graceful shutdown did to
/// them before: a serial reader finishes the commit under way and stops reading (its next bytes
/// stay in the kernel); a BLE session closes its link, and an indication whose reading was not
/// yet committed stays unconfirmed, so the device sends it again to whoever reads it next.
actor DeviceManager: Service {
    /// Where a device came from: the config file (installer-provisioned, read-only from
    /// vigilctl) or the runtime registry (paired with vigilctl).
    enum Source: String, Sendable {
        case config
        case registry
    }

    struct Running {
        var entry: VigilConfig.DeviceEntry
        var source: Source
        var task: Task<Void, Never>
    }

    let store: ReadingStore
    let rules: RuleEvaluator
    let forwarder: Forwarder
    let board: DeviceBoard
    let profilesDirectory: String
    let logger: Logger
    /// Device ids from vigild.yaml: never paired, unpaired or reassigned at runtime.
    let configDeviceIDs: Set<DeviceID>
    private var profiles: [String: DeviceProfile]
    private var initial: [(VigilConfig.DeviceEntry, Source)]
    private var running: [DeviceID: Running] = [:]
    private var shuttingDown = false

    init(store: ReadingStore, rules: RuleEvaluator, forwarder: Forwarder, board: DeviceBoard,
         profilesDirectory: String, configDevices: [VigilConfig.DeviceEntry], profiles: [String: DeviceProfile],
         logger: Logger) {
        self.store = store
        self.rules = rules
        self.forwarder = forwarder
        self.board = board
        self.profilesDirectory = profilesDirectory
        self.logger = logger
        self.configDeviceIDs = Set(configDevices.map(\.id))
        self.profiles = profiles
        self.initial = configDevices.map { ($0, .config) }
    }

    /// Adds the registry's devices to those started by ``run()``: the assigned ones run, the
    /// unassigned ones show as `unassigned`. Called once at start-up, before ``run()``.
    ///
    /// - Throws: a message naming the id when a registry device has the id of a config device
    ///   (an id in both is a configuration error: fix one or the other).
    func adoptRegistry(_ devices: [RegisteredDevice]) async throws(DeviceRegistryError) {
        for d in devices where configDeviceIDs.contains(d.id) {
            throw DeviceRegistryError(
                .configDevice,
                "device id '\(d.id)' is both in the config file's devices: and paired with vigilctl; remove it from one of them (vigilctl unpair \(d.id) with the config entry commented out, or delete the config entry)")
        }
        for d in devices {
            guard let patient = d.patient else {
                await registerUnassigned(d)
                continue
            }
            do {
                let entry = try DeviceRegistryCommands.entry(for: d, patient: patient)
                initial.append((entry, .registry))
            } catch {
                await board.register(id: d.id, profile: d.profile, transport: d.address == nil ? "serial" : "ble",
                                     port: d.port ?? d.address ?? "")
                await board.setState(d.id, "error", reason: "stored pairing no longer valid: \(error)")
            }
        }
    }

    /// Puts every device about to start on the board, so status lists them from the first
    /// answer of the control socket. Called once at start-up, after ``adoptRegistry(_:)``.
    func announce() async {
        let lastSeen = (try? store.stats().lastReadingByDevice) ?? [:]
        for (entry, _) in initial {
            let transport = profiles[entry.profile]?.transport.rawValue ?? (entry.port == nil ? "ble" : "serial")
            await board.register(id: entry.id, profile: entry.profile, transport: transport, port: entry.endpoint)
            if let t = lastSeen[entry.id] { await board.seedLastReading(entry.id, t) }
        }
    }

    func run() async throws {
        let lastSeen = (try? store.stats().lastReadingByDevice) ?? [:]
        for (entry, source) in initial {
            do {
                let profile = try profile(named: entry.profile)
                await start(entry, profile: profile, source: source, lastReadingAt: lastSeen[entry.id])
            } catch {
                await board.register(id: entry.id, profile: entry.profile, transport: "unknown", port: entry.endpoint)
                await board.setState(entry.id, "error", reason: error.description)
                logger.error("device not started", metadata: ["device.id": "\(entry.id)", "error": "\(error)"])
            }
        }
        initial = []
        try? await gracefulShutdown()
        shuttingDown = true
        for id in Array(running.keys) { await stop(id) }
    }

    /// How many devices are running.
    var count: Int { running.count }

    func isRunning(_ id: DeviceID) -> Bool { running[id] != nil }

    // MARK: Runtime changes

    /// Starts a runner for `entry` (stopping any runner under the same id first).
    func start(_ entry: VigilConfig.DeviceEntry, profile: DeviceProfile, source: Source,
               lastReadingAt: Timestamp? = nil) async {
        if running[entry.id] != nil { await stop(entry.id, unregister: false) }
        guard !shuttingDown else { return }
        await board.register(id: entry.id, profile: profile.id, transport: profile.transport.rawValue, port: entry.endpoint)
        if let t = lastReadingAt ?? (try? store.stats().lastReadingByDevice[entry.id]) {
            await board.seedLastReading(entry.id, t)
        }
        let runner = makeRunner(entry, profile: profile)
        // Detached: a runner's life is the manager's to decide (stop, restart, shutdown), not
        // that of the control request that happened to start it.
        let task = Task.detached { [logger] in
            do {
                try await runner.run()
            } catch {
                logger.error("device runner stopped with an error", metadata: ["device.id": "\(entry.id)", "error": "\(error)"])
            }
        }
        running[entry.id] = Running(entry: entry, source: source, task: task)
        logger.info("device started", metadata: [
            "device.id": "\(entry.id)", "device.profile": "\(profile.id)", "device.source": "\(source.rawValue)",
        ])
    }

    /// Stops `id`'s runner and waits until it has stopped; the device leaves the board unless
    /// `unregister` is false (a restart).
    func stop(_ id: DeviceID, unregister: Bool = true) async {
        guard let r = running.removeValue(forKey: id) else {
            if unregister { await board.unregister(id) }
            return
        }
        r.task.cancel()
        await r.task.value
        if unregister { await board.unregister(id) }
        logger.info("device stopped", metadata: ["device.id": "\(id)"])
    }

    /// Stops the runner and starts it again with `entry` (a new patient): readings committed
    /// before keep their patient, readings after carry the new one.
    func restart(_ entry: VigilConfig.DeviceEntry, profile: DeviceProfile) async {
        await stop(entry.id, unregister: false)
        await start(entry, profile: profile, source: .registry)
    }

    /// A registry device paired but not yet assigned: on the board, not running.
    func registerUnassigned(_ d: RegisteredDevice) async {
        if running[d.id] != nil { await stop(d.id, unregister: false) }
        await board.register(id: d.id, profile: d.profile, transport: d.address == nil ? "serial" : "ble",
                             port: DeviceRegistryCommands.endpoint(of: d))
        await board.setState(d.id, "unassigned", reason: "paired; assign it to a patient with vigilctl assign \(d.id) <patient>")
    }

    // MARK: Profiles

    /// The profile `name`, from the config's cache or `paths.device_profiles/<name>.yaml`,
    /// checked as vigild's start-up checks it (id matches the file, decoder built in).
    func profile(named name: String) throws(DeviceRegistryError) -> DeviceProfile {
        if let p = profiles[name] { return p }
        guard DeviceRegistryCommands.isProfileName(name) else {
            throw DeviceRegistryError(.invalid, "profile must be a profile id (letters, digits, '-', '_' and '.'), as in vigilctl scan's list")
        }
        let path = profilesDirectory + "/" + name + ".yaml"
        let bytes: [UInt8]
        do {
            bytes = try TextFile.readBytes(path)
        } catch {
            throw DeviceRegistryError(.unknownProfile, "no device profile '\(name)' in \(profilesDirectory) (\(error))")
        }
        let profile: DeviceProfile
        do {
            profile = try YAMLDecoder().decode(DeviceProfile.self, from: bytes, fileName: path)
        } catch {
            throw DeviceRegistryError(.unknownProfile, "device profile '\(name)' does not load: \(error)")
        }
        guard profile.id == name else {
            throw DeviceRegistryError(.unknownProfile, "\(path): id is '\(profile.id)' but the file is named for '\(name)'")
        }
        guard profile.transport == .ble || profile.makeStreamDecoder() != nil else {
            throw DeviceRegistryError(.unknownProfile, "\(path): decoder '\(profile.decoder)' is not built into this vigild")
        }
        profiles[name] = profile
        return profile
    }

    // MARK: Runners

    private func makeRunner(_ entry: VigilConfig.DeviceEntry, profile: DeviceProfile) -> any Service {
        if let ble = profile.ble {
            return BLEDeviceSupervisor(
                device: entry, profile: profile, ble: ble, commitPath: commitPath(entry.id), board: board,
                logger: Logger(label: "vigild.ble"))
        }
        return DevicePipeline(device: entry, profile: profile, store: store, rules: rules, forwarder: forwarder,
                              board: board, logger: Logger(label: "vigild.device"))
    }

    nonisolated func commitPath(_ id: DeviceID) -> CommitPath {
        CommitPath(device: id, store: store, rules: rules, forwarder: forwarder, board: board,
                   logger: Logger(label: "vigild.device"))
    }
}

/// Why a pairing, unpairing or assignment was refused. `code` is stable (vigilctl maps it to
/// its exit status); `message` says what and where, never a patient identifier.
struct DeviceRegistryError: Error, CustomStringConvertible, Sendable {
    enum Code: String, Sendable {
        /// A malformed request: id, port, address, transport, offset, interval, patient.
        case invalid
        /// No such profile, or it does not load.
        case unknownProfile = "unknown_profile"
        /// The profile does not fit the endpoint (a serial profile with an address, …).
        case profileMismatch = "profile_mismatch"
        /// The id is paired with another setup.
        case conflict
        /// The id belongs to a device in vigild.yaml: read-only from vigilctl.
        case configDevice = "config_device"
        /// No device with this id is paired.
        case notPaired = "not_paired"
        /// The Bluetooth radio is not available on this gateway.
        case bluetoothUnavailable = "bluetooth_unavailable"
        /// The BLE device did not answer, or not as its profile says.
        case deviceNotAnswering = "device_not_answering"
        /// The database refused the change.
        case store
    }

    var code: Code
    var message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    var description: String { message }
}
