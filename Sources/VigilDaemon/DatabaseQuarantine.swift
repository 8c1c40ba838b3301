import Glibc
import Logging
import ReadingStore
import SerialLink
import ServiceLifecycle
import Synchronization
import VitalSigns

/// A damaged database moved aside (issue 8, "SQLite file corruption"): the file is kept, never
/// deleted, and the loss is reported loudly — a critical log line, a `data_loss` event
/// upstream, and a problem in `vigilctl status` for as long as this vigild runs.
///
/// Damage is found two ways:
/// - **at open**: SQLite refuses the file (`SQLITE_NOTADB`, `SQLITE_CORRUPT`) while the store
///   opens it;
/// - **during operation**: any statement (a commit, an outbox read, a view) meets
///   `SQLITE_CORRUPT` or `SQLITE_NOTADB` in a file whose header is intact. vigild does not
///   retry against a damaged file: it records a marker beside it (`<database>.damaged`),
///   logs a critical line and exits with status 65 (`ExitCode.databaseDamaged`); systemd
///   restarts it (`Restart=always`), and this start-up finds the marker and runs
///   `PRAGMA integrity_check` before opening the store. A failed check quarantines the file
///   the same way as at open. A check that passes keeps the file (the marker remembers it);
///   if SQLite then reports damage again, the file is quarantined without another check, so
///   a file that fails intermittently costs at most two restarts, never a loop.
struct DatabaseQuarantine: Sendable {
    /// Where the damaged file now is: `<database>.corrupt-<UTC yyyymmddThhmmssZ>` (its `-wal`,
    /// `-shm` and `.damaged` marker beside it with the same suffix).
    var quarantinedPath: String
    /// Why it was refused, as the store or the integrity check reported it (no patient data:
    /// codes, pages, tables and paths).
    var reason: String
    var at: Timestamp
    /// `at_open` or `during_operation`.
    var found: String = "at_open"
    /// Readings not yet delivered when the damage was met during operation (from the store's
    /// counters as vigild last read them), or nil when unknown (damage found at open).
    var undeliveredReadings: Int64? = nil

    /// The marker recording damage met during operation: `<database>.damaged`.
    static func markerPath(_ database: String) -> String { database + ".damaged" }

    /// `StoreError.isDamage`: `SQLITE_NOTADB` or `SQLITE_CORRUPT` (sqlite3.h "Result Codes").
    /// A database made by a newer Vigil, a full disk or a missing permission is not damage
    /// and is left alone.
    static func isDamage(_ error: StoreError) -> Bool { error.isDamage }

    /// Opens the store at `options.path`; when the file is damaged — refused at open, or
    /// marked damaged by the previous run and failing `PRAGMA integrity_check` — renames it
    /// (and its WAL, shared-memory and marker files) aside and opens a fresh database in its
    /// place.
    /// - Throws: the first open's error when it is not damage, or when the rename fails (the
    ///   daemon then refuses to start rather than lose the file), or the fresh open's error.
    static func openStore(options: StoreOptions, logger: Logger) throws(StoreError) -> (ReadingStore, DatabaseQuarantine?) {
        if var marker = DamageMarker.read(markerPath(options.path)), marker.reports > marker.checked,
           access(options.path, F_OK) == 0 {
            if let reason = try verdict(on: &marker, path: options.path, logger: logger) {
                var q = try quarantine(options.path, reason: reason, logger: logger)
                q.found = "during_operation"
                q.undeliveredReadings = marker.undeliveredReadings
                return (try ReadingStore(options: options, logger: Logger(label: "vigild.store")), q)
            }
        }
        do {
            return (try ReadingStore(options: options, logger: Logger(label: "vigild.store")), nil)
        } catch where isDamage(error) {
            let q = try quarantine(options.path, reason: "\(error)", logger: logger)
            return (try ReadingStore(options: options, logger: Logger(label: "vigild.store")), q)
        }
    }

