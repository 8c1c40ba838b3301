public import VitalSigns

/// Evaluates one patient's care plan over their readings. Pure and deterministic: the
/// output depends only on the plan and the readings given, in order. Time comes from the
/// readings' `measuredAt`.
///
/// A rule is a value with `mutating func ingest(_:) -> [Escalation]`; this engine holds one
/// state per threshold rule and is the seam where NEWS2 and trend models join later.
public struct RuleEngine: Sendable {
    public private(set) var plan: CarePlan
    private var states: [String: ThresholdState]

    /// At most this many triggering reading IDs are kept per escalation: the first few and
    /// the most recent, so a long episode does not grow the payload without bound.
    public static let maxTriggeringReadings = 32

    public init(plan: CarePlan) {
        self.plan = plan
        self.states = [:]
    }

    /// Replaces the plan. Episodes of rules that keep their id and definition carry over;
    /// others start afresh.
    public mutating func apply(plan newPlan: CarePlan) {
        let kept = Dictionary(uniqueKeysWithValues: newPlan.thresholds.map { ($0.id, $0) })
        states = states.filter { id, _ in kept[id] == plan.thresholds.first(where: { $0.id == id }) }
        plan = newPlan
    }

    /// Marks escalations already raised (loaded from the store at start-up) so a restart
    /// does not raise them again.
    public mutating func restore(open escalations: [Escalation]) {
        for e in escalations where e.patient == plan.patient && e.state != .resolved {
            guard plan.thresholds.contains(where: { $0.id == e.rule }) else { continue }
            states[e.rule] = .raised(e)
        }
    }

    /// The currently raised escalations.
    public var raised: [Escalation] {
        states.values.compactMap { if case .raised(let e) = $0 { e } else { nil } }.sorted { $0.rule < $1.rule }
    }

    /// Feeds one reading; returns the escalation events it causes (raise or resolve).
    public mutating func ingest(_ reading: Reading) -> [Escalation] {
        guard reading.patient == plan.patient else { return [] }
        var out: [Escalation] = []
        for rule in plan.thresholds where rule.vital == reading.vital {
            var state = states[rule.id] ?? .idle
            if let event = state.ingest(reading, rule: rule, planVersion: plan.version, patient: plan.patient) {
                out.append(event)
            }
            states[rule.id] = state
        }
        return out
    }
}

/// One threshold rule's state: idle, accumulating a breach, or raised.
enum ThresholdState: Sendable {
    case idle
    case breaching(since: Timestamp, last: Timestamp, values: [TriggerValue])
    case raised(Escalation)

    mutating func ingest(_ r: Reading, rule: ThresholdRule, planVersion: Int, patient: PatientID) -> Escalation? {
        // Quality gating: a flagged value neither starts, extends nor ends an episode.
        guard r.flags.isDisjoint(with: .clinicallyUnreliable) else { return nil }
        let value = r.quantity.value
        guard value.isFinite, r.quantity.unit == rule.vital.unit else { return nil }
        let trigger = TriggerValue(reading: r.id, vital: r.vital.key, value: value, unit: r.quantity.unit, measuredAt: r.measuredAt)

        switch self {
        case .idle:
            guard rule.breaches(value) else { return nil }
            self = .breaching(since: r.measuredAt, last: r.measuredAt, values: [trigger])
            return raiseIfSustained(rule: rule, planVersion: planVersion, patient: patient, at: r.measuredAt)

        case .breaching(let since, let last, var values):
            guard rule.breaches(value) else {
                self = .idle
                return nil
            }
            if r.measuredAt.milliseconds(since: last) > rule.maxGapSeconds * 1000 || r.measuredAt < last {
                // A gap (or a clock step back) breaks continuity: the episode starts again here.
                self = .breaching(since: r.measuredAt, last: r.measuredAt, values: [trigger])
            } else {
                Self.append(trigger, to: &values)
                self = .breaching(since: since, last: r.measuredAt, values: values)
            }
            return raiseIfSustained(rule: rule, planVersion: planVersion, patient: patient, at: r.measuredAt)

        case .raised(let open):
            guard rule.clears(value) else { return nil }
            var resolved = open
            resolved.state = .resolved
            resolved.at = r.measuredAt
            resolved.values = open.values + [trigger]
            self = .idle
            return resolved
        }
    }

    private mutating func raiseIfSustained(rule: ThresholdRule, planVersion: Int, patient: PatientID, at: Timestamp) -> Escalation? {
        guard case .breaching(let since, _, let values) = self,
              at.milliseconds(since: since) >= rule.sustainedSeconds * 1000 else { return nil }
        let e = Escalation(
            patient: patient, rule: rule.id, severity: rule.severity, state: .open,
            triggeringReadings: values.map(\.reading), values: values, carePlanVersion: planVersion,
            openedAt: at, at: at, summary: rule.summary)
        self = .raised(e)
        return e
    }

    private static func append(_ v: TriggerValue, to values: inout [TriggerValue]) {
        values.append(v)
        let cap = RuleEngine.maxTriggeringReadings
        if values.count > cap {
            // Keep the first readings (how it began) and the most recent ones.
            values.remove(at: cap / 4)
        }
    }
}
