import ArgumentParser
import CSQLite
import CVigilDiagnose
import ClinicalRules
import DeviceProfiles
import Glibc
import SerialLink
import StrictYAML
import VitalSigns

/// `vigilctl diagnose`: the technician's checklist when something is wrong. Every check runs
/// whether or not vigild is up, touches nothing (the database is opened read-only, no device
/// is opened), and ends in pass, warn or fail with a reason and what to do about it.
struct Diagnose: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the Bluetooth adapter, serial ports, broker, certificates, clock, disk, database and configuration.",
        discussion: """
            Each check reports PASS, WARN or FAIL with a reason and a fix hint. vigild need not be \
            running; the database is opened read-only, so a running vigild is not disturbed. Checks: \
            \(DiagnosticCheck.allNames.joined(separator: ", ")).

            Exit status: 0 when no check fails (warnings allowed), 1 when at least one fails, 64 bad arguments.
            """)

    @Option(name: .long, help: ArgumentHelp("vigild's configuration file.", valueName: "path"))
    var config = "/etc/vigil/vigild.yaml"

    @Option(name: .long, help: ArgumentHelp("The account vigild runs as, whose access to the serial ports is checked.", valueName: "user"))
    var user = "vigil"

    @Option(name: .customLong("check"), help: ArgumentHelp("Run only this check (repeatable).", valueName: "name"))
    var checks: [String] = []

    @Option(name: .long, help: ArgumentHelp("Seconds to wait for the broker's TCP connection and TLS handshake.", valueName: "seconds"))
    var timeout = 5

    @Option(name: .long, help: ArgumentHelp("Path of vigild's control socket (default: paths.control_socket of the config).", valueName: "path"))
    var socket: String?

    @Flag(name: .long, help: "Print machine-readable JSON instead of text.")
    var json = false

    /// The vigild executable that validates the config (default: beside vigilctl, then /usr/bin).
    @Option(name: .long, help: .hidden)
    var vigild: String?

    /// Where sysfs is (tests point it at a fake tree for the SD-card and Bluetooth checks).
    @Option(name: .long, help: .hidden)
    var sysfs = "/sys"

    func validate() throws {
        for name in checks where !DiagnosticCheck.allNames.contains(name) {
            throw ValidationError("unknown check '\(name)'; the checks are \(DiagnosticCheck.allNames.joined(separator: ", "))")
        }
        guard (1...120).contains(timeout) else { throw ValidationError("--timeout must be between 1 and 120 seconds") }
    }

    func run() throws {
        let context = DiagnoseContext(configPath: config, user: user, timeoutSeconds: timeout,
                                      socketOverride: socket, vigildOverride: vigild, sysfs: sysfs)
        let wanted = checks.isEmpty ? DiagnosticCheck.allNames : checks
        var results: [DiagnosticResult] = []
        for name in DiagnosticCheck.allNames where wanted.contains(name) {
            results.append(DiagnosticCheck.run(name, context))
        }
        if json {
            let failed = results.contains { $0.status == .fail }
            print(JSONValue.object([
                ("ok", .bool(!failed)),
                ("checks", .array(results.map(\.json))),
            ]).serialized)
        } else {
            print(DiagnosticResult.render(results))
        }
        if results.contains(where: { $0.status == .fail }) { throw ExitStatus.problem }
    }
}

/// One check's verdict.
struct DiagnosticResult {
    enum Status: String { case pass, warn, fail }
    var name: String
    var status: Status
    var reason: String
    /// What to do about it; empty for a pass.
    var fix: String = ""

    static func pass(_ name: String, _ reason: String) -> DiagnosticResult { .init(name: name, status: .pass, reason: reason) }
    static func warn(_ name: String, _ reason: String, fix: String) -> DiagnosticResult { .init(name: name, status: .warn, reason: reason, fix: fix) }
    static func fail(_ name: String, _ reason: String, fix: String) -> DiagnosticResult { .init(name: name, status: .fail, reason: reason, fix: fix) }

    var json: JSONValue {
        .object([("name", .string(name)), ("status", .string(status.rawValue)), ("reason", .string(reason)),
                 ("fix", fix.isEmpty ? .null : .string(fix))])
    }

