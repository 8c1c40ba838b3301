import Glibc
import Synchronization

/// A failure starting or talking to the private test broker.
public struct MosquittoBrokerError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var errno: Int32?
    public var reason: String
    public init(_ operation: String, errno: Int32? = nil, _ reason: String) {
        self.operation = operation
        self.errno = errno
        self.reason = reason
    }
    public var description: String {
        if let errno { return "\(operation): \(reason) (errno \(errno): \(String(cString: strerror(errno))))" }
        return "\(operation): \(reason)"
    }
}

/// A private `mosquitto` for tests: its own temp directory and generated config, bound to
/// 127.0.0.1 only on a free port, with `allow_anonymous true` and persistence off unless
/// asked otherwise.
///
/// Spawned with `posix_spawn` (no Foundation). `stop()` sends SIGTERM and reaps it,
/// `kill()` SIGKILL; `restart()` starts it again on the same port. Call `cleanUp()` (or
/// `stop()` then `cleanUp()`) at the end of a test.
public final class MosquittoBroker: @unchecked Sendable {
    // Safety: the only mutable state, the child's pid, lives in a Mutex.
    public struct Options: Sendable {
        /// Keep state in `<dir>/mosquitto.db` across `stop()`/`restart()` (saved on SIGTERM).
        public var persistence: Bool
        /// user → password. When non-empty, anonymous clients are refused.
        public var users: [String: String]
        /// Further mosquitto.conf lines, appended verbatim.
        public var extraConfig: [String]
        /// A second, TLS listener on `tlsPort` with its own settings (`per_listener_settings
        /// true`); the plain listener on `port` keeps anonymous access for test subscribers.
        public var tls: TLSListener?
        public init(persistence: Bool = false, users: [String: String] = [:], extraConfig: [String] = [],
                    tls: TLSListener? = nil) {
            self.persistence = persistence
            self.users = users
            self.extraConfig = extraConfig
            self.tls = tls
        }
    }

    /// A TLS listener (mosquitto.conf(5): cafile, certfile, keyfile, require_certificate,
    /// use_identity_as_username, password_file, acl_file).
    public struct TLSListener: Sendable {
        /// CA(s) the broker trusts for client certificates.
        public var caFile: String
        public var certFile: String
        public var keyFile: String
        /// mTLS: refuse clients without a certificate signed by `caFile`.
        public var requireCertificate: Bool
        /// The client certificate's CN becomes the user name (for the ACL).
        public var useIdentityAsUsername: Bool
        /// user → password for this listener (mosquitto_passwd); empty: no password file.
        public var users: [String: String]
        /// Lines of an acl_file for this listener; nil: no ACL (everything allowed).
        public var acl: [String]?
        public var allowAnonymous: Bool
        public init(caFile: String, certFile: String, keyFile: String, requireCertificate: Bool = false,
                    useIdentityAsUsername: Bool = false, users: [String: String] = [:], acl: [String]? = nil,
                    allowAnonymous: Bool = false) {
            self.caFile = caFile
            self.certFile = certFile
            self.keyFile = keyFile
            self.requireCertificate = requireCertificate
            self.useIdentityAsUsername = useIdentityAsUsername
            self.users = users
            self.acl = acl
            self.allowAnonymous = allowAnonymous
        }
    }

    public let port: Int
    /// The TLS listener's port when `options.tls` is set.
    public let tlsPort: Int?
    public let directory: String
    public let options: Options
    public let executable: String
    private let pidBox = Mutex<pid_t>(0)

    public var host: String { "127.0.0.1" }
    public var configPath: String { directory + "/mosquitto.conf" }
    public var logPath: String { directory + "/mosquitto.log" }

    /// Finds `mosquitto`, writes the config, starts it and waits until it accepts TCP
    /// connections (5 s deadline).
    public init(options: Options = Options()) throws(MosquittoBrokerError) {
        self.options = options
        self.executable = try Self.findExecutable()
        self.directory = try Self.makeTempDirectory()
        self.port = try Self.freePort()
        var tlsPort: Int? = nil
        if options.tls != nil {
            var p = try Self.freePort()
            while p == port { p = try Self.freePort() }
            tlsPort = p
        }
        self.tlsPort = tlsPort
        try writeConfig()
        try start()
    }

    deinit {
        let p = pidBox.withLock { $0 }
        if p > 0 { _ = Glibc.kill(p, SIGKILL); Self.reap(p) }
    }

    /// Whether the broker process is running (as far as this object knows).
    public var isRunning: Bool { pidBox.withLock { $0 > 0 } }

    private static func findExecutable() throws(MosquittoBrokerError) -> String {
        var candidates: [String] = []
        if let path = getenv("PATH") {
            for dir in String(cString: path).split(separator: ":") { candidates.append("\(dir)/mosquitto") }
        }
        candidates += ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
        for c in candidates where access(c, X_OK) == 0 { return c }
        throw MosquittoBrokerError("MosquittoBroker", "no mosquitto executable on PATH or in /usr/sbin (apt install mosquitto)")
    }

