import Glibc
import Synchronization

/// A connection that carries whole ATT PDUs, one per datagram: an L2CAP LE socket on the ATT
/// channel (CID 4) for a real device, or a Unix SOCK_SEQPACKET socket for a simulated one.
///
/// Blocking I/O happens on the bearer's own thread; the Swift cooperative pool never waits in
/// a system call. `send` never blocks (a full socket buffer is an error, not a wait).
public protocol ATTBearer: AnyObject, Sendable {
    /// The link, for errors and logs: `seqpacket:/path` or `AA:BB:CC:DD:EE:FF`.
    var link: String { get }
    /// Sends one PDU (opcode first) as one datagram.
    func send(_ pdu: [UInt8]) throws(BluetoothError)
    /// The PDUs received, in order, one element per datagram. Ends normally after ``close()``,
    /// or with a ``BluetoothError`` (`.disconnected` when the peer went away). One consumer only.
    var incoming: AsyncThrowingStream<[UInt8], any Error> { get }
    /// Closes the link (idempotent, any thread). `incoming` ends soon after.
    func close()
}

/// Shared machinery of the socket bearers: owns the descriptor and the reader thread.
///
/// Invariant: `fd` is only used while `state.closed == false`, under the lock; the reader
/// thread closes it under the same lock, so a reused descriptor number is never touched.
final class DatagramSocket: Sendable {
    let link: String
    let incoming: AsyncThrowingStream<[UInt8], any Error>
    private let continuation: AsyncThrowingStream<[UInt8], any Error>.Continuation
    private let fd: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let state = Mutex(State())

    private struct State {
        var closed = false
        var closing = false
        var started = false
    }

    /// Takes ownership of `fd` (closed on failure too).
    init(fd: Int32, link: String) throws(BluetoothError) {
        var p: [Int32] = [-1, -1]
        guard pipe(&p) == 0 else {
            let e = errno
            closeDescriptor(fd)
            throw BluetoothError.from(errno: e, link: link, operation: "pipe")
        }
        for d in p {
            _ = fcntl(d, F_SETFD, FD_CLOEXEC)
            _ = fcntl(d, F_SETFL, O_NONBLOCK)
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        self.fd = fd
        self.link = link
        self.wakeRead = p[0]
        self.wakeWrite = p[1]
        (incoming, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
    }

    /// Starts the reader thread. Called once by the bearer's factory, not from an initialiser.
    func start() throws(BluetoothError) {
        let already = state.withLock { s in
            defer { s.started = true }
            return s.started
        }
        guard !already else { return }
        continuation.onTermination = { [weak self] _ in self?.close() }
        var thread = pthread_t()
        let box = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            guard let arg else { return nil }
            let me = Unmanaged<DatagramSocket>.fromOpaque(arg).takeRetainedValue()
            me.run()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<DatagramSocket>.fromOpaque(box).release()
            shutdownAndRelease(error: BluetoothError.from(errno: rc, link: link, operation: "pthread_create"))
            throw BluetoothError.from(errno: rc, link: link, operation: "pthread_create")
        }
        pthread_detach(thread)
    }

    func send(_ pdu: [UInt8]) throws(BluetoothError) {
        let result: BluetoothError? = state.withLock { s in
            guard !s.closed, !s.closing else {
                return BluetoothError(code: .disconnected, link: link, operation: "send", reason: "the link is closed")
            }
            while true {
                let n = pdu.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
                if n == pdu.count { return nil }
                if n >= 0 {
                    return BluetoothError(code: .io, link: link, operation: "send", reason: "short send of a datagram (\(n) of \(pdu.count) bytes)")
                }
                let e = errno
                if e == EINTR { continue }
                if e == EAGAIN || e == EWOULDBLOCK {
                    return BluetoothError(code: .io, errno: e, link: link, operation: "send",
                                          reason: "the peer is not reading (socket buffer full)")
                }
                return BluetoothError.from(errno: e, link: link, operation: "send")
            }
        }
        if let result { throw result }
    }

    /// Runs `body` with the descriptor while it is open (under the lock, so it cannot be
    /// closed and reused meanwhile); does nothing once closed.
    func withOpenDescriptor(_ body: (Int32) -> Void) {
        state.withLock { s in
            guard !s.closed, !s.closing else { return }
            body(fd)
        }
    }

    /// Closes the link: the reader thread wakes, closes the descriptor and ends `incoming`.
    func close() {
        state.withLock { s in
            guard !s.closed, !s.closing else { return }
            s.closing = true
            if !s.started {
                // No thread owns the descriptors yet: release them here.
                s.closed = true
                closeDescriptor(fd); closeDescriptor(wakeRead); closeDescriptor(wakeWrite)
                continuation.finish()
                return
            }
            _ = shutdown(fd, Int32(SHUT_RDWR))
            var one: UInt8 = 1
            _ = Glibc.write(wakeWrite, &one, 1)
        }
    }

    private func shutdownAndRelease(error: BluetoothError?) {
        let wasClosed = state.withLock { s in
            defer { s.closed = true }
            if !s.closed { closeDescriptor(fd); closeDescriptor(wakeRead); closeDescriptor(wakeWrite) }
            return s.closed
        }
        if wasClosed { return }
        if let error { continuation.finish(throwing: error) } else { continuation.finish() }
    }

    private func run() {
        let outcome = loop()
        shutdownAndRelease(error: outcome)
    }

    /// Returns nil when closed by us, or the error that ended the link.
    private func loop() -> BluetoothError? {
        // An ATT PDU is at most 517 octets (ATT_MTU max); a bigger buffer lets us notice and
        // reject an oversized datagram instead of silently cutting it.
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let rc = poll(&fds, 2, -1)
            if rc < 0 {
                if errno == EINTR { continue }
                return BluetoothError.from(errno: errno, link: link, operation: "poll")
            }
            if fds[1].revents != 0 { return nil }
            let ev = fds[0].revents
            guard ev != 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                if case .terminated = continuation.yield(Array(buffer[0..<n])) { return nil }
                continue
            }
            if n == 0 {
                if state.withLock({ $0.closing }) { return nil }
                return BluetoothError(code: .disconnected, link: link, operation: "recv",
                                      reason: "the device went away (end of stream)")
            }
            let e = errno
            if e == EINTR || e == EAGAIN || e == EWOULDBLOCK { continue }
            if state.withLock({ $0.closing }) { return nil }
            return BluetoothError.from(errno: e, link: link, operation: "recv")
        }
    }
}
