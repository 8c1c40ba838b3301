import BluetoothLink
import Glibc
import SerialLink
import Synchronization
import Testing
import Uplink
import VigilTestKit
import VitalSigns

/// The real vigild, a scripted BLE peripheral on a Unix seqpacket socket (the transport seam)
/// and a real mosquitto: Bluetooth LE devices from the radio's side to the broker.
@Suite(.serialized) struct BLEEndToEndTests {
    // MARK: Captures (the .att format of firmware-fixtures/ble/)

    /// A heart-rate sensor whose measurement characteristic also indicates: the scripted peer
    /// indicates two measurements (72 and 76 /min), each waiting for vigild's confirmation.
    static let indicatingHeartRate = """
        mtu 64
        service 180D
        char 2A37 notify indicate
        service 180F
        char 2A19 read = 50
        script:
        wait-subscribed 2A37
        delay 200
        indicate 2A37 = 00 48
        indicate 2A37 = 00 4C
        """

    /// A heart-rate strap that sends garbage: an undecodable value (flags announce a uint16 that
    /// is missing), a good one, then a Read Response nobody asked for, which breaks the ATT
    /// rules (Core v5.3 Vol 3 Part F §3.3: a response with no request outstanding).
    static let misbehavingHeartRate = """
        mtu 23
        service 180D
        char 2A37 notify
        script:
        wait-subscribed 2A37
        notify 2A37 = 01
        notify 2A37 = 00 48
        raw = 0B C0 FF EE
        """

    /// A glucose meter with three stored records, fetched with RACP "report stored records".
    /// Glucose Measurement (GLS v1.0.1 §3.106): flags 0x02 (concentration, type and location
    /// present, kg/L), sequence, base time 2026-11-25 08:0n:00, concentration SFLOAT, type-
    /// sample location 0x11. The link drops after the first connection's transfer.
    static func glucoseMeter(records: [(seq: UInt16, minute: UInt8, mgdl: UInt8)], disconnect: Bool) -> String {
        var text = """
            mtu 64
            service 1808
            char 2A18 notify
            char 2A52 write indicate
            char 2A51 read = 00 00

            """
        for r in records {
            // 92 mg/dL = 0.00092 kg/L = SFLOAT mantissa 92, exponent -5 (0xB05C).
            text += "record 2A18 seq \(r.seq) = 02 \(hex(UInt8(r.seq & 0xFF))) \(hex(UInt8(r.seq >> 8))) EA 07 0B 19 08 \(hex(r.minute)) 00 \(hex(r.mgdl)) B0 11\n"
        }
        text += "script:\nwait-subscribed 2A52\ndelay 1500\n"
        if disconnect { text += "disconnect\n" }
        return text
    }

    static func hex(_ b: UInt8) -> String {
        let h = String(b, radix: 16, uppercase: true)
        return b < 16 ? "0" + h : h
    }

    // MARK: Tests

    @Test func anIndicationIsConfirmedOnlyAfterItsReadingIsCommittedAndAKillBeforeTheCommitLosesNothing() async throws {
        let rig = try await BLERig(devices: [.seqpacket(id: "hr-ind", profile: "ble-heart-rate", patient: "p-ble")],
                                   peers: ["hr-ind": Self.indicatingHeartRate], startPeers: false)
        try await rig.run { rig in
            // vigild is up and idle (its peer is not listening yet): hold the database's write
            // lock, as a wedged disk would, so no commit can complete.
            let lock = try SQLiteWriteLock(database: rig.vigild.databasePath, directory: rig.directory)
            defer { lock.release() }
            let peer = try rig.startPeer("hr-ind")
            let first = try await peer.nextConnection(within: .seconds(20))
            // The peripheral has indicated (vigild subscribed, the script sent the first value).
            #expect(await poll(within: .seconds(10)) { await first.subscription(of: BluetoothUUID(0x2A37)) != 0 })
            // While the commit cannot complete, no confirmation goes to the device: give the
            // daemon ample time to (wrongly) confirm.
            let confirmedEarly = await poll(within: .seconds(2)) { await first.confirmationsReceived > 0 }
            #expect(!confirmedEarly, "an indication was confirmed although its reading was not committed")
            // Power cut between receipt and commit.
            rig.vigild.kill9()
            lock.release()
            #expect(try rig.sql("SELECT count(*) FROM readings") == "0")

            // After a restart the device, never having had a confirmation, indicates again.
            try rig.vigild.start()
            let second = try await peer.nextConnection(within: .seconds(20))
            #expect(await poll(within: .seconds(20)) { await second.confirmationsReceived == 2 })
            let arrived = try await rig.subscriber.waitFor(count: 2, timeout: 20) { ArrivedReading($0) != nil }
                .compactMap(ArrivedReading.init)
            #expect(arrived.map(\.value).sorted() == [72, 76])
            #expect(Set(arrived.map(\.id)).count == arrived.count, "no duplicate reading IDs")
            #expect(try rig.sql("SELECT count(*) || '/' || count(DISTINCT reading_id) FROM readings") == "2/2")
            #expect(await first.confirmationsReceived == 0)
        }
    }

