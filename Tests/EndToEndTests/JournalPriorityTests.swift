import Glibc
import SerialLink
import Testing
import VigilTestKit

/// vigild under journald (`$JOURNAL_STREAM` set, as systemd sets it): every stderr line starts
/// with its syslog priority (`<N>`, sd-daemon(3)), which journald stores as PRIORITY=, and at the
/// default level (info) no line carries a patient identifier, even while an escalation is raised.
@Suite(.serialized) struct JournalPriorityTests {
    static let plan = """
        patient: patient-e2e
        version: 1
        thresholds:
          - id: spo2-low
            vital: spo2
            below: 90
            sustained_seconds: 20
            hysteresis: 2
            severity: urgent
        """

    @Test func everyLineCarriesAPriorityAndNoPatientData() async throws {
        try await Rig.with(carePlans: ["patient-e2e.yaml": Self.plan]) { rig in
            try rig.vigild.start(environment: ["JOURNAL_STREAM=8:123456"])
            var bytes: [UInt8] = []
            for i in 0..<40 { bytes += rig.line(i, spo2: 85) }
            try await rig.device.write(bytes)
            try await rig.subscriber.waitFor(count: 1, timeout: 20, matching: isEscalation)
            #expect(rig.vigild.terminate() == 0)
            let lines = rig.vigild.log().split(separator: "\n")
            #expect(lines.count >= 4)
            for line in lines {
                let b = Array(line.utf8)
                #expect(b.count > 3 && b[0] == UInt8(ascii: "<") && (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(b[1])
                        && b[2] == UInt8(ascii: ">"), "no priority prefix: \(line)")
            }
            #expect(lines.contains { $0.hasPrefix("<5>escalation open") }, "an escalation is a notice")
            #expect(lines.contains { $0.hasPrefix("<6>") })
            #expect(!lines.contains { $0.contains("patient-e2e") }, "a patient identifier in the journal at info level")
        }
    }
}
