import BluetoothLink
import Glibc
import SerialLink
import Testing
import Uplink
import VigilTestKit
import VitalSigns

private let spo2Plan = """
    patient: patient-fault
    version: 1
    thresholds:
      - id: spo2-low
        vital: spo2
        below: 90
        sustained_seconds: 10
        hysteresis: 2
        severity: urgent
    """

/// The fault suite (issue 8): the real vigild, real mosquitto, pseudo-terminal and simulated
/// BLE devices, each fault injected for real. Skipped unless `VIGIL_FAULTS` is `short` or
/// `long` (scripts/faults). Each test prints one `FAULT` line with the counts.
@Suite(.serialized, .enabled(if: FaultMode.enabled, "set VIGIL_FAULTS=short|long (scripts/faults)"))
struct FaultTests {
    // MARK: 1. kill -9

    /// kill -9 at random points of a serial stream, N times (5 short, 50 long; VIGIL_FAULTS_KILLS).
    /// Lines keep coming while vigild is down (they wait in the tty queue). Must hold: every
    /// committed reading arrives; what is lost is only what was between read() and commit.
    @Test func killMinus9DuringASerialStream() async throws {
        let kills = FaultMode.knob("VIGIL_FAULTS_KILLS", short: 5, long: 50)
        var rng = SplitMix64(state: FaultMode.seed)
        try await SerialRig.with { rig in
            try rig.vigild.start()
            for _ in 0..<kills {
                // Stream at ~50 lines/s for a random 60–1000 ms, kill at that point.
                let lines = Int.random(in: 3...50, using: &rng)
                for _ in 0..<lines {
                    try await rig.writeLine()
                    try await Task.sleep(for: .milliseconds(20))
                }
                rig.vigild.kill9()
                for _ in 0..<Int.random(in: 0...10, using: &rng) { try await rig.writeLine() }
                try rig.vigild.start()
            }
            for _ in 0..<20 { try await rig.writeLine() }
            // The last line's readings commit, then everything committed must arrive.
            let lastAt = rig.start.adding(seconds: Int64(rig.linesWritten - 1)).millisecondsSinceEpoch
            let tail = await eventually(within: .seconds(30), interval: .milliseconds(100)) {
                !sqlLines(rig.vigild.databasePath, "SELECT 1 FROM readings WHERE measured_at = \(lastAt) LIMIT 1;").isEmpty
            }
            #expect(tail, "the lines written after the last restart are committed")
            let delivered = await rig.awaitDelivery(seconds: 60)
            var report = FaultReport(name: "kill9-serial")
            report.offered = rig.linesWritten * 3
            _ = measure(&report, database: rig.vigild.databasePath, subscriber: rig.subscriber, vigild: rig.vigild)
            let lost = rig.bytesLost()
            report.bytesLost = lost.bytes
            report.extra = ["kills=\(kills)", "lines_lost=\(lost.lines)", "seed=\(FaultMode.seed)"]
            report.print()
            #expect(delivered && report.committedNotDelivered == 0, "every committed reading arrives")
            // At most the chunk being committed at each kill (a few lines on a loaded machine).
            #expect(lost.lines <= kills * 5, "lines lost: \(lost.lines) over \(kills) kills")
        }
    }

    /// Blood pressure measurements by indication (BLS v1.1 §3.1: indicated, confirmed by the
    /// client), vigild killed at random points N times. The scripted peer replays its whole
    /// script on every connection, as a monitor that never had a confirmation does. Must hold:
    /// every confirmed indication was committed before the confirmation (ATT Handle Value
    /// Confirmation, Core v5.3 Vol 3 Part F §3.4.7.3), so after each kill the database holds
    /// at least as many measurements as the peer saw confirmed; nothing is lost at the end.
    @Test func killMinus9DuringBLEIndications() async throws {
        let kills = FaultMode.knob("VIGIL_FAULTS_KILLS", short: 5, long: 50)
        let measurements = 30
        var rng = SplitMix64(state: FaultMode.seed &+ 1)
        let directory = makeTemporaryDirectory(prefix: "vigil-faults-ble")
        let broker = try MosquittoBroker()
        try broker.start()
        let config = "devices:\n  - {id: bp-fault, profile: ble-blood-pressure, address: \"02:00:00:00:00:01\", "
            + "transport: \"seqpacket:\(directory)/bp.sock\", patient: patient-fault}\n"
        let vigild = try VigildProcess(brokerPort: broker.port, devices: [], extraConfig: config)
        let subscriber = try await TestSubscriber.start(broker: broker, filter: "vigil/v1/#",
                                                        clientID: "faults-ble-\(getpid())", cleanSession: true)
        let peer = try PeerHandle.start(path: directory + "/bp.sock", capture: bloodPressureMonitor(measurements))
        defer {
            peer.peripheral.stop()
            vigild.cleanUp()
            broker.cleanUp()
        }
        func committedMeasurements() -> Int {
            Int(sqlLines(vigild.databasePath, "SELECT count(DISTINCT measured_at) FROM readings WHERE vital = 'systolic_bp';").first ?? "") ?? -1
        }
        try vigild.start()
        var violations: [String] = []
        var confirmedAtKills: [Int] = []
        for k in 0..<kills {
            // Connection k is the one vigild opened after its k-th start.
            let index = k
            let connected = await poll(within: .seconds(30)) { peer.connections.count > index }
            #expect(connected, "vigild connects to the peer after restart \(k)")
            guard connected else {
                Issue.record("vigild log:\n\(vigild.log())")
                break
            }
            let connection = peer.connections[index]
            // Kill after a random number of confirmations (0 … all), mid-stream.
            let target = Int.random(in: 0...measurements, using: &rng)
            _ = await poll(within: .seconds(20), interval: .milliseconds(5)) { await connection.confirmationsReceived >= target }
            vigild.kill9()
            let confirmed = await connection.confirmationsReceived
            confirmedAtKills.append(confirmed)
            let committed = committedMeasurements()
            if committed < confirmed { violations.append("kill \(k): \(confirmed) confirmed, \(committed) committed") }
            try vigild.start()
        }
        // The last connection plays the whole script.
        _ = await poll(within: .seconds(30)) { peer.connections.count > kills }
        if let last = peer.connections.last {
            let all = await poll(within: .seconds(30)) { await last.confirmationsReceived >= measurements }
            #expect(all, "the final connection confirms every measurement")
        }
        let delivered = await eventually(within: .seconds(30), interval: .milliseconds(100)) {
            let committed = Set(sqlLines(vigild.databasePath, "SELECT reading_id FROM readings;"))
            return committed.count >= measurements * 4 && committed.isSubset(of: Set(subscriber.messages.compactMap(Arrived.init).map(\.id)))
        }
        var report = FaultReport(name: "kill9-ble")
        report.offered = measurements * 4
        _ = measure(&report, database: vigild.databasePath, subscriber: subscriber, vigild: vigild)
        report.extra = ["kills=\(kills)", "connections=\(peer.connections.count)", "confirmed_unconfirmed_lost=\(violations.count)",
                        "confirmed_at_kills=\(confirmedAtKills.map(String.init).joined(separator: ","))", "seed=\(FaultMode.seed)"]
        report.print()
        await subscriber.stop()
        #expect(violations.isEmpty, "a confirmed indication was not committed: \(violations)")
        #expect(delivered, "every measurement committed once and delivered")
        #expect(report.committed == measurements * 4, "4 readings per measurement, each ID once (deterministic IDs)")
        // One row (one outbox entry) per ID: a replayed measurement whose clock is not believed
        // is stamped with a new receive time, and must still not be stored (and sent) again.
        let rows = Int(sqlLines(vigild.databasePath, "SELECT count(*) FROM readings;").first ?? "") ?? -1
        #expect(rows == measurements * 4, "a replayed measurement adds no row")
        #expect(report.committedNotDelivered == 0)
    }

