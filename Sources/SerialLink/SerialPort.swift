import Glibc
import Synchronization
public import VitalSigns

/// Line settings of a serial port.
public struct SerialSettings: Sendable, Hashable, CustomStringConvertible {
    public enum Parity: String, Sendable, Hashable { case none, even, odd }

    /// Bits per second: 1200, 2400, 4800, 9600, 19200, 38400, 57600 or 115200.
    public var baud: Int
    /// 5 to 8.
    public var dataBits: Int
    public var parity: Parity
    /// 1 or 2.
    public var stopBits: Int

    public init(baud: Int = 9600, dataBits: Int = 8, parity: Parity = .none, stopBits: Int = 1) {
        self.baud = baud
        self.dataBits = dataBits
        self.parity = parity
        self.stopBits = stopBits
    }

    /// 9600 8N1, the Masimo Rad-8's serial output.
    public static let rad8 = SerialSettings()

    public var description: String {
        "\(baud) \(dataBits)\(parity == .none ? "N" : parity == .even ? "E" : "O")\(stopBits)"
    }

    static let speeds: [Int: Int32] = [
        1200: B1200, 2400: B2400, 4800: B4800, 9600: B9600, 19200: B19200, 38400: B38400, 57600: B57600, 115200: B115200,
    ]
}

/// Bytes read from a port and when they arrived.
public struct SerialChunk: Sendable, Hashable {
    public var bytes: [UInt8]
    /// The gateway's wall clock (CLOCK_REALTIME) when `read` returned them.
    public var receivedAt: Timestamp
    public init(bytes: [UInt8], receivedAt: Timestamp) {
        self.bytes = bytes
        self.receivedAt = receivedAt
    }
}

/// An open serial port (or pseudo-terminal slave) in raw mode.
///
/// One object owns the descriptor. ``chunks(readSize:)`` hands it to a reader thread, which
/// closes it when the stream ends; ``close()`` closes it otherwise, and so does `deinit`.
public final class SerialPort: Sendable {
    /// The path that was opened (already resolved from any symlink by the caller, or not).
    public let path: String
    // Safety: the descriptor is read and replaced only under this mutex; -1 once closed or
    // handed to the reader thread.
    private let descriptor: Mutex<Int32>

    private init(path: String, fd: Int32) {
        self.path = path
        self.descriptor = Mutex(fd)
    }

    deinit { close() }

