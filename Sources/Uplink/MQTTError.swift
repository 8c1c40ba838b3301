internal import CMosquitto
import Glibc

/// A libmosquitto failure: which call failed, its `MOSQ_ERR_*` code, the errno where the
/// code is `MOSQ_ERR_ERRNO`, and a human reason (`mosquitto_strerror`, `strerror`).
///
/// Never contains payloads, so never patient data.
public struct MQTTError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A libmosquitto result code (`enum mosq_err_t` in mosquitto.h), with readable names.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let success = Code(rawValue: Int32(MOSQ_ERR_SUCCESS.rawValue))
        public static let noMemory = Code(rawValue: Int32(MOSQ_ERR_NOMEM.rawValue))
        public static let protocolError = Code(rawValue: Int32(MOSQ_ERR_PROTOCOL.rawValue))
        public static let invalid = Code(rawValue: Int32(MOSQ_ERR_INVAL.rawValue))
        public static let noConnection = Code(rawValue: Int32(MOSQ_ERR_NO_CONN.rawValue))
        public static let connectionRefused = Code(rawValue: Int32(MOSQ_ERR_CONN_REFUSED.rawValue))
        public static let connectionLost = Code(rawValue: Int32(MOSQ_ERR_CONN_LOST.rawValue))
        public static let payloadSize = Code(rawValue: Int32(MOSQ_ERR_PAYLOAD_SIZE.rawValue))
        public static let errno = Code(rawValue: Int32(MOSQ_ERR_ERRNO.rawValue))
        public static let lookup = Code(rawValue: Int32(MOSQ_ERR_EAI.rawValue))
        public static let malformedUTF8 = Code(rawValue: Int32(MOSQ_ERR_MALFORMED_UTF8.rawValue))
        public static let keepalive = Code(rawValue: Int32(MOSQ_ERR_KEEPALIVE.rawValue))
        /// Not a libmosquitto code: the connection was stopped or never started.
        public static let stopped = Code(rawValue: -1000)

        /// `mosquitto_strerror`, or a fixed text for Vigil's own codes.
        public var description: String {
            if self == .stopped { return "connection stopped" }
            return String(cString: mosquitto_strerror(rawValue))
        }
    }

    public var code: Code
    /// errno captured right after the call, when `code` is `.errno`.
    public var errno: Int32?
    /// The libmosquitto function that failed, for example `mosquitto_publish`.
    public var operation: String
    /// What went wrong, in words.
    public var reason: String

    public init(code: Code, errno: Int32? = nil, operation: String, reason: String? = nil) {
        self.code = code
        self.errno = errno
        self.operation = operation
        if let reason {
            self.reason = reason
        } else if code == .errno, let e = errno {
            self.reason = String(cString: strerror(e)) + " (errno \(e))"
        } else {
            self.reason = code.description
        }
    }

    /// Whether waiting for a reconnect may cure it (no connection, connection lost).
    public var isTransient: Bool {
        code == .noConnection || code == .connectionLost || code == .errno || code == .keepalive
            || code == .connectionRefused
    }

    public var description: String { "\(operation) failed: \(reason)" }
}
