@preconcurrency import Dispatch
import DeviceDecoding
import Glibc
import SerialLink
import Synchronization
import Testing
import VigilTestKit
import VitalSigns

/// A OneTouch Ultra 2 on a real pseudo-terminal that answers every `DMP` with the fixture dump.
private final class DumpingMeter: Sendable {
    let pty: PseudoTerminal
    private let dump: [UInt8]
    private let requests = Mutex(0)
    private let running = Mutex(true)

    init(link: String) throws {
        pty = try PseudoTerminal(linkPath: link, holdSlaveOpen: true)
        dump = try Fixtures.capture("onetouch-ultra2/normal.capture").allBytes
        DispatchQueue.global().async { [self] in serve() }
    }

    var requestCount: Int { requests.withLock { $0 } }

    func stop() {
        running.withLock { $0 = false }
        pty.close()
    }

    private func serve() {
        var heard: [UInt8] = []
        let request: [UInt8] = [0x11, 0x0D] + Array("DMP".utf8)
        var buffer = [UInt8](repeating: 0, count: 256)
        while running.withLock({ $0 }) {
            var p = pollfd(fd: pty.masterFD, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 50) > 0, p.revents & Int16(POLLIN) != 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { read(pty.masterFD, $0.baseAddress, $0.count) }
            guard n > 0 else { continue }
            heard += buffer[0..<n]
            while let r = heard.firstRange(of: request) {
                heard.removeSubrange(..<r.upperBound)
                requests.withLock { $0 += 1 }
                var offset = 0
                while offset < dump.count, running.withLock({ $0 }) {
                    let w = (try? pty.writeSome(dump[offset...])) ?? 0
                    if w == 0 { usleep(2000) }
                    offset += w
                }
            }
        }
    }
}

@Suite("vigild downloads a meter that answers only when asked")
struct MeterEndToEndTests {
    @Test func aMeterIsDownloadedThroughTheCommitPathAndADownloadAgainAddsNothing() async throws {
        let broker = try MosquittoBroker()
        try broker.start()
        defer { broker.cleanUp() }
        let link = makeTemporaryDirectory(prefix: "vigil-meter-e2e") + "/ultra2"
        let meter = try DumpingMeter(link: link)
        defer { meter.stop() }
        let vigild = try VigildProcess(brokerPort: broker.port, devices: [], extraConfig: """
            devices:
              - id: ultra2-kitchen
                profile: onetouch-ultra2
                port: "\(link)"
                patient: patient-meter
                download_interval_seconds: 10

            """)
        defer { vigild.cleanUp() }
        let subscriber = try await TestSubscriber.start(broker: broker, filter: "vigil/v1/#", clientID: "meter-e2e-\(getpid())", cleanSession: true)
        try vigild.start()

        // The fixture's 14 records arrive at the broker, as glucose readings of this patient.
        let arrived = try await subscriber.waitFor(count: 14, timeout: 30) { $0.topic.hasSuffix("/readings") }
        #expect(arrived.allSatisfy { String(decoding: $0.payload, as: UTF8.self).contains("\"vital\":\"blood_glucose\"") })
        let status = try vigild.status()
        let device = status["status"]?["devices"]?.arrayValue?.first
        #expect(device?["state"]?.stringValue == "idle", "\(String(describing: device))")
        #expect(device?["reason"]?.stringValue?.contains("downloaded in 1 attempt") == true)

        // Ten seconds later the meter is asked again: the same records, no new rows.
        #expect(await eventually(within: .seconds(30)) { meter.requestCount >= 2 })
        try await Task.sleep(for: .seconds(1))
        let rows = try VigildProcess.run(["/usr/bin/sqlite3", "-readonly", vigild.databasePath, "SELECT count(*) FROM readings;"]).output
        #expect(rows.split(separator: "\n").first == "14")
        await subscriber.stop()
        #expect(vigild.terminate() == 0)
    }

    @Test func aMeterPluggedInAfterStartIsReadWithinSecondsNotAtTheNextInterval() async throws {
        let broker = try MosquittoBroker()
        try broker.start()
        defer { broker.cleanUp() }
        let link = makeTemporaryDirectory(prefix: "vigil-meter-late") + "/ultra2"
        let vigild = try VigildProcess(brokerPort: broker.port, devices: [], extraConfig: """
            devices:
              - id: ultra2-late
                profile: onetouch-ultra2
                port: "\(link)"
                patient: patient-meter
                download_interval_seconds: 3600

            """)
        defer { vigild.cleanUp() }
        let subscriber = try await TestSubscriber.start(broker: broker, filter: "vigil/v1/#", clientID: "meter-late-\(getpid())", cleanSession: true)
        try vigild.start()
        // No meter yet: reported unavailable, with when it is asked again.
        #expect(await eventually(within: .seconds(20)) {
            ((try? vigild.status())?["status"]?["devices"]?.arrayValue?.first?["reason"]?.stringValue ?? "").contains("asking again in")
        })
        // The patient connects the meter: read long before the hour's interval.
        let meter = try DumpingMeter(link: link)
        defer { meter.stop() }
        let arrived = try await subscriber.waitFor(count: 14, timeout: 45) { $0.topic.hasSuffix("/readings") }
        #expect(arrived.count >= 14)
        await subscriber.stop()
        #expect(vigild.terminate() == 0)
    }
}
