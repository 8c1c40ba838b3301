import CVigilPosix
import Glibc
import Synchronization

/// A pseudo-terminal pair standing in for a serial device: the master side plays the
/// device; the slave path is what Vigil opens as if it were /dev/ttyUSB0.
///
/// Queued input (measured on Linux 6.18, `SerialLinkTests` "Pseudo-terminal input queue"):
/// bytes written to the master while no reader has the slave open, and bytes left unread
/// when the last reader closed, are KEPT for the next reader, with or without a held slave
/// descriptor: the pair (its termios and its input queue) lives as long as the master is
/// open. ``holdsSlaveOpen`` (the default) still keeps a slave descriptor open, so the
/// behaviour does not depend on that kernel detail and termios settings cannot be reset by
/// a last close on other kernels.
public final class PseudoTerminal: Sendable {
    /// The master side (the "device" end). Non-blocking.
    public let masterFD: Int32
    /// The slave device path, for example /dev/pts/7.
    public let slavePath: String
    /// A symlink kept pointing at `slavePath`, if one was asked for (like /dev/serial/by-id).
    public let linkPath: String?
    public let holdsSlaveOpen: Bool
    // Safety: the descriptors are closed once, under this mutex; (-1, -1) once closed.
    private let open: Mutex<(master: Int32, slave: Int32)>

    /// Opens a pair (`posix_openpt` via CVigilPosix), sets the slave raw, and optionally
    /// keeps a slave descriptor open and maintains a symlink to the slave.
    public init(linkPath: String? = nil, holdSlaveOpen: Bool = true) throws(SerialError) {
        var name = [CChar](repeating: 0, count: 128)
        let master = vigil_open_pty_master(&name, name.count)
        guard master >= 0 else { throw SerialError.from(errno: errno, path: "/dev/ptmx", operation: "posix_openpt") }
        let slavePath = String(decoding: name.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var slave: Int32 = -1
        do {
            let flags = try syscall(path: "/dev/ptmx", "fcntl(F_GETFL)") { fcntl(master, F_GETFL) }
            _ = try syscall(path: "/dev/ptmx", "fcntl(F_SETFL)") { fcntl(master, F_SETFL, flags | O_NONBLOCK) }
            slave = try syscall(path: slavePath, "open") { Glibc.open(slavePath, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK) }
            var t = termios()
            _ = try syscall(path: slavePath, "tcgetattr") { tcgetattr(slave, &t) }
            SerialPort.makeRaw(&t)
            _ = try syscall(path: slavePath, "tcsetattr") { tcsetattr(slave, TCSANOW, &t) }
            if !holdSlaveOpen {
                closeDescriptor(slave)
                slave = -1
            }
            if let linkPath { try Self.pointLink(linkPath, at: slavePath) }
        } catch {
            closeDescriptor(slave)
            closeDescriptor(master)
            throw error
        }
        self.masterFD = master
        self.slavePath = slavePath
        self.linkPath = linkPath
        self.holdsSlaveOpen = holdSlaveOpen
        self.open = Mutex((master, slave))
    }

    deinit { close() }

    /// Atomically makes `link` a symlink to `target` (symlink to a temporary name, then rename).
    static func pointLink(_ link: String, at target: String) throws(SerialError) {
        let temp = link + ".vigil-tmp"
        _ = unlink(temp)
        _ = try syscall(path: link, "symlink") { symlink(target, temp) }
        do {
            _ = try syscall(path: link, "rename") { rename(temp, link) }
        } catch {
            _ = unlink(temp)
            throw error
        }
    }

    /// Writes what it can without blocking; returns how many bytes were taken (0 when the
    /// pty's queue is full).
    public func writeSome(_ bytes: ArraySlice<UInt8>) throws(SerialError) -> Int {
        let fd = open.withLock { $0.master }
        guard fd >= 0 else { throw SerialError(code: .io, errno: EBADF, path: slavePath, operation: "write", reason: "the pseudo-terminal is closed") }
        while true {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n >= 0 { return n }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return 0 }
            throw SerialError.from(errno: e, path: slavePath, operation: "write")
        }
    }

    /// Writes every byte, sleeping briefly (never blocking a thread) while the queue is full.
    public func write(_ bytes: [UInt8]) async throws {
        var offset = 0
        while offset < bytes.count {
            let n = try writeSome(bytes[offset...])
            offset += n
            if n == 0 { try await Task.sleep(for: .milliseconds(5)) }
        }
    }

    /// "Unplugs" the device: closes the master and the held slave and removes the symlink
    /// if it still points here. A reader of the slave sees a hang-up. Idempotent.
    public func close() {
        let (master, slave) = open.withLock { fds in
            defer { fds = (-1, -1) }
            return fds
        }
        guard master >= 0 else { return }
        if let linkPath, Self.readLink(linkPath) == slavePath { _ = unlink(linkPath) }
        closeDescriptor(slave)
        closeDescriptor(master)
    }

    public var isOpen: Bool { open.withLock { $0.master >= 0 } }

    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
