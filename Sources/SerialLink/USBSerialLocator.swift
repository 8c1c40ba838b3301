import Glibc

/// A USB-serial adapter's identity, as `lsusb` prints it (`0403:6001`), and optionally its
/// serial number (iSerial), which tells two adapters of the same model apart.
public struct USBSerialID: Sendable, Hashable, CustomStringConvertible {
    /// Four lower-case hex digits.
    public var vendor: String
    public var product: String
    public var serial: String?

    public init(vendor: String, product: String, serial: String? = nil) {
        self.vendor = vendor.lowercased()
        self.product = product.lowercased()
        self.serial = serial
    }

    /// Parses `VVVV:PPPP` or `VVVV:PPPP:SERIAL`; nil if the ids are not four hex digits each.
    public init?(parsing text: some StringProtocol) {
        let parts = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2 else { return nil }
        for p in parts.prefix(2) { guard p.count == 4, p.allSatisfy(\.isHexDigit) else { return nil } }
        var serial: String?
        if parts.count == 3 {
            guard !parts[2].isEmpty else { return nil }
            serial = String(parts[2])
        }
        self.init(vendor: String(parts[0]), product: String(parts[1]), serial: serial)
    }

    public var description: String { "\(vendor):\(product)" + (serial.map { ":\($0)" } ?? "") }

    func matches(_ other: USBSerialID) -> Bool {
        vendor == other.vendor && product == other.product && (serial == nil || serial == other.serial)
    }
}

/// Finds the tty of a USB-serial adapter by its USB ids, through sysfs: each
/// `/sys/class/tty/<name>/device` link leads into the USB device's directory tree, whose
/// ancestor holds `idVendor`, `idProduct` and `serial` (Documentation/ABI/stable/sysfs-bus-usb).
/// Looked up afresh at every open, so an adapter that comes back on another ttyUSBn is found.
public struct USBSerialLocator: Sendable {
    public var sysfsRoot: String
    public var deviceRoot: String

    /// `sysfsRoot` and `deviceRoot` are parameters so tests can point them at a tree of their own.
    public init(sysfsRoot: String = "/sys", deviceRoot: String = "/dev") {
        self.sysfsRoot = sysfsRoot
        self.deviceRoot = deviceRoot
    }

    /// One tty and the adapter behind it.
    public struct Port: Sendable, Hashable {
        public var device: String
        public var id: USBSerialID
    }

    /// Every USB-serial tty present, sorted by device path.
    public func ports() -> [Port] {
        let classDir = sysfsRoot + "/class/tty"
        guard let dir = opendir(classDir) else { return [] }
        defer { closedir(dir) }
        var found: [Port] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard !name.hasPrefix(".") else { continue }
            guard let deviceDir = Self.realPath(classDir + "/" + name + "/device") else { continue }
            guard let id = usbIdentity(above: deviceDir) else { continue }
            found.append(Port(device: deviceRoot + "/" + name, id: id))
        }
        return found.sorted { $0.device < $1.device }
    }

    /// The device path of the one adapter that matches any of `ids`.
    public func locate(_ ids: [USBSerialID]) throws(SerialError) -> String {
        let matching = ports().filter { port in ids.contains { $0.matches(port.id) } }
        let wanted = ids.map(\.description).joined(separator: ", ")
        switch matching.count {
        case 1:
            return matching[0].device
        case 0:
            throw SerialError(code: .notFound, errno: ENOENT, path: "usb:" + wanted, operation: "locate",
                              reason: "no USB-serial adapter \(wanted) is plugged in")
        default:
            throw SerialError(code: .notFound, errno: 0, path: "usb:" + wanted, operation: "locate",
                              reason: "\(matching.count) adapters match \(wanted) (\(matching.map(\.device).joined(separator: ", "))); name the port by /dev/serial/by-id/… or add the adapter's serial number")
        }
    }

    /// Walks up from the tty's device directory (an interface such as `1-1:1.0`) to the USB
    /// device that holds `idVendor`; at most a few levels, and never out of the sysfs root.
    func usbIdentity(above path: String) -> USBSerialID? {
        var dir = path
        for _ in 0..<6 {
            if let vendor = Self.readLine(dir + "/idVendor"), let product = Self.readLine(dir + "/idProduct") {
                return USBSerialID(vendor: vendor, product: product, serial: Self.readLine(dir + "/serial"))
            }
            guard let slash = dir.lastIndex(of: "/"), dir.count > sysfsRoot.count + 1 else { return nil }
            dir = String(dir[..<slash])
            guard dir.hasPrefix(sysfsRoot) else { return nil }
        }
        return nil
    }

    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// The first line of a small sysfs attribute file, trimmed; nil if absent or empty.
    static func readLine(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        var n: Int
        repeat { n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } } while n < 0 && errno == EINTR
        guard n > 0 else { return nil }
        let line = buffer[0..<n].prefix(while: { $0 != 0x0A && $0 != 0x0D })
        let text = String(decoding: line, as: UTF8.self)
        return text.isEmpty ? nil : text
    }
}
