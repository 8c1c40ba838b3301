import Testing
import Uplink
import VigilTestKit
import VitalSigns

/// The pure downlink parser: every refusal path, and seeded random bytes never crash it.
@Suite struct DownlinkParserTests {
    let prefix = "vigil/v1/site/gw"
    let now = Timestamp(iso8601: "2026-11-25T12:00:00Z")!
    var parser: DownlinkParser { DownlinkParser(prefix: prefix) }

    func payload(id: JSONValue = "cmd-1", issuedAt: JSONValue = "2026-11-25T11:59:30Z", args: JSONValue = .object([]),
                 extra: [(String, JSONValue)] = []) -> [UInt8] {
        Array(JSONValue.object([("id", id), ("issued_at", issuedAt), ("args", args)] + extra).serialized.utf8)
    }

    func refusal(_ name: String, _ bytes: [UInt8]) -> DownlinkError? {
        do {
            _ = try parser.parse(topic: prefix + "/cmd/" + name, payload: bytes, now: now)
            return nil
        } catch {
            return error
        }
    }

    @Test func pingParsesWithItsEnvelope() throws {
        let c = try parser.parse(topic: prefix + "/cmd/ping", payload: payload(), now: now)
        #expect(c.id == "cmd-1")
        #expect(c.name == .ping)
        #expect(c.arguments == .ping)
        #expect(c.issuedAt == Timestamp(iso8601: "2026-11-25T11:59:30Z"))
        #expect(parser.replyTopic(id: c.id) == prefix + "/reply/cmd-1")
        #expect(parser.subscription == prefix + "/cmd/+")
    }

