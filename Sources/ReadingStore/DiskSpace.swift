import Glibc
public import VitalSigns

/// What the store knows about the space on the file system holding the database, for status.
///
/// See docs/faults.md ("Disk full") for the design: a reserve file released at the first
/// `SQLITE_FULL`, eviction in the capacity order to keep free pages inside the database file,
/// frequent small checkpoints while space is low, and the WAL truncated to give its space back.
public struct StoreSpaceStatus: Sendable, Hashable {
    /// A write failed for lack of space (`SQLITE_FULL`, or an I/O error with `ENOSPC`/`EDQUOT`)
    /// and space has not come back since: the reserve is released and, while this holds, every
    /// commit keeps free pages inside the database file by evicting (delivered readings first,
    /// then the oldest undelivered readings). Clears once the reserve could be re-created.
    public var full: Bool = false
    /// When `full` last became true (nil when it is false).
    public var fullSince: Timestamp?
    /// Free space is below what a normal WAL may need before its next checkpoint: the store
    /// checkpoints after every few pages so the WAL cannot take the last of the disk.
    public var lowSpace: Bool = false
    /// The reserve file beside the database (`<database>.reserve`) and its configured size
    /// (0: no reserve).
    public var reservePath: String = ""
    public var reserveBytes: Int64 = 0
    /// Whether the reserve file is in place (false after it was released for a full disk, or
    /// when there was no room to create it).
    public var reserveHeld: Bool = false
    /// Writes that failed for lack of space since the store was opened.
    public var fullFailures: Int64 = 0
    /// The last such failure (an SQLite code and operation; never data).
    public var lastFullError: String?
    /// Free bytes on the database's file system at the last check (statvfs `f_bavail`), nil
    /// before the first check or when statvfs failed.
    public var freeBytes: Int64?
    /// When the store last made room (released the reserve, checkpointed, evicted) after a
    /// failed write.
    public var lastMadeRoomAt: Timestamp?

    public init() {}
}

/// File-system helpers for the disk-full handling. Blocking: called on the writer thread only.
enum DiskSpace {
    /// The directory holding `path` (`.` for a bare name).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Bytes available to an unprivileged writer on the file system holding `directory`
    /// (statvfs(3) `f_bavail × f_frsize`), or nil when statvfs fails.
    static func freeBytes(_ directory: String) -> Int64? {
        var info = statvfs()
        var rc: Int32
        repeat { rc = statvfs(directory, &info) } while rc != 0 && errno == EINTR
        guard rc == 0 else { return nil }
        return Int64(info.f_bavail) * Int64(info.f_frsize)
    }

    /// Size of the file system holding `directory` (statvfs(3) `f_blocks × f_frsize`).
    static func totalBytes(_ directory: String) -> Int64? {
        var info = statvfs()
        guard statvfs(directory, &info) == 0 else { return nil }
        return Int64(info.f_blocks) * Int64(info.f_frsize)
    }

    /// Size of a file, nil when it does not exist.
    static func fileSize(_ path: String) -> Int64? {
        var info = Glibc.stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : nil
    }

    /// Creates `path` holding `bytes` of allocated blocks (not sparse, so the space is really
    /// taken) and fsyncs it. On any failure the partial file is removed and the errno returned.
    ///
    /// The corresponding C functions are `open`, `posix_fallocate`, `pwrite`, `fsync` and `unlink`.
    static func createReserve(_ path: String, bytes: Int64) -> Int32? {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return errno }
        // Allocating the blocks reserves the space without writing them (ext4, tmpfs, xfs), so
        // making the reserve costs an SD card no data writes; only where the file system cannot
        // allocate (EOPNOTSUPP) are zeros written.
        var fallocated: Int32
        repeat { fallocated = posix_fallocate(fd, 0, off_t(bytes)) } while fallocated == EINTR
        let chunk = [UInt8](repeating: 0, count: 65_536)
        var offset: Int64 = fallocated == 0 ? bytes : 0
        var failure: Int32? = (fallocated == 0 || fallocated == EOPNOTSUPP) ? nil : fallocated
        while offset < bytes, failure == nil {
            let want = Int(min(Int64(chunk.count), bytes - offset))
            let n = chunk.withUnsafeBytes { pwrite(fd, $0.baseAddress, want, off_t(offset)) }
            if n < 0 {
                if errno == EINTR { continue }
                failure = errno
            } else if n == 0 {
                failure = ENOSPC
            } else {
                offset += Int64(n)
            }
        }
        if failure == nil, fsync(fd) != 0 { failure = errno }
        close(fd)
        if let failure {
            unlink(path)
            return failure
        }
        return nil
    }

    /// Removes the reserve; true when a file was there.
    static func releaseReserve(_ path: String) -> Bool {
        unlink(path) == 0
    }

    static func errnoText(_ code: Int32) -> String {
        strerror(code).map { String(cString: $0) } ?? "errno \(code)"
    }
}

extension StoreError {
    /// The write failed for lack of space: `SQLITE_FULL` (SQLite's unix VFS returns it when
    /// write(2) fails with `ENOSPC`), or an I/O error whose system errno is `ENOSPC` or
    /// `EDQUOT` (growing the `-shm` file fails as `SQLITE_IOERR_SHMSIZE`; a quota as
    /// `SQLITE_IOERR_WRITE`).
    public var isDiskFull: Bool {
        guard let primary = sqliteCode?.primary else { return false }
        if primary == .full { return true }
        return primary == .ioError && (systemErrno == ENOSPC || systemErrno == EDQUOT)
    }
}
