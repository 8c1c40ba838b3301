import BluetoothLink
import DeviceProfiles
import Logging
import ReadingStore
import SerialLink
import StrictYAML
import VitalSigns

/// The control commands that change which devices the gateway reads and for whom: `pair`,
/// `unpair` and `assign` (issue 7). All `.admin`; `pair` and `assign` name a patient, so the
/// dispatcher audits them (`showsPatientData`).
///
/// Every change is durable in the registry (``ReadingStore/pairDevice(_:)`` and friends) before
/// the device's runner is started, stopped or restarted, and an unchanged request changes
/// nothing and emits no event, so `vigilctl setup` can repeat itself safely. Changes are
/// serialized: one pairing, unpairing or assignment at a time.
struct DeviceRegistryCommands: Sendable {
    let manager: DeviceManager
    let store: ReadingStore
    let gate = OperationGate()
    let logger: Logger
    /// How long a BLE pairing may take to prove the peer answers (connect, MTU, discovery).
    var probeTimeout: Duration = .seconds(15)

    var commands: [ControlCommand] {
        let me = self
        return [
            ControlCommand("pair", access: .admin, showsPatientData: true) { request, _ in await me.reply { () async throws(DeviceRegistryError) in try await me.pair(request) } },
            ControlCommand("unpair", access: .admin) { request, _ in await me.reply { () async throws(DeviceRegistryError) in try await me.unpair(request) } },
            ControlCommand("assign", access: .admin, showsPatientData: true) { request, _ in await me.reply { () async throws(DeviceRegistryError) in try await me.assign(request) } },
            scanCommand,
        ]
    }

    private func reply(_ body: @Sendable () async throws(DeviceRegistryError) -> JSONValue) async -> JSONValue {
        await gate.acquire()
        let result: JSONValue
        do {
            result = try await body()
        } catch {
            result = .object([("ok", false), ("error", .string(error.message)), ("code", .string(error.code.rawValue))])
        }
        await gate.release()
        return result
    }

    // MARK: pair

    /// `{"command":"pair","id":…,"profile":…,"port":…|"address":…[,"transport":"seqpacket:/p"]
    /// [,"patient":…][,"clock_utc_offset":"+01:00"][,"download_interval_seconds":300]}`
    func pair(_ request: JSONValue) async throws(DeviceRegistryError) -> JSONValue {
        let now = realtimeNow()
        let fields = try Self.fields(request, allowed: ["id", "profile", "port", "address", "transport", "patient",
                                                        "clock_utc_offset", "download_interval_seconds"])
        guard let idText = fields["id"], let profileName = fields["profile"] else {
            throw DeviceRegistryError(.invalid, "pair needs an id and a profile")
        }
        let id = DeviceID(idText)
        if manager.configDeviceIDs.contains(id) {
            throw Self.configDeviceError(id)
        }
        // The config decoder's own checks, so a paired device obeys exactly the rules of a
        // config entry (errors name the field, never the value).
        let patient = fields["patient"].map { PatientID($0) }
        let entry = try Self.decodeEntry(fields, patient: patient ?? PatientID("unassigned"))
        let profile = try await manager.profile(named: profileName)
        try Self.check(entry, fits: profile)
        var device = RegisteredDevice(
            id: id, profile: profile.id, port: entry.port, pairedAt: now, patient: patient, assignedAt: patient == nil ? nil : now)
        if case .ble(let address, let seam) = entry.link {
            device.address = address
            device.transport = seam.map { "seqpacket:" + $0 }
        }
        device.clockUTCOffsetSeconds = entry.clockUTCOffsetSeconds
        device.downloadIntervalSeconds = entry.downloadIntervalSeconds

        let existing = try Self.stored(store, id)
        if let existing {
            guard existing.sameSetup(as: device) else { throw Self.conflictError(existing) }
            // An unchanged request is answered from the registry, without touching the device.
            guard let patient, existing.patient != patient else {
                return Self.success(existing, changed: false, assigned: false)
            }
            // Paired so already, for another patient (or none): an assignment.
            return try await reassign(existing, to: patient)
        } else if let ble = profile.ble {
            // A new Bluetooth device must answer its profile's service before it is saved.
            try await probe(entry, profile: profile, ble: ble)
        }

        let outcome: RegistryOutcome
        let reassigned: Bool
        do {
            (outcome, reassigned) = try await store.pairDevice(device)
        } catch {
            throw DeviceRegistryError(.store, "the registry could not be written: \(error)")
        }
        if case .conflict(let existing) = outcome { throw Self.conflictError(existing) }
        var events: [GatewayEvent] = []
        if outcome == .changed {
            events.append(GatewayEvent(kind: "device_added", at: now, detail: [
                "device": id.rawValue, "profile": profile.id, "transport": profile.transport.rawValue,
            ]))
        }
        if reassigned, let patient {
            events.append(GatewayEvent(kind: "device_assigned", at: now, detail: ["device": id.rawValue, "patient": patient.rawValue]))
        }
        await commit(events)
        let stored = (try? Self.stored(store, id)) ?? nil ?? device
        if let patient {
            var running = entry
            running.patient = patient
            await manager.restart(running, profile: profile)
        } else {
            await manager.registerUnassigned(stored)
        }
        logger.notice("device paired", metadata: [
            "device.id": "\(id)", "device.profile": "\(profile.id)", "assigned": "\(patient != nil)",
        ])
        return Self.success(stored, changed: outcome == .changed || reassigned, assigned: reassigned)
    }

