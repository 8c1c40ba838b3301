import ClinicalRules
import Logging
import StrictYAML
import VitalSigns
import Glibc

/// Holds each patient's rule engine and feeds it committed readings. One actor, so rule
/// state changes in the order readings were committed.
actor RuleEvaluator {
    private var engines: [PatientID: RuleEngine] = [:]
    private let logger: Logger

    init(plans: [CarePlan], logger: Logger) {
        self.logger = logger
        for plan in plans { engines[plan.patient] = RuleEngine(plan: plan) }
    }

    var patientCount: Int { engines.count }

    /// The longest history any plan needs to rebuild its rule state.
    var rebuildWindowSeconds: Int64 { engines.values.map(\.plan.rebuildWindowSeconds).max() ?? 0 }

    /// Evaluates committed readings, in order.
    func evaluate(_ readings: [Reading]) -> [Escalation] {
        var out: [Escalation] = []
        for r in readings {
            guard var engine = engines[r.patient] else { continue }
            out += engine.ingest(r)
            engines[r.patient] = engine
        }
        return out
    }

    /// Rebuilds rule state at start-up from the open escalations and a bounded window of
    /// recent readings, never from all history. Returns escalation events the store lacks:
    /// a reading committed just before a crash may have satisfied a rule whose escalation
    /// never reached the store. Escalation IDs are deterministic, so replaying a stored
    /// episode yields the IDs already there and nothing is raised twice.
    func rebuild(open: [Escalation], recent: [Reading], known: (String) -> EscalationState?) -> [Escalation] {
        for (patient, var engine) in engines {
            engine.restore(open: open.filter { $0.patient == patient })
            engines[patient] = engine
        }
        // The replay window can begin inside an episode that has since been stored and
        // resolved: replaying from its middle opens a look-alike with a new ID (its openedAt
        // differs) and resolves it again. A pair opened *and* resolved within the replay is
        // therefore never news; neither is a resolve of an ID the store does not know.
        let events = evaluate(recent)
        let resolvedInReplay = Set(events.filter { $0.state == .resolved }.map(\.id))
        var missing: [Escalation] = []
        for event in events {
            switch (event.state, known(event.id)) {
            case (.open, nil) where !resolvedInReplay.contains(event.id): missing.append(event)
            case (.resolved, .some(let s)) where s != .resolved: missing.append(event)
            default: break
            }
        }
        return missing
    }

    /// Loads every `*.yaml` care plan in a directory. A plan that fails to validate is
    /// refused as a whole and reported; the others load.
    static func loadPlans(directory: String) -> (plans: [CarePlan], errors: [String]) {
        var plans: [CarePlan] = []
        var errors: [String] = []
        guard let dir = opendir(directory) else {
            if errno != ENOENT { errors.append("\(directory): cannot read the care-plan directory (errno \(errno))") }
            return ([], errors)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name.hasSuffix(".yaml") || name.hasSuffix(".yml") { names.append(name) }
        }
        for name in names.sorted() {
            let path = directory + "/" + name
            do {
                let plan = try YAMLDecoder().decode(CarePlan.self, from: try TextFile.readBytes(path), fileName: path)
                if plans.contains(where: { $0.patient == plan.patient }) {
                    errors.append("\(path): a second care plan for the same patient; refused")
                    continue
                }
                plans.append(plan)
            } catch {
                errors.append("\(error)")
            }
        }
        return (plans, errors)
    }
}

/// Reads small text files (config, plans, profiles) with errno-aware errors.
enum TextFile {
    struct ReadError: Error, CustomStringConvertible {
        var path: String
        var errno: Int32
        var description: String {
            let reason = switch errno {
            case ENOENT: "no such file"
            case EACCES: "permission denied"
            case EISDIR: "is a directory"
            default: String(cString: strerror(errno))
            }
            return "\(path): cannot read: \(reason)"
        }
    }

    static func read(_ path: String, limit: Int = 4 << 20) throws(ReadError) -> String {
        String(decoding: try readBytes(path, limit: limit), as: UTF8.self)
    }

    static func readBytes(_ path: String, limit: Int = 4 << 20) throws(ReadError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ReadError(path: path, errno: errno) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16_384)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ReadError(path: path, errno: errno)
            }
            if n == 0 { break }
            bytes += buffer[0..<n]
            if bytes.count > limit { throw ReadError(path: path, errno: EFBIG) }
        }
        return bytes
    }
}
