import Glibc
import Testing
import VigilTestKit
import VitalSigns

/// The built `vigilctl diagnose`, with each failure provoked for real: no broker, a wrong
/// certificate (made with openssl here), a full disk (a 1 MiB tmpfs), a corrupt database, an
/// invalid care plan, an unreadable serial port, a worn eMMC (a sysfs tree).
@Suite(.serialized) struct VigilctlDiagnoseTests {
    static let ctl = VigildProcess.binDirectory + "/vigilctl"
    static let vigild = VigildProcess.binDirectory + "/vigild"

    static let plan = """
        patient: patient-diag
        version: 1
        thresholds:
          - id: spo2-low
            vital: spo2
            below: 90
            sustained_seconds: 20
            hysteresis: 2
            severity: urgent
        """

    /// A scratch directory with a config; `extra` goes under `broker:` (indented by the caller).
    final class Site {
        let dir: String
        var database: String { dir + "/state/vigil.sqlite" }
        var config: String { dir + "/vigild.yaml" }
        var plans: String { dir + "/care-plans" }

        init() throws {
            var template = Array("/tmp/vigil-diag.XXXXXX".utf8CString)
            guard let made = template.withUnsafeMutableBufferPointer({ $0.baseAddress.flatMap { mkdtemp($0) } }) else {
                throw MosquittoBrokerError("mkdtemp", errno: errno, "cannot create a directory")
            }
            dir = String(cString: made)
            for sub in ["state", "care-plans", "run"] { mkdir(dir + "/" + sub, 0o755) }
        }

        deinit { _ = try? VigildProcess.run(["/bin/rm", "-rf", dir]) }

        func write(brokerPort: Int, tls: String = "", devices: String = "") throws {
            try writeText(config, """
                site: diag-site
                gateway: gw-diag
                paths:
                  database: "\(database)"
                  control_socket: "\(dir)/run/control.sock"
                  care_plans: "\(plans)"
                  device_profiles: "\(Fixtures.repositoryRoot)/devices"
                broker:
                  host: 127.0.0.1
                  port: \(brokerPort)
                \(tls)
                \(devices)
                """)
        }

        func diagnose(_ checks: [String], extra: [String] = []) throws -> (status: Int32, checks: [String: JSONValue], output: String) {
            var argv = [VigilctlDiagnoseTests.ctl, "diagnose", "--config", config, "--json", "--timeout", "3",
                        "--vigild", VigilctlDiagnoseTests.vigild]
            for c in checks { argv += ["--check", c] }
            let run = try VigildProcess.run(argv + extra)
            var byName: [String: JSONValue] = [:]
            for c in (try JSONValue.parse(run.output))["checks"]?.arrayValue ?? [] {
                if let name = c["name"]?.stringValue { byName[name] = c }
            }
            return (run.status, byName, run.output)
        }
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func sh(_ script: String) throws {
        let run = try VigildProcess.run(["/bin/sh", "-c", script], quiet: true)
        guard run.status == 0 else { throw MosquittoBrokerError("sh", "failed (\(run.status)): \(script)") }
    }

    @Test func noBrokerFailsAndARunningOnePasses() throws {
        let site = try Site()
        try site.write(brokerPort: try Self.freePort())
        let down = try site.diagnose(["broker"])
        #expect(down.status == 1)
        #expect(down.checks["broker"]?["status"]?.stringValue == "fail")
        #expect(down.checks["broker"]?["reason"]?.stringValue?.contains("Connection refused") == true)
        #expect(down.checks["broker"]?["fix"]?.stringValue?.contains("broker") == true)

        let broker = try MosquittoBroker()
        defer { broker.stop() }
        try site.write(brokerPort: broker.port)
        let up = try site.diagnose(["broker"])
        #expect(up.status == 0)
        #expect(up.checks["broker"]?["status"]?.stringValue == "pass")
        #expect(up.checks["broker"]?["reason"]?.stringValue == "127.0.0.1:\(broker.port) accepts TCP connections (no TLS configured)")
    }

