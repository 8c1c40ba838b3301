import VitalSigns

/// What one rule makes of one reading (or one tick).
enum Assessment {
    /// Nothing to say (a flagged reading, a value this rule does not use, too little history).
    case ignore
    /// Clean and not beyond the limit, but not past the hysteresis band either: a breach
    /// being accumulated ends; an open escalation stays open.
    case neutral
    /// Back past the hysteresis band: resolves.
    case clear
    /// Beyond the limit at this severity.
    case breach(Severity, summary: String, detail: [String: String]?)
}

/// One (patient, rule) lifecycle: persistence per severity level, then
/// open → renotified → acknowledged → resolved, with re-alert suppression.
///
/// - Persistence is tracked separately for each severity level, so a reading at the
///   emergency level extends the urgent and advisory breaches too, and an upgrade must meet
///   the same persistence as a first raise.
/// - Re-alerts: while the breach continues and the escalation is unacknowledged, it is
///   re-notified once per re-alert interval. An acknowledged escalation is not re-notified
///   at the same severity. A severity upgrade is notified at once, acknowledged or not.
/// - Suppression: a new episode that would open within the re-alert interval of this rule's
///   last event (raise, re-notification or resolution) is held back — tracked, not sent —
///   unless its severity is higher than the last one sent or it is an emergency (never
///   suppressed). A held-back episode is sent when the interval has passed and the breach
///   still holds, or at once on an upgrade; if it clears first, nothing is sent.
/// - Severity never goes down while an escalation is open.
struct Episode: Sendable {
    struct Pending: Sendable {
        var since: Timestamp
        var last: Timestamp
        var values: [TriggerValue]
        var confirmed: Bool
    }

    var pending: [Severity: Pending] = [:]
    var open: Escalation?
    /// The open escalation has not been sent (suppressed).
    var silent = false
    var lastEventAt: Timestamp?
    var lastSentSeverity: Severity?
    /// Restored from the store: events at or before this instant were already recorded, so a
    /// replay up to it only rebuilds persistence, never opens, renotifies or resolves.
    var floor: Timestamp?

    struct Context {
        var patient: PatientID
        var rule: String
        var planVersion: Int
        var persistence: Persistence
        var realertMilliseconds: Int64
    }

    mutating func apply(_ a: Assessment, at t: Timestamp, values: [TriggerValue], _ c: Context) -> Escalation? {
        let replaying = floor.map { t <= $0 } ?? false
        switch a {
        case .ignore:
            return nil
        case .neutral:
            pending.removeAll()
            return nil
        case .clear:
            pending.removeAll()
            guard !replaying, var e = open else { return nil }
            open = nil
            let wasSilent = silent
            silent = false
            if wasSilent { return nil }
            e.state = .resolved
            e.at = t
            for v in values { Self.append(v, to: &e.values) }
            e.triggeringReadings = e.values.map(\.reading)
            lastEventAt = t
            return e
        case .breach(let severity, let summary, let detail):
            for level in Severity.allCases {
                if level <= severity { accumulate(level, at: t, values: values, c.persistence) } else { pending[level] = nil }
            }
            guard !replaying,
                  let reached = Severity.allCases.reversed().first(where: { pending[$0]?.confirmed == true })
            else { return nil }
            let since = lastEventAt.map { t.milliseconds(since: $0) } ?? .max
            if var e = open {
                for v in values where !e.values.contains(v) { Self.append(v, to: &e.values) }
                e.triggeringReadings = e.values.map(\.reading)
                let upgrade = reached > e.severity
                if upgrade {
                    e.severity = reached
                    e.summary = summary
                    e.detail = detail
                }
                let intervalPassed = since >= c.realertMilliseconds
                let notify = upgrade || (silent ? intervalPassed : (e.state != .acknowledged && intervalPassed))
                guard notify else {
                    open = e
                    return nil
                }
                e.state = silent ? .open : .renotified
                e.at = t
                if detail != nil { e.detail = detail }
                silent = false
                open = e
                lastEventAt = t
                lastSentSeverity = e.severity
                return e
            }
            let values = pending[reached]?.values ?? values
            let e = Escalation(
                patient: c.patient, rule: c.rule, severity: reached, state: .open,
                triggeringReadings: values.map(\.reading), values: values, carePlanVersion: c.planVersion,
                openedAt: t, at: t, summary: summary, detail: detail)
            open = e
            let suppressed = since < c.realertMilliseconds && reached != .emergency
                && reached <= (lastSentSeverity ?? .emergency)
            silent = suppressed
            if suppressed { return nil }
            lastEventAt = t
            lastSentSeverity = reached
            return e
        }
    }

    private mutating func accumulate(_ level: Severity, at t: Timestamp, values: [TriggerValue], _ p: Persistence) {
        func fresh() -> Pending { Pending(since: t, last: t, values: values, confirmed: false) }
        var current = pending[level]
        switch p {
        case .immediate:
            var n = current ?? fresh()
            if current != nil { for v in values { Self.append(v, to: &n.values) } }
            n.last = t
            n.confirmed = true
            current = n
        case .sustained(let seconds, let gap):
            if var n = current, t >= n.last, t.milliseconds(since: n.last) <= gap * 1000 {
                for v in values { Self.append(v, to: &n.values) }
                n.last = t
                current = n
            } else {
                current = fresh()
            }
            if var n = current { n.confirmed = t.milliseconds(since: n.since) >= seconds * 1000; current = n }
        case .confirm(let within):
            if var n = current, t >= n.since, t.milliseconds(since: n.since) <= within * 1000 {
                for v in values where !n.values.contains(v) { Self.append(v, to: &n.values) }
                // A repeat is a later measurement: systolic and diastolic of one cuff reading
                // share their measured time and do not confirm each other.
                if t > n.since { n.confirmed = true }
                n.last = max(n.last, t)
                current = n
            } else if let n = current, n.confirmed, t >= n.last, t.milliseconds(since: n.last) <= within * 1000 {
                // Already confirmed and still repeating within the window: stays confirmed.
                var m = n
                for v in values { Self.append(v, to: &m.values) }
                m.last = t
                current = m
            } else {
                current = fresh()
            }
        }
        pending[level] = current
    }

    static func append(_ v: TriggerValue, to values: inout [TriggerValue]) {
        values.append(v)
        let cap = RuleEngine.maxTriggeringReadings
        if values.count > cap {
            // Keep the first readings (how it began) and the most recent ones.
            values.remove(at: cap / 4)
        }
    }
}
