public import VitalSigns

/// Schema of the runtime device registry (migration `0006-devices`, issue 7).
///
/// Devices paired with `vigilctl pair` live here rather than in `vigild.yaml`, so field staff
/// pair and assign without editing YAML and vigild picks them up without a restart.
enum DeviceRegistrySchema {
    static let sql = """
        -- One row per pairing. A device unpaired and paired again gets a new row, so the history
        -- of what was paired when survives. The endpoint columns hold exactly what a config
        -- entry would (port: …, or address: … with an optional transport: seqpacket:/path).
        -- Times are milliseconds since 1970-01-01T00:00:00Z.
        CREATE TABLE devices (
            row INTEGER PRIMARY KEY AUTOINCREMENT,
            device TEXT NOT NULL,
            profile TEXT NOT NULL,
            port TEXT,
            address TEXT,
            transport TEXT,
            clock_utc_offset_seconds INTEGER NOT NULL,
            download_interval_seconds INTEGER NOT NULL,
            paired_at INTEGER NOT NULL,
            unpaired_at INTEGER,
            CHECK ((port IS NULL) <> (address IS NULL)),
            CHECK (transport IS NULL OR address IS NOT NULL)
        );
        -- At most one current pairing per device id.
        CREATE UNIQUE INDEX devices_paired ON devices(device) WHERE unpaired_at IS NULL;

        -- Which patient a device's readings belong to, and when. Readings carry the patient
        -- they were taken for; this history says why, and is what an auditor asks for.
        CREATE TABLE device_assignments (
            row INTEGER PRIMARY KEY AUTOINCREMENT,
            device TEXT NOT NULL,
            patient TEXT NOT NULL,
            assigned_from INTEGER NOT NULL,
            assigned_to INTEGER,
            CHECK (assigned_to IS NULL OR assigned_to >= assigned_from)
        );
        CREATE UNIQUE INDEX device_assignments_current ON device_assignments(device) WHERE assigned_to IS NULL;
        CREATE INDEX device_assignments_device ON device_assignments(device, assigned_from);
        """
}

/// A device paired at runtime (table `devices`), with its current assignment.
public struct RegisteredDevice: Sendable, Hashable {
    public var id: DeviceID
    /// The device profile's id (a file in `paths.device_profiles`).
    public var profile: String
    /// Serial: the `port:` value (a path, `usb` or `usb:VVVV:PPPP[:SERIAL]`); nil for BLE.
    public var port: String?
    /// Bluetooth LE: the address, `AA:BB:CC:DD:EE:FF`; nil for serial.
    public var address: String?
    /// Bluetooth LE: `seqpacket:/path` for the simulated seam, nil for the radio.
    public var transport: String?
    /// The zone the device's own clock is set in, seconds east of UTC.
    public var clockUTCOffsetSeconds: Int
    /// For a downloaded meter: seconds between downloads.
    public var downloadIntervalSeconds: Int64
    public var pairedAt: Timestamp
    public var unpairedAt: Timestamp?
    /// The patient the device is assigned to now; nil when paired but not yet assigned.
    public var patient: PatientID?
    /// Since when `patient` holds.
    public var assignedAt: Timestamp?

    public init(id: DeviceID, profile: String, port: String? = nil, address: String? = nil, transport: String? = nil,
                clockUTCOffsetSeconds: Int = 0, downloadIntervalSeconds: Int64 = 300, pairedAt: Timestamp,
                unpairedAt: Timestamp? = nil, patient: PatientID? = nil, assignedAt: Timestamp? = nil) {
        self.id = id
        self.profile = profile
        self.port = port
        self.address = address
        self.transport = transport
        self.clockUTCOffsetSeconds = clockUTCOffsetSeconds
        self.downloadIntervalSeconds = downloadIntervalSeconds
        self.pairedAt = pairedAt
        self.unpairedAt = unpairedAt
        self.patient = patient
        self.assignedAt = assignedAt
    }

    /// Whether `other` describes the same device setup (profile, endpoint, clock, interval),
    /// whatever the times and the patient.
    public func sameSetup(as other: RegisteredDevice) -> Bool {
        id == other.id && profile == other.profile && port == other.port && address == other.address
            && transport == other.transport && clockUTCOffsetSeconds == other.clockUTCOffsetSeconds
            && downloadIntervalSeconds == other.downloadIntervalSeconds
    }
}

/// One span of a device's assignment history (table `device_assignments`).
public struct DeviceAssignment: Sendable, Hashable {
    public var device: DeviceID
    public var patient: PatientID
    public var from: Timestamp
    /// nil while the assignment holds.
    public var to: Timestamp?
}

