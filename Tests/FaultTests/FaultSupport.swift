import BluetoothLink
import Glibc
import SerialLink
import Synchronization
import Testing
import Uplink
import VigilTestKit
import VitalSigns

/// How the fault suite runs: `VIGIL_FAULTS=short` (CI, ≤ 3 min), `long` (docs/faults.md), or
/// unset (the suite is skipped, so a plain `swift test` stays fast). `scripts/faults` sets it.
enum FaultMode {
    static let value: String? = getenv("VIGIL_FAULTS").map { String(cString: $0) }
    static var enabled: Bool { value == "short" || value == "long" }
    static var long: Bool { value == "long" }

    /// An integer knob from the environment (e.g. `VIGIL_FAULTS_KILLS`), else the form's default.
    static func knob(_ name: String, short: Int, long: Int) -> Int {
        if let v = getenv(name), let n = Int(String(cString: v)), n >= 0 { return n }
        return Self.long ? long : short
    }

    /// The seed of every random choice (kill points), printed so a run can be replayed.
    static let seed: UInt64 = {
        if let v = getenv("VIGIL_FAULTS_SEED"), let n = UInt64(String(cString: v)) { return n }
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return UInt64(t.tv_nsec) ^ (UInt64(t.tv_sec) << 20)
    }()
}

/// The figures every fault scenario prints (one `FAULT` line that scripts/faults collects).
struct FaultReport {
    var name: String
    /// Readings the device side produced (lines × 3 for the oximeter; measurements × 4 for BLE BP).
    var offered = 0
    /// Distinct reading IDs the database holds at the end.
    var committed = 0
    /// Distinct reading IDs that arrived at the broker.
    var delivered = 0
    /// Readings evicted by the outbox capacity (status `store.evicted_total`).
    var evicted: Int64 = 0
    /// Messages that arrived more than once (same reading ID).
    var duplicated = 0
    /// Committed readings that never arrived (must be 0).
    var committedNotDelivered = 0
    /// Serial: bytes of lines the device wrote whose readings were never committed.
    var bytesLost: Int? = nil
    var extra: [String] = []

    func print() {
        var line = "FAULT \(name): offered=\(offered) committed=\(committed) delivered=\(delivered) evicted=\(evicted) "
            + "duplicated=\(duplicated) committed_not_delivered=\(committedNotDelivered)"
        if let bytesLost { line += " bytes_lost=\(bytesLost)" }
        for e in extra { line += " " + e }
        Swift.print(line)
    }
}

/// One Masimo Rad-8 "ASCII 1" line (firmware-fixtures/README.md), as the device sends it.
func rad8Line(_ t: CivilDateTime, spo2: Int, bpm: Int = 72) -> [UInt8] {
    func pad(_ v: Int, _ w: Int) -> String {
        let s = String(v)
        return String(repeating: "0", count: max(0, w - s.count)) + s
    }
    let date = "\(pad(t.month, 2))/\(pad(t.day, 2))/\(pad(t.year % 100, 2)) \(pad(t.hour, 2)):\(pad(t.minute, 2)):\(pad(t.second, 2))"
    let line = "\(date) SN=0000012345 SPO2=\(pad(spo2, 3))% BPM=\(pad(bpm, 3)) PI=03.10% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
    return Array(line.utf8)
}

func wallClock() -> Timestamp {
    var t = timespec()
    clock_gettime(CLOCK_REALTIME, &t)
    return Timestamp(millisecondsSinceEpoch: Int64(t.tv_sec) * 1000 + Int64(t.tv_nsec) / 1_000_000)
}

@Sendable func isReading(_ m: ReceivedMessage) -> Bool { m.topic.hasSuffix("/readings") }
@Sendable func isEscalation(_ m: ReceivedMessage) -> Bool { m.topic.hasSuffix("/escalations") }

