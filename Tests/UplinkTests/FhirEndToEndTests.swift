import Glibc
import SerialLink
import Testing
import Uplink
import VigilTestKit
import VitalSigns

private let spo2Plan = """
    patient: patient-fhir
    version: 2
    thresholds:
      - id: spo2-low
        vital: spo2
        below: 90
        sustained_seconds: 10
        hysteresis: 2
        severity: urgent
    """

/// One Masimo Rad-8 "ASCII 1" line (firmware-fixtures/README.md).
private func rad8Line(_ t: CivilDateTime, spo2: Int) -> [UInt8] {
    func pad(_ v: Int, _ w: Int) -> String { String(v).leftPadded(w) }
    let date = "\(pad(t.month, 2))/\(pad(t.day, 2))/\(pad(t.year % 100, 2)) \(pad(t.hour, 2)):\(pad(t.minute, 2)):\(pad(t.second, 2))"
    return Array("\(date) SN=0000012345 SPO2=\(pad(spo2, 3))% BPM=072 PI=03.10% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n".utf8)
}

private func wallClockSeconds() -> Int64 {
    var t = timespec()
    clock_gettime(CLOCK_REALTIME, &t)
    return Int64(t.tv_sec)
}

/// The real vigild, a pseudo-terminal oximeter and a real mosquitto: every message the broker
/// delivers is validated by the real validator (scripts/validate-payloads).
@Suite(.serialized) struct FhirEndToEndTests {
    /// Runs vigild with `uplink` config, feeds a desaturation (30 lines below 90 %, then 10
    /// normal), and returns every message on the gateway's topics once an escalation and at
    /// least `readings` readings' worth of messages have arrived.
    func collect(uplink: String, readingMessages: Int) async throws -> [ReceivedMessage] {
        let broker = try MosquittoBroker()
        try broker.start()
        defer { broker.cleanUp() }
        let dir = makeTemporaryDirectory()
        let device = try PseudoTerminal(linkPath: dir + "/rad8")
        defer { device.close() }
        let vigild = try VigildProcess(brokerPort: broker.port,
                                       devices: [.init(id: "rad8-fhir", port: dir + "/rad8", patient: "patient-fhir")],
                                       carePlans: ["patient-fhir.yaml": spo2Plan], extraConfig: uplink)
        defer { vigild.cleanUp() }
        let subscriber = try await TestSubscriber.start(broker: broker, filter: "vigil/v1/#", clientID: "fhir-e2e-\(getpid())")
        do {
            try vigild.start()
            let start = wallClockSeconds() - 3600
            var bytes: [UInt8] = []
            for i in 0..<40 {
                bytes += rad8Line(CivilDateTime(utc: Timestamp(secondsSinceEpoch: start + Int64(i))), spo2: i < 30 ? 86 : 97)
            }
            try await device.write(bytes)
            try await subscriber.waitFor(count: 1, timeout: 30, matching: { $0.topic.hasSuffix("/escalations") })
            try await subscriber.waitFor(count: readingMessages, timeout: 30, matching: { $0.topic.hasSuffix("/readings") })
            try await subscriber.waitFor(count: 1, timeout: 10, matching: { $0.topic.hasSuffix("/status") })
        } catch {
            Issue.record("vigild log:\n\(vigild.log())")
            await subscriber.stop()
            throw error
        }
        await subscriber.stop()
        return subscriber.messages
    }

    func validate(_ messages: [ReceivedMessage]) throws -> String {
        let payloads = messages.map { m in
            (name: m.topic.split(separator: "/").last.map(String.init) ?? "message", bytes: m.payload)
        }
        let (status, output) = try validatePayloads(payloads)
        #expect(status == 0, "\(output)")
        #expect(output.contains("\(payloads.count) passed, 0 failed"), "\(output)")
        return output
    }

