import ArgumentParser
import DeviceDecoding
import Glibc
import SerialLink
import VitalSigns

/// `vigilctl capture`: record what a serial device sends, with its timing, in the
/// firmware-fixtures capture format, so a technician can bring a device's real bytes back for
/// `vigilctl decode --file`, `vigilctl simulate` and the fixture tests.
struct CaptureCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capture",
        abstract: "Record a serial device's bytes with their timing into a capture file.",
        discussion: """
            Opens the port exclusively with the given line settings (stop vigild first if it \
            reads the same port: the port is then busy), and writes one '<ms offset> <hex bytes>' \
            record per read, as in firmware-fixtures/README.md. Each record is written as it \
            arrives, so an interrupted capture keeps what it got. Stops on SIGINT/SIGTERM, after \
            --duration seconds, after --max-bytes, or when the device goes away; then prints a \
            summary on stderr (JSON on stdout with --json). An existing --out file is never \
            overwritten. Captures hold whatever the device sent, which may include patient \
            readings: keep them as you would any health record. \
            Exit status: 0 success, 64 bad arguments, 66 the port cannot be opened, 73 the \
            output cannot be created, 74 an I/O error while capturing.
            """)

    @Option(help: ArgumentHelp("The serial device, for example /dev/serial/by-id/usb-FTDI_…", valueName: "tty"))
    var port: String

    @Option(help: ArgumentHelp("Line speed.", valueName: "n"))
    var baud: Int = 9600

    @Option(name: .customLong("data-bits"), help: ArgumentHelp("5, 6, 7 or 8.", valueName: "n"))
    var dataBits: Int = 8

    @Option(help: ArgumentHelp("none, even or odd.", valueName: "parity"))
    var parity: String = "none"

    @Option(name: .customLong("stop-bits"), help: ArgumentHelp("1 or 2.", valueName: "n"))
    var stopBits: Int = 1

    @Option(help: ArgumentHelp("The capture file to create.", valueName: "file"))
    var out: String

    @Option(help: ArgumentHelp("Stop after this many seconds (default: until interrupted).", valueName: "seconds"))
    var duration: Double?

    @Option(name: .customLong("max-bytes"), help: ArgumentHelp("Stop after this many bytes.", valueName: "n"))
    var maxBytes: Int?

    @Option(help: ArgumentHelp("A comment line for the file's header (the device model, the situation).", valueName: "text"))
    var comment: String?

    @Flag(help: "Print the summary as one JSON object on stdout.")
    var json = false

    static let bauds = [1200, 2400, 4800, 9600, 19_200, 38_400, 57_600, 115_200]

    func validate() throws {
        guard Self.bauds.contains(baud) else {
            throw ValidationError("--baud \(baud) is not supported; use one of \(Self.bauds.map(String.init).joined(separator: ", "))")
        }
        guard (5...8).contains(dataBits) else { throw ValidationError("--data-bits must be 5, 6, 7 or 8") }
        guard SerialSettings.Parity(rawValue: parity) != nil else { throw ValidationError("--parity must be none, even or odd") }
        guard stopBits == 1 || stopBits == 2 else { throw ValidationError("--stop-bits must be 1 or 2") }
        if let duration { guard duration.isFinite, duration > 0 else { throw ValidationError("--duration must be a positive number of seconds") } }
        if let maxBytes { guard maxBytes > 0 else { throw ValidationError("--max-bytes must be positive") } }
        if let comment { guard !comment.contains(where: \.isNewline) else { throw ValidationError("--comment must be one line") } }
    }

    func run() async throws {
        let settings = SerialSettings(baud: baud, dataBits: dataBits, parity: SerialSettings.Parity(rawValue: parity) ?? .none, stopBits: stopBits)
        let serial: SerialPort
        do {
            serial = try SerialPort.open(path: port, settings: settings)
        } catch {
            printError("cannot open \(port): \(error.reason)")
            throw ExitCode(66)
        }
        // O_EXCL: a capture never replaces a file someone already has.
        let fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            let e = errno
            serial.close()
            printError("cannot create \(out): \(String(cString: strerror(e)))\(e == EEXIST ? " (choose a new name; captures are never overwritten)" : "")")
            throw ExitCode(73)
        }
        defer { close(fd) }
        var header = "# captured by vigilctl \(VigilVersion.string) from \(port) at \(settings)\n"
        header += "# started \(realtimeNow().iso8601)\n"
        if let comment { header += "# \(comment)\n" }
        header += "# format: <ms offset> <hex bytes>; see firmware-fixtures/README.md\n"
        guard writeFully(fd, Array(header.utf8)) else {
            printError("cannot write \(out): \(String(cString: strerror(errno)))")
            throw ExitCode(74)
        }

        let started = monotonicMilliseconds()
        let limit = duration.map { Int64($0 * 1000) }
        let signals = Simulate.signals([SIGINT, SIGTERM])
        let outcome = try await withThrowingTaskGroup(of: Outcome.self) { group in
            group.addTask {
                var records = 0
                var bytes = 0
                do {
                    for try await chunk in serial.chunks(readSize: 4096) {
                        let offset = monotonicMilliseconds() - started
                        let line = "\(offset) \(chunk.bytes.hexString)\n"
                        guard writeFully(fd, Array(line.utf8)) else {
                            return Outcome(records: records, bytes: bytes, ending: .writeFailed(String(cString: strerror(errno))))
                        }
                        records += 1
                        bytes += chunk.bytes.count
                        if let maxBytes, bytes >= maxBytes { return Outcome(records: records, bytes: bytes, ending: .maxBytes) }
                    }
                    return Outcome(records: records, bytes: bytes, ending: .cancelled)
                } catch let error as SerialError where error.code == .hangup {
                    return Outcome(records: records, bytes: bytes, ending: .deviceGone)
                } catch let error as SerialError {
                    return Outcome(records: records, bytes: bytes, ending: .readFailed(error.reason))
                }
            }
            group.addTask {
                for await s in signals { return Outcome(records: 0, bytes: 0, ending: .signal(s)) }
                return Outcome(records: 0, bytes: 0, ending: .cancelled)
            }
            if let limit {
                group.addTask {
                    try? await Task.sleep(for: .milliseconds(limit))
                    return Outcome(records: 0, bytes: 0, ending: .duration)
                }
            }
            var first = try await group.next() ?? Outcome(records: 0, bytes: 0, ending: .cancelled)
            group.cancelAll()
            // The reader's counts are what matter; collect them whichever task ended first.
            while let other = try await group.next() {
                if other.records > 0 || other.bytes > 0 { first = Outcome(records: other.records, bytes: other.bytes, ending: first.ending) }
            }
            return first
        }
        _ = fsync(fd)
        let elapsed = Double(monotonicMilliseconds() - started) / 1000
        if json {
            let doc = JSONValue.object([
                ("file", .string(out)), ("records", .int(Int64(outcome.records))), ("bytes", .int(Int64(outcome.bytes))),
                ("seconds", .double((elapsed * 10).rounded() / 10)), ("ended", .string(outcome.ending.name)),
            ])
            print(doc.serialized)
        } else {
            printError("captured \(outcome.bytes) bytes in \(outcome.records) records over \(String(format1: elapsed)) s into \(out) (\(outcome.ending.text))")
        }
        switch outcome.ending {
        case .writeFailed, .readFailed: throw ExitCode(74)
        default: return
        }
    }

    struct Outcome: Sendable {
        var records: Int
        var bytes: Int
        var ending: Ending
    }

    enum Ending: Sendable {
        case signal(Int32), duration, maxBytes, deviceGone, cancelled
        case writeFailed(String), readFailed(String)

        var name: String {
            switch self {
            case .signal: "signal"
            case .duration: "duration"
            case .maxBytes: "max_bytes"
            case .deviceGone: "device_gone"
            case .cancelled: "cancelled"
            case .writeFailed: "write_failed"
            case .readFailed: "read_failed"
            }
        }

        var text: String {
            switch self {
            case .signal(let s): "stopped by signal \(s)"
            case .duration: "duration reached"
            case .maxBytes: "byte limit reached"
            case .deviceGone: "the device went away"
            case .cancelled: "stopped"
            case .writeFailed(let why): "writing the file failed: \(why)"
            case .readFailed(let why): "reading the port failed: \(why)"
            }
        }
    }
}

private func monotonicMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

private func writeFully(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return false
        }
        offset += n
    }
    return true
}

extension String {
    /// One decimal place, without Foundation.
    init(format1 value: Double) {
        let tenths = Int64((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}
