import CVigilPosix
import Glibc
import ReadingStore
import SerialLink
import ServiceLifecycle
import Synchronization
import Uplink
import VitalSigns

// The technicians' views behind `vigilctl devices|readings|escalations|outbox|audit`
// (issue 7 part 1). Each is one control command; every query is bounded (LIMIT) and walks an
// index (ViewQueries.swift), so a view answers in milliseconds over a year of history.

extension StatusReporter {
    /// Most rows one view returns, whatever the request asks.
    static let maxRows = 1000

    /// `devices`, `readings`, `escalations`, `outbox` and `audit`.
    var viewCommands: [ControlCommand] {
        let reporter = self
        return [
            ControlCommand("devices", access: .member) { _, _ in
                .object([("ok", true), ("devices", .array(await reporter.deviceDocuments(now: realtimeNow())))])
            },
            ControlCommand("readings", access: .member, showsPatientData: true) { request, _ in reporter.readingsView(request) },
            ControlCommand("escalations", access: .member, showsPatientData: true) { request, _ in reporter.escalationsView(request) },
            ControlCommand("outbox", access: .member) { _, _ in reporter.outboxView() },
            // The audit log names patients and staff: admins only, and itself audited.
            ControlCommand("audit", access: .admin, showsPatientData: true) { request, _ in reporter.auditView(request) },
        ]
    }

    static func limit(_ request: JSONValue, default value: Int) -> Int {
        guard let n = request["limit"]?.int64Value else { return value }
        return Int(max(1, min(Int64(maxRows), n)))
    }

    static func time(_ request: JSONValue, _ key: String) -> Result<Timestamp?, ViewError> {
        guard let v = request[key], v != .null else { return .success(nil) }
        guard let s = v.stringValue, let t = Timestamp(iso8601: s) else {
            return .failure(ViewError("'\(key)' must be an RFC 3339 time, for example 2026-11-25T08:00:00Z"))
        }
        return .success(t)
    }

