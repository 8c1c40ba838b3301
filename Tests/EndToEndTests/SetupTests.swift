import Dispatch
import Glibc
import Synchronization
import SerialLink
import Testing
import Uplink
import VigilTestKit
import VitalSigns

/// `vigilctl setup`, non-interactively, against a private broker and a simulated serial
/// device: it writes the config, starts vigild, pairs and assigns the device, and proves a
/// reading reaches the broker; run twice, the second run changes nothing.
@Suite(.serialized) struct SetupTests {
    final class SetupRig {
        let directory: String
        let broker: MosquittoBroker
        let device: PseudoTerminal
        var configPath: String { directory + "/vigild.yaml" }
        var database: String { directory + "/state/vigil.sqlite" }
        var socket: String { directory + "/run/control.sock" }
        var answersPath: String { directory + "/answers.yaml" }
        var restartScript: String { directory + "/restart.sh" }

        init() throws {
            directory = makeTemporaryDirectory(prefix: "vigil-setup")
            for sub in ["state", "run", "care-plans"] { mkdir(directory + "/" + sub, 0o700) }
            broker = try MosquittoBroker(options: .init())
            try broker.start()
            device = try PseudoTerminal(linkPath: directory + "/rad8")
            // How this test "restarts vigild": what systemctl restart does on a gateway.
            try write(restartScript, """
                #!/bin/sh
                d="\(directory)"
                if [ -f "$d/vigild.pid" ]; then
                  p=$(cat "$d/vigild.pid"); kill "$p" 2>/dev/null
                  n=0; while [ -S "$d/run/control.sock" ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done
                fi
                "\(VigildProcess.binDirectory)/vigild" --config "$d/vigild.yaml" >>"$d/vigild.log" 2>&1 </dev/null &
                echo $! > "$d/vigild.pid"

                """)
            chmod(restartScript, 0o755)
        }

        func answers(brokerPort: Int? = nil, site: String = "home-0042") -> String {
            """
            site: \(site)
            gateway: gw-01
            log_level: info
            broker:
              host: 127.0.0.1
              port: \(brokerPort ?? broker.port)
            paths:
              database: \(database)
              control_socket: \(socket)
              care_plans: \(directory)/care-plans
              device_profiles: \(Fixtures.repositoryRoot)/devices
            devices:
              - id: rad8-setup
                profile: masimo-rad8
                port: \(directory)/rad8
                patient: patient-setup
                clock_utc_offset: "+00:00"
            """
        }

        func setup(_ extra: [String] = []) throws -> (status: Int32, output: String) {
            try VigildProcess.run([VigildProcess.binDirectory + "/vigilctl", "setup", "--non-interactive", "--from", answersPath,
                                   "--config", configPath, "--restart-command", restartScript, "--reading-timeout", "30"] + extra)
        }

        func sql(_ query: String) throws -> String {
            try VigildProcess.run(["/usr/bin/sqlite3", database, query]).output
        }

        func shell(_ command: String) throws -> String {
            try VigildProcess.run(["/bin/sh", "-c", command]).output
        }

        func write(_ path: String, _ text: String) throws {
            #expect(try VigildProcess.run(["/bin/sh", "-c", "printf '%s' \"$1\" > \"$0\"", path, text]).status == 0)
        }

        func tearDown() {
            _ = try? shell("[ -f \(directory)/vigild.pid ] && kill -9 $(cat \(directory)/vigild.pid)")
            device.close()
            broker.cleanUp()
            _ = try? VigildProcess.run(["/bin/rm", "-rf", directory])
        }
    }

