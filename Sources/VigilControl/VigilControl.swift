import ArgumentParser
import Glibc
import VitalSigns

@main
struct VigilControl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigilctl",
        abstract: "Check and operate a Vigil remote patient monitoring gateway.",
        discussion: """
            vigilctl talks to the running vigild over its control socket \
            (default /run/vigil/control.sock; override with --socket or VIGIL_CONTROL_SOCKET).

            Exit status (sysexits.h): 0 success (for status: the home is OK), 1 status found a \
            problem, 64 bad arguments, 65 bad input data (decode, evaluate, scan --advertisement), \
            66 an input cannot be opened (capture's port, scan's profiles; unpair/assign: no such \
            device), 67 a device id that is not vigilctl's to change (pair, unpair, assign), 69 a \
            service is unavailable (vigild not reachable, no Bluetooth), 70 vigild reported an error, \
            73 an output cannot be created, 74 an I/O error, 77 permission denied (see the 'vigil' \
            and 'vigil-admin' groups). Each command's --help gives its own.
            """,
        version: VigilVersion.string,
        subcommands: [Status.self, Devices.self, Readings.self, Escalations.self, Outbox.self, Diagnose.self, Logs.self,
                      Watch.self, Pair.self, Unpair.self, Assign.self, Setup.self, Audit.self,
                      Decode.self, Simulate.self, CaptureCommand.self, Evaluate.self, Scan.self]
    )
}

enum VigilVersion {
    static let string = "0.1.0"
}

/// Options every command that talks to vigild shares.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Path of vigild's control socket.", valueName: "path"))
    var socket: String?

    @Flag(name: .long, help: "Print machine-readable JSON instead of text.")
    var json = false

    var socketPath: String {
        if let socket { return socket }
        if let env = getenv("VIGIL_CONTROL_SOCKET") { return String(cString: env) }
        return "/run/vigil/control.sock"
    }
}

/// Exit codes from sysexits.h, which technicians' scripts can rely on.
enum ExitStatus {
    static let problem = ExitCode(1)
    static let unavailable = ExitCode(69)
}

func printError(_ message: String) {
    let bytes = Array(("vigilctl: " + message + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        offset += n
    }
}
