import Testing
import Glibc
import BluetoothLink
import DeviceDecoding
import VigilTestKit
import VitalSigns

/// Every `firmware-fixtures/ble/*.att` capture, played by a ScriptedPeripheral on a listening
/// Unix SOCK_SEQPACKET path and read by the real GATTClient the way the daemon does (MTU,
/// discovery, subscriptions, Current Time, RACP back-fill, confirm after "commit"). The
/// values received are decoded with GATTDeviceDecoder and must give the capture's
/// `<name>.expected.jsonl`, line for line (`GATTBatch` renders them as `vigilctl decode` does).
@Suite("BLE capture replay")
struct CaptureReplayTests {
    static let names = ["heart-rate-strap", "blood-pressure-monitor", "weight-scale", "pulse-oximeter", "glucose-meter"]

    @Test("Capture replays to its expected readings", arguments: names)
    func replay(_ name: String) async throws {
        let path = "/tmp/vigil-ble-\(getpid())-\(name).sock"
        let peer = try ScriptedPeripheral.listen(path: path, fixture: name)
        defer { peer.stop() }
        let client = GATTClient.connect(bearer: try SeqPacketBearer.connect(path: path))
        var peripherals = peer.connections.makeAsyncIterator()
        let peripheral = try #require(await peripherals.next())

        // The daemon's session set-up. A device may send its measurements and leave while
        // the set-up is still going (blood pressure monitors and scales do): then what it sent
        // is still in `values`, and the set-up ends with `.disconnected`.
        var racpOutcome: Task<RACPOutcome, any Error>?
        do throws(BluetoothError) {
            try await client.exchangeMTU()
            let chars = try await client.discover().flatMap(\.characteristics)
            let racp = chars.first { $0.characteristic == .recordAccessControlPoint }
            for c in chars where c.uuid != racp?.uuid {
                if c.properties.contains(.indicate) { try await client.subscribe(c, .indications) }
                else if c.properties.contains(.notify) { try await client.subscribe(c, .notifications) }
            }
            if let ct = chars.first(where: { $0.characteristic == .currentTime }), ct.properties.contains(.write) {
                let now = CivilDateTime(year: 2026, month: 11, day: 25, hour: 9, minute: 0, second: 0)
                try await client.writeCurrentTime(handle: ct.valueHandle, localTime: now)
                #expect(await peripheral.writes.last?.value == GATTClient.currentTimeBytes(now))
            }
            if let racp {
                try await client.subscribe(racp, .indications)
                racpOutcome = Task { try await client.reportStoredRecords(.all, racp: racp) }
            }
        } catch {
            guard error.code == .disconnected else { throw error }
            #expect(peripheral.capture.records.isEmpty, "a capture with stored records must wait for RACP")
        }

        var lines = ""
        let end = await #expect(throws: BluetoothError.self) {
            for try await value in client.values {
                let uuid = try #require(value.uuid)
                lines += "\(uuid) " + value.bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16, uppercase: true) }.joined() + "\n"
                try value.indication?.confirm()   // after the "commit"
            }
        }
        #expect(end?.code == .disconnected, "\(String(describing: end))")   // every capture ends with the device leaving
        if let racpOutcome {
            let outcome = try await racpOutcome.value
            #expect(outcome.succeeded)
            #expect(outcome.valuesReceived == peripheral.capture.records.count)
        }

        var actual: [JSONValue] = []
        #expect(GATTBatch.run(lines, characteristic: nil) { actual.append($0) }.ok)
        let expectedPath = Fixtures.fixturesDirectory + "/ble/" + name + ".expected.jsonl"
        let expectedText = String(decoding: try Fixtures.readFile(expectedPath), as: UTF8.self)
        let expected = try expectedText.split(separator: "\n").map { try JSONValue.parse(String($0)) }
        #expect(actual.count == expected.count, "\(name): \(actual.count) lines, expected \(expected.count)")
        for (i, (a, e)) in zip(actual, expected).enumerated() {
            #expect(a == e, "\(name) line \(i + 1): got \(a.serialized), expected \(e.serialized)")
        }
    }

    @Test("Every capture file parses, and every characteristic it scripts is in its database")
    func capturesAreWellFormed() throws {
        for name in Self.names {
            let capture = try ScriptedPeripheral.loadCapture(name)
            let uuids = Set(capture.services.flatMap { $0.characteristics.map(\.uuid) })
            for step in capture.script {
                switch step {
                case .notify(let u, _), .indicate(let u, _), .waitSubscribed(let u): #expect(uuids.contains(u), "\(name): \(u)")
                default: break
                }
            }
            for r in capture.records { #expect(uuids.contains(r.characteristic), "\(name): record \(r.sequence)") }
        }
    }
}