    // MARK: 2. broker outage

    /// The broker is down for VIGIL_FAULTS_OUTAGE_SECONDS (5 short, 60 long) while the patient
    /// desaturates. Must hold: nothing lost; the escalation arrives before the backlog.
    @Test func aBrokerOutageLosesNothingAndEscalationsComeFirst() async throws {
        let outage = FaultMode.knob("VIGIL_FAULTS_OUTAGE_SECONDS", short: 5, long: 60)
        try await SerialRig.with(persistentBroker: true, carePlans: ["patient-fault.yaml": spo2Plan]) { rig in
            try rig.vigild.start()
            for _ in 0..<20 { try await rig.writeLine() }
            _ = try await rig.subscriber.waitFor(count: 60, timeout: 20, matching: isReading)
            rig.broker.stop()
            let firstDown = rig.linesWritten
            // 20 lines/s during the outage; desaturated from 1 s in to the end.
            let clock = ContinuousClock()
            let end = clock.now.advanced(by: .seconds(outage))
            var i = 0
            while clock.now < end {
                try await rig.writeLine(spo2: i >= 20 ? 85 : 97)
                i += 1
                try await Task.sleep(for: .milliseconds(50))
            }
            let outboxFull = await eventually(within: .seconds(20), interval: .milliseconds(100)) {
                guard let s = try? rig.vigild.status()["status"] else { return false }
                return (s["outbox"]?["escalations"]?["depth"]?.int64Value ?? 0) >= 1
            }
            #expect(outboxFull || i < 40, "the escalation waits in its lane while the broker is down")
            try rig.broker.start()
            let delivered = await rig.awaitDelivery(seconds: 60)
            var report = FaultReport(name: "broker-outage")
            report.offered = rig.linesWritten * 3
            _ = measure(&report, database: rig.vigild.databasePath, subscriber: rig.subscriber, vigild: rig.vigild)
            report.bytesLost = rig.bytesLost().bytes
            let messages = rig.subscriber.messages
            let backlogStart = rig.start.adding(seconds: Int64(firstDown)).iso8601
            let firstBacklog = messages.firstIndex { Arrived($0).map { $0.measuredAt >= backlogStart } ?? false }
            let firstEscalation = messages.firstIndex(where: isEscalation)
            report.extra = ["outage_s=\(outage)", "escalation_index=\(firstEscalation.map(String.init) ?? "none")",
                            "first_backlog_index=\(firstBacklog.map(String.init) ?? "none")"]
            report.print()
            #expect(delivered && report.committedNotDelivered == 0, "nothing committed is lost across the outage")
            #expect(report.committed == report.offered, "every line was committed while the broker was down")
            if i >= 40 {
                if let e = firstEscalation, let b = firstBacklog {
                    #expect(e < b, "the escalation overtakes the backlog")
                } else {
                    Issue.record("no escalation or no backlog arrived")
                }
            }
        }
    }

    // MARK: 3. broker restart with messages in flight

    /// A persistent broker restarted N times (3 short, 20 long) while readings stream and the
    /// outbox drains: stopped with SIGTERM (mosquitto saves its persistence file), or crashed
    /// with SIGKILL. Must hold after graceful restarts: nothing committed is lost. After
    /// crashes the loss is counted, not asserted: mosquitto acknowledges a QoS 1 PUBLISH before
    /// it writes its persistence file (every `autosave_interval`, 1800 s by default, and at
    /// shutdown), so a crash loses what it had acknowledged but not yet passed on — vigild has
    /// by then marked it delivered and cannot know.
    @Test(arguments: [false, true])
    func brokerRestartsWithMessagesInFlightLoseNothing(crash: Bool) async throws {
        let restarts = FaultMode.knob("VIGIL_FAULTS_BROKER_RESTARTS", short: 3, long: 20)
        var rng = SplitMix64(state: FaultMode.seed &+ 2)
        try await SerialRig.with(persistentBroker: true) { rig in
            try rig.vigild.start()
            for _ in 0..<restarts {
                // A burst the outbox is still draining when the broker goes.
                for _ in 0..<Int.random(in: 20...80, using: &rng) { try await rig.writeLine() }
                try await Task.sleep(for: .milliseconds(Int.random(in: 0...150, using: &rng)))
                if crash { rig.broker.kill() } else { rig.broker.stop() }
                for _ in 0..<10 { try await rig.writeLine() }
                try rig.broker.start()
            }
            for _ in 0..<10 { try await rig.writeLine() }
            let delivered = await rig.awaitDelivery(seconds: crash ? 20 : 60)
            var report = FaultReport(name: crash ? "broker-crash" : "broker-restart")
            report.offered = rig.linesWritten * 3
            _ = measure(&report, database: rig.vigild.databasePath, subscriber: rig.subscriber, vigild: rig.vigild)
            report.bytesLost = rig.bytesLost().bytes
            report.extra = ["restarts=\(restarts)", "signal=\(crash ? "KILL" : "TERM")", "seed=\(FaultMode.seed)"]
            report.print()
            #expect(report.committed == report.offered, "vigild itself lost nothing")
            if !crash {
                #expect(delivered && report.committedNotDelivered == 0, "every committed reading arrives")
            }
        }
    }

