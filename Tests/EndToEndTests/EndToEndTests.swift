import Glibc
import SerialLink
import Testing
import Uplink
import VigilTestKit
import VitalSigns

@Sendable func isReading(_ m: ReceivedMessage) -> Bool { m.topic.hasSuffix("/readings") }
@Sendable func isEscalation(_ m: ReceivedMessage) -> Bool { m.topic.hasSuffix("/escalations") }

private let spo2Plan = """
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

/// The real vigild between a pseudo-terminal oximeter and a real mosquitto.
/// Serialized: each test runs a broker, a daemon and a device, and the machine has two cores.
@Suite(.serialized) struct EndToEndTests {
    @Test func everyReadingFromTheDeviceArrivesAtTheBroker() async throws {
        try await Rig.with { rig in
            try rig.vigild.start()
            let lines = 300
            var bytes: [UInt8] = []
            for i in 0..<lines { bytes += rig.line(i, spo2: 90 + i % 10) }
            try await rig.device.write(bytes)

            // Three readings per line: SpO2, pulse rate, perfusion index.
            try await rig.subscriber.waitFor(count: lines * 3, timeout: 30, matching: isReading)
            let readings = rig.readings
            #expect(Set(readings.map(\.id)).count == lines * 3, "every reading has its own deterministic ID")
            let spo2 = readings.filter { $0.vital == "spo2" }.sorted { $0.measuredAt < $1.measuredAt }
            #expect(spo2.map { Int($0.value) } == (0..<lines).map { 90 + $0 % 10 }, "values and order as written")
            #expect(spo2.allSatisfy { $0.flags.isEmpty && $0.device == "rad8-test" })
            #expect(spo2.first?.measuredAt == rig.start.iso8601, "the device's own time is kept")

            // vigilctl status sees the same thing.
            let status = try rig.vigild.status()
            let device = status["status"]?["devices"]?.arrayValue?.first
            #expect(status["verdict"]?.stringValue == "ok")
            #expect(device?["state"]?.stringValue == "open")
            #expect(device?["readings"]?.int64Value == Int64(lines * 3))
            let drained = await eventually(within: .seconds(5)) {
                (try? rig.vigild.status())?["status"]?["outbox"]?["readings"]?["depth"]?.int64Value == 0
            }
            #expect(drained, "everything acknowledged is marked delivered")
            #expect(rig.vigild.terminate() == 0, "SIGTERM drains and exits 0")
        }
    }

    @Test func aBrokerOutageLosesNothingAndEscalationsArriveBeforeTheBacklog() async throws {
        try await Rig.with(persistentBroker: true, carePlans: ["patient-e2e.yaml": spo2Plan]) { rig in
            try rig.vigild.start()
            var written = 0
            var bytes: [UInt8] = []
            for _ in 0..<30 { bytes += rig.line(written); written += 1 }
            try await rig.device.write(bytes)
            try await rig.subscriber.waitFor(count: 90, timeout: 20, matching: isReading)

            // The broker goes away; the device keeps measuring and the patient desaturates.
            rig.broker.stop()
            bytes = []
            for i in 0..<150 {
                bytes += rig.line(written, spo2: (20..<80).contains(i) ? 86 : 97)
                written += 1
            }
            try await rig.device.write(bytes)
            let buffered = await eventually(within: .seconds(20)) {
                guard let s = try? rig.vigild.status()["status"] else { return false }
                return s["outbox"]?["readings"]?["depth"]?.int64Value == 450 && s["outbox"]?["escalations"]?["depth"]?.int64Value == 2
            }
            #expect(buffered, "the outbox holds the backlog and the escalation (raised and resolved) while the broker is down")
            let whileDown = try rig.vigild.status()
            #expect(whileDown["verdict"]?.stringValue == "attention")
            #expect(whileDown["status"]?["uplink"]?["connected"]?.boolValue == false)

            // The broker returns (with the subscriber's persistent session).
            try rig.broker.start()
            // Duplicates (same ID) may arrive after a reconnect: count distinct readings.
            let complete = await eventually(within: .seconds(30), interval: .milliseconds(50)) {
                Set(rig.readings.map(\.id)).count >= written * 3
            }
            #expect(complete, "every reading written arrives")
            try await rig.subscriber.waitFor(count: 2, timeout: 10, matching: isEscalation)

            let messages = rig.subscriber.messages
            let readings = rig.readings
            #expect(Set(readings.map(\.id)).count == written * 3, "nothing lost across the outage")
            let backlogStart = rig.start.adding(seconds: 30).iso8601
            guard let firstBacklog = messages.firstIndex(where: { ArrivedReading($0).map { $0.measuredAt >= backlogStart } ?? false }),
                  let firstEscalation = messages.firstIndex(where: isEscalation) else {
                Issue.record("no backlog or no escalation arrived")
                return
            }
            #expect(firstEscalation < firstBacklog, "the escalation overtakes the readings backlog")
            let escalations = messages.filter(isEscalation).compactMap { try? JSONValue.parse($0.payload) }
            #expect(escalations.map { $0["state"]?.stringValue } == ["open", "resolved"])
            #expect(escalations.first?["rule"]?.stringValue == "spo2-low")
            #expect(escalations.first?["care_plan_version"]?.int64Value == 3)
            #expect((escalations.first?["triggering_readings"]?.arrayValue?.count ?? 0) > 0)
            let triggering = Set(escalations.first?["triggering_readings"]?.arrayValue?.compactMap(\.stringValue) ?? [])
            #expect(triggering.isSubset(of: Set(readings.map(\.id))), "an escalation names readings that were forwarded")
        }
    }

    @Test func killMinus9MidStreamLosesNoCommittedReading() async throws {
        try await Rig.with { rig in
            try rig.vigild.start()
            var written = 0
            var writtenWhileDown: [Int] = []
            let kills = 3
            for _ in 0..<kills {
                // Stream for a moment at ~50 lines/s (a fast device; a Rad-8 sends one a
                // second), kill -9 in the middle, keep streaming while it is down.
                for _ in 0..<30 {
                    try await rig.device.write(rig.line(written))
                    written += 1
                    try await Task.sleep(for: .milliseconds(20))
                }
                rig.vigild.kill9()
                for _ in 0..<20 {
                    try await rig.device.write(rig.line(written))
                    writtenWhileDown.append(written)
                    written += 1
                }
                try rig.vigild.start()
            }
            for _ in 0..<40 {
                try await rig.device.write(rig.line(written))
                written += 1
            }

            // Every reading the store committed must reach the broker.
            let committed = try await committedIDs(rig.vigild.databasePath, atLeast: 1)
            try await rig.subscriber.waitFor(count: committed.count, timeout: 30, matching: isReading)
            let arrived = await eventually(within: .seconds(20)) { Set(rig.readings.map(\.id)).isSuperset(of: committed) }
            #expect(arrived, "every committed reading arrives after the restarts")
            // The last lines, written after the final restart, arrive too.
            let last = String(CivilDateTime(utc: rig.start.adding(seconds: Int64(written - 1))).iso8601(utcOffsetSeconds: 0).prefix(19))
            #expect(await eventually(within: .seconds(20)) { rig.readings.contains { $0.measuredAt.hasPrefix(last) } })

            let finalCommitted = try await committedIDs(rig.vigild.databasePath, atLeast: committed.count)
            let readings = rig.readings
            let delivered = Set(readings.filter { $0.vital == "spo2" }.map { String($0.measuredAt.prefix(19)) })
            let lost = written - delivered.count
            // Duplicates are allowed only as the same reading: same ID, same value.
            var byID: [String: ArrivedReading] = [:]
            for r in readings {
                if let seen = byID[r.id] { #expect(seen == r, "a duplicate carries the same ID and content") }
                byID[r.id] = r
            }
            print("kill -9 × \(kills): lines written \(written), distinct lines delivered \(delivered.count), lost \(lost), "
                  + "readings committed \(finalCommitted.count), messages \(readings.count) (\(readings.count - byID.count) duplicates)")
            // Lines written while vigild was down wait in the kernel's tty queue: the restarted
            // daemon reads them (it never flushes input at open), so none of them may be lost.
            let downLost = writtenWhileDown.filter { i in
                !delivered.contains(String(CivilDateTime(utc: rig.start.adding(seconds: Int64(i))).iso8601(utcOffsetSeconds: 0).prefix(19)))
            }
            // The one chunk being committed at a kill is the only thing a kill may cost; it can
            // hold the first of the lines written while down, and a loaded machine makes chunks
            // longer, so the bound is a few lines per kill, not zero.
            #expect(downLost.count <= kills, "lines written while vigild was down and lost: \(downLost)")
            #expect(lost <= kills * 5, "at most the bytes between read() and commit are lost at each kill")
        }
    }

    @Test func aRestartInTheMiddleOfAnOpenEscalationNeitherRepeatsNorLosesIt() async throws {
        try await Rig.with(carePlans: ["patient-e2e.yaml": spo2Plan]) { rig in
            try rig.vigild.start()
            var written = 0
            var bytes: [UInt8] = []
            for _ in 0..<40 { bytes += rig.line(written, spo2: 85); written += 1 }
            try await rig.device.write(bytes)
            try await rig.subscriber.waitFor(count: 1, timeout: 20, matching: isEscalation)

            // Restart twice while the patient is still desaturated: rule state is rebuilt from
            // the store, so the open escalation is neither raised again nor forgotten.
            for _ in 0..<2 {
                rig.vigild.kill9()
                try rig.vigild.start()
                for _ in 0..<30 {
                    try await rig.device.write(rig.line(written, spo2: 85))
                    written += 1
                    try await Task.sleep(for: .milliseconds(5))
                }
                // Everything the store committed arrives (a kill may cost the chunk being committed).
                let committed = try await committedIDs(rig.vigild.databasePath, atLeast: (written - 2) * 3)
                let caughtUp = await eventually(within: .seconds(20)) { Set(rig.readings.map(\.id)).isSuperset(of: committed) }
                #expect(caughtUp)
            }
            let status = try rig.vigild.status()
            #expect(status["status"]?["escalations"]?["open"]?.int64Value == 1)

            // Recovery resolves the same escalation.
            bytes = []
            for _ in 0..<5 { bytes += rig.line(written, spo2: 97); written += 1 }
            try await rig.device.write(bytes)
            let resolved = await eventually(within: .seconds(20)) {
                rig.subscriber.messages.filter(isEscalation).contains { $0.text.contains("\"resolved\"") }
            }
            #expect(resolved)
            // At-least-once delivery may repeat a message; the same ID and state is the same event.
            let events = rig.subscriber.messages.filter(isEscalation).compactMap { try? JSONValue.parse($0.payload) }
            let distinct = Set(events.map { "\($0["id"]?.stringValue ?? "?")/\($0["state"]?.stringValue ?? "?")" })
            #expect(distinct.count == 2 && Set(events.compactMap { $0["id"]?.stringValue }).count == 1,
                    "one episode, opened then resolved: \(distinct)")
        }
    }

    @Test func aRestartJustAfterAnEpisodeResolvedRaisesNoPhantomEscalation() async throws {
        // Sustained 0 s and a 10 s gap: the rebuild replays the last 10 s, which begin inside
        // the episode below. Replaying from its middle must not open a look-alike.
        let plan = """
            patient: patient-e2e
            version: 1
            thresholds:
              - {id: spo2-low, vital: spo2, below: 90, severity: urgent, max_gap_seconds: 10}
            """
        try await Rig.with(carePlans: ["patient-e2e.yaml": plan]) { rig in
            try rig.vigild.start()
            let now = wallClock().millisecondsSinceEpoch / 1000
            var bytes: [UInt8] = []
            for s in Int64(-8)...(-3) { bytes += rad8Line(CivilDateTime(utc: Timestamp(secondsSinceEpoch: now + s)), spo2: 85) }
            bytes += rad8Line(CivilDateTime(utc: Timestamp(secondsSinceEpoch: now - 2)), spo2: 97)
            try await rig.device.write(bytes)
            let resolved = await eventually(within: .seconds(10)) {
                rig.subscriber.messages.filter(isEscalation).contains { $0.text.contains("\"resolved\"") }
            }
            #expect(resolved)
            rig.vigild.terminate()
            try rig.vigild.start()
            let status = try rig.vigild.status()
            #expect(status["status"]?["escalations"]?["open"]?.int64Value == 0, "no escalation reopened by the rebuild")
            try await Task.sleep(for: .milliseconds(500))
            let ids = Set(rig.subscriber.messages.filter(isEscalation).compactMap { try? JSONValue.parse($0.payload)["id"]?.stringValue })
            #expect(ids.count == 1, "only the real episode was ever sent: \(ids)")
        }
    }

    @Test func aFullOutboxEvictsOldestUndeliveredReadingsAndReportsTheLossUpstream() async throws {
        try await Rig.with(persistentBroker: true, extraConfig: "outbox:\n  capacity_readings: 300\n") { rig in
            try rig.vigild.start()
            rig.broker.stop()
            var bytes: [UInt8] = []
            for i in 0..<200 { bytes += rig.line(i) }  // 600 readings into a 300-reading outbox
            try await rig.device.write(bytes)
            let evicted = await eventually(within: .seconds(20)) {
                ((try? rig.vigild.status())?["status"]?["store"]?["evicted_total"]?.int64Value ?? 0) >= 300
            }
            #expect(evicted, "the oldest undelivered readings were evicted")
            let status = try rig.vigild.status()
            let evictedCount = status["status"]?["store"]?["evicted_total"]?.int64Value ?? 0
            #expect(status["verdict"]?.stringValue == "attention")
            #expect((status["problems"]?.arrayValue ?? []).contains { $0.stringValue?.contains("evicted") == true })

            try rig.broker.start()
            // One data_loss event per eviction batch; together they count every reading lost.
            func reported() -> Int64 {
                let events = rig.subscriber.messages.filter { $0.topic.hasSuffix("/events") }.compactMap { try? JSONValue.parse($0.payload) }
                var byAt: [String: Int64] = [:]  // de-duplicate redeliveries of the same event
                for e in events where e["kind"]?.stringValue == "data_loss" {
                    byAt[e.serialized] = e["count"]?.int64Value ?? 0
                }
                return byAt.values.reduce(0, +)
            }
            let allReported = await eventually(within: .seconds(20)) { reported() == evictedCount }
            #expect(allReported, "every eviction is counted upstream: \(reported()) of \(evictedCount)")
            // What survived is the newest readings, and all of it arrives.
            let kept = 600 - Int(evictedCount)
            let arrived = await eventually(within: .seconds(20)) { Set(rig.readings.map(\.id)).count >= kept }
            #expect(arrived)
            let newest = rig.start.adding(seconds: 199).iso8601
            #expect(rig.readings.contains { $0.measuredAt == newest }, "the newest readings are the ones kept")
            #expect(!rig.readings.contains { $0.measuredAt == rig.start.iso8601 }, "the oldest were evicted")
        }
    }

    @Test func systemdHearsReadyWatchdogPingsAndStopping() async throws {
        let broker = try MosquittoBroker()
        try broker.start()
        defer { broker.cleanUp() }
        // A datagram socket standing in for systemd's $NOTIFY_SOCKET.
        let dir = makeTemporaryDirectory()
        let path = dir + "/notify.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd); unlink(path) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        func drain() -> [String] {
            var out: [String] = []
            var buffer = [UInt8](repeating: 0, count: 512)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { return out }
                out.append(String(decoding: buffer[0..<n], as: UTF8.self))
            }
        }

        let vigild = try VigildProcess(brokerPort: broker.port, devices: [])
        defer { vigild.cleanUp() }
        try vigild.start(environment: ["NOTIFY_SOCKET=\(path)", "WATCHDOG_USEC=400000"])
        var messages: [String] = []
        let pinged = await eventually(within: .seconds(5), interval: .milliseconds(50)) {
            messages += drain()
            return messages.filter { $0.contains("WATCHDOG=1") }.count >= 3
        }
        #expect(messages.contains { $0.contains("READY=1") }, "\(messages)")
        #expect(pinged, "the watchdog is pinged every WATCHDOG_USEC/2: \(messages)")
        #expect(vigild.terminate() == 0)
        messages += drain()
        #expect(messages.contains { $0.contains("STOPPING=1") }, "\(messages)")
        if let ready = messages.firstIndex(where: { $0.contains("READY=1") }),
           let stopping = messages.firstIndex(where: { $0.contains("STOPPING=1") }) {
            #expect(ready < stopping)
        }
    }

    @Test func aMalformedConfigNamesTheFileLineAndFieldAndExits78() throws {
        let dir = makeTemporaryDirectory()
        let path = dir + "/vigild.yaml"
        let text = """
            site: home-1
            gateway: gw-1
            broker:
              host: 127.0.0.1
              port: 99999
            """
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
        let result = try VigildProcess.run(["/bin/sh", "-c", "\(VigildProcess.binDirectory)/vigild --config \(path) --check-config 2>&1"])
        #expect(result.status == 78)
        #expect(result.output.contains("\(path):5:"), "names the file and line: \(result.output)")
        #expect(result.output.contains("broker.port"), "names the field: \(result.output)")

        let typo = text.replacingPort() + "outbox:\n  capacty_readings: 1000\n"
        let fd2 = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = typo.withCString { write(fd2, $0, strlen($0)) }
        close(fd2)
        let second = try VigildProcess.run(["/bin/sh", "-c", "\(VigildProcess.binDirectory)/vigild --config \(path) --check-config 2>&1"])
        #expect(second.status == 78)
        #expect(second.output.contains("capacty_readings") && second.output.contains("capacity_readings"),
                "an unknown field is refused with a suggestion: \(second.output)")
    }

    @Test func aMissingDeviceShowsUnavailableWithAReasonAndComesBackWhenPlugged() async throws {
        let broker = try MosquittoBroker()
        try broker.start()
        defer { broker.cleanUp() }
        let dir = makeTemporaryDirectory()
        let path = dir + "/rad8-not-yet"
        // A second device, present from the start, must not be affected by the missing one.
        let working = try PseudoTerminal(linkPath: dir + "/rad8-present")
        defer { working.close() }
        let vigild = try VigildProcess(brokerPort: broker.port, devices: [
            .init(id: "rad8-late", port: path, patient: "p-1"),
            .init(id: "rad8-present", port: dir + "/rad8-present", patient: "p-2"),
        ])
        defer { vigild.cleanUp() }
        try vigild.start()
        let base = wallClock().adding(seconds: -200)
        var present: [UInt8] = []
        for i in 0..<4 { present += rad8Line(CivilDateTime(utc: base.adding(seconds: Int64(i))), spo2: 96) }
        try await working.write(present)
        let otherFlows = await eventually(within: .seconds(10)) {
            (try? vigild.status())?["status"]?["devices"]?.arrayValue?.last?["readings"]?.int64Value == 12
        }
        #expect(otherFlows, "the present device reads normally while the other is missing")
        let unavailable = await eventually(within: .seconds(5)) {
            (try? vigild.status())?["status"]?["devices"]?.arrayValue?.first?["state"]?.stringValue == "unavailable"
        }
        #expect(unavailable)
        let status = try vigild.status()
        let reason = status["status"]?["devices"]?.arrayValue?.first?["reason"]?.stringValue ?? ""
        #expect(reason.contains("retrying"), "the reason says it retries: \(reason)")
        #expect(status["verdict"]?.stringValue == "attention")
        let (code, text) = try vigild.ctl(["status"])
        #expect(code == 1, "status exits 1 when something needs attention")
        #expect(text.contains("rad8-late") && text.contains("unavailable"))

        // Plug it in: a pty appears at the path, and readings flow, garbage is counted.
        let pty = try PseudoTerminal(linkPath: path)
        defer { pty.close() }
        let t0 = wallClock().adding(seconds: -100)
        var bytes: [UInt8] = Array("\u{0}\u{1}garbage that is no line at all\r\n".utf8)
        for i in 0..<5 { bytes += rad8Line(CivilDateTime(utc: t0.adding(seconds: Int64(i))), spo2: 95) }
        try await pty.write(bytes)
        let flowing = await eventually(within: .seconds(15)) {
            let d = (try? vigild.status())?["status"]?["devices"]?.arrayValue?.first
            return d?["state"]?.stringValue == "open" && d?["readings"]?.int64Value == 15
        }
        #expect(flowing, "picked up within the back-off and reading")
        let device = try vigild.status()["status"]?["devices"]?.arrayValue?.first
        #expect((device?["rejected_frames"]?.int64Value ?? 0) >= 1, "garbage is counted per device")
    }
}

/// Reading IDs in the database, read with the sqlite3 shell (a second, independent reader).
private func committedIDs(_ database: String, atLeast: Int) async throws -> Set<String> {
    var ids = Set<String>()
    _ = await eventually(within: .seconds(10), interval: .milliseconds(100)) {
        let out = (try? VigildProcess.run(["/usr/bin/sqlite3", "-readonly", database, "SELECT reading_id FROM readings;"]))?.output ?? ""
        ids = Set(out.split(separator: "\n").map(String.init))
        return ids.count >= atLeast
    }
    return ids
}

extension String {
    fileprivate func replacingPort() -> String {
        replacing("port: 99999", with: "port: 1883") + "\n"
    }
}
