import Glibc

/// A serial or pseudo-terminal operation that failed, in words a field technician can act on.
public struct SerialError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        /// The path does not exist: the device is unplugged, or the by-id name is wrong.
        case notFound
        /// The process may not open the device (group `dialout`).
        case permissionDenied
        /// The path is not a terminal (a regular file, a directory, the wrong device).
        case notATerminal
        /// Another process holds the port exclusively.
        case busy
        /// The device went away while open (USB unplug, pty master closed).
        case hangup
        /// The requested line settings are not supported.
        case unsupportedSettings
        /// Any other system-call failure.
        case io
    }

    public var code: Code
    /// The errno of the failing call, 0 when none.
    public var errno: Int32
    public var path: String
    /// The system call or step that failed, for example `open`, `tcsetattr`.
    public var operation: String
    /// What it means and what to try.
    public var reason: String

    public init(code: Code, errno: Int32, path: String, operation: String, reason: String) {
        self.code = code
        self.errno = errno
        self.path = path
        self.operation = operation
        self.reason = reason
    }

    /// Builds the error for a failed call from its errno, with a reason for the technician.
    public static func from(errno e: Int32, path: String, operation: String) -> SerialError {
        let (code, reason): (Code, String) = switch e {
        case ENOENT: (.notFound, "no such device: is it plugged in, and is the path (for example /dev/serial/by-id/…) right?")
        case EACCES, EPERM: (.permissionDenied, "permission denied: is the vigil user in the dialout group?")
        case ENOTTY: (.notATerminal, "not a serial port (not a tty): check the configured path")
        case EBUSY: (.busy, "the port is in use by another program (exclusive access)")
        case EIO, ENXIO, ENODEV: (.hangup, "the device went away (unplugged or powered off)")
        case EISDIR: (.notATerminal, "the path is a directory, not a serial port")
        default: (.io, "\(operation) failed: \(errnoName(e))")
        }
        return SerialError(code: code, errno: e, path: path, operation: operation, reason: reason)
    }

    public var description: String {
        "\(path): \(reason) (\(operation), errno \(errno)\(errno != 0 ? " " + errnoName(errno) : ""))"
    }
}

/// The symbolic name of an errno value, for logs.
func errnoName(_ e: Int32) -> String {
    guard let s = strerror(e) else { return "errno \(e)" }
    return String(cString: s)
}

/// Runs a system call, retrying on EINTR; returns its result or throws with errno.
@inline(__always)
func syscall<T: BinaryInteger>(path: String, _ operation: String, _ body: () -> T) throws(SerialError) -> T {
    while true {
        let r = body()
        if r >= 0 { return r }
        let e = errno
        if e == EINTR { continue }
        throw SerialError.from(errno: e, path: path, operation: operation)
    }
}

/// Closes a descriptor once. `close` is not retried on EINTR: on Linux the descriptor is
/// released even when close reports EINTR, and retrying could close a reused number.
func closeDescriptor(_ fd: Int32) {
    if fd >= 0 { _ = Glibc.close(fd) }
}
