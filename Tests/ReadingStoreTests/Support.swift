import Glibc
import Logging
@testable import ReadingStore
import VitalSigns

/// A fresh directory under /tmp for one test, removed (with everything in it) on deinit.
final class TemporaryDirectory {
    let path: String

    init() {
        var template = Array("/tmp/vigil-store-test-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { buffer -> String in
            guard let base = buffer.baseAddress, let made = mkdtemp(base) else { return "/tmp/vigil-store-test-failed" }
            return String(cString: made)
        }
    }

    func file(_ name: String) -> String { path + "/" + name }

    deinit { Self.removeTree(path) }

    static func removeTree(_ path: String) {
        guard let dir = opendir(path) else { return }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name == "." || name == ".." { continue }
            let child = path + "/" + name
            if entry.pointee.d_type == UInt8(DT_DIR) { removeTree(child) } else { unlink(child) }
        }
        closedir(dir)
        rmdir(path)
    }
}

/// Copies a file byte for byte (the crash-simulation test copies a live database).
@discardableResult
func copyFile(_ from: String, _ to: String) -> Bool {
    let input = open(from, O_RDONLY)
    guard input >= 0 else { return false }
    defer { close(input) }
    let output = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard output >= 0 else { return false }
    defer { close(output) }
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else { return false }
        if n == 0 { return true }
        var written = 0
        while written < n {
            let w = buffer.withUnsafeBytes { write(output, $0.baseAddress! + written, n - written) }
            if w < 0 && errno == EINTR { continue }
            guard w > 0 else { return false }
            written += w
        }
    }
}

func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { return }
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}

let testLogger: Logger = {
    var logger = Logger(label: "vigil.store.test")
    logger.logLevel = .warning
    return logger
}()

let fixedClock: @Sendable () -> Timestamp = { Timestamp(millisecondsSinceEpoch: 1_764_000_000_000) }

func openStore(_ dir: TemporaryDirectory, name: String = "vigil.sqlite",
               configure: (inout StoreOptions) -> Void = { _ in }) throws(StoreError) -> ReadingStore {
    var options = StoreOptions(path: dir.file(name), clock: fixedClock)
    configure(&options)
    return try ReadingStore(options: options, logger: testLogger)
}

let baseTime: Int64 = 1_764_000_000_000

/// A reading with every field set from `index`, so each is distinct and predictable.
func makeReading(_ index: Int, device: String = "rad8-bedroom", patient: String = "patient-1",
                 vital: Vital = .spo2, value: Double? = nil, flags: QualityFlags = [],
                 sequence: UInt64? = nil) -> Reading {
    let measured = Timestamp(millisecondsSinceEpoch: baseTime + Int64(index) * 1000)
    let received = measured.adding(milliseconds: 250)
    return Reading(
        id: .derive(device: DeviceID(device), vital: vital, measuredAt: measured, sequence: sequence ?? UInt64(index)),
        patient: PatientID(patient), device: DeviceID(device), vital: vital,
        quantity: Quantity(value ?? Double(90 + index % 10), vital.unit),
        measuredAt: measured, receivedAt: received, flags: flags, sequence: sequence ?? UInt64(index))
}

func makeEscalation(_ index: Int, state: EscalationState = .open, patient: String = "patient-1") -> Escalation {
    let opened = Timestamp(millisecondsSinceEpoch: baseTime + Int64(index) * 60_000)
    let trigger = makeReading(index)
    return Escalation(
        patient: PatientID(patient), rule: "spo2-low-\(index)", severity: .urgent, state: state,
        triggeringReadings: [trigger.id],
        values: [TriggerValue(reading: trigger.id, vital: "spo2", value: 87.5, unit: "%", measuredAt: trigger.measuredAt)],
        carePlanVersion: 3, openedAt: opened, at: opened.adding(seconds: 5), summary: "SpO2 below 90 % for 60 s")
}

extension OutboxItem {
    var reading: Reading? { if case .reading(let r) = payload { r } else { nil } }
    var escalation: Escalation? { if case .escalation(let e) = payload { e } else { nil } }
    var event: GatewayEvent? { if case .event(let e) = payload { e } else { nil } }
}
