import Glibc
import SerialLink
import Testing
import VigilTestKit
import VitalSigns

private let lowSpO2Plan = """
    patient: patient-e2e
    version: 1
    thresholds:
      - id: spo2-low
        vital: spo2
        below: 90
        sustained_seconds: 20
        hysteresis: 2
        severity: urgent
    """

/// Runs a shell command line and returns its exit status and stdout + stderr.
private func sh(_ command: String) throws -> (status: Int32, output: String) {
    try VigildProcess.run(["/bin/sh", "-c", command + " 2>&1"])
}

/// Starts a program with stdout and stderr to `output` and no other inherited descriptors
/// that matter (stdin /dev/null); the caller reaps it.
private func spawnBackground(_ argv: [String], output: String) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let cArgs = argv.map { strdup($0) }
    defer { for a in cArgs { free(a) } }
    var argvC: [UnsafeMutablePointer<CChar>?] = cArgs + [nil]
    var child: pid_t = 0
    let rc = argvC.withUnsafeMutableBufferPointer { posix_spawn(&child, argv[0], &actions, nil, $0.baseAddress!, environ) }
    guard rc == 0 else { throw MosquittoBrokerError("posix_spawn", errno: rc, "cannot start \(argv[0])") }
    return child
}

private func quoted(_ s: String) -> String { "'" + s.replacing("'", with: "'\\''") + "'" }

/// `sqlite3` on the daemon's live database (WAL lets it read and write beside vigild).
private func sqlite(_ db: String, _ sql: String) throws -> (status: Int32, output: String) {
    try sh("sqlite3 -bail \(quoted(db)) \(quoted(sql))")
}

