import BluetoothLink
import DeviceDecoding
import DeviceProfiles
import Logging
import ReadingStore
import SerialLink
import ServiceLifecycle
import Uplink
import VitalSigns

/// One Bluetooth LE device's life in the gateway: connect, set up the GATT session the profile
/// describes, turn every pushed value into readings on the same commit path as serial devices,
/// and reconnect when the link goes. One per configured BLE device.
///
/// A session, in order (each step's spec clause is on the function that does it):
///
///     bearer (L2CAP CID 4, or the seqpacket seam) → Exchange MTU → discover services,
///     characteristics, descriptors → device clock (read the offset; write Current Time where
///     the profile says so) → start consuming values → CCCD writes → read battery →
///     RACP back-fill from the last committed sequence number → wait for the link to end
///
/// The clock is set before the CCCD writes because some devices (A&D, quirk
/// `time_write_before_data`) send nothing until it is, and indications that follow must be
/// stamped with a known offset.
///
/// An indication is confirmed only after ``CommitPath/commit(_:)`` returned: the device deletes
/// a record once it is confirmed, so a crash before the commit means the device sends it again
/// on the next connection (Core v5.3 Vol 3 Part F §3.4.7.2; BLP/WSP/HTP "stored measurements").
struct BLEDeviceSupervisor: Service {
    let device: VigilConfig.DeviceEntry
    let profile: DeviceProfile
    let ble: BLEParameters
    let commitPath: CommitPath
    let board: DeviceBoard
    let logger: Logger
    /// The ATT transaction timeout (30 s per Core v5.3 Vol 3 Part F §3.3.3).
    var transactionTimeout: Duration = .seconds(30)
    /// Reconnection backoff bounds; the delay doubles per failed attempt, with ±50 % jitter so
    /// several devices lost together (a reset adapter) do not reconnect in lockstep.
    var backoffMin: Duration = .milliseconds(500)
    var backoffMax: Duration = .seconds(60)

    init(device: VigilConfig.DeviceEntry, profile: DeviceProfile, ble: BLEParameters, commitPath: CommitPath,
         board: DeviceBoard, logger: Logger) {
        self.device = device
        self.profile = profile
        self.ble = ble
        self.commitPath = commitPath
        self.board = board
        self.logger = logger
    }