    /// Two CAs; a broker certificate (IP 127.0.0.1) and a client certificate from the first,
    /// a client certificate from the second, and a key that belongs to neither.
    static func makePKI(_ dir: String) throws {
        try sh("""
            cd '\(dir)' && \
            for ca in ca1 ca2; do openssl req -x509 -newkey rsa:2048 -nodes -keyout $ca.key -out $ca.pem -days 365 -subj /CN=$ca; done && \
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 && \
            printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext && \
            openssl x509 -req -in server.csr -CA ca1.pem -CAkey ca1.key -CAcreateserial -out server.pem -days 365 -extfile san.ext && \
            for c in good:ca1 foreign:ca2; do n=${c%%:*}; ca=${c##*:}; \
              openssl req -newkey rsa:2048 -nodes -keyout $n.key -out $n.csr -subj /CN=gw-$n && \
              openssl x509 -req -in $n.csr -CA $ca.pem -CAkey $ca.key -CAcreateserial -out $n.pem -days 365; done && \
            openssl genrsa -out stray.key 2048
            """)
    }

    static func tls(_ dir: String, ca: String, cert: String, key: String) -> String {
        "  tls:\n    ca_file: \(dir)/\(ca)\n    cert_file: \(dir)/\(cert)\n    key_file: \(dir)/\(key)"
    }

    @Test func aWrongCertificateIsReportedOfflineAndByTheHandshake() throws {
        let site = try Site()
        try Self.makePKI(site.dir)
        let broker = try MosquittoBroker(options: .init(extraConfig: [
            "cafile \(site.dir)/ca1.pem", "certfile \(site.dir)/server.pem", "keyfile \(site.dir)/server.key",
            "require_certificate true",
        ]))
        defer { broker.stop() }

        try site.write(brokerPort: broker.port, tls: Self.tls(site.dir, ca: "ca1.pem", cert: "good.pem", key: "good.key"))
        let good = try site.diagnose(["tls", "broker"])
        #expect(good.checks["tls"]?["status"]?.stringValue == "pass", "\(good.output)")
        #expect(good.checks["tls"]?["reason"]?.stringValue?.hasPrefix("CA valid for 364 days, client certificate valid for 364 days") == true)
        #expect(good.checks["broker"]?["status"]?.stringValue == "pass", "\(good.output)")
        #expect(good.status == 0)

        // A client certificate from another CA: refused offline, and by the broker.
        try site.write(brokerPort: broker.port, tls: Self.tls(site.dir, ca: "ca1.pem", cert: "foreign.pem", key: "foreign.key"))
        let foreign = try site.diagnose(["tls", "broker"])
        #expect(foreign.status == 1)
        #expect(foreign.checks["tls"]?["status"]?.stringValue == "fail")
        #expect(foreign.checks["tls"]?["reason"]?.stringValue?.contains("does not verify against") == true)
        #expect(foreign.checks["broker"]?["status"]?.stringValue == "fail")
        #expect(foreign.checks["broker"]?["reason"]?.stringValue?.contains("the broker refused this client") == true, "\(foreign.output)")

        // The wrong CA for the broker's certificate: the handshake says why.
        try site.write(brokerPort: broker.port, tls: Self.tls(site.dir, ca: "ca2.pem", cert: "foreign.pem", key: "foreign.key"))
        let wrongCA = try site.diagnose(["broker"])
        #expect(wrongCA.checks["broker"]?["reason"]?.stringValue?.contains("the broker's certificate was refused") == true,
                "\(wrongCA.output)")

        // A key that belongs to no certificate, and a file that is not a certificate.
        try site.write(brokerPort: broker.port, tls: Self.tls(site.dir, ca: "ca1.pem", cert: "good.pem", key: "stray.key"))
        let stray = try site.diagnose(["tls"])
        #expect(stray.checks["tls"]?["reason"]?.stringValue?.contains("does not belong to the certificate") == true)
        try site.write(brokerPort: broker.port, tls: Self.tls(site.dir, ca: "san.ext", cert: "good.pem", key: "good.key"))
        let garbage = try site.diagnose(["tls"])
        #expect(garbage.checks["tls"]?["reason"]?.stringValue?.contains("not a PEM certificate") == true)
    }