    static func makeTempDirectory() throws(MosquittoBrokerError) -> String {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(base)/vigil-mosquitto-XXXXXX".utf8CString)
        let ok = template.withUnsafeMutableBufferPointer { buf -> Bool in
            guard let p = buf.baseAddress else { return false }
            return mkdtemp(p) != nil
        }
        guard ok else { throw MosquittoBrokerError("mkdtemp", errno: errno, "cannot create a temp directory under \(base)") }
        return String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Binds 127.0.0.1:0, reads the port the kernel chose, and closes the socket.
    static func freePort() throws(MosquittoBrokerError) -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw MosquittoBrokerError("socket", errno: errno, "cannot create a socket to find a free port") }
        defer { _ = close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw MosquittoBrokerError("bind", errno: errno, "cannot bind 127.0.0.1:0") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc2 = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard rc2 == 0 else { throw MosquittoBrokerError("getsockname", errno: errno, "cannot read the bound port") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    private func writeConfig() throws(MosquittoBrokerError) {
        var lines = ["# Generated by VigilTestKit.MosquittoBroker"]
        // Auth settings (allow_anonymous, password_file, acl_file) then belong to the listener
        // above them, so the TLS listener's ACL does not bind the plain one.
        if options.tls != nil { lines.append("per_listener_settings true") }
        lines += [
            "listener \(port) 127.0.0.1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if getuid() == 0 { lines.append("user root") }  // else mosquitto drops to user "mosquitto"
        if options.persistence {
            lines += ["persistence true", "persistence_location \(directory)/", "autosave_interval 0"]
        } else {
            lines.append("persistence false")
        }
        if options.users.isEmpty {
            lines.append("allow_anonymous true")
        } else {
            let pwPath = directory + "/passwords"
            try Self.writeFile(pwPath, "")
            for (user, password) in options.users.sorted(by: { $0.key < $1.key }) {
                try Self.run(["/usr/bin/mosquitto_passwd", "-b", pwPath, user, password])
            }
            lines += ["allow_anonymous false", "password_file \(pwPath)"]
        }
        if let tls = options.tls, let tlsPort {
            lines += [
                "listener \(tlsPort) 127.0.0.1",
                "cafile \(tls.caFile)",
                "certfile \(tls.certFile)",
                "keyfile \(tls.keyFile)",
                "tls_version tlsv1.2",
                "require_certificate \(tls.requireCertificate)",
                "use_identity_as_username \(tls.useIdentityAsUsername)",
                "allow_anonymous \(tls.allowAnonymous)",
            ]
            if !tls.users.isEmpty {
                let pwPath = directory + "/tls-passwords"
                try Self.writeFile(pwPath, "")
                for (user, password) in tls.users.sorted(by: { $0.key < $1.key }) {
                    try Self.run(["/usr/bin/mosquitto_passwd", "-b", pwPath, user, password])
                }
                lines.append("password_file \(pwPath)")
            }
            if let acl = tls.acl {
                let aclPath = directory + "/tls-acl"
                try Self.writeFile(aclPath, acl.joined(separator: "\n") + "\n")
                lines.append("acl_file \(aclPath)")
            }
        }
        lines += options.extraConfig
        try Self.writeFile(configPath, lines.joined(separator: "\n") + "\n")
    }

    static func writeFile(_ path: String, _ text: String) throws(MosquittoBrokerError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw MosquittoBrokerError("open", errno: errno, "cannot create \(path)") }
        defer { _ = close(fd) }
        let bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw MosquittoBrokerError("write", errno: errno, "cannot write \(path)")
            }
            done += n
        }
    }

    /// Spawns `argv` with stdout/stderr appended to `log` (or /dev/null), with this process's
    /// environment plus `extraEnvironment` (`NAME=value` strings).
    static func spawn(_ argv: [String], log: String?, extraEnvironment: [String] = []) throws(MosquittoBrokerError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let out = log ?? "/dev/null"
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let cArgs = argv.map { strdup($0) }
        defer { for a in cArgs { free(a) } }
        var argvC: [UnsafeMutablePointer<CChar>?] = cArgs + [nil]
        // The child inherits the calling thread's signal mask, and Dispatch's worker threads
        // (where tests run) block SIGTERM among others: a broker started from one would
        // ignore stop(). Give it an empty mask and default dispositions.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGUSR1, SIGUSR2, SIGCHLD] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var environment: [String] = []
        var e = environ
        while let entry = e.pointee {
            environment.append(String(cString: entry))
            e += 1
        }
        let cEnv = (environment + extraEnvironment).map { strdup($0) }
        defer { for v in cEnv { free(v) } }
        var envC: [UnsafeMutablePointer<CChar>?] = cEnv + [nil]
        var pid: pid_t = 0
        let rc = argvC.withUnsafeMutableBufferPointer { buf -> Int32 in
            envC.withUnsafeMutableBufferPointer { envBuf -> Int32 in
                guard let base = buf.baseAddress, let envBase = envBuf.baseAddress else { return EINVAL }
                return posix_spawn(&pid, argv[0], &actions, &attr, base, envBase)
            }
        }
        guard rc == 0 else { throw MosquittoBrokerError("posix_spawn", errno: rc, "cannot start \(argv[0])") }
        return pid
    }

