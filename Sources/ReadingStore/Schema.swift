/// One named, append-only schema step.
///
/// Migrations are never edited or reordered once released: a new schema is a new migration
/// appended to `Schema.migrations`. Each is applied once, in order, in its own transaction,
/// and recorded in the `migrations` table with the time it was applied.
struct Migration: Sendable {
    let name: String
    let sql: String
}

/// Vigil's database schema and the migration runner.
enum Schema {
    /// `PRAGMA application_id` of a Vigil database ("VGIL"), so `file(1)` and the store can
    /// tell Vigil's database from any other SQLite file (SQLite file format §1.3.13).
    static let applicationID: Int32 = 0x5647_494C

    /// Every migration, in order. Append only.
    static let migrations: [Migration] = [
        Migration(name: "0001-outbox-lanes", sql: """
            -- The readings lane. The rowid (seq) is the lane's outbox sequence: AUTOINCREMENT so
            -- a sequence is never reused even after the newest row is evicted (the forwarder's
            -- cursor relies on that). Commit order is rowid order, which keeps each device's order.
            -- value is NULL when the device reported NaN (SQLite stores NaN as NULL anyway).
            -- sequence is the device's record number (UInt64, stored as its Int64 bit pattern).
            -- Times are milliseconds since 1970-01-01T00:00:00Z.
            CREATE TABLE readings (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                reading_id TEXT NOT NULL,
                patient TEXT NOT NULL,
                device TEXT NOT NULL,
                vital TEXT NOT NULL,
                value REAL,
                unit TEXT NOT NULL,
                measured_at INTEGER NOT NULL,
                received_at INTEGER NOT NULL,
                flags INTEGER NOT NULL,
                sequence INTEGER,
                delivered INTEGER NOT NULL DEFAULT 0 CHECK (delivered IN (0, 1))
            );
            -- De-duplication: re-committing a reading ID is a no-op. The ID is a hash of device,
            -- vital, measured time and sequence, so the same ID always comes with the same device
            -- and measured time; putting those first makes the unique key grow at one point per
            -- device instead of at a random place per row. A UNIQUE on reading_id alone dirtied
            -- one index page per inserted row and made FULL commits 3-4x slower (measured).
            CREATE UNIQUE INDEX readings_identity ON readings(device, measured_at, reading_id);
            -- Every row is in exactly one of these two partial indexes, so together they cost
            -- one index. The first keeps the outbox scan and the oldest-undelivered lookup
            -- cheap; the second lets eviction find the oldest delivered rows without walking
            -- a long undelivered backlog.
            CREATE INDEX readings_undelivered ON readings(seq) WHERE delivered = 0;
            CREATE INDEX readings_delivered ON readings(seq) WHERE delivered = 1;
            -- Rebuilding rule state reads a recent window by measured time.
            CREATE INDEX readings_measured_at ON readings(measured_at);

            -- The priority lane: escalation events and gateway events in one sequence, so the
            -- forwarder sees them in commit order. Append only; never evicted.
            -- payload is the value in the store's own binary encoding (PayloadCodec.swift).
            CREATE TABLE priority_outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL CHECK (kind IN ('escalation', 'event')),
                escalation_id TEXT,
                created_at INTEGER NOT NULL,
                payload BLOB NOT NULL,
                delivered INTEGER NOT NULL DEFAULT 0 CHECK (delivered IN (0, 1))
            );
            CREATE INDEX priority_undelivered ON priority_outbox(seq) WHERE delivered = 0;

            -- The current state of each escalation (upserted on every event), for
            -- openEscalations() at start-up.
            CREATE TABLE escalations (
                id TEXT PRIMARY KEY,
                patient TEXT NOT NULL,
                rule TEXT NOT NULL,
                severity INTEGER NOT NULL,
                state TEXT NOT NULL,
                opened_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                last_event_seq INTEGER NOT NULL REFERENCES priority_outbox(seq),
                payload BLOB NOT NULL
            ) WITHOUT ROWID;

            -- Last reading time per device, updated in the commit, so status is O(devices).
            CREATE TABLE device_last_seen (
                device TEXT PRIMARY KEY,
                received_at INTEGER NOT NULL,
                measured_at INTEGER NOT NULL
            ) WITHOUT ROWID;

            -- Counters maintained in the same transactions as the rows they count, so opening
            -- a store with millions of rows never runs COUNT(*).
            CREATE TABLE counters (
                name TEXT PRIMARY KEY,
                value INTEGER NOT NULL
            ) WITHOUT ROWID;
            INSERT INTO counters (name, value) VALUES
                ('readings_total', 0), ('readings_undelivered', 0), ('readings_evicted_total', 0),
                ('readings_pruned_total', 0), ('priority_total', 0), ('priority_undelivered', 0);
            """),
        Migration(name: "0002-rule-state", sql: """
            -- Hourly summaries of each patient's clean readings per vital (no clinically
            -- unreliable flag, a value, the vital's canonical unit), kept in the commit
            -- transaction. The rules rebuild their daily baselines and weight trends from
            -- these at start-up instead of scanning every reading: a year of daily weights is
            -- 365 rows, a week of 1 Hz SpO2 168. Never evicted with the readings (tiny).
            CREATE TABLE vital_hourly (
                patient TEXT NOT NULL,
                vital TEXT NOT NULL,
                hour_start INTEGER NOT NULL,
                n INTEGER NOT NULL,
                sum REAL NOT NULL,
                first_value REAL NOT NULL,
                first_at INTEGER NOT NULL,
                last_value REAL NOT NULL,
                last_at INTEGER NOT NULL,
                PRIMARY KEY (patient, hour_start, vital)
            ) WITHOUT ROWID;
            -- Back-fill from readings already stored (the mask is QualityFlags.clinicallyUnreliable,
            -- 511; the unit list is each vital's canonical unit as of this migration). A bare
            -- column next to a single min()/max() comes from the row holding that extreme.
            INSERT INTO vital_hourly
                SELECT patient, vital, (measured_at / 3600000) * 3600000 AS h, count(*), sum(value),
                       value, min(measured_at), value, min(measured_at)
                FROM readings
                WHERE value IS NOT NULL AND (flags & 511) = 0 AND measured_at >= 0
                  AND (vital, unit) IN (VALUES ('spo2', '%'), ('pulse_rate', '/min'), ('perfusion_index', '%'),
                      ('heart_rate', '/min'), ('respiratory_rate', '/min'), ('systolic_bp', 'mm[Hg]'),
                      ('diastolic_bp', 'mm[Hg]'), ('mean_bp', 'mm[Hg]'), ('body_temperature', 'Cel'),
                      ('body_weight', 'kg'), ('blood_glucose', 'mg/dL'))
                GROUP BY patient, vital, h;
            UPDATE vital_hourly SET (last_value, last_at) = (
                SELECT value, max(measured_at) FROM readings r
                WHERE r.patient = vital_hourly.patient AND r.vital = vital_hourly.vital
                  AND r.measured_at >= vital_hourly.hour_start AND r.measured_at < vital_hourly.hour_start + 3600000
                  AND r.value IS NOT NULL AND (r.flags & 511) = 0
                  AND (r.vital, r.unit) IN (VALUES ('spo2', '%'), ('pulse_rate', '/min'), ('perfusion_index', '%'),
                      ('heart_rate', '/min'), ('respiratory_rate', '/min'), ('systolic_bp', 'mm[Hg]'),
                      ('diastolic_bp', 'mm[Hg]'), ('mean_bp', 'mm[Hg]'), ('body_temperature', 'Cel'),
                      ('body_weight', 'kg'), ('blood_glucose', 'mg/dL')));
            -- The latest event of each (patient, rule), for re-alert suppression after a restart.
            CREATE INDEX escalations_rule ON escalations(patient, rule, updated_at);
            """),
        Migration(name: "0003-quarantine", sql: """
            -- Outbox items taken out of their lane for good because the broker refused their
            -- message (MQTT 5 PUBACK reason >= 0x80, e.g. 0x87 not authorized) or it broke the
            -- hub's limits. The outbox row itself is marked delivered, so it leaves the lane and
            -- the counters stay right; this table records that it was not delivered, and why.
            -- lane is OutboxLane's raw value (0 priority, 1 readings). reason has no patient data.
            CREATE TABLE quarantine (
                lane INTEGER NOT NULL CHECK (lane IN (0, 1)),
                seq INTEGER NOT NULL,
                reason TEXT NOT NULL,
                quarantined_at INTEGER NOT NULL,
                PRIMARY KEY (lane, seq)
            ) WITHOUT ROWID;
            -- Delivered readings are evicted for capacity (priority rows never are): a
            -- quarantined reading is copied here, so the evidence outlives its outbox row.
            CREATE TABLE quarantined_readings (
                seq INTEGER PRIMARY KEY,
                reading_id TEXT NOT NULL,
                patient TEXT NOT NULL,
                device TEXT NOT NULL,
                vital TEXT NOT NULL,
                value REAL,
                unit TEXT NOT NULL,
                measured_at INTEGER NOT NULL,
                received_at INTEGER NOT NULL,
                flags INTEGER NOT NULL,
                sequence INTEGER
            );
            """),
        // Downlink replay guard (DownlinkStore.swift).
        DownlinkSchema.migration,
        // Access control and the technician views (Audit.swift).
        Schema.auditMigration,
        Migration(name: "0006-devices", sql: DeviceRegistrySchema.sql),
        // The re-sent record check (StoreWriter.insert) looks a flagged reading's ID up among
        // its device's rows; readings_identity only narrows that to the device, which for a
        // 1 Hz oximeter whose clock is wrong would be a scan per insert growing all year. Only
        // rows with device_clock_unreliable (bit 11 = 2048) are indexed, so it costs nothing
        // for devices whose clocks are believed.
        Migration(name: "0007-resent-index", sql: """
            CREATE INDEX readings_unreliable_clock ON readings(device, reading_id) WHERE (flags & 2048) != 0;
            """),
    ]

