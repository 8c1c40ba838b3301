public import VitalSigns

/// One hour of one vital's clean readings for one patient (table `vital_hourly`).
public struct VitalHourSummary: Sendable, Hashable {
    public var patient: PatientID
    public var vital: String
    /// Start of the UTC hour.
    public var hourStart: Timestamp
    public var count: Int
    public var sum: Double
    public var firstValue: Double
    public var firstAt: Timestamp
    public var lastValue: Double
    public var lastAt: Timestamp
}

extension ReadingStore {
    /// Hourly summaries with `from <= hour_start < to`, optionally for one patient, ordered by
    /// hour. Bounded by time: start-up asks for the days its models need, never all history.
    public func vitalHourSummaries(patient: PatientID? = nil, from: Timestamp, to: Timestamp) throws(StoreError) -> [VitalHourSummary] {
        try readQuery { (db) throws(StoreError) in
            let sql = patient == nil
                ? "SELECT patient, vital, hour_start, n, sum, first_value, first_at, last_value, last_at FROM vital_hourly WHERE hour_start >= ?1 AND hour_start < ?2 ORDER BY hour_start, patient, vital"
                : "SELECT patient, vital, hour_start, n, sum, first_value, first_at, last_value, last_at FROM vital_hourly WHERE patient = ?3 AND hour_start >= ?1 AND hour_start < ?2 ORDER BY hour_start, vital"
            return try db.withStatement(sql, operation: "vital hour summaries") { (s) throws(StoreError) in
                try s.bind(1, from.millisecondsSinceEpoch)
                try s.bind(2, to.millisecondsSinceEpoch)
                if let patient { try s.bind(3, patient.rawValue) }
                var out: [VitalHourSummary] = []
                while try s.step() {
                    out.append(VitalHourSummary(
                        patient: PatientID(s.text(0)), vital: s.text(1), hourStart: Timestamp(millisecondsSinceEpoch: s.int64(2)),
                        count: Int(s.int64(3)), sum: s.double(4), firstValue: s.double(5),
                        firstAt: Timestamp(millisecondsSinceEpoch: s.int64(6)), lastValue: s.double(7),
                        lastAt: Timestamp(millisecondsSinceEpoch: s.int64(8))))
                }
                return out
            }
        }
    }

    /// The current state of the most recently updated escalation of each (patient, rule),
    /// resolved or not: what the rules restore at start-up (open episodes, and the re-alert
    /// clock of resolved ones). One row per rule, found through the `escalations_rule` index.
    public func latestEscalationPerRule() throws(StoreError) -> [Escalation] {
        try readQuery { (db) throws(StoreError) in
            try db.withStatement("""
                SELECT e.payload FROM escalations e
                JOIN (SELECT patient, rule, max(updated_at) AS u FROM escalations GROUP BY patient, rule) last
                  ON e.patient = last.patient AND e.rule = last.rule AND e.updated_at = last.u
                UNION
                SELECT payload FROM escalations WHERE state <> 'resolved'
                """, operation: "latest escalation per rule") { (s) throws(StoreError) in
                var out: [Escalation] = []
                while try s.step() {
                    if let e = try? PayloadCodec.decodeEscalation(s.blob(0), row: "escalations row") { out.append(e) }
                }
                return out.sorted { ($0.at, $0.id) < ($1.at, $1.id) }
            }
        }
    }
}
