import Dispatch
import Glibc
import Logging
import Synchronization
import Uplink
import VigilTestKit
import VitalSigns

/// One PKI per test: a CA the broker trusts, a server certificate, a valid client, an expired
/// client, and a second CA with a client of its own (the "wrong" ones).
struct TlsWorld {
    let pki: TestPKI
    let ca: TestPKI.Pair
    let otherCA: TestPKI.Pair
    let server: TestPKI.Pair
    let client: TestPKI.Pair
    let expiredClient: TestPKI.Pair
    let strangerClient: TestPKI.Pair
    let clientName: String

    init() throws {
        pki = try TestPKI()
        ca = try pki.makeCA("ca")
        otherCA = try pki.makeCA("other-ca")
        server = try pki.issueServer(ca: ca)
        clientName = uniqueName("gw")
        client = try pki.issueClient(ca: ca, name: "client", commonName: clientName)
        expiredClient = try pki.issueClient(ca: ca, name: "expired", commonName: clientName, expired: true)
        strangerClient = try pki.issueClient(ca: otherCA, name: "stranger", commonName: clientName)
    }

    /// A broker whose TLS listener uses this PKI.
    func broker(requireCertificate: Bool = true, users: [String: String] = [:], acl: [String]? = nil,
                server: TestPKI.Pair? = nil) throws -> MosquittoBroker {
        let server = server ?? self.server
        return try MosquittoBroker(options: .init(tls: .init(
            caFile: ca.cert, certFile: server.cert, keyFile: server.key, requireCertificate: requireCertificate,
            useIdentityAsUsername: requireCertificate, users: users, acl: acl)))
    }

    /// Options for the gateway's connection to the TLS listener.
    func options(_ broker: MosquittoBroker, host: String = "127.0.0.1", clientID: String? = nil,
                 tls: MQTTTLSOptions, protocolVersion: MQTTProtocolVersion = .auto,
                 username: String? = nil, password: String? = nil) -> MQTTOptions {
        MQTTOptions(host: host, port: broker.tlsPort ?? 0, clientID: clientID ?? clientName, cleanSession: true,
                    username: username, password: password,
                    reconnectDelayMin: .milliseconds(50), reconnectDelayMax: .milliseconds(800),
                    protocolVersion: protocolVersion, tls: tls)
    }

    func mtls(_ pair: TestPKI.Pair? = nil, caFile: String? = nil) -> MQTTTLSOptions {
        let p = pair ?? client
        return MQTTTLSOptions(caFile: caFile ?? ca.cert, certFile: p.cert, keyFile: p.key)
    }

    func cleanUp() { pki.cleanUp() }
}

/// Waits for the first `.connected`, or nil.
func awaitConnected(_ events: AsyncStream<MQTTEvent>, timeout: Double = 10) async -> MQTTEvent? {
    await awaitEvent(events, timeout: timeout) { if case .connected = $0 { true } else { false } }
}

/// Starts `connection`, waits until it has been refused `failures` times in a row, and
/// returns the snapshot; the caller stops the connection.
func awaitRefusals(_ connection: MQTTConnection, failures: Int = 4, timeout: Double = 15) async throws -> MQTTConnectionSnapshot {
    try connection.start()
    _ = await eventually(timeout: timeout) {
        let s = connection.snapshot
        return s.consecutiveFailures >= failures && s.refusal != nil
    }
    return connection.snapshot
}

/// A mosquitto_sub speaking MQTT 5 that prints topic, expiry, content type, user properties
/// and payload for each message: what a v5 consumer sees, independent of Vigil's client.
struct V5Subscriber {
    let pid: pid_t
    let output: String

    static func start(broker: MosquittoBroker, topic: String, directory: String) async throws -> V5Subscriber {
        let output = directory + "/" + uniqueName("sub") + ".out"
        let pid = try MosquittoBroker.spawnTool([
            "/usr/bin/mosquitto_sub", "-h", "127.0.0.1", "-p", "\(broker.port)", "-V", "mqttv5", "-q", "1",
            "-t", topic, "-F", "%t|expiry=%E|ct=%C|props=%P|%p", "-d",
        ], output: output)
        let sub = V5Subscriber(pid: pid, output: output)
        // mosquitto_sub's stdout is a file, so its SUBACK line may sit in a buffer; a message
        // is flushed at once. Probe until one comes through: then the subscription is live.
        let probe = topic.replacing("#", with: "probe")
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline, !MosquittoBroker.readText(output).contains(probe + "|") {
            try MosquittoBroker.runTool(["/usr/bin/mosquitto_pub", "-h", "127.0.0.1", "-p", "\(broker.port)", "-t", probe, "-m", "probe"])
            _ = await eventually(timeout: 0.2) { MosquittoBroker.readText(output).contains(probe + "|") }
        }
        return sub
    }

