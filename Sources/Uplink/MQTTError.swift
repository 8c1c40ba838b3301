internal import CMosquitto
public import VitalSigns
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

extension MQTTError.Code {
    /// A TLS failure (handshake, certificate verification), `MOSQ_ERR_TLS`.
    public static let tls = MQTTError.Code(rawValue: Int32(MOSQ_ERR_TLS.rawValue))
    /// The feature is not available on this connection (e.g. properties on MQTT 3.1.1).
    public static let notSupported = MQTTError.Code(rawValue: Int32(MOSQ_ERR_NOT_SUPPORTED.rawValue))
}

/// Why the broker will not have us: a refused CONNACK, or a TLS handshake that failed on
/// either side. Shown in `vigilctl status` as `uplink.refusal`. Never contains secrets: the
/// reason names files and hosts, never key material or passwords.
public struct MQTTRefusal: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// We do not trust the broker's certificate: not signed by the pinned CA, expired,
        /// or not issued for the host we connect to.
        case serverCertificateUntrusted = "server_certificate_untrusted"
        /// The broker rejected our client certificate because it has expired.
        case clientCertificateExpired = "client_certificate_expired"
        /// The broker rejected our client certificate (not signed by a CA it trusts, revoked,
        /// or unusable).
        case clientCertificateRejected = "client_certificate_rejected"
        /// The broker requires a client certificate and we sent none.
        case clientCertificateRequired = "client_certificate_required"
        /// Another TLS failure (no common protocol version or cipher, a plain-TCP broker…).
        case tlsFailure = "tls_failure"
        /// CONNACK: bad user name or password (3.1.1 code 4, MQTT 5 0x86).
        case badCredentials = "bad_credentials"
        /// CONNACK: not authorized (3.1.1 code 5, MQTT 5 0x87).
        case notAuthorized = "not_authorized"
        /// CONNACK: the broker does not speak our MQTT version (3.1.1 code 1, MQTT 5 0x84).
        case unsupportedProtocolVersion = "unsupported_protocol_version"
        /// CONNACK: client identifier rejected (3.1.1 code 2, MQTT 5 0x85).
        case clientIDRejected = "client_id_rejected"
        /// CONNACK: server unavailable, busy or banned us (3.1.1 code 3, MQTT 5 0x88–0x8A…).
        case serverUnavailable = "server_unavailable"
        /// Any other CONNACK refusal.
        case refused = "refused"
    }

    public var kind: Kind
    /// What happened, in words, for the operator.
    public var reason: String
    /// When this kind of refusal was first seen (consecutive attempts keep the first time).
    public var since: Timestamp
    /// The CONNACK return / reason code, when the refusal came in a CONNACK.
    public var connackCode: Int32?

    public init(kind: Kind, reason: String, since: Timestamp, connackCode: Int32? = nil) {
        self.kind = kind
        self.reason = reason
        self.since = since
        self.connackCode = connackCode
    }

    /// Classifies a refused CONNACK. `mqtt5`: whether the code is an MQTT 5 reason code
    /// (§3.2.2.2) rather than a 3.1.1 return code (§3.2.2.3).
    public static func kind(connackCode code: Int32, mqtt5: Bool) -> Kind {
        if mqtt5 {
            switch code {
            case 0x84: return .unsupportedProtocolVersion
            case 0x85: return .clientIDRejected
            case 0x86, 0x8C: return .badCredentials
            case 0x87: return .notAuthorized
            case 0x88, 0x89, 0x8A, 0x9F, 0x97: return .serverUnavailable
            default: return .refused
            }
        }
        switch code {
        case 1: return .unsupportedProtocolVersion
        case 2: return .clientIDRejected
        case 3: return .serverUnavailable
        case 4: return .badCredentials
        case 5: return .notAuthorized
        default: return .refused
        }
    }

    /// Classifies a TLS failure from libmosquitto's OpenSSL log lines ("OpenSSL Error[0]:
    /// error:0A000086:SSL routines::certificate verify failed", "…tlsv1 alert unknown ca").
    /// A TLS alert *received* names the broker's verdict on our certificate (RFC 8446 §6.2);
    /// "certificate verify failed" is our verdict on the broker's.
    public static func kind(tlsLog lines: [String]) -> Kind? {
        let text = lines.joined(separator: "\n").lowercased()
        if text.contains("certificate verify failed") { return .serverCertificateUntrusted }
        if text.contains("alert certificate expired") { return .clientCertificateExpired }
        if text.contains("alert certificate required") { return .clientCertificateRequired }
        if text.contains("alert unknown ca") || text.contains("alert bad certificate")
            || text.contains("alert certificate unknown") || text.contains("alert certificate revoked")
            || text.contains("alert unsupported certificate") || text.contains("alert access denied") {
            return .clientCertificateRejected
        }
        if text.contains("openssl error") || text.contains("ssl routines") { return .tlsFailure }
        return nil
    }

    /// A sentence for `kind`, naming what to check.
    public static func explanation(_ kind: Kind, host: String, tls: MQTTTLSOptions?) -> String {
        switch kind {
        case .serverCertificateUntrusted:
            "the broker's certificate is not trusted: it is not signed by the CA in \(tls?.caFile ?? "the CA file"), has expired, or is not issued for \(host)"
        case .clientCertificateExpired:
            "the broker rejected our client certificate \(tls?.certFile ?? "") because it has expired; install a renewed certificate"
        case .clientCertificateRejected:
            "the broker rejected our client certificate \(tls?.certFile ?? ""): it is not signed by a CA the broker trusts"
        case .clientCertificateRequired:
            "the broker requires a client certificate (mTLS) and none is configured (broker.tls.cert_file, key_file)"
        case .tlsFailure:
            "the TLS handshake with \(host) failed (no common TLS version or cipher, or the port does not speak TLS)"
        case .badCredentials:
            "the broker refused the user name or password"
        case .notAuthorized:
            "the broker refused to authorize this client: a wrong user name or password (mosquitto says \"not authorized\" for those too), or a user or certificate identity it does not allow"
        case .unsupportedProtocolVersion:
            "the broker does not support the MQTT version we asked for"
        case .clientIDRejected:
            "the broker rejected the client ID"
        case .serverUnavailable:
            "the broker is unavailable, busy, or has banned this client"
        case .refused:
            "the broker refused the connection"
        }
    }
}
