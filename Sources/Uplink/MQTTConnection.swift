internal import CMosquitto
import Dispatch
import Glibc
public import VitalSigns
import Synchronization

/// The last will: what the broker publishes for us if we vanish without a DISCONNECT
/// (MQTT 3.1.1 §3.1.2.5). The corresponding C function is `mosquitto_will_set`.
public struct MQTTWill: Sendable, Hashable {
    public var topic: String
    public var payload: [UInt8]
    /// 0, 1 or 2. Vigil uses 1.
    public var qos: Int32
    public var retain: Bool
    /// MQTT 5 will properties (§3.1.3.2): sent only when the connection starts as MQTT 5.
    public var properties: PublishProperties
    public init(topic: String, payload: [UInt8], qos: Int32 = 1, retain: Bool = true, properties: PublishProperties = .init()) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
    }
}

/// Which MQTT version to speak (`broker.protocol` in the configuration).
public enum MQTTProtocolVersion: String, Sendable, Hashable, CaseIterable {
    /// Try MQTT 5; when the broker answers "unsupported protocol version" (CONNACK 0x84, or
    /// a 3.1.1 broker's return code 1, MQTT 5 §3.1.2.2), fall back to 3.1.1 at once and stay
    /// there until the process restarts.
    case auto
    /// MQTT 5.0 only: per-message properties and PUBACK reason codes.
    case mqtt5
    /// MQTT 3.1.1 only: no properties; an ACL-denied publish is acknowledged silently.
    case mqtt311
}

/// TLS settings (`mosquitto_tls_set`, `mosquitto_tls_opts_set`, `mosquitto_tls_insecure_set`).
///
/// The CA file is *pinned*: only brokers whose certificate chains to a CA in that file are
/// trusted (the system store is not consulted). With `certFile`/`keyFile` the client presents
/// a certificate (mutual TLS). The key must be unencrypted PEM readable only by `vigil`.
public struct MQTTTLSOptions: Sendable, Hashable {
    /// PEM file with the CA certificate(s) that sign the broker's certificate.
    public var caFile: String
    /// PEM client certificate (chain) for mTLS; requires `keyFile`.
    public var certFile: String?
    /// PEM private key of `certFile`.
    public var keyFile: String?
    /// Check that the broker's certificate names the host we connect to (RFC 6125). On by
    /// default; turning it off is for lab setups only.
    public var verifyHostname: Bool
    /// Lowest TLS version: `tlsv1.2` (default) or `tlsv1.3`. Older versions are never offered.
    public var minimumVersion: String
    /// OpenSSL cipher list for TLS ≤ 1.2; nil: OpenSSL's default.
    public var ciphers: String?
    /// ALPN protocol, e.g. `x-amzn-mqtt-ca` for AWS IoT Core on port 443; nil: none.
    public var alpn: String?

    public init(caFile: String, certFile: String? = nil, keyFile: String? = nil, verifyHostname: Bool = true,
                minimumVersion: String = "tlsv1.2", ciphers: String? = nil, alpn: String? = nil) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.verifyHostname = verifyHostname
        self.minimumVersion = minimumVersion
        self.ciphers = ciphers
        self.alpn = alpn
    }
}

/// How to reach the broker and how to behave there.
public struct MQTTOptions: Sendable {
    public var host: String
    /// TCP port, 1…65535.
    public var port: Int
    /// Stable across restarts: with `cleanSession == false` the broker keeps our session
    /// (subscriptions, queued QoS 1 messages) under this ID (MQTT 3.1.1 §3.1.3.1).
    public var clientID: String
    /// Keep-alive interval, in seconds (MQTT 3.1.1 §3.1.2.10).
    public var keepAliveSeconds: Int32
    /// `false` asks the broker for a persistent session (MQTT 3.1.1 §3.1.2.4).
    public var cleanSession: Bool
    public var username: String?
    public var password: String?
    public var will: MQTTWill?
    /// First delay after a failed or lost connection. Doubles per failure, with jitter.
    public var reconnectDelayMin: Duration
    /// Cap of the reconnect delay.
    public var reconnectDelayMax: Duration
    /// QoS 1/2 messages libmosquitto keeps on the wire at once; 0 means no limit
    /// (`mosquitto_max_inflight_messages_set`; the v5-only `MOSQ_OPT_SEND_MAXIMUM` does not
    /// apply to 3.1.1). The Forwarder does its own limiting, so 0 is the default: a
    /// library-side queue would put an escalation behind readings.
    public var maxInFlight: UInt32
    /// How long one turn of the network loop waits for socket activity, in milliseconds.
    /// Publishes from other threads wake it early through the connection's wake-up pipe.
    public var loopTimeoutMilliseconds: Int32
    /// MQTT version; `.mqtt311` unless asked (the daemon's configuration defaults to `.auto`).
    public var protocolVersion: MQTTProtocolVersion
    /// TLS (and mTLS); nil: plain TCP.
    public var tls: MQTTTLSOptions?