    @Test func aFullDiskFails() throws {
        let site = try Site()
        try site.write(brokerPort: 1883)
        try Self.sh("mount -t tmpfs -o size=1m vigil-diag '\(site.dir)/state'")
        defer { _ = try? Self.sh("umount '\(site.dir)/state'") }
        let full = try site.diagnose(["disk"])
        #expect(full.status == 1)
        #expect(full.checks["disk"]?["status"]?.stringValue == "fail")
        #expect(full.checks["disk"]?["reason"]?.stringValue == "1024 KiB free of 1024 KiB (100 %) for \(site.dir)/state")
    }

    @Test func aCorruptDatabaseFailsAndAHealthyOnePasses() throws {
        let site = try Site()
        try site.write(brokerPort: 1883)
        let missing = try site.diagnose(["database"])
        #expect(missing.checks["database"]?["status"]?.stringValue == "warn")
        #expect(missing.status == 0)

        // A healthy database of a few hundred pages.
        try Self.sh("""
            sqlite3 '\(site.database)' "PRAGMA journal_mode=WAL; CREATE TABLE r(id INTEGER PRIMARY KEY, v TEXT); \
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 20000) INSERT INTO r SELECT i, hex(randomblob(40)) FROM n; \
            CREATE INDEX rv ON r(v);" > /dev/null
            """)
        let healthy = try site.diagnose(["database"])
        #expect(healthy.checks["database"]?["status"]?.stringValue == "pass", "\(healthy.output)")
        #expect(healthy.checks["database"]?["reason"]?.stringValue?.contains("integrity ok") == true)

        // Zeroes over pages in the middle of the file: the b-trees no longer add up.
        try Self.sh("dd if=/dev/zero of='\(site.database)' bs=4096 seek=100 count=20 conv=notrunc 2>/dev/null")
        let corrupt = try site.diagnose(["database"])
        #expect(corrupt.status == 1)
        #expect(corrupt.checks["database"]?["status"]?.stringValue == "fail")
        #expect(corrupt.checks["database"]?["fix"]?.stringValue?.contains("move") == true)

        // Not a database at all.
        try writeText(site.database, String(repeating: "not a database ", count: 500))
        _ = unlink(site.database + "-wal")
        _ = unlink(site.database + "-shm")
        let garbage = try site.diagnose(["database"])
        #expect(garbage.checks["database"]?["status"]?.stringValue == "fail")
        #expect(garbage.checks["database"]?["reason"]?.stringValue?.contains("file is not a database") == true)
    }

    @Test func anInvalidCarePlanFailsBothConfigAndCarePlans() throws {
        let site = try Site()
        try site.write(brokerPort: 1883)
        let none = try site.diagnose(["care_plans", "config"])
        #expect(none.checks["care_plans"]?["status"]?.stringValue == "warn")
        #expect(none.checks["config"]?["status"]?.stringValue == "pass", "\(none.output)")

        try writeText(site.plans + "/patient-diag.yaml", Self.plan)
        let valid = try site.diagnose(["care_plans", "config"])
        #expect(valid.checks["care_plans"]?["reason"]?.stringValue == "1 care plan valid in \(site.plans)")
        #expect(valid.status == 0)

        try writeText(site.plans + "/other.yaml", Self.plan.replacing("below: 90", with: "below: 90\n    colour: red"))
        let invalid = try site.diagnose(["care_plans", "config"])
        #expect(invalid.status == 1)
        #expect(invalid.checks["care_plans"]?["status"]?.stringValue == "fail")
        #expect(invalid.checks["care_plans"]?["reason"]?.stringValue?.contains("other.yaml:") == true)
        #expect(invalid.checks["config"]?["status"]?.stringValue == "fail", "vigild --check-config refuses a bad care plan too")
        // Patient identifiers are never printed.
        #expect(!invalid.output.contains("patient-diag"))
    }

