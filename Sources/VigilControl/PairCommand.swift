import ArgumentParser
import VitalSigns

/// `vigilctl pair`: add a device to the running gateway (issue 7). vigild validates it, for a
/// Bluetooth device connects once to prove it answers, stores it in its registry and starts
/// reading it at once: no config edit, no restart.
struct Pair: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pair a device with the gateway (and optionally assign it to a patient).",
        discussion: """
            Give the device an id of your choice, its profile (vigilctl scan lists the profiles) \
            and where it is: --port for a serial device (/dev/serial/by-id/…, usb, or \
            usb:VVVV:PPPP[:SERIAL]) or --address for a Bluetooth LE device (AA:BB:CC:DD:EE:FF; \
            --transport seqpacket:/path for a simulated one). With --patient the device is \
            assigned and read at once; without, it waits for vigilctl assign. Pairing the same \
            device again with the same settings changes nothing. Needs the vigil-admin group.

            Exit status: 0 paired (or already paired so), 64 bad arguments, 65 invalid request \
            (unknown profile, malformed port or address, profile does not fit), 67 the id is \
            taken (paired otherwise, or a device in vigild.yaml), 69 vigild not reachable, \
            Bluetooth unavailable or the device did not answer, 77 not allowed, 74 the registry \
            could not be written.
            """)

    @Argument(help: "The device's id on this gateway (letters, digits, '-' and '_').")
    var id: String

    @Option(help: "The device profile id, for example masimo-rad8.")
    var profile: String

    @Option(help: "Serial device: the port path, usb, or usb:VVVV:PPPP[:SERIAL].")
    var port: String?

    @Option(help: "Bluetooth LE device: its address, AA:BB:CC:DD:EE:FF.")
    var address: String?

    @Option(help: "Bluetooth LE device reached over the simulated seam: seqpacket:/path.")
    var transport: String?

    @Option(help: "Assign the device to this patient identifier at once.")
    var patient: String?

    @Option(name: .customLong("clock-utc-offset"), help: "The zone the device's clock is set in, e.g. +01:00.")
    var clockUTCOffset: String?

    @Option(name: .customLong("download-interval"), help: "For a meter: seconds between downloads (10–86400).")
    var downloadInterval: Int?

    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        if (port == nil) == (address == nil) { throw ValidationError("give --port (serial) or --address (Bluetooth LE)") }
        if transport != nil && address == nil { throw ValidationError("--transport is for a Bluetooth device (--address)") }
    }

    func run() async throws {
        var members: [(String, JSONValue)] = [("command", "pair"), ("id", .string(id)), ("profile", .string(profile))]
        if let port { members.append(("port", .string(port))) }
        if let address { members.append(("address", .string(address))) }
        if let transport { members.append(("transport", .string(transport))) }
        if let patient { members.append(("patient", .string(patient))) }
        if let clockUTCOffset { members.append(("clock_utc_offset", .string(clockUTCOffset))) }
        if let downloadInterval { members.append(("download_interval_seconds", .int(Int64(downloadInterval)))) }
        let reply = try RegistryRequest.send(.object(members), connection: connection)
        let device = reply["device"]
        if connection.json {
            print(reply.serialized)
            return
        }
        let changed = reply["changed"]?.boolValue == true
        let where_ = device?["port"]?.stringValue ?? device?["address"]?.stringValue ?? "?"
        print(changed ? "paired \(id) (\(profile) on \(where_))" : "\(id) is already paired so; nothing changed")
        if let p = device?["patient"]?.stringValue {
            print(reply["assigned"]?.boolValue == true ? "assigned to patient \(p); readings flow now" : "assigned to patient \(p)")
        } else {
            print("not assigned yet: vigilctl assign \(id) <patient>")
        }
    }
}

/// Sends a registry request and turns a refusal into its exit status.
enum RegistryRequest {
    /// Exit statuses for vigild's refusal codes (sysexits.h).
    static func exitCode(for code: String?) -> ExitCode {
        switch code {
        case "invalid", "unknown_profile", "profile_mismatch": ExitCode(65)          // EX_DATAERR
        case "not_paired": ExitCode(66)                                              // EX_NOINPUT
        case "conflict", "config_device": ExitCode(67)                               // EX_NOUSER: the id is not ours to change
        case "bluetooth_unavailable", "device_not_answering": ExitStatus.unavailable // EX_UNAVAILABLE
        case "store": ExitCode(74)                                                   // EX_IOERR
        case "access_denied", "forbidden", "permission_denied": ExitCode(77)        // EX_NOPERM
        default: ExitCode(70)                                                        // EX_SOFTWARE
        }
    }

    /// The reply when `ok`; otherwise prints the error (as JSON with --json) and exits.
    static func send(_ request: JSONValue, connection: ConnectionOptions, timeoutSeconds: Int = 30) throws -> JSONValue {
        let reply: JSONValue
        do {
            // A Bluetooth pairing connects to the device first: allow it time.
            reply = try ControlClient.request(request, socketPath: connection.socketPath, timeoutSeconds: timeoutSeconds)
        } catch {
            printError(error.description)
            throw ExitStatus.unavailable
        }
        guard reply["ok"]?.boolValue == true else {
            let message = reply["error"]?.stringValue ?? "no reason given"
            if connection.json { print(reply.serialized) }
            printError(message)
            throw exitCode(for: reply["code"]?.stringValue)
        }
        return reply
    }
}
