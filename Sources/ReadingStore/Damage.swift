import CSQLite
import Synchronization

// Damage: telling a damaged database file from every other failure, noticing it whenever
// SQLite reports it (not only at open), and checking a file that reported it
// (issue 8, "SQLite file corruption"; the daemon's recovery is in DatabaseQuarantine.swift).

extension StoreError {
    /// SQLite says the file is not a database (`SQLITE_NOTADB`) or is damaged
    /// (`SQLITE_CORRUPT` and its extended codes, sqlite3.h "Result Codes"). Not damage: a
    /// full disk, an I/O error, a lock, a database made by a newer Vigil, a missing permission.
    public var isDamage: Bool {
        guard let primary = sqliteCode?.primary else { return code == .notADatabase }
        return primary == .corrupt || primary == .notADatabase
    }
}

/// Remembers the first damage SQLite reported on any of one store's connections (writer or
/// reader), whoever was asking. Set from `SQLiteConnection.error`, read by the daemon.
final class DamageLatch: Sendable {
    private let first = Mutex<StoreError?>(nil)

    func report(_ error: StoreError) {
        first.withLock { if $0 == nil { $0 = error } }
    }

    var reported: StoreError? { first.withLock { $0 } }
}

extension ReadingStore {
    /// The first `SQLITE_CORRUPT` or `SQLITE_NOTADB` any statement of this store met since it
    /// was opened (commits, outbox reads, views alike), or nil. Once set it stays set: the
    /// file is damaged and the daemon must not go on retrying against it.
    public var reportedDamage: StoreError? { damageLatch.reported }

    /// Runs `PRAGMA integrity_check` (or, with `quick`, `quick_check`: no index-content
    /// cross-check, about as fast as reading the file) on the database at `path` through
    /// its own read-only connection, before any store is opened on it. Returns SQLite's
    /// findings (at most `maxProblems` lines, each naming pages and tables, never row
    /// values); empty when the file is sound.
    ///
    /// - Throws: the `StoreError` SQLite reported when the check itself could not run
    ///   (`isDamage` tells a file too damaged to check from one that could not be opened).
    public static func checkIntegrity(path: String, quick: Bool = false, maxProblems: Int = 20) throws(StoreError) -> [String] {
        let db = try SQLiteConnection(path: path, readOnly: true, create: false)
        defer { db.close() }
        let pragma = "\(quick ? "quick_check" : "integrity_check")(\(max(1, maxProblems)))"
        let operation = "\(pragma) \(path)"
        return try db.withStatement("PRAGMA \(pragma)", operation: operation) { (s) throws(StoreError) -> [String] in
            var lines: [String] = []
            while try s.step() { lines.append(s.text(0)) }
            return lines == ["ok"] ? [] : lines
        }
    }
}