    @Test func racpBackfillAfterAReconnectFetchesOnlyNewRecordsAndDuplicatesNothing() async throws {
        let rig = try await BLERig(
            devices: [.seqpacket(id: "glucose", profile: "ble-glucose-meter", patient: "p-ble")],
            peers: ["glucose": Self.glucoseMeter(records: [(1, 1, 92), (2, 2, 101), (3, 3, 110)], disconnect: true)])
        try await rig.run { rig in
            let peer = try #require(rig.peers["glucose"])
            let first = try await peer.nextConnection(within: .seconds(20))
            let arrived = try await rig.subscriber.waitFor(count: 3, timeout: 20) { ArrivedReading($0) != nil }
            #expect(await first.racpRequests == [[0x01, 0x01]], "the first connection asks for all records")
            // The script hangs up; vigild reconnects and asks only for records after #3.
            let second = try await peer.nextConnection(within: .seconds(30))
            #expect(await poll(within: .seconds(20)) { await !second.racpRequests.isEmpty })
            #expect(await second.racpRequests == [[0x01, 0x03, 0x01, 0x04, 0x00]])
            #expect(Set(arrived.compactMap(ArrivedReading.init).map(\.id)).count == 3)
            #expect(try rig.sql("SELECT count(*) || '/' || count(DISTINCT reading_id) || '/' || max(sequence) FROM readings") == "3/3/3")
        }
    }

    @Test func aBLEDeviceOnTheRadioShowsBluetoothUnavailableWhileASerialDeviceStreams() async throws {
        let dir = makeTemporaryDirectory()
        let pty = try PseudoTerminal(linkPath: dir + "/rad8")
        defer { pty.close() }
        let rig = try await BLERig(devices: [
            .radio(id: "bp-radio", profile: "and-ua-651ble", address: "00:09:1F:00:00:01", patient: "p-ble"),
            .serial(id: "rad8", port: dir + "/rad8", patient: "p-serial"),
        ], peers: [:])
        try await rig.run { rig in
            let start = Timestamp(secondsSinceEpoch: wallClock().millisecondsSinceEpoch / 1000 - 60)
            for i in 0..<3 {
                try await pty.write(rad8Line(CivilDateTime(utc: start.adding(seconds: Int64(i))), spo2: 96))
            }
            _ = try await rig.subscriber.waitFor(count: 3, timeout: 20) { ArrivedReading($0)?.device == "rad8" }
            var device: JSONValue?
            _ = await poll(within: .seconds(20)) {
                device = (try? rig.vigild.status())?["status"]?["devices"]?.arrayValue?.first { $0["id"]?.stringValue == "bp-radio" }
                return device?["state"]?.stringValue == "unavailable"
            }
            #expect(device?["state"]?.stringValue == "unavailable")
            #expect(device?["reason"]?.stringValue?.hasPrefix("Bluetooth unavailable: ") == true, "\(String(describing: device))")
            #expect(device?["ble"]?["connected"]?.boolValue == false)
            let (status, text) = try rig.vigild.ctl(["status"])
            #expect(status == 1 && text.contains("Bluetooth unavailable"), "\(text)")
            #expect(text.contains("rad8") && text.contains("open"), "\(text)")
        }
    }

    /// An A&D UA-651BLE (profile `and-ua-651ble`: clock in local time, set through Date Time
    /// 0x2A08, quirk `time_via_date_time`) whose clock reads 2020-01-01. vigild measures the
    /// offset, flags the record stamped by the wrong clock, then sets the clock; a record
    /// stamped after that keeps its device time.
    static func ua651(now: Timestamp) -> String {
        let t = CivilDateTime(utc: now.adding(seconds: 3))
        let stamp = [UInt8(t.year & 0xFF), UInt8(t.year >> 8), UInt8(t.month), UInt8(t.day), UInt8(t.hour), UInt8(t.minute), UInt8(t.second)]
            .map(hex).joined(separator: " ")
        return """
            mtu 64
            service 1810
            char 2A35 indicate
            char 2A08 read write = E4 07 01 01 00 00 00
            service 180F
            char 2A19 read = 3C
            script:
            wait-subscribed 2A35
            indicate 2A35 = 06 82 00 50 00 60 00 E4 07 01 01 00 0A 00 48 00
            indicate 2A35 = 06 84 00 52 00 62 00 \(stamp) 4A 00
            """
    }

