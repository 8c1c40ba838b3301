public import VitalSigns

/// Which readings a technician view asks for (`vigilctl readings`).
public struct ReadingFilter: Sendable, Hashable {
    public var device: DeviceID?
    public var patient: PatientID?
    /// A vital's key (`spo2`, `body_weight`, …).
    public var vital: String?
    /// Only readings measured at or after this time.
    public var since: Timestamp?

    public init(device: DeviceID? = nil, patient: PatientID? = nil, vital: String? = nil, since: Timestamp? = nil) {
        self.device = device
        self.patient = patient
        self.vital = vital
        self.since = since
    }
}

/// One reading as the views show it, with its outbox state.
public struct StoredReading: Sendable, Hashable {
    public var reading: Reading
    /// Whether the broker has acknowledged it.
    public var delivered: Bool
}

extension ReadingStore {
    /// The newest `limit` readings matching `filter`, oldest first.
    ///
    /// Every form is bounded by `limit` and walks an index backwards from its newest end, so
    /// it costs O(limit) however long the history is: unfiltered by rowid; by device through
    /// `readings_identity (device, measured_at, …)`; by vital through `readings_vital
    /// (vital, measured_at)`; otherwise (patient alone, a gateway normally serves one) through
    /// `readings_measured_at`.
    public func latestReadings(_ filter: ReadingFilter, limit: Int) throws(StoreError) -> [StoredReading] {
        guard limit > 0 else { return [] }
        let (sql, binds) = Self.latestReadingsQuery(filter)
        let newestFirst = try readQuery { (db) throws(StoreError) -> [StoredReading] in
            try db.withStatement(sql, operation: "latest readings") { (s) throws(StoreError) in
                var i: Int32 = 1
                for b in binds { try s.bind(i, b); i += 1 }
                if let since = filter.since { try s.bind(i, since.millisecondsSinceEpoch); i += 1 }
                try s.bind(i, Int64(limit))
                var out: [StoredReading] = []
                while try s.step() {
                    let key = s.text(4)
                    // A vital this build does not know is skipped, not fatal: the view shows the rest.
                    guard let vital = Vital.named(key) else { continue }
                    let reading = Reading(
                        id: ReadingID(rawValue: s.text(1)), patient: PatientID(s.text(2)), device: DeviceID(s.text(3)),
                        vital: vital, quantity: Quantity(s.isNull(5) ? .nan : s.double(5), s.text(6)),
                        measuredAt: Timestamp(millisecondsSinceEpoch: s.int64(7)),
                        receivedAt: Timestamp(millisecondsSinceEpoch: s.int64(8)),
                        flags: QualityFlags(rawValue: UInt32(truncatingIfNeeded: s.int64(9))),
                        sequence: s.isNull(10) ? nil : UInt64(bitPattern: s.int64(10)))
                    out.append(StoredReading(reading: reading, delivered: s.int64(11) == 1))
                }
                return out
            }
        }
        return newestFirst.reversed()
    }

    /// The SQL and text bindings of `latestReadings` (then the `since` time, then the limit).
    static func latestReadingsQuery(_ filter: ReadingFilter) -> (sql: String, binds: [String]) {
        var clauses: [String] = []
        var binds: [String] = []
        if let d = filter.device { clauses.append("device = ?"); binds.append(d.rawValue) }
        if let p = filter.patient { clauses.append("patient = ?"); binds.append(p.rawValue) }
        if let v = filter.vital { clauses.append("vital = ?"); binds.append(v) }
        if filter.since != nil { clauses.append("measured_at >= ?") }
        // Unfiltered: commit order (the rowid) is the cheapest "newest". Filtered: measured time,
        // so the index chosen above is walked in order and no sort is needed.
        let order = clauses.isEmpty ? "seq DESC" : "measured_at DESC, seq DESC"
        let index = filter.device != nil ? "INDEXED BY readings_identity"
            : filter.vital != nil ? "INDEXED BY readings_vital" : ""
        let sql = """
            SELECT seq, reading_id, patient, device, vital, value, unit, measured_at, received_at, flags, sequence, delivered
            FROM readings \(index) \(clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND "))
            ORDER BY \(order) LIMIT ?
            """
        return (sql, binds)
    }

    /// Escalations by current state: the open ones (not `resolved`), or with `includeResolved`
    /// the `limit` most recently updated of any state; newest update first. The escalations
    /// table holds one row per episode (hundreds a year), so this is small whatever the history.
    public func escalations(includeResolved: Bool, limit: Int) throws(StoreError) -> [Escalation] {
        guard limit > 0 else { return [] }
        return try readQuery { (db) throws(StoreError) in
            try db.withStatement("""
                SELECT payload FROM escalations \(includeResolved ? "" : "WHERE state <> 'resolved'")
                ORDER BY updated_at DESC, id LIMIT ?
                """, operation: "escalations view") { (s) throws(StoreError) in
                try s.bind(1, Int64(limit))
                var out: [Escalation] = []
                while try s.step() {
                    if let e = try? PayloadCodec.decodeEscalation(s.blob(0), row: "escalations row") { out.append(e) }
                }
                return out
            }
        }
    }
}
