public import VitalSigns

/// What the `quarantine` table holds (migration 0003-quarantine).
public struct QuarantineStats: Sendable, Hashable {
    /// Items quarantined since the database was created.
    public var total: Int64
    /// Of those, readings.
    public var readings: Int64
    /// The most recent quarantine: when and why.
    public var lastAt: Timestamp?
    public var lastReason: String?
}

extension ReadingStore {
    /// Takes items out of the outbox for good because the broker refused them (MQTT 5 PUBACK
    /// reason ≥ 0x80) or they break the hub's limits (`OutboxSource.quarantine`).
    ///
    /// 1. One transaction records each key in `quarantine` (and copies a reading into
    ///    `quarantined_readings`, so capacity eviction cannot erase the evidence).
    /// 2. Unless every key is itself a `publish_refused` event (a denied events topic must
    ///    not feed itself), one `publish_refused` event goes on the priority lane: the count,
    ///    the lane, the sequence range and the reason; no payload bytes, no patient data.
    /// 3. The keys are marked delivered, so they leave the lane and the counters stay right.
    ///
    /// Idempotent: a crash between the steps only repeats them (another event at worst).
    public func quarantine(_ keys: [OutboxKey], reason: String) async throws(StoreError) {
        guard !keys.isEmpty else { return }
        let at = clock().millisecondsSinceEpoch
        let onlyRefusalEvents = try await withWriteConnection { (db) throws(StoreError) -> Bool in
            let op = "quarantine outbox items"
            try db.execute("BEGIN IMMEDIATE", operation: op)
            do throws(StoreError) {
                var onlyRefusals = true
                for key in keys {
                    try db.withStatement(
                        "INSERT OR IGNORE INTO quarantine (lane, seq, reason, quarantined_at) VALUES (?, ?, ?, ?)",
                        operation: op) { (s) throws(StoreError) in
                        try s.bind(1, Int64(key.lane.rawValue))
                        try s.bind(2, key.sequence)
                        try s.bind(3, reason)
                        try s.bind(4, at)
                        try s.run()
                    }
                    switch key.lane {
                    case .readings:
                        onlyRefusals = false
                        try db.withStatement("""
                            INSERT OR IGNORE INTO quarantined_readings
                            SELECT seq, reading_id, patient, device, vital, value, unit, measured_at, received_at, flags, sequence
                            FROM readings WHERE seq = ?
                            """, operation: op) { (s) throws(StoreError) in
                            try s.bind(1, key.sequence)
                            try s.run()
                        }
                    case .priority:
                        let isRefusal = try db.withStatement(
                            "SELECT kind, payload FROM priority_outbox WHERE seq = ?", operation: op) { (s) throws(StoreError) -> Bool in
                            try s.bind(1, key.sequence)
                            guard try s.step(), s.text(0) == "event" else { return false }
                            let event = try? PayloadCodec.decodeEvent(s.blob(1), row: "priority_outbox seq \(key.sequence)")
                            return event?.kind == GatewayEvent.publishRefused
                        }
                        if !isRefusal { onlyRefusals = false }
                    }
                }
                try db.execute("COMMIT", operation: op)
                return onlyRefusals
            } catch {
                try? db.execute("ROLLBACK", operation: op)
                throw error
            }
        }
        if !onlyRefusalEvents {
            let sorted = keys.sorted()
            var detail = ["reason": reason, "lane": "\(sorted[0].lane)",
                          "first_sequence": "\(sorted[0].sequence)", "last_sequence": "\(sorted[sorted.count - 1].sequence)"]
            if sorted[0].lane != sorted[sorted.count - 1].lane { detail["lane"] = "both" }
            try await commit(events: [GatewayEvent(kind: GatewayEvent.publishRefused, at: Timestamp(millisecondsSinceEpoch: at),
                                                   count: Int64(keys.count), detail: detail)])
        }
        try await markDelivered(keys)
    }

    /// Totals of the `quarantine` table (small: it grows only with refusals).
    public func quarantineStats() throws(StoreError) -> QuarantineStats {
        try readQuery { (db) throws(StoreError) in
            try db.withStatement("""
                SELECT count(*), coalesce(sum(lane = 1), 0),
                       (SELECT quarantined_at FROM quarantine ORDER BY quarantined_at DESC LIMIT 1),
                       (SELECT reason FROM quarantine ORDER BY quarantined_at DESC LIMIT 1)
                FROM quarantine
                """, operation: "quarantine stats") { (s) throws(StoreError) in
                _ = try s.step()
                let total = s.int64(0)
                return QuarantineStats(total: total, readings: s.int64(1),
                                       lastAt: total > 0 ? Timestamp(millisecondsSinceEpoch: s.int64(2)) : nil,
                                       lastReason: total > 0 ? s.text(3) : nil)
            }
        }
    }

    /// The quarantined keys of `lane`, in sequence order (tests, diagnostics).
    public func quarantinedKeys(lane: OutboxLane) throws(StoreError) -> [OutboxKey] {
        try readQuery { (db) throws(StoreError) in
            try db.withStatement("SELECT seq FROM quarantine WHERE lane = ? ORDER BY seq", operation: "quarantined keys") {
                (s) throws(StoreError) in
                try s.bind(1, Int64(lane.rawValue))
                var out: [OutboxKey] = []
                while try s.step() { out.append(OutboxKey(lane: lane, sequence: s.int64(0))) }
                return out
            }
        }
    }
}