    /// Brings the database up to date, refusing one this Vigil does not understand.
    ///
    /// - Returns: the names of the migrations applied now (empty when already current).
    static func migrate(_ db: SQLiteConnection, list: [Migration] = migrations,
                        now: () -> Int64) throws(StoreError) -> [String] {
        let operation = "migrate \(db.path)"
        // Refuse a database that belongs to someone else before writing anything to it.
        let appID = try db.pragma("application_id", operation: operation).flatMap { Int32($0) } ?? 0
        if appID != 0 && appID != applicationID {
            throw StoreError(code: .notADatabase,
                             message: "the SQLite file at \(db.path) belongs to another application (application_id \(appID)); point the store at Vigil's database",
                             operation: operation)
        }
        let tables = try db.withStatement(
            "SELECT count(*), sum(name = 'migrations') FROM sqlite_master WHERE type = 'table'",
            operation: operation) { (s) throws(StoreError) in
            _ = try s.step()
            return (s.int64(0), s.int64(1))
        }
        if tables.0 > 0 && tables.1 == 0 {
            throw StoreError(code: .notADatabase,
                             message: "the SQLite file at \(db.path) has tables but no Vigil migrations table; it is not Vigil's database",
                             operation: operation)
        }
        // Only a new, empty database is stamped; an existing one is not written to before
        // its migration list has been checked.
        if tables.1 == 0 {
            try db.execute("""
            CREATE TABLE IF NOT EXISTS migrations (
                ordinal INTEGER PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                applied_at INTEGER NOT NULL
            );
            PRAGMA application_id = \(applicationID);
            """, operation: operation)
        }

        let applied = try db.withStatement("SELECT name FROM migrations ORDER BY ordinal", operation: operation) {
            (s) throws(StoreError) -> [String] in
            var names: [String] = []
            while try s.step() { names.append(s.text(0)) }
            return names
        }
        let known = list.map(\.name)
        guard applied.count <= known.count, Array(known.prefix(applied.count)) == applied else {
            let unknown = applied.enumerated().first { $0.offset >= known.count || known[$0.offset] != $0.element }
            throw StoreError(code: .unknownSchema,
                             message: "the database at \(db.path) records migration '\(unknown?.element ?? "?")' (position \((unknown?.offset ?? 0) + 1)) which this Vigil does not know; it was probably made by a newer Vigil. Upgrade Vigil or restore a matching backup; the file was not changed",
                             operation: operation)
        }

        var newlyApplied: [String] = []
        for (index, migration) in list.enumerated().dropFirst(applied.count) {
            let step = "apply migration \(migration.name)"
            do throws(StoreError) {
                try db.execute("BEGIN IMMEDIATE", operation: step)
                try db.execute(migration.sql, operation: step)
                try db.withStatement("INSERT INTO migrations (ordinal, name, applied_at) VALUES (?, ?, ?)",
                                     operation: step) { (s) throws(StoreError) in
                    try s.bind(1, Int64(index + 1))
                    try s.bind(2, migration.name)
                    try s.bind(3, now())
                    try s.run()
                }
                try db.execute("COMMIT", operation: step)
            } catch {
                try? db.execute("ROLLBACK", operation: step)
                var failure = error
                if failure.code == .sqlite { failure.code = .migrationFailed }
                failure.message = "migration \(migration.name) failed and was rolled back: \(failure.message)"
                throw failure
            }
            newlyApplied.append(migration.name)
        }
        return newlyApplied
    }
}