    /// Opens `path` and configures raw mode.
    ///
    /// `open(2)` with O_RDWR|O_NOCTTY|O_NONBLOCK|O_CLOEXEC; then termios raw mode (no echo, no
    /// canonical input, no CR/LF translation, no flow control, no output processing), the
    /// settings' speed and framing, CLOCAL|CREAD, VMIN=0/VTIME=0 (reads never block; the
    /// reader waits in `poll`). The input queue is deliberately NOT flushed: bytes that
    /// arrived while Vigil was not reading are readings.
    ///
    /// - Parameter exclusive: TIOCEXCL, so a second program cannot open the port and steal
    ///   bytes (root is exempt). Released (TIOCNXCL) before close.
    public static func open(path: String, settings: SerialSettings, exclusive: Bool = true) throws(SerialError) -> SerialPort {
        guard let speed = SerialSettings.speeds[settings.baud] else {
            throw SerialError(code: .unsupportedSettings, errno: 0, path: path, operation: "configure",
                              reason: "unsupported speed \(settings.baud) baud (use 1200…115200)")
        }
        guard (5...8).contains(settings.dataBits), (1...2).contains(settings.stopBits) else {
            throw SerialError(code: .unsupportedSettings, errno: 0, path: path, operation: "configure",
                              reason: "unsupported framing \(settings) (5–8 data bits, 1–2 stop bits)")
        }
        let fd = try syscall(path: path, "open") { Glibc.open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC) }
        do {
            try configure(fd: fd, path: path, speed: speed, settings: settings)
            if exclusive { _ = try syscall(path: path, "ioctl(TIOCEXCL)") { ioctl(fd, UInt(TIOCEXCL)) } }
        } catch {
            closeDescriptor(fd)
            throw error
        }
        return SerialPort(path: path, fd: fd)
    }

    static func configure(fd: Int32, path: String, speed: Int32, settings: SerialSettings) throws(SerialError) {
        var t = termios()
        _ = try syscall(path: path, "tcgetattr") { tcgetattr(fd, &t) }
        makeRaw(&t)
        t.c_cflag &= ~tcflag_t(CSIZE | PARENB | PARODD | CSTOPB)
        t.c_cflag &= ~tcflag_t(CRTSCTS)
        switch settings.dataBits {
        case 5: t.c_cflag |= tcflag_t(CS5)
        case 6: t.c_cflag |= tcflag_t(CS6)
        case 7: t.c_cflag |= tcflag_t(CS7)
        default: t.c_cflag |= tcflag_t(CS8)
        }
        switch settings.parity {
        case .none: break
        case .even: t.c_cflag |= tcflag_t(PARENB)
        case .odd: t.c_cflag |= tcflag_t(PARENB | PARODD)
        }
        if settings.stopBits == 2 { t.c_cflag |= tcflag_t(CSTOPB) }
        // CLOCAL: ignore modem lines (adapters often have no DCD); CREAD: enable the receiver.
        t.c_cflag |= tcflag_t(CLOCAL | CREAD)
        _ = try syscall(path: path, "cfsetispeed") { cfsetispeed(&t, speed_t(speed)) }
        _ = try syscall(path: path, "cfsetospeed") { cfsetospeed(&t, speed_t(speed)) }
        _ = try syscall(path: path, "tcsetattr") { tcsetattr(fd, TCSANOW, &t) }
        // tcsetattr succeeds if any change applied; check the ones that matter.
        var check = termios()
        _ = try syscall(path: path, "tcgetattr") { tcgetattr(fd, &check) }
        guard check.c_lflag & tcflag_t(ICANON | ECHO) == 0, cfgetispeed(&check) == speed_t(speed) else {
            throw SerialError(code: .unsupportedSettings, errno: 0, path: path, operation: "tcsetattr",
                              reason: "the port did not accept \(settings) raw mode")
        }
    }

    /// cfmakeraw(3), written out so every flag is visible here.
    static func makeRaw(_ t: inout termios) {
        t.c_iflag &= ~tcflag_t(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF | IXANY)
        t.c_oflag &= ~tcflag_t(OPOST)
        t.c_lflag &= ~tcflag_t(ECHO | ECHONL | ICANON | ISIG | IEXTEN)
        t.c_cflag &= ~tcflag_t(CSIZE | PARENB)
        t.c_cflag |= tcflag_t(CS8)
        withUnsafeMutableBytes(of: &t.c_cc) { cc in
            cc[Int(VMIN)] = 0
            cc[Int(VTIME)] = 0
        }
    }

    /// Closes the port (releasing exclusive access first). Idempotent.
    public func close() {
        let fd = descriptor.withLock { fd in
            defer { fd = -1 }
            return fd
        }
        if fd >= 0 {
            _ = ioctl(fd, UInt(TIOCNXCL))
            closeDescriptor(fd)
        }
    }

    /// Whether the port is still open here (not closed, not handed to a reader).
    public var isOpen: Bool { descriptor.withLock { $0 >= 0 } }

    /// Writes all bytes (`write(2)`, waiting in `poll` while the output queue is full).
    /// Blocking: call it from a thread of your own, not the cooperative pool.
    public func write(_ bytes: [UInt8]) throws(SerialError) {
        let fd = descriptor.withLock { $0 }
        guard fd >= 0 else { throw SerialError(code: .io, errno: EBADF, path: path, operation: "write", reason: "the port is closed") }
        try writeAll(fd: fd, bytes: bytes, path: path)
    }

    /// A second descriptor for the same open port (dup(2)), for protocols that must answer
    /// while ``chunks(readSize:)`` owns the reading one: a meter's acknowledgements, the next
    /// command of a download. Call it before `chunks`. The writer closes its own descriptor.
    public func writer() throws(SerialError) -> SerialWriter {
        let fd = descriptor.withLock { $0 }
        guard fd >= 0 else { throw SerialError(code: .io, errno: EBADF, path: path, operation: "dup", reason: "the port is closed") }
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { throw SerialError.from(errno: errno, path: path, operation: "dup") }
        return SerialWriter(path: path, fd: copy)
    }

    /// Hands the descriptor to a dedicated reader thread and returns the stream of what it
    /// reads. The stream finishes without error when the consumer stops iterating (or its
    /// task is cancelled), and throws ``SerialError`` with code `.hangup` when the device
    /// goes away (read returns 0 or EIO, or poll reports POLLHUP/POLLERR). The thread closes
    /// the descriptor when it ends. Calling this twice yields an already-failed stream.
    ///
    /// Reading is demand-driven (see `ReaderThread`): the next chunk is read only when the
    /// consumer asks for it, so what the consumer has not yet processed stays in the kernel.
    public func chunks(readSize: Int = 16_384) -> SerialChunks {
        let fd = descriptor.withLock { fd in
            defer { fd = -1 }
            return fd
        }
        // The stream holds at most one chunk: the reader waits for demand before reading more.
        let (stream, continuation) = AsyncThrowingStream<SerialChunk, any Error>.makeStream()
        guard fd >= 0 else {
            continuation.finish(throwing: SerialError(code: .io, errno: EBADF, path: path, operation: "read", reason: "the port is closed"))
            return SerialChunks(stream: stream, reader: nil)
        }
        do {
            let reader = try ReaderThread(fd: fd, path: path, readSize: max(readSize, 1), continuation: continuation)
            continuation.onTermination = { _ in reader.wake() }
            try reader.start()
            return SerialChunks(stream: stream, reader: reader)
        } catch {
            _ = ioctl(fd, UInt(TIOCNXCL))
            closeDescriptor(fd)
            continuation.finish(throwing: error)
            return SerialChunks(stream: stream, reader: nil)
        }
    }
}