    /// `PASS  name          reason` lines, a `fix:` line under each warning or failure, and a
    /// summary line.
    static func render(_ results: [DiagnosticResult]) -> String {
        let width = (results.map(\.name.count).max() ?? 0) + 2
        var lines: [String] = []
        for r in results {
            let pad = String(repeating: " ", count: max(1, width - r.name.count))
            lines.append("\(r.status.rawValue.uppercased())  \(r.name)\(pad)\(r.reason)")
            if !r.fix.isEmpty { lines.append(String(repeating: " ", count: 6 + width) + "fix: " + r.fix) }
        }
        let failed = results.filter { $0.status == .fail }.count
        let warned = results.filter { $0.status == .warn }.count
        let passed = results.count - failed - warned
        lines.append("")
        lines.append("\(failed) failed, \(warned) warning\(warned == 1 ? "" : "s"), \(passed) passed")
        return lines.joined(separator: "\n")
    }
}

/// What the checks need from vigild's config. Read tolerantly from the YAML tree (not with
/// vigild's own strict decoder, which lives in the daemon): a config that vigild refuses is the
/// `config` check's failure, and the other checks still run on whatever could be read.
struct DiagnoseContext {
    struct Device {
        var id: String
        var profile: String?
        var port: String?
        var address: String?
    }

    let configPath: String
    let user: String
    let timeoutSeconds: Int
    let vigildOverride: String?
    let sysfs: String

    var configError: String?
    var database = "/var/lib/vigil/vigil.sqlite"
    var controlSocket = "/run/vigil/control.sock"
    var carePlans = "/etc/vigil/care-plans"
    var deviceProfiles = "/usr/share/vigil/devices"
    var brokerHost: String?
    var brokerPort = 1883
    var caFile: String?
    var certFile: String?
    var keyFile: String?
    var devices: [Device] = []

    init(configPath: String, user: String, timeoutSeconds: Int, socketOverride: String?, vigildOverride: String?, sysfs: String) {
        self.configPath = configPath
        self.user = user
        self.timeoutSeconds = timeoutSeconds
        self.vigildOverride = vigildOverride
        self.sysfs = sysfs
        do {
            let bytes = try DiagnoseFiles.read(configPath)
            let root = try YAMLNode.parse(bytes, fileName: configPath)
            let paths = root["paths"]
            database = paths?["database"]?.text ?? database
            controlSocket = paths?["control_socket"]?.text ?? controlSocket
            carePlans = paths?["care_plans"]?.text ?? carePlans
            deviceProfiles = paths?["device_profiles"]?.text ?? deviceProfiles
            let broker = root["broker"]
            brokerHost = broker?["host"]?.text
            brokerPort = broker?["port"]?.text.flatMap { Int($0) } ?? 1883
            let tls = broker?["tls"]
            caFile = tls?["ca_file"]?.text
            certFile = tls?["cert_file"]?.text
            keyFile = tls?["key_file"]?.text
            if case .sequence(let items)? = root["devices"]?.kind {
                for item in items {
                    devices.append(Device(id: item["id"]?.text ?? "?", profile: item["profile"]?.text,
                                          port: item["port"]?.text, address: item["address"]?.text))
                }
            }
        } catch {
            configError = "\(error)"
        }
        if let socketOverride { controlSocket = socketOverride }
    }

    var tlsConfigured: Bool { caFile != nil || certFile != nil }
}

extension YAMLNode {
    subscript(key: String) -> YAMLNode? {
        guard case .mapping(let pairs) = kind else { return nil }
        return pairs.first { $0.key == key }?.value
    }

    /// A scalar's text; nil for a collection or null.
    var text: String? {
        guard case .scalar(let s, _) = kind, !isNull else { return nil }
        return s
    }
}

enum DiagnoseFiles {
    struct Error: Swift.Error, CustomStringConvertible {
        var path: String
        var errno: Int32
        var description: String { "\(path): \(String(cString: strerror(errno)))" }
    }

    /// Reads a whole file (at most 16 MiB: config, care plans and profiles are small).
    static func read(_ path: String) throws(Error) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Error(path: path, errno: errno) }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while out.count < 16 << 20 {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n < 0 { throw Error(path: path, errno: errno) }
            if n == 0 { break }
            out += buffer[0..<n]
        }
        return out
    }

    /// The first line of a small sysfs attribute, trimmed; nil when absent.
    static func line(_ path: String) -> String? {
        guard let bytes = try? read(path) else { return nil }
        let text = String(decoding: bytes.prefix { $0 != 0x0A }, as: UTF8.self)
        return text.trimmingSpaces.isEmpty ? nil : text.trimmingSpaces
    }

    static func entries(_ directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != ".", name != ".." { names.append(name) }
        }
        return names.sorted()
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" || f == "\n" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" || l == "\n" { s = s.dropLast() }
        return String(s)
    }
}