    func run() async throws {
        var delay = backoffMin
        let meter = BadPayloadMeter()
        var lastLogged: String?
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            await board.bleConnecting(device.id)
            let started = realtimeNow()
            // On SIGTERM the session is cancelled: the link closes, and an indication whose
            // reading was not yet committed stays unconfirmed, so the device keeps it.
            let outcome = await cancelWhenGracefulShutdown { await session(meter: meter) }
            let lasted = realtimeNow().milliseconds(since: started)
            // A session that got going resets the backoff; so does a device that hangs up once
            // it has delivered its stored records (that is how it ends every transfer).
            if outcome.wasEstablished, lasted > 30_000 || ble.has(.disconnectsAfterTransfer) { delay = backoffMin }
            if Task.isShuttingDownGracefully || Task.isCancelled { break }
            let wait = Self.jittered(delay)
            let retry = "retrying in \(Self.seconds(wait))"
            switch outcome.error {
            case nil:
                lastLogged = nil
                await board.bleDisconnected(device.id, state: "disconnected", reason: "link closed; \(retry)")
            case let error? where error.code == .unavailable:
                // A kernel without Bluetooth (EAFNOSUPPORT), no adapter, or rfkill: the radio
                // side of the gateway is down, nothing else is.
                let reason = error.reason.hasPrefix("Bluetooth unavailable") ? error.reason : "Bluetooth unavailable: \(error.reason)"
                await board.bleDisconnected(device.id, state: "unavailable", reason: "\(reason); \(retry)")
                if outcome.wasEstablished || delay == backoffMin {
                    logger.error("Bluetooth unavailable", metadata: ["device.id": "\(device.id)", "error": "\(error)"])
                }
            case let error? where error.code == .notFound:
                // The device lacks what its profile needs: a configuration problem a technician
                // must see (wrong profile for this address), not a link that comes and goes.
                await board.bleDisconnected(device.id, state: "error", reason: "\(error.reason); \(retry)")
                if lastLogged != error.reason {
                    logger.error("BLE device does not match its profile", metadata: ["device.id": "\(device.id)", "error": "\(error)"])
                }
                lastLogged = error.reason
            case let error?:
                if error.code == .protocolViolation {
                    // A peer that breaks ATT (random bytes, out-of-place PDUs) is counted like a
                    // bad value; the client has already closed the link.
                    await board.recordBadPayload(device.id)
                    await meter.record(reason: "ATT protocol violation", supervisor: self)
                }
                await board.bleDisconnected(device.id, state: "disconnected", reason: "\(error.reason); \(retry)")
                // A device that sleeps between measurements fails to connect all day: log a
                // failure when it changes, not every attempt.
                let level: Logger.Level = lastLogged == error.reason ? .debug : .notice
                logger.log(level: level, "BLE session ended", metadata: [
                    "device.id": "\(device.id)", "error.code": "\(error.code.rawValue)", "error": "\(error)",
                ])
                lastLogged = error.reason
            }
            // The wait ends early on SIGTERM (graceful shutdown is not cancellation).
            do { try await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) } } catch { break }
            delay = min(delay * 2, backoffMax)
        }
        await board.bleDisconnected(device.id, state: "stopped", reason: nil)
    }

    /// How one session ended: whether it got as far as a GATT session, and the error if any.
    struct SessionOutcome: Sendable {
        var wasEstablished: Bool
        var error: BluetoothError?
    }

    // MARK: - One session

    func session(meter: BadPayloadMeter) async -> SessionOutcome {
        let bearer: any ATTBearer
        do {
            bearer = try await openBearer()
        } catch {
            return SessionOutcome(wasEstablished: false, error: error)
        }
        let client = GATTClient.connect(
            bearer: bearer, configuration: .init(transactionTimeout: transactionTimeout), logger: logger)
        defer { client.close() }
        var established = false
        do {
            let mtu = try await client.exchangeMTU()
            let services = try await client.discover()
            let found = try characteristics(in: services, link: bearer.link)
            established = true
            let clock = await setUpClock(client, services: services)
            await board.bleConnected(device.id, mtu: mtu, bonded: device.isSimulated ? nil : ble.bonding == .required,
                                     clockOffsetSeconds: clock.offsetMilliseconds.map { Double($0) / 1000 })
            let consumer = ValueConsumer(supervisor: self, clock: clock, meter: meter)
            let failure: BluetoothError? = try await withThrowingTaskGroup(of: BluetoothError?.self) { group in
                group.addTask { await consumer.consume(client.values) }
                try await setUpSubscriptions(client, found)
                await readOnce(client, services: services)
                if ble.racp, let racp = found[.recordAccessControlPoint] {
                    try await backfill(client, racp: racp)
                }
                // Now the link runs until the device or the radio ends it.
                let ended = try await group.next() ?? nil
                group.cancelAll()
                return ended
            }
            return SessionOutcome(wasEstablished: true, error: failure)
        } catch let error as BluetoothError {
            return SessionOutcome(wasEstablished: established, error: error)
        } catch {
            return SessionOutcome(wasEstablished: established, error: BluetoothError(
                code: .io, link: bearer.link, operation: "session", reason: "\(error)"))
        }
    }

    /// Connects the bearer: the seqpacket seam when configured, else an L2CAP LE socket on the
    /// ATT fixed channel with the security level the profile's bonding needs (Core v5.3 Vol 3
    /// Part C §10.2: an encrypted link before a bonded device's data).
    func openBearer() async throws(BluetoothError) -> any ATTBearer {
        guard case .ble(let address, let seam) = device.link else {
            throw BluetoothError(code: .invalidUse, link: device.endpoint, operation: "connect", reason: "not a Bluetooth device")
        }
        if let seam { return try SeqPacketBearer.connect(path: seam) }
        return try await L2CAPBearer.connect(
            address: address, addressType: ble.addressType == .public ? .public : .random,
            security: ble.bonding == .required ? .medium : .low)
    }

    /// The profile's subscribed characteristics, found in the discovered database. A missing
    /// required service or characteristic ends the session with `.notFound`, naming it.
    func characteristics(in services: [GATTService], link: String) throws(BluetoothError) -> [GATTCharacteristic: GATTCharacteristicInfo] {
        for wanted in ble.services {
            guard services.contains(where: { Self.sameUUID($0.uuid, wanted) }) else {
                throw BluetoothError(code: .notFound, link: link, operation: "discover",
                                     reason: "the device has no service \(wanted), which profile \(profile.id) needs; is this the right profile?")
            }
        }
        var found: [GATTCharacteristic: GATTCharacteristicInfo] = [:]
        for service in services {
            for c in service.characteristics {
                if let ch = c.characteristic, found[ch] == nil { found[ch] = c }
            }
        }
        for s in ble.subscribe where !s.optional && found[s.characteristic] == nil {
            throw BluetoothError(code: .notFound, link: link, operation: "discover",
                                 reason: "the device has no characteristic \(s.characteristic), which profile \(profile.id) subscribes to")
        }
        return found
    }

    /// CCCD writes (Core v5.3 Vol 3 Part G §4.12.3) for every subscription the device offers.
    func setUpSubscriptions(_ client: GATTClient, _ found: [GATTCharacteristic: GATTCharacteristicInfo]) async throws {
        for s in ble.subscribe {
            guard let info = found[s.characteristic] else { continue }
            try await client.subscribe(info, s.mode == .indicate ? .indications : .notifications)
        }
    }

    /// Reads the profile's `read:` characteristics once (Battery Level). A failure is noted, not
    /// fatal: the measurements matter more than the battery.
    func readOnce(_ client: GATTClient, services: [GATTService]) async {
        var decoder = GATTDeviceDecoder()
        for ch in ble.read {
            guard let info = Self.find(ch, in: services), info.properties.contains(.read) else { continue }
            do {
                let bytes = try await client.read(handle: info.valueHandle)
                if case .batteryLevel(let level) = try decoder.decode(ch, bytes) {
                    await board.setBattery(device.id, level)
                }
            } catch {
                await board.recordError(device.id, "read \(ch): \(error)")
            }
        }
    }

    /// RACP "report stored records" (GLS v1.0.1 §3.2.2 / PLXS v1.0.1 §3.3) from the record
    /// after the last one committed for this device, so a reconnect fetches nothing twice. The
    /// records arrive on the values stream and are committed (and confirmed) by the consumer.
    func backfill(_ client: GATTClient, racp: GATTCharacteristicInfo) async throws {
        let last = try? commitPath.store.lastDeviceSequence(device: device.id)
        let filter: RACPRecordFilter = last.map { .fromSequenceNumber(UInt16(truncatingIfNeeded: $0 &+ 1)) } ?? .all
        let outcome = try await client.reportStoredRecords(filter, racp: racp)
        if outcome.succeeded || outcome.noRecordsFound {
            logger.info("RACP back-fill done", metadata: [
                "device.id": "\(device.id)", "records": "\(outcome.valuesReceived)",
                "from.sequence": "\(last.map { String($0 &+ 1) } ?? "all")",
            ])
        } else {
            await board.recordError(device.id, "RACP report stored records: response code \(outcome.responseCode)")
        }
    }

    // MARK: - Clock

    /// Reads the device clock (Current Time 0x2A2B, or Date Time 0x2A08 with quirk
    /// `time_via_date_time`), records the offset from the gateway clock, and writes the
    /// gateway's time where the profile says `current_time: write` (CTS v1.1 §3.1).
    func setUpClock(_ client: GATTClient, services: [GATTService]) async -> SessionClock {
        var clock = SessionClock()
        guard ble.clock.hasClock, ble.currentTime != .none else { return clock }
        let ch: GATTCharacteristic = ble.has(.timeViaDateTime) ? .dateTime : .currentTime
        guard let info = Self.find(ch, in: services) else { return clock }
        if info.properties.contains(.read) {
            do {
                let bytes = try await client.read(handle: info.valueHandle)
                let now = realtimeNow()
                if let civil = Self.civilTime(ch, bytes), civil.isValid {
                    clock.offsetMilliseconds = civil.timestamp(utcOffsetSeconds: zoneOffsetSeconds).milliseconds(since: now)
                }
            } catch {
                await board.recordError(device.id, "read device clock: \(error)")
            }
        }
        if ble.currentTime == .write, info.properties.contains(.write) {
            let now = realtimeNow()
            let local = CivilDateTime(utc: now.adding(seconds: Int64(zoneOffsetSeconds)))
            do {
                if ch == .dateTime {
                    // Date Time is the first 7 octets of Current Time (GATT Supplement §3.70).
                    try await client.write(handle: info.valueHandle, value: Array(GATTClient.currentTimeBytes(local).prefix(7)))
                } else {
                    try await client.writeCurrentTime(handle: info.valueHandle, localTime: local)
                }
                clock.writtenAt = now
            } catch {
                await board.recordError(device.id, "write device clock: \(error)")
            }
        }
        return clock
    }

    /// Seconds east of UTC the device's civil times are in.
    var zoneOffsetSeconds: Int { ble.clock.zone == .local ? device.clockUTCOffsetSeconds : 0 }

    /// Current Time / Date Time to a civil time: the GATT decoder's, or the first 7 octets
    /// (year uint16, month, day, hours, minutes, seconds) when the decoder has no entry yet.
    static func civilTime(_ ch: GATTCharacteristic, _ bytes: [UInt8]) -> CivilDateTime? {
        var decoder = GATTDeviceDecoder()
        if case .deviceTime(let civil)? = try? decoder.decode(ch, bytes) { return civil }
        guard bytes.count >= 7 else { return nil }
        return CivilDateTime(year: Int(bytes[0]) | Int(bytes[1]) << 8, month: Int(bytes[2]), day: Int(bytes[3]),
                             hour: Int(bytes[4]), minute: Int(bytes[5]), second: Int(bytes[6]))
    }

    // MARK: - Readings

    /// Gives decoded samples their identity and time.
    ///
    /// Time: a device with no clock, or a sample with no time, is stamped with the receive
    /// time. Otherwise the device's time (in its zone) stands if the clock offset measured at
    /// connection is within `max_offset_seconds`; beyond it, it is corrected by the offset when
    /// the profile says `correct: true`, else the reading gets the receive time and the flag
    /// `device_clock_unreliable`. With no offset measured (no readable clock), a time within a
    /// day of the receive time stands, as for serial devices.
    ///
    /// Identity: derived from the device's own stated time and record number, never the
    /// receive time, when the device stamps its values: a record the device sends again after
    /// a reconnect (it was not confirmed) gets the same ID.
    ///
    /// A value with no device time and no record number is identified by its arrival,
    /// `identityArrival`: the receive time made strictly increasing per device by the caller, so
    /// two notifications in the same millisecond stay two readings.
    func readings(from samples: [VitalSample], receivedAt: Timestamp, identityArrival: Timestamp? = nil,
                  clock: SessionClock) -> (readings: [Reading], implausible: Int) {
        var out: [Reading] = []
        var implausible = 0
        let limit = Int64(ble.clock.maxOffsetSeconds) * 1000
        for sample in samples {
            guard profile.isPlausible(sample.quantity.value, for: sample.vital) else {
                implausible += 1
                continue
            }
            var flags = sample.flags
            var measuredAt = receivedAt
            var identityTime = receivedAt
            var arrival: Timestamp? = identityArrival ?? receivedAt
            if ble.clock.hasClock, let civil = sample.deviceTime {
                let stated = civil.timestamp(utcOffsetSeconds: zoneOffsetSeconds)
                identityTime = stated
                arrival = nil
                if !civil.isValid {
                    flags.insert(.deviceClockUnreliable)
                } else if let offset = clock.offset(forStated: stated) {
                    if abs(offset) <= limit {
                        measuredAt = stated
                    } else if ble.clock.correct {
                        measuredAt = stated.adding(milliseconds: -offset)
                    } else {
                        flags.insert(.deviceClockUnreliable)
                    }
                } else if abs(stated.milliseconds(since: receivedAt)) <= 86_400_000 {
                    measuredAt = stated
                } else {
                    flags.insert(.deviceClockUnreliable)
                }
            }
            out.append(Reading(
                id: .derive(device: device.id, vital: sample.vital, measuredAt: identityTime, sequence: sample.sequence,
                            arrival: arrival),
                patient: device.patient, device: device.id, vital: sample.vital, quantity: sample.quantity,
                measuredAt: measuredAt, receivedAt: receivedAt, flags: flags, sequence: sample.sequence))
        }
        return (out, implausible)
    }

    // MARK: - Helpers

    static func find(_ ch: GATTCharacteristic, in services: [GATTService]) -> GATTCharacteristicInfo? {
        for s in services {
            if let c = s.characteristics.first(where: { $0.characteristic == ch }) { return c }
        }
        return nil
    }

    /// Whether a discovered UUID is the profile's `services:` entry (four hex digits or 128-bit).
    static func sameUUID(_ uuid: BluetoothUUID, _ text: String) -> Bool {
        if let parsed = BluetoothUUID(parsing: text) { return parsed == uuid }
        return false
    }

    static func jittered(_ d: Duration) -> Duration {
        d * Double.random(in: 0.5...1.5)
    }

    static func seconds(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        return "\(ms / 1000).\(ms % 1000 / 100) s"
    }
}