    @Test func everyCommandParsesItsArguments() throws {
        let ack = try parser.parse(topic: prefix + "/cmd/ack", payload: payload(args: .object([
            ("escalation", "f37ff99099483ba5256ee4fdee502647"), ("by", "nurse-7"), ("detail", "called the patient"),
        ])), now: now)
        #expect(ack.arguments == .ack(escalation: "f37ff99099483ba5256ee4fdee502647", by: "nurse-7", detail: "called the patient"))

        let plan = try parser.parse(topic: prefix + "/cmd/care-plan", payload: payload(args: .object([
            ("patient", "p-1"), ("plan", "patient: p-1\nversion: 2\nthresholds: []\n"),
        ])), now: now)
        #expect(plan.arguments == .carePlan(patient: "p-1", planYAML: "patient: p-1\nversion: 2\nthresholds: []\n"))

        let config = try parser.parse(topic: prefix + "/cmd/config", payload: payload(args: .object([
            ("set", .object([("log_level", "debug"), ("downlink.replay_window_seconds", 600)])),
        ])), now: now)
        #expect(config.arguments == .config([.logLevel("debug"), .replayWindowSeconds(600)]))

        let resend = try parser.parse(topic: prefix + "/cmd/resend", payload: payload(args: .object([
            ("from", "2026-11-24T00:00:00Z"), ("to", "2026-11-25T00:00:00Z"), ("device", "rad8"), ("limit", 50),
        ])), now: now)
        #expect(resend.arguments == .resend(from: Timestamp(iso8601: "2026-11-24T00:00:00Z")!, to: Timestamp(iso8601: "2026-11-25T00:00:00Z")!,
                                            device: "rad8", patient: nil, limit: 50))
    }

    @Test func topicsOutsideCmdAreNotAllowedAndCarryNoID() {
        for topic in ["vigil/v1/site/gw/cmd", "vigil/v1/site/gw/cmd/", "vigil/v1/site/gw/cmd/ack/x", "vigil/v1/other/gw/cmd/ack",
                      "vigil/v1/site/gw/readings", "cmd/ack", ""] {
            do {
                _ = try parser.parse(topic: topic, payload: payload(), now: now)
                Issue.record("accepted \(topic)")
            } catch {
                #expect(error.code == .topicNotAllowed)
                #expect(error.id == nil, "no reply for a topic outside <prefix>/cmd/<name>")
            }
        }
    }

    @Test func oversizedPayloadsAreRefusedBeforeParsing() {
        var p = DownlinkParser(prefix: prefix, limits: DownlinkLimits(maxBytes: 1024))
        p.limits.maxBytes = 1024
        let big = payload(args: .object([("by", .string(String(repeating: "x", count: 2000)))]))
        do {
            _ = try p.parse(topic: prefix + "/cmd/ack", payload: big, now: now)
            Issue.record("accepted")
        } catch {
            #expect(error.code == .tooLarge)
            #expect(error.id == nil, "an oversized payload is not parsed, so it has no usable id")
        }
    }

    @Test func malformedJSONAndEnvelopeErrorsNameTheProblem() {
        #expect(refusal("ping", Array("{\"id\":".utf8))?.code == .malformedJSON)
        #expect(refusal("ping", Array("[1,2]".utf8))?.code == .invalidEnvelope)
        #expect(refusal("ping", payload(id: "bad id with spaces"))?.code == .invalidID)
        #expect(refusal("ping", payload(id: .string(String(repeating: "a", count: 65))))?.code == .invalidID)
        #expect(refusal("ping", payload(id: 12))?.code == .invalidID)
        let missing = refusal("ping", Array("{\"issued_at\":\"2026-11-25T11:59:30Z\",\"args\":{}}".utf8))
        #expect(missing?.code == .invalidEnvelope && missing?.message.contains("'id'") == true)
        let unknown = refusal("ping", payload(extra: [("extra", 1)]))
        #expect(unknown?.code == .invalidEnvelope && unknown?.id == "cmd-1" && unknown?.message.contains("'extra'") == true)
        let dup = refusal("ping", Array("{\"id\":\"a\",\"id\":\"b\",\"issued_at\":\"2026-11-25T11:59:30Z\",\"args\":{}}".utf8))
        #expect(dup?.code == .invalidEnvelope && dup?.message.contains("twice") == true)
        #expect(refusal("ping", payload(issuedAt: "2026-11-25T11:59:30+01:00"))?.code == .invalidEnvelope, "UTC only")
        #expect(refusal("ping", payload(issuedAt: "yesterday"))?.code == .invalidEnvelope)
        #expect(refusal("ping", Array("{\"id\":\"a\",\"issued_at\":\"2026-11-25T11:59:30Z\"}".utf8))?.code == .invalidEnvelope)
        #expect(refusal("ping", payload(args: "x"))?.code == .invalidArguments)
    }

    @Test func unknownCommandsAreAnsweredWithTheirID() {
        let e = refusal("reboot", payload())
        #expect(e?.code == .unknownCommand)
        #expect(e?.id == "cmd-1")
        #expect(e?.command == "reboot")
    }

    @Test func issuedAtOutsideTheReplayWindowIsRefusedBothWays() {
        #expect(refusal("ping", payload(issuedAt: "2026-11-25T11:54:59Z"))?.code == .stale)
        #expect(refusal("ping", payload(issuedAt: "2026-11-25T12:05:01Z"))?.code == .issuedInFuture)
        #expect(refusal("ping", payload(issuedAt: "2026-11-25T11:55:00Z")) == nil, "exactly at the window's edge")
        #expect(refusal("ping", payload(issuedAt: "2026-11-25T12:05:00Z")) == nil)
    }

    @Test func argumentSchemaViolationsNameTheField() {
        func code(_ name: String, _ args: JSONValue) -> (String?, String) {
            let e = refusal(name, payload(args: args))
            return (e?.code.rawValue, e?.message ?? "")
        }
        #expect(code("ping", .object([("x", 1)])).0 == "invalid_arguments")
        #expect(code("ack", .object([("by", "n")])).1.contains("args.escalation"))
        #expect(code("ack", .object([("escalation", "XYZ"), ("by", "n")])).1.contains("hexadecimal"))
        #expect(code("ack", .object([("escalation", "ab"), ("by", 5)])).1.contains("args.by must be a string"))
        #expect(code("ack", .object([("escalation", "ab"), ("by", "")])).1.contains("must not be empty"))
        #expect(code("ack", .object([("escalation", "ab"), ("by", .string(String(repeating: "n", count: 129)))])).1.contains("at most 128"))
        #expect(code("care-plan", .object([("patient", "p")])).1.contains("args.plan"))
        #expect(code("config", .object([("set", .object([("broker.host", "evil")]))])).1.contains("unknown field 'args.set.broker.host'"))
        #expect(code("config", .object([("set", .object([("log_level", "loud")]))])).1.contains("log_level must be one of"))
        #expect(code("config", .object([("set", .object([("downlink.max_bytes", 10)]))])).1.contains("between 1024"))
        #expect(code("config", .object([("set", .object([]))])).1.contains("at least one"))
        #expect(code("resend", .object([("from", "2026-11-25T00:00:00Z"), ("to", "2026-11-24T00:00:00Z")])).1.contains("before"))
        #expect(code("resend", .object([("from", "2026-10-01T00:00:00Z"), ("to", "2026-11-24T00:00:00Z")])).1.contains("31 days"))
        #expect(code("resend", .object([("from", "2026-11-23T00:00:00Z"), ("to", "2026-11-24T00:00:00Z"), ("limit", 0)])).1.contains("between 1"))
        #expect(code("resend", .object([("from", "2026-11-23T00:00:00Z"), ("to", "2026-11-24T00:00:00Z"), ("limit", 1.5)])).1.contains("integer"))
    }

    @Test func errorsNeverQuoteValues() {
        let secret = "patient-SECRET-0042"
        let payloads = [
            payload(args: .object([("escalation", .string(secret)), ("by", "n")])),
            payload(args: .object([("set", .object([(secret, .int(1))]))])),
            payload(args: .object([("patient", .int(1)), ("plan", .string(secret))])),
        ]
        for (name, p) in zip(["ack", "config", "care-plan"], payloads) {
            let e = refusal(name, p)
            #expect(e != nil)
            // A key is echoed (cut and sanitised) so the sender sees which field; values never are.
            if name != "config" { #expect(e?.message.contains("SECRET") == false, "\(name): \(e?.message ?? "")") }
        }
    }

    @Test func repliesFollowTheReplySchema() throws {
        let ok = DownlinkReply.success(id: "a", command: "ping", at: now, result: .object([("version", "0.1.0")]))
        let doc = try JSONValue.parse(ok.payload)
        #expect(doc["schema"]?.stringValue == "vigil.reply/1")
        #expect(doc["ok"]?.boolValue == true)
        #expect(doc["error"] == .null)
        #expect(doc["result"]?["version"]?.stringValue == "0.1.0")
        let bad = DownlinkReply.failure(id: "a", command: "ack", at: now, error: DownlinkError(.replayed, "seen"))
        let b = try JSONValue.parse(bad.payload)
        #expect(b["ok"]?.boolValue == false && b["result"] == .null && b["error"]?["code"]?.stringValue == "replayed")
    }

    /// A few thousand seeded random payloads (raw bytes, and mutated valid commands) through the
    /// parser: it returns or throws, never traps. Replay a failure from its seed.
    @Test(arguments: [UInt64(1), 2, 3, 4])
    func randomBytesNeverCrashTheParser(seed: UInt64) {
        var rng = SplitMix64(state: seed)
        let names = DownlinkCommandName.allCases.map(\.rawValue) + ["x", ""]
        let valid = [
            payload(), payload(args: .object([("escalation", "ab"), ("by", "n")])),
            payload(args: .object([("set", .object([("log_level", "debug")]))])),
            payload(args: .object([("from", "2026-11-24T00:00:00Z"), ("to", "2026-11-25T00:00:00Z")])),
        ]
        var accepted = 0, refused = 0
        for i in 0..<1000 {
            var bytes: [UInt8]
            if i % 2 == 0 {
                bytes = (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                bytes = valid[Int.random(in: 0..<valid.count, using: &rng)]
                for _ in 0..<Int.random(in: 1...4, using: &rng) where !bytes.isEmpty {
                    let at = Int.random(in: 0..<bytes.count, using: &rng)
                    switch Int.random(in: 0..<3, using: &rng) {
                    case 0: bytes[at] = UInt8.random(in: 0...255, using: &rng)
                    case 1: bytes.remove(at: at)
                    default: bytes.insert(contentsOf: Array("{\"[,:1e999\\u0000".utf8).shuffled(using: &rng).prefix(3), at: at)
                    }
                }
            }
            let name = names[Int.random(in: 0..<names.count, using: &rng)]
            do {
                _ = try parser.parse(topic: prefix + "/cmd/" + name, payload: bytes, now: now)
                accepted += 1
            } catch {
                refused += 1
                #expect(!error.message.isEmpty)
            }
        }
        #expect(accepted + refused == 1000)
        #expect(refused > 500, "random bytes are almost always refused")
    }
}

/// `vigil.escalation/1` carries the acknowledgement (downlink `ack`) after its original fields.
@Suite struct AcknowledgedEscalationPayloadTests {
    func escalation() -> Escalation {
        let t = Timestamp(iso8601: "2026-11-25T11:48:15Z")!
        return Escalation(patient: PatientID("p-1"), rule: "spo2-low", severity: .urgent, state: .open, triggeringReadings: [],
                          values: [], carePlanVersion: 3, openedAt: t, at: t, summary: "spo2 below 90 %")
    }

    @Test func anUnacknowledgedEscalationHasNoAcknowledgementFields() throws {
        let text = String(decoding: PayloadEncoder.escalation(escalation()), as: UTF8.self)
        #expect(text.hasSuffix(",\"summary\":\"spo2 below 90 %\"}"), "the original fields, unchanged and last: \(text)")
        #expect(!text.contains("acknowledged_by") && !text.contains("\"detail\""))
    }

    @Test func anAcknowledgedEscalationNamesWhoWhenAndTheNote() throws {
        var e = escalation()
        e.state = .acknowledged
        e.acknowledgedBy = "nurse-7"
        e.acknowledgedAt = Timestamp(iso8601: "2026-11-25T11:50:02.101Z")
        e.detail = ["ack_detail": "phoned \"the\" patient", "band": "high"]
        let doc = try JSONValue.parse(PayloadEncoder.escalation(e))
        #expect(doc["state"]?.stringValue == "acknowledged")
        #expect(doc["acknowledged_by"]?.stringValue == "nurse-7")
        #expect(doc["acknowledged_at"]?.stringValue == "2026-11-25T11:50:02.101Z")
        #expect(doc["detail"]?["ack_detail"]?.stringValue == "phoned \"the\" patient")
        #expect(doc["detail"]?.objectValue?.map(\.0) == ["ack_detail", "band"], "detail keys sorted")
        #expect(doc["summary"]?.stringValue == "spo2 below 90 %")
    }
}
