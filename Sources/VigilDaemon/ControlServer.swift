import CVigilPosix
import Glibc
import Logging
import Synchronization
import VitalSigns

/// The local control socket `vigilctl` talks to: a Unix stream socket, one JSON request
/// line in, one JSON response line out, then close.
///
/// Accepting and reading run on a dedicated thread with `poll` timeouts, so a stuck or
/// malicious client can hold neither the Swift cooperative pool nor the daemon.
/// Every caller is identified by SO_PEERCRED.
final class ControlServer: @unchecked Sendable {
    // Safety: the listening fd and the stop flag live in a Mutex; `thread` is touched only
    // by start() and stop(), which the daemon calls once each from its main task.
    /// Who connected: SO_PEERCRED's pid, uid and primary gid, and SO_PEERGROUPS' supplementary
    /// groups, all as they were at connect().
    struct Caller: Sendable {
        var pid: Int32
        var uid: UInt32
        var gid: UInt32
        var groups: [UInt32] = []
    }
    typealias Handler = @Sendable (JSONValue, Caller) async -> JSONValue

    struct StartError: Error, CustomStringConvertible {
        var path: String
        var reason: String
        var description: String { "control socket \(path): \(reason)" }
    }

    private let path: String
    /// The group that owns the socket file (the member group), when it exists.
    private let socketGroup: UInt32?
    private let handler: Handler
    private let logger: Logger
    private let listener = Mutex<(fd: Int32, stopping: Bool)>((-1, false))
    /// Requests being answered; more than `maxConcurrentRequests` are refused at once, so a
    /// flood of callers cannot pile up work on the daemon.
    private let inFlight = Atomic<Int>(0)
    static let maxConcurrentRequests = 4
    private var thread: pthread_t?

    static let maxRequestBytes = 64 * 1024

    init(path: String, socketGroup: UInt32? = nil, logger: Logger, handler: @escaping Handler) {
        self.path = path
        self.socketGroup = socketGroup
        self.logger = logger
        self.handler = handler
    }