/// What a registry change did.
public enum RegistryOutcome: Sendable, Hashable {
    /// Nothing changed (the request matched what was stored): no event is due.
    case unchanged
    /// The device was added (pair) or removed (unpair).
    case changed
    /// Another device setup is stored under this id (pair); unpair it first.
    case conflict(RegisteredDevice)
    /// No device with this id is paired (unpair, assign).
    case notPaired
}

extension ReadingStore {
    private static let deviceColumns = """
        d.device, d.profile, d.port, d.address, d.transport, d.clock_utc_offset_seconds, d.download_interval_seconds,
        d.paired_at, d.unpaired_at, a.patient, a.assigned_from
        """
    private static let deviceJoin = """
        FROM devices d LEFT JOIN device_assignments a ON a.device = d.device AND a.assigned_to IS NULL
        """

    private static func device(from s: Statement) -> RegisteredDevice {
        RegisteredDevice(
            id: DeviceID(s.text(0)), profile: s.text(1), port: s.isNull(2) ? nil : s.text(2),
            address: s.isNull(3) ? nil : s.text(3), transport: s.isNull(4) ? nil : s.text(4),
            clockUTCOffsetSeconds: Int(s.int64(5)), downloadIntervalSeconds: s.int64(6),
            pairedAt: Timestamp(millisecondsSinceEpoch: s.int64(7)),
            unpairedAt: s.isNull(8) ? nil : Timestamp(millisecondsSinceEpoch: s.int64(8)),
            patient: s.isNull(9) ? nil : PatientID(s.text(9)),
            assignedAt: s.isNull(10) ? nil : Timestamp(millisecondsSinceEpoch: s.int64(10)))
    }

    /// The devices paired now (not unpaired), in pairing order, each with its current patient.
    public func pairedDevices() throws(StoreError) -> [RegisteredDevice] {
        try readQuery { (db) throws(StoreError) in
            try db.withStatement(
                "SELECT \(Self.deviceColumns) \(Self.deviceJoin) WHERE d.unpaired_at IS NULL ORDER BY d.row",
                operation: "paired devices") { (s) throws(StoreError) in
                var out: [RegisteredDevice] = []
                while try s.step() { out.append(Self.device(from: s)) }
                return out
            }
        }
    }

    /// The device paired now under `id`, or nil.
    public func pairedDevice(_ id: DeviceID) throws(StoreError) -> RegisteredDevice? {
        try pairedDevices().first { $0.id == id }
    }

    /// A device's assignment history, oldest first (including spans from earlier pairings).
    public func assignments(device: DeviceID) throws(StoreError) -> [DeviceAssignment] {
        try readQuery { (db) throws(StoreError) in
            try db.withStatement(
                "SELECT patient, assigned_from, assigned_to FROM device_assignments WHERE device = ?1 ORDER BY assigned_from, row",
                operation: "device assignments") { (s) throws(StoreError) in
                try s.bind(1, device.rawValue)
                var out: [DeviceAssignment] = []
                while try s.step() {
                    out.append(DeviceAssignment(
                        device: device, patient: PatientID(s.text(0)),
                        from: Timestamp(millisecondsSinceEpoch: s.int64(1)),
                        to: s.isNull(2) ? nil : Timestamp(millisecondsSinceEpoch: s.int64(2))))
                }
                return out
            }
        }
    }

    /// Pairs `device` (its `pairedAt` is the pairing time) and, when `device.patient` is set,
    /// assigns it, in one durable transaction on the writer thread.
    ///
    /// - Returns: `.changed` when added; `.unchanged` when the same setup is already paired
    ///   (then only a different `patient` is applied, as by ``assignDevice(_:to:at:)``, and
    ///   `reassigned` says so); `.conflict` with the stored device when the id is paired with
    ///   another setup (nothing is written).
    public func pairDevice(_ device: RegisteredDevice) async throws(StoreError) -> (outcome: RegistryOutcome, reassigned: Bool) {
        try await withWriteConnection { (db) throws(StoreError) in
            try Self.transaction(db, "pair device") { (db) throws(StoreError) in
                if let existing = try Self.current(db, device.id) {
                    guard existing.sameSetup(as: device) else { return (.conflict(existing), false) }
                    guard let patient = device.patient, existing.patient != patient else { return (.unchanged, false) }
                    try Self.reassign(db, device.id, to: patient, at: device.pairedAt)
                    return (.unchanged, true)
                }
                try db.withStatement("""
                    INSERT INTO devices (device, profile, port, address, transport, clock_utc_offset_seconds,
                                         download_interval_seconds, paired_at)
                    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                    """, operation: "pair device") { (s) throws(StoreError) in
                    try s.bind(1, device.id.rawValue)
                    try s.bind(2, device.profile)
                    if let v = device.port { try s.bind(3, v) } else { try s.bindNull(3) }
                    if let v = device.address { try s.bind(4, v) } else { try s.bindNull(4) }
                    if let v = device.transport { try s.bind(5, v) } else { try s.bindNull(5) }
                    try s.bind(6, Int64(device.clockUTCOffsetSeconds))
                    try s.bind(7, device.downloadIntervalSeconds)
                    try s.bind(8, device.pairedAt.millisecondsSinceEpoch)
                    try s.run()
                }
                if let patient = device.patient { try Self.reassign(db, device.id, to: patient, at: device.pairedAt) }
                return (.changed, device.patient != nil)
            }
        }
    }

