import Logging
import Testing
import Uplink
import VigilTestKit
import VitalSigns

private func json(_ bytes: [UInt8]) throws -> JSONValue { try JSONValue.parse(bytes) }

private func codes(_ concept: JSONValue?) -> [String] {
    concept?["coding"]?.arrayValue?.compactMap { $0["code"]?.stringValue } ?? []
}

private func userProperty(_ m: UplinkMessage, _ name: String) -> String? {
    m.properties.userProperties.first { $0.name == name }?.value
}

@Suite struct FhirEncodingTests {
    @Test func anSpO2ReadingIsAnOxygenSatObservation() throws {
        let r = FhirFixtures.reading(.spo2, 97, device: "rad8-bedroom", sequence: nil)
        let o = try json(FhirR4.observation(r))
        #expect(o["resourceType"]?.stringValue == "Observation")
        #expect(o["id"]?.stringValue == r.id.rawValue)
        #expect(o["meta"]?["profile"]?.arrayValue?.compactMap(\.stringValue) == [
            "http://hl7.org/fhir/StructureDefinition/vitalsigns", "http://hl7.org/fhir/StructureDefinition/oxygensat"])
        #expect(codes(o["code"]) == ["59408-5", "2708-6", "150456"])
        #expect(codes(o["category"]?.arrayValue?.first) == ["vital-signs"])
        #expect(o["identifier"]?.arrayValue?.first?["system"]?.stringValue == "urn:vigil:reading-id")
        #expect(o["identifier"]?.arrayValue?.first?["value"]?.stringValue == r.id.rawValue)
        #expect(o["status"]?.stringValue == "final")
        #expect(o["effectiveDateTime"]?.stringValue == r.measuredAt.iso8601)
        #expect(o["valueQuantity"]?["value"]?.doubleValue == 97)
        #expect(o["valueQuantity"]?["system"]?.stringValue == "http://unitsofmeasure.org")
        #expect(o["valueQuantity"]?["code"]?.stringValue == "%")
        #expect(o["subject"]?["type"]?.stringValue == "Patient")
        #expect(o["subject"]?["identifier"]?["value"]?.stringValue == "patient-001")
        #expect(o["device"]?["identifier"]?["value"]?.stringValue == "rad8-bedroom")
        let received = o["extension"]?.arrayValue?.first { $0["url"]?.stringValue == FhirR4.receivedAtExtension }
        #expect(received?["valueInstant"]?.stringValue == r.receivedAt.iso8601)
        // Same input, same bytes.
        #expect(FhirR4.observation(r) == FhirR4.observation(r))
    }

    @Test func bodyHeightIsSentInCentimetresAsTheProfileBindsIt() throws {
        let o = try json(FhirR4.observation(FhirFixtures.reading(.bodyHeight, 1.75)))
        #expect(o["valueQuantity"]?["value"]?.doubleValue == 175)
        #expect(o["valueQuantity"]?["code"]?.stringValue == "cm")
    }

    @Test func glucoseIsALaboratoryObservationWithoutTheVitalSignsProfile() throws {
        let o = try json(FhirR4.observation(FhirFixtures.reading(.bloodGlucose, 104)))
        #expect(codes(o["category"]?.arrayValue?.first) == ["laboratory"])
        #expect(o["meta"]?["profile"] == nil)
        #expect(codes(o["code"]).first == "2339-0")
    }

    @Test func qualityFlagsBecomeStatusComparatorSecurityLabelAndExtensions() throws {
        let hi = try json(FhirR4.observation(FhirFixtures.reading(.bloodGlucose, 600, flags: [.aboveMeasuringRange])))
        #expect(hi["valueQuantity"]?["comparator"]?.stringValue == ">")
        #expect(hi["status"]?.stringValue == "final", "a HI glucose is a real result")
        let lo = try json(FhirR4.observation(FhirFixtures.reading(.bloodGlucose, 20, flags: [.belowMeasuringRange])))
        #expect(lo["valueQuantity"]?["comparator"]?.stringValue == "<")
        let searching = try json(FhirR4.observation(FhirFixtures.reading(.spo2, 91, flags: [.searching, .lowPerfusion])))
        #expect(searching["status"]?.stringValue == "preliminary")
        let flagCodes = searching["extension"]?.arrayValue?.filter { $0["url"]?.stringValue == FhirR4.qualityFlagExtension }
            .compactMap { $0["valueCode"]?.stringValue }
        #expect(flagCodes == ["low_perfusion", "searching"])
        let demo = try json(FhirR4.observation(FhirFixtures.reading(.spo2, 98, flags: [.notPatientData])))
        #expect(demo["status"]?.stringValue == "entered-in-error")
        #expect(demo["meta"]?["security"]?.arrayValue?.first?["code"]?.stringValue == "HTEST")
        let invalid = try json(FhirR4.observation(FhirFixtures.reading(.spo2, 0, flags: [.invalidMeasurement])))
        #expect(invalid["status"]?.stringValue == "entered-in-error")
        let nan = try json(FhirR4.observation(FhirFixtures.reading(.spo2, .nan)))
        #expect(nan["valueQuantity"] == nil)
        #expect(codes(nan["dataAbsentReason"]) == ["error"])
    }

    @Test func systolicAndDiastolicOfOneRecordBecomeOneBloodPressurePanel() throws {
        let sys = FhirFixtures.reading(.systolicPressure, 128)
        let dia = FhirFixtures.reading(.diastolicPressure, 82)
        let mean = FhirFixtures.reading(.meanArterialPressure, 97)
        let pulse = FhirFixtures.reading(.pulseRate, 66)
        let messages = FhirObservationEncoding(batchMax: 1).messages(for: FhirFixtures.items([sys, dia, mean, pulse]), topics: FhirFixtures.topics)
        #expect(messages.count == 2)
        #expect(messages.map { $0.keys.map(\.sequence) } == [[1, 2, 3], [4]])
        let panel = try json(messages[0].payload)
        #expect(codes(panel["code"]) == ["85354-9"])
        #expect(panel["meta"]?["profile"]?.arrayValue?.last?.stringValue == "http://hl7.org/fhir/StructureDefinition/bp")
        #expect(panel["valueQuantity"] == nil)
        let components = panel["component"]?.arrayValue ?? []
        #expect(components.map { codes($0["code"]).first } == ["8480-6", "8462-4", "8478-0"])
        #expect(components.map { $0["valueQuantity"]?["value"]?.doubleValue } == [128, 82, 97])
        #expect(panel["identifier"]?.arrayValue?.compactMap { $0["value"]?.stringValue } == [sys.id, dia.id, mean.id].map(\.rawValue))
        #expect(codes(try json(messages[1].payload)["code"]).first == "8867-4")
    }

    @Test func aPanelIsNamedByItsSystolicReadingWhateverTheOutboxOrder() throws {
        let sys = FhirFixtures.reading(.systolicPressure, 128)
        let dia = FhirFixtures.reading(.diastolicPressure, 82)
        let panel = try json(FhirR4.observation([dia, sys]))
        #expect(panel["id"]?.stringValue == sys.id.rawValue)
        #expect(panel["identifier"]?.arrayValue?.first?["value"]?.stringValue == sys.id.rawValue)
        let bundle = try json(FhirR4.bundle([[dia, sys], [FhirFixtures.reading(.spo2, 97)]]))
        #expect(bundle["entry"]?.arrayValue?.first?["request"]?["ifNoneExist"]?.stringValue == "identifier=urn:vigil:reading-id|\(sys.id.rawValue)")
    }

    @Test func readingsOfDifferentRecordsAreNeverPaired() throws {
        let sys = FhirFixtures.reading(.systolicPressure, 128, sequence: 7)
        let dia = FhirFixtures.reading(.diastolicPressure, 82, sequence: 8)
        let otherDevice = FhirFixtures.reading(.diastolicPressure, 80, device: "other", sequence: 7)
        let messages = FhirObservationEncoding(batchMax: 1).messages(for: FhirFixtures.items([sys, dia, otherDevice]), topics: FhirFixtures.topics)
        #expect(messages.count == 3)
        #expect(try messages.map { codes(try json($0.payload)["code"]).first } == ["8480-6", "8462-4", "8462-4"])
    }

    @Test func aPanelWhoseMembersAreApartGoesOutAtItsLastMemberSoTheCursorOnlyGrows() throws {
        let sys = FhirFixtures.reading(.systolicPressure, 128)
        let pulse = FhirFixtures.reading(.pulseRate, 66)
        let dia = FhirFixtures.reading(.diastolicPressure, 82)
        let messages = FhirObservationEncoding(batchMax: 1).messages(for: FhirFixtures.items([sys, pulse, dia]), topics: FhirFixtures.topics)
        #expect(messages.map { $0.keys.map(\.sequence) } == [[2], [1, 3]])
        let lasts = messages.compactMap { $0.keys.last?.sequence }
        #expect(lasts == lasts.sorted())
    }

    @Test func aBacklogGoesOutAsBundlesOfAtMostBatchMaxEveryItemExactlyOnce() throws {
        let readings = (0..<120).map { FhirFixtures.reading(.spo2, Double(90 + $0 % 10), device: "rad8", sequence: UInt64($0), at: Int64($0)) }
        let items = FhirFixtures.items(readings)
        let messages = FhirObservationEncoding(batchMax: 50).messages(for: items, topics: FhirFixtures.topics)
        #expect(messages.map(\.keys.count) == [50, 50, 20])
        #expect(messages.flatMap(\.keys) == items.map(\.key))
        let bundle = try json(messages[0].payload)
        #expect(bundle["resourceType"]?.stringValue == "Bundle")
        #expect(bundle["type"]?.stringValue == "batch")
        let entries = bundle["entry"]?.arrayValue ?? []
        #expect(entries.count == 50)
        #expect(entries.first?["request"]?["ifNoneExist"]?.stringValue == "identifier=urn:vigil:reading-id|\(readings[0].id.rawValue)")
        #expect(entries.first?["resource"]?["id"]?.stringValue == readings[0].id.rawValue)
        #expect(userProperty(messages[0], "schema") == "fhir.Bundle/4.0.1")
        #expect(userProperty(messages[0], "count") == "50")
        #expect(messages[0].properties.contentType == "application/fhir+json")
        // One reading alone is an Observation, not a Bundle of one.
        let single = FhirObservationEncoding(batchMax: 50).messages(for: FhirFixtures.items([readings[0]]), topics: FhirFixtures.topics)
        #expect(try json(single[0].payload)["resourceType"]?.stringValue == "Observation")
        #expect(userProperty(single[0], "schema") == "fhir.Observation/4.0.1")
    }

    @Test func theCompressedBatchInflatesToTheBundleAndIsSmaller() throws {
        let readings = (0..<50).map { FhirFixtures.reading(.spo2, Double(90 + $0 % 10), device: "rad8", sequence: UInt64($0), at: Int64($0)) }
        let items = FhirFixtures.items(readings)
        let plain = FhirObservationEncoding(batchMax: 50).messages(for: items, topics: FhirFixtures.topics)
        let packed = FhirObservationEncoding(batchMax: 50, compressed: true).messages(for: items, topics: FhirFixtures.topics)
        #expect(packed.count == 1)
        #expect(packed[0].payload.first == 0x78, "a zlib stream (RFC 1950)")
        #expect(try Deflate.decompress(packed[0].payload) == plain[0].payload)
        #expect(packed[0].payload.count * 5 < plain[0].payload.count, "\(packed[0].payload.count) vs \(plain[0].payload.count) bytes")
        #expect(userProperty(packed[0], "content-encoding") == "deflate")
    }

    @Test func deflateRejectsCorruptAndOversizedStreams() throws {
        let packed = try Deflate.compress(Array(repeating: UInt8(ascii: "a"), count: 100_000))
        #expect(throws: CompressionError.self) { try Deflate.decompress(packed, maxBytes: 1000) }
        var corrupt = packed
        corrupt[corrupt.count / 2] ^= 0xFF
        #expect(throws: CompressionError.self) { try Deflate.decompress(corrupt) }
        #expect(throws: CompressionError.self) { try Deflate.decompress([0x78, 0x9C, 0x01]) }
    }

    @Test(arguments: UplinkEncodingKind.allCases)
    func readingsExpireWhenConfiguredEscalationsAndEventsNever(kind: UplinkEncodingKind) throws {
        let encoding = makeUplinkEncoding(kind, batchMax: 50, readingExpirySeconds: 3600)
        let readings = encoding.messages(for: FhirFixtures.items([FhirFixtures.reading(.spo2, 97)]), topics: FhirFixtures.topics)
        #expect(readings.map(\.properties.messageExpirySeconds) == [3600])
        #expect(readings.map(\.topic) == ["vigil/v1/site-a/gw-1/readings"])
        let priority = [
            OutboxItem(key: OutboxKey(lane: .priority, sequence: 1), payload: .escalation(FhirFixtures.escalation())),
            OutboxItem(key: OutboxKey(lane: .priority, sequence: 2), payload: .event(GatewayEvent(kind: "data_loss", at: FhirFixtures.t0, count: 3))),
        ]
        let messages = encoding.messages(for: priority, topics: FhirFixtures.topics)
        #expect(messages.map(\.topic) == ["vigil/v1/site-a/gw-1/escalations", "vigil/v1/site-a/gw-1/events"])
        #expect(messages.allSatisfy { $0.properties.messageExpirySeconds == nil })
        #expect(messages.map { userProperty($0, "schema") } == ["vigil.escalation/1", "vigil.event/1"])
        let noExpiry = makeUplinkEncoding(kind).messages(for: FhirFixtures.items([FhirFixtures.reading(.spo2, 97)]), topics: FhirFixtures.topics)
        #expect(noExpiry.map(\.properties.messageExpirySeconds) == [nil])
    }

    @Test func anEscalationRendersAsADetectedIssueImplicatingItsObservations() throws {
        let e = FhirFixtures.escalation(state: .acknowledged, acknowledged: true)
        let encoding = makeUplinkEncoding(.fhirBundle, escalations: .fhir)
        let messages = encoding.messages(for: [OutboxItem(key: OutboxKey(lane: .priority, sequence: 9), payload: .escalation(e))],
                                         topics: FhirFixtures.topics)
        #expect(messages.count == 1)
        #expect(messages[0].topic == "vigil/v1/site-a/gw-1/escalations")
        #expect(messages[0].properties.messageExpirySeconds == nil)
        #expect(userProperty(messages[0], "schema") == "fhir.DetectedIssue/4.0.1")
        let d = try json(messages[0].payload)
        #expect(d["resourceType"]?.stringValue == "DetectedIssue")
        #expect(d["severity"]?.stringValue == "moderate")
        #expect(d["identifiedDateTime"]?.stringValue == e.openedAt.iso8601)
        #expect(d["implicated"]?.arrayValue?.compactMap { $0["identifier"]?["value"]?.stringValue } == e.triggeringReadings.map(\.rawValue))
        #expect(d["implicated"]?.arrayValue?.first?["identifier"]?["system"]?.stringValue == FhirR4.readingSystem)
        #expect(d["mitigation"]?.arrayValue?.first?["author"]?["display"]?.stringValue == "nurse-17")
        #expect(d["extension"]?.arrayValue?.first?["valueCode"]?.stringValue == "acknowledged")
    }
}

