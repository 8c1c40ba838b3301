import ClinicalRules
import Logging
import ReadingStore
import SerialLink
import ServiceLifecycle
import StrictYAML
import Uplink
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

    /// Days of daily summaries the plans' baseline and trend models need.
    var historyDays: Int { engines.values.map(\.plan.historyDays).max() ?? 0 }

    /// Rebuilds rule state at start-up from bounded inputs, never from all history:
    /// the latest stored event of each (patient, rule) (open episodes and re-alert clocks),
    /// hourly summaries for the models' baselines (older than the replay window) and a
    /// window of recent readings, then one tick at `now`. Returns escalation events the
    /// store lacks (a reading committed just before a crash may have satisfied a rule whose
    /// escalation never reached the store). Events at or before a rule's latest stored
    /// event are never produced again (see `RuleEngine.restore(open:)`), and an `open` whose
    /// ID the store already holds is dropped.
    func rebuild(latest: [Escalation], summaries: [VitalHourSummary], recent: [Reading], now: Timestamp,
                 known: (String) -> EscalationState?) -> (escalations: [Escalation], events: [GatewayEvent]) {
        var aggregates: [PatientID: [VitalAggregate]] = [:]
        for h in summaries {
            aggregates[h.patient, default: []].append(VitalAggregate(
                vital: h.vital, hourStart: h.hourStart, count: h.count, sum: h.sum, firstValue: h.firstValue,
                firstAt: h.firstAt, lastValue: h.lastValue, lastAt: h.lastAt))
        }
        for (patient, var engine) in engines {
            engine.restore(open: latest.filter { $0.patient == patient })
            engine.restore(aggregates: aggregates[patient] ?? [])
            engines[patient] = engine
        }
        let replayed = evaluate(recent)
        let ticked = tick(now: now)
        // The replay floor already keeps anything at or before a rule's last stored event
        // from coming back; an open whose ID the store knows is the one exception to guard.
        let fresh = (replayed + ticked.escalations).filter { !($0.state == .open && known($0.id) != nil) }
        return (fresh, ticked.events)
    }

    /// Runs the time-driven rules (expected reading missing, device silent) for every patient.
    func tick(now: Timestamp) -> RuleOutput {
        var out = RuleOutput()
        for patient in engines.keys.sorted() {
            guard var engine = engines[patient] else { continue }
            let o = engine.tick(now: now)
            engines[patient] = engine
            out.escalations += o.escalations
            out.events += o.events
        }
        return out
    }

    /// Records a care-team acknowledgement (called by the downlink, issue 6). Returns the
    /// event to commit, or nil for an unknown or already acknowledged ID. The caller commits
    /// it (`store.commit(escalations:)`): that is what makes the acknowledgement survive a restart.
    func acknowledge(id: String, by who: String, at t: Timestamp) -> Escalation? {
        for patient in engines.keys.sorted() {
            guard var engine = engines[patient], let e = engine.acknowledge(id: id, by: who, at: t) else { continue }
            engines[patient] = engine
            return e
        }
        return nil
    }

    /// The version of the plan in force for a patient, or nil when the patient has none.
    func planVersion(patient: PatientID) -> Int? { engines[patient]?.plan.version }

    /// Puts a validated plan in force (downlink `care-plan`): replaces the patient's plan
    /// (`RuleEngine.apply(plan:)`, episodes of unchanged rules carry over) or starts an
    /// engine for a patient who had none.
    func apply(plan: CarePlan) {
        if var engine = engines[plan.patient] {
            engine.apply(plan: plan)
            engines[plan.patient] = engine
        } else {
            engines[plan.patient] = RuleEngine(plan: plan)
        }
    }

    /// Rebuilds state from the store (start-up). Bounded: the replay window of the plans,
    /// rounded down to the hour, and `historyDays` of hourly summaries before it.
    func rebuild(from store: ReadingStore, now: Timestamp) throws -> (escalations: [Escalation], events: [GatewayEvent], replayed: Int) {
        guard !engines.isEmpty else { return ([], [], 0) }
        let days = Int64(historyDays)
        // With history models the replay starts on the hour, where the summaries end, so no
        // reading is counted twice or missed; without, only the rules' own window is read.
        let windowStart = days > 0
            ? VitalAggregate.hourStart(of: now.adding(seconds: -rebuildWindowSeconds))
            : now.adding(seconds: -rebuildWindowSeconds)
        let recent = rebuildWindowSeconds > 0 || days > 0 ? try store.readings(since: windowStart, limit: 200_000) : []
        let summaries = days > 0
            ? try store.vitalHourSummaries(from: windowStart.adding(seconds: -(days + 1) * 86_400), to: windowStart) : []
        let latest = try store.latestEscalationPerRule()
        let out = rebuild(latest: latest, summaries: summaries, recent: recent, now: now,
                          known: { id in try? store.escalationState(id: id) })
        return (out.escalations, out.events, recent.count)
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

/// Calls the rules' `tick(now:)` once a minute and commits what it produces (escalations to
/// the priority lane, `device_silent` events likewise), then wakes the forwarder.
struct RuleTicker: Service {
    let rules: RuleEvaluator
    let store: ReadingStore
    let forwarder: Forwarder
    let logger: Logger
    var interval: Duration = .seconds(60)

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do { try await Task.sleep(for: interval) } catch { return }
                let out = await rules.tick(now: realtimeNow())
                guard !(out.escalations.isEmpty && out.events.isEmpty) else { continue }
                do {
                    try await store.commit(escalations: out.escalations, events: out.events)
                    forwarder.notify()
                } catch {
                    // The rule state has moved on; log loudly. The next start-up rebuild
                    // re-derives a lost expected-reading escalation from the tick at start.
                    logger.error("cannot commit tick escalations", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
