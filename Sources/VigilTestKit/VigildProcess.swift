import Dispatch
import Glibc
public import VitalSigns

/// A real `vigild` run by a test: its own temporary directory, config, database, control
/// socket and care plans, pointed at a private broker and at pseudo-terminal devices.
public final class VigildProcess: @unchecked Sendable {
    // Safety: `pid` is only touched by the test that owns this object, one call at a time.

    public struct Device: Sendable {
        public var id: String
        public var port: String
        public var patient: String
        public var profile: String
        public init(id: String, port: String, patient: String, profile: String = "masimo-rad8") {
            self.id = id
            self.port = port
            self.patient = patient
            self.profile = profile
        }
    }

    public let directory: String
    public var configPath: String { directory + "/vigild.yaml" }
    public var databasePath: String { directory + "/state/vigil.sqlite" }
    public var controlSocket: String { directory + "/run/control.sock" }
    public var carePlansDirectory: String { directory + "/care-plans" }
    public var logPath: String { directory + "/vigild.log" }
    private var pid: pid_t = 0

    /// Where the built `vigild` and `vigilctl` are: `$VIGIL_BIN_DIR` (set by scripts/test),
    /// else `.build/debug` in the repository.
    public static var binDirectory: String {
        if let dir = getenv("VIGIL_BIN_DIR") { return String(cString: dir) }
        return Fixtures.repositoryRoot + "/.build/debug"
    }

    /// Writes a config for `devices` and `broker`, plus the given care plans (file name → YAML).
    /// `brokerHost`, `brokerConfig`: for TLS tests (`localhost` to match the certificate;
    /// further `broker:` keys, each line indented by two spaces, e.g. `  tls:\n    ca_file: …`).
    public init(brokerPort: Int, devices: [Device], carePlans: [String: String] = [:],
                extraConfig: String = "", brokerHost: String = "127.0.0.1", brokerConfig: String = "") throws(MosquittoBrokerError) {
        var template = [UInt8]("/tmp/vigild-test.XXXXXX".utf8) + [0]
        guard let made = template.withUnsafeMutableBufferPointer({ buf in
            buf.baseAddress.flatMap { mkdtemp(UnsafeMutableRawPointer($0).assumingMemoryBound(to: CChar.self)) }
        }) else { throw MosquittoBrokerError("mkdtemp", errno: errno, "cannot create a temporary directory") }
        directory = String(cString: made)
        for sub in ["state", "run", "care-plans"] { mkdir(directory + "/" + sub, 0o700) }
        var config = """
            site: test-site
            gateway: gw-test
            log_level: info
            paths:
              database: "\(databasePath)"
              control_socket: "\(controlSocket)"
              care_plans: "\(carePlansDirectory)"
              device_profiles: "\(Fixtures.repositoryRoot)/devices"
            broker:
              host: \(brokerHost)
              port: \(brokerPort)
              keepalive_seconds: 5
              reconnect_min_ms: 100
              reconnect_max_ms: 1000

            """
        if !brokerConfig.isEmpty {
            // `config` ends with the broker section's last line and its newline.
            config += brokerConfig + (brokerConfig.hasSuffix("\n") ? "" : "\n")
        }
        config += extraConfig
        if !devices.isEmpty {
            config += "devices:\n"
            for d in devices {
                config += "  - id: \(d.id)\n    profile: \(d.profile)\n    port: \"\(d.port)\"\n    patient: \(d.patient)\n"
            }
        }
        try MosquittoBroker.writeFile(configPath, config)
        for (name, text) in carePlans { try MosquittoBroker.writeFile(carePlansDirectory + "/" + name, text) }
    }

    deinit {
        if pid > 0 { _ = Glibc.kill(pid, SIGKILL); MosquittoBroker.reap(pid) }
    }

    public var isRunning: Bool { pid > 0 }