    @Test func aWrongDeviceClockIsMeasuredFlaggedAndSet() async throws {
        let now = wallClock()
        let rig = try await BLERig(devices: [.seqpacket(id: "ua651", profile: "and-ua-651ble", patient: "p-ble")],
                                   peers: ["ua651": Self.ua651(now: Timestamp(secondsSinceEpoch: now.millisecondsSinceEpoch / 1000))])
        try await rig.run { rig in
            let peer = try #require(rig.peers["ua651"])
            let connection = try await peer.nextConnection(within: .seconds(20))
            let arrived = try await rig.subscriber.waitFor(count: 8, timeout: 20) { ArrivedReading($0) != nil }
                .compactMap(ArrivedReading.init)
            let systolic = arrived.filter { $0.vital == "systolic_bp" }.sorted { $0.value < $1.value }
            #expect(systolic.map(\.value) == [130, 132])
            // Stamped 2020 by a clock 6 years slow, no correction in the profile: flagged, and
            // stamped with the receive time instead.
            #expect(systolic.first?.flags.contains("device_clock_unreliable") == true)
            #expect(systolic.first.flatMap { Timestamp(iso8601: $0.measuredAt) }.map { abs($0.milliseconds(since: now)) < 600_000 } == true)
            // Stamped after vigild set the clock: the device's time stands.
            #expect(systolic.last?.flags.contains("device_clock_unreliable") == false)
            #expect(systolic.last?.measuredAt == Timestamp(secondsSinceEpoch: now.millisecondsSinceEpoch / 1000 + 3).iso8601)
            // The clock was written through Date Time (7 octets, this year).
            let writes = await connection.writes
            #expect(writes.contains { $0.value.count == 7 && Int($0.value[0]) | Int($0.value[1]) << 8 == CivilDateTime(utc: now).year })
            let ble = try rig.vigild.status()["status"]?["devices"]?.arrayValue?.first?["ble"]
            let offset = try #require(ble?["clock_offset_seconds"]?.doubleValue)
            #expect(offset < -5 * 365 * 86_400, "the offset measured before the write: \(offset)")
            #expect(ble?["battery_percent"]?.int64Value == 60)
        }
    }

    @Test(arguments: [
        ("  - {id: d, profile: ble-blood-pressure, port: /dev/ttyUSB0, address: \"00:11:22:33:44:55\", patient: p}\n", "devices[0].address", "not both"),
        ("  - {id: d, profile: ble-blood-pressure, patient: p}\n", "devices[0]:", "port: (serial) or address:"),
        ("  - {id: d, profile: ble-blood-pressure, address: \"00:11:22:33:44\", patient: p}\n", "devices[0].address", "AA:BB:CC:DD:EE:FF"),
        ("  - {id: d, profile: ble-blood-pressure, address: \"00:11:22:33:44:55\", transport: \"tcp:1\", patient: p}\n", "devices[0].transport", "seqpacket:"),
        ("  - {id: d, profile: masimo-rad8, port: /dev/ttyUSB0, transport: \"seqpacket:/x\", patient: p}\n", "devices[0].transport", "only a Bluetooth device"),
        ("  - {id: d, profile: ble-blood-pressure, port: /dev/ttyUSB0, patient: p}\n", "device d", "give it address:"),
        ("  - {id: d, profile: masimo-rad8, address: \"00:11:22:33:44:55\", patient: p}\n", "device d", "give it port:"),
    ])
    func aBadBLEDeviceEntryIsRefusedNamingTheField(entry: String, field: String, message: String) throws {
        let vigild = try VigildProcess(brokerPort: 1883, devices: [], extraConfig: "devices:\n" + entry)
        defer { vigild.cleanUp() }
        let (status, _) = try VigildProcess.run(
            [VigildProcess.binDirectory + "/vigild", "--config", vigild.configPath, "--check-config"], quiet: true)
        #expect(status == 78)
        let (_, stderr) = try VigildProcess.run(
            ["/bin/sh", "-c", "\"$0\" --config \"$1\" --check-config 2>&1", VigildProcess.binDirectory + "/vigild", vigild.configPath])
        #expect(stderr.contains(field) && stderr.contains(message), "\(stderr)")
    }

