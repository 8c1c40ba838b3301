import Glibc
import Testing
import Uplink
import VigilTestKit
import VitalSigns

/// Runs the real payload validator (scripts/validate-payloads: python3-jsonschema for the
/// vigil.* schemas, fhir.resources 6.4.0 for FHIR R4 4.0.1 plus the vital-signs profile rules)
/// over payloads written to files, one file per message. Returns its exit status and output.
func validatePayloads(_ payloads: [(name: String, bytes: [UInt8])]) throws -> (status: Int32, output: String) {
    let dir = makeTemporaryDirectory(prefix: "vigil-payloads")
    defer { _ = try? VigildProcess.run(["/bin/rm", "-rf", dir], quiet: true) }
    var paths: [String] = []
    for (i, p) in payloads.enumerated() {
        let path = "\(dir)/\(String(i).leftPadded(4))-\(p.name)"
        guard let f = fopen(path, "wb") else { throw ValidatorError("cannot write \(path): errno \(errno)") }
        let written = p.bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        fclose(f)
        guard written == p.bytes.count else { throw ValidatorError("short write to \(path)") }
        paths.append(path)
    }
    let script = VigilTestKit.Fixtures.repositoryRoot + "/scripts/validate-payloads"
    return try VigildProcess.run([script] + paths)
}

struct ValidatorError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// Whether the validator is installed (scripts/setup-validator); tests that need it fail with
/// this as the reason when it is not, rather than pass silently.
var validatorInstalled: Bool {
    let venv = (getenv("VIGIL_VALIDATOR_VENV").map { String(cString: $0) }) ?? "/opt/vigil-validate"
    return access(venv + "/bin/python3", X_OK) == 0
}

enum FhirFixtures {
    static let t0 = Timestamp(millisecondsSinceEpoch: 1_795_000_000_000)

    static func reading(_ vital: Vital, _ value: Double, device: String = "ua651-kitchen", sequence: UInt64? = 7,
                        at offset: Int64 = 0, flags: QualityFlags = [], unit: String? = nil) -> Reading {
        let d = DeviceID(device)
        let measured = t0.adding(seconds: offset)
        return Reading(id: .derive(device: d, vital: vital, measuredAt: measured, sequence: sequence, arrival: measured.adding(milliseconds: 250)),
                       patient: "patient-001", device: d, vital: vital, quantity: Quantity(value, unit ?? vital.unit),
                       measuredAt: measured, receivedAt: measured.adding(milliseconds: 250), flags: flags, sequence: sequence)
    }

    static func items(_ readings: [Reading], from first: Int64 = 1) -> [OutboxItem] {
        readings.enumerated().map { i, r in
            OutboxItem(key: OutboxKey(lane: .readings, sequence: first + Int64(i)), payload: .reading(r))
        }
    }

    static func escalation(state: EscalationState = .open, acknowledged: Bool = false) -> Escalation {
        let r = reading(.spo2, 86, device: "rad8-bedroom", sequence: nil)
        return Escalation(patient: "patient-001", rule: "spo2-low", severity: .urgent, state: state,
                          triggeringReadings: [r.id], values: [TriggerValue(reading: r.id, vital: "spo2", value: 86, unit: "%", measuredAt: r.measuredAt)],
                          carePlanVersion: 3, openedAt: r.measuredAt, at: r.measuredAt.adding(seconds: 20),
                          summary: "spo2 below 90 % for 20 s", acknowledgedBy: acknowledged ? "nurse-17" : nil,
                          acknowledgedAt: acknowledged ? r.measuredAt.adding(seconds: 60) : nil)
    }

    /// One reading of every vital Vigil stores, in its canonical unit.
    static var everyVital: [Reading] {
        let values: [String: Double] = [
            "spo2": 97, "pulse_rate": 72, "perfusion_index": 3.1, "heart_rate": 64, "respiratory_rate": 16,
            "systolic_bp": 128, "diastolic_bp": 82, "mean_bp": 97, "body_temperature": 36.8, "body_weight": 81.4,
            "blood_glucose": 104, "body_height": 1.75, "bmi": 26.6, "body_fat": 22.5, "interstitial_glucose": 118,
            "hba1c": 6.1,
        ]
        return Vital.all.filter { $0.key != "cuff_pressure" }.enumerated().map { i, v in
            reading(v, values[v.key] ?? 1, device: "dev-\(v.key)", sequence: UInt64(i), at: Int64(i))
        }
    }

    static let topics: Topics = {
        do { return try Topics(prefix: "vigil/v1/site-a/gw-1") } catch { fatalError("valid prefix") }
    }()
}
