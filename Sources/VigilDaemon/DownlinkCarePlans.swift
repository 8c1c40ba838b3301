import ClinicalRules
import Glibc
import StrictYAML
import VitalSigns

/// Persists a care plan received over the downlink into `paths.care_plans`, where start-up
/// loads plans from, so the new plan is the one in force after a restart too.
///
/// The write is atomic: a temporary file (a name the loader ignores, not `*.yaml`) is
/// written, fsynced, renamed over the target and the directory fsynced. A reader (or a
/// crash) sees the old file or the new one, never a mix. The target is the file that already
/// holds the patient's plan, whatever its name, so the directory never ends up with two
/// plans for one patient (start-up would refuse the second).
enum DownlinkCarePlans {
    struct WriteError: Error, CustomStringConvertible {
        var operation: String
        var errno: Int32
        var description: String { "cannot persist the care plan: \(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))" }
    }

    /// The path of the file holding `patient`'s plan in `directory`, or a new
    /// `<patient>.yaml` (`plan-<hash>.yaml` when the id is not a safe file name).
    static func path(for patient: PatientID, in directory: String) -> String {
        if let existing = existingFile(for: patient, in: directory) { return existing }
        let id = patient.rawValue
        let safe = !id.isEmpty && id.utf8.count <= 100 && !id.hasPrefix(".")
            && id.utf8.allSatisfy { b in
                (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F || b == 0x2E
            }
        let name = safe ? id : "plan-" + SHA256.hash(Array(id.utf8)).prefix(8).hexString
        return directory + "/" + name + ".yaml"
    }

    /// The `*.yaml`/`*.yml` file in `directory` whose plan names `patient` (files that do not
    /// decode are skipped: they are not in force either).
    static func existingFile(for patient: PatientID, in directory: String) -> String? {
        guard let dir = opendir(directory) else { return nil }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name.hasSuffix(".yaml") || name.hasSuffix(".yml") { names.append(name) }
        }
        for name in names.sorted() {
            let path = directory + "/" + name
            guard let bytes = try? TextFile.readBytes(path),
                  let plan = try? YAMLDecoder().decode(CarePlan.self, from: bytes, fileName: path) else { continue }
            if plan.patient == patient { return path }
        }
        return nil
    }

    /// Writes `bytes` to `path` atomically (temporary file, fsync, rename, directory fsync).
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws(WriteError) {
        guard let slash = path.lastIndex(of: "/") else { throw WriteError(operation: "path", errno: EINVAL) }
        let directory = String(path[..<slash])
        let temporary = directory + "/.vigil-plan-\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw WriteError(operation: "open \(temporary)", errno: errno) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                close(fd)
                unlink(temporary)
                throw WriteError(operation: "write \(temporary)", errno: e)
            }
            offset += n
        }
        while fsync(fd) != 0 {
            if errno == EINTR { continue }
            let e = errno
            close(fd)
            unlink(temporary)
            throw WriteError(operation: "fsync \(temporary)", errno: e)
        }
        // close(2) is not retried on EINTR: on Linux the descriptor is released either way.
        close(fd)
        guard rename(temporary, path) == 0 else {
            let e = errno
            unlink(temporary)
            throw WriteError(operation: "rename into \(path)", errno: e)
        }
        // The rename is durable only once the directory entry is.
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { throw WriteError(operation: "open \(directory)", errno: errno) }
        defer { close(dfd) }
        while fsync(dfd) != 0 {
            if errno == EINTR { continue }
            throw WriteError(operation: "fsync \(directory)", errno: errno)
        }
    }
}