    // MARK: 4. disk full

    /// The database on a size-limited tmpfs (VIGIL_FAULTS_DISK_KB, 1024 by default; needs
    /// root for `mount`) with a 192 KiB reserve (`outbox.disk_reserve_kib`) and 256 KiB of the
    /// test's own ballast. 100 lines delivered while the broker is up; then the broker goes and
    /// the device streams until vigild has made room for a while. Must hold: vigild keeps
    /// running and status says the disk is full, with counts; the eviction order holds (the
    /// delivered readings went first, then the oldest undelivered: what is left is one unbroken
    /// run of the newest lines, and the priority lane is whole); commits go on while full; once
    /// the broker returns everything stored arrives, the `data_loss` events add up to what was
    /// evicted, and the delivery marks are written; once the ballast goes, status clears.
    @Test(.enabled(if: FaultTests.canMountTmpfs, "mounting a tmpfs needs root (CAP_SYS_ADMIN)"))
    func aFullDiskKeepsTheDaemonRunningAndSaysSo() async throws {
        let kb = FaultMode.knob("VIGIL_FAULTS_DISK_KB", short: 1024, long: 1024)
        var mounted = ""
        defer { if !mounted.isEmpty { _ = try? VigildProcess.run(["/bin/umount", "-l", mounted], quiet: true) } }
        try await SerialRig.with(persistentBroker: true, extraConfig: "outbox:\n  disk_reserve_kib: 192\n", configure: { vigild in
            let state = vigild.directory + "/state"
            let (rc, _) = try VigildProcess.run(["/bin/mount", "-t", "tmpfs", "-o", "size=\(kb)k,mode=0700", "tmpfs", state])
            guard rc == 0 else { throw MosquittoBrokerError("mount", "cannot mount a tmpfs on \(state)") }
            mounted = state
            // Ballast, deleted at the end: space coming back from outside.
            let (brc, _) = try VigildProcess.run(["/bin/dd", "if=/dev/zero", "of=\(state)/ballast", "bs=1024", "count=256"], quiet: true)
            guard brc == 0 else { throw MosquittoBrokerError("dd", "cannot write the ballast file") }
        }) { rig in
            let db = rig.vigild.databasePath
            func diskFull() -> JSONValue? { (try? rig.vigild.status())?["status"]?["store"]?["disk_full"] }
            /// Line indexes of the stored SpO2 readings, in commit (seq) order.
            func storedLines() -> [Int] {
                sqlLines(db, "SELECT measured_at FROM readings WHERE vital = 'spo2' ORDER BY seq;").compactMap { Int64($0) }
                    .map { Int(($0 - rig.start.millisecondsSinceEpoch) / 1000) }
            }
            try rig.vigild.start()
            // Phase 1: 100 lines delivered and marked.
            for _ in 0..<100 { try await rig.writeLine() }
            let marked = await eventually(within: .seconds(60), interval: .milliseconds(200)) {
                sqlLines(db, "SELECT count(*) FROM readings WHERE delivered = 1;").first == "300"
            }
            #expect(marked, "phase 1: 300 readings delivered and marked")
            #expect(diskFull()?["reserve_held"]?.boolValue == true, "the reserve is in place")
            rig.broker.stop()
            // Phase 2: stream (never blocking) until vigild has evicted for space, or 90 s.
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: .seconds(90))
            var evictedForSpace: Int64 = 0
            while clock.now < deadline {
                if try rig.tryWriteLine() {
                    if rig.linesWritten % 25 != 0 { continue }
                } else {
                    try await Task.sleep(for: .milliseconds(100))
                }
                let d = diskFull()
                evictedForSpace = d?["evicted_for_space_total"]?.int64Value ?? 0
                if d?["full"]?.boolValue == true && evictedForSpace >= 150 { break }
            }
            let status = try rig.vigild.status()
            let problems = (status["problems"]?.arrayValue ?? []).compactMap(\.stringValue)
            let store = status["status"]?["store"]
            print("disk full: problems: \(problems); store: \(store?.serialized ?? "")")
            #expect(rig.vigild.isRunning && status["verdict"]?.stringValue != "ok")
            #expect(store?["disk_full"]?["full"]?.boolValue == true, "status says the disk is full")
            #expect(store?["disk_full"]?["reserve_held"]?.boolValue == false, "the reserve was released")
            #expect(problems.contains { $0.contains("disk holding the database is full") && $0.contains("evicted for space") },
                    "status names the full disk and the count")
            #expect(evictedForSpace > 0, "readings were evicted to make room")
            // Commits go on while the disk is full.
            let before = storedLines().last ?? -1
            let written = rig.linesWritten
            for _ in 0..<10 { _ = try rig.tryWriteLine() }
            let goingOn = await eventually(within: .seconds(30), interval: .milliseconds(200)) {
                (storedLines().last ?? -1) >= max(before, written - 1)
            }
            #expect(goingOn, "commits go on while the disk is full")
            if !goingOn { print("disk full: commits stalled; vigild log tail:\n" + String(rig.vigild.log().suffix(3000))) }
            // The eviction order: what is left is one unbroken run ending at the newest line,
            // which starts after every delivered line and every evicted one.
            let stored = storedLines()
            let pruned = store?["disk_full"]?["pruned_for_space_total"]?.int64Value ?? 0
            #expect(!stored.isEmpty && stored == Array(stored.first!...stored.last!), "what is left is unbroken")
            #expect(pruned >= 300 && (stored.first ?? 0) >= 100, "the delivered lines went first")
            #expect(sqlLines(db, "SELECT count(*) FROM priority_outbox;").first.flatMap { Int($0) } ?? 0 >= 1)