    /// Decides what to do with a file the previous run found damaged: the reason to
    /// quarantine it, or nil to keep it (the check passed; recorded in the marker).
    private static func verdict(on marker: inout DamageMarker, path: String, logger: Logger) throws(StoreError) -> String? {
        if marker.checked > 0 {
            return "SQLite reported damage again (\(marker.lastError)) after an integrity check had passed"
        }
        logger.warning("the previous run met a damaged database; checking it before use (PRAGMA integrity_check; this reads the whole file)", metadata: [
            "path": "\(path)", "error": "\(marker.lastError)", "detected_at": "\(marker.lastAt)",
        ])
        // The check reads the whole file (about 20 s a GB here): keep systemd's start-up
        // timeout from expiring meanwhile.
        SystemdNotifier.notify("EXTEND_TIMEOUT_USEC=600000000")
        SystemdNotifier.notify("STATUS=checking the database after damage was reported")
        let started = realtimeNow()
        let problems: [String]
        do {
            problems = try ReadingStore.checkIntegrity(path: path)
        } catch where error.isDamage {
            return "\(error)"
        }
        let elapsed = realtimeNow().milliseconds(since: started)
        guard problems.isEmpty else {
            return "integrity_check found \(problems.count == 20 ? "20 or more" : "\(problems.count)") problem(s): "
                + problems.prefix(3).joined(separator: "; ")
        }
        marker.checked = marker.reports
        marker.write(markerPath(path))
        logger.error("SQLite reported damage during operation but integrity_check finds none: the database is kept; if damage is reported again it will be quarantined without another check", metadata: [
            "path": "\(path)", "error": "\(marker.lastError)", "elapsed_ms": "\(elapsed)",
        ])
        return nil
    }

    /// Renames the damaged file aside (never deletes it) and logs it.
    private static func quarantine(_ path: String, reason: String, logger: Logger) throws(StoreError) -> DatabaseQuarantine {
        let now = realtimeNow()
        let c = CivilDateTime(utc: now)
        func pad(_ v: Int, _ w: Int) -> String { String(repeating: "0", count: max(0, w - String(v).count)) + String(v) }
        let stamp = "\(pad(c.year, 4))\(pad(c.month, 2))\(pad(c.day, 2))T\(pad(c.hour, 2))\(pad(c.minute, 2))\(pad(c.second, 2))Z"
        let target = path + ".corrupt-" + stamp
        // The WAL first: a WAL left beside a fresh database would be replayed into it. The
        // marker last: if a rename fails it is still there and the next start tries again.
        for suffix in ["-wal", "-shm", "", ".damaged"] where access(path + suffix, F_OK) == 0 {
            guard rename(path + suffix, target + suffix) == 0 else {
                let e = errno
                throw StoreError(code: .openFailed,
                                 message: "the database is damaged and could not be moved aside to \(target + suffix) (errno \(e)); refusing to start rather than lose it",
                                 operation: "quarantine \(path)")
            }
        }
        syncDirectory(of: path)
        logger.critical("the database was damaged: it is kept as the quarantined file and a fresh, empty database was started; undelivered readings in it were not sent", metadata: [
            "path": "\(path)", "quarantined_as": "\(target)", "error": "\(reason)",
        ])
        return DatabaseQuarantine(quarantinedPath: target, reason: reason, at: now)
    }

    /// The `data_loss` event sent upstream (reason `database_replaced`), with the number of
    /// undelivered readings left in the kept file when it is known.
    var event: GatewayEvent {
        GatewayEvent(kind: GatewayEvent.dataLoss, at: at, count: undeliveredReadings, detail: [
            "reason": "database_replaced",
            "found": found,
            "quarantined_as": quarantinedPath,
        ])
    }

    /// The line `vigilctl status` shows among its problems.
    var problem: String {
        let lost = undeliveredReadings.map { "\($0) reading(s) not yet delivered are" } ?? "readings not yet delivered may be"
        return "the database was corrupt and was replaced by an empty one at \(at.iso8601); the damaged file is kept as \(quarantinedPath) — \(lost) in it, not sent"
    }
}

// MARK: Damage met during operation

/// What vigild does when SQLite reports damage while running: no retrying against a damaged
/// file. Called by the commit path the moment a commit fails with damage, and by
/// `DatabaseGuard` for damage any other statement met (outbox reads, views).
enum DatabaseDamage {
    private static let stopping = Atomic<Bool>(false)