    @Test func setupTwiceInstallsOnceAndProvesAReadingReachesTheBroker() async throws {
        let rig = try SetupRig()
        defer { rig.tearDown() }
        try rig.write(rig.answersPath, rig.answers())
        let subscriber = try await TestSubscriber.start(
            broker: rig.broker, filter: "vigil/v1/#", clientID: "setup-e2e-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        // The oximeter measures all along, as a real one does.
        let feeder = Feeder(rig.device)
        defer { feeder.stop() }

        let first = try rig.setup(["--json"])
        #expect(first.status == 0, "\(first.output)\n\((try? rig.shell("cat \(rig.directory)/vigild.log")) ?? "")")
        let report = try JSONValue.parse(first.output)
        #expect(report["ok"]?.boolValue == true)
        let steps = report["steps"]?.arrayValue?.compactMap { $0["step"]?.stringValue } ?? []
        #expect(steps == ["identity", "broker", "config", "vigild", "device rad8-setup", "reading rad8-setup"])
        #expect(report["steps"]?.arrayValue?[2]["detail"]?.stringValue?.hasSuffix("written") == true)
        #expect(try rig.shell("stat -c %a \(rig.configPath)") == "640\n", "the config is 0640")

        let configBefore = try rig.shell("cat \(rig.configPath); stat -c %i:%Y \(rig.configPath)")
        let registry = "SELECT * FROM devices; SELECT * FROM device_assignments; SELECT count(*) FROM priority_outbox;"
        let rowsBefore = try rig.sql(registry)
        #expect(rowsBefore.contains("rad8-setup|masimo-rad8"))
        #expect(rowsBefore.contains("rad8-setup|patient-setup"))
        let pidBefore = try rig.shell("cat \(rig.directory)/vigild.pid")

        // The same answers again: nothing changes, and the checklist proves delivery again.
        let second = try rig.setup()
        #expect(second.status == 0, "\(second.output)")
        #expect(second.output.contains("config: \(rig.configPath) unchanged"))
        #expect(second.output.contains("vigild: running; no restart needed"))
        #expect(second.output.contains("already paired"))
        #expect(second.output.contains("✔ reading rad8-setup"))
        #expect(try rig.shell("cat \(rig.configPath); stat -c %i:%Y \(rig.configPath)") == configBefore, "config bytes and inode unchanged")
        #expect(try rig.sql(registry) == rowsBefore, "registry rows and the event count unchanged")
        #expect(try rig.shell("cat \(rig.directory)/vigild.pid") == pidBefore, "vigild was not restarted")
        @Sendable func added() -> Int {
            subscriber.messages.filter { $0.topic.hasSuffix("/events") && $0.text.contains("\"device_added\"") }.count
        }
        // The event travels through the outbox: wait for it (a slow machine), then count.
        #expect(await poll(within: .seconds(20)) { added() >= 1 })
        #expect(added() == 1, "one device_added event over both runs")
        await subscriber.stop()
    }

    @Test func onATerminalSetupAsksEachQuestionWithTheCurrentAnswerAsDefault() async throws {
        let rig = try SetupRig()
        defer { rig.tearDown() }
        // The file supplies the defaults; the site is answered at the prompt instead.
        try rig.write(rig.answersPath, rig.answers(site: "placeholder"))
        let feeder = Feeder(rig.device)
        defer { feeder.stop() }
        // script(1) gives vigilctl a real terminal; the typed answers: a site, then Enter to
        // keep gateway, host, port, no user name, and "no more devices".
        let command = "\(VigildProcess.binDirectory)/vigilctl setup --from \(rig.answersPath) --config \(rig.configPath) "
            + "--restart-command \(rig.restartScript) --reading-timeout 30"
        let (status, output) = try VigildProcess.run([
            "/bin/sh", "-c", "printf 'home-0099\\n\\n\\n\\n\\n\\n' | script -qec \"$0\" /dev/null", command,
        ])
        #expect(status == 0, "\(output)")
        #expect(output.contains("Site id (the home or ward, e.g. home-0042) [placeholder]:"))
        #expect(output.contains("MQTT broker host [127.0.0.1]:"))
        #expect(output.contains("✔ identity: site home-0099, gateway gw-01"))
        #expect(output.contains("✔ reading rad8-setup"))
        #expect(try rig.shell("grep '^site:' \(rig.configPath)") == "site: home-0099\n")
    }

    @Test func anUnreachableBrokerOrBadAnswersStopSetupBeforeAnythingIsWritten() async throws {
        let rig = try SetupRig()
        defer { rig.tearDown() }
        // Port 1 on localhost: nothing listens there.
        try rig.write(rig.answersPath, rig.answers(brokerPort: 1))
        let unreachable = try rig.setup()
        #expect(unreachable.status == 69, "\(unreachable.output)")
        #expect(unreachable.output.contains("✘ broker"))
        #expect(access(rig.configPath, F_OK) != 0, "no config written")

        try rig.write(rig.answersPath, rig.answers(site: "home 42"))
        let invalid = try rig.setup()
        #expect(invalid.status == 65)
        #expect(invalid.output.contains("site must be 1–64 letters"))
        #expect(access(rig.configPath, F_OK) != 0, "no config written")
    }
}

/// Writes a Rad-8 line four times a second on a Dispatch thread of its own: the test's own
/// tasks block in waitpid and read while vigilctl runs, and must not starve the device.
final class Feeder: Sendable {
    private let stopped = Atomic(false)
    private let done = DispatchSemaphore(value: 0)

    init(_ device: PseudoTerminal) {
        let start = Timestamp(secondsSinceEpoch: wallClock().millisecondsSinceEpoch / 1000 - 3600)
        DispatchQueue(label: "setup-test-feeder").async { [self] in
            var i: Int64 = 0
            while !stopped.load(ordering: .relaxed) {
                let bytes = rad8Line(CivilDateTime(utc: start.adding(seconds: i)), spo2: 97)
                var offset = 0
                while offset < bytes.count, !stopped.load(ordering: .relaxed) {
                    guard let n = try? device.writeSome(bytes[offset...]) else { break }
                    if n == 0 { usleep(10_000) }
                    offset += n
                }
                i += 1
                usleep(250_000)
            }
            done.signal()
        }
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        done.wait()
    }
}
