import SerialLink
import StrictYAML
import Uplink
import VitalSigns

/// `vigild`'s configuration, read from `/etc/vigil/vigild.yaml`.
///
/// YAML, because Vigil's device profiles and care plans are YAML too: one format and one
/// strict parser (`StrictYAML`) for everything a technician or clinician edits, with errors
/// that name the file, line and field. Unknown fields are errors, so a typo is never
/// silently ignored. See `docs/configuration.md`.
struct VigilConfig: Decodable, Sendable {
    var site: String
    var gateway: String
    var logLevel: String
    var paths: Paths
    var broker: Broker
    var outbox: Outbox
    var devices: [DeviceEntry]
    var uplink: UplinkSettings

    struct Paths: Decodable, Sendable {
        var database = "/var/lib/vigil/vigil.sqlite"
        var controlSocket = "/run/vigil/control.sock"
        var carePlans = "/etc/vigil/care-plans"
        var deviceProfiles = "/usr/share/vigil/devices"

        enum CodingKeys: String, CodingKey {
            case database
            case controlSocket = "control_socket"
            case carePlans = "care_plans"
            case deviceProfiles = "device_profiles"
        }
        init() {}
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let d = Paths()
            database = try c.decodeIfPresent(String.self, forKey: .database) ?? d.database
            controlSocket = try c.decodeIfPresent(String.self, forKey: .controlSocket) ?? d.controlSocket
            carePlans = try c.decodeIfPresent(String.self, forKey: .carePlans) ?? d.carePlans
            deviceProfiles = try c.decodeIfPresent(String.self, forKey: .deviceProfiles) ?? d.deviceProfiles
            for (key, value) in [(CodingKeys.database, database), (.controlSocket, controlSocket),
                                 (.carePlans, carePlans), (.deviceProfiles, deviceProfiles)] where !value.hasPrefix("/") {
                throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "must be an absolute path")
            }
        }
    }

    struct Broker: Decodable, Sendable {
        var host: String
        var port: Int
        var clientID: String?
        var keepAliveSeconds: Int
        var topicPrefix: String
        var username: String?
        var passwordFile: String?
        var reconnectMinMilliseconds: Int
        var reconnectMaxMilliseconds: Int

        enum CodingKeys: String, CodingKey {
            case host, port, username
            case clientID = "client_id"
            case keepAliveSeconds = "keepalive_seconds"
            case topicPrefix = "topic_prefix"
            case passwordFile = "password_file"
            case reconnectMinMilliseconds = "reconnect_min_ms"
            case reconnectMaxMilliseconds = "reconnect_max_ms"
        }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            host = try c.decode(String.self, forKey: .host)
            guard !host.isEmpty else {
                throw DecodingError.dataCorruptedError(forKey: .host, in: c, debugDescription: "must not be empty")
            }
            port = try c.decodeIfPresent(Int.self, forKey: .port) ?? 1883
            guard (1...65_535).contains(port) else {
                throw DecodingError.dataCorruptedError(forKey: .port, in: c, debugDescription: "must be between 1 and 65535")
            }
            clientID = try c.decodeIfPresent(String.self, forKey: .clientID)
            if let id = clientID, id.isEmpty || id.utf8.count > 23 * 4 {
                throw DecodingError.dataCorruptedError(forKey: .clientID, in: c, debugDescription: "must be 1–92 bytes")
            }
            keepAliveSeconds = try c.decodeIfPresent(Int.self, forKey: .keepAliveSeconds) ?? 30
            guard (5...3600).contains(keepAliveSeconds) else {
                throw DecodingError.dataCorruptedError(forKey: .keepAliveSeconds, in: c, debugDescription: "must be between 5 and 3600")
            }
            topicPrefix = try c.decodeIfPresent(String.self, forKey: .topicPrefix) ?? "vigil/v1/{site}/{gateway}"
            guard !topicPrefix.isEmpty, !topicPrefix.contains("#"), !topicPrefix.contains("+"), !topicPrefix.hasSuffix("/") else {
                throw DecodingError.dataCorruptedError(
                    forKey: .topicPrefix, in: c, debugDescription: "must be a topic with no wildcards and no trailing '/'")
            }
            username = try c.decodeIfPresent(String.self, forKey: .username)
            passwordFile = try c.decodeIfPresent(String.self, forKey: .passwordFile)
            reconnectMinMilliseconds = try c.decodeIfPresent(Int.self, forKey: .reconnectMinMilliseconds) ?? 500
            reconnectMaxMilliseconds = try c.decodeIfPresent(Int.self, forKey: .reconnectMaxMilliseconds) ?? 30_000
            guard (50...3_600_000).contains(reconnectMinMilliseconds),
                  (reconnectMinMilliseconds...3_600_000).contains(reconnectMaxMilliseconds) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .reconnectMaxMilliseconds, in: c,
                    debugDescription: "needs 50 ≤ reconnect_min_ms ≤ reconnect_max_ms ≤ 3600000")
            }
        }
    }

    struct Outbox: Decodable, Sendable {
        /// 30 days of one reading per second from four devices.
        static let defaultCapacity = 30 * 86_400 * 4
        var capacityReadings = Outbox.defaultCapacity
        var maxInFlight = 256

        enum CodingKeys: String, CodingKey {
            case capacityReadings = "capacity_readings"
            case maxInFlight = "max_in_flight"
        }
        init() {}
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            capacityReadings = try c.decodeIfPresent(Int.self, forKey: .capacityReadings) ?? Outbox.defaultCapacity
            guard (100...1_000_000_000).contains(capacityReadings) else {
                throw DecodingError.dataCorruptedError(forKey: .capacityReadings, in: c, debugDescription: "must be between 100 and 1000000000")
            }
            maxInFlight = try c.decodeIfPresent(Int.self, forKey: .maxInFlight) ?? 256
            guard (1...65_535).contains(maxInFlight) else {
                throw DecodingError.dataCorruptedError(forKey: .maxInFlight, in: c, debugDescription: "must be between 1 and 65535")
            }
        }
    }

    /// `uplink:` — how readings and escalations are encoded (docs/payloads.md).
    struct UplinkSettings: Decodable, Sendable {
        var encoding = UplinkEncodingKind.vigilJSON
        /// Observations per FHIR Bundle, at most (`fhir-bundle`, `fhir-bundle-deflate`).
        var batchMax = 50
        /// MQTT 5 message expiry for routine readings, seconds; nil: never. Escalations, events
        /// and status never expire.
        var readingExpirySeconds: UInt32?
        var escalations = EscalationRendering.vigilJSON

        enum CodingKeys: String, CodingKey {
            case encoding, escalations
            case batchMax = "batch_max"
            case readingExpirySeconds = "reading_expiry_seconds"
        }
        init() {}
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            if let text = try c.decodeIfPresent(String.self, forKey: .encoding) {
                guard let kind = UplinkEncodingKind(rawValue: text) else {
                    throw DecodingError.dataCorruptedError(forKey: .encoding, in: c, debugDescription: "must be one of \(UplinkEncodingKind.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                encoding = kind
            }
            if let text = try c.decodeIfPresent(String.self, forKey: .escalations) {
                guard let r = EscalationRendering(rawValue: text) else {
                    throw DecodingError.dataCorruptedError(forKey: .escalations, in: c, debugDescription: "must be vigil-json or fhir")
                }
                escalations = r
            }
            batchMax = try c.decodeIfPresent(Int.self, forKey: .batchMax) ?? 50
            guard (1...1000).contains(batchMax) else {
                throw DecodingError.dataCorruptedError(forKey: .batchMax, in: c, debugDescription: "must be between 1 and 1000")
            }
            if let e = try c.decodeIfPresent(Int.self, forKey: .readingExpirySeconds) {
                // MQTT 5 §3.3.2.3.3: a four-byte interval; 0 would mean "expire at once".
                guard (1...Int(UInt32.max)).contains(e) else {
                    throw DecodingError.dataCorruptedError(forKey: .readingExpirySeconds, in: c, debugDescription: "must be between 1 and 4294967295 seconds")
                }
                readingExpirySeconds = UInt32(e)
            }
        }
    }

    struct DeviceEntry: Decodable, Sendable {
        var id: DeviceID
        var profile: String
        var link: Link
        var patient: PatientID
        /// The zone the device's clock is set in, seconds east of UTC.
        var clockUTCOffsetSeconds: Int
        /// For a meter that is downloaded rather than listened to: how often to ask.
        var downloadIntervalSeconds: Int64

        /// `port: usb`: the USB-serial adapter the device's profile names (`match: usb:`).
        static let profileUSBPort = "usb"

        /// How the gateway reaches the device: a serial port, or a Bluetooth LE address
        /// reached over the kernel's L2CAP ATT channel or, for tests and the demo, over a Unix
        /// SOCK_SEQPACKET socket carrying raw ATT PDUs (`transport: seqpacket:/path`).
        enum Link: Sendable, Hashable {
            case serial(path: String)
            case ble(address: String, seqpacketPath: String?)
        }

        /// The serial port's path, for a serial device.
        var port: String? {
            if case .serial(let path) = link { return path }
            return nil
        }

        /// What `vigilctl status` shows as the device's port: the tty path, or the BLE address
        /// (with the seam's socket when simulated).
        var endpoint: String {
            switch link {
            case .serial(let path): return path
            case .ble(let address, let seam?): return "\(address) via seqpacket:\(seam)"
            case .ble(let address, nil): return address
            }
        }

        enum CodingKeys: String, CodingKey {
            case id, profile, port, address, transport, patient
            case clockUTCOffset = "clock_utc_offset"
            case downloadInterval = "download_interval_seconds"
        }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let id = try c.decode(String.self, forKey: .id)
            guard !id.isEmpty, id.utf8.count <= 64,
                  id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
                throw DecodingError.dataCorruptedError(forKey: .id, in: c, debugDescription: "must be 1–64 ASCII letters, digits, '-' or '_'")
            }
            self.id = DeviceID(id)
            profile = try c.decode(String.self, forKey: .profile)
            let port = try c.decodeIfPresent(String.self, forKey: .port)
            let address = try c.decodeIfPresent(String.self, forKey: .address)
            let transport = try c.decodeIfPresent(String.self, forKey: .transport)
            switch (port, address) {
            case (let port?, nil):
                guard port.hasPrefix("/") || port == Self.profileUSBPort
                        || (port.hasPrefix("usb:") && USBSerialID(parsing: port.dropFirst(4)) != nil) else {
                    throw DecodingError.dataCorruptedError(
                        forKey: .port, in: c,
                        debugDescription: "must be an absolute path such as /dev/serial/by-id/…, usb:VVVV:PPPP[:SERIAL] (USB vendor and product ids, as lsusb prints them), or usb (the adapter the profile names)")
                }
                if transport != nil {
                    throw DecodingError.dataCorruptedError(
                        forKey: .transport, in: c, debugDescription: "only a Bluetooth device (address:) takes a transport")
                }
                link = .serial(path: port)
            case (nil, let address?):
                guard let normalized = Self.parseAddress(address) else {
                    throw DecodingError.dataCorruptedError(
                        forKey: .address, in: c, debugDescription: "must be a Bluetooth address such as AA:BB:CC:DD:EE:FF")
                }
                var seam: String?
                if let transport {
                    let prefix = "seqpacket:"
                    guard transport.hasPrefix(prefix), transport.dropFirst(prefix.count).hasPrefix("/"),
                          transport.utf8.count - prefix.utf8.count < 108 else {
                        throw DecodingError.dataCorruptedError(
                            forKey: .transport, in: c,
                            debugDescription: "must be seqpacket:/absolute/path (a Unix socket path under 108 bytes) or absent for the radio")
                    }
                    seam = String(transport.dropFirst(prefix.count))
                }
                link = .ble(address: normalized, seqpacketPath: seam)
            case (nil, nil):
                throw DecodingError.dataCorruptedError(
                    forKey: .port, in: c, debugDescription: "a device needs port: (serial) or address: (Bluetooth LE)")
            case (_?, _?):
                throw DecodingError.dataCorruptedError(
                    forKey: .address, in: c, debugDescription: "a device has either port: (serial) or address: (Bluetooth LE), not both")
            }
            let patient = try c.decode(String.self, forKey: .patient)
            guard !patient.isEmpty, patient.utf8.count <= 128 else {
                throw DecodingError.dataCorruptedError(forKey: .patient, in: c, debugDescription: "must be 1–128 characters")
            }
            self.patient = PatientID(patient)
            let offset = try c.decodeIfPresent(String.self, forKey: .clockUTCOffset) ?? "+00:00"
            guard let seconds = Self.parseOffset(offset) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .clockUTCOffset, in: c, debugDescription: "must look like +01:00, -05:30 or Z")
            }
            clockUTCOffsetSeconds = seconds
            downloadIntervalSeconds = try c.decodeIfPresent(Int64.self, forKey: .downloadInterval) ?? 300
            guard (10...86_400).contains(downloadIntervalSeconds) else {
                throw DecodingError.dataCorruptedError(forKey: .downloadInterval, in: c, debugDescription: "must be between 10 and 86400 seconds")
            }
        }

        /// `AA:BB:CC:DD:EE:FF` (either case) → upper case; nil for anything else.
        static func parseAddress(_ text: String) -> String? {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 6, parts.allSatisfy({ $0.count == 2 && $0.allSatisfy(\.isHexDigit) && $0.allSatisfy(\.isASCII) }) else {
                return nil
            }
            return text.uppercased()
        }

        static func parseOffset(_ text: String) -> Int? {
            if text == "Z" { return 0 }
            let b = Array(text.utf8)
            guard b.count == 6, b[0] == 43 || b[0] == 45, b[3] == 58,
                  let h = Int(String(decoding: b[1...2], as: UTF8.self)),
                  let m = Int(String(decoding: b[4...5], as: UTF8.self)), h <= 14, m < 60 else { return nil }
            return (h * 3600 + m * 60) * (b[0] == 45 ? -1 : 1)
        }
    }

    enum CodingKeys: String, CodingKey {
        case site, gateway, paths, broker, outbox, devices, uplink
        case logLevel = "log_level"
    }

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        site = try c.decode(String.self, forKey: .site)
        gateway = try c.decode(String.self, forKey: .gateway)
        for (key, value) in [(CodingKeys.site, site), (.gateway, gateway)] {
            guard !value.isEmpty, value.utf8.count <= 64,
                  value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
                throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "must be 1–64 ASCII letters, digits, '-' or '_' (it becomes an MQTT topic level)")
            }
        }
        logLevel = try c.decodeIfPresent(String.self, forKey: .logLevel) ?? "info"
        guard Self.logLevels.contains(logLevel) else {
            throw DecodingError.dataCorruptedError(forKey: .logLevel, in: c, debugDescription: "must be one of \(Self.logLevels.joined(separator: ", "))")
        }
        paths = try c.decodeIfPresent(Paths.self, forKey: .paths) ?? Paths()
        broker = try c.decode(Broker.self, forKey: .broker)
        outbox = try c.decodeIfPresent(Outbox.self, forKey: .outbox) ?? Outbox()
        devices = try c.decodeIfPresent([DeviceEntry].self, forKey: .devices) ?? []
        uplink = try c.decodeIfPresent(UplinkSettings.self, forKey: .uplink) ?? UplinkSettings()
        var seen = Set<DeviceID>()
        for d in devices where !seen.insert(d.id).inserted {
            throw DecodingError.dataCorruptedError(forKey: .devices, in: c, debugDescription: "device id '\(d.id)' is used twice")
        }
    }

    /// The topic prefix with `{site}` and `{gateway}` filled in.
    var topicPrefix: String {
        broker.topicPrefix.replacing("{site}", with: site).replacing("{gateway}", with: gateway)
    }

    var clientID: String { broker.clientID ?? "vigil-\(site)-\(gateway)" }
}