/// The checks, in the order a technician works through a visit.
enum DiagnosticCheck {
    static let allNames = ["config", "care_plans", "daemon", "bluetooth", "serial_ports", "broker", "tls",
                           "clock", "disk", "sd_card", "database"]

    static func run(_ name: String, _ c: DiagnoseContext) -> DiagnosticResult {
        switch name {
        case "config": config(c)
        case "care_plans": carePlans(c)
        case "daemon": daemon(c)
        case "bluetooth": bluetooth(c)
        case "serial_ports": serialPorts(c)
        case "broker": broker(c)
        case "tls": tls(c)
        case "clock": clock()
        case "disk": disk(c)
        case "sd_card": sdCard(c)
        default: database(c)
        }
    }

    // MARK: config and care plans

    /// vigild's own validation (`vigild --check-config`), so the rules are vigild's, whatever
    /// sections this build of it knows.
    static func config(_ c: DiagnoseContext) -> DiagnosticResult {
        let name = "config"
        if let error = c.configError {
            return .fail(name, error, fix: "correct \(c.configPath) (docs/configuration.md)")
        }
        guard let vigild = vigildPath(c) else {
            return .warn(name, "\(c.configPath) is readable YAML, but no vigild executable was found to validate it",
                         fix: "install vigild (/usr/bin/vigild) or run `vigild --check-config --config \(c.configPath)`")
        }
        let run: Subprocess.Result
        do {
            run = try Subprocess.run([vigild, "--check-config", "--config", c.configPath])
        } catch {
            return .warn(name, "cannot run \(vigild): \(error)", fix: "run `vigild --check-config --config \(c.configPath)` by hand")
        }
        if run.status == 0 {
            return .pass(name, "\(c.configPath) is valid (\(c.devices.count) device\(c.devices.count == 1 ? "" : "s"))")
        }
        var message = run.output.trimmingSpaces
        if message.hasPrefix("vigild: ") { message = String(message.dropFirst(8)) }
        if message.isEmpty { message = "vigild --check-config exited \(run.status)" }
        return .fail(name, message, fix: "correct \(c.configPath) (docs/configuration.md), then `vigild --check-config`")
    }

    static func vigildPath(_ c: DiagnoseContext) -> String? {
        if let v = c.vigildOverride { return v }
        var candidates: [String] = []
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if n > 0 {
            let me = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if let slash = me.lastIndex(of: "/") { candidates.append(String(me[..<slash]) + "/vigild") }
        }
        candidates += ["/usr/bin/vigild", "/usr/sbin/vigild", "/usr/local/bin/vigild"]
        return candidates.first { access($0, X_OK) == 0 }
    }

