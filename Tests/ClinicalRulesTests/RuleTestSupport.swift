import ClinicalRules
import StrictYAML
import VitalSigns

/// 2025-11-24T00:00:00Z, a UTC midnight: day arithmetic in tests is exact.
let midnight = Timestamp(secondsSinceEpoch: 1_763_942_400)
let testPatient = PatientID("p-rules")

/// A reading of `vital` at `seconds` after `midnight` (negative allowed), canonical unit.
func reading(_ vital: Vital, _ value: Double, at seconds: Int64, unit: String? = nil, flags: QualityFlags = [],
             device: DeviceID = "dev-1", patient: PatientID = testPatient) -> Reading {
    let t = midnight.adding(seconds: seconds)
    return Reading(id: .derive(device: device, vital: vital, measuredAt: t, sequence: nil, arrival: t), patient: patient,
                   device: device, vital: vital, quantity: Quantity(value, unit ?? vital.unit), measuredAt: t,
                   receivedAt: t, flags: flags, sequence: nil)
}

let day: Int64 = 86_400

func plan(_ yaml: String) throws -> CarePlan {
    try YAMLDecoder().decode(CarePlan.self, from: "patient: p-rules\nversion: 3\n" + yaml, fileName: "plan.yaml")
}

extension RuleEngine {
    /// Feeds readings in order and returns every event.
    mutating func feed(_ readings: [Reading]) -> [Escalation] { readings.flatMap { ingest($0) } }
}

/// A deterministic generator for property tests (SplitMix64, Steele et al. 2014).
struct Mix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * Double(next() >> 11) / Double(1 << 53) }
}