    public init(host: String, port: Int, clientID: String, keepAliveSeconds: Int32 = 30,
                cleanSession: Bool = false, username: String? = nil, password: String? = nil,
                will: MQTTWill? = nil, reconnectDelayMin: Duration = .milliseconds(500),
                reconnectDelayMax: Duration = .seconds(30), maxInFlight: UInt32 = 0,
                loopTimeoutMilliseconds: Int32 = 100, protocolVersion: MQTTProtocolVersion = .mqtt311,
                tls: MQTTTLSOptions? = nil) {
        self.protocolVersion = protocolVersion
        self.tls = tls
        self.host = host
        self.port = port
        self.clientID = clientID
        self.keepAliveSeconds = keepAliveSeconds
        self.cleanSession = cleanSession
        self.username = username
        self.password = password
        self.will = will
        self.reconnectDelayMin = reconnectDelayMin
        self.reconnectDelayMax = reconnectDelayMax
        self.maxInFlight = maxInFlight
        self.loopTimeoutMilliseconds = loopTimeoutMilliseconds
    }
}

/// What the network thread reports. Delivered through `MQTTConnection.events()`.
public enum MQTTEvent: Sendable, Hashable {
    /// CONNACK accepted. `sessionPresent`: the broker still had our persistent session.
    case connected(sessionPresent: Bool)
    /// The TCP connect failed, or the broker refused the CONNECT (CONNACK return code,
    /// MQTT 3.1.1 §3.2.2.3). `code` is the CONNACK code for refusals, else a `MOSQ_ERR_*`.
    case connectFailed(code: Int32, reason: String)
    /// The connection ended. `reason` is empty text for our own clean disconnect.
    case disconnected(reason: String)
    /// The QoS 1 PUBACK for `mid` arrived (for QoS 0: the message was written).
    case published(mid: Int32)
    /// MQTT 5 only: the PUBACK for `mid` carried a failure reason code (≥ 0x80, MQTT 5
    /// §3.4.2.1), e.g. 0x87 "not authorized" for an ACL denial. The broker dropped the
    /// message; sending it again would be refused again.
    case publishRefused(mid: Int32, reasonCode: Int32, reason: String)
    /// An incoming message, copied out of libmosquitto's buffer.
    case message(topic: String, payload: [UInt8])
}

/// A thread-safe copy of the connection's state.
public struct MQTTConnectionSnapshot: Sendable, Hashable {
    /// CONNACK accepted and the connection not yet lost.
    public var connected: Bool = false
    /// The last failure in words (connect refused, connection lost), if any.
    public var lastError: String?
    /// Wall-clock time of the last accepted CONNACK.
    public var lastConnectedAt: Timestamp?
    /// Connect/reconnect attempts since the thread started.
    public var connectAttempts: Int = 0
    /// Backoff waits since the last accepted CONNACK: failed attempts, plus the loss that
    /// ended the last good connection. Resets on an accepted CONNACK.
    public var consecutiveFailures: Int = 0
    /// The delay chosen before the most recent reconnect attempt (after jitter).
    public var lastBackoff: Duration?
    /// The first 16 delays since the last accepted CONNACK, in order (diagnostics).
    public var backoffHistory: [Duration] = []
    /// Whether the network thread is running.
    public var running: Bool = false
    /// Why the broker (or the TLS handshake) refuses us, while it does; nil once a CONNACK
    /// is accepted.
    public var refusal: MQTTRefusal?
    /// The MQTT version of the current (or next) connection attempt.
    public var protocolVersion: MQTTProtocolVersion = .mqtt311
    /// Whether `.auto` fell back from MQTT 5 to 3.1.1.
    public var fellBackToMQTT311: Bool = false
    /// Whether the connection uses TLS.
    public var tls: Bool = false
}

/// The one owner of a libmosquitto client handle (`struct mosquitto *`).
///
/// `start()` runs a dedicated POSIX thread (never the Swift cooperative pool) that
/// connects, runs the network loop (`poll` on the socket, libmosquitto's read/write/misc steps) with a short timeout while connected and, on loss or
/// refusal, waits a capped exponential backoff with jitter before `mosquitto_reconnect`.
/// libmosquitto's own reconnect (`mosquitto_loop_forever`) has no jitter, so a fleet of
/// gateways would reconnect in lock-step after a broker restart; this one does not.
///
/// Callbacks run on that thread; they only copy data and yield `MQTTEvent`s.
public final class MQTTConnection: @unchecked Sendable {
    // Safety: `handle` is created in init and destroyed in deinit only. Between those, it is
    // used by the network thread (connect, loop, disconnect) and by `publish`/`subscribe`
    // from any thread. That is allowed because Debian's libmosquitto is built with
    // threading and we call `mosquitto_threaded_set(true)`, so the library guards its
    // packet queues with its own mutexes and only the loop thread writes the socket.
    // Every other mutable state lives in `Mutex`es.
    private let handle: OpaquePointer
    public let options: MQTTOptions

    private struct Control {
        var thread: pthread_t?
        var stopRequested = false
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
        var threadFinished = false
    }

