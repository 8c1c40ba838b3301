import ClinicalRules
import Testing
import VitalSigns

@Suite struct ReplayTests {
    @Test func theExampleHistoryGivesTheDocumentedEscalations() throws {
        let planBytes = try #require(readRepoFile("demo/care-plans/examples/every-model.yaml"))
        let text = String(decoding: try #require(readRepoFile("demo/care-plans/examples/every-model.readings.jsonl")), as: UTF8.self)
        let plan = try CarePlan.load(yaml: planBytes, fileName: "every-model.yaml")
        var replay = Replay(plan: plan)
        var escalations: [Escalation] = []
        var events: [GatewayEvent] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            guard let r = try ReplayReadings.parse(line: String(line), number: i + 1, defaultPatient: plan.patient) else { continue }
            for o in replay.feed(r) {
                switch o {
                case .escalation(let e): escalations.append(e)
                case .event(let e): events.append(e)
                }
            }
        }
        let opened = escalations.filter { $0.state == .open }.map(\.rule)
        #expect(opened == ["weight-gain-2kg-3d", "bp-crisis", "glucose-low", "news2", "spo2-below-target", "weight-missing"])
        #expect(escalations.first { $0.rule == "glucose-low" }?.severity == .emergency, "2.9 mmol/L is level 2")
        #expect(!escalations.contains { e in e.values.contains { $0.value == 85 } }, "the flagged 85 % never triggers")
        #expect(escalations.filter { $0.rule == "weight-missing" }.map(\.state) == [.open, .resolved])
        #expect(events.allSatisfy { $0.kind == "device_silent" } && !events.isEmpty)
        // Every escalation names its rule, the plan version and the readings that triggered it.
        for e in escalations where e.rule != "weight-missing" || e.state == .resolved {
            #expect(e.carePlanVersion == 1 && !e.triggeringReadings.isEmpty && e.values.count == e.triggeringReadings.count)
        }
        // The JSON line carries the wire fields plus detail.
        let json = try #require(escalations.first { $0.rule == "news2" }).json.serialized
        #expect(json.hasPrefix("{\"schema\":\"vigil.escalation/1\"") && json.contains("\"detail\":{") && json.contains("home-measured"))
    }

    @Test(arguments: [
        ("{\"vital\": \"spo3\", \"value\": 1, \"measured_at\": \"2026-01-01T00:00:00Z\"}", "unknown vital"),
        ("{\"vital\": \"spo2\", \"value\": \"x\", \"measured_at\": \"2026-01-01T00:00:00Z\"}", "'value'"),
        ("{\"vital\": \"spo2\", \"value\": 97, \"measured_at\": \"2026-01-01T00:00:00\"}", "'measured_at'"),
        ("{\"vital\": \"spo2\", \"value\": 97, \"measured_at\": \"2026-01-01T00:00:00Z\", \"flags\": [\"wobbly\"]}", "'flags'"),
        ("[1, 2]", "not a JSON object"),
        ("{\"vital\": ", "invalid JSON"),
    ])
    func aBadLineIsAnErrorNamingTheLine(line: String, reason: String) {
        #expect {
            _ = try ReplayReadings.parse(line: line, number: 7, defaultPatient: "p")
        } throws: { error in
            "\(error)".hasPrefix("line 7: ") && "\(error)".contains(reason)
        }
    }

    @Test func parsesDefaultsAndMmolGlucose() throws {
        let r = try #require(try ReplayReadings.parse(
            line: "{\"vital\": \"blood_glucose\", \"value\": 3.0, \"unit\": \"mmol/L\", \"measured_at\": \"2026-01-01T01:00:00+01:00\"}",
            number: 1, defaultPatient: "p-9"))
        #expect(r.patient == "p-9" && r.device == "replay" && r.quantity.unit == "mg/dL")
        #expect(abs(r.quantity.value - 54.048) < 1e-9)
        #expect(r.measuredAt == Timestamp(iso8601: "2026-01-01T00:00:00Z"))
        #expect(try ReplayReadings.parse(line: "# comment", number: 2, defaultPatient: "p") == nil)
        #expect(try ReplayReadings.parse(line: "   ", number: 3, defaultPatient: "p") == nil)
    }
}
