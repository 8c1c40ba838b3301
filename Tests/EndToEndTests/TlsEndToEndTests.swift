import Glibc
import SerialLink
import Testing
import Uplink
import VigilTestKit
import VitalSigns

/// The real vigild over mutual TLS to a real mosquitto (require_certificate, identity as user
/// name, an ACL), with certificates made by openssl for this test.
@Suite(.serialized) struct TlsEndToEndTests {
    struct World {
        let pki: TestPKI
        let ca: TestPKI.Pair
        let server: TestPKI.Pair
        let client: TestPKI.Pair
        let stranger: TestPKI.Pair
        let broker: MosquittoBroker

        init() throws {
            pki = try TestPKI()
            ca = try pki.makeCA("ca")
            let other = try pki.makeCA("other-ca")
            server = try pki.issueServer(ca: ca)
            client = try pki.issueClient(ca: ca, name: "gw", commonName: "vigil-test-site-gw-test")
            stranger = try pki.issueClient(ca: other, name: "stranger", commonName: "vigil-test-site-gw-test")
            broker = try MosquittoBroker(options: .init(tls: .init(
                caFile: ca.cert, certFile: server.cert, keyFile: server.key, requireCertificate: true,
                useIdentityAsUsername: true,
                acl: ["user vigil-test-site-gw-test", "topic write vigil/v1/test-site/gw-test/#"])))
        }

        func brokerConfig(_ pair: TestPKI.Pair) -> String {
            """
              protocol: auto
              tls:
                ca_file: \(ca.cert)
                cert_file: \(pair.cert)
                key_file: \(pair.key)

            """
        }

        func cleanUp() {
            broker.cleanUp()
            pki.cleanUp()
        }
    }

    @Test func readingsFlowOverMutualTLSAndStatusShowsIt() async throws {
        let world = try World()
        defer { world.cleanUp() }
        let dir = makeTemporaryDirectory()
        let devicePath = dir + "/rad8"
        let device = try PseudoTerminal(linkPath: devicePath)
        defer { device.close() }
        let vigild = try VigildProcess(brokerPort: world.broker.tlsPort ?? 0,
                                       devices: [.init(id: "rad8-test", port: devicePath, patient: "patient-e2e")],
                                       brokerHost: "localhost", brokerConfig: world.brokerConfig(world.client))
        defer { vigild.cleanUp() }
        let subscriber = try await TestSubscriber.start(broker: world.broker, filter: "vigil/v1/#", clientID: uniqueClient("tls-e2e"))
        try vigild.start()
        let start = Timestamp(secondsSinceEpoch: wallClock().millisecondsSinceEpoch / 1000 - 3600)
        var bytes: [UInt8] = []
        for i in 0..<10 { bytes += rad8Line(CivilDateTime(utc: start.adding(seconds: Int64(i))), spo2: 95) }
        try await device.write(bytes)
        do {
            try await subscriber.waitFor(count: 30, timeout: 20, matching: isReading)
        } catch {
            Issue.record("vigild log:\n\(vigild.log())\nbroker log:\n\(world.broker.log())")
            throw error
        }
        let status = try vigild.status()
        let uplink = status["status"]?["uplink"]
        #expect(uplink?["connected"]?.boolValue == true)
        #expect(uplink?["tls"]?.boolValue == true)
        #expect(uplink?["protocol"]?.stringValue == "mqtt5")
        #expect(uplink?["refusal"] == .null)
        #expect(uplink?["quarantined"]?.int64Value == 0)
        // The key's path may be logged, never its content.
        let key = String(decoding: (try? Fixtures.readFile(world.client.key)) ?? [], as: UTF8.self)
        let keyBody = key.split(separator: "\n").dropFirst().first.map(String.init) ?? "unlikely"
        #expect(!vigild.log().contains(keyBody))
        #expect(vigild.terminate() == 0)
        await subscriber.stop()
    }

    @Test func aClientCertificateFromAnotherCAIsARefusalWithAReasonInStatus() async throws {
        let world = try World()
        defer { world.cleanUp() }
        let vigild = try VigildProcess(brokerPort: world.broker.tlsPort ?? 0, devices: [],
                                       brokerHost: "localhost", brokerConfig: world.brokerConfig(world.stranger))
        defer { vigild.cleanUp() }
        try vigild.start()
        let refused = await eventually(within: .seconds(10)) {
            (try? vigild.status())?["status"]?["uplink"]?["refusal"]?["kind"]?.stringValue == "client_certificate_rejected"
        }
        #expect(refused, "\(String(describing: try? vigild.status()["status"]?["uplink"]))")
        let uplink = try vigild.status()["status"]?["uplink"]
        #expect(uplink?["connected"]?.boolValue == false)
        #expect(uplink?["refusal"]?["reason"]?.stringValue?.contains("not signed by a CA the broker trusts") == true)
        #expect(uplink?["refusal"]?["since"]?.stringValue != nil)
        // The human view says it too.
        let (_, text) = try vigild.ctl(["status"])
        #expect(text.contains("REFUSED"), "\(text)")
        #expect(text.contains("client_certificate_rejected"), "\(text)")
        #expect(vigild.terminate() == 0)
    }

    @Test func aConfigWithACertificateButNoKeyIsRefusedAtLoadNamingTheField() throws {
        let world = try World()
        defer { world.cleanUp() }
        let vigild = try VigildProcess(brokerPort: world.broker.tlsPort ?? 0, devices: [], brokerHost: "localhost",
                                       brokerConfig: """
                                         tls:
                                           ca_file: \(world.ca.cert)
                                           cert_file: \(world.client.cert)

                                       """)
        defer { vigild.cleanUp() }
        let (status, _) = try VigildProcess.run([VigildProcess.binDirectory + "/vigild", "--config", vigild.configPath, "--check-config"],
                                                quiet: true)
        #expect(status == 78)  // EX_CONFIG
        #expect(throws: (any Error).self) { try vigild.start(timeoutSeconds: 5) }
        #expect(vigild.log().contains("cert_file"), "\(vigild.log())")
    }
}

func uniqueClient(_ base: String) -> String { "\(base)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" }
