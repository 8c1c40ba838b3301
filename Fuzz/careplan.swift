// libFuzzer target: the care-plan loader (ClinicalRules `CarePlan` through StrictYAML), then a
// rule engine put in force with the plan (its validation of rule combinations).
import ClinicalRules
import StrictYAML

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCarePlan(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = FuzzInput(data, size).bytes
    guard let plan = try? YAMLDecoder().decode(CarePlan.self, from: bytes, fileName: "fuzz.yaml") else { return 0 }
    var engine = RuleEngine(plan: plan)
    engine.apply(plan: plan)
    return 0
}