    /// Unpairs `id` at `at`: the pairing and its current assignment end. Its readings stay.
    public func unpairDevice(_ id: DeviceID, at: Timestamp) async throws(StoreError) -> RegistryOutcome {
        try await withWriteConnection { (db) throws(StoreError) in
            try Self.transaction(db, "unpair device") { (db) throws(StoreError) in
                guard try Self.current(db, id) != nil else { return .notPaired }
                try Self.endAssignment(db, id, at: at)
                try db.withStatement("UPDATE devices SET unpaired_at = max(paired_at, ?2) WHERE device = ?1 AND unpaired_at IS NULL",
                                     operation: "unpair device") { (s) throws(StoreError) in
                    try s.bind(1, id.rawValue)
                    try s.bind(2, at.millisecondsSinceEpoch)
                    try s.run()
                }
                return .changed
            }
        }
    }

    /// Assigns the paired device `id` to `patient` from `at`, ending its previous assignment.
    /// Returns `.unchanged` when it is already assigned to `patient`, `.notPaired` for an id
    /// that is not paired.
    public func assignDevice(_ id: DeviceID, to patient: PatientID, at: Timestamp) async throws(StoreError) -> RegistryOutcome {
        try await withWriteConnection { (db) throws(StoreError) in
            try Self.transaction(db, "assign device") { (db) throws(StoreError) in
                guard let existing = try Self.current(db, id) else { return .notPaired }
                guard existing.patient != patient else { return .unchanged }
                try Self.reassign(db, id, to: patient, at: at)
                return .changed
            }
        }
    }

    // MARK: Helpers (writer thread)

    private static func current(_ db: SQLiteConnection, _ id: DeviceID) throws(StoreError) -> RegisteredDevice? {
        try db.withStatement(
            "SELECT \(deviceColumns) \(deviceJoin) WHERE d.device = ?1 AND d.unpaired_at IS NULL",
            operation: "paired device") { (s) throws(StoreError) in
            try s.bind(1, id.rawValue)
            return try s.step() ? device(from: s) : nil
        }
    }

    private static func endAssignment(_ db: SQLiteConnection, _ id: DeviceID, at: Timestamp) throws(StoreError) {
        try db.withStatement(
            "UPDATE device_assignments SET assigned_to = max(assigned_from, ?2) WHERE device = ?1 AND assigned_to IS NULL",
            operation: "end assignment") { (s) throws(StoreError) in
            try s.bind(1, id.rawValue)
            try s.bind(2, at.millisecondsSinceEpoch)
            try s.run()
        }
    }

    private static func reassign(_ db: SQLiteConnection, _ id: DeviceID, to patient: PatientID, at: Timestamp) throws(StoreError) {
        try endAssignment(db, id, at: at)
        try db.withStatement(
            "INSERT INTO device_assignments (device, patient, assigned_from) VALUES (?1, ?2, ?3)",
            operation: "assign device") { (s) throws(StoreError) in
            try s.bind(1, id.rawValue)
            try s.bind(2, patient.rawValue)
            try s.bind(3, at.millisecondsSinceEpoch)
            try s.run()
        }
    }

    /// `BEGIN IMMEDIATE` … `COMMIT` (fsynced: `synchronous=FULL`), rolled back on any error.
    private static func transaction<R>(_ db: SQLiteConnection, _ operation: String,
                                       _ body: (SQLiteConnection) throws(StoreError) -> R) throws(StoreError) -> R {
        try db.execute("BEGIN IMMEDIATE", operation: operation)
        do throws(StoreError) {
            let result = try body(db)
            try db.execute("COMMIT", operation: operation)
            return result
        } catch {
            try? db.execute("ROLLBACK", operation: operation)
            throw error
        }
    }
}