    /// Records the marker, says so loudly and exits with status 65 so that systemd restarts
    /// vigild on a checked database. What was committed stays committed (the WAL is left as
    /// a kill would leave it); the chunk being committed at that moment is not acknowledged
    /// to its device (a BLE indication is not confirmed, so the device sends it again).
    ///
    /// Runs once; a second caller waits for the exit. Blocking (a small file and two
    /// fsyncs) and it never returns, so the cooperative thread it may run on is not needed back.
    static func stop(_ error: StoreError, store: ReadingStore, logger: Logger) -> Never {
        guard stopping.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            while true { pause() }
        }
        let path = store.path
        let undelivered = try? store.stats().undeliveredReadings
        var marker = DamageMarker.read(DatabaseQuarantine.markerPath(path)) ?? DamageMarker()
        marker.reports += 1
        marker.lastError = "\(error)"
        marker.lastAt = realtimeNow().iso8601
        marker.undeliveredReadings = undelivered
        let written = marker.write(DatabaseQuarantine.markerPath(path))
        logger.critical("the database is damaged: vigild stops (exit 65) and, restarted, checks it and quarantines it if the check fails; the file is kept", metadata: [
            "path": "\(path)", "error": "\(error)", "marker": "\(written ? DatabaseQuarantine.markerPath(path) : "not written")",
            "readings_undelivered": "\(undelivered.map { "\($0)" } ?? "unknown")",
        ])
        SystemdNotifier.notify("STATUS=stopped: the database is damaged")
        // _exit, not exit: no exit-time teardown while the writer thread may still be inside
        // SQLite (the log went straight to fd 2; the WAL is left as a kill leaves it).
        fflush(nil)
        _exit(ExitCode.databaseDamaged)
    }
}

/// Watches the store for damage met by statements outside the commit path (the forwarder's
/// outbox reads, the control socket's views, the rule ticker) and stops vigild on the first.
struct DatabaseGuard: Service {
    let store: ReadingStore
    let logger: Logger
    var interval: Duration = .milliseconds(500)

    func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            if let damage = store.reportedDamage { DatabaseDamage.stop(damage, store: store, logger: logger) }
            try? await Task.sleep(for: interval)
        }
    }
}

/// `<database>.damaged`: `key=value` lines, written atomically (temporary file, fsync, rename).
struct DamageMarker: Equatable {
    /// Times SQLite reported damage during operation on this file.
    var reports = 0
    /// Of those, how many an integrity check at start-up then found nothing for.
    var checked = 0
    var lastError = ""
    var lastAt = ""
    var undeliveredReadings: Int64?

    static func read(_ path: String) -> DamageMarker? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 65_536 {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += buffer[0..<n]
        }
        var m = DamageMarker()
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq], value = String(line[line.index(after: eq)...])
            switch key {
            case "reports": m.reports = Int(value) ?? 1
            case "checked": m.checked = Int(value) ?? 0
            case "last_error": m.lastError = value
            case "last_at": m.lastAt = value
            case "undelivered_readings": m.undeliveredReadings = Int64(value)
            default: break
            }
        }
        // A marker that exists records at least one report, whatever else it lost.
        m.reports = max(m.reports, 1)
        return m
    }

    var text: String {
        func clean(_ s: String) -> String { String(s.map { $0 == "\n" || $0 == "\r" ? " " : $0 }) }
        var t = "# vigild: SQLite reported this database damaged during operation (docs/operations.md)\n"
        t += "reports=\(reports)\nchecked=\(checked)\nlast_error=\(clean(lastError))\nlast_at=\(clean(lastAt))\n"
        if let undeliveredReadings { t += "undelivered_readings=\(undeliveredReadings)\n" }
        return t
    }

    /// Writes the marker durably. Returns false if it could not (the exit status and the
    /// log still say what happened; the next start then opens the file as usual).
    @discardableResult
    func write(_ path: String) -> Bool {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { return false }
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            offset += n
        }
        let ok = offset == bytes.count && fsync(fd) == 0
        close(fd)
        guard ok, rename(temporary, path) == 0 else {
            unlink(temporary)
            return false
        }
        syncDirectory(of: path)
        return true
    }
}

/// fsyncs the directory holding `path`, so a rename in it survives a power cut.
private func syncDirectory(of path: String) {
    let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
    let fd = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    fsync(fd)
    close(fd)
}