    /// Each care plan in paths.care_plans through the same strict decoder vigild uses.
    static func carePlans(_ c: DiagnoseContext) -> DiagnosticResult {
        let name = "care_plans"
        var isDir = stat()
        guard stat(c.carePlans, &isDir) == 0 else {
            return .warn(name, "\(c.carePlans) does not exist: no care plan, so no rule runs",
                         fix: "install the patients' care plans in \(c.carePlans) (docs/care-plans.md)")
        }
        let files = DiagnoseFiles.entries(c.carePlans).filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }
        if files.isEmpty {
            return .warn(name, "no care plan in \(c.carePlans): readings are forwarded but no rule runs",
                         fix: "install the patients' care plans in \(c.carePlans) (docs/care-plans.md)")
        }
        var problems: [String] = []
        var patients: [String: String] = [:]
        for file in files {
            let path = c.carePlans + "/" + file
            do {
                let plan = try YAMLDecoder().decode(CarePlan.self, from: try DiagnoseFiles.read(path), fileName: path)
                // Patient identifiers are compared, never printed.
                if let first = patients["\(plan.patient)"] {
                    problems.append("\(path): a second care plan for the patient of \(first); vigild refuses it")
                } else {
                    patients["\(plan.patient)"] = file
                }
            } catch {
                problems.append("\(error)")
            }
        }
        if problems.isEmpty { return .pass(name, "\(files.count) care plan\(files.count == 1 ? "" : "s") valid in \(c.carePlans)") }
        return .fail(name, problems.joined(separator: "; "),
                     fix: "correct or remove the plan (docs/care-plans.md); vigild runs without a refused plan's rules")
    }

    // MARK: daemon

    static func daemon(_ c: DiagnoseContext) -> DiagnosticResult {
        do {
            let reply = try ControlClient.request(.object([("command", "ping")]), socketPath: c.controlSocket, timeoutSeconds: c.timeoutSeconds)
            if reply["ok"]?.boolValue == true { return .pass("daemon", "vigild answers on \(c.controlSocket)") }
            return .warn("daemon", "vigild answered on \(c.controlSocket) but refused ping: \(reply["error"]?.stringValue ?? "no reason")",
                         fix: "check `vigilctl logs` and that you are in the 'vigil' group")
        } catch {
            return .warn("daemon", error.description, fix: "systemctl status vigild; `vigilctl logs` shows why it stopped")
        }
    }

    // MARK: Bluetooth

    /// An HCI socket proves the kernel has Bluetooth; sysfs lists the adapters and rfkill
    /// whether they are blocked.
    static func bluetooth(_ c: DiagnoseContext) -> DiagnosticResult {
        let name = "bluetooth"
        let needed = c.devices.contains { $0.address != nil }
        let why = needed ? "" : " (no Bluetooth device is configured)"
        let fd = socket(31 /* AF_BLUETOOTH */, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 1 /* BTPROTO_HCI */)
        let socketErrno = errno
        if fd >= 0 { close(fd) }
        if fd < 0, socketErrno == EAFNOSUPPORT {
            let reason = "this kernel has no Bluetooth (AF_BLUETOOTH: \(String(cString: strerror(socketErrno))))" + why
            let fix = "load the bluetooth module (modprobe bluetooth btusb) or use a kernel with Bluetooth; check `dmesg | grep -i blue`"
            return needed ? .fail(name, reason, fix: fix) : .warn(name, reason, fix: fix)
        }
        let adapters = DiagnoseFiles.entries(c.sysfs + "/class/bluetooth").filter { $0.hasPrefix("hci") && !$0.contains(":") }
        if adapters.isEmpty {
            let reason = "no Bluetooth adapter (\(c.sysfs)/class/bluetooth is empty)" + why
            let fix = "plug in or enable the adapter; `lsusb`, `dmesg | grep -i hci`"
            return needed ? .fail(name, reason, fix: fix) : .warn(name, reason, fix: fix)
        }
        // rfkill: type "bluetooth", soft or hard "1" means blocked.
        for entry in DiagnoseFiles.entries(c.sysfs + "/class/rfkill") {
            let dir = c.sysfs + "/class/rfkill/" + entry
            guard DiagnoseFiles.line(dir + "/type") == "bluetooth" else { continue }
            if DiagnoseFiles.line(dir + "/hard") == "1" {
                return .fail(name, "the Bluetooth radio is switched off by a hardware switch (rfkill hard block)",
                             fix: "turn on the radio's switch")
            }
            if DiagnoseFiles.line(dir + "/soft") == "1" {
                return .fail(name, "the Bluetooth radio is blocked (rfkill soft block)", fix: "rfkill unblock bluetooth")
            }
        }
        return .pass(name, "adapter\(adapters.count == 1 ? "" : "s") \(adapters.joined(separator: ", ")) present, not blocked")
    }

    // MARK: serial ports

    static func serialPorts(_ c: DiagnoseContext) -> DiagnosticResult {
        let name = "serial_ports"
        let serial = c.devices.filter { $0.port != nil }
        if serial.isEmpty { return .pass(name, "no serial device is configured") }
        let account = Account(name: c.user)
        var problems: [String] = []
        var fixes: [String] = []
        var fine: [String] = []
        for device in serial {
            guard var port = device.port else { continue }
            if port == "usb" {
                guard let profileName = device.profile,
                      let profile = try? YAMLDecoder().decode(DeviceProfile.self,
                                                              from: DiagnoseFiles.read(c.deviceProfiles + "/" + profileName + ".yaml"),
                                                              fileName: profileName),
                      let address = profile.usbAddress else {
                    problems.append("device \(device.id): port usb, but its profile names no USB adapter")
                    fixes.append("give device \(device.id) a port path")
                    continue
                }
                port = address
            }
            if port.hasPrefix("usb:") {
                let ids = port.dropFirst(4).split(separator: ",").compactMap { USBSerialID(parsing: $0) }
                do {
                    port = try USBSerialLocator(sysfsRoot: c.sysfs).locate(ids)
                } catch {
                    problems.append("device \(device.id): \(error.reason)")
                    fixes.append("plug in the device's USB cable; `ls -l /dev/serial/by-id/`")
                    continue
                }
            }
            var st = stat()
            guard stat(port, &st) == 0 else {
                problems.append("device \(device.id): \(port): \(String(cString: strerror(errno)))")
                fixes.append("plug in the device's cable, or correct its port in \(c.configPath) (`ls -l /dev/serial/by-id/`)")
                continue
            }
            guard (st.st_mode & S_IFMT) == S_IFCHR else {
                problems.append("device \(device.id): \(port) is not a serial device (not a character device)")
                fixes.append("correct the port of device \(device.id) in \(c.configPath)")
                continue
            }
            switch account.canReadWrite(st) {
            case .yes:
                fine.append(port)
            case .no(let who):
                let owner = getgrgid(st.st_gid).map { String(cString: $0.pointee.gr_name) } ?? "\(st.st_gid)"
                problems.append("device \(device.id): \(who) cannot read and write \(port) (group \(owner), mode \(String(st.st_mode & 0o777, radix: 8)))")
                fixes.append("install the udev rules (/usr/lib/udev/rules.d/60-vigil-serial.rules) and `udevadm trigger`, or add \(c.user) to group \(owner)")
            }
        }
        if let note = account.note { fine.append(note) }
        if problems.isEmpty { return .pass(name, "\(fine.joined(separator: ", ")) readable and writable by \(account.label)") }
        return .fail(name, problems.joined(separator: "; "), fix: Array(Set(fixes)).sorted().joined(separator: "; "))
    }

    /// The account whose access is checked: its uid and all its groups.
    struct Account {
        var label: String
        var uid: uid_t?
        var groups: Set<gid_t> = []
        var note: String?

        enum Access { case yes, no(String) }

        init(name: String) {
            if let pw = getpwnam(name) {
                label = "user \(name)"
                uid = pw.pointee.pw_uid
                var count: Int32 = 64
                var list = [gid_t](repeating: 0, count: 64)
                if getgrouplist(name, pw.pointee.pw_gid, &list, &count) < 0, count > 64 {
                    list = [gid_t](repeating: 0, count: Int(count))
                    _ = getgrouplist(name, pw.pointee.pw_gid, &list, &count)
                }
                groups = Set(list.prefix(Int(max(0, count))))
                groups.insert(pw.pointee.pw_gid)
            } else {
                // No such account (a development machine): judge by this process instead.
                label = "this user (no account '\(name)')"
                uid = nil
                note = nil
            }
        }

        func canReadWrite(_ st: stat) -> Access {
            guard let uid else {
                return access_ok(st) ? .yes : .no(label)
            }
            if uid == 0 { return .yes }
            let rw: mode_t
            if st.st_uid == uid { rw = 0o600 } else if groups.contains(st.st_gid) { rw = 0o060 } else { rw = 0o006 }
            return (st.st_mode & rw) == rw ? .yes : .no(label)
        }

        private func access_ok(_ st: stat) -> Bool {
            if geteuid() == 0 { return true }
            let rw: mode_t
            if st.st_uid == geteuid() { rw = 0o600 } else if st.st_gid == getegid() { rw = 0o060 } else { rw = 0o006 }
            return (st.st_mode & rw) == rw
        }
    }

    // MARK: broker and TLS

    static func broker(_ c: DiagnoseContext) -> DiagnosticResult {
        let name = "broker"
        guard let host = c.brokerHost else {
            return .fail(name, "no broker.host in \(c.configPath)", fix: "set broker.host and broker.port (docs/configuration.md)")
        }
        let fd: Int32
        do {
            fd = try Network.connect(host: host, port: c.brokerPort, timeoutSeconds: c.timeoutSeconds)
        } catch {
            return .fail(name, "cannot connect to \(host):\(c.brokerPort): \(error.reason)",
                         fix: error.isResolution
                            ? "check broker.host and the DNS settings (`getent hosts \(host)`)"
                            : "check that the broker runs and that a firewall lets this gateway reach port \(c.brokerPort); check broker.host/port in \(c.configPath)")
        }
        defer { close(fd) }
        guard c.tlsConfigured else {
            return .pass(name, "\(host):\(c.brokerPort) accepts TCP connections (no TLS configured)")
        }
        var error = [CChar](repeating: 0, count: 512)
        let rc = vigil_tls_handshake(fd, host, c.caFile, c.certFile, c.keyFile, &error, error.count)
        if rc == 0 { return .pass(name, "\(host):\(c.brokerPort) completes a verified TLS handshake") }
        return .fail(name, "\(host):\(c.brokerPort): \(cText(error))",
                     fix: "check broker.tls.ca_file is the CA that signed the broker's certificate, that broker.host is a name the certificate carries, and that the broker accepts this client's certificate")
    }

    /// Certificate validity windows, CA chain and key pair, offline.
    static func tls(_ c: DiagnoseContext) -> DiagnosticResult {
        let name = "tls"
        guard c.tlsConfigured else {
            return .warn(name, "the broker connection is not encrypted (no broker.tls in \(c.configPath))",
                         fix: "configure broker.tls (docs/security.md): readings are health data")
        }
        let now = Int64(time(nil))
        var problems: [String] = []
        var warnings: [String] = []
        var notes: [String] = []
        for (label, path) in [("CA", c.caFile), ("client certificate", c.certFile)] {
            guard let path else { continue }
            var info = vigil_cert_info()
            var error = [CChar](repeating: 0, count: 512)
            guard vigil_cert_read(path, &info, &error, error.count) == 0 else {
                problems.append("\(label) \(path): \(cText(error))")
                continue
            }
            let days = (info.not_after - now) / 86_400
            if info.not_before > now {
                problems.append("\(label) \(path) is not valid until \(Timestamp(secondsSinceEpoch: info.not_before)) (is the clock right?)")
            } else if info.not_after <= now {
                problems.append("\(label) \(path) expired on \(Timestamp(secondsSinceEpoch: info.not_after))")
            } else if days < 30 {
                warnings.append("\(label) \(path) expires in \(days) day\(days == 1 ? "" : "s")")
            } else {
                notes.append("\(label) valid for \(days) days")
            }
        }
        if let ca = c.caFile, let cert = c.certFile, problems.isEmpty {
            var error = [CChar](repeating: 0, count: 512)
            if vigil_cert_verify(ca, cert, &error, error.count) != 0 {
                problems.append("client certificate \(cert) does not verify against \(ca): \(cText(error))")
            }
        }
        if let cert = c.certFile {
            if let key = c.keyFile {
                var error = [CChar](repeating: 0, count: 512)
                if vigil_key_matches(cert, key, &error, error.count) != 0 {
                    problems.append("client key \(key): \(cText(error))")
                }
            } else {
                problems.append("broker.tls.cert_file is set but broker.tls.key_file is not")
            }
        }
        if !problems.isEmpty {
            return .fail(name, problems.joined(separator: "; "),
                         fix: "install the certificates the care team's PKI issued for this gateway (docs/security.md); `openssl x509 -noout -dates -issuer -in FILE` shows a certificate")
        }
        if !warnings.isEmpty {
            return .warn(name, warnings.joined(separator: "; "), fix: "renew the certificate before it expires (docs/security.md)")
        }
        return .pass(name, notes.joined(separator: ", "))
    }

    // MARK: clock

    /// The kernel's view (adjtimex(2)): STA_UNSYNC is cleared by an NTP client that disciplines
    /// the clock (systemd-timesyncd, chrony).
    static func clock() -> DiagnosticResult {
        let name = "clock"
        var unsynced: Int32 = 0
        var esterror = 0
        if vigil_clock_state(&unsynced, &esterror) < 0 {
            return .warn(name, "cannot read the clock state: \(String(cString: strerror(errno)))", fix: "timedatectl status")
        }
        let now = Timestamp(secondsSinceEpoch: Int64(time(nil)))
        if unsynced != 0 {
            return .warn(name, "the system clock is not synchronised (now \(now)); readings without a device time are stamped with it",
                         fix: "enable time sync: `timedatectl set-ntp true` (systemd-timesyncd or chrony) and allow outbound NTP (UDP 123)")
        }
        return .pass(name, "synchronised (now \(now), estimated error \(esterror) µs)")
    }

    // MARK: disk and SD card

    static func disk(_ c: DiagnoseContext) -> DiagnosticResult {
        let name = "disk"
        var directory = c.database
        if let slash = directory.lastIndex(of: "/") { directory = String(directory[..<slash]) }
        if directory.isEmpty { directory = "/" }
        var vfs = statvfs()
        var rc: Int32
        repeat { rc = statvfs(directory, &vfs) } while rc < 0 && errno == EINTR
        guard rc == 0 else {
            return .fail(name, "\(directory): \(String(cString: strerror(errno)))",
                         fix: "create the database directory (systemd-tmpfiles --create) or correct paths.database")
        }
        let available = UInt64(vfs.f_bavail) * UInt64(vfs.f_frsize)
        let total = UInt64(vfs.f_blocks) * UInt64(vfs.f_frsize)
        let percent = total == 0 ? 0 : Int(available * 100 / total)
        let summary = "\(bytes(available)) free of \(bytes(total)) (\(percent) %) for \(directory)"
        // SQLite needs room for the WAL and a checkpoint; below this, commits start failing.
        if available < 64 << 20 || percent < 2 {
            return .fail(name, summary, fix: "free space on the filesystem of \(directory), or lower outbox.capacity_readings")
        }
        if available < 512 << 20 || percent < 10 {
            return .warn(name, summary, fix: "free space soon; delivered history is pruned, undelivered readings are kept")
        }
        return .pass(name, summary)
    }

    static func bytes(_ n: UInt64) -> String {
        if n >= 10 << 30 { return "\(n >> 30) GiB" }
        if n >= 10 << 20 { return "\(n >> 20) MiB" }
        if n >= 10 << 10 { return "\(n >> 10) KiB" }
        return "\(n) B"
    }

    /// eMMC wear, as the card reports it (JEDEC JESD84-B51 §7.4.111 PRE_EOL_INFO and
    /// DEVICE_LIFE_TIME_EST_TYP_A/B: 0x01 = 0–10 % of life used … 0x0A = 90–100 %, 0x0B = exceeded).
    /// Plain SD cards report neither; then there is nothing to read.
    static func sdCard(_ c: DiagnoseContext) -> DiagnosticResult {
        let name = "sd_card"
        let cards = DiagnoseFiles.entries(c.sysfs + "/block").filter { $0.hasPrefix("mmcblk") && !$0.contains("p") && !$0.contains("boot") && !$0.contains("rpmb") }
        if cards.isEmpty { return .pass(name, "no SD card or eMMC (nothing to check)") }
        var problems: [String] = []
        var warnings: [String] = []
        var notes: [String] = []
        for card in cards {
            let dir = c.sysfs + "/block/" + card + "/device"
            let lifeWords = DiagnoseFiles.line(dir + "/life_time")?.split(separator: " ").compactMap { hex($0) } ?? []
            let preEOL = DiagnoseFiles.line(dir + "/pre_eol_info").flatMap { hex(Substring($0)) }
            if lifeWords.isEmpty, preEOL == nil {
                notes.append("\(card) reports no wear data")
                continue
            }
            let worst = lifeWords.max() ?? 0
            let used = worst == 0 ? "unknown" : worst >= 0x0B ? "beyond its rated life" : "\((worst - 1) * 10)–\(worst * 10) % of its life used"
            switch (preEOL ?? 1, worst) {
            case (3..., _), (_, 0x0B...):
                problems.append("\(card): \(used), reserved blocks \(preEOL == 3 ? "urgent" : "ok")")
            case (2, _), (_, 0x09...):
                warnings.append("\(card): \(used), reserved blocks \(preEOL == 2 ? "80 % consumed" : "ok")")
            default:
                notes.append("\(card): \(used)")
            }
        }
        if !problems.isEmpty {
            return .fail(name, problems.joined(separator: "; "), fix: "replace the card now and restore /var/lib/vigil from the outbox's broker copy; it may fail at any write")
        }
        if !warnings.isEmpty {
            return .warn(name, warnings.joined(separator: "; "), fix: "plan to replace the card at the next visit")
        }
        return .pass(name, notes.joined(separator: "; "))
    }

    static func hex(_ s: Substring) -> Int? {
        let t = s.hasPrefix("0x") ? s.dropFirst(2) : s
        return Int(t, radix: 16)
    }

    // MARK: database

    /// `PRAGMA integrity_check` on a read-only connection. In WAL mode a reader never blocks
    /// vigild's writer; the check holds a read snapshot only while it runs.
    static func database(_ c: DiagnoseContext) -> DiagnosticResult {
        let name = "database"
        var st = stat()
        guard stat(c.database, &st) == 0 else {
            if errno == ENOENT {
                return .warn(name, "\(c.database) does not exist yet", fix: "start vigild once: it creates the database")
            }
            return .fail(name, "\(c.database): \(String(cString: strerror(errno)))",
                         fix: "run as root or a member of group vigil")
        }
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX
        var rc = sqlite3_open_v2(c.database, &db, flags, nil)
        defer { sqlite3_close_v2(db) }
        let corruptFix = "stop vigild, move \(c.database) aside (keep it for analysis) and start vigild: it creates a new database; undelivered readings in the old file are lost"
        guard rc == SQLITE_OK, let db else {
            return .fail(name, "cannot open \(c.database): \(String(cString: sqlite3_errstr(rc)))", fix: "run as root or a member of group vigil")
        }
        sqlite3_busy_timeout(db, 5_000)
        var statement: OpaquePointer?
        rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check(20)", -1, &statement, nil)
        guard rc == SQLITE_OK, let statement else {
            let message = String(cString: sqlite3_errmsg(db))
            let corrupt = rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT
            return .fail(name, "\(c.database): \(message)", fix: corrupt ? corruptFix : "check the file's permissions; run as root or a member of group vigil")
        }
        defer { sqlite3_finalize(statement) }
        var lines: [String] = []
        while true {
            rc = sqlite3_step(statement)
            guard rc == SQLITE_ROW else { break }
            if let text = sqlite3_column_text(statement, 0) { lines.append(String(cString: text)) }
        }
        if rc != SQLITE_DONE {
            let corrupt = rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT
            return .fail(name, "\(c.database): \(String(cString: sqlite3_errmsg(db)))",
                         fix: corrupt ? corruptFix : "retry; if vigild is writing heavily, the check waits for a snapshot")
        }
        if lines == ["ok"] {
            return .pass(name, "\(c.database): integrity ok (\(bytes(UInt64(max(0, st.st_size)))))")
        }
        // integrity_check names pages and tables, never row contents.
        return .fail(name, "\(c.database): integrity check found \(lines.count == 20 ? "20 or more" : "\(lines.count)") problem\(lines.count == 1 ? "" : "s"): \(lines.prefix(3).joined(separator: "; "))",
                     fix: corruptFix)
    }
}

