import Glibc
import Dispatch
import CBlueZ

/// The LE address type of a device (Core v5.3 Vol 6 Part B §1.3): devices profiles say which.
public enum LEAddressType: String, Sendable, Hashable, CaseIterable {
    case `public`
    case random

    var bdaddrType: UInt8 { self == .public ? UInt8(BDADDR_LE_PUBLIC) : UInt8(BDADDR_LE_RANDOM) }
}

/// The link security Vigil asks the kernel for (`BT_SECURITY`, BlueZ's socket option).
public enum LinkSecurity: String, Sendable, Hashable, CaseIterable {
    /// No encryption: devices that do not bond (most heart-rate straps, many scales).
    case low
    /// Encrypted, unauthenticated pairing ("Just Works"): devices that need bonding.
    case medium
    /// Encrypted and authenticated (MITM-protected pairing, passkey).
    case high

    var level: UInt8 {
        switch self {
        case .low: UInt8(BT_SECURITY_LOW)
        case .medium: UInt8(BT_SECURITY_MEDIUM)
        case .high: UInt8(BT_SECURITY_HIGH)
        }
    }
}

/// ATT over an L2CAP LE connection-oriented socket on the fixed ATT channel, CID 4 (Core v5.3
/// Vol 3 Part A §2.1), opened through BlueZ (`AF_BLUETOOTH`, `SOCK_SEQPACKET`, `BTPROTO_L2CAP`).
///
/// On a kernel without Bluetooth `socket()` fails with EAFNOSUPPORT; that surfaces as
/// ``BluetoothError`` code `.unavailable` with the errno text, never a crash.
public final class L2CAPBearer: ATTBearer {
    private let socket: DatagramSocket
    public var link: String { socket.link }
    public var incoming: AsyncThrowingStream<[UInt8], any Error> { socket.incoming }

    private init(socket: DatagramSocket) { self.socket = socket }

    /// Connects to `address` (`AA:BB:CC:DD:EE:FF`). The blocking `connect(2)` runs on a
    /// dedicated queue, not the cooperative pool. `security` is raised before connecting
    /// (`.medium` or `.high` for devices that need bonding); the kernel then pairs or uses
    /// the stored bond.
    public static func connect(address: String, addressType: LEAddressType, security: LinkSecurity = .low) async throws(BluetoothError) -> L2CAPBearer {
        let result: Result<Int32, BluetoothError> = await withCheckedContinuation { cont in
            connectQueue.async {
                do throws(BluetoothError) {
                    cont.resume(returning: .success(try connectBlocking(address: address, addressType: addressType, security: security)))
                } catch {
                    cont.resume(returning: .failure(error))
                }
            }
        }
        let fd = try result.get()
        let socket = try DatagramSocket(fd: fd, link: address)
        try socket.start()
        return L2CAPBearer(socket: socket)
    }

    /// Checks that this machine can open a Bluetooth L2CAP socket at all; throws `.unavailable`
    /// (EAFNOSUPPORT on kernels without Bluetooth) otherwise. For status displays.
    public static func checkAvailable() throws(BluetoothError) {
        let fd = try openSocket(link: "bluetooth")
        closeDescriptor(fd)
    }

    private static let connectQueue = DispatchQueue(label: "vigil.bluetooth.l2cap-connect")

    static func openSocket(link: String) throws(BluetoothError) -> Int32 {
        let fd = Glibc.socket(AF_BLUETOOTH, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), BTPROTO_L2CAP)
        guard fd >= 0 else {
            let e = errno
            if e == EAFNOSUPPORT || e == EPROTONOSUPPORT {
                throw BluetoothError.unavailable(link: link, operation: "socket", errno: e,
                                                 reason: "Bluetooth unavailable: \(errnoName(e)) (the kernel has no Bluetooth support)")
            }
            throw BluetoothError.from(errno: e, link: link, operation: "socket")
        }
        return fd
    }

    static func connectBlocking(address: String, addressType: LEAddressType, security: LinkSecurity) throws(BluetoothError) -> Int32 {
        var peer = bdaddr_t()
        guard isValidAddress(address), str2ba(address, &peer) == 0 else {
            throw BluetoothError(code: .invalidUse, link: address, operation: "connect",
                                 reason: "not a Bluetooth device address (expected AA:BB:CC:DD:EE:FF)")
        }
        let fd = try openSocket(link: address)
        do {
            var local = sockaddr_l2()
            local.l2_family = sa_family_t(AF_BLUETOOTH)
            local.l2_bdaddr = vigil_bdaddr_any()
            local.l2_cid = vigil_htobs(UInt16(VIGIL_BT_ATT_CID))
            local.l2_bdaddr_type = UInt8(BDADDR_LE_PUBLIC)
            _ = try syscall(link: address, "bind") {
                withUnsafePointer(to: &local) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_l2>.size)) }
                }
            }
            if security != .low {
                var sec = bt_security()
                sec.level = security.level
                _ = try syscall(link: address, "setsockopt BT_SECURITY") {
                    setsockopt(fd, SOL_BLUETOOTH, BT_SECURITY, &sec, socklen_t(MemoryLayout<bt_security>.size))
                }
            }
            var remote = sockaddr_l2()
            remote.l2_family = sa_family_t(AF_BLUETOOTH)
            remote.l2_bdaddr = peer
            remote.l2_cid = vigil_htobs(UInt16(VIGIL_BT_ATT_CID))
            remote.l2_bdaddr_type = addressType.bdaddrType
            _ = try syscall(link: address, "connect") {
                withUnsafePointer(to: &remote) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_l2>.size)) }
                }
            }
        } catch {
            closeDescriptor(fd)
            throw error
        }
        return fd
    }

    /// Six colon-separated pairs of hex digits.
    static func isValidAddress(_ s: String) -> Bool {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        return parts.count == 6 && parts.allSatisfy { $0.count == 2 && UInt8($0, radix: 16) != nil }
    }

    public func send(_ pdu: [UInt8]) throws(BluetoothError) { try socket.send(pdu) }
    public func close() { socket.close() }
    deinit { socket.close() }
}