/// The real validator against payloads built here: every kind passes, and each deliberately
/// broken message fails (so the validation in the end-to-end tests can fail).
@Suite(.serialized) struct FhirValidationTests {
    @Test func everyEncodingOfEveryVitalValidates() throws {
        try #require(validatorInstalled, "run scripts/setup-validator (scripts/setup-debian does)")
        var payloads: [(name: String, bytes: [UInt8])] = []
        let all = FhirFixtures.everyVital
        for r in all {
            payloads.append(("obs-\(r.vital.key).json", FhirR4.observation(r)))
            payloads.append(("vigil-\(r.vital.key).json", PayloadEncoder.reading(r)))
        }
        let flagged = FhirFixtures.reading(.bloodGlucose, 600, flags: [.aboveMeasuringRange, .storedData, .deviceClockUnreliable])
        payloads.append(("obs-flagged.json", FhirR4.observation(flagged)))
        payloads.append(("obs-demo.json", FhirR4.observation(FhirFixtures.reading(.spo2, 98, flags: [.notPatientData, .searching]))))
        payloads.append(("obs-nan.json", FhirR4.observation(FhirFixtures.reading(.spo2, .nan))))
        let bp = [FhirFixtures.reading(.systolicPressure, 128), FhirFixtures.reading(.diastolicPressure, 82), FhirFixtures.reading(.meanArterialPressure, 97)]
        payloads.append(("obs-bp-panel.json", FhirR4.observation(bp)))
        for kind in [UplinkEncodingKind.fhirBundle, .fhirBundleDeflate] {
            let messages = makeUplinkEncoding(kind).messages(for: FhirFixtures.items(all + bp + [flagged]), topics: FhirFixtures.topics)
            #expect(messages.count == 1)
            payloads += messages.map { ("\(kind.rawValue).bin", $0.payload) }
        }
        for state in EscalationState.allCases {
            let e = FhirFixtures.escalation(state: state, acknowledged: state == .acknowledged)
            payloads.append(("detectedissue-\(state).json", FhirR4.detectedIssue(e)))
            payloads.append(("escalation-\(state).json", PayloadEncoder.escalation(e)))
        }
        payloads.append(("event.json", PayloadEncoder.event(GatewayEvent(kind: "data_loss", at: FhirFixtures.t0, count: 303, detail: ["reason": "outbox capacity"]))))
        payloads.append(("status-online.json", PayloadEncoder.status(.online, at: FhirFixtures.t0)))
        payloads.append(("status-offline.json", PayloadEncoder.status(.offline)))
        let detail = PayloadEncoder.StatusDetail(
            version: "0.6.0", uptimeSeconds: 3600, outboxReadings: 12, outboxPriority: 0,
            devices: [.init(id: "rad8-bedroom", state: "connected", lastReadingAt: FhirFixtures.t0),
                      .init(id: "ua651-kitchen", state: "disconnected", lastReadingAt: nil)])
        payloads.append(("status-detail.json", PayloadEncoder.status(.online, at: FhirFixtures.t0, detail: detail)))
        let (status, output) = try validatePayloads(payloads)
        #expect(status == 0, "\(output)")
        #expect(output.contains("\(payloads.count) passed, 0 failed"), "\(output)")
        #expect(output.contains("ok 0000-obs-spo2.json fhir Observation"), "\(output)")
        #expect(output.contains("deflate fhir Bundle(18)"), "\(output)")
    }

