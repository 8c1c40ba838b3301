public import VitalSigns

/// What a tick produces: escalations (expected reading missing) and gateway events (device silent).
public struct RuleOutput: Sendable, Hashable {
    public var escalations: [Escalation]
    public var events: [GatewayEvent]
    public init(escalations: [Escalation] = [], events: [GatewayEvent] = []) {
        self.escalations = escalations
        self.events = events
    }
}

/// Evaluates one patient's care plan over their readings. Pure and deterministic: the
/// output depends only on the plan, the restored state and the readings and ticks given,
/// in order. Time is an input (readings' `measuredAt`, `tick(now:)`); nothing reads a clock.
///
/// Every rule — fixed thresholds, NEWS2, the trend and baseline models, expected readings —
/// turns a reading into an `Assessment`, and one `Episode` per (patient, rule) turns
/// assessments into the escalation lifecycle (see `Episode`).
public struct RuleEngine: Sendable {
    public private(set) var plan: CarePlan
    private var rules: [Rule] = []
    private var byVital: [String: [Int]] = [:]
    private var episodes: [String: Episode] = [:]
    private var daily: DailySeries
    /// Latest clean reading per vital key (NEWS2 and BP pairs).
    private var latest: [String: Reading] = [:]
    /// Weight models judge each local day once, on its first clean weight.
    private var lastWeightDay: Int64 = .min
    private var lastSeen: [DeviceID: Timestamp] = [:]
    private var silentReported: Set<DeviceID> = []
    /// The local day each expected-reading rule last judged missing.
    private var expectedDay: [String: Int64] = [:]

    /// At most this many triggering reading IDs are kept per escalation: the first few and
    /// the most recent, so a long episode does not grow the payload without bound.
    public static let maxTriggeringReadings = 32

    public init(plan: CarePlan) {
        self.plan = plan
        daily = DailySeries(utcOffsetMinutes: plan.utcOffsetMinutes, keepDays: plan.historyDays)
        configure()
    }

    private mutating func configure() {
        rules = Rule.all(for: plan)
        byVital = [:]
        for (i, r) in rules.enumerated() { for v in r.vitals { byVital[v, default: []].append(i) } }
    }

    /// Replaces the plan (a new version that validated). Episodes of rules whose id and
    /// definition are unchanged carry over; the others start afresh. History carries over.
    public mutating func apply(plan newPlan: CarePlan) {
        let old = Dictionary(uniqueKeysWithValues: rules.map { ($0.id, $0) })
        plan = newPlan
        configure()
        let kept = Set(rules.filter { old[$0.id] == $0 }.map(\.id))
        episodes = episodes.filter { kept.contains($0.key) }
        daily.keepDays = max(2, newPlan.historyDays + 1)
        daily.utcOffsetMilliseconds = Int64(newPlan.utcOffsetMinutes) * 60_000
    }

    /// Restores escalations from the store at start-up: every escalation not resolved is
    /// open again, and the latest event of each rule (resolved or not) sets the re-alert
    /// clock and the replay floor, so replaying recent readings neither repeats an event
    /// already recorded nor loses one recorded after it.
    public mutating func restore(open escalations: [Escalation]) {
        for e in escalations where e.patient == plan.patient {
            guard rules.contains(where: { $0.id == e.rule }) else { continue }
            var ep = episodes[e.rule] ?? Episode()
            if let f = ep.floor, f > e.at { continue }
            ep.floor = e.at
            ep.lastEventAt = e.at
            ep.lastSentSeverity = e.severity
            ep.open = e.state == .resolved ? nil : e
            ep.silent = false
            episodes[e.rule] = ep
            // An expected-reading rule already judged that day is not judged again after a restart.
            if rules.contains(where: { if case .expected = $0.kind { $0.id == e.rule } else { false } }) {
                expectedDay[e.rule] = daily.day(of: e.at)
            }
        }
    }

    /// Restores the daily summaries the baseline and trend models need, from hourly
    /// aggregates kept by the store (older than the replay window; the replay adds the rest).
    public mutating func restore(aggregates: [VitalAggregate]) {
        for a in aggregates where a.count > 0 {
            daily.add(vital: a.vital, value: a.firstValue, at: a.firstAt, count: a.count, sum: a.sum)
            if a.vital == Vital.bodyWeight.key { lastWeightDay = max(lastWeightDay, daily.day(of: a.firstAt)) }
        }
    }

    /// The escalations currently raised and sent (open, renotified or acknowledged).
    public var raised: [Escalation] {
        episodes.values.compactMap { $0.silent ? nil : $0.open }.sorted { $0.rule < $1.rule }
    }

    /// Records a care-team acknowledgement (the downlink calls this). Returns the
    /// acknowledged event to commit, or nil when no raised escalation has that ID or it is
    /// already acknowledged.
    public mutating func acknowledge(id: String, by who: String, at t: Timestamp) -> Escalation? {
        for (rule, var ep) in episodes {
            guard var e = ep.open, e.id == id, !ep.silent, e.state != .acknowledged else { continue }
            e.state = .acknowledged
            e.acknowledgedBy = who
            e.acknowledgedAt = t
            e.at = t
            ep.open = e
            episodes[rule] = ep
            return e
        }
        return nil
    }