/// The device clock as measured at the start of one session.
struct SessionClock: Sendable {
    /// Device time minus gateway time when the session started, in milliseconds; nil when the
    /// device's clock could not be read.
    var offsetMilliseconds: Int64?
    /// When the gateway wrote the device's clock this session.
    var writtenAt: Timestamp?

    /// The offset that applies to a value the device stamped `stated`: none after the gateway
    /// set the clock (allowing 2 s for the write), the measured one before (stored records).
    func offset(forStated stated: Timestamp) -> Int64? {
        if let w = writtenAt, stated >= w.adding(seconds: -2) { return 0 }
        return offsetMilliseconds
    }
}

/// Consumes one session's values in arrival order: decode → readings → commit → confirm.
/// Single consumer of ``GATTClient/values``; the decoder's multi-packet state lives here.
actor ValueConsumer {
    let supervisor: BLEDeviceSupervisor
    let clock: SessionClock
    let meter: BadPayloadMeter
    private var decoder = GATTDeviceDecoder()
    /// The last arrival time used for identity, to keep them strictly increasing.
    private var lastIdentityArrival: Timestamp?
    /// When the last PLX continuous value was stored (quirk `throttle_continuous`).
    private var lastContinuous: Timestamp?

    init(supervisor: BLEDeviceSupervisor, clock: SessionClock, meter: BadPayloadMeter) {
        self.supervisor = supervisor
        self.clock = clock
        self.meter = meter
    }

    /// Returns when the link ends: nil after a normal close, the error otherwise.
    func consume(_ values: AsyncThrowingStream<GATTValue, any Error>) async -> BluetoothError? {
        let s = supervisor
        do {
            for try await value in values {
                await handle(value)
            }
            _ = decoder.reset()
            return nil
        } catch let error as BluetoothError {
            _ = decoder.reset()
            return error
        } catch {
            return BluetoothError(code: .io, link: s.device.endpoint, operation: "receive", reason: "\(error)")
        }
    }

    private func handle(_ value: GATTValue) async {
        let s = supervisor
        guard let ch = value.characteristic else {
            await rejected("a value from an undiscovered handle", value)
            return
        }
        let event: GATTEvent
        do {
            event = try decoder.decode(ch, value.bytes)
        } catch {
            await rejected(error.description, value)
            return
        }
        switch event {
        case .measurement(let samples):
            // Quirk throttle_continuous: at most one PLX continuous value a second is stored.
            if s.ble.has(.throttleContinuous), ch == .plxContinuousMeasurement {
                if let last = lastContinuous, value.receivedAt.milliseconds(since: last) < 1000, value.receivedAt >= last {
                    await s.board.recordChunk(s.device.id, bytes: value.bytes.count, readings: 0, rejected: 0, implausible: 0, lastReadingAt: nil)
                    return
                }
                lastContinuous = value.receivedAt
            }
            var arrival = value.receivedAt
            if let last = lastIdentityArrival, arrival <= last { arrival = last.adding(milliseconds: 1) }
            lastIdentityArrival = arrival
            let (readings, implausible) = s.readings(
                from: samples, receivedAt: value.receivedAt, identityArrival: arrival, clock: clock)
            // COMMIT first; only a durable reading may be acknowledged to the device.
            guard await s.commitPath.commit(readings) else { return }
            confirm(value)
            await s.board.recordChunk(
                s.device.id, bytes: value.bytes.count, readings: readings.count, rejected: 0, implausible: implausible,
                lastReadingAt: readings.isEmpty ? nil : value.receivedAt)
        case .intermediate, .incomplete:
            confirm(value)
            await s.board.recordChunk(s.device.id, bytes: value.bytes.count, readings: 0, rejected: 0, implausible: 0, lastReadingAt: nil)
        case .batteryLevel(let level):
            confirm(value)
            await s.board.setBattery(s.device.id, level)
        case .racp:
            // The GATT client answers its own RACP procedure; a stray response is not a reading.
            confirm(value)
        case .deviceTime(let time):
            confirm(value)
            // nil: the device says its clock is not set (a date "not known").
            if let civil = time, civil.isValid {
                let offset = civil.timestamp(utcOffsetSeconds: s.zoneOffsetSeconds).milliseconds(since: value.receivedAt)
                await s.board.setClockOffset(s.device.id, Double(offset) / 1000)
            }
        }
    }

    /// A value that could not be decoded: counted, logged and reported upstream without its
    /// bytes (``BadPayloadMeter``), and confirmed if it was indicated — it can never be stored,
    /// and an unconfirmed indication would block every later one.
    private func rejected(_ reason: String, _ value: GATTValue) async {
        let s = supervisor
        await s.board.recordBadPayload(s.device.id)
        await s.board.recordError(s.device.id, "bad value: \(reason)")
        confirm(value)
        await meter.record(reason: reason, supervisor: s)
    }

    private func confirm(_ value: GATTValue) {
        guard let indication = value.indication else { return }
        do {
            try indication.confirm()
        } catch {
            // The link is gone: the device indicates the value again after reconnecting, and
            // its reading ID is the same, so the store keeps one row.
            supervisor.logger.debug("confirmation not sent", metadata: ["device.id": "\(supervisor.device.id)", "error": "\(error)"])
        }
    }
}

/// Counts a device's bad values and ATT violations across its sessions, and turns them into
/// at most one log line and one `bad_payload` gateway event a minute (with the count since the
/// last), so a device spewing garbage cannot flood the journal or the uplink. No value bytes
/// are ever logged: they are patient data.
actor BadPayloadMeter {
    private var log = RateLimitedLog(interval: 60_000)
    private var unreported = 0

    func record(reason: String, supervisor s: BLEDeviceSupervisor) async {
        unreported += 1
        let now = realtimeNow()
        guard log.shouldLog(at: now) != nil else { return }
        let count = unreported
        unreported = 0
        s.logger.warning("BLE value rejected", metadata: [
            "device.id": "\(s.device.id)", "count": "\(count)", "reason": "\(reason)",
        ])
        await s.commitPath.commit(events: [GatewayEvent(
            kind: "bad_payload", at: now, count: Int64(count),
            detail: ["device": s.device.id.rawValue, "transport": "ble", "reason": reason])])
    }
}

extension VigilConfig.DeviceEntry {
    /// Whether the device is reached over the seqpacket seam rather than the radio.
    var isSimulated: Bool {
        if case .ble(_, _?) = link { return true }
        return false
    }
}
