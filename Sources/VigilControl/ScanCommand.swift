import ArgumentParser
import BluetoothLink
import DeviceProfiles
import Glibc
import StrictYAML
import VitalSigns

/// `vigilctl scan`: which Bluetooth LE health devices are advertising nearby, and which device
/// profiles each could be — what a field nurse needs before assigning a device to a patient.
struct Scan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Discover Bluetooth LE devices and match them against the device profiles.",
        discussion: """
            Listens for LE advertisements on the adapter for --seconds (an active scan, so \
            devices' scan responses bring their names) and prints each advertiser once, with its \
            address, signal strength, name, services and the profiles it matches, most specific \
            first (a model's name before the generic service profile). The LE scan uses raw HCI, \
            which needs CAP_NET_RAW: run it as root or with that capability, and with vigild's \
            own Bluetooth devices idle. --advertisement matches one advertisement given as hex \
            (the AD structures, as a sniffer shows them) instead of scanning. \
            Exit status: 0 success, 64 bad arguments, 65 an advertisement that cannot be parsed, \
            66 the profiles cannot be read, 69 Bluetooth is unavailable (the reason is printed).
            """)

    @Option(help: ArgumentHelp("How long to listen.", valueName: "seconds"))
    var seconds: Double = 10

    @Option(help: ArgumentHelp("The adapter's number (0 for hci0); default: the first available.", valueName: "n"))
    var adapter: Int32?

    @Option(help: ArgumentHelp("The device profiles directory.", valueName: "dir"))
    var profiles: String = "/usr/share/vigil/devices"

    @Option(help: ArgumentHelp("Match this advertisement (hex AD structures) instead of scanning.", valueName: "hex"))
    var advertisement: String?

    @Flag(help: "Print JSON lines instead of text.")
    var json = false

    @Flag(help: "Scan through the running vigild (which holds the radio and its capabilities) instead of here.")
    var daemon = false

    @Option(help: ArgumentHelp("With --daemon: vigild's control socket.", valueName: "path"))
    var socket: String?

    func validate() throws {
        guard seconds.isFinite, (1...600).contains(seconds) else { throw ValidationError("--seconds must be between 1 and 600") }
        if let adapter { guard (0...31).contains(adapter) else { throw ValidationError("--adapter must be between 0 and 31") } }
    }

    func run() async throws {
        if daemon {
            try runThroughDaemon()
            return
        }
        let known = try Self.loadProfiles(profiles)
        if let advertisement {
            guard let bytes = Decode.parseHex(advertisement) else {
                printError("--advertisement: not an even number of hexadecimal digits")
                throw ExitCode(65)
            }
            do {
                let data = try AdvertisingData.parse(bytes)
                emit(address: nil, rssi: nil, data: data, profiles: known)
            } catch {
                printError("--advertisement: \(error)")
                throw ExitCode(65)
            }
            return
        }
        let scanner: LEScanner
        do {
            scanner = try await LEScanner.start(adapter: adapter, active: true)
        } catch {
            printError(error.reason.hasPrefix("Bluetooth unavailable") ? error.reason : "Bluetooth unavailable: \(error.reason)")
            throw ExitCode(69)
        }
        let (heard, error) = await scanner.collect(for: .milliseconds(Int64(seconds * 1000)))
        if let error { printError("scan ended: \(error)") }
        for s in heard { emit(address: s.address, rssi: s.rssi, data: s.data, profiles: known) }
        if !json { printError("\(heard.count) advertiser\(heard.count == 1 ? "" : "s") in \(Int(seconds)) s") }
    }

    func emit(address: String?, rssi: Int8?, data: AdvertisingData, profiles known: [DeviceProfile]) {
        let services = data.serviceUUIDs.map(\.description)
        let matches = DeviceProfiles.profiles(matching: data.localName, serviceUUIDs: services, in: known).map(\.id)
        if json {
            print(JSONValue.object([
                ("address", address.map { .string($0) } ?? .null),
                ("rssi_dbm", rssi.map { .int(Int64($0)) } ?? .null),
                ("name", data.localName.map { .string($0) } ?? .null),
                ("services", .array(services.map { .string($0) })),
                ("profiles", .array(matches.map { .string($0) })),
            ]).serialized)
        } else {
            let where_ = address ?? "advertisement"
            let signal = rssi.map { " \($0) dBm" } ?? ""
            let name = data.localName.map { " \"\($0)\"" } ?? ""
            let svc = services.isEmpty ? "" : " services " + services.joined(separator: ",")
            let match = matches.isEmpty ? "no matching profile" : matches.joined(separator: ", ")
            print("\(where_)\(signal)\(name)\(svc) → \(match)")
        }
    }

    /// `--daemon`: vigild scans and matches against its own profiles.
    func runThroughDaemon() throws {
        var connection = ConnectionOptions()
        connection.socket = socket
        connection.json = json
        let reply = try RegistryRequest.send(.object([("command", "scan"), ("seconds", .double(seconds))]), connection: connection,
                                             timeoutSeconds: Int(seconds) + 10)
        let advertisers = reply["advertisers"]?.arrayValue ?? []
        for a in advertisers {
            if json {
                print(a.serialized)
                continue
            }
            let signal = a["rssi_dbm"]?.int64Value.map { " \($0) dBm" } ?? ""
            let name = a["name"]?.stringValue.map { " \"\($0)\"" } ?? ""
            let services = a["services"]?.arrayValue?.compactMap(\.stringValue) ?? []
            let svc = services.isEmpty ? "" : " services " + services.joined(separator: ",")
            let matches = a["profiles"]?.arrayValue?.compactMap(\.stringValue) ?? []
            print("\(a["address"]?.stringValue ?? "?")\(signal)\(name)\(svc) → \(matches.isEmpty ? "no matching profile" : matches.joined(separator: ", "))")
        }
        if !json { printError("\(advertisers.count) advertiser\(advertisers.count == 1 ? "" : "s") in \(Int(seconds)) s (through vigild)") }
    }

    /// Every `*.yaml` profile in `dir`; one that does not validate is an error naming it.
    static func loadProfiles(_ dir: String) throws -> [DeviceProfile] {
        guard let d = opendir(dir) else {
            printError("cannot read the profiles directory \(dir): \(String(cString: strerror(errno)))")
            throw ExitCode(66)
        }
        var names: [String] = []
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name.hasSuffix(".yaml") { names.append(name) }
        }
        closedir(d)
        var out: [DeviceProfile] = []
        for name in names.sorted() {
            let path = dir + "/" + name
            do {
                out.append(try YAMLDecoder().decode(DeviceProfile.self, from: try Decode.readText(path), fileName: path))
            } catch {
                printError("profile \(path): \(error)")
                throw ExitCode(66)
            }
        }
        return out
    }
}