/// A reading message's ID and device time.
struct Arrived: Hashable {
    var id: String
    var vital: String
    var measuredAt: String
    init?(_ message: ReceivedMessage) {
        guard isReading(message), let json = try? JSONValue.parse(message.payload), let id = json["id"]?.stringValue,
              let vital = json["vital"]?.stringValue, let at = json["measured_at"]?.stringValue else { return nil }
        self.id = id
        self.vital = vital
        self.measuredAt = at
    }
}

/// Runs the sqlite3 shell read-only on `database` (a second, independent reader); lines out.
func sqlLines(_ database: String, _ query: String) -> [String] {
    let out = (try? VigildProcess.run(["/usr/bin/sqlite3", "-readonly", database, query], quiet: true))?.output ?? ""
    return out.split(separator: "\n").map(String.init)
}

/// The figures shared by every scenario: committed from the database, delivered and
/// duplicated from the subscriber, evicted from status.
func measure(_ report: inout FaultReport, database: String, subscriber: TestSubscriber, vigild: VigildProcess?) -> Set<String> {
    let committed = Set(sqlLines(database, "SELECT reading_id FROM readings;"))
    let messages = subscriber.messages.compactMap(Arrived.init)
    let delivered = Set(messages.map(\.id))
    report.committed = committed.count
    report.delivered = delivered.count
    report.duplicated = messages.count - delivered.count
    report.committedNotDelivered = committed.subtracting(delivered).count
    if let vigild, let s = try? vigild.status() {
        report.evicted = s["status"]?["store"]?["evicted_total"]?.int64Value ?? 0
    }
    return committed
}

/// A broker, a pseudo-terminal oximeter and vigild, torn down at the end.
final class SerialRig {
    let broker: MosquittoBroker
    private(set) var device: PseudoTerminal
    let devicePath: String
    let vigild: VigildProcess
    let subscriber: TestSubscriber
    /// Device times start here, one second per line, so every line is a distinct reading.
    let start: Timestamp
    private(set) var written: [[UInt8]] = []

    init(persistentBroker: Bool = false, carePlans: [String: String] = [:], extraConfig: String = "",
         brokerOptions: MosquittoBroker.Options? = nil, configure: (VigildProcess) throws -> Void = { _ in }) async throws {
        broker = try MosquittoBroker(options: brokerOptions ?? .init(persistence: persistentBroker))
        try broker.start()
        let dir = makeTemporaryDirectory(prefix: "vigil-faults")
        devicePath = dir + "/rad8"
        device = try PseudoTerminal(linkPath: dir + "/rad8")
        vigild = try VigildProcess(brokerPort: broker.port,
                                   devices: [.init(id: "rad8-fault", port: dir + "/rad8", patient: "patient-fault")],
                                   carePlans: carePlans, extraConfig: extraConfig)
        try configure(vigild)
        subscriber = try await TestSubscriber.start(
            broker: broker, filter: "vigil/v1/#", clientID: "faults-\(getpid())-\(UInt32.random(in: 0...UInt32.max))",
            cleanSession: !(brokerOptions?.persistence ?? persistentBroker))
        start = Timestamp(secondsSinceEpoch: wallClock().millisecondsSinceEpoch / 1000 - 7200)
    }

    /// Writes the next line (device time start + index seconds) and records it.
    func writeLine(spo2: Int = 97) async throws {
        let bytes = rad8Line(CivilDateTime(utc: start.adding(seconds: Int64(written.count))), spo2: spo2)
        written.append(bytes)
        try await device.write(bytes)
    }

    var linesWritten: Int { written.count }

    /// Unplugs the device (the pty closes: vigild sees a hang-up) and plugs in a fresh one
    /// at the same path after `down`.
    func replug(after down: Duration, whileUnplugged: () async -> Void = {}) async throws {
        device.close()
        await whileUnplugged()
        try await Task.sleep(for: down)
        device = try PseudoTerminal(linkPath: devicePath)
    }

