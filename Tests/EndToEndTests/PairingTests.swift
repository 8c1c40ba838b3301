import BluetoothLink
import Glibc
import SerialLink
import Testing
import Uplink
import VigilTestKit
import VitalSigns

/// Pairing, unpairing and assignment at runtime (issue 7): the real vigild and vigilctl, a real
/// mosquitto, pseudo-terminal serial devices and a scripted BLE peer on the seqpacket seam.
@Suite(.serialized) struct PairingTests {
    /// A broker, a vigild with one config-file device, and pseudo-terminals to pair.
    final class PairingRig {
        let directory: String
        let broker: MosquittoBroker
        let vigild: VigildProcess
        let subscriber: TestSubscriber
        let configDevice: PseudoTerminal
        let start = Timestamp(secondsSinceEpoch: wallClock().millisecondsSinceEpoch / 1000 - 3600)
        var next = 0

        init() async throws {
            directory = makeTemporaryDirectory(prefix: "vigil-pair")
            broker = try MosquittoBroker(options: .init())
            try broker.start()
            configDevice = try PseudoTerminal(linkPath: directory + "/config-rad8")
            vigild = try VigildProcess(
                brokerPort: broker.port,
                devices: [.init(id: "cfg-rad8", port: directory + "/config-rad8", patient: "patient-config")])
            subscriber = try await TestSubscriber.start(
                broker: broker, filter: "vigil/v1/#", clientID: "pair-e2e-\(getpid())-\(UInt32.random(in: 0...UInt32.max))",
                cleanSession: true)
            try vigild.start()
        }

        /// Rad-8 lines with increasing device times.
        func lines(_ n: Int) -> [UInt8] {
            var bytes: [UInt8] = []
            for _ in 0..<n {
                bytes += rad8Line(CivilDateTime(utc: start.adding(seconds: Int64(next))), spo2: 97)
                next += 1
            }
            return bytes
        }

        /// Off the cooperative pool: a pair over the seam needs the peer this process serves there.
        func ctl(_ args: [String]) async throws -> (status: Int32, output: String) { try await vigild.ctlOffPool(args) }

        func sql(_ query: String) throws -> String {
            let (_, out) = try VigildProcess.run(["/usr/bin/sqlite3", vigild.databasePath, query])
            var t = Substring(out)
            while t.last == "\n" || t.last == "\r" { t = t.dropLast() }
            return String(t)
        }

        /// Readings that arrived at the broker from `device`, as (patient, id).
        func arrived(device: String) -> [(patient: String, id: String)] {
            subscriber.messages.compactMap { m in
                guard m.topic.hasSuffix("/readings"), let j = try? JSONValue.parse(m.payload),
                      j["device"]?.stringValue == device, let p = j["patient"]?.stringValue, let id = j["id"]?.stringValue else { return nil }
                return (p, id)
            }
        }

        func events(_ kind: String) -> [JSONValue] {
            subscriber.messages.compactMap { m in
                guard m.topic.hasSuffix("/events"), let j = try? JSONValue.parse(m.payload), j["kind"]?.stringValue == kind else { return nil }
                return j
            }
        }

        func run(_ body: (PairingRig) async throws -> Void) async throws {
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
            configDevice.close()
            broker.cleanUp()
            _ = try? VigildProcess.run(["/bin/rm", "-rf", directory])
        }
    }