    /// Starts a helper tool (e.g. `mosquitto_sub -V mqttv5 -F …`) with stdout and stderr
    /// appended to `output`. Stop it with `terminateTool`.
    public static func spawnTool(_ argv: [String], output: String) throws(MosquittoBrokerError) -> Int32 {
        try spawn(argv, log: output)
    }

    /// Runs a helper tool to completion (output discarded) and checks its exit status.
    public static func runTool(_ argv: [String]) throws(MosquittoBrokerError) {
        try run(argv)
    }

    /// SIGTERM, then reap; returns the exit code.
    @discardableResult
    public static func terminateTool(_ pid: Int32) -> Int32 {
        _ = Glibc.kill(pid, SIGTERM)
        return reap(pid)
    }

    /// Reads a whole (small) text file; empty when it does not exist.
    public static func readText(_ path: String) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { _ = close(fd) }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Runs a helper to completion and checks its exit status.
    static func run(_ argv: [String]) throws(MosquittoBrokerError) {
        let pid = try spawn(argv, log: nil)
        let status = reap(pid)
        guard status == 0 else { throw MosquittoBrokerError(argv[0], "exited with status \(status)") }
    }

    /// waitpid, looping on EINTR; returns the exit code (128+signal when killed).
    @discardableResult
    static func reap(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return -1 }
        }
        let sig = status & 0x7F
        return sig == 0 ? (status >> 8) & 0xFF : 128 + sig
    }

    /// Starts the process (if not running) and waits until the port accepts connections.
    public func start() throws(MosquittoBrokerError) {
        if isRunning { return }
        let pid = try Self.spawn([executable, "-c", configPath], log: logPath)
        pidBox.withLock { $0 = pid }
        let deadline = Self.monotonicMilliseconds() + 5_000
        while Self.monotonicMilliseconds() < deadline {
            if Self.canConnect(port: port) { return }
            // Exited already (bad config, port taken)?
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                pidBox.withLock { $0 = 0 }
                throw MosquittoBrokerError("mosquitto", "exited during start-up; see \(logPath)")
            }
            // Polling with a deadline: nothing signals "listening" to us.
            var ts = timespec(tv_sec: 0, tv_nsec: 10_000_000)
            var rest = timespec()
            while nanosleep(&ts, &rest) != 0, errno == EINTR { ts = rest }
        }
        throw MosquittoBrokerError("mosquitto", "did not accept connections on 127.0.0.1:\(port) within 5 s; see \(logPath)")
    }

    /// SIGTERM, then wait for exit (mosquitto saves persistence on SIGTERM). Escalates to
    /// SIGKILL after 5 s so a wedged broker cannot hang a test run.
    public func stop() {
        signalAndReap(SIGTERM)
    }

    /// SIGKILL, then reap: the broker vanishes without saving anything.
    public func kill() {
        signalAndReap(SIGKILL)
    }

    /// SIGSTOP: the broker keeps its sockets open but answers nothing (no CONNACK, no
    /// PUBACK) until `resume()`. The kernel still accepts bytes into socket buffers.
    public func pause() {
        let p = pidBox.withLock { $0 }
        if p > 0 { _ = Glibc.kill(p, SIGSTOP) }
    }

    /// SIGCONT after `pause()`.
    public func resume() {
        let p = pidBox.withLock { $0 }
        if p > 0 { _ = Glibc.kill(p, SIGCONT) }
    }

    /// `stop()` then `start()` on the same port and config.
    public func restart() throws(MosquittoBrokerError) {
        stop()
        try start()
    }

    /// Stops the broker and removes its directory.
    public func cleanUp() {
        stop()
        if let dir = opendir(directory) {
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                if name == "." || name == ".." { continue }
                _ = unlink(directory + "/" + name)
            }
            closedir(dir)
        }
        _ = rmdir(directory)
    }

    private func signalAndReap(_ signal: Int32) {
        let p = pidBox.withLock { pid in
            let p = pid
            pid = 0
            return p
        }
        guard p > 0 else { return }
        _ = Glibc.kill(p, signal)
        _ = Glibc.kill(p, SIGCONT)  // a paused broker must see the signal
        let deadline = Self.monotonicMilliseconds() + 5_000
        var status: Int32 = 0
        while Self.monotonicMilliseconds() < deadline {
            let r = waitpid(p, &status, WNOHANG)
            if r == p || (r < 0 && errno != EINTR) { return }
            var ts = timespec(tv_sec: 0, tv_nsec: 2_000_000)
            _ = nanosleep(&ts, nil)
        }
        _ = Glibc.kill(p, SIGKILL)
        Self.reap(p)
    }

    static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { _ = close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return rc == 0
    }

    static func monotonicMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// The broker's log so far (errors, warnings, notices), for failure messages.
    public func log() -> String {
        let fd = open(logPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { _ = close(fd) }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }
}