/// The gid of an existing group (getgrnam_r), to configure the test's member and admin groups
/// from groups every Debian system has (`users`, `staff`) instead of creating any.
private func gid(_ name: String) -> UInt32? {
    var group = Glibc.group()
    var result: UnsafeMutablePointer<Glibc.group>?
    var buffer = [CChar](repeating: 0, count: 4096)
    guard getgrnam_r(name, &group, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
    return group.gr_gid
}

/// Replaces what changes from run to run (times, ages, pids, sizes, the environment's clock
/// and disk) with placeholders, so whole outputs can be compared.
func normalised(_ text: String) -> String {
    var t = text
    t = t.replacing(/\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?Z?/, with: "<time>")
    // An age's text has no fixed width: the table column after it moves with it.
    t = t.replacing(/(\d+ (s|min|h|days) ago|just now) +/, with: "<age>  ")
    t = t.replacing(/\d+ (s|min|h|days) ago|just now/, with: "<age>")
    t = t.replacing(/up \d+ s/, with: "up <n> s")
    t = t.replacing(/Disk {7}.*/, with: "Disk       <disk>")
    t = t.replacing(/Clock {6}.*/, with: "Clock      <clock>")
    t = t.replacing(/\n  • the system clock is not synchronised[^\n]*/, with: "")
    t = t.replacing(/\n\nNote:\n?$/, with: "\n")
    t = t.replacing(/Store {6}\d+ (B|KiB|MiB|[\d.]+ MiB|GiB)/, with: "Store      <size>")
    t = t.replacing(/127\.0\.0\.1:\d+/, with: "127.0.0.1:<port>")
    t = t.replacing(/published \d+  acknowledged \d+/, with: "published <n>  acknowledged <n>")
    t = t.replacing(/acknowledged \d+/, with: "acknowledged <n>")
    t = t.replacing(/Drain rate   .*/, with: "Drain rate   <rate>")
    t = t.replacing(/reconnect attempts \d+/, with: "reconnect attempts <n>")
    t = t.replacing(/\(errno \d+\)|Connection refused|No route to host/, with: "<reason>")
    return t
}

/// The same for JSON: the values of keys that vary are replaced, then the document is compared whole.
func normalisedJSON(_ value: JSONValue) -> JSONValue {
    let volatile: Set<String> = [
        "uptime_seconds", "now", "started_at", "at", "opened_at", "updated_at", "measured_at", "received_at",
        "last_reading_at", "last_reading_age_seconds", "last_connected_at", "oldest_at", "oldest_age_seconds",
        "size_bytes", "transactions", "bytes_read", "pid", "path", "broker", "port", "from", "to",
        "total_bytes", "free_bytes", "free_percent", "synchronised", "max_error_ms", "reconnect_attempts",
        "drain_rate_per_second", "drain_eta_seconds", "id", "warnings", "published", "acknowledged",
    ]
    switch value {
    case .object(let members):
        // Values that may or may not be known yet (a rate needs two samples; the clock's sync
        // state depends on the machine) are replaced even when null.
        let maybeNull: Set<String> = ["drain_rate_per_second", "drain_eta_seconds", "synchronised", "max_error_ms"]
        return .object(members.map { key, v in
            (key, volatile.contains(key) && (v != .null || maybeNull.contains(key)) ? .string("<\(key)>") : normalisedJSON(v))
        })
    case .array(let items):
        return .array(items.map(normalisedJSON))
    default:
        return value
    }
}

/// Compares `actual` with `Tests/ViewsSnapshots/<name>`; `VIGIL_UPDATE_SNAPSHOTS=1` rewrites it.
func expectSnapshot(_ name: String, _ actual: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let path = Fixtures.repositoryRoot + "/Tests/ViewsSnapshots/" + name
    if getenv("VIGIL_UPDATE_SNAPSHOTS") != nil {
        mkdir(Fixtures.repositoryRoot + "/Tests/ViewsSnapshots", 0o755)
        if let f = fopen(path, "w") {
            fputs(actual, f)
            fclose(f)
        }
        return
    }
    let expected = (try? Fixtures.readFile(path)).map { String(decoding: $0, as: UTF8.self) } ?? "<missing snapshot \(name)>"
    #expect(actual == expected, "snapshot \(name) differs", sourceLocation: sourceLocation)
}

/// vigilctl's technician views and the control socket's access control, against a real vigild
/// fed by a pseudo-terminal oximeter and forwarding to a real mosquitto.
@Suite(.serialized) struct AccessViewsTests {
    /// A home with 40 s of oximetry: 10 s normal, then 30 s at SpO2 85 % (one urgent escalation).
    private func feed(_ rig: Rig) async throws {
        var bytes: [UInt8] = []
        for i in 0..<40 { bytes += rig.line(i, spo2: i < 10 ? 95 + i % 3 : 85) }
        try await rig.device.write(bytes)
        _ = try await rig.subscriber.waitFor(count: 1, timeout: 30) { $0.topic.hasSuffix("/escalations") }
        _ = try await rig.subscriber.waitFor(count: 120, timeout: 30) { $0.topic.hasSuffix("/readings") }
        let drained = await eventually(within: .seconds(10)) {
            let s = (try? rig.vigild.status())?["status"]?["outbox"]
            return s?["readings"]?["depth"]?.int64Value == 0 && s?["escalations"]?["depth"]?.int64Value == 0
        }
        #expect(drained)
    }

    @Test func everyViewAsTextAndJSONMatchesItsSnapshot() async throws {
        try await Rig.with(carePlans: ["patient-e2e.yaml": lowSpO2Plan]) { rig in
            try rig.vigild.start()
            try await feed(rig)
            let vigild = rig.vigild

            let views: [(String, [String])] = [
                ("status", ["status"]),
                ("devices", ["devices"]),
                ("readings", ["readings", "tail", "--limit", "6"]),
                ("readings-spo2", ["readings", "--vital", "spo2", "--limit", "5", "--trend", "40"]),
                ("escalations", ["escalations"]),
                ("escalations-all", ["escalations", "--all"]),
                ("outbox", ["outbox"]),
            ]
            for (name, args) in views {
                let (code, text) = try vigild.ctl(args)
                #expect(code == 0, "\(name) exits 0: \(text)")
                expectSnapshot(name + ".txt", normalised(text))
                let (jcode, json) = try vigild.ctl(args + ["--json"])
                #expect(jcode == 0)
                expectSnapshot(name + ".json", normalisedJSON(try JSONValue.parse(json)).serialized + "\n")
            }

            // The sparkline: ten normal readings (95, 96, 97 …) then the fall to 85.
            let (_, spark) = try vigild.ctl(["readings", "--vital", "spo2", "--trend", "40", "--limit", "1"])
            #expect(spark.contains("▇▇█▇▇█▇▇█▇" + String(repeating: "▁", count: 30)), "\(spark)")

            // --since by age: the device's readings were measured an hour ago.
            let sinceTwoHours = try JSONValue.parse(try vigild.ctl(["readings", "--since", "2h", "--limit", "1000", "--json"]).output)
            #expect(sinceTwoHours["readings"]?.arrayValue?.count == 120)
            #expect(try vigild.ctl(["readings", "--since", "10m"]).output == "No readings match.\n")
            // Bad arguments: 64 before anything is asked; an unknown vital is vigild's error, 70.
            #expect(try sh("\(VigildProcess.binDirectory)/vigilctl readings --since yesterday --socket \(vigild.controlSocket)").status == 64)
            let unknownVital = try sh("\(VigildProcess.binDirectory)/vigilctl readings --vital spo3 --socket \(vigild.controlSocket)")
            #expect(unknownVital.status == 70 && unknownVital.output.contains("unknown vital 'spo3'; known: spo2"), "\(unknownVital)")

            // Every view of patient data left an audit record (root: admin), in order, with
            // argument names and no values.
            let (_, auditText) = try vigild.ctl(["audit"])
            // The PID column's width follows the pids' digits.
            expectSnapshot("audit.txt", normalised(auditText).replacing(/\d+ +(?=admin)/, with: "<pid>  ")
                .replacing(/PID +ROLE/, with: "PID  ROLE"))
            let (_, auditJSON) = try vigild.ctl(["audit", "--json"])
            let records = try JSONValue.parse(auditJSON)["records"]?.arrayValue ?? []
            #expect(records.map { $0["command"]?.stringValue ?? "" } == [
                "readings", "readings", "readings", "readings", "escalations", "escalations", "escalations", "escalations",
                "readings", "readings", "readings", "readings", "audit",
            ])
            #expect(records.allSatisfy { $0["user"]?.stringValue == "root" && $0["uid"]?.int64Value == 0 && $0["role"]?.stringValue == "admin" })
            #expect(records.prefix(10).allSatisfy { $0["patients"] == .array(["patient-e2e"]) })
            #expect(records[10]["patients"] == .array([]), "nothing matched: no patient was shown")
            #expect(records[11]["succeeded"] == .bool(false), "the failed call (unknown vital) is recorded too")
            #expect(records[1]["arguments"] == .array(["limit", "trend_points"]))
            #expect(records[2]["arguments"] == .array(["limit", "trend_points", "vital"]), "names only: never 'spo2'")
            #expect(!auditJSON.contains("spo2"))

            // The same rows are in the database, and the database refuses to change them.
            let (_, count) = try sqlite(vigild.databasePath, "SELECT count(*) FROM audit_log")
            #expect(count.trimmingSuffixNewline == "14", "the second audit call is recorded too")
            let update = try sqlite(vigild.databasePath, "UPDATE audit_log SET user = 'mallory'")
            #expect(update.status != 0 && update.output.contains("append-only"), "\(update)")
            let delete = try sqlite(vigild.databasePath, "DELETE FROM audit_log WHERE seq = 1")
            #expect(delete.status != 0 && delete.output.contains("append-only"), "\(delete)")
            let (_, users) = try sqlite(vigild.databasePath, "SELECT DISTINCT user FROM audit_log")
            #expect(users.trimmingSuffixNewline == "root")
        }
    }

    @Test func outboxFollowDrawsProgressUntilTheBacklogDrains() async throws {
        try await Rig.with(persistentBroker: true) { rig in
            try rig.vigild.start()
            rig.broker.stop()
            var bytes: [UInt8] = []
            for i in 0..<200 { bytes += rig.line(i) }
            try await rig.device.write(bytes)
            let buffered = await eventually(within: .seconds(20)) {
                (try? rig.vigild.status())?["status"]?["outbox"]?["readings"]?["depth"]?.int64Value == 600
            }
            #expect(buffered)
            let (code, text) = try rig.vigild.ctl(["outbox"])
            #expect(code == 0)
            #expect(normalised(text).hasPrefix("""
                Uplink       NOT CONNECTED
                Escalations  0 waiting
                Readings     600 waiting (oldest <age>, <time> UTC)
                In flight    0   acknowledged <n>
                """), "\(text)")

            // status names the problem and what to do next, and exits 1.
            let (statusCode, statusText) = try rig.vigild.ctl(["status"])
            #expect(statusCode == 1)
            expectSnapshot("status-broker-down.txt", normalised(statusText))
            let (_, statusJSON) = try rig.vigild.ctl(["status", "--json"])
            let steps = try JSONValue.parse(statusJSON)["next_steps"]?.arrayValue ?? []
            #expect(steps.count == 1)
            #expect(steps.first?["do"]?.stringValue?.hasPrefix("check the home's internet connection") == true)

            // --follow in the background (not a terminal: one line per update), then the broker returns.
            let out = rig.vigild.directory + "/follow.txt"
            let follow = try spawnBackground(
                [VigildProcess.binDirectory + "/vigilctl", "outbox", "--follow", "--interval", "0.2", "--timeout", "60",
                 "--socket", rig.vigild.controlSocket], output: out)
            #expect(await eventually(within: .seconds(10)) { ((try? Fixtures.readFile(out))?.count ?? 0) > 0 }, "the first line is drawn while the broker is down")
            try rig.broker.start()
            var exitStatus: Int32 = -1
            #expect(await eventually(within: .seconds(70), interval: .milliseconds(50)) {
                var raw: Int32 = 0
                guard waitpid(follow, &raw, WNOHANG) == follow else { return false }
                exitStatus = (raw & 0x7F) == 0 ? (raw >> 8) & 0xFF : 128 + (raw & 0x7F)
                return true
            })
            if exitStatus < 0 { _ = kill(follow, SIGKILL); _ = waitpid(follow, nil, 0) }
            let status = "\(exitStatus)\n"
            let lines = ((try? Fixtures.readFile(out)).map { String(decoding: $0, as: UTF8.self) } ?? "").split(separator: "\n").map(String.init)
            #expect(status == "0\n", "\(lines.suffix(3))")
            if status != "0\n" {
                let brokerLog = (try? Fixtures.readFile(rig.broker.logPath)).map { String(decoding: $0, as: UTF8.self) } ?? ""
                Issue.record("broker running \(rig.broker.isRunning); broker log:\n\(brokerLog.suffix(1500))")
            }
            #expect(lines.first?.hasPrefix("[------------------------------]   0 %  600 left  ") == true, "\(lines.prefix(2)) … \(lines.suffix(2))")
            #expect(lines.first?.hasSuffix("(uplink NOT connected)") == true, "\(lines.prefix(2)) … \(lines.suffix(2))")
            #expect(lines.dropLast().last?.hasPrefix("[##############################] 100 %  0 left  ") == true, "\(lines.prefix(2)) … \(lines.suffix(2))")
            #expect(lines.last == "Outbox empty: everything has been delivered.")
            #expect(lines.dropLast().allSatisfy { $0.hasPrefix("[") && $0.contains(" left  ") }, "\(lines.prefix(2)) … \(lines.suffix(2))")
        }
    }

    @Test func anUnauditableAccessShowsNothing() async throws {
        try await Rig.with { rig in
            try rig.vigild.start()
            try await rig.device.write(rig.line(0, spo2: 97))
            _ = try await rig.subscriber.waitFor(count: 3, timeout: 30) { $0.topic.hasSuffix("/readings") }
            // Make every audit insert fail, as a full or read-only disk would.
            let db = rig.vigild.databasePath
            let armed = try sqlite(db, "CREATE TRIGGER break_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk trouble'); END;")
            #expect(armed.status == 0, "\(armed)")
            let (code, text) = try sh("\(VigildProcess.binDirectory)/vigilctl readings --socket \(rig.vigild.controlSocket)")
            #expect(code == 70, "\(text)")
            #expect(text.contains("could not be recorded in the audit log") && text.contains("nothing was shown"))
            #expect(!text.contains("97") && !text.contains("patient-e2e"), "no patient data without an audit record: \(text)")
            #expect(rig.vigild.log().contains("patient data withheld"))
            // A view without patient data is unaffected.
            #expect(try rig.vigild.ctl(["devices"]).status == 0)
            // Repaired: the view works again and is recorded.
            _ = try sqlite(db, "DROP TRIGGER break_audit")
            let (again, shown) = try rig.vigild.ctl(["readings"])
            #expect(again == 0 && shown.contains("97"))
            #expect(try sqlite(db, "SELECT count(*) FROM audit_log").output.trimmingSuffixNewline == "1")
        }
    }

    @Test(.enabled(if: getuid() == 0, "needs root to run vigilctl as other users with setpriv"))
    func callersAreCheckedAgainstTheMemberAndAdminGroups() async throws {
        guard let users = gid("users"), let staff = gid("staff") else {
            Issue.record("this system has no 'users' or 'staff' group")
            return
        }
        try await Rig.with(extraConfig: "control:\n  member_group: users\n  admin_group: staff\n") { rig in
            let vigild = rig.vigild
            // Let other users reach the socket's directory, as /run/vigil is (0755 in tmpfiles.d).
            chmod(vigild.directory, 0o755)
            chmod(vigild.directory + "/run", 0o755)
            try vigild.start()
            try await rig.device.write(rig.line(0, spo2: 97))
            _ = try await rig.subscriber.waitFor(count: 3, timeout: 30) { $0.topic.hasSuffix("/readings") }

            // The socket is 0660 and belongs to the member group.
            var info = stat()
            #expect(stat(vigild.controlSocket, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o660)
            #expect(info.st_gid == users)

            let ctl = "\(VigildProcess.binDirectory)/vigilctl"
            let socket = "--socket \(vigild.controlSocket)"
            func runAs(_ groups: String, _ args: String) throws -> (status: Int32, output: String) {
                try sh("setpriv --reuid=65534 --regid=65534 \(groups) \(ctl) \(args) \(socket)")
            }

            // Outside every group: the file mode stops it at connect().
            let outsider = try runAs("--clear-groups", "status")
            #expect(outsider.status == 77 && outsider.output.contains("permission denied; add yourself to the 'vigil' group"), "\(outsider)")
            // Even with the socket opened up, vigild itself refuses, naming the group needed.
            chmod(vigild.controlSocket, 0o666)
            let refused = try runAs("--clear-groups", "devices")
            #expect(refused.status == 77, "\(refused)")
            #expect(refused.output.contains("needs membership of group 'users'"), "\(refused)")
            let refusedReadings = try runAs("--clear-groups", "readings")
            #expect(refusedReadings.status == 77 && !refusedReadings.output.contains("97"))
            chmod(vigild.controlSocket, 0o660)

            // A member (supplementary group, via SO_PEERGROUPS) may look, and is audited by name.
            let member = try runAs("--groups=\(users)", "readings --limit 3")
            #expect(member.status == 0 && member.output.contains("97"), "\(member)")
            // … but cannot run an admin command.
            let notAdmin = try runAs("--groups=\(users)", "audit")
            #expect(notAdmin.status == 77, "\(notAdmin)")
            #expect(notAdmin.output.contains("is for administrators: members of group 'staff' or root"), "\(notAdmin)")
            // A member of the admin group may.
            let admin = try runAs("--groups=\(users),\(staff)", "audit --json")
            #expect(admin.status == 0, "\(admin)")
            let records = try JSONValue.parse(admin.output)["records"]?.arrayValue ?? []
            #expect(records.count == 1, "refused calls show nothing and leave no access record")
            #expect(records.first?["user"]?.stringValue == "nobody")
            #expect(records.first?["uid"]?.int64Value == 65534)
            #expect(records.first?["role"]?.stringValue == "member")
            #expect(records.first?["command"]?.stringValue == "readings")
            #expect(records.first?["patients"] == .array(["patient-e2e"]))

            // Each refusal is logged at notice with uid and command, and no patient data.
            let log = vigild.log()
            #expect(log.contains("control request refused caller.pid="))
            #expect(log.contains("caller.uid=65534 command=devices needs=users reason=permission denied"))
            #expect(log.contains("caller.uid=65534 command=audit needs=staff reason=permission denied"))
            #expect(!log.contains("patient-e2e"))
        }
    }
}

extension String {
    fileprivate var trimmingSuffixNewline: String {
        var s = self
        while s.last == "\n" { s.removeLast() }
        return s
    }
}