/// The chunks a port reads, one at a time: each call to the iterator's `next()` after the
/// first asks the reader thread for one more chunk, so nothing is read ahead of the consumer.
public struct SerialChunks: AsyncSequence, Sendable {
    public typealias Element = SerialChunk
    let stream: AsyncThrowingStream<SerialChunk, any Error>
    let reader: ReaderThread?

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<SerialChunk, any Error>.AsyncIterator
        let reader: ReaderThread?
        var started = false

        public mutating func next() async throws -> SerialChunk? {
            if started { reader?.grant() }
            started = true
            return try await base.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: stream.makeAsyncIterator(), reader: reader)
    }
}

func writeAll(fd: Int32, bytes: [UInt8], path: String) throws(SerialError) {
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if n >= 0 {
            offset += n
            continue
        }
        let e = errno
        if e == EINTR { continue }
        if e == EAGAIN || e == EWOULDBLOCK {
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = try syscall(path: path, "poll") { poll(&p, 1, 1000) }
            continue
        }
        throw SerialError.from(errno: e, path: path, operation: "write")
    }
}

/// The gateway's wall clock, CLOCK_REALTIME, in milliseconds.
public func realtimeNow() -> Timestamp {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Timestamp(millisecondsSinceEpoch: Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000)
}

/// The writing half of a port whose reading half is a ``SerialChunks`` stream.
public final class SerialWriter: Sendable {
    public let path: String
    private let descriptor: Mutex<Int32>

    init(path: String, fd: Int32) {
        self.path = path
        descriptor = Mutex(fd)
    }

    deinit { close() }

    /// Writes every byte (waiting in `poll` while the output queue is full). Blocking for at
    /// most the time the line takes to send them; commands are a few bytes.
    public func write(_ bytes: [UInt8]) throws(SerialError) {
        let fd = descriptor.withLock { $0 }
        guard fd >= 0 else { throw SerialError(code: .io, errno: EBADF, path: path, operation: "write", reason: "the port is closed") }
        try writeAll(fd: fd, bytes: bytes, path: path)
    }

    /// Whether the device has sent bytes that nobody has read yet (poll(2) on this descriptor,
    /// which shares the port's input queue), without taking them.
    public var hasPendingInput: Bool {
        let fd = descriptor.withLock { $0 }
        guard fd >= 0 else { return false }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) > 0 && p.revents & Int16(POLLIN) != 0
    }

    public func close() {
        let fd = descriptor.withLock { fd in
            defer { fd = -1 }
            return fd
        }
        if fd >= 0 { closeDescriptor(fd) }
    }
}