    /// The message lines (`topic|expiry=…|ct=…|props=…|payload`) so far.
    var lines: [String] {
        MosquittoBroker.readText(output).split(separator: "\n").map(String.init).filter { $0.contains("|expiry=") }
    }

    func waitFor(count: Int, timeout: Double = 10) async -> [String] {
        _ = await eventually(timeout: timeout) { lines.count >= count }
        return lines
    }

    func stop() { MosquittoBroker.terminateTool(pid) }
}

/// A stand-in for an MQTT 3.1.1-only broker: it answers an MQTT 5 CONNECT (protocol level 5)
/// with a 3.1.1 CONNACK "unacceptable protocol version" (return code 1, MQTT 3.1.1
/// §3.2.2.3) and closes, as a 3.1.1 broker does; any other CONNECT is relayed byte for byte
/// to a real mosquitto. mosquitto itself cannot be configured to refuse MQTT 5.
final class V311OnlyProxy: @unchecked Sendable {
    // Safety: `listener` is set in init and only closed in stop(); counters are atomics.
    let port: Int
    private let listener: Int32
    private let upstreamPort: Int
    let refusedV5 = Atomic<Int>(0)
    let relayed = Atomic<Int>(0)
    private let stopped = Atomic<Bool>(false)

    init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw MosquittoBrokerError("socket", errno: errno, "proxy socket") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, listen(fd, 8) == 0 else { close(fd); throw MosquittoBrokerError("bind", errno: errno, "proxy bind") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        listener = fd
        DispatchQueue(label: "v311-proxy.accept").async { [self] in acceptLoop() }
    }

    func stop() {
        stopped.store(true, ordering: .sequentiallyConsistent)
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func acceptLoop() {
        while !stopped.load(ordering: .sequentiallyConsistent) {
            let c = accept(listener, nil, nil)
            if c < 0 {
                if errno == EINTR { continue }
                return
            }
            DispatchQueue(label: "v311-proxy.conn").async { [self] in handle(c) }
        }
    }

    private static func readExactly(_ fd: Int32, _ n: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: n)
        var got = 0
        while got < n {
            let r = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, n - got) }
            if r < 0, errno == EINTR { continue }
            if r <= 0 { return nil }
            got += r
        }
        return out
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var done = 0
        while done < bytes.count {
            let w = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, bytes.count - done) }
            if w < 0, errno == EINTR { continue }
            if w <= 0 { return false }
            done += w
        }
        return true
    }

    private func handle(_ client: Int32) {
        defer { close(client) }
        // Fixed header: type byte, then the remaining length (variable byte integer, §2.2.3).
        guard let first = Self.readExactly(client, 1), first[0] == 0x10 else { return }
        var header = first
        var remaining = 0
        var multiplier = 1
        for _ in 0..<4 {
            guard let b = Self.readExactly(client, 1) else { return }
            header += b
            remaining += Int(b[0] & 0x7F) * multiplier
            multiplier *= 128
            if b[0] & 0x80 == 0 { break }
        }
        guard let body = Self.readExactly(client, remaining), body.count >= 7 else { return }
        // Variable header: protocol name "MQTT" (2-byte length + 4 bytes), then the level.
        if body[6] == 5 {
            refusedV5.wrappingAdd(1, ordering: .relaxed)
            _ = Self.writeAll(client, [0x20, 0x02, 0x00, 0x01])
            return
        }
        relayed.wrappingAdd(1, ordering: .relaxed)
        let up = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard up >= 0 else { return }
        defer { close(up) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(upstreamPort).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(up, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, Self.writeAll(up, header + body) else { return }
        var fds = [pollfd(fd: client, events: Int16(POLLIN), revents: 0), pollfd(fd: up, events: Int16(POLLIN), revents: 0)]
        var buf = [UInt8](repeating: 0, count: 16_384)
        while !stopped.load(ordering: .sequentiallyConsistent) {
            let n = poll(&fds, 2, 200)
            if n < 0, errno == EINTR { continue }
            if n < 0 { return }
            for i in 0..<2 where fds[i].revents != 0 {
                let from = fds[i].fd, to = fds[1 - i].fd
                let r = buf.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
                if r < 0, errno == EINTR { continue }
                if r <= 0 { return }
                if !Self.writeAll(to, Array(buf[0..<r])) { return }
            }
        }
    }
}
