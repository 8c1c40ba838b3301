import ClinicalRules
import StrictYAML
import Testing
import VitalSigns

@Suite struct CarePlanTests {
    @Test func aPlanDecodesFromYAML() throws {
        let plan = try YAMLDecoder().decode(CarePlan.self, from: """
            patient: patient-0001
            version: 3
            thresholds:
              - id: spo2-low
                vital: spo2
                below: 90
                sustained_seconds: 60
                hysteresis: 1
                severity: urgent
              - id: pulse-high
                vital: pulse_rate
                above: 130.5
                severity: advisory
            """, fileName: "plan.yaml")
        #expect(plan.patient == "patient-0001" && plan.version == 3)
        #expect(plan.thresholds.count == 2)
        #expect(plan.thresholds[0] == ThresholdRule(id: "spo2-low", vital: .spo2, direction: .below, limit: 90, severity: .urgent,
                                                     sustainedSeconds: 60, hysteresis: 1, maxGapSeconds: 10))
        #expect(plan.thresholds[1].direction == .above && plan.thresholds[1].limit == 130.5)
        #expect(plan.rebuildWindowSeconds == 70)
    }

    @Test(arguments: [
        ("below: 90\n    above: 100", "thresholds[0].below", "exactly one of"),
        ("above: 90\n    vital: spo9", "", "duplicate"),
        ("below: 90\n    severity_: urgent", "", ""),
        ("below: 90\n    sustained_seconds: -5", "thresholds[0].sustained_seconds", "between 0 and 86400"),
        ("below: 90\n    hysteresis: -1", "thresholds[0].hysteresis", "zero or more"),
    ])
    func anInvalidRuleIsRefusedNamingTheField(extra: String, field: String, message: String) {
        let text = """
            patient: p-1
            version: 1
            thresholds:
              - id: r1
                vital: spo2
                severity: urgent
                \(extra)
            """
        do {
            _ = try YAMLDecoder().decode(CarePlan.self, from: text, fileName: "plan.yaml")
            Issue.record("accepted an invalid plan")
        } catch {
            #expect(field.isEmpty || error.path == field, "\(error)")
            #expect(message.isEmpty || error.description.contains(message), "\(error)")
            #expect(error.line >= 4, "points into the rule: \(error)")
        }
    }

    @Test func severityAndUnknownVitalErrorsDoNotEchoTheValue() {
        for (text, secret) in [("urgentish-XYZ", "XYZ"), ("spo2-QQQ", "QQQ")] {
            let isSeverity = secret == "XYZ"
            let yaml = "patient: p\nversion: 1\nthresholds:\n  - id: r\n    vital: \(isSeverity ? "spo2" : text)\n    below: 1\n    severity: \(isSeverity ? text : "urgent")\n"
            do {
                _ = try YAMLDecoder().decode(CarePlan.self, from: yaml, fileName: "plan.yaml")
                Issue.record("accepted")
            } catch {
                #expect(!error.description.contains(secret), "\(error)")
                #expect(error.path == (isSeverity ? "thresholds[0].severity" : "thresholds[0].vital"), "\(error)")
            }
        }
    }

    @Test func duplicateRuleIDsAreRefused() {
        let yaml = "patient: p\nversion: 1\nthresholds:\n  - {id: a, vital: spo2, below: 90, severity: urgent}\n  - {id: a, vital: spo2, below: 85, severity: emergency}\n"
        #expect(throws: YAMLError.self) { try YAMLDecoder().decode(CarePlan.self, from: yaml, fileName: "plan.yaml") }
    }
}