/// A TCP connection with a time limit.
enum Network {
    struct Error: Swift.Error {
        var reason: String
        var isResolution = false
    }

    static func connect(host: String, port: Int, timeoutSeconds: Int) throws(Error) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw Error(reason: "cannot resolve \(host): \(String(cString: gai_strerror(rc)))", isResolution: true)
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let ai = entry {
            entry = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                            ai.pointee.ai_protocol)
            guard fd >= 0 else { lastError = String(cString: strerror(errno)); continue }
            var r = Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen)
            if r < 0, errno == EINPROGRESS || errno == EINTR {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                repeat { r = poll(&pfd, 1, Int32(timeoutSeconds * 1000)) } while r < 0 && errno == EINTR
                if r == 0 {
                    close(fd)
                    lastError = "no answer within \(timeoutSeconds) s"
                    continue
                }
                var soError: Int32 = 0
                var len = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
                if r < 0 || soError != 0 {
                    lastError = String(cString: strerror(r < 0 ? errno : soError))
                    close(fd)
                    continue
                }
            } else if r < 0 {
                lastError = String(cString: strerror(errno))
                close(fd)
                continue
            }
            // Blocking again for the TLS handshake, bounded by socket timeouts.
            let fl = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, fl & ~O_NONBLOCK)
            var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            return fd
        }
        throw Error(reason: lastError)
    }
}

/// The text of a NUL-terminated C buffer the shim filled in.
func cText(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
