import ClinicalRules
import DeviceDecoding
import DeviceProfiles
import Glibc
import Logging
import StrictYAML
import VitalSigns

enum VigilVersion {
    static let string = "0.1.0"
}

/// Exit statuses from sysexits.h, which systemd and scripts can act on.
enum ExitCode {
    static let usage: Int32 = 64        // EX_USAGE
    /// SQLite reported the database damaged while running (DatabaseQuarantine.swift): restart.
    static let databaseDamaged: Int32 = 65  // EX_DATAERR
    static let software: Int32 = 70     // EX_SOFTWARE
    static let cantCreate: Int32 = 73   // EX_CANTCREAT
    static let ioError: Int32 = 74      // EX_IOERR
    static let config: Int32 = 78       // EX_CONFIG
}

/// vigild's command line. Deliberately small: everything else is in the config file.
struct DaemonArguments {
    /// `--config`, else `$VIGIL_CONFIG` (for runs where the command line cannot be passed, such
    /// as under an `LD_PRELOAD` clock shim in the fault suite), else the installed path.
    var configPath = getenv("VIGIL_CONFIG").map { String(cString: $0) } ?? "/etc/vigil/vigild.yaml"
    var checkOnly = false
    var showHelp = false
    var showVersion = false
    var database: String?
    var controlSocket: String?
    var carePlans: String?
    var deviceProfiles: String?

    struct UsageError: Error, CustomStringConvertible {
        var description: String
    }

    static let usage = """
        usage: vigild [--config PATH] [--check-config] [--database PATH] [--control-socket PATH]
                      [--care-plans DIR] [--device-profiles DIR] [--version] [--help]

        Vigil remote patient monitoring gateway daemon. Reads vital signs from the devices in
        the config, commits every reading to SQLite before anything else, evaluates the care
        plans' rules and forwards readings and escalations over MQTT.

          --config PATH            configuration file (default $VIGIL_CONFIG, else /etc/vigil/vigild.yaml)
          --check-config           validate the config, device profiles and care plans, then exit
          --database PATH          override paths.database
          --control-socket PATH    override paths.control_socket
          --care-plans DIR         override paths.care_plans
          --device-profiles DIR    override paths.device_profiles
          --version                print the version
          --help                   print this help

        Exit status: 0 after a clean shutdown (SIGTERM/SIGINT drain), 64 bad arguments,
        65 the database was found damaged while running (the next start checks it and
        quarantines it if damaged), 70 internal error, 73 the database cannot be opened,
        74 I/O error, 78 bad configuration.

        """

    static func parse(_ args: [String]) throws(UsageError) -> DaemonArguments {
        var result = DaemonArguments()
        var i = 0
        func value(_ flag: String) throws(UsageError) -> String {
            i += 1
            guard i < args.count, !args[i].hasPrefix("--") else { throw UsageError(description: "\(flag) needs a value") }
            return args[i]
        }
        while i < args.count {
            let arg = args[i]
            switch arg {
            case "--config": result.configPath = try value(arg)
            case "--check-config": result.checkOnly = true
            case "--database": result.database = try value(arg)
            case "--control-socket": result.controlSocket = try value(arg)
            case "--care-plans": result.carePlans = try value(arg)
            case "--device-profiles": result.deviceProfiles = try value(arg)
            case "--help", "-h": result.showHelp = true
            case "--version": result.showVersion = true
            default: throw UsageError(description: "unknown argument '\(arg)'")
            }
            i += 1
        }
        return result
    }
}

/// Everything loaded and validated before the daemon touches a device.
struct DaemonSetup: Sendable {
    var config: VigilConfig
    var profiles: [String: DeviceProfile]
    var plans: [CarePlan]
    /// Care plans refused at load, with their reasons (the others are in force).
    var planProblems: [String]
    var brokerPassword: String?

    struct SetupError: Error, CustomStringConvertible {
        var description: String
    }

    static func load(_ arguments: DaemonArguments) throws(SetupError) -> DaemonSetup {
        var config: VigilConfig
        do {
            let bytes = try TextFile.readBytes(arguments.configPath)
            config = try YAMLDecoder().decode(VigilConfig.self, from: bytes, fileName: arguments.configPath)
        } catch {
            throw SetupError(description: "\(error)")
        }
        if let p = arguments.database { config.paths.database = p }
        if let p = arguments.controlSocket { config.paths.controlSocket = p }
        if let p = arguments.carePlans { config.paths.carePlans = p }
        if let p = arguments.deviceProfiles { config.paths.deviceProfiles = p }

        var profiles: [String: DeviceProfile] = [:]
        for device in config.devices where profiles[device.profile] == nil {
            let path = config.paths.deviceProfiles + "/" + device.profile + ".yaml"
            let profile: DeviceProfile
            do {
                profile = try YAMLDecoder().decode(DeviceProfile.self, from: try TextFile.readBytes(path), fileName: path)
            } catch {
                throw SetupError(description: "device \(device.id): profile '\(device.profile)': \(error)")
            }
            guard profile.id == device.profile else {
                throw SetupError(description: "\(path): id is '\(profile.id)' but the file is named for '\(device.profile)'")
            }
            // A BLE profile's decoder is always the GATT decoder (the profile refuses anything else).
            guard profile.transport == .ble || profile.makeStreamDecoder() != nil else {
                throw SetupError(description: "\(path): decoder '\(profile.decoder)' is not built into this vigild")
            }
            profiles[device.profile] = profile
        }

        // A serial profile needs port:, a Bluetooth one address:.
        for device in config.devices {
            guard let profile = profiles[device.profile] else { continue }
            switch (profile.transport, device.link) {
            case (.serial, .serial(let path)):
                if path == VigilConfig.DeviceEntry.profileUSBPort, profile.usbAddress == nil {
                    throw SetupError(description: "device \(device.id): port: usb, but profile '\(profile.id)' names no USB adapter (match: usb:)")
                }
            case (.ble, .ble): break
            case (.serial, .ble):
                throw SetupError(description: "device \(device.id): profile '\(profile.id)' is a serial device; give it port:, not address:")
            case (.ble, .serial):
                throw SetupError(description: "device \(device.id): profile '\(profile.id)' is a Bluetooth LE device; give it address:, not port:")
            }
        }

        let (plans, problems) = RuleEvaluator.loadPlans(directory: config.paths.carePlans)
        if arguments.checkOnly, !problems.isEmpty {
            throw SetupError(description: problems.joined(separator: "\n"))
        }

        var password: String?
        if let file = config.broker.passwordFile {
            do {
                password = try TextFile.read(file).trimmingTrailingNewlines()
            } catch {
                throw SetupError(description: "broker.password_file: \(error)")
            }
        }
        return DaemonSetup(config: config, profiles: profiles, plans: plans, planProblems: problems, brokerPassword: password)
    }
}

extension String {
    func trimmingTrailingNewlines() -> String {
        var s = Substring(self)
        while s.last == "\n" || s.last == "\r" { s = s.dropLast() }
        return String(s)
    }
}
