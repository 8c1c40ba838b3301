import FoundationEssentials
import Testing
import Uplink
import VitalSigns

/// Decodable mirrors of the documented schemas: if the encoder drifts, decoding fails.
private struct ReadingJSON: Decodable, Equatable {
    var schema: String
    var id: String
    var patient: String
    var device: String
    var vital: String
    var loinc: String
    var mdc: Int?
    var value: Double?
    var unit: String
    var measured_at: String
    var received_at: String
    var flags: [String]
    var sequence: UInt64?
}

private struct ValueJSON: Decodable, Equatable {
    var reading: String
    var vital: String
    var value: Double?
    var unit: String
    var measured_at: String
}

private struct EscalationJSON: Decodable {
    var schema: String
    var id: String
    var patient: String
    var rule: String
    var severity: String
    var state: String
    var triggering_readings: [String]
    var values: [ValueJSON]
    var care_plan_version: Int
    var opened_at: String
    var at: String
    var summary: String
}

private struct EventJSON: Decodable {
    var schema: String
    var kind: String
    var at: String
    var count: Int64?
    var detail: [String: String]
}

private func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
    try JSONDecoder().decode(T.self, from: Data(bytes))
}

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

@Suite("PayloadEncoder")
struct PayloadEncoderTests {
    @Test("a reading encodes to the documented schema, byte for byte")
    func readingExact() throws {
        var r = Fixtures.reading(7)
        r.flags = [.lowPerfusion, .deviceClockUnreliable]
        r.quantity = Quantity(97.5, "%")
        let json = text(PayloadEncoder.reading(r))
        let expected = #"{"schema":"vigil.reading/1","id":"\#(r.id.rawValue)","patient":"patient-001","device":"rad8-bedroom","vital":"spo2","loinc":"59408-5","mdc":150456,"value":97.5,"unit":"%","measured_at":"\#(r.measuredAt.iso8601)","received_at":"\#(r.receivedAt.iso8601)","flags":["low_perfusion","device_clock_unreliable"],"sequence":7}"#
        #expect(json == expected)
        let back = try decode(ReadingJSON.self, PayloadEncoder.reading(r))
        #expect(back.flags == ["low_perfusion", "device_clock_unreliable"])
        #expect(back.value == 97.5)
        #expect(Timestamp(iso8601: back.measured_at) == r.measuredAt)
    }

    @Test("absent mdc and sequence become null; NaN and infinity are never emitted")
    func nullsAndNonFinite() throws {
        var r = Fixtures.reading(1)
        r.sequence = nil
        r.vital = Vital(key: "x", loinc: "1-1", display: "x", mdc: nil, mdcReference: nil, unit: "1")
        for bad in [Double.nan, .infinity, -.infinity, .signalingNaN] {
            r.quantity = Quantity(bad, "1")
            let bytes = PayloadEncoder.reading(r)
            let s = text(bytes)
            #expect(!s.contains("nan") && !s.contains("inf"), "\(s)")
            let back = try decode(ReadingJSON.self, bytes)
            #expect(back.value == nil && back.mdc == nil && back.sequence == nil)
        }
    }

    @Test("numbers never use exponent notation and round-trip", arguments: [
        0.0, -0.0, 1.0, -3.0, 0.1, 36.6, 1e-5, 1.2345e-7, -2.5e-10, 1e15, 1.25e20, 123456789.125, Double.leastNonzeroMagnitude, 1.7976931348623157e308,
    ])
    func plainNumbers(_ v: Double) throws {
        var r = Fixtures.reading(1)
        r.quantity = Quantity(v, "1")
        let bytes = PayloadEncoder.reading(r)
        let s = text(bytes)
        let valuePart = s.split(separator: "\"value\":")[1].prefix { $0 != "," }
        #expect(!valuePart.contains("e") && !valuePart.contains("E"), "\(valuePart)")
        #expect(Double(String(valuePart)) == v, "\(valuePart)")
        #expect(try decode(ReadingJSON.self, bytes).value == v)
    }

