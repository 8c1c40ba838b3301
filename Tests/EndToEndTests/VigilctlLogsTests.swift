import Glibc
import Testing
import VigilTestKit
import VitalSigns

/// The built `vigilctl logs`. journald does not run in this container, so these tests play
/// `journalctl -o json` output (as journalctl 252 prints it) from a stand-in script that also
/// records the arguments it was given; one test runs the real journalctl to show that it accepts
/// them. Not exercised here: a live journal, --follow against journald.
@Suite struct VigilctlLogsTests {
    static let ctl = VigildProcess.binDirectory + "/vigilctl"

    /// Entries at err, info, debug (with patient data, as vigild may log at debug), a message
    /// journalctl gives as bytes (not UTF-8), an entry with no PRIORITY, and a line of noise.
    static let journal = """
        {"__REALTIME_TIMESTAMP":"1764086400000000","PRIORITY":"3","_PID":"812","SYSLOG_IDENTIFIER":"vigild","MESSAGE":"broker refused the connection reason=not_authorized"}
        {"__REALTIME_TIMESTAMP":"1764086401500000","PRIORITY":"6","_PID":"812","MESSAGE":"device connected device.id=rad8-a"}
        {"__REALTIME_TIMESTAMP":"1764086402000000","PRIORITY":"7","_PID":"812","MESSAGE":"reading patient=patient-0001 spo2=91"}
        {"__REALTIME_TIMESTAMP":"1764086403000000","PRIORITY":"4","_PID":"812","MESSAGE":[98,97,100,255,10,120]}
        {"__REALTIME_TIMESTAMP":"1764086404000000","_PID":"812","MESSAGE":"no priority patient=patient-0002"}
        not json

        """

    final class FakeJournal {
        let dir: String
        var script: String { dir + "/journalctl" }
        var argsFile: String { dir + "/args" }

        init(exitStatus: Int = 0) throws {
            var template = Array("/tmp/vigil-logs.XXXXXX".utf8CString)
            guard let made = template.withUnsafeMutableBufferPointer({ $0.baseAddress.flatMap { mkdtemp($0) } }) else {
                throw MosquittoBrokerError("mkdtemp", errno: errno, "cannot create a directory")
            }
            dir = String(cString: made)
            try writeText(dir + "/entries", VigilctlLogsTests.journal)
            try writeText(script, "#!/bin/sh\nprintf '%s\\n' \"$@\" > '\(argsFile)'\ncat '\(dir)/entries'\nexit \(exitStatus)\n")
            chmod(script, 0o755)
        }

        deinit { _ = try? VigildProcess.run(["/bin/rm", "-rf", dir]) }

        var arguments: [String] {
            guard let fd = Optional(open(argsFile, O_RDONLY)), fd >= 0 else { return [] }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            return String(decoding: buffer.prefix(max(0, n)), as: UTF8.self).split(separator: "\n").map(String.init)
        }
    }