            // The broker returns: everything stored arrives and the marks are written.
            try rig.broker.start()
            let delivered = await eventually(within: .seconds(60), interval: .milliseconds(200)) {
                let committed = Set(sqlLines(db, "SELECT reading_id FROM readings;"))
                return !committed.isEmpty && committed.isSubset(of: Set(rig.subscriber.messages.compactMap(Arrived.init).map(\.id)))
            }
            let marksWritten = await eventually(within: .seconds(30), interval: .milliseconds(200)) {
                sqlLines(db, "SELECT count(*) FROM readings WHERE delivered = 0;").first == "0"
                    && sqlLines(db, "SELECT count(*) FROM priority_outbox WHERE delivered = 0;").first == "0"
            }
            // The data_loss events (reason "disk full") add up to what status says was evicted
            // (at-least-once: each distinct event counted once).
            func lossCount() -> Int64 {
                var seen = Set<String>()
                var total: Int64 = 0
                for m in rig.subscriber.messages where m.topic.hasSuffix("/events") {
                    guard let e = try? JSONValue.parse(m.payload), e["kind"]?.stringValue == "data_loss",
                          e["detail"]?["reason"]?.stringValue == "disk full", seen.insert(e.serialized).inserted else { continue }
                    total += e["count"]?.int64Value ?? 0
                }
                return total
            }
            var evictedTotal: Int64 = -1
            let lossesAddUp = await eventually(within: .seconds(15), interval: .milliseconds(200)) {
                evictedTotal = diskFull()?["evicted_for_space_total"]?.int64Value ?? -1
                return lossCount() == evictedTotal
            }
            #expect(lossesAddUp, "data_loss events (\(lossCount())) add up to what was evicted (\(evictedTotal))")

