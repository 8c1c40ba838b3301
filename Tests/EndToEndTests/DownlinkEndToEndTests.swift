import Glibc
import Synchronization
import SerialLink
import Testing
import Uplink
import VigilTestKit
import VitalSigns

private let prefix = "vigil/v1/test-site/gw-test"

private let planV3 = """
    patient: patient-e2e
    version: 3
    thresholds:
      - id: spo2-low
        vital: spo2
        below: 90
        sustained_seconds: 20
        hysteresis: 2
        severity: urgent
    """

/// Version 4 adds a pulse rule every demo line (72/min) breaches at once.
private let planV4 = """
    patient: patient-e2e
    version: 4
    thresholds:
      - id: spo2-low
        vital: spo2
        below: 90
        sustained_seconds: 20
        hysteresis: 2
        severity: urgent
      - id: pulse-over-60
        vital: pulse_rate
        above: 60
        severity: advisory
    """

private func nowText(offsetSeconds: Int64 = 0) -> String { wallClock().adding(seconds: offsetSeconds).iso8601 }

private func command(_ id: String, issuedAt: String = nowText(), args: JSONValue = .object([])) -> [UInt8] {
    Array(JSONValue.object([("id", .string(id)), ("issued_at", .string(issuedAt)), ("args", args)]).serialized.utf8)
}

extension Rig {
    func publish(_ topic: String, _ payload: [UInt8]) throws {
        _ = try subscriber.connection.publish(topic: topic, payload: payload, qos: 1)
    }

    /// Sends `<prefix>/cmd/<name>` and waits for `<prefix>/reply/<id>`.
    func send(_ name: String, id: String, _ payload: [UInt8], timeout: Double = 10) async throws -> JSONValue {
        let topic = prefix + "/reply/" + id
        let earlier = subscriber.messages.filter { $0.topic == topic }.count
        try publish(prefix + "/cmd/" + name, payload)
        let got = try await subscriber.waitFor(count: earlier + 1, timeout: timeout) { $0.topic == topic }
        return try JSONValue.parse(got[earlier].payload)
    }

    /// vigild subscribes to the downlink once connected: ping until it answers (with a deadline).
    func waitForDownlink() async throws {
        for attempt in 0..<40 {
            let id = "ready-\(attempt)"
            try publish(prefix + "/cmd/ping", command(id))
            if (try? await subscriber.waitFor(count: 1, timeout: 0.5) { $0.topic == prefix + "/reply/" + id }) != nil { return }
        }
        throw MosquittoBrokerError("downlink", "vigild never answered a ping")
    }

    var replies: [ReceivedMessage] { subscriber.messages.filter { $0.topic.hasPrefix(prefix + "/reply/") } }

    func sql(_ query: String) throws -> String {
        try VigildProcess.run(["/usr/bin/sqlite3", "-readonly", vigild.databasePath, query]).output
            .trimmingCharacters(in: "\n")
    }
}

private extension String {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.last == set { s = s.dropLast() }
        return String(s)
    }
}

/// A child process with a pipe on stdin and one on stdout (stderr joined), for an interactive
/// command: the test reads its output as it comes (poll with a deadline) and types lines.
private final class Interactive {
    let pid: pid_t
    let input: Int32
    let output: Int32
    private(set) var text = ""

    init(_ argv: [String]) throws {
        var toChild: [Int32] = [0, 0], fromChild: [Int32] = [0, 0]
        guard pipe(&toChild) == 0, pipe(&fromChild) == 0 else { throw MosquittoBrokerError("pipe", errno: errno, "cannot create pipes") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 2)
        posix_spawn_file_actions_addclose(&actions, toChild[1])
        posix_spawn_file_actions_addclose(&actions, fromChild[0])
        let cArgs = argv.map { strdup($0) }
        defer { for a in cArgs { free(a) } }
        var argvC: [UnsafeMutablePointer<CChar>?] = cArgs + [nil]
        var child: pid_t = 0
        let rc = argvC.withUnsafeMutableBufferPointer { a in posix_spawn(&child, argv[0], &actions, nil, a.baseAddress!, environ) }
        close(toChild[0])
        close(fromChild[1])
        guard rc == 0 else { throw MosquittoBrokerError("posix_spawn", errno: rc, "cannot start \(argv[0])") }
        pid = child
        input = toChild[1]
        output = fromChild[0]
    }