    struct ViewError: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }

    // MARK: readings

    func readingsView(_ request: JSONValue) -> JSONValue {
        let since: Timestamp?
        switch Self.time(request, "since") {
        case .success(let t): since = t
        case .failure(let e): return ControlCommand.failure(e.message)
        }
        if let v = request["vital"]?.stringValue, Vital.named(v) == nil {
            return ControlCommand.failure("unknown vital '\(v.prefix(40))'; known: \(Vital.all.map(\.key).joined(separator: ", "))")
        }
        let filter = ReadingFilter(
            device: request["device"]?.stringValue.map { DeviceID($0) },
            patient: request["patient"]?.stringValue.map { PatientID($0) },
            vital: request["vital"]?.stringValue, since: since)
        let limit = Self.limit(request, default: 20)
        let points = Int(max(2, min(120, request["trend_points"]?.int64Value ?? 32)))
        do {
            let rows = try store.latestReadings(filter, limit: limit)
            // One trend per (patient, vital) shown, newest pairs first, at most eight.
            var pairs: [(PatientID, Vital)] = []
            for r in rows.reversed() where !pairs.contains(where: { $0.0 == r.reading.patient && $0.1 == r.reading.vital }) {
                if pairs.count == 8 { break }
                pairs.append((r.reading.patient, r.reading.vital))
            }
            var trends: [JSONValue] = []
            for (patient, vital) in pairs.sorted(by: { ($0.0, $0.1.key) < ($1.0, $1.1.key) }) {
                var f = filter
                f.patient = patient
                f.vital = vital.key
                let series = try store.latestReadings(f, limit: points).filter { !$0.reading.quantity.value.isNaN }
                guard let first = series.first, let last = series.last else { continue }
                trends.append(.object([
                    ("patient", .string(patient.rawValue)), ("vital", .string(vital.key)),
                    ("unit", .string(last.reading.quantity.unit)),
                    ("from", .string(first.reading.measuredAt.iso8601)), ("to", .string(last.reading.measuredAt.iso8601)),
                    ("values", .array(series.map { .double($0.reading.quantity.value) })),
                ]))
            }
            return .object([
                ("ok", true),
                ("readings", .array(rows.map(Self.readingDocument))),
                ("trends", .array(trends)),
            ])
        } catch {
            return ControlCommand.failure("cannot read the readings: \(error.message)")
        }
    }

    static func readingDocument(_ r: StoredReading) -> JSONValue {
        let q = r.reading.quantity
        return .object([
            ("measured_at", .string(r.reading.measuredAt.iso8601)),
            ("received_at", .string(r.reading.receivedAt.iso8601)),
            ("patient", .string(r.reading.patient.rawValue)),
            ("device", .string(r.reading.device.rawValue)),
            ("vital", .string(r.reading.vital.key)),
            ("value", q.value.isNaN ? .null : .double(q.value)),
            ("unit", .string(q.unit)),
            ("flags", .array(r.reading.flags.nameList.map { .string($0) })),
            ("delivered", .bool(r.delivered)),
        ])
    }

    // MARK: escalations

    func escalationsView(_ request: JSONValue) -> JSONValue {
        let all = request["all"]?.boolValue == true
        do {
            let list = try store.escalations(includeResolved: all, limit: Self.limit(request, default: all ? 50 : Self.maxRows))
            let docs = list.map { e -> JSONValue in
                .object([
                    ("id", .string(e.id)),
                    ("patient", .string(e.patient.rawValue)),
                    ("rule", .string(e.rule)),
                    ("severity", .string(e.severity.name)),
                    ("state", .string(e.state.rawValue)),
                    ("opened_at", .string(e.openedAt.iso8601)),
                    ("updated_at", .string(e.at.iso8601)),
                    ("summary", .string(e.summary)),
                    ("acknowledged_by", e.acknowledgedBy.map { .string($0) } ?? .null),
                    ("values", .array(e.values.map { v in
                        .object([("vital", .string(v.vital)), ("value", .double(v.value)), ("unit", .string(v.unit)),
                                 ("measured_at", .string(v.measuredAt.iso8601))])
                    })),
                ])
            }
            return .object([("ok", true), ("all", .bool(all)), ("escalations", .array(docs))])
        } catch {
            return ControlCommand.failure("cannot read the escalations: \(error.message)")
        }
    }

    // MARK: outbox

    func outboxView() -> JSONValue {
        let now = realtimeNow()
        let fwd = forwarder.stats
        drainMeter.sample(at: now, acknowledged: fwd.acknowledged)
        do {
            let s = try store.stats()
            func lane(_ depth: Int64, _ oldest: Timestamp?) -> JSONValue {
                .object([
                    ("depth", .int(depth)),
                    ("oldest_at", oldest.map { .string($0.iso8601) } ?? .null),
                    ("oldest_age_seconds", oldest.map { .double(Double(now.milliseconds(since: $0)) / 1000) } ?? .null),
                ])
            }
            let rate = drainMeter.ratePerSecond()
            let depth = s.undeliveredReadings + s.undeliveredPriority
            return .object([
                ("ok", true),
                ("at", .string(now.iso8601)),
                ("connected", .bool(connection.snapshot.connected)),
                ("escalations", lane(s.undeliveredPriority, s.oldestUndeliveredPriorityCreatedAt)),
                ("readings", lane(s.undeliveredReadings, s.oldestUndeliveredReadingReceivedAt)),
                ("in_flight", .int(Int64(fwd.inFlight))),
                ("acknowledged", .int(Int64(fwd.acknowledged))),
                ("drain_rate_per_second", rate.map { .double(($0 * 10).rounded() / 10) } ?? .null),
                ("drain_eta_seconds", rate.flatMap { $0 > 0 && depth > 0 ? .int(Int64((Double(depth) / $0).rounded(.up))) : nil } ?? .null),
                ("evicted_total", .int(s.evictedTotal)),
            ])
        } catch {
            return ControlCommand.failure("cannot read the outbox: \(error.message)")
        }
    }

    // MARK: audit

    func auditView(_ request: JSONValue) -> JSONValue {
        let since: Timestamp?
        switch Self.time(request, "since") {
        case .success(let t): since = t
        case .failure(let e): return ControlCommand.failure(e.message)
        }
        do {
            let records = try store.auditRecords(since: since, limit: Self.limit(request, default: 100))
            return .object([("ok", true), ("records", .array(records.map { r in
                .object([
                    ("seq", .int(r.sequence)), ("at", .string(r.at.iso8601)),
                    ("uid", .int(Int64(r.uid))), ("user", .string(r.user)), ("pid", .int(Int64(r.pid))),
                    ("role", .string(r.role)), ("command", .string(r.command)),
                    ("arguments", .array(r.arguments.map { .string($0) })),
                    ("patients", .array(r.patients.map { .string($0.rawValue) })),
                    ("succeeded", .bool(r.succeeded)),
                ])
            }))])
        } catch {
            return ControlCommand.failure("cannot read the audit log: \(error.message)")
        }
    }

    // MARK: devices, disk, clock (also used by status)

    func deviceDocuments(now: Timestamp) async -> [JSONValue] {
        func age(_ t: Timestamp?) -> JSONValue { t.map { .double(Double(now.milliseconds(since: $0)) / 1000) } ?? .null }
        func time(_ t: Timestamp?) -> JSONValue { t.map { .string($0.iso8601) } ?? .null }
        return await board.snapshot().map { d -> JSONValue in
            .object([
                ("id", .string(d.id.rawValue)),
                ("profile", .string(d.profile)),
                ("transport", .string(d.transport)),
                ("port", .string(d.port)),
                ("state", .string(d.state)),
                ("reason", d.reason.map { .string($0) } ?? .null),
                ("last_reading_at", time(d.lastReadingAt)),
                ("last_reading_age_seconds", age(d.lastReadingAt)),
                ("readings", .int(d.readings)),
                ("rejected_frames", .int(d.rejectedFrames)),
                ("implausible_values", .int(d.implausibleValues)),
                ("bytes_read", .int(d.bytesRead)),
                ("last_error", d.lastError.map { .string($0) } ?? .null),
                ("battery_percent", d.ble?.batteryPercent.map { .int(Int64($0)) } ?? .null),
                ("clock_offset_seconds", d.ble?.clockOffsetSeconds.map { .double($0) } ?? .null),
                // Not tracked by the device board yet: shown as unknown rather than guessed.
                ("firmware", .null),
                ("rssi_dbm", .null),
                ("ble", d.ble.map { b -> JSONValue in
                    .object([
                        ("link", .string(b.link)),
                        ("connected", .bool(b.connected)),
                        ("bonded", b.bonded.map { .bool($0) } ?? .null),
                        ("mtu", b.mtu.map { .int(Int64($0)) } ?? .null),
                        ("battery_percent", b.batteryPercent.map { .int(Int64($0)) } ?? .null),
                        ("clock_offset_seconds", b.clockOffsetSeconds.map { .double($0) } ?? .null),
                        ("connections", .int(b.connections)),
                        ("last_connected_at", time(b.lastConnectedAt)),
                        ("bad_payloads", .int(b.badPayloads)),
                    ])
                } ?? .null),
            ])
        }
    }

    /// Free space on the database's file system (statvfs(3)), in bytes and percent.
    func diskDocument() -> JSONValue {
        let db = config.paths.database
        let dir = db.lastIndex(of: "/").map { $0 == db.startIndex ? "/" : String(db[..<$0]) } ?? "."
        var info = statvfs()
        var rc: Int32
        repeat { rc = statvfs(dir, &info) } while rc != 0 && errno == EINTR
        guard rc == 0 else {
            return .object([("path", .string(dir)), ("error", .string("statvfs failed: \(String(cString: strerror(errno)))"))])
        }
        let total = Int64(info.f_blocks) * Int64(info.f_frsize)
        let free = Int64(info.f_bavail) * Int64(info.f_frsize)
        let percent = total > 0 ? (Double(free) * 1000 / Double(total)).rounded() / 10 : 0
        return .object([
            ("path", .string(dir)), ("total_bytes", .int(total)), ("free_bytes", .int(free)),
            ("free_percent", .double(percent)),
        ])
    }

    /// The kernel's clock discipline (adjtimex(2) STA_UNSYNC): whether an NTP client (chrony,
    /// systemd-timesyncd) has the clock synchronised. Readings are stamped with this clock.
    func clockDocument() -> JSONValue {
        var maxError = 0
        let state = vigil_clock_synchronised(&maxError)
        return .object([
            ("now", .string(realtimeNow().iso8601)),
            ("synchronised", state < 0 ? .null : .bool(state == 1)),
            ("max_error_ms", state < 0 ? .null : .int(Int64(maxError / 1000))),
        ])
    }
}