    @Test("strings escape quotes, backslashes and every control character; non-ASCII passes through")
    func escaping() throws {
        var controls = ""
        for c in 0..<0x20 { controls.unicodeScalars.append(Unicode.Scalar(UInt8(c))) }
        let nasty = "a\"b\\c/d\u{7F}é😀\u{2028}" + controls
        let event = GatewayEvent(kind: "device_gone", at: Fixtures.t0, count: nil,
                                 detail: ["reason": nasty, "device": "rad8 \"bedroom\""])
        let bytes = PayloadEncoder.event(event)
        #expect(!bytes.contains { $0 < 0x20 }, "raw control byte in \(text(bytes))")
        let s = text(bytes)
        #expect(s.contains(#"a\"b\\c/d"#))
        #expect(s.contains(#"\u0000\u0001"#) && s.contains(#"\b\t\n\u000b\f\r"#))
        let back = try decode(EventJSON.self, bytes)
        #expect(back.detail["reason"] == nasty)
        #expect(back.detail["device"] == "rad8 \"bedroom\"")
        #expect(back.count == nil)
        // Deterministic: detail keys sorted.
        #expect((s.firstRange(of: "\"device\"")?.lowerBound ?? s.endIndex) < (s.firstRange(of: "\"reason\"")?.lowerBound ?? s.startIndex))
        #expect(PayloadEncoder.event(event) == bytes)
    }

    @Test("an escalation carries patient, rule, severity, triggering readings, values and care-plan version")
    func escalation() throws {
        var e = Fixtures.escalation(4)
        e.summary = "SpO2 < 88 % \"sustained\"\n60 s"
        let back = try decode(EscalationJSON.self, PayloadEncoder.escalation(e))
        #expect(back.schema == "vigil.escalation/1")
        #expect(back.id == e.id)
        #expect(back.patient == "patient-001")
        #expect(back.rule == "spo2-low")
        #expect(back.severity == "urgent")
        #expect(back.state == "open")
        #expect(back.triggering_readings == e.triggeringReadings.map(\.rawValue))
        #expect(back.values == [ValueJSON(reading: e.values[0].reading.rawValue, vital: "spo2", value: 85, unit: "%",
                                          measured_at: e.values[0].measuredAt.iso8601)])
        #expect(back.care_plan_version == 3)
        #expect(back.opened_at == e.openedAt.iso8601 && back.at == e.at.iso8601)
        #expect(back.summary == e.summary)
        #expect(text(PayloadEncoder.escalation(e)).hasPrefix(#"{"schema":"vigil.escalation/1","id":"#))
    }

    @Test("timestamps are written exactly as Timestamp.iso8601", arguments: [
        Int64(0), -1, 999, 1_795_000_000_123, 951_782_400_000 /* 2000-02-29 */, 253_402_300_799_999, -62_135_596_800_000,
    ])
    func timestamps(_ ms: Int64) {
        let t = Timestamp(millisecondsSinceEpoch: ms)
        #expect(text(PayloadEncoder.status(.online, at: t)) == #"{"schema":"vigil.status/1","state":"online","at":"\#(t.iso8601)"}"#)
    }

    @Test("status payloads, and the will built from Topics")
    func status() throws {
        #expect(text(PayloadEncoder.status(.offline)) == #"{"schema":"vigil.status/1","state":"offline"}"#)
        #expect(text(PayloadEncoder.status(.online, at: Fixtures.t0)) ==
            #"{"schema":"vigil.status/1","state":"online","at":"\#(Fixtures.t0.iso8601)"}"#)
        let topics = try Topics(prefix: "vigil/v1/home-42/gw-1/")
        #expect(topics.readings == "vigil/v1/home-42/gw-1/readings")
        #expect(topics.escalations == "vigil/v1/home-42/gw-1/escalations")
        #expect(topics.events == "vigil/v1/home-42/gw-1/events")
        #expect(topics.status == "vigil/v1/home-42/gw-1/status")
        #expect(topics.offlineWill == MQTTWill(topic: topics.status, payload: PayloadEncoder.status(.offline), qos: 1, retain: true,
                                               properties: .init(contentType: "application/json", userProperties: [.init("schema", "vigil.status/1")])))
        #expect(throws: MQTTError.self) { try Topics(prefix: "vigil/+/x") }
        #expect(throws: MQTTError.self) { try Topics(prefix: "/") }
    }
}
