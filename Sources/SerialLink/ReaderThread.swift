import Glibc
import Synchronization

/// A dedicated POSIX thread that waits in `poll(2)` on one descriptor and yields what
/// `read(2)` returns. Blocking calls stay off the Swift cooperative pool (2 threads here).
///
/// A self-pipe wakes the thread when the consumer goes away, so cancellation is prompt.
///
/// Reading is demand-driven: the thread reads one chunk, hands it over, and reads the next
/// only after the consumer asks for it (``grant()``, called by the sequence's iterator when
/// the consumer comes back for more, i.e. after it has committed the previous chunk).
/// Bytes not yet read stay in the kernel's tty queue, which outlives this process, so a
/// kill -9 loses at most the one chunk being committed (and a line it cut in half), not a
/// buffer of chunks read ahead.
final class ReaderThread: Sendable {
    private let fd: Int32
    private let path: String
    private let readSize: Int
    private let continuation: AsyncThrowingStream<SerialChunk, any Error>.Continuation
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let demandRead: Int32
    private let demandWrite: Int32
    // Safety: `finished` guards the wake pipe's lifetime: `wake()` writes only while the
    // thread has not yet closed it, so a reused descriptor number is never written.
    private let finished = Mutex(false)

    init(fd: Int32, path: String, readSize: Int, continuation: AsyncThrowingStream<SerialChunk, any Error>.Continuation) throws(SerialError) {
        var pipeFDs: [Int32] = [-1, -1]
        var demandFDs: [Int32] = [-1, -1]
        // pipe2 is not visible from Swift's Glibc; pipe + fcntl leaves a window in which a
        // concurrent fork+exec could inherit the pipe, which is harmless (it carries nothing).
        _ = try syscall(path: path, "pipe") { pipe(&pipeFDs) }
        do {
            _ = try syscall(path: path, "pipe") { pipe(&demandFDs) }
        } catch {
            closeDescriptor(pipeFDs[0])
            closeDescriptor(pipeFDs[1])
            throw error
        }
        for p in pipeFDs + demandFDs {
            _ = fcntl(p, F_SETFD, FD_CLOEXEC)
            _ = fcntl(p, F_SETFL, O_NONBLOCK)
        }
        self.fd = fd
        self.path = path
        self.readSize = readSize
        self.continuation = continuation
        self.wakeRead = pipeFDs[0]
        self.wakeWrite = pipeFDs[1]
        self.demandRead = demandFDs[0]
        self.demandWrite = demandFDs[1]
    }

    func start() throws(SerialError) {
        var thread = pthread_t()
        let box = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            guard let arg else { return nil }
            let reader = Unmanaged<ReaderThread>.fromOpaque(arg).takeRetainedValue()
            reader.run()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<ReaderThread>.fromOpaque(box).release()
            for p in [wakeRead, wakeWrite, demandRead, demandWrite] { closeDescriptor(p) }
            throw SerialError.from(errno: rc, path: path, operation: "pthread_create")
        }
        pthread_detach(thread)
    }

    /// Asks the thread to stop (the consumer stopped iterating). Safe from any thread, any time.
    func wake() {
        finished.withLock { done in
            guard !done else { return }
            var one: UInt8 = 1
            _ = Glibc.write(wakeWrite, &one, 1)
        }
    }

    /// The consumer is ready for one more chunk. Safe from any thread, any time.
    func grant() {
        finished.withLock { done in
            guard !done else { return }
            var one: UInt8 = 1
            _ = Glibc.write(demandWrite, &one, 1)
        }
    }

    private func run() {
        let outcome = loop()
        finished.withLock { done in
            done = true
            for p in [wakeRead, wakeWrite, demandRead, demandWrite] { closeDescriptor(p) }
        }
        _ = ioctl(fd, UInt(TIOCNXCL))
        closeDescriptor(fd)
        switch outcome {
        case .none: continuation.finish()
        case .some(let error): continuation.finish(throwing: error)
        }
    }

    /// Returns nil when asked to stop, or the error that ended the stream.
    private func loop() -> SerialError? {
        var buffer = [UInt8](repeating: 0, count: readSize)
        let hangupMask = Int16(POLLHUP | POLLERR | POLLNVAL)
        var credits = 1
        var drain = [UInt8](repeating: 0, count: 64)
        while true {
            if credits == 0 {
                // Wait for the consumer to ask for more (or to go away).
                var fds = [pollfd(fd: demandRead, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
                let rc = poll(&fds, 2, -1)
                if rc < 0 {
                    if errno == EINTR { continue }
                    return SerialError.from(errno: errno, path: path, operation: "poll")
                }
                if fds[1].revents != 0 { return nil }
                let n = drain.withUnsafeMutableBytes { read(demandRead, $0.baseAddress, $0.count) }
                if n > 0 { credits += n }
                continue
            }
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let rc = poll(&fds, 2, -1)
            if rc < 0 {
                if errno == EINTR { continue }
                return SerialError.from(errno: errno, path: path, operation: "poll")
            }
            if fds[1].revents != 0 { return nil }
            let ev = fds[0].revents
            // Drain readable data before honouring a hang-up: the last bytes are readings.
            if ev & Int16(POLLIN) != 0 || ev & hangupMask != 0 {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    // The tty layer hands out at most 4 KiB per read; take what else is already
                    // queued (non-blocking) up to the chunk size, so one commit covers a burst.
                    // EOF or an error after this is seen on the next round, after these bytes.
                    var total = n
                    while total < buffer.count {
                        let more = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + total, $0.count - total) }
                        if more > 0 { total += more } else { break }
                    }
                    let chunk = SerialChunk(bytes: Array(buffer[0..<total]), receivedAt: realtimeNow())
                    if case .terminated = continuation.yield(chunk) { return nil }
                    credits -= 1
                    continue
                }
                if n == 0 {
                    return SerialError(code: .hangup, errno: 0, path: path, operation: "read",
                                       reason: "the device went away (end of file: unplugged or powered off)")
                }
                let e = errno
                if e == EINTR || e == EAGAIN || e == EWOULDBLOCK {
                    if ev & hangupMask != 0 {
                        return SerialError(code: .hangup, errno: 0, path: path, operation: "poll",
                                           reason: "the device went away (hang-up: unplugged or powered off)")
                    }
                    continue
                }
                return SerialError.from(errno: e, path: path, operation: "read")
            }
        }
    }
}
