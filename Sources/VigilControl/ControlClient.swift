import Glibc
import VitalSigns

/// Sends one request to vigild's control socket and reads the one-line JSON reply.
enum ControlClient {
    struct Error: Swift.Error, CustomStringConvertible {
        var path: String
        var reason: String
        var description: String { "cannot talk to vigild at \(path): \(reason)" }
    }

    static func request(_ request: JSONValue, socketPath path: String, timeoutSeconds: Int = 5) throws(Error) -> JSONValue {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw Error(path: path, reason: "path too long") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Error(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let reason = switch errno {
            case ENOENT: "no socket there; is vigild running? (systemctl status vigild)"
            case ECONNREFUSED: "connection refused; vigild is not running (systemctl status vigild)"
            case EACCES: "permission denied; add yourself to the 'vigil' group"
            default: String(cString: strerror(errno))
            }
            throw Error(path: path, reason: reason)
        }
        let line = Array((request.serialized + "\n").utf8)
        var offset = 0
        while offset < line.count {
            let n = line[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Error(path: path, reason: "send failed: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16_384)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Error(path: path, reason: errno == EAGAIN ? "no reply within \(timeoutSeconds) s" : String(cString: strerror(errno)))
            }
            if n == 0 { break }
            reply += buffer[0..<n]
            if reply.last == 0x0A { break }
        }
        do {
            return try JSONValue.parse(reply.prefix(while: { $0 != 0x0A }))
        } catch {
            throw Error(path: path, reason: "unreadable reply (\(error))")
        }
    }
}