    @Test func infoAndAboveOnlyByDefault() throws {
        let fake = try FakeJournal()
        let run = try VigildProcess.run([Self.ctl, "logs", "--journalctl", fake.script])
        #expect(run.status == 0)
        #expect(run.output == """
            2025-11-25T16:00:00.000Z err     broker refused the connection reason=not_authorized
            2025-11-25T16:00:01.500Z info    device connected device.id=rad8-a
            2025-11-25T16:00:03.000Z warning bad\u{FFFD}\\nx

            """)
        #expect(!run.output.contains("patient"), "debug entries and entries of unknown priority are not shown")
        #expect(fake.arguments == ["--unit", "vigild.service", "--output", "json", "--no-pager", "--lines", "50", "--priority", "info"])
    }

    @Test func jsonSinceAndLinesPassThrough() throws {
        let fake = try FakeJournal()
        let run = try VigildProcess.run([Self.ctl, "logs", "--journalctl", fake.script, "--json", "-n", "5", "--since", "1 hour ago"])
        #expect(run.status == 0)
        #expect(run.output.split(separator: "\n").first == """
            {"at":"2025-11-25T16:00:00.000Z","priority":3,"level":"err","pid":812,"message":"broker refused the connection reason=not_authorized"}
            """)
        #expect(run.output.split(separator: "\n").count == 3)
        #expect(fake.arguments == ["--unit", "vigild.service", "--output", "json", "--no-pager", "--lines", "5", "--priority", "info",
                                   "--since", "1 hour ago"])
    }

    @Test func followAndUnitPassThrough() throws {
        let fake = try FakeJournal()
        let run = try VigildProcess.run([Self.ctl, "logs", "--journalctl", fake.script, "-f", "--unit", "vigild-test.service"])
        #expect(run.status == 0)
        #expect(run.output.split(separator: "\n").count == 3)
        #expect(fake.arguments == ["--unit", "vigild-test.service", "--output", "json", "--no-pager", "--lines", "50", "--priority", "info",
                                   "--follow"])
    }

    /// --follow shows each entry as it arrives: the stand-in prints a second entry only once the
    /// first has reached vigilctl's output file (polled with a 10 s deadline; exit 3 on timeout).
    @Test func followShowsEntriesAsTheyArrive() throws {
        let fake = try FakeJournal()
        let out = fake.dir + "/out"
        try writeText(fake.script, """
            #!/bin/sh
            echo '{"PRIORITY":"6","__REALTIME_TIMESTAMP":"1764086400000000","MESSAGE":"first"}'
            i=0
            while ! grep -q first '\(out)' 2>/dev/null; do i=$((i+1)); [ $i -gt 100 ] && exit 3; sleep 0.1; done
            echo '{"PRIORITY":"6","__REALTIME_TIMESTAMP":"1764086401000000","MESSAGE":"second"}'

            """)
        let run = try VigildProcess.run(["/bin/sh", "-c", "'\(Self.ctl)' logs -f --journalctl '\(fake.script)' > '\(out)'"])
        #expect(run.status == 0, "journalctl's stand-in never saw the first entry: vigilctl buffered it")
        let fd = open(out, O_RDONLY)
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        #expect(String(decoding: buffer.prefix(max(0, n)), as: UTF8.self) == """
            2025-11-25T16:00:00.000Z info    first
            2025-11-25T16:00:01.000Z info    second

            """)
    }

    @Test func debugIsForRootAndVigilAdminOnly() throws {
        let fake = try FakeJournal()
        // We are root here: debug entries are shown, and journalctl is asked for them.
        let root = try VigildProcess.run([Self.ctl, "logs", "--journalctl", fake.script, "--debug"])
        #expect(root.status == 0)
        #expect(root.output.contains("debug   reading patient=patient-0001 spo2=91"))
        #expect(!root.output.contains("no priority"))
        #expect(fake.arguments.suffix(2) == ["--priority", "debug"])
        // As nobody (no vigil-admin): refused before journalctl runs.
        _ = unlink(fake.argsFile)
        let nobody = try VigildProcess.run(["/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                            Self.ctl, "logs", "--journalctl", fake.script, "--debug"], quiet: true)
        #expect(nobody.status == 77)
        #expect(nobody.output.isEmpty)
        #expect(fake.arguments.isEmpty)
    }

    @Test func aFailingOrMissingJournalctlIsUnavailable() throws {
        let failing = try FakeJournal(exitStatus: 1)
        let run = try VigildProcess.run([Self.ctl, "logs", "--journalctl", failing.script], quiet: true)
        #expect(run.status == 69)
        let missing = try VigildProcess.run([Self.ctl, "logs", "--journalctl", "/nonexistent/journalctl"], quiet: true)
        #expect(missing.status == 69)
        let bad = try VigildProcess.run([Self.ctl, "logs", "-n", "0"], quiet: true)
        #expect(bad.status == 64)
    }

    @Test func theRealJournalctlAcceptsTheArguments() throws {
        // No journal in this container: journalctl finds no entries and exits 0, which shows it
        // accepted every option vigilctl passes (an unknown option exits 1).
        let run = try VigildProcess.run([Self.ctl, "logs", "-n", "5", "--since", "today"], quiet: true)
        #expect(run.status == 0)
    }
}