/// The forwarder's acknowledged counter sampled over time, for the outbox's drain rate
/// (items per second over the last 30 s).
final class DrainMeter: Sendable {
    private let samples = Mutex<[(ms: Int64, acknowledged: Int)]>([])
    static let window: Int64 = 30_000

    func sample(at now: Timestamp, acknowledged: Int) {
        samples.withLock { s in
            let ms = now.millisecondsSinceEpoch
            // A clock step backwards makes earlier samples meaningless.
            if let last = s.last, last.ms > ms { s.removeAll() }
            if let last = s.last, ms - last.ms < 500 { s[s.count - 1] = (ms, acknowledged) } else { s.append((ms, acknowledged)) }
            s.removeAll { ms - $0.ms > Self.window }
        }
    }

    /// nil until two samples at least a second apart exist.
    func ratePerSecond() -> Double? {
        samples.withLock { s in
            guard let first = s.first, let last = s.last, last.ms - first.ms >= 1000 else { return nil }
            return Double(max(0, last.acknowledged - first.acknowledged)) * 1000 / Double(last.ms - first.ms)
        }
    }
}

/// Samples the forwarder's acknowledged counter every second for the drain rate.
struct DrainSampler: Service {
    let meter: DrainMeter
    let forwarder: Forwarder

    func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            meter.sample(at: realtimeNow(), acknowledged: forwarder.stats.acknowledged)
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