    /// Starts vigild and waits until its control socket answers.
    public func start(timeoutSeconds: Double = 10, environment: [String] = []) throws(MosquittoBrokerError) {
        precondition(pid == 0, "vigild already running")
        pid = try MosquittoBroker.spawn([Self.binDirectory + "/vigild", "--config", configPath], log: logPath,
                                        extraEnvironment: environment)
        let deadline = MosquittoBroker.monotonicMilliseconds() + Int64(timeoutSeconds * 1000)
        while MosquittoBroker.monotonicMilliseconds() < deadline {
            if (try? Self.run([Self.binDirectory + "/vigilctl", "status", "--json", "--socket", controlSocket], quiet: true))?
                .output.contains("\"verdict\"") == true { return }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                pid = 0
                throw MosquittoBrokerError("vigild", "exited during start-up: \(log())")
            }
            usleep(20_000)
        }
        throw MosquittoBrokerError("vigild", "control socket did not answer within \(timeoutSeconds) s: \(log())")
    }

    /// SIGTERM and wait: the graceful drain. Returns the exit status.
    @discardableResult
    public func terminate() -> Int32 {
        guard pid > 0 else { return -1 }
        _ = Glibc.kill(pid, SIGTERM)
        let status = MosquittoBroker.reap(pid)
        pid = 0
        return status
    }

    /// SIGKILL: no drain, no clean close — a power cut as far as the store can tell.
    public func kill9() {
        guard pid > 0 else { return }
        _ = Glibc.kill(pid, SIGKILL)
        MosquittoBroker.reap(pid)
        pid = 0
    }

    /// Runs `vigilctl` against this daemon's socket. Returns its exit status and stdout.
    public func ctl(_ arguments: [String]) throws(MosquittoBrokerError) -> (status: Int32, output: String) {
        try Self.run([Self.binDirectory + "/vigilctl"] + arguments + ["--socket", controlSocket])
    }

    /// `ctl`, waited for on a Dispatch thread instead of blocking a thread of the cooperative
    /// pool (two threads here). Use it when the command needs something this test process
    /// serves on the pool — a scripted BLE peer, a scripted meter — or the two can deadlock
    /// until a timeout when another test blocks the other pool thread.
    public func ctlOffPool(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        let argv = [Self.binDirectory + "/vigilctl"] + arguments + ["--socket", controlSocket]
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { () throws(MosquittoBrokerError) in try Self.run(argv) })
            }
        }
    }

    /// `vigilctl status --json`, parsed.
    public func status() throws -> JSONValue {
        let (_, output) = try ctl(["status", "--json"])
        return try JSONValue.parse(output)
    }

    public func log() -> String {
        (try? Fixtures.readFile(logPath)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    /// Runs a program to completion, capturing stdout (stderr goes to the test's stderr, or
    /// to /dev/null when `quiet`).
    public static func run(_ argv: [String], environment: [String]? = nil, quiet: Bool = false) throws(MosquittoBrokerError) -> (status: Int32, output: String) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw MosquittoBrokerError("pipe", errno: errno, "cannot create a pipe") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        if quiet { posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0) }
        let cArgs = argv.map { strdup($0) }
        defer { for a in cArgs { free(a) } }
        var argvC: [UnsafeMutablePointer<CChar>?] = cArgs + [nil]
        let cEnv = environment?.map { strdup($0) }
        defer { for e in cEnv ?? [] { free(e) } }
        var envC: [UnsafeMutablePointer<CChar>?]? = cEnv.map { $0 + [nil] }
        var child: pid_t = 0
        let rc = argvC.withUnsafeMutableBufferPointer { a -> Int32 in
            if envC != nil {
                return envC!.withUnsafeMutableBufferPointer { e in posix_spawn(&child, argv[0], &actions, nil, a.baseAddress!, e.baseAddress!) }
            }
            return posix_spawn(&child, argv[0], &actions, nil, a.baseAddress!, environ)
        }
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw MosquittoBrokerError("posix_spawn", errno: rc, "cannot start \(argv[0])")
        }
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            output += buffer[0..<n]
        }
        close(fds[0])
        let status = MosquittoBroker.reap(child)
        return (status, String(decoding: output, as: UTF8.self))
    }

    /// Removes the directory (after the test has read what it needs).
    public func cleanUp() {
        kill9()
        _ = try? Self.run(["/bin/rm", "-rf", directory])
    }
}