    /// Connects once, as the supervisor would, and checks the profile's services are there.
    /// Over the radio the connection uses the profile's security level, which makes the kernel
    /// pair (and bond) a device that requires it (Core v5.3 Vol 3 Part C §10.2).
    func probe(_ entry: VigilConfig.DeviceEntry, profile: DeviceProfile, ble: BLEParameters) async throws(DeviceRegistryError) {
        let supervisor = BLEDeviceSupervisor(
            device: entry, profile: profile, ble: ble, commitPath: manager.commitPath(entry.id),
            board: manager.board, logger: logger)
        let timeout = probeTimeout
        let result: BluetoothError? = await withTaskGroup(of: BluetoothError??.self) { group in
            group.addTask {
                do {
                    let bearer = try await supervisor.openBearer()
                    let client = GATTClient.connect(bearer: bearer, configuration: .init(transactionTimeout: .seconds(5)))
                    defer { client.close() }
                    _ = try await client.exchangeMTU()
                    let services = try await client.discover()
                    _ = try supervisor.characteristics(in: services, link: bearer.link)
                    return .some(nil)
                } catch let error as BluetoothError {
                    return .some(error)
                } catch {
                    return .some(BluetoothError(code: .io, link: entry.endpoint, operation: "pair", reason: "\(error)"))
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return .none
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? BluetoothError(code: .timeout, link: entry.endpoint, operation: "pair",
                                           reason: "no answer within \(timeout)")
        }
        guard let error = result else { return }
        if error.code == .unavailable {
            throw DeviceRegistryError(
                .bluetoothUnavailable,
                "Bluetooth unavailable on this gateway (\(error.reason)); the device was not paired. Check the adapter (vigilctl diagnose), or pair a simulated device with transport seqpacket:/path")
        }
        throw DeviceRegistryError(
            .deviceNotAnswering,
            "the device did not answer as profile \(profile.id) expects (\(error.reason)); the device was not paired. Is it switched on, in range and in pairing mode, and is this its profile?")
    }

    // MARK: unpair

    /// `{"command":"unpair","id":…}`: stops the device; its stored readings stay.
    func unpair(_ request: JSONValue) async throws(DeviceRegistryError) -> JSONValue {
        let fields = try Self.fields(request, allowed: ["id"])
        guard let idText = fields["id"] else { throw DeviceRegistryError(.invalid, "unpair needs an id") }
        let id = DeviceID(idText)
        if manager.configDeviceIDs.contains(id) { throw Self.configDeviceError(id) }
        let now = realtimeNow()
        // Stop first, so nothing is read for a device no longer paired; a commit under way ends.
        let wasPaired = ((try? Self.stored(store, id)) ?? nil) != nil
        guard wasPaired else { throw Self.notPairedError(id) }
        await manager.stop(id)
        let outcome: RegistryOutcome
        do {
            outcome = try await store.unpairDevice(id, at: now)
        } catch {
            throw DeviceRegistryError(.store, "the registry could not be written: \(error)")
        }
        guard outcome == .changed else { throw Self.notPairedError(id) }
        await commit([GatewayEvent(kind: "device_removed", at: now, detail: ["device": id.rawValue])])
        logger.notice("device unpaired", metadata: ["device.id": "\(id)"])
        return .object([("ok", true), ("changed", true), ("device", .object([("id", .string(id.rawValue))]))])
    }

    // MARK: assign

    /// `{"command":"assign","id":…,"patient":…}`: new readings carry the new patient; readings
    /// already stored keep the patient they were taken for.
    func assign(_ request: JSONValue) async throws(DeviceRegistryError) -> JSONValue {
        let fields = try Self.fields(request, allowed: ["id", "patient"])
        guard let idText = fields["id"], let patientText = fields["patient"] else {
            throw DeviceRegistryError(.invalid, "assign needs an id and a patient")
        }
        let id = DeviceID(idText)
        if manager.configDeviceIDs.contains(id) { throw Self.configDeviceError(id) }
        guard !patientText.isEmpty, patientText.utf8.count <= 128 else {
            throw DeviceRegistryError(.invalid, "patient must be 1–128 characters")
        }
        let patient = PatientID(patientText)
        guard let existing = try Self.stored(store, id) else { throw Self.notPairedError(id) }
        if existing.patient == patient { return Self.success(existing, changed: false, assigned: false) }
        return try await reassign(existing, to: patient)
    }

    /// Assigns the paired device `existing` to `patient` (a different one) and restarts it.
    func reassign(_ existing: RegisteredDevice, to patient: PatientID) async throws(DeviceRegistryError) -> JSONValue {
        let id = existing.id
        let entry = try Self.entry(for: existing, patient: patient)
        let profile = try await manager.profile(named: existing.profile)
        let now = realtimeNow()
        // The old runner stops (its last commit completes under the old patient) before the
        // assignment changes, so no reading straddles the two.
        await manager.stop(id, unregister: false)
        let outcome: RegistryOutcome
        do {
            outcome = try await store.assignDevice(id, to: patient, at: now)
        } catch {
            throw DeviceRegistryError(.store, "the registry could not be written: \(error)")
        }
        guard outcome != .notPaired else { throw Self.notPairedError(id) }
        if outcome == .changed {
            await commit([GatewayEvent(kind: "device_assigned", at: now, detail: ["device": id.rawValue, "patient": patient.rawValue])])
        }
        await manager.start(entry, profile: profile, source: .registry)
        logger.notice("device assigned", metadata: ["device.id": "\(id)"])
        let stored = (try? Self.stored(store, id)) ?? nil ?? existing
        return Self.success(stored, changed: outcome == .changed, assigned: outcome == .changed)
    }

    // MARK: Helpers

    private func commit(_ events: [GatewayEvent]) async {
        guard !events.isEmpty else { return }
        await manager.commitPath(DeviceID("registry")).commit(events: events)
    }

    static func stored(_ store: ReadingStore, _ id: DeviceID) throws(DeviceRegistryError) -> RegisteredDevice? {
        do {
            return try store.pairedDevice(id)
        } catch {
            throw DeviceRegistryError(.store, "the registry could not be read: \(error)")
        }
    }

    static func configDeviceError(_ id: DeviceID) -> DeviceRegistryError {
        DeviceRegistryError(
            .configDevice,
            "device '\(id)' is in vigild.yaml (installer-provisioned) and is read-only from vigilctl; change it in the config file and restart vigild")
    }

    static func conflictError(_ existing: RegisteredDevice) -> DeviceRegistryError {
        DeviceRegistryError(
            .conflict,
            "device id '\(existing.id)' is already paired as \(existing.profile) on \(endpoint(of: existing)); unpair it first (vigilctl unpair \(existing.id)) or choose another id")
    }

    static func notPairedError(_ id: DeviceID) -> DeviceRegistryError {
        DeviceRegistryError(.notPaired, "no device '\(id)' is paired (vigilctl devices lists them)")
    }

    static func success(_ d: RegisteredDevice, changed: Bool, assigned: Bool) -> JSONValue {
        .object([("ok", true), ("changed", .bool(changed)), ("assigned", .bool(assigned)), ("device", json(d))])
    }

    static func json(_ d: RegisteredDevice) -> JSONValue {
        .object([
            ("id", .string(d.id.rawValue)),
            ("profile", .string(d.profile)),
            ("port", d.port.map { .string($0) } ?? .null),
            ("address", d.address.map { .string($0) } ?? .null),
            ("transport", d.transport.map { .string($0) } ?? .null),
            ("clock_utc_offset", .string(offsetText(d.clockUTCOffsetSeconds))),
            ("download_interval_seconds", .int(d.downloadIntervalSeconds)),
            ("patient", d.patient.map { .string($0.rawValue) } ?? .null),
            ("paired_at", .string(d.pairedAt.iso8601)),
            ("assigned_at", d.assignedAt.map { .string($0.iso8601) } ?? .null),
        ])
    }

    /// The request's string members; anything else (unknown keys, non-strings) is refused.
    static func fields(_ request: JSONValue, allowed: Set<String>) throws(DeviceRegistryError) -> [String: String] {
        guard case .object(let members) = request else { throw DeviceRegistryError(.invalid, "the request must be an object") }
        var out: [String: String] = [:]
        for (key, value) in members where key != "command" {
            guard allowed.contains(key) else {
                throw DeviceRegistryError(.invalid, "unknown field '\(key.prefix(40))'; expected \(allowed.sorted().joined(separator: ", "))")
            }
            switch value {
            case .string(let s): out[key] = s
            case .int(let n): out[key] = String(n)
            case .null: continue
            default: throw DeviceRegistryError(.invalid, "\(key) must be a string")
            }
        }
        return out
    }

    /// Builds a config device entry through the config decoder, so a paired device passes
    /// exactly the checks of a `devices:` entry in vigild.yaml.
    static func decodeEntry(_ fields: [String: String], patient: PatientID) throws(DeviceRegistryError) -> VigilConfig.DeviceEntry {
        let origin = Mark(line: 1, column: 1)
        func scalar(_ s: String, _ style: YAMLNode.ScalarStyle = .doubleQuoted) -> YAMLNode { YAMLNode(.scalar(s, style: style), mark: origin) }
        var pairs: [YAMLNode.Pair] = []
        for key in ["id", "profile", "port", "address", "transport", "clock_utc_offset"] {
            if let v = fields[key] { pairs.append(.init(key: key, keyMark: origin, value: scalar(v))) }
        }
        pairs.append(.init(key: "patient", keyMark: origin, value: scalar(patient.rawValue)))
        if let v = fields["download_interval_seconds"] {
            guard Int64(v) != nil else { throw DeviceRegistryError(.invalid, "download_interval_seconds must be a whole number of seconds") }
            pairs.append(.init(key: "download_interval_seconds", keyMark: origin, value: scalar(v, .plain)))
        }
        do {
            return try YAMLDecoder().decode(VigilConfig.DeviceEntry.self, from: YAMLNode(.mapping(pairs), mark: origin), fileName: "pair")
        } catch {
            // "pair:1:1: port: must be …" → "port: must be …"
            let text = error.path.isEmpty ? error.message : "\(error.path): \(error.message)"
            throw DeviceRegistryError(.invalid, text)
        }
    }

    /// The running entry for a registry device assigned to `patient`.
    static func entry(for d: RegisteredDevice, patient: PatientID) throws(DeviceRegistryError) -> VigilConfig.DeviceEntry {
        var fields: [String: String] = [
            "id": d.id.rawValue, "profile": d.profile, "clock_utc_offset": offsetText(d.clockUTCOffsetSeconds),
            "download_interval_seconds": String(d.downloadIntervalSeconds),
        ]
        fields["port"] = d.port
        fields["address"] = d.address
        fields["transport"] = d.transport
        return try decodeEntry(fields, patient: patient)
    }

    /// The profile must fit the endpoint, as vigild's start-up requires of config devices.
    static func check(_ entry: VigilConfig.DeviceEntry, fits profile: DeviceProfile) throws(DeviceRegistryError) {
        switch (profile.transport, entry.link) {
        case (.serial, .serial(let path)):
            if path == VigilConfig.DeviceEntry.profileUSBPort, profile.usbAddress == nil {
                throw DeviceRegistryError(.profileMismatch, "port usb, but profile '\(profile.id)' names no USB adapter (match: usb:); give the port's path or usb:VVVV:PPPP")
            }
        case (.ble, .ble): break
        case (.serial, .ble):
            throw DeviceRegistryError(.profileMismatch, "profile '\(profile.id)' is a serial device; give it a port, not an address")
        case (.ble, .serial):
            throw DeviceRegistryError(.profileMismatch, "profile '\(profile.id)' is a Bluetooth LE device; give it an address, not a port")
        }
    }

    static func isProfileName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && !name.hasPrefix(".")
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") }
    }

    /// `+01:00`, `-05:30`, `+00:00`.
    static func offsetText(_ seconds: Int) -> String {
        let sign = seconds < 0 ? "-" : "+"
        let m = abs(seconds) / 60
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(sign)\(two(m / 60)):\(two(m % 60))"
    }

    /// What status shows as the port: the tty path, or the address (with the seam's socket).
    static func endpoint(of d: RegisteredDevice) -> String {
        if let port = d.port { return port }
        let address = d.address ?? "?"
        if let t = d.transport, t.hasPrefix("seqpacket:") { return "\(address) via \(t)" }
        return address
    }
}

/// One registry change at a time: a FIFO lock for async code.
actor OperationGate {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        guard busy else {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty {
            busy = false
        } else {
            waiters.removeFirst().resume()
        }
    }
}