    @Test func aDeviceThatLacksItsProfilesServiceIsAnErrorNamingTheService() async throws {
        // A heart-rate strap configured as a weight scale: the wrong profile for this address.
        let rig = try await BLERig(devices: [.seqpacket(id: "not-a-scale", profile: "ble-weight-scale", patient: "p-ble")],
                                   peers: ["not-a-scale": Self.misbehavingHeartRate])
        try await rig.run { rig in
            var device: JSONValue?
            _ = await poll(within: .seconds(20)) {
                device = (try? rig.vigild.status())?["status"]?["devices"]?.arrayValue?.first
                return device?["state"]?.stringValue == "error"
            }
            #expect(device?["state"]?.stringValue == "error")
            #expect(device?["reason"]?.stringValue?.contains("no service 181D") == true, "\(String(describing: device))")
            let (status, text) = try rig.vigild.ctl(["status"])
            #expect(status == 1 && text.contains("not-a-scale is error"), "\(text)")
        }
    }

    @Test func aMisbehavingPeerIsCountedAndVigildKeepsRunning() async throws {
        let rig = try await BLERig(devices: [.seqpacket(id: "hr-bad", profile: "ble-heart-rate", patient: "p-ble")],
                                   peers: ["hr-bad": Self.misbehavingHeartRate])
        try await rig.run { rig in
            let peer = try #require(rig.peers["hr-bad"])
            _ = try await peer.nextConnection(within: .seconds(20))
            // The good value between the two bad ones is stored and forwarded.
            let arrived = try await rig.subscriber.waitFor(count: 1, timeout: 20) { ArrivedReading($0) != nil }
            #expect(arrived.compactMap(ArrivedReading.init).first?.value == 72)
            // The garbage broke the link; vigild counts it and connects again.
            _ = try await peer.nextConnection(within: .seconds(30))
            var ble: JSONValue?
            #expect(await poll(within: .seconds(20)) {
                ble = (try? rig.vigild.status())?["status"]?["devices"]?.arrayValue?.first?["ble"]
                return (ble?["bad_payloads"]?.int64Value ?? 0) >= 2
            }, "\(String(describing: ble))")
            #expect(rig.vigild.isRunning)
            // Each bad value became a counted event upstream, with no value bytes in it.
            let events = try await rig.subscriber.waitFor(count: 1, timeout: 20) { $0.topic.hasSuffix("/events") && $0.text.contains("bad_payload") }
            #expect(events.allSatisfy { !$0.text.contains("C0FFEE") && !$0.text.contains("c0ffee") })
            #expect(!rig.vigild.log().contains("C0 FF EE"))
        }
    }
}

// MARK: - Rig

/// Polls an async condition until it holds or `timeout` passes.
func poll(within timeout: Duration, interval: Duration = .milliseconds(20), _ condition: () async -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while clock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return await condition()
}

/// A scripted peripheral and the connections it has served, in order.
final class PeerHandle: Sendable {
    let peripheral: ScriptedPeripheral
    private let seen = Mutex<[SimulatedPeripheral]>([])
    private let taken = Mutex(0)

    private init(peripheral: ScriptedPeripheral) { self.peripheral = peripheral }

    /// Listens at `path` playing `capture`, and starts recording the connections it serves.
    static func start(path: String, capture: String) throws -> PeerHandle {
        let handle = PeerHandle(peripheral: try ScriptedPeripheral.listen(path: path, capture: ATTCapture.parse(capture)))
        Task { [handle] in
            for await connection in handle.peripheral.connections { handle.record(connection) }
        }
        return handle
    }

    private func record(_ connection: SimulatedPeripheral) { seen.withLock { $0.append(connection) } }

    /// The next connection not yet returned, waiting up to `timeout` for it.
    func nextConnection(within timeout: Duration) async throws -> SimulatedPeripheral {
        let index = taken.withLock { n -> Int in
            defer { n += 1 }
            return n
        }
        _ = await poll(within: timeout) { seen.withLock { $0.count > index } }
        guard let c = seen.withLock({ $0.count > index ? $0[index] : nil }) else {
            throw PeerTimeout(index: index)
        }
        return c
    }

    struct PeerTimeout: Error, CustomStringConvertible {
        var index: Int
        var description: String { "vigild did not open connection #\(index + 1) to the scripted peripheral" }
    }
}

/// A broker, scripted peripherals on seqpacket sockets, and a vigild configured for them.
final class BLERig {
    enum Device {
        case seqpacket(id: String, profile: String, patient: String)
        case radio(id: String, profile: String, address: String, patient: String)
        case serial(id: String, port: String, patient: String)
    }