    /// Skips `count` device seconds (lines the device measured while unplugged: never sent).
    func skipLines(_ count: Int) {
        for _ in 0..<count { written.append([]) }
    }

    /// Writes the next line if the tty queue takes all of it at once; false (nothing
    /// written) when it is full.
    func tryWriteLine(spo2: Int = 97) throws -> Bool {
        let bytes = rad8Line(CivilDateTime(utc: start.adding(seconds: Int64(written.count))), spo2: spo2)
        var offset = 0
        while offset < bytes.count {
            let n = try device.writeSome(bytes[offset...])
            if n == 0 {
                if offset == 0 { return false }
                usleep(1000)  // a line is never left half-written: the rest follows at once
                continue
            }
            offset += n
        }
        written.append(bytes)
        return true
    }

    /// Bytes of lines none of whose readings reached the database (the SpO2 reading's device
    /// time identifies the line).
    func bytesLost() -> (lines: Int, bytes: Int) {
        let times = Set(sqlLines(vigild.databasePath, "SELECT DISTINCT measured_at FROM readings WHERE vital = 'spo2';")
            .compactMap { Int64($0) })
        var lines = 0, bytes = 0
        for (i, l) in written.enumerated() where !l.isEmpty && !times.contains(start.adding(seconds: Int64(i)).millisecondsSinceEpoch) {
            lines += 1
            bytes += l.count
        }
        return (lines, bytes)
    }

    /// Waits until the last line written is committed and every committed reading arrived
    /// (or `seconds` pass); true when both hold.
    func awaitDelivery(seconds: Int) async -> Bool {
        let lastAt = start.adding(seconds: Int64(written.count - 1)).millisecondsSinceEpoch
        let committed = await eventually(within: .seconds(seconds), interval: .milliseconds(100)) {
            !sqlLines(vigild.databasePath, "SELECT 1 FROM readings WHERE measured_at = \(lastAt) LIMIT 1;").isEmpty
        }
        guard committed else { return false }
        return await eventually(within: .seconds(seconds), interval: .milliseconds(100)) {
            let committed = Set(sqlLines(vigild.databasePath, "SELECT reading_id FROM readings;"))
            let delivered = Set(subscriber.messages.compactMap(Arrived.init).map(\.id))
            return !committed.isEmpty && committed.isSubset(of: delivered)
        }
    }

    func tearDown() async {
        await subscriber.stop()
        vigild.cleanUp()
        device.close()
        broker.cleanUp()
    }

    static func with(persistentBroker: Bool = false, carePlans: [String: String] = [:], extraConfig: String = "",
                     brokerOptions: MosquittoBroker.Options? = nil, configure: (VigildProcess) throws -> Void = { _ in },
                     _ body: (SerialRig) async throws -> Void) async throws {
        let rig = try await SerialRig(persistentBroker: persistentBroker, carePlans: carePlans, extraConfig: extraConfig,
                                      brokerOptions: brokerOptions, configure: configure)
        do {
            try await body(rig)
        } catch {
            Issue.record("vigild log:\n\(rig.vigild.log())")
            await rig.tearDown()
            throw error
        }
        await rig.tearDown()
    }
}

/// A scripted peripheral and the connections it has served, in order.
final class PeerHandle: Sendable {
    let peripheral: ScriptedPeripheral
    private let seen = Mutex<[SimulatedPeripheral]>([])

    private init(peripheral: ScriptedPeripheral) { self.peripheral = peripheral }

    static func start(path: String, capture: String) throws -> PeerHandle {
        let handle = PeerHandle(peripheral: try ScriptedPeripheral.listen(path: path, capture: ATTCapture.parse(capture)))
        Task { [handle] in
            for await connection in handle.peripheral.connections { handle.record(connection) }
        }
        return handle
    }

    private func record(_ connection: SimulatedPeripheral) { seen.withLock { $0.append(connection) } }
    var connections: [SimulatedPeripheral] { seen.withLock { $0 } }
}

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