    private let control = Mutex(Control())
    private let state = Mutex(MQTTConnectionSnapshot())
    private let subscribers = Mutex<[Int: AsyncStream<MQTTEvent>.Continuation]>([:])
    private let nextSubscriber = Atomic<Int>(0)
    /// Wakes the backoff wait early on `stop()`.
    private let wake = DispatchSemaphore(value: 0)
    /// A non-blocking pipe that wakes the network thread's `poll` when another thread queues
    /// a packet (publish, subscribe). libmosquitto's own wake-up pipe is private to
    /// `mosquitto_loop`, which this connection does not use (see `loopOnce`).
    private let wakePipe: (read: Int32, write: Int32)
    /// Set by the CONNACK callback for the connection attempt in progress.
    private let acceptedThisRound = Atomic<Bool>(false)
    /// Set by the CONNACK callback when the broker refused our MQTT version (auto mode).
    private let fallbackRequested = Atomic<Bool>(false)
    /// Whether the CONNACK callback recorded a refusal for the attempt in progress.
    private let refusedThisRound = Atomic<Bool>(false)
    /// 5 or 4 (3.1.1): the version libmosquitto speaks now. Read by `publish` on any thread.
    private let currentVersion = Atomic<Int>(4)
    /// libmosquitto's error and warning log lines of the attempt in progress (OpenSSL's
    /// reasons come only this way), at most 16.
    private let attemptLog = Mutex<[String]>([])