    let directory: String
    let broker: MosquittoBroker
    let vigild: VigildProcess
    let subscriber: TestSubscriber
    private let captures: [String: String]
    private(set) var peers: [String: PeerHandle] = [:]

    init(devices: [Device], peers captures: [String: String], startPeers: Bool = true) async throws {
        directory = makeTemporaryDirectory(prefix: "vigil-ble")
        self.captures = captures
        broker = try MosquittoBroker(options: .init())
        try broker.start()
        var config = "devices:\n"
        for (n, d) in devices.enumerated() {
            switch d {
            case .seqpacket(let id, let profile, let patient):
                let address = "02:00:00:00:00:" + BLEEndToEndTests.hex(UInt8(n + 1))
                config += "  - {id: \(id), profile: \(profile), address: \"\(address)\", transport: \"seqpacket:\(directory)/\(id).sock\", patient: \(patient)}\n"
            case .radio(let id, let profile, let address, let patient):
                config += "  - {id: \(id), profile: \(profile), address: \"\(address)\", patient: \(patient)}\n"
            case .serial(let id, let port, let patient):
                config += "  - {id: \(id), profile: masimo-rad8, port: \"\(port)\", patient: \(patient)}\n"
            }
        }
        vigild = try VigildProcess(brokerPort: broker.port, devices: [], extraConfig: config)
        subscriber = try await TestSubscriber.start(
            broker: broker, filter: "vigil/v1/#", clientID: "ble-e2e-\(getpid())-\(UInt32.random(in: 0...UInt32.max))", cleanSession: true)
        if startPeers {
            for id in captures.keys { _ = try startPeer(id) }
        }
        try vigild.start()
    }

    @discardableResult
    func startPeer(_ id: String) throws -> PeerHandle {
        let peer = try PeerHandle.start(path: directory + "/" + id + ".sock", capture: captures[id] ?? "")
        peers[id] = peer
        return peer
    }

    /// One value from the daemon's database, through the sqlite3 shell.
    func sql(_ query: String) throws -> String {
        let (_, out) = try VigildProcess.run(["/usr/bin/sqlite3", vigild.databasePath, query])
        var t = Substring(out)
        while t.last == "\n" || t.last == "\r" { t = t.dropLast() }
        return String(t)
    }

    func run(_ body: (BLERig) async throws -> Void) async throws {
        do {
            try await body(self)
        } catch {
            Issue.record("vigild log:\n\(vigild.log())")
            await tearDown()
            throw error
        }
        await tearDown()
    }

    func tearDown() async {
        await subscriber.stop()
        vigild.cleanUp()
        for p in peers.values { p.peripheral.stop() }
        broker.cleanUp()
    }
}

/// Holds SQLite's write lock on a database (BEGIN EXCLUSIVE in a python3 sqlite3 process)
/// until released: every writer then waits and times out, as on a wedged SD card.
final class SQLiteWriteLock {
    private var pid: pid_t = 0
    private let releaseFile: String

    init(database: String, directory: String) throws {
        let held = directory + "/lock-held"
        releaseFile = directory + "/lock-release"
        let script = """
            import os, sqlite3, time
            c = sqlite3.connect(\"\(database)\", timeout=30, isolation_level=None)
            c.execute("BEGIN EXCLUSIVE")
            open(\"\(held)\", "w").close()
            t = time.time()
            while not os.path.exists(\"\(releaseFile)\") and time.time() - t < 120:
                time.sleep(0.02)
            c.execute("ROLLBACK")
            """
        var attrs = posix_spawnattr_t()
        posix_spawnattr_init(&attrs)
        defer { posix_spawnattr_destroy(&attrs) }
        let argv = ["/usr/bin/python3", "-c", script]
        var cargs = argv.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        let rc = posix_spawn(&pid, argv[0], nil, &attrs, &cargs, environ)
        guard rc == 0 else { throw LockError(description: "posix_spawn python3: errno \(rc)") }
        let ok = await_(held)
        guard ok else { throw LockError(description: "the lock holder did not take the lock") }
    }

    private func await_(_ path: String) -> Bool {
        for _ in 0..<1500 {
            if access(path, F_OK) == 0 { return true }
            usleep(10_000)
        }
        return false
    }

    func release() {
        guard pid > 0 else { return }
        let fd = open(releaseFile, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
        if fd >= 0 { close(fd) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        pid = 0
    }

    deinit { release() }

    struct LockError: Error, CustomStringConvertible { var description: String }
}
