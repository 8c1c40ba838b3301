import Glibc
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
    /// `control:` — who may use the control socket (Access.swift).
    var control = Control()
    /// `downlink:` (DownlinkConfig.swift).
    var downlink = Downlink()
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
        /// `broker.tls` (docs/security.md); nil: plain TCP.
        var tls: TLS?
        /// `broker.protocol`: auto (default), mqtt5, mqtt311.
        var protocolVersion: MQTTProtocolVersion
        /// `broker.hub`: generic (default), azure-iot-hub, aws-iot-core (docs/cloud-topics.md).
        var hub: CloudHub
        /// `broker.topic_template`, with `{site}`, `{gateway}`, `{device_id}` (the client ID)
        /// and `{kind}`; nil: `<topic_prefix>/{kind}`.
        var topicTemplate: String?

        struct TLS: Decodable, Sendable {
            var caFile: String
            var certFile: String?
            var keyFile: String?
            var verifyHostname: Bool
            var minVersion: String
            var ciphers: String?
            var alpn: String?

            enum CodingKeys: String, CodingKey {
                case caFile = "ca_file"
                case certFile = "cert_file"
                case keyFile = "key_file"
                case verifyHostname = "verify_hostname"
                case minVersion = "min_version"
                case ciphers, alpn
            }

            init(from decoder: any Decoder) throws {
                let c = try decoder.container(keyedBy: CodingKeys.self)
                caFile = try c.decode(String.self, forKey: .caFile)
                certFile = try c.decodeIfPresent(String.self, forKey: .certFile)
                keyFile = try c.decodeIfPresent(String.self, forKey: .keyFile)
                verifyHostname = try c.decodeIfPresent(Bool.self, forKey: .verifyHostname) ?? true
                minVersion = try c.decodeIfPresent(String.self, forKey: .minVersion) ?? "tlsv1.2"
                ciphers = try c.decodeIfPresent(String.self, forKey: .ciphers)
                alpn = try c.decodeIfPresent(String.self, forKey: .alpn)
                guard ["tlsv1.2", "tlsv1.3"].contains(minVersion) else {
                    throw DecodingError.dataCorruptedError(forKey: .minVersion, in: c, debugDescription: "must be tlsv1.2 or tlsv1.3 (older TLS is never offered)")
                }
                if certFile != nil, keyFile == nil {
                    throw DecodingError.dataCorruptedError(forKey: .certFile, in: c, debugDescription: "a client certificate needs its private key: set key_file too")
                }
                if keyFile != nil, certFile == nil {
                    throw DecodingError.dataCorruptedError(forKey: .keyFile, in: c, debugDescription: "a private key needs its certificate: set cert_file too")
                }
                for (key, path) in [(CodingKeys.caFile, caFile), (.certFile, certFile), (.keyFile, keyFile)] {
                    guard let path else { continue }
                    guard path.hasPrefix("/") else {
                        throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "must be an absolute path")
                    }
                    if let problem = Self.unreadable(path) {
                        throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "\(path): \(problem)")
                    }
                }
                if let keyFile, let problem = Self.exposedKey(keyFile) ?? Self.encryptedKey(keyFile) {
                    throw DecodingError.dataCorruptedError(forKey: .keyFile, in: c, debugDescription: "\(keyFile): \(problem)")
                }
            }

            /// Why `path` cannot be read as a file by this process, or nil.
            static func unreadable(_ path: String) -> String? {
                var fd: Int32
                repeat { fd = open(path, O_RDONLY | O_CLOEXEC) } while fd < 0 && errno == EINTR
                guard fd >= 0 else {
                    let e = errno
                    return "cannot be read: \(String(cString: strerror(e))) (errno \(e))"
                }
                defer { close(fd) }
                var st = stat()
                guard fstat(fd, &st) == 0 else { return "cannot be inspected (errno \(errno))" }
                guard (st.st_mode & S_IFMT) == S_IFREG else { return "is not a regular file" }
                guard st.st_size > 0 else { return "is empty" }
                return nil
            }

            /// A private key others can read is a leaked key: refuse it (mode must not grant
            /// "other" any access). Says nothing about the key's content.
            static func exposedKey(_ path: String) -> String? {
                var st = stat()
                guard stat(path, &st) == 0 else { return nil }
                if st.st_mode & 0o007 != 0 {
                    return "the private key is accessible to every user (mode \(String(st.st_mode & 0o777, radix: 8))); chmod o-rwx it (e.g. 0640 root:vigil)"
                }
                return nil
            }

            /// An encrypted PEM key ("ENCRYPTED PRIVATE KEY", or a legacy "Proc-Type: 4,ENCRYPTED"
            /// header) cannot be loaded unattended. Reads the file's first 4 KiB; reports only
            /// that it is encrypted, never its content.
            static func encryptedKey(_ path: String) -> String? {
                var fd: Int32
                repeat { fd = open(path, O_RDONLY | O_CLOEXEC) } while fd < 0 && errno == EINTR
                guard fd >= 0 else { return nil }
                defer { close(fd) }
                var buf = [UInt8](repeating: 0, count: 4096)
                var n: Int
                repeat { n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } } while n < 0 && errno == EINTR
                guard n > 0 else { return nil }
                let head = String(decoding: buf[0..<n], as: UTF8.self)
                if head.contains("ENCRYPTED PRIVATE KEY") || head.contains("Proc-Type: 4,ENCRYPTED") {
                    return "the private key is encrypted; vigild needs an unencrypted key protected by file permissions (openssl pkey -in KEY -out KEY.plain)"
                }
                return nil
            }

            var options: MQTTTLSOptions {
                MQTTTLSOptions(caFile: caFile, certFile: certFile, keyFile: keyFile, verifyHostname: verifyHostname,
                               minimumVersion: minVersion, ciphers: ciphers, alpn: alpn)
            }
        }

        enum CodingKeys: String, CodingKey {
            case host, port, username, tls, hub
            case protocolVersion = "protocol"
            case topicTemplate = "topic_template"
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
            tls = try c.decodeIfPresent(TLS.self, forKey: .tls)
            let version = try c.decodeIfPresent(String.self, forKey: .protocolVersion) ?? "auto"
            guard let v = MQTTProtocolVersion(rawValue: version) else {
                throw DecodingError.dataCorruptedError(forKey: .protocolVersion, in: c, debugDescription: "must be auto, mqtt5 or mqtt311")
            }
            protocolVersion = v
            let hubName = try c.decodeIfPresent(String.self, forKey: .hub) ?? "generic"
            guard let h = CloudHub(rawValue: hubName) else {
                throw DecodingError.dataCorruptedError(forKey: .hub, in: c, debugDescription: "must be generic, azure-iot-hub or aws-iot-core")
            }
            hub = h
            topicTemplate = try c.decodeIfPresent(String.self, forKey: .topicTemplate)
            switch hub {
            case .generic:
                break
            case .azureIoTHub:
                // Azure IoT Hub: MQTT 3.1.1 over TLS on 8883, user name
                // "<hub>.azure-devices.net/<device_id>/?api-version=…", client ID = device ID.
                if protocolVersion == .mqtt5 {
                    throw DecodingError.dataCorruptedError(forKey: .protocolVersion, in: c, debugDescription: "Azure IoT Hub speaks MQTT 3.1.1 only: use mqtt311 or auto")
                }
                guard tls != nil else {
                    throw DecodingError.dataCorruptedError(forKey: .tls, in: c, debugDescription: "Azure IoT Hub accepts TLS connections only: set broker.tls")
                }
                guard let user = username, user.contains("/?api-version=") else {
                    throw DecodingError.dataCorruptedError(forKey: .username, in: c, debugDescription: "Azure IoT Hub needs the user name <hub>.azure-devices.net/<device_id>/?api-version=2021-04-12")
                }
                if topicTemplate == nil { topicTemplate = "devices/{device_id}/messages/events/" }
            case .awsIoTCore:
                guard tls != nil else {
                    throw DecodingError.dataCorruptedError(forKey: .tls, in: c, debugDescription: "AWS IoT Core accepts TLS connections only: set broker.tls (with cert_file and key_file)")
                }
            }
            if let t = topicTemplate {
                // The shape is checked here, so the error names the key; the lengths, which
                // depend on site and gateway, again in VigilConfig.init.
                let sample = t.replacing("{site}", with: "s").replacing("{gateway}", with: "g")
                    .replacing("{device_id}", with: clientID ?? "d")
                do {
                    let topics = try Topics(template: sample, hub: hub)
                    try topics.check(protocol: protocolVersion)
                } catch {
                    throw DecodingError.dataCorruptedError(forKey: .topicTemplate, in: c, debugDescription: error.reason)
                }
            } else if hub != .generic {
                do {
                    _ = try Topics(template: topicPrefix.replacing("{site}", with: "s").replacing("{gateway}", with: "g") + "/{kind}", hub: hub)
                } catch {
                    throw DecodingError.dataCorruptedError(forKey: .topicPrefix, in: c, debugDescription: error.reason)
                }
            }
        }
    }

    struct Outbox: Decodable, Sendable {
        /// 30 days of one reading per second from four devices.
        static let defaultCapacity = 30 * 86_400 * 4
        var capacityReadings = Outbox.defaultCapacity
        var maxInFlight = 256
        /// The reserve file kept beside the database and released when the disk is full
        /// (docs/configuration.md "Capacity", docs/faults.md "Disk full"), in KiB; 0: none.
        static let defaultDiskReserveKiB = 512
        var diskReserveKiB = Outbox.defaultDiskReserveKiB

        enum CodingKeys: String, CodingKey {
            case capacityReadings = "capacity_readings"
            case maxInFlight = "max_in_flight"
            case diskReserveKiB = "disk_reserve_kib"
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
            diskReserveKiB = try c.decodeIfPresent(Int.self, forKey: .diskReserveKiB) ?? Outbox.defaultDiskReserveKiB
            // Below 128 KiB a commit with its eviction may not fit in what the reserve frees
            // (measured: 64 KiB stalled commits on a 1 MiB file system; docs/configuration.md).
            guard diskReserveKiB == 0 || (128...65_536).contains(diskReserveKiB) else {
                throw DecodingError.dataCorruptedError(forKey: .diskReserveKiB, in: c, debugDescription: "must be 0 (no reserve) or between 128 and 65536 (KiB)")
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
        case site, gateway, paths, broker, outbox, devices
        case control
        case downlink
        case uplink
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
        control = try c.decodeIfPresent(Control.self, forKey: .control) ?? Control()
        downlink = try c.decodeIfPresent(Downlink.self, forKey: .downlink) ?? Downlink()
        uplink = try c.decodeIfPresent(UplinkSettings.self, forKey: .uplink) ?? UplinkSettings()
        var seen = Set<DeviceID>()
        for d in devices where !seen.insert(d.id).inserted {
            throw DecodingError.dataCorruptedError(forKey: .devices, in: c, debugDescription: "device id '\(d.id)' is used twice")
        }
        do {
            _ = try topics()
        } catch {
            throw DecodingError.dataCorruptedError(forKey: .broker, in: c, debugDescription: "topic_template: \(error.reason)")
        }
        // Azure IoT Hub: the MQTT client ID is the device ID, and the user name names it.
        if broker.hub == .azureIoTHub, let user = broker.username, !user.contains("/\(clientID)/?api-version=") {
            throw DecodingError.dataCorruptedError(
                forKey: .broker, in: c,
                debugDescription: "username: Azure IoT Hub needs <hub>.azure-devices.net/\(clientID)/?api-version=…, with the client ID (\(clientID)) as device ID")
        }
    }

    /// The topic prefix with `{site}` and `{gateway}` filled in.
    var topicPrefix: String {
        broker.topicPrefix.replacing("{site}", with: site).replacing("{gateway}", with: gateway)
    }

    /// The uplink topics: `broker.topic_template` (placeholders filled, `{kind}` kept) checked
    /// against `broker.hub`'s limits, or `<topic_prefix>/{kind}`.
    func topics() throws(MQTTError) -> Topics {
        guard let template = broker.topicTemplate else {
            return broker.hub == .generic ? try Topics(prefix: topicPrefix)
                : try Topics(template: topicPrefix + "/{kind}", hub: broker.hub)
        }
        let filled = template.replacing("{site}", with: site).replacing("{gateway}", with: gateway)
            .replacing("{device_id}", with: clientID)
        let topics = try Topics(template: filled, hub: broker.hub)
        try topics.check(protocol: broker.protocolVersion)
        return topics
    }

    var clientID: String { broker.clientID ?? "vigil-\(site)-\(gateway)" }
}