    @Test func aSerialDevicePairedAtRuntimeIsReadReassignedUnpairedAndSurvivesARestart() async throws {
        try await PairingRig().run { rig in
            let path = rig.directory + "/rad8-a"
            let device = try PseudoTerminal(linkPath: path)
            defer { device.close() }

            // Pair and assign: readings flow without a restart.
            let paired = try await rig.ctl(["pair", "rad8-a", "--profile", "masimo-rad8", "--port", path, "--patient", "patient-a", "--json"])
            #expect(paired.status == 0, "\(paired.output)")
            let reply = try JSONValue.parse(paired.output)
            #expect(reply["changed"]?.boolValue == true)
            #expect(reply["device"]?["patient"]?.stringValue == "patient-a")
            try await device.write(rig.lines(2))
            #expect(await poll(within: .seconds(20)) { rig.arrived(device: "rad8-a").count >= 6 })
            #expect(rig.arrived(device: "rad8-a").allSatisfy { $0.patient == "patient-a" })
            #expect(await poll(within: .seconds(10)) { !rig.events("device_added").isEmpty && !rig.events("device_assigned").isEmpty })
            let added = try #require(rig.events("device_added").first)
            #expect(added["detail"]?["device"]?.stringValue == "rad8-a")
            #expect(added["detail"]?["patient"] == nil, "device_added carries no patient")

            // The same pairing again changes nothing and announces nothing.
            let again = try await rig.ctl(["pair", "rad8-a", "--profile", "masimo-rad8", "--port", path, "--patient", "patient-a", "--json"])
            #expect(again.status == 0)
            #expect((try? JSONValue.parse(again.output))?["changed"]?.boolValue == false)

            // Reassign: new readings carry the new patient, stored ones keep theirs.
            let assigned = try await rig.ctl(["assign", "rad8-a", "patient-b"])
            #expect(assigned.status == 0, "\(assigned.output)")
            #expect(await poll(within: .seconds(10)) {
                (try? rig.vigild.status())?["status"]?["devices"]?.arrayValue?.contains { $0["id"]?.stringValue == "rad8-a" && $0["state"]?.stringValue == "open" } == true
            })
            try await device.write(rig.lines(2))
            #expect(await poll(within: .seconds(20)) { rig.arrived(device: "rad8-a").filter { $0.patient == "patient-b" }.count >= 6 })
            #expect(try rig.sql("SELECT patient || ':' || count(*) FROM readings WHERE device = 'rad8-a' GROUP BY patient ORDER BY patient")
                    == "patient-a:6\npatient-b:6")
            #expect(await poll(within: .seconds(10)) {
                rig.events("device_assigned").contains { $0["detail"]?["patient"]?.stringValue == "patient-b" }
            })

            // A restart keeps the registry: the device is read again, for patient-b.
            #expect(rig.vigild.terminate() == 0)
            try rig.vigild.start()
            try await device.write(rig.lines(1))
            #expect(await poll(within: .seconds(20)) { rig.arrived(device: "rad8-a").filter { $0.patient == "patient-b" }.count >= 9 })

            // Unpair: reading stops, the stored readings stay, the care team is told.
            let unpaired = try await rig.ctl(["unpair", "rad8-a"])
            #expect(unpaired.status == 0, "\(unpaired.output)")
            #expect(await poll(within: .seconds(10)) { !rig.events("device_removed").isEmpty })
            let devices = try rig.vigild.status()["status"]?["devices"]?.arrayValue?.compactMap { $0["id"]?.stringValue }
            #expect(devices == ["cfg-rad8"], "an unpaired device leaves status")
            try await device.write(rig.lines(2))
            // Nothing reads the port now: give a (wrongly) running reader ample time to commit.
            #expect(!(await poll(within: .seconds(2)) { ((try? rig.sql("SELECT count(*) FROM readings WHERE device = 'rad8-a'")) ?? "") != "15" }))
            #expect(try rig.sql("SELECT count(*) FROM readings WHERE device = 'rad8-a'") == "15")
            #expect(try rig.sql("SELECT count(*) FROM devices WHERE device = 'rad8-a' AND unpaired_at IS NOT NULL") == "1")
            #expect(try rig.sql("SELECT group_concat(patient || '/' || (assigned_to IS NOT NULL), ',') FROM device_assignments WHERE device = 'rad8-a'")
                    == "patient-a/1,patient-b/1")
            #expect(rig.events("device_added").count == 1, "no duplicate events")
        }
    }

    @Test func badRequestsAreRefusedClearlyAndChangeNothing() async throws {
        try await PairingRig().run { rig in
            let path = rig.directory + "/rad8-b"
            let device = try PseudoTerminal(linkPath: path)
            defer { device.close() }
            #expect(try await rig.ctl(["pair", "rad8-b", "--profile", "masimo-rad8", "--port", path]).status == 0)
            let before = try rig.sql("SELECT count(*) FROM devices") + "/" + rig.sql("SELECT count(*) FROM device_assignments")
                + "/" + rig.sql("SELECT count(*) FROM priority_outbox")

            func refused(_ args: [String], _ status: Int32, _ fragment: String) async throws {
                let (code, output) = try await rig.ctl(args + ["--json"])
                #expect(code == status, "vigilctl \(args.joined(separator: " ")): exit \(code)")
                let error = (try? JSONValue.parse(output))?["error"]?.stringValue ?? ""
                #expect(error.contains(fragment), "\(args.joined(separator: " ")): \(error)")
            }
            try await refused(["pair", "x1", "--profile", "no-such-profile", "--port", path], 65, "no device profile 'no-such-profile'")
            try await refused(["pair", "x2", "--profile", "../etc/passwd", "--port", path], 65, "profile must be a profile id")
            try await refused(["pair", "x3", "--profile", "masimo-rad8", "--port", "dev/ttyUSB0"], 65, "port: must be an absolute path")
            try await refused(["pair", "x4", "--profile", "masimo-rad8", "--address", "00:11:22:33:44:55"], 65, "is a serial device")
            try await refused(["pair", "x5", "--profile", "ble-heart-rate", "--address", "00:11:22:33:4"], 65, "address: must be a Bluetooth address")
            try await refused(["pair", "bad id!", "--profile", "masimo-rad8", "--port", path], 65, "id: must be 1–64")
            try await refused(["pair", "rad8-b", "--profile", "masimo-rad8", "--port", "/dev/ttyUSB9"], 67, "already paired")
            try await refused(["pair", "cfg-rad8", "--profile", "masimo-rad8", "--port", path], 67, "vigild.yaml")
            try await refused(["unpair", "cfg-rad8"], 67, "read-only from vigilctl")
            try await refused(["assign", "cfg-rad8", "patient-x"], 67, "installer-provisioned")
            try await refused(["unpair", "nobody"], 66, "no device 'nobody' is paired")
            try await refused(["assign", "nobody", "patient-x"], 66, "no device 'nobody' is paired")
            // Over the real radio: no Bluetooth in this kernel, said plainly, nothing saved.
            try await refused(["pair", "hr-radio", "--profile", "ble-heart-rate", "--address", "00:11:22:33:44:55"], 69, "Bluetooth unavailable")
            // Live discovery through vigild: the same plain answer.
            try await refused(["scan", "--daemon", "--seconds", "1"], 69, "Bluetooth unavailable")

            let after = try rig.sql("SELECT count(*) FROM devices") + "/" + rig.sql("SELECT count(*) FROM device_assignments")
                + "/" + rig.sql("SELECT count(*) FROM priority_outbox")
            #expect(before == after, "refused requests wrote nothing")
            #expect(!rig.vigild.log().contains("patient-x"), "no patient identifier in the log")

            // Paired without a patient, the device waits; pairing it again with one assigns it.
            func state() throws -> String? {
                try rig.vigild.status()["status"]?["devices"]?.arrayValue?.first { $0["id"]?.stringValue == "rad8-b" }?["state"]?.stringValue
            }
            #expect(try state() == "unassigned")
            let assigned = try await rig.ctl(["pair", "rad8-b", "--profile", "masimo-rad8", "--port", path, "--patient", "patient-q", "--json"])
            #expect(assigned.status == 0, "\(assigned.output)")
            #expect((try? JSONValue.parse(assigned.output))?["assigned"]?.boolValue == true)
            #expect(await poll(within: .seconds(10)) { ((try? state()) ?? nil) == "open" })
            #expect(try rig.sql("SELECT count(*) FROM device_assignments WHERE device = 'rad8-b' AND assigned_to IS NULL") == "1")
        }
    }

    @Test func aBLEDeviceIsPairedOverTheSeamOnlyWhenItAnswersItsProfile() async throws {
        try await PairingRig().run { rig in
            let socket = rig.directory + "/hr.sock"
            let peer = try PeerHandle.start(path: socket, capture: """
                mtu 64
                service 180D
                char 2A37 notify
                service 180F
                char 2A19 read = 50
                script:
                wait-subscribed 2A37
                delay 100
                notify 2A37 = 00 48
                """)
            defer { peer.peripheral.stop() }
            // The wrong profile: the peer has no glucose service, so nothing is paired.
            let wrong = try await rig.ctl(["pair", "hr-1", "--profile", "ble-glucose-meter", "--address", "02:00:00:00:00:09",
                                     "--transport", "seqpacket:" + socket, "--json"])
            #expect(wrong.status == 69)
            #expect(((try? JSONValue.parse(wrong.output))?["error"]?.stringValue ?? "").contains("did not answer as profile ble-glucose-meter"))
            #expect(try rig.sql("SELECT count(*) FROM devices") == "0")

            let ok = try await rig.ctl(["pair", "hr-1", "--profile", "ble-heart-rate", "--address", "02:00:00:00:00:09",
                                  "--transport", "seqpacket:" + socket, "--patient", "patient-ble"])
            #expect(ok.status == 0, "\(ok.output)")
            #expect(await poll(within: .seconds(20)) { rig.arrived(device: "hr-1").contains { $0.patient == "patient-ble" } })

            // Unpairing a BLE device closes its session: the supervisor stops, the link goes.
            let unpaired = try await rig.ctl(["unpair", "hr-1", "--json"])
            #expect(unpaired.status == 0, "\(unpaired.output)")
            #expect(try rig.sql("SELECT count(*) FROM readings WHERE device = 'hr-1'") == "1", "its reading stays")
            let listed = try rig.vigild.status()["status"]?["devices"]?.arrayValue?.compactMap { $0["id"]?.stringValue }
            #expect(listed == ["cfg-rad8"])
        }
    }

    @Test func anIdBothInTheConfigAndTheRegistryStopsVigildNamingIt() async throws {
        try await PairingRig().run { rig in
            let path = rig.directory + "/rad8-c"
            #expect(try await rig.ctl(["pair", "dup-1", "--profile", "masimo-rad8", "--port", path]).status == 0)
            #expect(rig.vigild.terminate() == 0)
            let entry = "  - id: dup-1\n    profile: masimo-rad8\n    port: \"\(path)\"\n    patient: patient-z\n"
            #expect(try VigildProcess.run(["/bin/sh", "-c", "printf '%s' \"$1\" >> \"$0\"", rig.vigild.configPath, entry]).status == 0)
            let (status, output) = try VigildProcess.run(["/bin/sh", "-c", "\"$0\" --config \"$1\" 2>&1",
                                                          VigildProcess.binDirectory + "/vigild", rig.vigild.configPath])
            #expect(status == 78, "EX_CONFIG")
            #expect(output.contains("device id 'dup-1' is both in the config file"), "\(output)")
        }
    }
}