    @Test func aConfigVigildRefusesFailsWithItsLocation() throws {
        let site = try Site()
        try site.write(brokerPort: 99_999)
        let bad = try site.diagnose(["config"])
        #expect(bad.status == 1)
        #expect(bad.checks["config"]?["reason"]?.stringValue?.contains("vigild.yaml:") == true, "\(bad.output)")
        #expect(bad.checks["config"]?["reason"]?.stringValue?.contains("broker.port") == true, "\(bad.output)")

        let missing = try VigildProcess.run([Self.ctl, "diagnose", "--config", site.dir + "/absent.yaml", "--check", "config", "--json"])
        #expect(missing.status == 1)
        #expect(missing.output.contains("No such file or directory"))
    }

    @Test func serialPortsAreCheckedForTheServiceUser() throws {
        let site = try Site()
        var master: Int32 = 0, slave: Int32 = 0
        var name = [CChar](repeating: 0, count: 128)
        guard openpty(&master, &slave, &name, nil, nil) == 0 else { throw MosquittoBrokerError("openpty", errno: errno, "no pty") }
        defer { close(master); close(slave) }
        let tty = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        chmod(tty, 0o620)
        let devices = """
            devices:
              - id: rad8-a
                profile: masimo-rad8
                port: "\(tty)"
                patient: patient-diag
            """
        try site.write(brokerPort: 1883, devices: devices)
        let asRoot = try site.diagnose(["serial_ports"], extra: ["--user", "root"])
        #expect(asRoot.checks["serial_ports"]?["status"]?.stringValue == "pass")
        let asNobody = try site.diagnose(["serial_ports"], extra: ["--user", "nobody"])
        #expect(asNobody.status == 1)
        #expect(asNobody.checks["serial_ports"]?["reason"]?.stringValue?.hasPrefix("device rad8-a: user nobody cannot read and write \(tty)") == true,
                "\(asNobody.output)")
        #expect(asNobody.checks["serial_ports"]?["fix"]?.stringValue?.contains("60-vigil-serial.rules") == true)