    @Test func brokenMessagesFail() throws {
        try #require(validatorInstalled, "run scripts/setup-validator (scripts/setup-debian does)")
        func edit(_ bytes: [UInt8], _ from: String, _ to: String) -> [UInt8] {
            Array(String(decoding: bytes, as: UTF8.self).replacing(from, with: to).utf8)
        }
        let spo2 = FhirR4.observation(FhirFixtures.reading(.spo2, 97))
        let bp = FhirR4.observation([FhirFixtures.reading(.systolicPressure, 128), FhirFixtures.reading(.diastolicPressure, 82)])
        let broken: [(name: String, bytes: [UInt8])] = [
            // FHIR datatypes: a decimal that is a string (fhir.resources rejects it).
            ("obs-string-value.json", edit(spo2, "\"value\":97", "\"value\":\"ninety-seven\"")),
            // An element R4 Observation does not have.
            ("obs-unknown-element.json", edit(spo2, "\"status\":\"final\"", "\"status\":\"final\",\"vigilance\":true")),
            // A status outside the required ObservationStatus binding.
            ("obs-bad-status.json", edit(spo2, "\"status\":\"final\"", "\"status\":\"done\"")),
            // The vital-signs profile: category vital-signs missing.
            ("obs-no-category.json", edit(spo2, "\"code\":\"vital-signs\"", "\"code\":\"exam\"")),
            // The oxygensat profile: 2708-6 missing.
            ("obs-no-2708.json", edit(spo2, "\"code\":\"2708-6\"", "\"code\":\"2710-2\"")),
            // The bp profile: no diastolic component.
            ("obs-bp-no-diastolic.json", edit(bp, "\"code\":\"8462-4\"", "\"code\":\"8478-0\"")),
            // vigil.reading/1: an unknown flag.
            ("reading-bad-flag.json", edit(PayloadEncoder.reading(FhirFixtures.reading(.spo2, 97)), "\"flags\":[]", "\"flags\":[\"wobbly\"]")),
            // vigil.status/1 online without `at`.
            ("status-no-at.json", PayloadEncoder.status(.online)),
        ]
        let (status, output) = try validatePayloads(broken)
        #expect(status == 1, "\(output)")
        #expect(output.contains("0 passed, \(broken.count) failed"), "\(output)")
        // Each fails for the reason it was broken for.
        let reasons = [
            "obs-string-value.json": "ValidationError", "obs-unknown-element.json": "extra fields not permitted",
            "obs-bad-status.json": "status", "obs-no-category.json": "VSCat", "obs-no-2708.json": "oxygensat: code 2708-6 missing",
            "obs-bp-no-diastolic.json": "bp: exactly one component 8462-4 required",
            "reading-bad-flag.json": "'wobbly' is not one of", "status-no-at.json": "'at' is a required property",
        ]
        let lines = output.split(separator: "\n")
        for (file, reason) in reasons {
            let line = lines.first { $0.hasPrefix("FAIL") && $0.contains(file) }
            #expect(line?.contains(reason) == true, "\(file): \(line ?? "no FAIL line")")
        }
    }
}

