import Testing
@testable import ReadingStore
import VitalSigns

/// The runtime device registry (migration 0006-devices): pairings, unpairings and the
/// assignment history, on a real SQLite file.
@Suite struct DeviceRegistryPairingTests {
    static func t(_ seconds: Int64) -> Timestamp { Timestamp(millisecondsSinceEpoch: baseTime + seconds * 1000) }

    static let oximeter = RegisteredDevice(
        id: DeviceID("rad8-bedroom"), profile: "masimo-rad8", port: "/dev/serial/by-id/usb-FTDI-A1-if00-port0",
        clockUTCOffsetSeconds: 3600, pairedAt: t(0), patient: PatientID("patient-1"))

    @Test func aPairedDeviceIsStoredWithItsAssignmentAndSurvivesReopening() async throws {
        let dir = TemporaryDirectory()
        do {
            let store = try openStore(dir)
            let (outcome, assigned) = try await store.pairDevice(Self.oximeter)
            #expect(outcome == .changed)
            #expect(assigned)
            await store.close()
        }
        let store = try openStore(dir)
        let devices = try store.pairedDevices()
        #expect(devices.count == 1)
        let d = try #require(devices.first)
        #expect(d.sameSetup(as: Self.oximeter))
        #expect(d.patient == PatientID("patient-1"))
        #expect(d.assignedAt == Self.t(0))
        #expect(d.clockUTCOffsetSeconds == 3600)
        await store.close()
    }

    @Test func pairingTheSameSetupTwiceChangesNothingAndAnotherSetupIsAConflict() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        _ = try await store.pairDevice(Self.oximeter)
        var again = Self.oximeter
        again.pairedAt = Self.t(60)
        let (outcome, reassigned) = try await store.pairDevice(again)
        #expect(outcome == .unchanged)
        #expect(!reassigned)
        #expect(try store.assignments(device: Self.oximeter.id).count == 1, "no second assignment row")
        #expect(try store.pairedDevices().first?.pairedAt == Self.t(0), "the first pairing stands")

        var other = Self.oximeter
        other.port = "/dev/ttyUSB1"
        let (conflict, _) = try await store.pairDevice(other)
        guard case .conflict(let existing) = conflict else {
            Issue.record("expected a conflict, got \(conflict)")
            return
        }
        #expect(existing.port == Self.oximeter.port)
        #expect(try store.pairedDevices().map(\.port) == [Self.oximeter.port], "nothing written")
        await store.close()
    }

    @Test func assignmentHistoryKeepsEachPatientsSpan() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        var device = Self.oximeter
        device.patient = nil
        #expect(try await store.pairDevice(device) == (.changed, false))
        #expect(try store.pairedDevice(device.id)?.patient == nil, "paired but not assigned")
        #expect(try await store.assignDevice(device.id, to: PatientID("patient-1"), at: Self.t(10)) == .changed)
        #expect(try await store.assignDevice(device.id, to: PatientID("patient-1"), at: Self.t(15)) == .unchanged)
        #expect(try await store.assignDevice(device.id, to: PatientID("patient-2"), at: Self.t(20)) == .changed)
        #expect(try await store.assignDevice(DeviceID("nope"), to: PatientID("patient-2"), at: Self.t(20)) == .notPaired)
        let history = try store.assignments(device: device.id)
        #expect(history.map(\.patient.rawValue) == ["patient-1", "patient-2"])
        #expect(history.map(\.from) == [Self.t(10), Self.t(20)])
        #expect(history.map(\.to) == [Self.t(20), nil])
        #expect(try store.pairedDevice(device.id)?.patient == PatientID("patient-2"))
        await store.close()
    }

    @Test func unpairEndsThePairingAndTheAssignmentAndTheIdCanBePairedAgain() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        _ = try await store.pairDevice(Self.oximeter)
        #expect(try await store.unpairDevice(Self.oximeter.id, at: Self.t(30)) == .changed)
        #expect(try await store.unpairDevice(Self.oximeter.id, at: Self.t(31)) == .notPaired)
        #expect(try store.pairedDevices().isEmpty)
        #expect(try store.assignments(device: Self.oximeter.id).map(\.to) == [Self.t(30)])

        var moved = Self.oximeter
        moved.port = "usb"
        moved.pairedAt = Self.t(40)
        moved.patient = PatientID("patient-3")
        #expect(try await store.pairDevice(moved) == (.changed, true))
        #expect(try store.pairedDevices().map(\.port) == ["usb"])
        #expect(try store.assignments(device: moved.id).map(\.patient.rawValue) == ["patient-1", "patient-3"])
        await store.close()
    }
}