    @Test func compressedFhirBundlesAndDetectedIssuesFromTheBrokerValidate() async throws {
        try #require(validatorInstalled, "run scripts/setup-validator (scripts/setup-debian does)")
        let uplink = """
            uplink:
              encoding: fhir-bundle-deflate
              batch_max: 50
              escalations: fhir
              reading_expiry_seconds: 86400

            """
        // 40 lines × 3 vitals = 120 readings, in at least 3 messages (50 a Bundle, at most).
        let messages = try await collect(uplink: uplink, readingMessages: 3)
        let readings = messages.filter { $0.topic.hasSuffix("/readings") }
        #expect(readings.allSatisfy { $0.payload.first == 0x78 }, "every readings message is a zlib stream")
        let carried = try readings.reduce(0) { n, m in
            let doc = try JSONValue.parse(try Deflate.decompress(m.payload))
            return n + (doc["resourceType"]?.stringValue == "Bundle" ? doc["entry"]?.arrayValue?.count ?? 0 : 1)
        }
        #expect(carried >= 3)
        let output = try validate(messages)
        #expect(output.contains("deflate fhir Bundle("), "\(output)")
        #expect(output.contains("fhir DetectedIssue"), "\(output)")
        #expect(output.contains("vigil.status/1"), "\(output)")
        // The retained status carries version, uptime, outbox depth and device states.
        let status = try #require(messages.last { $0.topic.hasSuffix("/status") })
        let doc = try JSONValue.parse(status.payload)
        #expect(doc["state"]?.stringValue == "online")
        #expect(doc["version"]?.stringValue?.isEmpty == false)
        #expect(doc["outbox"]?["readings"]?.int64Value != nil)
        #expect(doc["devices"]?.arrayValue?.first?["id"]?.stringValue == "rad8-fhir")
    }

    @Test func singleObservationsFromTheBrokerValidate() async throws {
        try #require(validatorInstalled, "run scripts/setup-validator (scripts/setup-debian does)")
        let messages = try await collect(uplink: "uplink:\n  encoding: fhir\n\n", readingMessages: 120)
        let output = try validate(messages)
        #expect(!output.contains("Bundle"), "\(output)")
        #expect(output.contains("fhir Observation"), "\(output)")
        #expect(output.contains("vigil.escalation/1"), "escalations stay vigil.escalation/1 by default: \(output)")
    }

    @Test func vigilJSONFromTheBrokerValidates() async throws {
        try #require(validatorInstalled, "run scripts/setup-validator (scripts/setup-debian does)")
        let messages = try await collect(uplink: "", readingMessages: 120)
        let output = try validate(messages)
        #expect(output.contains("vigil.reading/1"), "\(output)")
        #expect(output.contains("vigil.escalation/1"), "\(output)")
    }
}

/// `uplink:` settings are checked when vigild reads its config (`--check-config`).
@Suite struct UplinkConfigTests {
    @Test(arguments: [
        ("uplink:\n  encoding: fhir-xml\n", "encoding"),
        ("uplink:\n  batch_max: 0\n", "batch_max"),
        ("uplink:\n  reading_expiry_seconds: 0\n", "reading_expiry_seconds"),
        ("uplink:\n  escalations: hl7v2\n", "escalations"),
        ("uplink:\n  compression: zstd\n", "compression"),
    ])
    func badUplinkSettingsAreRefusedNamingTheField(config: String, field: String) throws {
        let vigild = try VigildProcess(brokerPort: 1883, devices: [], extraConfig: config)
        defer { vigild.cleanUp() }
        let (status, output) = try VigildProcess.run(
            ["/bin/sh", "-c", "\"$0\" --config \"$1\" --check-config 2>&1", VigildProcess.binDirectory + "/vigild", vigild.configPath])
        #expect(status != 0, "\(output)")
        #expect(output.contains(field), "\(output)")
    }

    @Test func goodUplinkSettingsPass() throws {
        let config = "uplink:\n  encoding: fhir-bundle-deflate\n  batch_max: 200\n  reading_expiry_seconds: 3600\n  escalations: fhir\n"
        let vigild = try VigildProcess(brokerPort: 1883, devices: [], extraConfig: config)
        defer { vigild.cleanUp() }
        let (status, output) = try VigildProcess.run(
            ["/bin/sh", "-c", "\"$0\" --config \"$1\" --check-config 2>&1", VigildProcess.binDirectory + "/vigild", vigild.configPath])
        #expect(status == 0, "\(output)")
    }
}