@Suite struct AsyncAPIDocumentTests {
    /// docs/asyncapi.yaml is AsyncAPI 2.6.0, every $ref resolves, every schema under
    /// docs/schemas is a valid draft 2020-12 schema and is referenced by it.
    @Test func theContractReferencesEverySchemaAndEveryReferenceResolves() throws {
        try #require(validatorInstalled, "run scripts/setup-validator (scripts/setup-debian does)")
        let (status, output) = try VigildProcess.run(
            [VigilTestKit.Fixtures.repositoryRoot + "/scripts/validate-payloads", "--asyncapi", VigilTestKit.Fixtures.repositoryRoot + "/docs/asyncapi.yaml"])
        #expect(status == 0, "\(output)")
        #expect(output.contains("asyncapi: ok"), "\(output)")
    }
}

/// Bundles through the real forwarder and a real mosquitto: after an outage the escalation
/// still goes first, and the backlog arrives as Bundles carrying every reading exactly once.
@Suite struct FhirForwarderTests {
    @Test func afterAnOutageTheEscalationGoesFirstThenTheBacklogAsCompressedBundles() async throws {
        let broker = try MosquittoBroker(options: .init(persistence: true))
        defer { broker.cleanUp() }
        let topics = try Topics(site: uniqueName("site"), gateway: "gw")
        let sub = try await TestSubscriber.start(broker: broker, filter: topics.prefix + "/+", clientID: uniqueName("sub"),
                                                 cleanSession: false)
        broker.stop()

        let source = MemoryOutbox()
        let options = MQTTOptions(host: broker.host, port: broker.port, clientID: uniqueName("gw"), will: topics.offlineWill,
                                  reconnectDelayMin: .milliseconds(50), reconnectDelayMax: .milliseconds(400))
        let connection = try MQTTConnection(options: options)
        var logger = Logger(label: "test.uplink")
        logger.logLevel = .warning
        let forwarder = Forwarder(connection: connection, source: source,
                                  configuration: .init(topics: topics, encoding: makeUplinkEncoding(.fhirBundleDeflate, batchMax: 50)),
                                  logger: logger)
        let task = Task { await forwarder.run() }
        try connection.start()
        let readings = (0..<500).map { Fixtures.reading($0) }
        for r in readings { await source.commit(.reading(r)) }
        let escalation = Fixtures.escalation()
        await source.commit(.escalation(escalation))
        forwarder.notify()

        try broker.start()
        let notStatus: @Sendable (ReceivedMessage) -> Bool = { !$0.topic.hasSuffix("/status") }
        // 500 readings in fetches of 128 → Bundles of at most 50: at least 10 messages.
        let got = try await sub.waitFor(count: 11, timeout: 15, matching: notStatus)
        #expect(await eventually(timeout: 10) { await source.undeliveredCount == 0 })
        let all = sub.messages.filter(notStatus)
        #expect(all.first?.topic == topics.escalations)
        #expect(try JSONValue.parse(got[0].payload)["id"]?.stringValue == escalation.id)
        var ids: [String] = []
        for m in all where m.topic == topics.readings {
            let doc = try JSONValue.parse(try Deflate.decompress(m.payload))
            let resources = doc["resourceType"]?.stringValue == "Bundle" ? (doc["entry"]?.arrayValue ?? []).compactMap { $0["resource"] } : [doc]
            #expect(resources.count <= 50)
            ids += resources.flatMap { $0["identifier"]?.arrayValue?.compactMap { $0["value"]?.stringValue } ?? [] }
        }
        #expect(ids == readings.map(\.id.rawValue), "every reading once, in outbox order")
        #expect(forwarder.stats.acknowledged == 501)
        task.cancel()
        await task.value
        await connection.stop()
        await sub.stop()
    }
}