        try site.write(brokerPort: 1883, devices: devices.replacing(tty, with: "/dev/ttyUSB-vigil-absent"))
        let absent = try site.diagnose(["serial_ports"])
        #expect(absent.checks["serial_ports"]?["reason"]?.stringValue == "device rad8-a: /dev/ttyUSB-vigil-absent: No such file or directory")
    }

    @Test func aWornEMMCIsReportedFromSysfs() throws {
        let site = try Site()
        try site.write(brokerPort: 1883)
        let sysfs = site.dir + "/sys"
        try Self.sh("mkdir -p '\(sysfs)/block/mmcblk0/device' '\(sysfs)/block/mmcblk0p1' && echo '0x02 0x01' > '\(sysfs)/block/mmcblk0/device/life_time' && echo 0x01 > '\(sysfs)/block/mmcblk0/device/pre_eol_info'")
        let fresh = try site.diagnose(["sd_card"], extra: ["--sysfs", sysfs])
        #expect(fresh.checks["sd_card"]?["status"]?.stringValue == "pass")
        #expect(fresh.checks["sd_card"]?["reason"]?.stringValue == "mmcblk0: 10–20 % of its life used")
        try Self.sh("echo '0x0A 0x0B' > '\(sysfs)/block/mmcblk0/device/life_time' && echo 0x03 > '\(sysfs)/block/mmcblk0/device/pre_eol_info'")
        let worn = try site.diagnose(["sd_card"], extra: ["--sysfs", sysfs])
        #expect(worn.status == 1)
        #expect(worn.checks["sd_card"]?["reason"]?.stringValue == "mmcblk0: beyond its rated life, reserved blocks urgent")
    }

    @Test func theTextReportHasAFixUnderEachProblemAndASummary() throws {
        let site = try Site()
        try site.write(brokerPort: try Self.freePort())
        let run = try VigildProcess.run([Self.ctl, "diagnose", "--config", site.config, "--timeout", "2",
                                         "--vigild", Self.vigild])
        #expect(run.status == 1)
        let lines = run.output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let names = lines.compactMap { line -> String? in
            for s in ["PASS  ", "WARN  ", "FAIL  "] where line.hasPrefix(s) { return String(line.dropFirst(6).prefix { $0 != " " }) }
            return nil
        }
        #expect(names == ["config", "care_plans", "daemon", "bluetooth", "serial_ports", "broker", "tls", "clock", "disk", "sd_card", "database"])
        for (i, line) in lines.enumerated() where line.hasPrefix("WARN") || line.hasPrefix("FAIL") {
            #expect(lines[i + 1].drop(while: { $0 == " " }).hasPrefix("fix: "), "no fix under: \(line)")
        }
        #expect(lines.contains { $0.hasPrefix("FAIL  broker") })
        #expect(lines.contains { $0.hasPrefix("WARN  daemon") }, "vigild is not running: a warning, and diagnose still works")
        #expect(lines.last(where: { !$0.isEmpty })?.hasSuffix(" passed") == true)

        let unknown = try VigildProcess.run([Self.ctl, "diagnose", "--check", "everything"], quiet: true)
        #expect(unknown.status == 64)
    }

    @Test func aRunningVigildAnswersAndItsLiveDatabaseChecksOutUndisturbed() throws {
        let broker = try MosquittoBroker()
        defer { broker.stop() }
        let vigild = try VigildProcess(brokerPort: broker.port, devices: [])
        defer { vigild.cleanUp() }
        try vigild.start()
        let run = try VigildProcess.run([Self.ctl, "diagnose", "--config", vigild.configPath, "--json", "--vigild", Self.vigild,
                                         "--check", "daemon", "--check", "database", "--check", "config", "--check", "broker"])
        let checks = (try JSONValue.parse(run.output))["checks"]?.arrayValue ?? []
        #expect(checks.map { $0["status"]?.stringValue } == ["pass", "pass", "pass", "pass"], "\(run.output)")
        #expect(run.status == 0)
        // The read-only integrity check left vigild's WAL database alone: it still answers and
        // drains cleanly.
        #expect(try vigild.status()["verdict"]?.stringValue != nil)
        #expect(vigild.terminate() == 0)
    }

    @Test func withoutBluetoothAConfiguredBLEDeviceFails() throws {
        let fd = socket(31, Int32(SOCK_RAW.rawValue), 1)
        let noBluetooth = fd < 0 && errno == EAFNOSUPPORT
        if fd >= 0 { close(fd) }
        let site = try Site()
        try site.write(brokerPort: 1883)
        let unneeded = try site.diagnose(["bluetooth"])
        try site.write(brokerPort: 1883, devices: """
            devices:
              - id: bp-a
                profile: and-ua-651ble
                address: "00:09:1F:8A:2B:3C"
                patient: patient-diag
            """)
        let needed = try site.diagnose(["bluetooth"])
        if noBluetooth {
            #expect(unneeded.checks["bluetooth"]?["status"]?.stringValue == "warn")
            #expect(needed.checks["bluetooth"]?["status"]?.stringValue == "fail")
            #expect(needed.checks["bluetooth"]?["reason"]?.stringValue?.hasPrefix("this kernel has no Bluetooth") == true)
        } else {
            #expect(needed.checks["bluetooth"] != nil)
        }
    }
}

/// Writes `text` to `path` (created or truncated, mode 0644).
func writeText(_ path: String, _ text: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw MosquittoBrokerError("open", errno: errno, "cannot create \(path)") }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0, errno == EINTR { continue }
        guard n > 0 else { throw MosquittoBrokerError("write", errno: errno, "cannot write \(path)") }
        offset += n
    }
}