            // Space comes back: the reserve is made again and status clears.
            unlink(rig.vigild.directory + "/state/ballast")
            let cleared = await eventually(within: .seconds(30), interval: .milliseconds(200)) {
                let d = diskFull()
                return d?["full"]?.boolValue == false && d?["reserve_held"]?.boolValue == true
            }
            var report = FaultReport(name: "disk-full")
            report.offered = rig.linesWritten * 3
            _ = measure(&report, database: db, subscriber: rig.subscriber, vigild: rig.vigild)
            report.bytesLost = rig.bytesLost().bytes
            report.extra = ["disk_kb=\(kb)", "evicted_for_space=\(evictedTotal)", "pruned_for_space=\(pruned)",
                            "marks_written=\(marksWritten)", "cleared=\(cleared)"]
            report.print()
            #expect(delivered, "everything stored is delivered once the broker is back")
            #expect(marksWritten, "the delivery marks are written on the full disk")
            #expect(cleared, "status clears once space is back")
            #expect(rig.vigild.isRunning)
            rig.vigild.kill9()
            _ = try? VigildProcess.run(["/bin/umount", "-l", mounted], quiet: true)
            mounted = ""
        }
    }


    // MARK: 6. a flapping device, a BLE peer that stops, a message the broker refuses

    /// The serial device unplugged and plugged back N times (5 short, 30 long) while it
    /// streams. Must hold: everything committed arrives, no reading ID twice with different
    /// content, the device is open again at the end, and only lines in the tty queue at the
    /// moment of unplugging are lost.
    @Test func aFlappingDeviceStaysConsistent() async throws {
        let flaps = FaultMode.knob("VIGIL_FAULTS_FLAPS", short: 5, long: 30)
        var rng = SplitMix64(state: FaultMode.seed &+ 3)
        try await SerialRig.with { rig in
            func state() -> String? { (try? rig.vigild.status())?["status"]?["devices"]?.arrayValue?.first?["state"]?.stringValue }
            try rig.vigild.start()
            var offered = 0
            for _ in 0..<flaps {
                for _ in 0..<Int.random(in: 5...30, using: &rng) {
                    try await rig.writeLine()
                    offered += 1
                    try await Task.sleep(for: .milliseconds(10))
                }
                try await rig.replug(after: .milliseconds(Int.random(in: 50...600, using: &rng))) {
                    // vigild has seen the hang-up before the new device appears.
                    _ = await eventually(within: .seconds(5), interval: .milliseconds(20)) { state() != "open" }
                }
                rig.skipLines(1)
                // A real adapter drops what it receives while nobody has the port open: the
                // device's lines count from the moment vigild has reopened it.
                let open = await eventually(within: .seconds(20), interval: .milliseconds(20)) { state() == "open" }
                #expect(open, "vigild reopens the device after a replug")
            }
            // vigild reopens the port within its back-off; then the last lines must arrive.
            let reopened = await eventually(within: .seconds(20), interval: .milliseconds(100)) {
                (try? rig.vigild.status())?["status"]?["devices"]?.arrayValue?.first?["state"]?.stringValue == "open"
            }
            #expect(reopened, "the device is open again after the last replug")
            for _ in 0..<10 {
                try await rig.writeLine()
                offered += 1
            }
            let delivered = await rig.awaitDelivery(seconds: 30)
            var report = FaultReport(name: "device-flapping")
            report.offered = offered * 3
            _ = measure(&report, database: rig.vigild.databasePath, subscriber: rig.subscriber, vigild: rig.vigild)
            let lost = rig.bytesLost()
            report.bytesLost = lost.bytes
            report.extra = ["flaps=\(flaps)", "lines_lost=\(lost.lines)"]
            report.print()
            #expect(delivered && report.committedNotDelivered == 0)
            #expect(report.committed % 3 == 0, "readings of a line are committed together")
            #expect(lost.lines <= flaps * 3, "only lines in the tty queue at an unplug are lost: \(lost.lines)")
            #expect(rig.vigild.isRunning)
        }
    }

    /// A blood pressure monitor that indicates 5 measurements and then stops answering
    /// (stalls mid-session, as a peer whose radio froze). Must hold: the 5 are committed and
    /// delivered, vigild keeps running and still shuts down cleanly.
    @Test func aBLEPeerThatStopsMidSessionLeavesEverythingConsistent() async throws {
        let directory = makeTemporaryDirectory(prefix: "vigil-faults-ble")
        let broker = try MosquittoBroker()
        try broker.start()
        let config = "devices:\n  - {id: bp-stall, profile: ble-blood-pressure, address: \"02:00:00:00:00:02\", "
            + "transport: \"seqpacket:\(directory)/bp.sock\", patient: patient-fault}\n"
        let vigild = try VigildProcess(brokerPort: broker.port, devices: [], extraConfig: config)
        let subscriber = try await TestSubscriber.start(broker: broker, filter: "vigil/v1/#",
                                                        clientID: "faults-stall-\(getpid())", cleanSession: true)
        // After the stall the peer answers no request, but still indicates a sixth measurement.
        let capture = bloodPressureMonitor(5) + "stall\nindicate 2A35 = 06 80 00 50 00 60 00 EA 07 0B 19 09 00 00 40 00\n"
        let peer = try PeerHandle.start(path: directory + "/bp.sock", capture: capture)
        defer {
            peer.peripheral.stop()
            vigild.cleanUp()
            broker.cleanUp()
        }
        try vigild.start()
        let confirmed = await poll(within: .seconds(20)) { await peer.connections.first?.confirmationsReceived == 5 }
        #expect(confirmed, "the five indications before the stall are confirmed")
        let delivered = await eventually(within: .seconds(20), interval: .milliseconds(100)) {
            Set(subscriber.messages.compactMap(Arrived.init).map(\.id)).count >= 24
        }
        // Give the stalled link time to misbehave (a request to the peer now goes unanswered).
        try await Task.sleep(for: .seconds(2))
        let status = try vigild.status()
        var report = FaultReport(name: "ble-peer-stall")
        report.offered = 24
        _ = measure(&report, database: vigild.databasePath, subscriber: subscriber, vigild: vigild)
        let device = status["status"]?["devices"]?.arrayValue?.first
        report.extra = ["device_state=\(device?["state"]?.stringValue ?? "?")", "connections=\(peer.connections.count)"]
        report.print()
        await subscriber.stop()
        #expect(delivered && report.committed == 24 && report.committedNotDelivered == 0)
        #expect(vigild.isRunning && vigild.terminate() == 0, "vigild still shuts down cleanly with a stalled peer")
    }

    /// A broker whose ACL denies the escalations topic (MQTT 5 PUBACK 0x87). Must hold: the
    /// refused escalation is quarantined with a counted `publish_refused` event, readings keep
    /// flowing, and the client does not reconnect in a loop.
    @Test func aMessageTheBrokerRefusesIsQuarantinedAndTheRestFlows() async throws {
        let dir = makeTemporaryDirectory(prefix: "vigil-faults-acl")
        let acl = dir + "/acl"
        let rules = "topic read #\ntopic write vigil/v1/+/+/readings\ntopic write vigil/v1/+/+/events\ntopic write vigil/v1/+/+/status\n"
        let fd = open(acl, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        #expect(fd >= 0)
        _ = Array(rules.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        try await SerialRig.with(carePlans: ["patient-fault.yaml": spo2Plan],
                                 brokerOptions: .init(extraConfig: ["acl_file \(acl)"])) { rig in
            try rig.vigild.start()
            for i in 0..<60 { try await rig.writeLine(spo2: i < 10 ? 97 : 85) }
            let quarantined = await eventually(within: .seconds(20), interval: .milliseconds(100)) {
                ((try? rig.vigild.status())?["status"]?["uplink"]?["quarantined"]?.int64Value ?? 0) >= 1
            }
            let before = try rig.vigild.status()["status"]?["uplink"]
            for _ in 0..<20 { try await rig.writeLine(spo2: 85) }
            let delivered = await rig.awaitDelivery(seconds: 20)
            try await Task.sleep(for: .seconds(2))
            let after = try rig.vigild.status()["status"]?["uplink"]
            let refusedEvents = rig.subscriber.messages.filter { $0.topic.hasSuffix("/events") && $0.text.contains("publish_refused") }
            var report = FaultReport(name: "broker-refusal")
            report.offered = rig.linesWritten * 3
            _ = measure(&report, database: rig.vigild.databasePath, subscriber: rig.subscriber, vigild: rig.vigild)
            let q = after?["quarantined"]?.int64Value ?? 0
            report.extra = ["quarantined=\(q)", "publish_refused_events=\(refusedEvents.count)",
                            "escalations_arrived=\(rig.subscriber.messages.filter(isEscalation).count)",
                            "reconnects_during=\((after?["reconnect_attempts"]?.int64Value ?? 0) - (before?["reconnect_attempts"]?.int64Value ?? 0))"]
            report.print()
            #expect(quarantined, "the refused escalation is quarantined")
            #expect(!refusedEvents.isEmpty, "a publish_refused event is counted upstream")
            #expect(delivered && report.committedNotDelivered == 0, "readings keep flowing")
            #expect(after?["connected"]?.boolValue == true)
            #expect(after?["reconnect_attempts"]?.int64Value == before?["reconnect_attempts"]?.int64Value, "no reconnect loop")
            #expect(rig.subscriber.messages.filter(isEscalation).isEmpty, "the denied topic got nothing")
        }
    }

    /// The gateway's clock jumps back an hour, forward two, and back to true while the device
    /// streams — for vigild alone, through libfaketime (`LD_PRELOAD`, its offset read from a
    /// file at every call), so the host clock is untouched. Must hold: readings keep the
    /// device's times and order (one line a second), none is flagged for the gateway's jump,
    /// and everything committed is delivered. Skipped when libfaketime is not installed
    /// (`apt-get install libfaketime`).
    @Test(.enabled(if: access(FaultTests.libfaketime, R_OK) == 0, "libfaketime is not installed"))
    func theGatewayClockJumpingKeepsReadingTimesAndOrder() async throws {
        let offsetFile = makeTemporaryDirectory(prefix: "vigil-faults-clock") + "/offset"
        func setOffset(_ text: String) throws {
            let fd = open(offsetFile, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            guard fd >= 0 else { throw MosquittoBrokerError("open", errno: errno, "cannot write the faketime offset file") }
            _ = Array((text + "\n").utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        try setOffset("+0")
        try await SerialRig.with { rig in
            try rig.vigild.start(environment: [
                // Under the shim the Swift runtime sees no command line: the config comes by
                // environment instead.
                "VIGIL_CONFIG=\(rig.vigild.configPath)",
                "LD_PRELOAD=\(FaultTests.libfaketime)", "FAKETIME_TIMESTAMP_FILE=\(offsetFile)",
                "FAKETIME_NO_CACHE=1", "FAKETIME_DONT_FAKE_MONOTONIC=1",
            ])
            for offset in ["+0", "-3600", "+7200", "+0"] {
                try setOffset(offset)
                for _ in 0..<20 {
                    try await rig.writeLine()
                    try await Task.sleep(for: .milliseconds(10))
                }
                let lastAt = rig.start.adding(seconds: Int64(rig.linesWritten - 1)).millisecondsSinceEpoch
                _ = await eventually(within: .seconds(10), interval: .milliseconds(50)) {
                    !sqlLines(rig.vigild.databasePath, "SELECT 1 FROM readings WHERE measured_at = \(lastAt) LIMIT 1;").isEmpty
                }
            }
            let delivered = await rig.awaitDelivery(seconds: 30)
            let rows = sqlLines(rig.vigild.databasePath,
                                "SELECT measured_at, received_at, flags FROM readings WHERE vital = 'spo2' ORDER BY seq;")
                .map { $0.split(separator: "|").compactMap { Int64($0) } }
            let measured = rows.compactMap(\.first)
            let expected = (0..<rig.linesWritten).map { rig.start.adding(seconds: Int64($0)).millisecondsSinceEpoch }
            let received = rows.compactMap { $0.count > 1 ? $0[1] : nil }
            let backwards = zip(received, received.dropFirst()).filter { $0.1 < $0.0 }.count
            let flagged = rows.filter { $0.count > 2 && $0[2] != 0 }.count
            var report = FaultReport(name: "clock-jump")
            report.offered = rig.linesWritten * 3
            _ = measure(&report, database: rig.vigild.databasePath, subscriber: rig.subscriber, vigild: rig.vigild)
            report.bytesLost = rig.bytesLost().bytes
            report.extra = ["offsets=0,-1h,+2h,0", "received_at_backwards=\(backwards)", "flagged=\(flagged)"]
            report.print()
            #expect(measured == expected, "device times kept, in the device's order")
            #expect(backwards >= 1, "the gateway clock did jump back (received_at went backwards): the hook works")
            #expect(flagged == 0, "no reading is flagged for the gateway's own jump")
            #expect(delivered && report.committedNotDelivered == 0)
        }
    }

    static let libfaketime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

    /// Whether this process may mount a tmpfs (root in a container may not): tried once.
    static let canMountTmpfs: Bool = {
        guard FaultMode.enabled, getuid() == 0 else { return false }
        let dir = makeTemporaryDirectory(prefix: "vigil-faults-mount")
        defer { rmdir(dir) }
        guard (try? VigildProcess.run(["/bin/mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], quiet: true))?.status == 0 else { return false }
        _ = try? VigildProcess.run(["/bin/umount", dir], quiet: true)
        return true
    }()
}

/// Run by scripts/faults with the other scenarios (CI's fault step), not in every `swift test`:
/// with the damage-during-operation cases it is ~11 s of vigild starts, kills and sqlite3 runs
/// that block threads of the cooperative pool, and the main suite's scripted BLE peers and
/// meters are served on that pool (two threads here).
@Suite(.serialized, .enabled(if: FaultMode.enabled, "set VIGIL_FAULTS=short|long (scripts/faults)"))
struct DatabaseQuarantineTests {
    // MARK: 5. SQLite file corruption

    /// The database file is damaged while vigild is stopped (its header overwritten: "file is
    /// not a database"). Must hold: the damaged file is kept under a new name, a fresh
    /// database is started, the loss is reported loudly (log, status, a data_loss event
    /// upstream), and readings flow again.
    @Test func aCorruptDatabaseIsQuarantinedKeptAndReplaced() async throws {
        try await SerialRig.with { rig in
            try rig.vigild.start()
            for _ in 0..<20 { try await rig.writeLine() }
            #expect(await rig.awaitDelivery(seconds: 20))
            rig.vigild.terminate()
            let before = sqlLines(rig.vigild.databasePath, "SELECT count(*) FROM readings;").first ?? "?"
            // Overwrite the first page (the 100-byte header and the schema's root page).
            let fd = open(rig.vigild.databasePath, O_WRONLY)
            #expect(fd >= 0)
            let garbage = [UInt8](repeating: 0xA5, count: 4096)
            _ = garbage.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
            close(fd)
            var started = true
            do { try rig.vigild.start() } catch {
                started = false
                Issue.record("vigild did not start on a corrupt database: \(error)")
            }
            let files = (try? VigildProcess.run(["/bin/ls", "-1", rig.vigild.directory + "/state"]).output) ?? ""
            print("corrupt database: readings before \(before); vigild started \(started); state directory: \(files.split(separator: "\n"))")
            guard started else { return }
            #expect(files.contains("corrupt"), "the damaged file is kept under a quarantine name")
            let status = try rig.vigild.status()
            let problems = (status["problems"]?.arrayValue ?? []).compactMap(\.stringValue)
            #expect(problems.contains { $0.contains("corrupt") }, "status says the database was replaced: \(problems)")
            #expect(rig.vigild.log().contains("corrupt"), "the log says so")
            for _ in 0..<10 { try await rig.writeLine() }
            #expect(await rig.awaitDelivery(seconds: 20), "readings flow into the fresh database")
            let loss = await eventually(within: .seconds(10)) {
                rig.subscriber.messages.contains { $0.topic.hasSuffix("/events") && $0.text.contains("database_replaced") }
            }
            #expect(loss, "a data_loss event names the replaced database upstream")
            var report = FaultReport(name: "corrupt-db")
            report.offered = rig.linesWritten * 3
            _ = measure(&report, database: rig.vigild.databasePath, subscriber: rig.subscriber, vigild: rig.vigild)
            report.extra = ["committed_before_corruption=\(before)"]
            report.print()
        }
    }

    /// Damage deeper in a file whose header is intact: the root page of the readings' identity
    /// index (which every insert reads, and start-up does not) is overwritten while vigild is
    /// stopped, so the store opens and the damage shows up at the first commit, as
    /// `SQLITE_CORRUPT`. Must hold: vigild does not retry against the file — it records the
    /// `.damaged` marker and exits 65; restarted (as systemd would), it runs
    /// `PRAGMA integrity_check`, which fails, so the file is kept under a quarantine name with
    /// every committed row still in it, a fresh database is started, the loss is reported
    /// (log, status, a `data_loss` event with `found: during_operation`), and readings flow again.
    @Test func damageFoundDuringOperationStopsVigildAndTheFileIsQuarantinedAtRestart() async throws {
        try await SerialRig.with { rig in
            let database = rig.vigild.databasePath
            try rig.vigild.start()
            for _ in 0..<20 { try await rig.writeLine() }
            #expect(await rig.awaitDelivery(seconds: 20))
            #expect(rig.vigild.terminate() == 0)
            let before = Int(sqlLines(database, "SELECT count(*) FROM readings;").first ?? "") ?? -1
            let root = Int(sqlLines(database, "SELECT rootpage FROM sqlite_schema WHERE name = 'readings_identity';").first ?? "") ?? 0
            let pageSize = Int(sqlLines(database, "PRAGMA page_size;").first ?? "") ?? 0
            try #require(root > 1 && pageSize >= 512, "found the index's root page (\(root)) and the page size (\(pageSize))")
            let fd = open(database, O_WRONLY)
            try #require(fd >= 0)
            let garbage = [UInt8](repeating: 0xA5, count: pageSize)
            let written = garbage.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t((root - 1) * pageSize)) }
            close(fd)
            #expect(written == pageSize)

            // The header is intact: vigild opens the file and starts as usual.
            try rig.vigild.start()
            let replacedAtStart = ((try? rig.vigild.status())?["status"]?["store"]?["replaced"]).map { _ in true } ?? false
            #expect(!replacedAtStart, "the damage is not visible at open")
            // The next commit meets the damage: vigild stops, leaving the marker.
            try await rig.writeLine()
            let marker = database + ".damaged"
            let stopped = await eventually(within: .seconds(20), interval: .milliseconds(100)) {
                // vigilctl exits 69 when vigild does not answer.
                access(marker, F_OK) == 0 && (try? rig.vigild.ctl(["status", "--json"]))?.status == 69
            }
            #expect(stopped, "vigild stops on SQLITE_CORRUPT instead of retrying: \(rig.vigild.log().suffix(2000))")
            let status = rig.vigild.terminate()
            #expect(status == 65, "exit status 65 (the database is damaged), was \(status)")
            #expect(access(database, F_OK) == 0, "the file is still in place until the check at restart")
            let markerText = (try? Fixtures.readFile(marker)).map { String(decoding: $0, as: UTF8.self) } ?? ""
            #expect(markerText.contains("reports=1") && markerText.contains("SQLITE_CORRUPT"), "marker: \(markerText)")
            #expect(rig.vigild.log().contains("the database is damaged"), "a critical line says so")

            // Restarted (systemd: Restart=always), it checks the file, which fails: quarantined.
            try rig.vigild.start()
            let files = (try? VigildProcess.run(["/bin/ls", "-1", rig.vigild.directory + "/state"]).output) ?? ""
            let kept = files.split(separator: "\n").first { $0.hasPrefix("vigil.sqlite.corrupt-") && !$0.contains("-wal")
                && !$0.contains("-shm") && !$0.hasSuffix(".damaged") }.map { rig.vigild.directory + "/state/" + $0 }
            print("damage during operation: readings before \(before); state directory: \(files.split(separator: "\n"))")
            try #require(kept != nil, "the damaged file is kept under a quarantine name")
            #expect(access(marker, F_OK) != 0, "the marker moved with the file")
            #expect(files.contains(".damaged"), "the marker is kept beside the quarantined file")
            // Nothing committed was deleted: the table itself is intact in the kept file.
            let keptRows = Int(sqlLines(kept!, "SELECT count(*) FROM readings NOT INDEXED;").first ?? "") ?? -1
            #expect(keptRows == before, "the kept file still holds every committed reading (\(keptRows) of \(before))")
            let doc = try rig.vigild.status()
            #expect(doc["status"]?["store"]?["replaced"] != nil, "status shows store.replaced")
            let problems = (doc["problems"]?.arrayValue ?? []).compactMap(\.stringValue)
            #expect(problems.contains { $0.contains("corrupt") }, "status says the database was replaced: \(problems)")
            #expect(rig.vigild.log().contains("integrity_check"), "the log names the check that failed")

            for _ in 0..<10 { try await rig.writeLine() }
            #expect(await rig.awaitDelivery(seconds: 20), "readings flow into the fresh database")
            let loss = await eventually(within: .seconds(10)) {
                rig.subscriber.messages.contains {
                    $0.topic.hasSuffix("/events") && $0.text.contains("database_replaced") && $0.text.contains("during_operation")
                }
            }
            #expect(loss, "a data_loss event names the replaced database upstream")
            var report = FaultReport(name: "corrupt-db-deep")
            report.offered = rig.linesWritten * 3
            _ = measure(&report, database: database, subscriber: rig.subscriber, vigild: rig.vigild)
            // The line whose commit met the damage was read from the tty and not committed.
            report.extra = ["committed_before_corruption=\(before)", "kept_in_quarantined_file=\(keptRows)", "exit_status=\(status)"]
            report.print()
        }
    }

    /// The same damage met by a read, not a commit: `vigilctl readings --device` walks the
    /// damaged index on the store's read connection. Must hold: the store latches the damage
    /// whichever connection met it, and vigild stops (exit 65, marker) with no commit at all.
    @Test func damageMetByAViewStopsVigildToo() async throws {
        try await SerialRig.with { rig in
            let database = rig.vigild.databasePath
            try rig.vigild.start()
            for _ in 0..<20 { try await rig.writeLine() }
            #expect(await rig.awaitDelivery(seconds: 20))
            #expect(rig.vigild.terminate() == 0)
            let root = Int(sqlLines(database, "SELECT rootpage FROM sqlite_schema WHERE name = 'readings_identity';").first ?? "") ?? 0
            let pageSize = Int(sqlLines(database, "PRAGMA page_size;").first ?? "") ?? 0
            try #require(root > 1 && pageSize >= 512)
            let fd = open(database, O_WRONLY)
            try #require(fd >= 0)
            let garbage = [UInt8](repeating: 0xA5, count: pageSize)
            _ = garbage.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t((root - 1) * pageSize)) }
            close(fd)
            try rig.vigild.start()
            let view = try rig.vigild.ctl(["readings", "--device", "rad8-fault", "--limit", "5"])
            #expect(view.status != 0, "the view fails on the damaged index: \(view.status) \(view.output.prefix(500))")
            let marker = database + ".damaged"
            let stopped = await eventually(within: .seconds(20), interval: .milliseconds(100)) {
                access(marker, F_OK) == 0 && (try? rig.vigild.ctl(["status", "--json"]))?.status == 69
            }
            #expect(stopped, "vigild stops on damage met by a read: \(rig.vigild.log().suffix(2000))")
            #expect(rig.vigild.terminate() == 65)
            try rig.vigild.start()
            #expect(try rig.vigild.status()["status"]?["store"]?["replaced"] != nil, "quarantined at the restart")
            try await rig.writeLine()
            #expect(await rig.awaitDelivery(seconds: 20), "readings flow into the fresh database")
        }
    }

    /// The loop breaker: a marker on a sound file (SQLite reported damage, the check finds
    /// none) keeps the file and records the passed check; a second report on the same file
    /// quarantines it without trusting another check.
    @Test func aFileThatPassesTheCheckIsKeptOnceThenQuarantinedOnASecondReport() async throws {
        try await SerialRig.with { rig in
            let database = rig.vigild.databasePath
            let marker = database + ".damaged"
            try rig.vigild.start()
            for _ in 0..<5 { try await rig.writeLine() }
            #expect(await rig.awaitDelivery(seconds: 20))
            #expect(rig.vigild.terminate() == 0)
            func writeMarker(_ text: String) throws {
                let fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC, 0o640)
                try #require(fd >= 0)
                _ = Array(text.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
            }
            func markerText() -> String { (try? Fixtures.readFile(marker)).map { String(decoding: $0, as: UTF8.self) } ?? "" }
            try writeMarker("reports=1\nchecked=0\nlast_error=store error [sqlite] during commit (SQLITE_CORRUPT)\n")
            try rig.vigild.start()
            #expect(try rig.vigild.status()["status"]?["store"]?["replaced"] == nil, "a sound file is kept")
            #expect(markerText().contains("checked=1"), "the passed check is recorded: \(markerText())")
            #expect(rig.vigild.terminate() == 0)
            try writeMarker(markerText().replacingReports(2))
            try rig.vigild.start()
            #expect(try rig.vigild.status()["status"]?["store"]?["replaced"] != nil, "a second report quarantines it")
            #expect(access(marker, F_OK) != 0)
            try await rig.writeLine()
            #expect(await rig.awaitDelivery(seconds: 20), "readings flow into the fresh database")
        }
    }
}

extension String {
    /// A damage marker's text with its `reports=` line set to `n`.
    fileprivate func replacingReports(_ n: Int) -> String {
        split(separator: "\n").map { $0.hasPrefix("reports=") ? "reports=\(n)" : String($0) }.joined(separator: "\n") + "\n"
    }
}

/// A blood pressure monitor (the fixture's GATT layout) indicating `count` measurements with
/// time stamps 2026-11-25 08:mm:ss, each after the previous one was confirmed, then holding
/// the link open (so a completed transfer is not replayed).
func bloodPressureMonitor(_ count: Int) -> String {
    func hex(_ b: Int) -> String {
        let h = String(b, radix: 16, uppercase: true)
        return b < 16 ? "0" + h : h
    }
    var text = """
        mtu 23
        service 1800
        char 2A00 read = 55 41 2D 36 35 31 42 4C 45
        service 1810
        char 2A35 indicate
        char 2A49 read = 00 00
        service 1805
        char 2A2B read write notify = EA 07 0B 19 08 00 00 03 00 00
        service 180F
        char 2A19 read = 50
        script:
        wait-subscribed 2A35

        """
    for i in 0..<count {
        let sys = 110 + i % 40, dia = 70 + i % 20, map = 85 + i % 20, pulse = 60 + i % 30
        text += "indicate 2A35 = 06 \(hex(sys)) 00 \(hex(dia)) 00 \(hex(map)) 00 EA 07 0B 19 08 \(hex(i / 60)) \(hex(i % 60)) \(hex(pulse)) 00\n"
        text += "delay 20\n"
    }
        return text
}
