import Glibc
import Synchronization
import CBlueZ

/// ATT over a Unix `SOCK_SEQPACKET` socket: one raw ATT PDU per datagram, no L2CAP header.
/// The transport seam of issue 3 §6: the same ``GATTClient`` talks to a simulated peripheral
/// (``SimulatedPeripheral``, VigilTestKit's `ScriptedPeripheral`) on machines without Bluetooth.
public final class SeqPacketBearer: ATTBearer {
    private let socket: DatagramSocket

    public var link: String { socket.link }
    public var incoming: AsyncThrowingStream<[UInt8], any Error> { socket.incoming }

    private init(socket: DatagramSocket) { self.socket = socket }

    /// Connects to a peripheral listening at `path`. A Unix connect does not wait for the peer
    /// to accept, so this does not block.
    public static func connect(path: String) throws(BluetoothError) -> SeqPacketBearer {
        let link = "seqpacket:" + path
        let fd = try syscall(link: link, "socket") { Glibc.socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            var addr = try unixAddress(path, link: link)
            _ = try syscall(link: link, "connect") {
                withUnsafePointer(to: &addr) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                }
            }
        } catch {
            closeDescriptor(fd)
            throw error
        }
        return try wrap(fd: fd, link: link)
    }

    /// Takes ownership of a connected SOCK_SEQPACKET descriptor (from `socketpair` or `accept`).
    public static func wrap(fd: Int32, link: String) throws(BluetoothError) -> SeqPacketBearer {
        let socket = try DatagramSocket(fd: fd, link: link)
        try socket.start()
        return SeqPacketBearer(socket: socket)
    }

    /// A connected pair (`socketpair(AF_UNIX, SOCK_SEQPACKET)`): for tests, one end per side.
    public static func pair(link: String = "seqpacket:socketpair") throws(BluetoothError) -> (SeqPacketBearer, SeqPacketBearer) {
        var fds: [Int32] = [-1, -1]
        _ = try syscall(link: link, "socketpair") { socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) }
        let a: SeqPacketBearer
        do { a = try wrap(fd: fds[0], link: link) } catch { closeDescriptor(fds[1]); throw error }
        let b: SeqPacketBearer
        do { b = try wrap(fd: fds[1], link: link) } catch { a.close(); throw error }
        return (a, b)
    }

    public func send(_ pdu: [UInt8]) throws(BluetoothError) { try socket.send(pdu) }
    public func close() { socket.close() }
    deinit { socket.close() }
}

/// A listening Unix `SOCK_SEQPACKET` socket that hands out one ``SeqPacketBearer`` per
/// connection. Accepting happens on its own thread. Used by simulated peripherals.
public final class SeqPacketListener: Sendable {
    public let path: String
    /// Accepted connections, in order. Ends after ``close()``.
    public let connections: AsyncThrowingStream<SeqPacketBearer, any Error>
    private let continuation: AsyncThrowingStream<SeqPacketBearer, any Error>.Continuation
    private let fd: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let closed = Mutex(false)

    private init(path: String, fd: Int32, wake: (Int32, Int32)) {
        self.path = path
        self.fd = fd
        self.wakeRead = wake.0
        self.wakeWrite = wake.1
        (connections, continuation) = AsyncThrowingStream<SeqPacketBearer, any Error>.makeStream()
    }

    /// Binds and listens at `path` (a stale socket file there is removed first) and starts
    /// accepting.
    public static func listen(path: String) throws(BluetoothError) -> SeqPacketListener {
        let link = "seqpacket:" + path
        var addr = try unixAddress(path, link: link)
        _ = unlink(path)
        let fd = try syscall(link: link, "socket") { Glibc.socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        var p: [Int32] = [-1, -1]
        do throws(BluetoothError) {
            _ = try syscall(link: link, "bind") {
                withUnsafePointer(to: &addr) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                }
            }
            _ = try syscall(link: link, "listen") { Glibc.listen(fd, 8) }
            _ = try syscall(link: link, "pipe") { pipe(&p) }
        } catch {
            closeDescriptor(fd)
            throw error
        }
        for d in p { _ = fcntl(d, F_SETFD, FD_CLOEXEC); _ = fcntl(d, F_SETFL, O_NONBLOCK) }
        let listener = SeqPacketListener(path: path, fd: fd, wake: (p[0], p[1]))
        var thread = pthread_t()
        let box = Unmanaged.passRetained(listener).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            guard let arg else { return nil }
            let me = Unmanaged<SeqPacketListener>.fromOpaque(arg).takeRetainedValue()
            me.run()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<SeqPacketListener>.fromOpaque(box).release()
            closeDescriptor(fd); closeDescriptor(p[0]); closeDescriptor(p[1])
            throw BluetoothError.from(errno: rc, link: link, operation: "pthread_create")
        }
        pthread_detach(thread)
        return listener
    }

    /// Stops listening and removes the socket file.
    public func close() {
        closed.withLock { done in
            guard !done else { return }
            var one: UInt8 = 1
            _ = Glibc.write(wakeWrite, &one, 1)
        }
    }

    private func run() {
        let link = "seqpacket:" + path
        var failure: BluetoothError?
        loop: while true {
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let rc = poll(&fds, 2, -1)
            if rc < 0 {
                if errno == EINTR { continue }
                failure = BluetoothError.from(errno: errno, link: link, operation: "poll")
                break
            }
            if fds[1].revents != 0 { break }
            let c = accept(fd, nil, nil)
            if c < 0 {
                let e = errno
                if e == EINTR || e == EAGAIN || e == ECONNABORTED { continue }
                failure = BluetoothError.from(errno: e, link: link, operation: "accept")
                break
            }
            do {
                let bearer = try SeqPacketBearer.wrap(fd: c, link: link)
                if case .terminated = continuation.yield(bearer) { bearer.close(); break loop }
            } catch {
                failure = error
                break
            }
        }
        closed.withLock { done in
            done = true
            closeDescriptor(fd); closeDescriptor(wakeRead); closeDescriptor(wakeWrite)
        }
        _ = unlink(path)
        if let failure { continuation.finish(throwing: failure) } else { continuation.finish() }
    }
}

/// A `sockaddr_un` for `path`; paths longer than `sun_path` are an error, not a truncation.
func unixAddress(_ path: String, link: String) throws(BluetoothError) -> sockaddr_un {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    let capacity = MemoryLayout.size(ofValue: addr.sun_path)
    guard !bytes.isEmpty, bytes.count < capacity else {
        throw BluetoothError(code: .invalidUse, link: link, operation: "connect",
                             reason: "the socket path must be 1 to \(capacity - 1) bytes long")
    }
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in bytes.enumerated() { raw[i] = b }
    }
    return addr
}
