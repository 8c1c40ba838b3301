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

/// Settings that break a cloud hub's limits are refused at load, naming the key.
@Suite struct TlsHubConfigTests {
    func check(_ brokerConfig: String, host: String = "localhost") throws -> (status: Int32, log: String) {
        let vigild = try VigildProcess(brokerPort: 8883, devices: [], brokerHost: host, brokerConfig: brokerConfig)
        defer { vigild.cleanUp() }
        let argv = [VigildProcess.binDirectory + "/vigild", "--config", vigild.configPath, "--check-config"]
        // --check-config prints the error on stderr: run it with stderr into a file.
        let out = vigild.directory + "/check.out"
        let pid = try MosquittoBroker.spawnTool(argv, output: out)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        return ((status >> 8) & 0xFF, MosquittoBroker.readText(out))
    }

    @Test func azureRefusesMQTT5AndOtherTopics() throws {
        let pki = try TestPKI()
        defer { pki.cleanUp() }
        let ca = try pki.makeCA("ca")
        let azure = """
              hub: azure-iot-hub
              client_id: gw-1
              username: example.azure-devices.net/gw-1/?api-version=2021-04-12
              tls:
                ca_file: \(ca.cert)

            """
        #expect(try check(azure).status == 0)
        let v5 = try check(azure + "  protocol: mqtt5\n")
        #expect(v5.status == 78)
        #expect(v5.log.contains("broker.protocol"), "\(v5.log)")
        let topic = try check(azure + "  topic_template: vigil/{site}/{kind}\n")
        #expect(topic.status == 78)
        #expect(topic.log.contains("broker.topic_template") && topic.log.contains("devices/"), "\(topic.log)")
        let otherDevice = try check(azure.replacing("client_id: gw-1", with: "client_id: gw-2"))
        #expect(otherDevice.status == 78)
        #expect(otherDevice.log.contains("username") && otherDevice.log.contains("gw-2"), "\(otherDevice.log)")
        let noTLS = try check("  hub: azure-iot-hub\n  username: h/gw/?api-version=2021-04-12\n")
        #expect(noTLS.status == 78)
        #expect(noTLS.log.contains("broker.tls"), "\(noTLS.log)")
    }

    @Test func awsRefusesReservedAndDeepTopics() throws {
        let pki = try TestPKI()
        defer { pki.cleanUp() }
        let ca = try pki.makeCA("ca")
        let gw = try pki.issueClient(ca: ca, name: "gw", commonName: "gw")
        let aws = """
              hub: aws-iot-core
              tls:
                ca_file: \(ca.cert)
                cert_file: \(gw.cert)
                key_file: \(gw.key)

            """
        #expect(try check(aws).status == 0)
        let reserved = try check(aws + "  topic_template: $aws/things/{gateway}/{kind}\n")
        #expect(reserved.status == 78)
        #expect(reserved.log.contains("broker.topic_template"), "\(reserved.log)")
        let deep = try check(aws + "  topic_template: a/b/c/d/e/f/{site}/{gateway}/{kind}\n")
        #expect(deep.status == 78)
        #expect(deep.log.contains("7"), "\(deep.log)")
    }
}

extension TlsHubConfigTests {
    @Test func anEncryptedOrWorldReadableKeyIsRefusedAtLoad() throws {
        let pki = try TestPKI()
        defer { pki.cleanUp() }
        let ca = try pki.makeCA("ca")
        let gw = try pki.issueClient(ca: ca, name: "gw", commonName: "gw")
        let encrypted = pki.directory + "/gw-encrypted.key"
        try MosquittoBroker.runTool(["/usr/bin/openssl", "pkey", "-in", gw.key, "-aes256", "-passout", "pass:not-logged",
                                     "-out", encrypted])
        chmod(encrypted, 0o600)
        func config(_ key: String) -> String {
            "  tls:\n    ca_file: \(ca.cert)\n    cert_file: \(gw.cert)\n    key_file: \(key)\n"
        }
        #expect(try check(config(gw.key)).status == 0)
        let enc = try check(config(encrypted))
        #expect(enc.status == 78)
        #expect(enc.log.contains("broker.tls.key_file") && enc.log.contains("encrypted"), "\(enc.log)")
        chmod(gw.key, 0o644)
        let open = try check(config(gw.key))
        #expect(open.status == 78)
        #expect(open.log.contains("broker.tls.key_file") && open.log.contains("every user"), "\(open.log)")
    }
}
