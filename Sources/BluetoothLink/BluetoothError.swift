import Glibc

/// A Bluetooth link, ATT or GATT operation that failed, in words a field technician can act on.
/// Names the link (a Unix socket path or a device address), the step and the errno; never a
/// characteristic value (values are patient data).
public struct BluetoothError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable, CaseIterable {
        /// The machine cannot do Bluetooth at all (no kernel support: `socket()` fails with
        /// EAFNOSUPPORT; no adapter; adapter down). Everything else keeps running.
        case unavailable
        /// Connecting failed (refused, no such path, host down, timed out at the link layer).
        case connectFailed
        /// The peer went away (end of file, reset, link loss) or the bearer was closed.
        case disconnected
        /// No response within the ATT transaction timeout (Core v5.3 Vol 3 Part F §3.3.3); the
        /// bearer has been closed, as the specification requires.
        case timeout
        /// The peer broke an ATT rule (unexpected response opcode, a second indication before
        /// the confirmation, a malformed PDU). The bearer has been closed.
        case protocolViolation
        /// The peer answered a request with an ATT Error Response (`attErrorCode` says which).
        case attError
        /// A characteristic, descriptor or service the operation needs is not in the peer's database.
        case notFound
        /// The caller asked for something that cannot be done (a value longer than the MTU
        /// allows, an indication confirmed twice, a closed client).
        case invalidUse
        /// A system call failed in another way.
        case io
    }

    public var code: Code
    /// The errno of the failing call, 0 when none.
    public var errno: Int32
    /// The link: `seqpacket:/run/…` or `AA:BB:CC:DD:EE:FF`.
    public var link: String
    /// The system call or ATT procedure that failed, for example `socket`, `Read By Type`.
    public var operation: String
    /// What it means and what to try. Never contains a characteristic value.
    public var reason: String
    /// The ATT error code (Core v5.3 Vol 3 Part F §3.4.1.1) when `code == .attError`.
    public var attErrorCode: UInt8?

    public init(code: Code, errno: Int32 = 0, link: String, operation: String, reason: String, attErrorCode: UInt8? = nil) {
        self.code = code
        self.errno = errno
        self.link = link
        self.operation = operation
        self.reason = reason
        self.attErrorCode = attErrorCode
    }

    /// `unavailable(reason:)`: Bluetooth cannot be used on this machine.
    public static func unavailable(link: String, operation: String, errno e: Int32, reason: String) -> BluetoothError {
        BluetoothError(code: .unavailable, errno: e, link: link, operation: operation, reason: reason)
    }

    /// Builds the error for a failed system call from its errno.
    public static func from(errno e: Int32, link: String, operation: String) -> BluetoothError {
        let (code, reason): (Code, String) = switch e {
        case EAFNOSUPPORT, EPROTONOSUPPORT:
            (.unavailable, "Bluetooth unavailable: the kernel has no Bluetooth support (\(errnoName(e)))")
        case ENODEV:
            (.unavailable, "Bluetooth unavailable: no such adapter, or it is down (\(errnoName(e)))")
        case ERFKILL:
            (.unavailable, "Bluetooth unavailable: the adapter is blocked by rfkill (\(errnoName(e)))")
        case ENOENT, ECONNREFUSED, EHOSTDOWN, EHOSTUNREACH, ETIMEDOUT:
            (.connectFailed, "\(operation) failed: \(errnoName(e)); is the device on, in range and advertising?")
        case EACCES, EPERM:
            (.connectFailed, "\(operation) failed: \(errnoName(e)); does vigild have CAP_NET_RAW / the bluetooth group?")
        case ECONNRESET, EPIPE, ENOTCONN, ECONNABORTED:
            (.disconnected, "the device went away (\(errnoName(e)))")
        default:
            (.io, "\(operation) failed: \(errnoName(e))")
        }
        return BluetoothError(code: code, errno: e, link: link, operation: operation, reason: reason)
    }

    public var description: String {
        var s = "\(link): \(reason) (\(operation)"
        if errno != 0 { s += ", errno \(errno)" }
        if let a = attErrorCode { s += ", ATT error 0x" + hex(a) }
        return s + ")"
    }
}

/// The text of an errno value, for logs and errors.
func errnoName(_ e: Int32) -> String {
    guard let s = strerror(e) else { return "errno \(e)" }
    return String(cString: s)
}

func hex(_ b: UInt8) -> String {
    let h = String(b, radix: 16, uppercase: true)
    return b < 16 ? "0" + h : h
}

func hex(_ v: UInt16) -> String {
    let h = String(v, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, 4 - h.count)) + h
}

/// Runs a system call, retrying on EINTR; returns its result or throws with errno.
@inline(__always)
func syscall<T: BinaryInteger>(link: String, _ operation: String, _ body: () -> T) throws(BluetoothError) -> T {
    while true {
        let r = body()
        if r >= 0 { return r }
        let e = errno
        if e == EINTR { continue }
        throw BluetoothError.from(errno: e, link: link, operation: operation)
    }
}

/// Closes a descriptor once. Not retried on EINTR: Linux releases the descriptor anyway, and
/// a retry could close a reused number.
func closeDescriptor(_ fd: Int32) {
    if fd >= 0 { _ = Glibc.close(fd) }
}
