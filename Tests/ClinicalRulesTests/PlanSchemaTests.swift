import ClinicalRules
import Glibc
import StrictYAML
import Testing
import VitalSigns

@Suite struct PlanSchemaTests {
    @Test func aFullPlanDecodesWithDefaultsFromCLINICAL() throws {
        let p = try plan("""
            utc_offset_minutes: 60
            realert_minutes: 15
            device_silent_minutes: 90
            news2: {scale: 2, window_minutes: 30, air_or_oxygen: oxygen, consciousness: alert}
            models:
              weight_gain:
                - {id: wg, amount: 3, unit: lb, days: 1, comparison: ">="}
              weight_macd: {short_days: 3, long_days: 10, threshold: 1}
              weight_baseline: {}
              bp_crisis: {}
              hypotension: {}
              glucose: {unit: mmol/L}
              spo2: {}
              temperature: {}
              heart_rate: {}
            expected_readings:
              - {id: weight-missing, vital: body_weight, by: "11:00"}
            """)
        #expect(p.utcOffsetMinutes == 60 && p.realertSeconds == 900 && p.deviceSilentSeconds == 5400)
        #expect(p.news2 == NEWS2Settings(scale: .scale2, windowSeconds: 1800, airOrOxygen: .oxygen, consciousness: .alert))
        #expect(abs(p.models.weightGain[0].amountKg - 1.36077711) < 1e-8)
        #expect(p.models.weightGain[0].comparison == .greaterOrEqual)
        #expect(p.models.bpCrisis == BPCrisis())
        #expect(p.models.bpCrisis?.persistence == .confirm(withinSeconds: 300))
        #expect(p.models.hypotension?.systolic == 90)
        // Defaults given in mmol/L are the ADA mg/dL values.
        #expect(abs((p.models.glucose?.level1Below ?? 0) - 70) < 1e-9 && abs((p.models.glucose?.level2Below ?? 0) - 54) < 1e-9)
        #expect(p.models.temperature?.rise == 1.1 && p.models.temperature?.feverAt == 38.0)
        #expect(p.models.heartRate?.persistence == .sustained(seconds: 20, maxGapSeconds: 10))
        #expect(p.expectedReadings == [ExpectedReading(id: "weight-missing", vital: .bodyWeight, byMinute: 660)])
        #expect(p.ruleIDs.contains("news2") && p.ruleIDs.contains("weight-macd") && p.ruleIDs.contains("glucose-low"))
        #expect(p.historyDays == 50)
    }

    @Test(arguments: [
        ("models:\n  weight_gain:\n    - {id: a, amount: 2, days: 3, comparison: \"=>\"}", "models.weight_gain[0].comparison", 3),
        ("models:\n  weight_gain:\n    - {id: a, amount: 2, unit: stone}", "models.weight_gain[0].unit", 3),
        ("models:\n  weight_macd: {short_days: 3, long_days: 10}", "models.weight_macd", 2),
        ("models:\n  weight_macd: {short_days: 10, long_days: 5, threshold: 1}", "models.weight_macd.long_days", 2),
        ("models:\n  bp_crisis: {sustained_seconds: 30, confirm_within_minutes: 5}", "models.bp_crisis.confirm_within_minutes", 2),
        ("models:\n  glucose: {unit: mg/dL, level1_below: 50, level2_below: 60}", "models.glucose.level2_below", 2),
        ("models:\n  spo2: {fall_point: 3}", "", 2),
        ("news2: {scale: 3}", "news2.scale", 1),
        ("news2: {consciousness: drowsy}", "news2.consciousness", 1),
        ("expected_readings:\n  - {id: w, vital: body_weight, by: \"25:00\"}", "expected_readings[0].by", 2),
        ("utc_offset_minutes: 900", "utc_offset_minutes", 1),
        ("thresholds:\n  - {id: news2, vital: spo2, below: 90, severity: urgent}\nnews2: {}", "", 1),
    ])
    func anInvalidPlanIsRefusedNamingTheFieldAndLine(yaml: String, field: String, line: Int) {
        do {
            _ = try plan(yaml)
            Issue.record("accepted an invalid plan")
        } catch let error as YAMLError {
            #expect(field.isEmpty || error.path == field, "\(error)")
            #expect(error.line >= line + 2, "points at the field: \(error)")
            #expect(error.description.hasPrefix("plan.yaml:\(error.line):\(error.column): "))
        } catch {
            Issue.record("not a YAMLError: \(error)")
        }
    }

    @Test func loadGivesATypedErrorAndARefusedPlanLeavesThePreviousInForce() throws {
        var engine = RuleEngine(plan: try plan("models: {glucose: {}}"))
        #expect(throws: CarePlanError.self) {
            let bad = try CarePlan.load(yaml: Array("patient: p-rules\nversion: 4\nmodels: {glucose: {unit: g}}\n".utf8), fileName: "p.yaml")
            engine.apply(plan: bad)
        }
        #expect(engine.plan.version == 3)
        #expect(engine.feed([reading(.bloodGlucose, 50, at: 0)]).count == 1)
    }

    @Test func theDemoAndExamplePlansValidate() throws {
        for path in ["demo/care-plans/demo-patient-1.yaml", "demo/care-plans/demo-patient-2.yaml",
                     "demo/care-plans/examples/every-model.yaml"] {
            let bytes = try #require(readRepoFile(path), "\(path)")
            _ = try CarePlan.load(yaml: bytes, fileName: path)
        }
    }
}

/// Reads a file relative to the package root (tests run from it).
func readRepoFile(_ relative: String) -> [UInt8]? {
    var path = relative
    for _ in 0..<4 {
        let fd = open(path, O_RDONLY)
        if fd >= 0 {
            defer { close(fd) }
            var out: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return out }
                out += buffer[0..<n]
            }
        }
        path = "../" + path
    }
    return nil
}