    /// Creates the handle and applies the options. No thread runs until `start()`.
    ///
    /// The corresponding C functions are `mosquitto_new`, `mosquitto_int_option`,
    /// `mosquitto_username_pw_set`, `mosquitto_will_set`, `mosquitto_threaded_set`.
    public init(options: MQTTOptions) throws(MQTTError) {
        MQTTLibrary.initialiseOnce()
        guard (1...65_535).contains(options.port) else {
            throw MQTTError(code: .invalid, operation: "MQTTConnection.init", reason: "port \(options.port) is not in 1…65535")
        }
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            throw MQTTError(code: .errno, errno: Glibc.errno, operation: "pipe", reason: "cannot create the network thread's wake-up pipe")
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        guard let h = mosquitto_new(options.clientID, options.cleanSession, nil) else {
            let e = Glibc.errno
            close(fds[0])
            close(fds[1])
            throw MQTTError(code: .errno, errno: e, operation: "mosquitto_new")
        }
        wakePipe = (fds[0], fds[1])
        self.handle = h
        self.options = options
        // From here on, deinit destroys the handle if a check below throws.
        let startVersion: MQTTProtocolVersion = options.protocolVersion == .mqtt311 ? .mqtt311 : .mqtt5
        try check(mosquitto_int_option(h, MOSQ_OPT_PROTOCOL_VERSION, startVersion == .mqtt5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311),
                  "mosquitto_int_option(PROTOCOL_VERSION)")
        // Nagle's algorithm holds a small PUBLISH back until the previous segment is
        // acknowledged, and the broker delays its ACK (up to 40 ms on Linux) when it has no
        // PUBACK to send yet: measured, a window of 16 in-flight readings drained at 457/s and an
        // escalation waited behind it. Every message here is latency-sensitive and already one
        // write, so Nagle buys nothing (mosquitto.h: MOSQ_OPT_TCP_NODELAY, libmosquitto ≥ 1.6).
        try check(mosquitto_int_option(h, MOSQ_OPT_TCP_NODELAY, 1), "mosquitto_int_option(TCP_NODELAY)")
        currentVersion.store(startVersion == .mqtt5 ? 5 : 4, ordering: .sequentiallyConsistent)
        state.withLock {
            $0.protocolVersion = startVersion
            $0.tls = options.tls != nil
        }
        if let tls = options.tls {
            // Files are checked here, again, because libmosquitto only says "invalid".
            for (field, path) in [("ca_file", tls.caFile), ("cert_file", tls.certFile), ("key_file", tls.keyFile)] {
                guard let path else { continue }
                guard access(path, R_OK) == 0 else {
                    let e = Glibc.errno
                    throw MQTTError(code: .invalid, errno: e, operation: "mosquitto_tls_set",
                                    reason: "tls \(field) \(path) cannot be read: \(String(cString: strerror(e)))")
                }
            }
            guard (tls.certFile == nil) == (tls.keyFile == nil) else {
                throw MQTTError(code: .invalid, operation: "mosquitto_tls_set",
                                reason: "a client certificate needs its key, and a key its certificate (cert_file and key_file together)")
            }
            guard tls.minimumVersion == "tlsv1.2" || tls.minimumVersion == "tlsv1.3" else {
                throw MQTTError(code: .invalid, operation: "mosquitto_tls_opts_set",
                                reason: "minimum TLS version \(tls.minimumVersion) is not tlsv1.2 or tlsv1.3")
            }
            // The pinned CA file only (capath nil): the system trust store is not used.
            // The password callback answers "no passphrase": without it OpenSSL would prompt on
            // the terminal for an encrypted key. An encrypted key then fails to load at connect
            // (a tls_failure refusal); the configuration check refuses one earlier.
            try check(mosquitto_tls_set(h, tls.caFile, nil, tls.certFile, tls.keyFile, { _, _, _, _ in 0 }), "mosquitto_tls_set")
            // SSL_VERIFY_PEER (1); "tlsv1.2" makes libmosquitto refuse SSLv3, TLS 1.0 and 1.1.
            try check(mosquitto_tls_opts_set(h, 1, tls.minimumVersion, tls.ciphers), "mosquitto_tls_opts_set")
            try check(mosquitto_tls_insecure_set(h, !tls.verifyHostname), "mosquitto_tls_insecure_set")
            if let alpn = tls.alpn {
                try check(mosquitto_string_option(h, MOSQ_OPT_TLS_ALPN, alpn), "mosquitto_string_option(TLS_ALPN)")
            }
        }
        try check(mosquitto_threaded_set(h, true), "mosquitto_threaded_set")
        try check(mosquitto_max_inflight_messages_set(h, options.maxInFlight), "mosquitto_max_inflight_messages_set")
        if options.username != nil || options.password != nil {
            try check(mosquitto_username_pw_set(h, options.username, options.password), "mosquitto_username_pw_set")
        }
        if let will = options.will {
            guard will.payload.count <= Int(Int32.max) else {
                throw MQTTError(code: .payloadSize, operation: "mosquitto_will_set")
            }
            var rc: Int32
            if startVersion == .mqtt5, !will.properties.isEmpty {
                // On success libmosquitto owns the list; it writes it only in an MQTT 5 CONNECT,
                // so a fallback to 3.1.1 simply leaves it out.
                var list: OpaquePointer? = try Self.propertyList(will.properties)
                rc = will.payload.withUnsafeBytes { buf in
                    mosquitto_will_set_v5(h, will.topic, Int32(buf.count), buf.baseAddress, will.qos, will.retain, list)
                }
                if rc != MQTTError.Code.success.rawValue { mosquitto_property_free_all(&list) }
            } else {
                rc = will.payload.withUnsafeBytes { buf in
                    mosquitto_will_set(h, will.topic, Int32(buf.count), buf.baseAddress, will.qos, will.retain)
                }
            }
            try check(rc, "mosquitto_will_set")
        }
        mosquitto_user_data_set(h, Unmanaged.passUnretained(self).toOpaque())
        mosquitto_connect_with_flags_callback_set(h) { _, obj, rc, flags in
            guard let obj else { return }
            Unmanaged<MQTTConnection>.fromOpaque(obj).takeUnretainedValue().onConnect(rc: rc, flags: flags)
        }
        mosquitto_disconnect_callback_set(h) { _, obj, rc in
            guard let obj else { return }
            Unmanaged<MQTTConnection>.fromOpaque(obj).takeUnretainedValue().onDisconnect(rc: rc)
        }
        // The v5 form is called on 3.1.1 connections too (reason code 0 there).
        mosquitto_publish_v5_callback_set(h) { _, obj, mid, reasonCode, _ in
            guard let obj else { return }
            let me = Unmanaged<MQTTConnection>.fromOpaque(obj).takeUnretainedValue()
            if reasonCode >= 0x80 {
                me.broadcast(.publishRefused(mid: mid, reasonCode: reasonCode,
                                             reason: String(cString: mosquitto_reason_string(reasonCode))))
            } else {
                me.broadcast(.published(mid: mid))
            }
        }
        mosquitto_log_callback_set(h) { _, obj, level, text in
            guard let obj, let text, level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING) != 0 else { return }
            Unmanaged<MQTTConnection>.fromOpaque(obj).takeUnretainedValue().noteLog(String(cString: text))
        }
        mosquitto_message_callback_set(h) { _, obj, message in
            guard let obj, let message else { return }
            // libmosquitto frees the message when this callback returns: copy now.
            let m = message.pointee
            let topic = m.topic.map { String(cString: $0) } ?? ""
            var payload = [UInt8]()
            if let p = m.payload, m.payloadlen > 0 {
                payload = Array(UnsafeRawBufferPointer(start: p, count: Int(m.payloadlen)))
            }
            Unmanaged<MQTTConnection>.fromOpaque(obj).takeUnretainedValue()
                .broadcast(.message(topic: topic, payload: payload))
        }
    }

    deinit {
        // The thread holds a strong reference while it runs, so it has ended here.
        mosquitto_destroy(handle)
        close(wakePipe.read)
        close(wakePipe.write)
    }

    /// Wakes the network thread so it writes what was just queued.
    private func wakeNetworkThread() {
        var byte: UInt8 = 1
        // EAGAIN: the pipe is full, so a wake-up is already pending.
        while write(wakePipe.write, &byte, 1) < 0, Glibc.errno == EINTR {}
    }

    /// One turn of the network loop: what `mosquitto_loop(handle, timeout, 1)` does, with
    /// `poll` instead of `select`. libmosquitto's `mosquitto_loop` refuses any socket whose
    /// descriptor is 1024 or more (FD_SETSIZE; it returns MOSQ_ERR_INVAL), which a process
    /// with many open files reaches; `poll` has no such limit. Reads while the socket (or
    /// TLS's buffer, inside `mosquitto_loop_read`) has data, writes while packets wait,
    /// then `mosquitto_loop_misc` (keep-alive PINGREQ, timeouts).
    private func loopOnce(timeoutMilliseconds: Int32) -> Int32 {
        let sock = mosquitto_socket(handle)
        guard sock >= 0 else { return MQTTError.Code.noConnection.rawValue }
        var fds = [
            pollfd(fd: sock, events: Int16(POLLIN) | (mosquitto_want_write(handle) ? Int16(POLLOUT) : 0), revents: 0),
            pollfd(fd: wakePipe.read, events: Int16(POLLIN), revents: 0),
        ]
        let n = poll(&fds, 2, timeoutMilliseconds)
        if n < 0 {
            if Glibc.errno == EINTR { return MQTTError.Code.success.rawValue }
            return MQTTError.Code.errno.rawValue
        }
        if fds[1].revents & Int16(POLLIN) != 0 {
            var sink = [UInt8](repeating: 0, count: 64)
            while sink.withUnsafeMutableBytes({ read(wakePipe.read, $0.baseAddress, $0.count) }) > 0 {}
        }
        if fds[0].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
            let rc = mosquitto_loop_read(handle, 1)
            if rc != MQTTError.Code.success.rawValue { return rc }
        }
        if mosquitto_socket(handle) >= 0, mosquitto_want_write(handle) {
            let rc = mosquitto_loop_write(handle, 1)
            if rc != MQTTError.Code.success.rawValue { return rc }
        }
        return mosquitto_loop_misc(handle)
    }

    private func check(_ rc: Int32, _ operation: String) throws(MQTTError) {
        let e = Glibc.errno
        guard rc == MQTTError.Code.success.rawValue else {
            throw MQTTError(code: .init(rawValue: rc), errno: rc == MQTTError.Code.errno.rawValue ? e : nil, operation: operation)
        }
    }

    // MARK: - Events

    /// A new stream of every event from now on. Each call gets its own stream (events are
    /// broadcast); buffering is unbounded so no PUBACK is ever dropped. The stream ends
    /// when the consumer stops iterating or the connection stops.
    public func events() -> AsyncStream<MQTTEvent> {
        let (stream, continuation) = AsyncStream<MQTTEvent>.makeStream(bufferingPolicy: .unbounded)
        let id = nextSubscriber.wrappingAdd(1, ordering: .relaxed).oldValue
        // Registered under the control lock, which threadMain takes before finishing all
        // streams, so a stream is either finished there or here, never left open.
        let finished = control.withLock { c in
            if !c.threadFinished { subscribers.withLock { $0[id] = continuation } }
            return c.threadFinished
        }
        if finished { continuation.finish() }
        continuation.onTermination = { [weak self] _ in
            _ = self?.subscribers.withLock { $0.removeValue(forKey: id) }
        }
        return stream
    }

    private func broadcast(_ event: MQTTEvent) {
        // Yield outside the lock: a termination handler takes the same lock.
        let targets = subscribers.withLock { Array($0.values) }
        for c in targets { c.yield(event) }
    }

    /// The state, copied under a lock; callable from any thread.
    public var snapshot: MQTTConnectionSnapshot { state.withLock { $0 } }

    // MARK: - Callbacks (network thread)

    private func onConnect(rc: Int32, flags: Int32) {
        if rc == 0 {
            acceptedThisRound.store(true, ordering: .sequentiallyConsistent)
            let now = Timestamp.wallClockNow()
            state.withLock {
                $0.connected = true
                $0.lastConnectedAt = now
                $0.consecutiveFailures = 0
                $0.backoffHistory = []
                $0.refusal = nil
            }
            broadcast(.connected(sessionPresent: flags & 1 != 0))
        } else {
            let mqtt5 = currentVersion.load(ordering: .sequentiallyConsistent) == 5
            // MQTT 5 reason codes are ≥ 0x80; libmosquitto maps a 3.1.1 broker's "unacceptable
            // protocol version" answer to a v5 request onto 0x84 (handle_connack.c).
            let reason = String(cString: mqtt5 ? mosquitto_reason_string(rc) : mosquitto_connack_string(rc))
            let kind = MQTTRefusal.kind(connackCode: rc, mqtt5: mqtt5)
            if kind == .unsupportedProtocolVersion, mqtt5, options.protocolVersion == .auto {
                fallbackRequested.store(true, ordering: .sequentiallyConsistent)
            }
            refusedThisRound.store(true, ordering: .sequentiallyConsistent)
            recordRefusal(kind, detail: "\(reason) (CONNACK code \(rc))", connackCode: rc)
            state.withLock {
                $0.connected = false
                $0.lastError = "broker refused the connection: \(reason) (CONNACK code \(rc))"
            }
            broadcast(.connectFailed(code: rc, reason: reason))
        }
    }

    private func noteLog(_ line: String) {
        attemptLog.withLock { if $0.count < 16 { $0.append(line) } }
    }

    /// Records why we are refused; keeps `since` while the kind stays the same.
    private func recordRefusal(_ kind: MQTTRefusal.Kind, detail: String, connackCode: Int32? = nil) {
        let now = Timestamp.wallClockNow()
        let reason = MQTTRefusal.explanation(kind, host: options.host, tls: options.tls) + " (\(detail))"
        state.withLock {
            let since = $0.refusal?.kind == kind ? $0.refusal?.since ?? now : now
            $0.refusal = MQTTRefusal(kind: kind, reason: reason, since: since, connackCode: connackCode)
        }
    }

    /// After a failed attempt with no CONNACK refusal: a TLS failure shows in the log lines.
    /// Returns whether it recorded a TLS refusal.
    private func classifyTLSFailure() -> Bool {
        guard options.tls != nil, !refusedThisRound.load(ordering: .sequentiallyConsistent) else { return false }
        let lines = attemptLog.withLock { $0 }
        guard let kind = MQTTRefusal.kind(tlsLog: lines) else { return false }
        let detail = lines.last(where: { $0.lowercased().contains("ssl") || $0.lowercased().contains("alert") }) ?? lines.last ?? ""
        recordRefusal(kind, detail: detail)
        state.withLock { $0.lastError = "TLS: " + MQTTRefusal.explanation(kind, host: options.host, tls: options.tls) }
        return true
    }

    private func onDisconnect(rc: Int32) {
        let reason = rc == 0 ? "" : String(cString: mosquitto_strerror(rc))
        let wasConnected = state.withLock {
            let was = $0.connected
            $0.connected = false
            if rc != 0, was { $0.lastError = "connection lost: \(reason)" }
            return was
        }
        if wasConnected || rc == 0 { broadcast(.disconnected(reason: reason)) }
    }

    // MARK: - Lifecycle

    /// Starts the network thread. Calling it twice is an error.
    public func start() throws(MQTTError) {
        let already = control.withLock { $0.thread != nil || $0.threadFinished }
        if already { throw MQTTError(code: .invalid, operation: "MQTTConnection.start", reason: "already started") }
        let box = Unmanaged.passRetained(self).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            guard let arg else { return nil }
            let me = Unmanaged<MQTTConnection>.fromOpaque(arg).takeRetainedValue()
            me.threadMain()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<MQTTConnection>.fromOpaque(box).release()
            throw MQTTError(code: .errno, errno: rc, operation: "pthread_create")
        }
        control.withLock { $0.thread = tid }
        state.withLock { $0.running = true }
    }

    /// Disconnects cleanly (a DISCONNECT packet, so the broker discards the will) and
    /// waits for the network thread to end. Idempotent.
    public func stop() async {
        let (thread, finished): (pthread_t?, Bool) = control.withLock {
            $0.stopRequested = true
            return ($0.thread, $0.threadFinished)
        }
        wake.signal()
        guard let thread else { return }
        if !finished {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let done = control.withLock {
                    if $0.threadFinished { return true }
                    $0.stopWaiters.append(c)
                    return false
                }
                if done { c.resume() }
            }
        }
        // The thread has returned from threadMain (or is about to): joining is immediate.
        let joined = control.withLock {
            guard $0.thread != nil else { return false }
            $0.thread = nil
            return true
        }
        if joined { pthread_join(thread, nil) }
    }

    private var stopRequested: Bool { control.withLock { $0.stopRequested } }

    /// The network thread: connect, loop, back off, reconnect, until `stop()`.
    private func threadMain() {
        var attempt = 0
        var everCalledConnect = false
        var socketOpen = false
        while !stopRequested {
            var failedBeforeConnack: (code: Int32, reason: String)?
            acceptedThisRound.store(false, ordering: .sequentiallyConsistent)
            refusedThisRound.store(false, ordering: .sequentiallyConsistent)
            attemptLog.withLock { $0.removeAll() }
            state.withLock { $0.connectAttempts += 1 }
            let rc = everCalledConnect
                ? mosquitto_reconnect(handle)
                : mosquitto_connect(handle, options.host, Int32(options.port), options.keepAliveSeconds)
            let err = Glibc.errno
            if rc != MQTTError.Code.invalid.rawValue { everCalledConnect = true }
            if rc == MQTTError.Code.success.rawValue {
                socketOpen = true
                while !stopRequested {
                    let lrc = loopOnce(timeoutMilliseconds: options.loopTimeoutMilliseconds)
                    if lrc != MQTTError.Code.success.rawValue {
                        let lerr = Glibc.errno
                        socketOpen = false
                        let error = MQTTError(code: .init(rawValue: lrc), errno: lrc == MQTTError.Code.errno.rawValue ? lerr : nil,
                                              operation: "the network loop")
                        let wasConnected = state.withLock {
                            let was = $0.connected
                            $0.connected = false
                            // A CONNACK refusal already left a better reason.
                            if lrc != MQTTError.Code.connectionRefused.rawValue,
                               !refusedThisRound.load(ordering: .sequentiallyConsistent) { $0.lastError = error.description }
                            return was
                        }
                        if wasConnected {
                            broadcast(.disconnected(reason: error.reason))
                        } else if !acceptedThisRound.load(ordering: .sequentiallyConsistent),
                                  !refusedThisRound.load(ordering: .sequentiallyConsistent) {
                            // Lost before any CONNACK (a TLS 1.3 client-certificate rejection
                            // shows here): reported as a failed connect once classified below.
                            failedBeforeConnack = (lrc, error.reason)
                        }
                        break
                    }
                }
                if stopRequested { break }
            } else {
                let error = MQTTError(code: .init(rawValue: rc), errno: rc == MQTTError.Code.errno.rawValue ? err : nil,
                                      operation: everCalledConnect ? "mosquitto_reconnect" : "mosquitto_connect")
                state.withLock { $0.lastError = "cannot connect to \(options.host):\(options.port): \(error.reason)" }
                failedBeforeConnack = (rc, error.reason)
            }
            if !acceptedThisRound.load(ordering: .sequentiallyConsistent) {
                // A refusal stands while the broker keeps refusing; an attempt that failed
                // for another reason (broker down, network) replaces it. A TLS session that
                // opened and then died before any CONNACK without a readable reason (the
                // broker closed before its alert was read, as happens on a busy machine) is
                // the same refusal again, not a new cause: it does not clear it.
                let tls = classifyTLSFailure()
                let unexplainedTLSLoss = options.tls != nil && rc == MQTTError.Code.success.rawValue
                if !tls, !unexplainedTLSLoss, !refusedThisRound.load(ordering: .sequentiallyConsistent) {
                    state.withLock { $0.refusal = nil }
                }
            }
            if let (code, reason) = failedBeforeConnack {
                broadcast(.connectFailed(code: code, reason: state.withLock { $0.refusal?.reason } ?? reason))
            }
            if acceptedThisRound.load(ordering: .sequentiallyConsistent) { attempt = 0 }
            if stopRequested { break }
            if fallbackRequested.exchange(false, ordering: .sequentiallyConsistent) {
                // The broker speaks 3.1.1 only: ask again at once in 3.1.1, without a backoff
                // (this is a negotiation, not a failure) and for good.
                _ = mosquitto_int_option(handle, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311)
                currentVersion.store(4, ordering: .sequentiallyConsistent)
                state.withLock {
                    $0.protocolVersion = .mqtt311
                    $0.fellBackToMQTT311 = true
                    $0.refusal = nil
                }
                continue
            }
            let delay = Self.backoff(attempt: attempt, min: options.reconnectDelayMin, max: options.reconnectDelayMax)
            attempt += 1
            state.withLock {
                $0.consecutiveFailures += 1
                $0.lastBackoff = delay
                if $0.backoffHistory.count < 16 { $0.backoffHistory.append(delay) }
            }
            // Interruptible by stop(), which signals `wake`.
            let ns = delay.components.seconds * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000
            _ = wake.wait(timeout: .now() + .nanoseconds(Int(clamping: ns)))
        }
        if socketOpen {
            // DISCONNECT makes the broker drop the will (MQTT 3.1.1 §3.14.4). Loop until the
            // library has written it and closed the socket, for at most about a second.
            if mosquitto_disconnect(handle) == MQTTError.Code.success.rawValue {
                for _ in 0..<20 {
                    if loopOnce(timeoutMilliseconds: 50) != MQTTError.Code.success.rawValue { break }
                }
            }
        }
        state.withLock {
            $0.connected = false
            $0.running = false
        }
        let (waiters, streams) = control.withLock { c in
            c.threadFinished = true
            let w = c.stopWaiters
            c.stopWaiters = []
            let all = subscribers.withLock { s in
                let all = Array(s.values)
                s.removeAll()
                return all
            }
            return (w, all)
        }
        for w in waiters { w.resume() }
        for c in streams { c.finish() }
    }

    /// Capped exponential backoff with "equal jitter": the delay before attempt `attempt`
    /// (0-based) is uniformly drawn from [d/2, d] with d = min(max, min · 2^attempt).
    /// The floor keeps growth visible; the jitter spreads a fleet's reconnects.
    public static func backoff(attempt: Int, min: Duration, max: Duration) -> Duration {
        let minS = Double(min.components.seconds) + Double(min.components.attoseconds) / 1e18
        let maxS = Double(max.components.seconds) + Double(max.components.attoseconds) / 1e18
        let d = Swift.min(maxS, minS * Double(1 << Swift.min(attempt, 30)))
        let jittered = Double.random(in: (d / 2)...Swift.max(d / 2, d))
        return .nanoseconds(Int64(jittered * 1e9))
    }

    // MARK: - Publishing

    /// Queues a message and returns its message ID; `MQTTEvent.published(mid:)` follows when
    /// the PUBACK arrives (QoS 1, mosquitto.h "on_publish"). Callable from any thread.
    ///
    /// The corresponding C function is `mosquitto_publish`.
    /// `properties` are sent only on an MQTT 5 connection (`mosquitto_publish_v5`); on 3.1.1
    /// they are dropped (Azure IoT Hub carries them in the topic instead, see `Topics`).
    public func publish(topic: String, payload: [UInt8], qos: Int32 = 1, retain: Bool = false,
                        properties: PublishProperties = .init()) throws(MQTTError) -> Int32 {
        guard payload.count <= 268_435_455 else {
            throw MQTTError(code: .payloadSize, operation: "mosquitto_publish", reason: "payload of \(payload.count) bytes exceeds MQTT's 256 MiB limit")
        }
        var mid: Int32 = 0
        var rc: Int32
        if currentVersion.load(ordering: .sequentiallyConsistent) == 5, !properties.isEmpty {
            rc = publishV5(&mid, topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
            // A fallback to 3.1.1 raced this call: send without properties.
            if rc == MQTTError.Code.notSupported.rawValue {
                rc = payload.withUnsafeBytes { buf in
                    mosquitto_publish(handle, &mid, topic, Int32(buf.count), buf.baseAddress, qos, retain)
                }
            }
        } else {
            rc = payload.withUnsafeBytes { buf in
                mosquitto_publish(handle, &mid, topic, Int32(buf.count), buf.baseAddress, qos, retain)
            }
        }
        let e = Glibc.errno
        guard rc == MQTTError.Code.success.rawValue else {
            throw MQTTError(code: .init(rawValue: rc), errno: rc == MQTTError.Code.errno.rawValue ? e : nil, operation: "mosquitto_publish")
        }
        wakeNetworkThread()
        return mid
    }

    /// `mosquitto_publish_v5` with a property list built from `properties` (MQTT 5 §3.3.2.3):
    /// Message Expiry Interval (0x02), Content Type (0x03), User Property (0x26).
    private func publishV5(_ mid: inout Int32, topic: String, payload: [UInt8], qos: Int32, retain: Bool,
                           properties: PublishProperties) -> Int32 {
        var list: OpaquePointer?
        do {
            list = try Self.propertyList(properties)
        } catch {
            return error.code.rawValue
        }
        defer { mosquitto_property_free_all(&list) }
        return payload.withUnsafeBytes { buf in
            mosquitto_publish_v5(handle, &mid, topic, Int32(buf.count), buf.baseAddress, qos, retain, list)
        }
    }

    /// A libmosquitto property list (caller frees it, or hands it over): Message Expiry
    /// Interval (0x02), Content Type (0x03), User Property (0x26), MQTT 5 §3.3.2.3.
    private static func propertyList(_ properties: PublishProperties) throws(MQTTError) -> OpaquePointer? {
        var list: OpaquePointer? = nil
        func check(_ rc: Int32) throws(MQTTError) {
            guard rc == MQTTError.Code.success.rawValue else {
                mosquitto_property_free_all(&list)
                throw MQTTError(code: .init(rawValue: rc), operation: "mosquitto_property_add")
            }
        }
        if let expiry = properties.messageExpirySeconds {
            try check(mosquitto_property_add_int32(&list, Int32(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL.rawValue), expiry))
        }
        if let type = properties.contentType {
            try check(mosquitto_property_add_string(&list, Int32(MQTT_PROP_CONTENT_TYPE.rawValue), type))
        }
        for p in properties.userProperties {
            try check(mosquitto_property_add_string_pair(&list, Int32(MQTT_PROP_USER_PROPERTY.rawValue), p.name, p.value))
        }
        return list
    }

    /// Subscribes to a topic filter; returns the SUBSCRIBE's message ID. With a persistent
    /// session the broker keeps the subscription across reconnects; with a clean session,
    /// subscribe again on every `.connected`.
    ///
    /// The corresponding C function is `mosquitto_subscribe`.
    @discardableResult
    public func subscribe(_ filter: String, qos: Int32 = 1) throws(MQTTError) -> Int32 {
        var mid: Int32 = 0
        let rc = mosquitto_subscribe(handle, &mid, filter, qos)
        guard rc == MQTTError.Code.success.rawValue else {
            throw MQTTError(code: .init(rawValue: rc), operation: "mosquitto_subscribe")
        }
        wakeNetworkThread()
        return mid
    }

    /// Test support: shuts the TCP socket down under libmosquitto's feet, as a network
    /// failure would. The broker sees the connection drop without a DISCONNECT and sends
    /// the will; the network thread sees the loss and reconnects with backoff.
    ///
    /// The corresponding C functions are `mosquitto_socket` and `shutdown`.
    public func simulateNetworkFailure() {
        let fd = mosquitto_socket(handle)
        if fd >= 0 { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
    }
}

/// `mosquitto_lib_init` is not thread-safe and must run once per process (mosquitto.h).
enum MQTTLibrary {
    private static let initialised: Bool = {
        _ = mosquitto_lib_init()
        return true
    }()

    /// Swift runs a static's initialiser exactly once, under a lock (swift_once).
    static func initialiseOnce() { _ = initialised }
}

extension Timestamp {
    /// The wall clock now (`clock_gettime(CLOCK_REALTIME)`). I/O targets may read the clock.
    static func wallClockNow() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(millisecondsSinceEpoch: Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000)
    }
}

extension MQTTOptions: CustomStringConvertible {
    /// For logs: never prints the password.
    public var description: String {
        "\(tls == nil ? "mqtt" : "mqtts")://\(username.map { $0 + "@" } ?? "")\(host):\(port) protocol=\(protocolVersion.rawValue) client=\(clientID) keepalive=\(keepAliveSeconds)s clean=\(cleanSession) will=\(will?.topic ?? "none") password=\(password == nil ? "unset" : "<redacted>")\(tls.map { " ca=\($0.caFile) cert=\($0.certFile ?? "none")" } ?? "")"
    }
}
