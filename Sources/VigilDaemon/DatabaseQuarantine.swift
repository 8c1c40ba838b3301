import Glibc
import Logging
import ReadingStore
import SerialLink
import VitalSigns

/// A damaged database moved aside at start-up (issue 8, "SQLite file corruption"): the file is
/// kept, never deleted, and the loss is reported loudly — a critical log line, a `data_loss`
/// event upstream, and a problem in `vigilctl status` for as long as this vigild runs.
struct DatabaseQuarantine: Sendable {
    /// Where the damaged file now is: `<database>.corrupt-<UTC yyyymmddThhmmssZ>` (its `-wal`
    /// and `-shm` files beside it with the same suffix).
    var quarantinedPath: String
    /// Why it was refused, as the store reported it (no patient data: codes and paths).
    var reason: String
    var at: Timestamp

    /// SQLite says the file is not a database (`SQLITE_NOTADB`) or is damaged
    /// (`SQLITE_CORRUPT`, sqlite3.h "Result Codes"). A database made by a newer Vigil or
    /// one that cannot be opened for lack of permission is not damaged and is left alone.
    static func isDamage(_ error: StoreError) -> Bool {
        guard let code = error.sqliteCode?.primary else { return false }
        return code == .corrupt || code == SQLiteResultCode(rawValue: 26)  // SQLITE_NOTADB
    }

    /// Opens the store at `options.path`; when the file is damaged, renames it (and its WAL
    /// and shared-memory files) aside and opens a fresh database in its place.
    /// - Throws: the first open's error when it is not damage, or when the rename fails (the
    ///   daemon then refuses to start rather than lose the file), or the fresh open's error.
    static func openStore(options: StoreOptions, logger: Logger) throws(StoreError) -> (ReadingStore, DatabaseQuarantine?) {
        do {
            return (try ReadingStore(options: options, logger: Logger(label: "vigild.store")), nil)
        } catch where isDamage(error) {
            let now = realtimeNow()
            let c = CivilDateTime(utc: now)
            func pad(_ v: Int, _ w: Int) -> String { String(repeating: "0", count: max(0, w - String(v).count)) + String(v) }
            let stamp = "\(pad(c.year, 4))\(pad(c.month, 2))\(pad(c.day, 2))T\(pad(c.hour, 2))\(pad(c.minute, 2))\(pad(c.second, 2))Z"
            let target = options.path + ".corrupt-" + stamp
            // The WAL first: a WAL left beside a fresh database would be replayed into it.
            for suffix in ["-wal", "-shm", ""] where access(options.path + suffix, F_OK) == 0 {
                guard rename(options.path + suffix, target + suffix) == 0 else {
                    let e = errno
                    throw StoreError(code: .openFailed,
                                     message: "the database is damaged and could not be moved aside to \(target + suffix) (errno \(e)); refusing to start rather than lose it",
                                     operation: "quarantine \(options.path)")
                }
            }
            let quarantine = DatabaseQuarantine(quarantinedPath: target, reason: "\(error)", at: now)
            logger.critical("the database was damaged: it is kept as the quarantined file and a fresh, empty database was started; undelivered readings in it were not sent", metadata: [
                "path": "\(options.path)", "quarantined_as": "\(target)", "error": "\(error)",
            ])
            return (try ReadingStore(options: options, logger: Logger(label: "vigild.store")), quarantine)
        }
    }

    /// The `data_loss` event sent upstream (reason `database_replaced`); the count of readings
    /// lost is unknown (the damaged file cannot be read), so none is given.
    var event: GatewayEvent {
        GatewayEvent(kind: GatewayEvent.dataLoss, at: at, detail: [
            "reason": "database_replaced",
            "quarantined_as": quarantinedPath,
        ])
    }

    /// The line `vigilctl status` shows among its problems.
    var problem: String {
        "the database was corrupt and was replaced by an empty one at \(at.iso8601); the damaged file is kept as \(quarantinedPath) — readings not yet delivered may be lost"
    }
}