    /// Binds the socket (mode 0660, group-owned by `socketGroup` when given) and starts the
    /// accept thread. Connecting to a Unix socket needs write permission on its file (unix(7)),
    /// so the file mode is the first gate; the per-command role check is the second.
    func start() throws(StartError) {
        try makeParentDirectory()
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw StartError(path: path, reason: "path is longer than a Unix socket allows")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw StartError(path: path, reason: "socket() failed: \(String(cString: strerror(errno)))") }
        // A socket file left by a daemon that died: remove it if nothing answers on it.
        if access(path, F_OK) == 0 {
            if Self.connectable(&address) {
                close(fd)
                throw StartError(path: path, reason: "another vigild is already listening there")
            }
            unlink(path)
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else {
            let e = errno
            close(fd)
            throw StartError(path: path, reason: "bind() failed: \(String(cString: strerror(e)))")
        }
        // bind() honours the umask; set the mode explicitly, then the group.
        guard chmod(path, 0o660) == 0 else {
            let e = errno
            close(fd)
            throw StartError(path: path, reason: "chmod 0660 failed: \(String(cString: strerror(e)))")
        }
        // Not fatal: a daemon that cannot hand its socket to the group still stores and forwards
        // readings; only root can then use vigilctl, and the log says why.
        if let group = socketGroup, chown(path, uid_t.max, group) != 0 {
            logger.error("control socket left in vigild's own group: only root can use vigilctl", metadata: [
                "path": "\(path)", "gid": "\(group)", "error": "\(String(cString: strerror(errno)))",
            ])
        }
        guard listen(fd, 16) == 0 else {
            let e = errno
            close(fd)
            throw StartError(path: path, reason: "listen() failed: \(String(cString: strerror(e)))")
        }
        listener.withLock { $0.fd = fd }
        let box = Unmanaged.passRetained(self)
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { arg in
            let server = Unmanaged<ControlServer>.fromOpaque(arg!).takeRetainedValue()
            server.acceptLoop()
            return nil
        }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            throw StartError(path: path, reason: "could not start its thread (\(rc))")
        }
        thread = t
    }

    /// Stops accepting, joins the thread (at most one poll interval plus one request's 2 s
    /// read deadline) and removes the socket file.
    func stop() {
        let fd: Int32 = listener.withLock {
            $0.stopping = true
            return $0.fd
        }
        if let t = thread {
            pthread_join(t, nil)
            thread = nil
        }
        if fd >= 0 {
            close(fd)
            unlink(path)
        }
        listener.withLock { $0.fd = -1 }
    }

    private func makeParentDirectory() throws(StartError) {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return }
        let parent = String(path[..<slash])
        var prefix = ""
        for part in parent.split(separator: "/") {
            prefix += "/" + part
            if mkdir(prefix, 0o750) != 0, errno != EEXIST {
                throw StartError(path: path, reason: "cannot create directory \(prefix): \(String(cString: strerror(errno)))")
            }
        }
    }

    private static func connectable(_ address: inout sockaddr_un) -> Bool {
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { return false }
        defer { close(probe) }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        } == 0
    }

    private func acceptLoop() {
        while true {
            let (fd, stop) = listener.withLock { ($0.fd, $0.stopping) }
            if stop || fd < 0 { return }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 200)
            if ready <= 0 { continue }
            let client = accept(fd, nil, nil)
            if client < 0 { continue }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            serve(client)
        }
    }

    private func serve(_ client: Int32) {
        var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
        guard vigil_peer_credentials(client, &pid, &uid, &gid) == 0 else {
            close(client)
            return
        }
        let caller = Caller(pid: pid, uid: uid, gid: gid, groups: Self.peerGroups(client))
        guard let line = Self.readLine(client, timeoutMilliseconds: 2000) else {
            Self.reply(client, .object([("ok", false), ("error", "request must be one JSON line of at most 64 KiB, sent within 2 s")]))
            return
        }
        let request: JSONValue
        do {
            request = try JSONValue.parse(line)
        } catch {
            Self.reply(client, .object([("ok", false), ("error", .string("\(error)"))]))
            return
        }
        guard inFlight.add(1, ordering: .acquiringAndReleasing).newValue <= Self.maxConcurrentRequests else {
            inFlight.subtract(1, ordering: .acquiringAndReleasing)
            Self.reply(client, .object([("ok", false), ("error", "busy: too many requests at once; try again")]))
            return
        }
        let handler = self.handler
        Task { [self] in
            let response = await handler(request, caller)
            Self.reply(client, response)
            inFlight.subtract(1, ordering: .acquiringAndReleasing)
        }
    }

    /// The peer's supplementary groups (SO_PEERGROUPS). Empty when the kernel cannot say
    /// (before Linux 4.13): the caller then counts with its primary group only, which can
    /// only refuse more, never grant more.
    private static func peerGroups(_ fd: Int32) -> [UInt32] {
        var capacity = 64
        while capacity <= 65_536 {
            var groups = [gid_t](repeating: 0, count: capacity)
            var count = 0
            let rc = vigil_peer_groups(fd, &groups, capacity, &count)
            if rc == 0 { return Array(groups.prefix(min(count, capacity))) }
            guard errno == ERANGE, count > capacity else { return [] }
            capacity = count
        }
        return []
    }

    /// Reads one request line within a total deadline, so a client that trickles bytes cannot
    /// hold the accept thread (and with it every other caller, and shutdown).
    private static func readLine(_ fd: Int32, timeoutMilliseconds: Int32) -> [UInt8]? {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = monotonicMilliseconds() + Int64(timeoutMilliseconds)
        while data.count <= maxRequestBytes {
            let remaining = deadline - monotonicMilliseconds()
            guard remaining > 0 else { return nil }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(remaining))
            if ready < 0, errno == EINTR { continue }
            guard ready > 0 else { return nil }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return data.isEmpty ? nil : data }
            data += buffer[0..<n]
            if let newline = data.firstIndex(of: 0x0A) { return Array(data[..<newline]) }
        }
        return nil
    }

    private static func monotonicMilliseconds() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Int64(t.tv_sec) * 1000 + Int64(t.tv_nsec) / 1_000_000
    }

    private static func reply(_ fd: Int32, _ value: JSONValue) {
        var text = value.serialized
        text += "\n"
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                break
            }
            offset += n
        }
        close(fd)
    }
}
