import Glibc
import SerialLink
import Testing
import Uplink
import VigilTestKit
import VitalSigns

/// One Masimo Rad-8 "ASCII 1" line (firmware-fixtures/README.md), as the device sends it.
func rad8Line(_ t: CivilDateTime, spo2: Int, bpm: Int = 72, pi: String = "03.10") -> [UInt8] {
    func pad(_ v: Int, _ w: Int) -> String {
        let s = String(v)
        return String(repeating: "0", count: max(0, w - s.count)) + s
    }
    let date = "\(pad(t.month, 2))/\(pad(t.day, 2))/\(pad(t.year % 100, 2)) \(pad(t.hour, 2)):\(pad(t.minute, 2)):\(pad(t.second, 2))"
    let line = "\(date) SN=0000012345 SPO2=\(pad(spo2, 3))% BPM=\(pad(bpm, 3)) PI=\(pi)% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
    return Array(line.utf8)
}

/// The gateway's wall clock.
func wallClock() -> Timestamp {
    var t = timespec()
    clock_gettime(CLOCK_REALTIME, &t)
    return Timestamp(millisecondsSinceEpoch: Int64(t.tv_sec) * 1000 + Int64(t.tv_nsec) / 1_000_000)
}

/// A decoded reading message from the broker.
struct ArrivedReading: Hashable {
    var id: String
    var device: String
    var vital: String
    var value: Double
    var measuredAt: String
    var flags: [String]

    init?(_ message: ReceivedMessage) {
        guard message.topic.hasSuffix("/readings"), let json = try? JSONValue.parse(message.payload),
              let id = json["id"]?.stringValue, let vital = json["vital"]?.stringValue,
              let value = json["value"]?.doubleValue, let measured = json["measured_at"]?.stringValue else { return nil }
        self.id = id
        self.device = json["device"]?.stringValue ?? ""
        self.vital = vital
        self.value = value
        self.measuredAt = measured
        self.flags = json["flags"]?.arrayValue?.compactMap(\.stringValue) ?? []
    }
}

/// A broker, a pseudo-terminal oximeter and a vigild wired together, torn down at the end.
final class Rig {
    let broker: MosquittoBroker
    let device: PseudoTerminal
    let vigild: VigildProcess
    let subscriber: TestSubscriber
    let devicePath: String
    /// Device times start here, one second per line, so every line is a distinct reading.
    let start: Timestamp

    init(persistentBroker: Bool = false, carePlans: [String: String] = [:], extraConfig: String = "") async throws {
        broker = try MosquittoBroker(options: .init(persistence: persistentBroker))
        try broker.start()
        let dir = makeTemporaryDirectory()
        devicePath = dir + "/rad8"
        device = try PseudoTerminal(linkPath: devicePath)
        vigild = try VigildProcess(
            brokerPort: broker.port,
            devices: [.init(id: "rad8-test", port: devicePath, patient: "patient-e2e")],
            carePlans: carePlans, extraConfig: extraConfig)
        subscriber = try await TestSubscriber.start(
            broker: broker, filter: "vigil/v1/#", clientID: "e2e-subscriber-\(getpid())", cleanSession: !persistentBroker)
        // Whole seconds, as the device's clock shows them.
        start = Timestamp(secondsSinceEpoch: wallClock().millisecondsSinceEpoch / 1000 - 3600)
    }

    func line(_ i: Int, spo2: Int = 97) -> [UInt8] {
        rad8Line(CivilDateTime(utc: start.adding(seconds: Int64(i))), spo2: spo2)
    }

    var readings: [ArrivedReading] { subscriber.messages.compactMap(ArrivedReading.init) }

    func tearDown() async {
        await subscriber.stop()
        vigild.cleanUp()
        device.close()
        broker.cleanUp()
    }
}

extension Rig {
    /// Runs `body` with a fresh rig and always tears it down, even when `body` throws.
    static func with(persistentBroker: Bool = false, carePlans: [String: String] = [:], extraConfig: String = "",
                     _ body: (Rig) async throws -> Void) async throws {
        let rig = try await Rig(persistentBroker: persistentBroker, carePlans: carePlans, extraConfig: extraConfig)
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