    /// Feeds one reading; returns the escalation events it causes.
    public mutating func ingest(_ r: Reading) -> [Escalation] {
        guard r.patient == plan.patient else { return [] }
        lastSeen[r.device] = max(lastSeen[r.device] ?? r.measuredAt, r.measuredAt)
        silentReported.remove(r.device)
        let clean = VitalAggregate.counts(r)
        var firstOfDay = false
        if clean {
            firstOfDay = daily.add(vital: r.vital.key, value: r.quantity.value, at: r.measuredAt)
            latest[r.vital.key] = latest[r.vital.key].map { NEWS2Input.isLater(r, than: $0) ? r : $0 } ?? r
        }
        var isNewWeightDay = false
        if clean, r.vital == .bodyWeight, firstOfDay {
            let d = daily.day(of: r.measuredAt)
            if d >= lastWeightDay { isNewWeightDay = true; lastWeightDay = d }
        }
        guard let indexes = byVital[r.vital.key] else { return [] }
        var out: [Escalation] = []
        let trigger = TriggerValue(reading: r.id, vital: r.vital.key, value: r.quantity.value, unit: r.quantity.unit, measuredAt: r.measuredAt)
        for i in indexes {
            let rule = rules[i]
            // Quality gating: a flagged value neither starts, extends nor ends an episode.
            // Units: every rule reads the vital's canonical unit, except glucose, which also
            // converts mmol/L.
            let unitOK = r.quantity.unit == r.vital.unit || r.vital == .bloodGlucose
            let usable = r.flags.isDisjoint(with: .clinicallyUnreliable) && r.quantity.value.isFinite && unitOK
            let assessment = usable ? rule.assess(r, engine: self, newWeightDay: isNewWeightDay) : .ignore
            var values = [trigger]
            if case .news2 = rule.kind { values = news2Values() }
            if case .bpCrisis = rule.kind { values = bpValues(r) }
            if let e = process(rule, assessment, at: r.measuredAt, values: values) { out.append(e) }
        }
        return out
    }

    /// Time-driven rules: "expected reading missing" and "device silent". The daemon calls
    /// it about once a minute; a replay calls it between readings.
    public mutating func tick(now: Timestamp) -> RuleOutput {
        var out = RuleOutput()
        let day = daily.day(of: now), minute = daily.minuteOfDay(now)
        for rule in rules {
            guard case .expected(let x) = rule.kind else { continue }
            let have = daily[x.vital.key, day] != nil
            let a: Assessment
            if have { a = .clear }
            else if minute >= x.byMinute, expectedDay[rule.id] != day {
                // Judged once per local day: a missing reading is news once a day, not at
                // every re-alert interval.
                expectedDay[rule.id] = day
                a = .breach(x.severity, summary: "expected \(x.vital.key) reading missing by \(Self.hhmm(x.byMinute)) local time", detail: nil)
            } else { a = .ignore }
            if let e = process(rule, a, at: now, values: []) { out.escalations.append(e) }
        }
        if let silent = plan.deviceSilentSeconds {
            for (device, last) in lastSeen.sorted(by: { $0.key < $1.key })
            where !silentReported.contains(device) && now.milliseconds(since: last) >= silent * 1000 {
                silentReported.insert(device)
                out.events.append(GatewayEvent(kind: "device_silent", at: now, count: nil, detail: [
                    "device": device.rawValue, "last_reading_at": last.iso8601, "silent_after_seconds": String(silent),
                ]))
            }
        }
        return out
    }

    private mutating func process(_ rule: Rule, _ a: Assessment, at t: Timestamp, values: [TriggerValue]) -> Escalation? {
        var ep = episodes[rule.id] ?? Episode()
        let context = Episode.Context(patient: plan.patient, rule: rule.id, planVersion: plan.version,
                                      persistence: rule.persistence, realertMilliseconds: rule.realertSeconds(plan) * 1000)
        let e = ep.apply(a, at: t, values: values, context)
        episodes[rule.id] = ep
        return e
    }

    static func hhmm(_ minute: Int) -> String {
        let h = minute / 60, m = minute % 60
        return (h < 10 ? "0" : "") + String(h) + ":" + (m < 10 ? "0" : "") + String(m)
    }

    // MARK: Inputs for the models

    func dayOf(_ t: Timestamp) -> Int64 { daily.day(of: t) }
    var series: DailySeries { daily }
    func latestReading(_ vital: Vital) -> Reading? { latest[vital.key] }

    private func news2Values() -> [TriggerValue] {
        [Vital.respiratoryRate, .spo2, .systolicPressure, .pulseRate, .heartRate, .bodyTemperature].compactMap { v in
            latest[v.key].map { TriggerValue(reading: $0.id, vital: v.key, value: $0.quantity.value, unit: $0.quantity.unit, measuredAt: $0.measuredAt) }
        }
    }

    private func bpValues(_ r: Reading) -> [TriggerValue] {
        [Vital.systolicPressure, .diastolicPressure].compactMap { v in
            guard let x = latest[v.key], x.measuredAt == r.measuredAt else { return nil }
            return TriggerValue(reading: x.id, vital: v.key, value: x.quantity.value, unit: x.quantity.unit, measuredAt: x.measuredAt)
        }
    }
}