    func type(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(input, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Reads output until it contains `needle` (true) or `seconds` pass (false).
    func waitFor(_ needle: String, seconds: Int64 = 20) -> Bool {
        let deadline = wallClock().adding(seconds: seconds)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !text.contains(needle) {
            let left = deadline.milliseconds(since: wallClock())
            if left <= 0 { return false }
            var p = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, Int32(min(left, 1000)))
            if r < 0, errno == EINTR { continue }
            if r <= 0 { continue }
            let n = buffer.withUnsafeMutableBytes { read(output, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { return text.contains(needle) }
            text += String(decoding: buffer[0..<n], as: UTF8.self)
        }
        return true
    }

    func stop() {
        _ = kill(pid, SIGTERM)
        close(input)
        close(output)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }
}

/// Set once, read from any thread.
private final class DoneFlag: Sendable {
    private let flag = Mutex(false)
    func set() { flag.withLock { $0 = true } }
    var isSet: Bool { flag.withLock { $0 } }
}

/// Validates every reply payload against docs/schemas/reply.schema.json with python3-jsonschema.
private func validateReplies(_ replies: [ReceivedMessage]) throws -> String {
    let dir = makeTemporaryDirectory(prefix: "vigil-replies")
    var lines = ""
    for r in replies { lines += r.text + "\n" }
    try writeText(dir + "/replies.jsonl", lines)
    let script = """
        import json, sys
        from jsonschema import Draft202012Validator
        schema = json.load(open(sys.argv[1]))
        v = Draft202012Validator(schema)
        n = 0
        for line in open(sys.argv[2]):
            errors = list(v.iter_errors(json.loads(line)))
            if errors:
                print("INVALID", errors[0].message, line.strip()[:200]); sys.exit(1)
            n += 1
        print("valid", n)
        """
    try writeText(dir + "/validate.py", script)
    return try VigildProcess.run(["/usr/bin/python3", dir + "/validate.py", Fixtures.repositoryRoot + "/docs/schemas/reply.schema.json",
                                  dir + "/replies.jsonl"]).output
}

/// The downlink against the real vigild and a real mosquitto: each command's effect, and the fuzz.
@Suite(.serialized) struct DownlinkEndToEndTests {
    @Test func everyCommandIsAppliedAndAnswered() async throws {
        try await Rig.with(carePlans: ["patient-e2e.yaml": planV3]) { rig in
            try rig.vigild.start()
            try await rig.waitForDownlink()

            // ping: version, uptime, outbox depth.
            let ping = try await rig.send("ping", id: "ping-1", command("ping-1"))
            #expect(ping["ok"]?.boolValue == true)
            #expect(ping["result"]?["version"]?.stringValue?.isEmpty == false)
            #expect(ping["result"]?["outbox_depth"]?["readings"]?.int64Value != nil)

            // A desaturation opens an escalation; ack acknowledges it and forwards the new state.
            var written = 0
            var bytes: [UInt8] = []
            for _ in 0..<40 { bytes += rig.line(written, spo2: 85); written += 1 }
            try await rig.device.write(bytes)
            let opened = try await rig.subscriber.waitFor(count: 1, timeout: 20, matching: isEscalation)
            let escalation = try JSONValue.parse(opened[0].payload)
            let escalationID = try #require(escalation["id"]?.stringValue)
            let ack = try await rig.send("ack", id: "ack-1", command("ack-1", args: .object([
                ("escalation", .string(escalationID)), ("by", "nurse-7"), ("detail", "phoned the patient"),
            ])))
            #expect(ack["ok"]?.boolValue == true, "\(ack)")
            #expect(ack["result"]?["state"]?.stringValue == "acknowledged")
            let forwarded = try await rig.subscriber.waitFor(count: 1, timeout: 10) {
                isEscalation($0) && $0.text.contains("\"acknowledged\"")
            }
            let acked = try JSONValue.parse(forwarded[0].payload)
            #expect(acked["id"]?.stringValue == escalationID)
            #expect(acked["acknowledged_by"]?.stringValue == "nurse-7")
            #expect(acked["acknowledged_at"]?.stringValue != nil)
            #expect(acked["detail"]?["ack_detail"]?.stringValue == "phoned the patient")
            #expect(try rig.sql("SELECT state FROM escalations WHERE id = '\(escalationID)';") == "acknowledged")

            // The same command again (a QoS 1 duplicate, or a replay): answered, not applied.
            let priorityBefore = try rig.sql("SELECT count(*) FROM priority_outbox;")
            let replay = try await rig.send("ack", id: "ack-1", command("ack-1", args: .object([
                ("escalation", .string(escalationID)), ("by", "nurse-7"),
            ])))
            #expect(replay["ok"]?.boolValue == false)
            #expect(replay["error"]?["code"]?.stringValue == "replayed")
            #expect(try rig.sql("SELECT count(*) FROM priority_outbox;") == priorityBefore)
            // A second, new ack of the same escalation is refused: it is already acknowledged.
            let again = try await rig.send("ack", id: "ack-2", command("ack-2", args: .object([
                ("escalation", .string(escalationID)), ("by", "nurse-8"),
            ])))
            #expect(again["error"]?["code"]?.stringValue == "unknown_escalation")

            // resend: everything delivered so far goes out again, same ids.
            let drained = await eventually(within: .seconds(10)) {
                (try? rig.vigild.status())?["status"]?["outbox"]?["readings"]?["depth"]?.int64Value == 0
            }
            #expect(drained)
            let before = rig.readings.count
            let resend = try await rig.send("resend", id: "resend-1", command("resend-1", args: .object([
                ("from", .string(rig.start.adding(seconds: -60).iso8601)), ("to", .string(rig.start.adding(seconds: 3600).iso8601)),
                ("device", "rad8-test"),
            ])))
            #expect(resend["ok"]?.boolValue == true, "\(resend)")
            let requeued = resend["result"]?["requeued"]?.int64Value ?? 0
            #expect(requeued == Int64(written * 3))
            #expect(resend["result"]?["range_partly_pruned"]?.boolValue == false)
            try await rig.subscriber.waitFor(count: before + Int(requeued), timeout: 20, matching: isReading)
            #expect(Set(rig.readings.map(\.id)).count == written * 3, "re-sent readings keep their ids")

            // care-plan: version 4 is validated, persisted and changes evaluation at once.
            let apply = try await rig.send("care-plan", id: "plan-4", command("plan-4", args: .object([
                ("patient", "patient-e2e"), ("plan", .string(planV4)),
            ])))
            #expect(apply["ok"]?.boolValue == true, "\(apply)")
            #expect(apply["result"]?["previous_version"]?.int64Value == 3)
            let file = try Fixtures.readFile(rig.vigild.carePlansDirectory + "/patient-e2e.yaml")
            #expect(String(decoding: file, as: UTF8.self) == planV4, "the plan file is replaced in place")
            try await rig.subscriber.waitFor(count: 1, timeout: 10) { $0.topic.hasSuffix("/events") && $0.text.contains("care_plan_applied") }
            try await rig.device.write(rig.line(written, spo2: 97))
            written += 1
            let pulse = try await rig.subscriber.waitFor(count: 1, timeout: 10) {
                isEscalation($0) && $0.text.contains("pulse-over-60")
            }
            #expect(try JSONValue.parse(pulse[0].payload)["care_plan_version"]?.int64Value == 4)

            // The same version again is refused and changes nothing.
            let stale = try await rig.send("care-plan", id: "plan-4b", command("plan-4b", args: .object([
                ("patient", "patient-e2e"), ("plan", .string(planV4.replacing("above: 60", with: "above: 200"))),
            ])))
            #expect(stale["error"]?["code"]?.stringValue == "version_not_newer")
            #expect(try Fixtures.readFile(rig.vigild.carePlansDirectory + "/patient-e2e.yaml") == file)
            try await rig.subscriber.waitFor(count: 1, timeout: 10) { $0.topic.hasSuffix("/events") && $0.text.contains("care_plan_refused") }

            // config: a safe setting applies; anything else is refused whole.
            let config = try await rig.send("config", id: "cfg-1", command("cfg-1", args: .object([
                ("set", .object([("log_level", "debug"), ("downlink.replay_window_seconds", 600)])),
            ])))
            #expect(config["ok"]?.boolValue == true)
            let unsafe = try await rig.send("config", id: "cfg-2", command("cfg-2", args: .object([
                ("set", .object([("log_level", "info"), ("broker.host", "elsewhere")])),
            ])))
            #expect(unsafe["error"]?["code"]?.stringValue == "invalid_arguments")

            // After a restart: the replay guard still knows the ids, the persisted plan (v4) is the
            // one loaded, and the acknowledged escalation stays acknowledged.
            #expect(rig.vigild.terminate() == 0)
            try rig.vigild.start()
            try await rig.waitForDownlink()
            let replayedAfterRestart = try await rig.send("care-plan", id: "plan-4", command("plan-4", args: .object([
                ("patient", "patient-e2e"), ("plan", .string(planV4)),
            ])))
            #expect(replayedAfterRestart["error"]?["code"]?.stringValue == "replayed")
            let reloaded = try await rig.send("care-plan", id: "plan-4c", command("plan-4c", args: .object([
                ("patient", "patient-e2e"), ("plan", .string(planV4)),
            ])))
            #expect(reloaded["error"]?["code"]?.stringValue == "version_not_newer", "v4 was loaded from the file: \(reloaded)")

            // Every reply this test saw follows docs/schemas/reply.schema.json.
            let validation = try validateReplies(rig.replies)
            #expect(validation.hasPrefix("valid"), "\(validation)")
            #expect(rig.vigild.terminate() == 0)
        }
    }

    @Test func malformedAndHostileCommandsChangeNothingAndNeverStopVigild() async throws {
        try await Rig.with(carePlans: ["patient-e2e.yaml": planV3]) { rig in
            try rig.vigild.start()
            try await rig.waitForDownlink()
            var bytes: [UInt8] = []
            for i in 0..<10 { bytes += rig.line(i) }
            try await rig.device.write(bytes)
            try await rig.subscriber.waitFor(count: 30, timeout: 20, matching: isReading)
            let drained = await eventually(within: .seconds(10)) {
                (try? rig.vigild.status())?["status"]?["outbox"]?["readings"]?["depth"]?.int64Value == 0
            }
            #expect(drained)
            let planBefore = try Fixtures.readFile(rig.vigild.carePlansDirectory + "/patient-e2e.yaml")
            let readingsBefore = try rig.sql("SELECT count(*), sum(delivered) FROM readings;")
            let escalationsBefore = try rig.sql("SELECT count(*) FROM escalations;")

            // Answered with an error: each has a usable id.
            let answered: [(String, String, [UInt8], String)] = [
                ("reboot", "f-1", command("f-1"), "unknown_command"),
                ("ping", "f-2", command("f-2", issuedAt: nowText(offsetSeconds: -3600)), "stale"),
                ("ping", "f-3", command("f-3", issuedAt: nowText(offsetSeconds: 3600)), "issued_in_future"),
                ("ack", "f-4", command("f-4", args: .object([("escalation", "abc")])), "invalid_arguments"),
                ("ack", "f-5", command("f-5", args: .object([("escalation", "abc"), ("by", "n"), ("extra", true)])), "invalid_arguments"),
                ("care-plan", "f-6", command("f-6", args: .object([("patient", "patient-e2e"), ("plan", "patient: patient-e2e\nversion: 9\nthresholds: [{id: x}]\n")])), "plan_invalid"),
                ("care-plan", "f-7", command("f-7", args: .object([("patient", "someone-else"), ("plan", .string(planV4))])), "plan_invalid"),
                ("resend", "f-8", command("f-8", args: .object([("from", "2026-11-25T00:00:00Z")])), "invalid_arguments"),
                ("config", "f-9", command("f-9", args: .object([("set", .object([("paths.database", "/tmp/x")]))])), "invalid_arguments"),
                ("ack", "f-10", command("f-10", args: .object([("escalation", "abcdef"), ("by", "n")])), "unknown_escalation"),
                ("ping", "f-11", Array("{\"id\":\"f-11\",\"issued_at\":\"\(nowText())\",\"args\":{},\"args\":{}}".utf8), "invalid_envelope"),
            ]
            for (name, id, payload, code) in answered {
                let reply = try await rig.send(name, id: id, payload)
                #expect(reply["ok"]?.boolValue == false)
                #expect(reply["error"]?["code"]?.stringValue == code, "\(name) \(id): \(reply)")
            }
            // A replayed id (f-10 was recorded when refused at apply time).
            let replayed = try await rig.send("ack", id: "f-10", command("f-10", args: .object([("escalation", "abcdef"), ("by", "n")])))
            #expect(replayed["error"]?["code"]?.stringValue == "replayed")

            // Not answerable (no usable id) or not ours at all: ignored, counted.
            try rig.publish(prefix + "/cmd/ping", Array("{not json".utf8))
            try rig.publish(prefix + "/cmd/ping", [UInt8](repeating: 0x20, count: 70_000))
            try rig.publish(prefix + "/cmd/ping", Array("{\"id\":\"has space\",\"issued_at\":\"x\",\"args\":{}}".utf8))
            try rig.publish(prefix + "/cmd/ack/deeper", command("t-1"))
            try rig.publish(prefix + "/readings/cmd/ping", command("t-2"))
            var rng = SplitMix64(state: 6)
            for _ in 0..<200 {
                let junk = (0..<Int.random(in: 0...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                try rig.publish(prefix + "/cmd/" + ["ping", "ack", "care-plan", "config", "resend", "zz"][Int.random(in: 0..<6, using: &rng)], junk)
            }
            // The garbage is reported upstream as command_refused (coalesced), never echoed.
            let refused = try await rig.subscriber.waitFor(count: 1, timeout: 10) {
                $0.topic.hasSuffix("/events") && $0.text.contains("command_refused")
            }
            #expect(!refused[0].text.contains("not json"))
            // Still alive and answering after all of it.
            let ping = try await rig.send("ping", id: "after", command("after"))
            #expect(ping["ok"]?.boolValue == true)
            #expect(!rig.replies.contains { $0.topic.hasSuffix("/t-1") || $0.topic.hasSuffix("/t-2") }, "no answer outside cmd/<name>")

            // Nothing changed: readings (count and delivery), escalations, the care plan.
            #expect(try rig.sql("SELECT count(*), sum(delivered) FROM readings;") == readingsBefore)
            #expect(try rig.sql("SELECT count(*) FROM escalations;") == escalationsBefore)
            #expect(try Fixtures.readFile(rig.vigild.carePlansDirectory + "/patient-e2e.yaml") == planBefore)
            let status = try rig.vigild.status()
            #expect(status["verdict"]?.stringValue == "ok")

            let validation = try validateReplies(rig.replies)
            #expect(validation.hasPrefix("valid"), "\(validation)")
            #expect(!rig.vigild.log().contains("not json"), "payload content never reaches the log")
            #expect(rig.vigild.terminate() == 0)
        }
    }

    @Test func theDownlinkSectionIsValidatedLikeTheRestOfTheConfig() throws {
        let dir = makeTemporaryDirectory()
        let path = dir + "/vigild.yaml"
        func check(_ downlink: String) throws -> (status: Int32, output: String) {
            try writeText(path, "site: home-1\ngateway: gw-1\nbroker:\n  host: 127.0.0.1\n" + downlink)
            return try VigildProcess.run(["/bin/sh", "-c", "\(VigildProcess.binDirectory)/vigild --config \(path) --check-config 2>&1"])
        }
        #expect(try check("downlink:\n  enabled: false\n  max_bytes: 2048\n  replay_window_seconds: 60\n").status == 0)
        let small = try check("downlink:\n  max_bytes: 10\n")
        #expect(small.status == 78 && small.output.contains("downlink.max_bytes"), "\(small.output)")
        let window = try check("downlink:\n  replay_window_seconds: 0\n")
        #expect(window.status == 78 && window.output.contains("replay_window_seconds"), "\(window.output)")
        let typo = try check("downlink:\n  max_byte: 2048\n")
        #expect(typo.status == 78 && typo.output.contains("max_byte"), "\(typo.output)")
    }

    @Test func vigilctlWatchAcknowledgesWhatIsTypedOnItsStdin() async throws {
        try await Rig.with(carePlans: ["patient-e2e.yaml": planV3]) { rig in
            try rig.vigild.start()
            try await rig.waitForDownlink()
            let watch = try Interactive([VigildProcess.binDirectory + "/vigilctl", "watch", "--config", rig.vigild.configPath,
                                         "--by", "coordinator-1", "--timeout", "60"])
            defer { watch.stop() }
            #expect(watch.waitFor("watching "), "\(watch.text)")
            var bytes: [UInt8] = []
            for i in 0..<40 { bytes += rig.line(i, spo2: 85) }
            try await rig.device.write(bytes)
            #expect(watch.waitFor("[1] "), "\(watch.text) escalations seen by the test: \(rig.subscriber.messages.filter(isEscalation).count); log: \(rig.vigild.log().suffix(1500))")
            watch.type("ack 7")
            #expect(watch.waitFor("N is the number in brackets"), "an unknown number is explained: \(watch.text)")
            watch.type("ack 1 called the patient")
            #expect(watch.waitFor("ack applied"), "\(watch.text)")
            #expect(watch.waitFor("acknowledged  spo2"), "the acknowledged state comes back: \(watch.text)")
            let acked = try await rig.subscriber.waitFor(count: 1, timeout: 10) { isEscalation($0) && $0.text.contains("\"acknowledged\"") }
            let doc = try JSONValue.parse(acked[0].payload)
            #expect(doc["acknowledged_by"]?.stringValue == "coordinator-1")
            #expect(doc["detail"]?["ack_detail"]?.stringValue == "called the patient")
        }
    }

    @Test func vigilctlWatchShowsEscalationsAndAcknowledgesOne() async throws {
        try await Rig.with(carePlans: ["patient-e2e.yaml": planV3]) { rig in
            try rig.vigild.start()
            try await rig.waitForDownlink()
            var bytes: [UInt8] = []
            for i in 0..<40 { bytes += rig.line(i, spo2: 85) }
            try await rig.device.write(bytes)
            let opened = try await rig.subscriber.waitFor(count: 1, timeout: 20, matching: isEscalation)
            let id = try #require(try JSONValue.parse(opened[0].payload)["id"]?.stringValue)

            let ctl = VigildProcess.binDirectory + "/vigilctl"
            let ok = try VigildProcess.run([ctl, "watch", "--port", String(rig.broker.port), "--topic-prefix", prefix,
                                            "--ack", id, "--by", "nurse-3", "--detail", "seen"])
            #expect(ok.status == 0, "\(ok.output)")
            #expect(ok.output.contains("acknowledged \(id)"))
            let twice = try VigildProcess.run([ctl, "watch", "--config", rig.vigild.configPath, "--ack", id, "--by", "nurse-3"])
            #expect(twice.status == 1, "already acknowledged: \(twice.output)")

            // Watching: one line per escalation as it arrives. The watcher runs in its own
            // process, so the test repeats an escalation until the watcher has seen one and exited.
            let done = DoneFlag()
            let config = rig.vigild.configPath
            let watch = Task {
                defer { done.set() }
                return try VigildProcess.run([ctl, "watch", "--config", config, "--count", "1", "--timeout", "20"])
            }
            let sample = Array(try JSONValue.parse(opened[0].payload).serialized.utf8)
            let exited = await eventually(within: .seconds(20), interval: .milliseconds(200)) {
                _ = try? rig.publish(prefix + "/escalations", sample)
                return done.isSet
            }
            #expect(exited)
            let out = try await watch.value
            #expect(out.status == 0)
            #expect(out.output.contains("[1]") && out.output.contains("URGENT") && out.output.contains("spo2-low")
                    && out.output.contains(id) && out.output.contains("patient-e2e"), "\(out.output)")
        }
    }
}
