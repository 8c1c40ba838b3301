import DeviceDecoding
import Glibc
import SerialLink
import Testing
import VigilTestKit

/// A sysfs tree laid out as the kernel lays it out for USB-serial ttys (Documentation/ABI/stable/
/// sysfs-bus-usb): /sys/class/tty/<tty>/device → the USB interface directory, whose parent USB
/// device directory holds idVendor, idProduct and serial. Built from real directories and
/// symlinks in a temporary directory, and read by the real locator.
struct FakeSysfs {
    let root: String
    let devRoot: String

    init() throws {
        let base = makeTemporaryDirectory(prefix: "vigil-sysfs")
        root = base + "/sys"
        devRoot = base + "/dev"
        try Self.mkdirs(root + "/class/tty")
        try Self.mkdirs(devRoot)
    }

    static func mkdirs(_ path: String) throws {
        var current = ""
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST { throw SysfsError(path: current) }
        }
    }

    static func write(_ path: String, _ text: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw SysfsError(path: path) }
        defer { close(fd) }
        let bytes = Array((text + "\n").utf8)
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count else { throw SysfsError(path: path) }
    }

    /// Plugs an adapter into USB port `usbPort` as tty `tty`; the device node is a symlink to
    /// `node` (a pty's slave in tests that read it).
    func plug(tty: String, usbPort: String, vendor: String, product: String, serial: String?, node: String? = nil) throws {
        let usbDevice = root + "/devices/pci0000:00/0000:00:14.0/usb1/\(usbPort)"
        let interface = usbDevice + "/\(usbPort):1.0"
        try Self.mkdirs(interface + "/\(tty)/tty/\(tty)")
        try Self.write(usbDevice + "/idVendor", vendor)
        try Self.write(usbDevice + "/idProduct", product)
        if let serial { try Self.write(usbDevice + "/serial", serial) }
        // As usb-serial drivers lay it out: the class entry is the tty's own directory, whose
        // `device` link is the usb-serial port directory (a child of the USB interface).
        guard symlink(interface + "/\(tty)/tty/\(tty)", root + "/class/tty/\(tty)") == 0,
              symlink(interface + "/\(tty)", interface + "/\(tty)/tty/\(tty)/device") == 0 else { throw SysfsError(path: tty) }
        if let node { guard symlink(node, devRoot + "/\(tty)") == 0 else { throw SysfsError(path: node) } }
    }

    /// A non-USB tty (a built-in UART): its device is a platform device with no USB ids.
    func addPlatformTTY(_ tty: String) throws {
        let platform = root + "/devices/platform/serial8250/\(tty)"
        try Self.mkdirs(platform)
        guard symlink(root + "/devices/platform/serial8250", platform + "/device") == 0,
              symlink(platform, root + "/class/tty/\(tty)") == 0 else { throw SysfsError(path: tty) }
    }

    func unplug(tty: String) {
        unlink(root + "/class/tty/\(tty)")
        unlink(devRoot + "/\(tty)")
    }

    var locator: USBSerialLocator { USBSerialLocator(sysfsRoot: root, deviceRoot: devRoot) }
}

struct SysfsError: Error { var path: String }

@Suite("USB-serial adapters found by vendor and product id through sysfs")
struct USBSerialLocatorTests {
    @Test("ids parse as lsusb prints them, with an optional serial; anything else is refused")
    func parsing() {
        #expect(USBSerialID(parsing: "0403:6001") == USBSerialID(vendor: "0403", product: "6001"))
        #expect(USBSerialID(parsing: "10C4:EA60:A1B2") == USBSerialID(vendor: "10c4", product: "ea60", serial: "A1B2"))
        for bad in ["0403", "403:6001", "0403:60011", "zz03:6001", "0403:6001:", ""] {
            #expect(USBSerialID(parsing: bad) == nil, "\(bad)")
        }
    }

    @Test("the one matching adapter is found; a built-in UART and other adapters are ignored")
    func findsTheMatchingAdapter() throws {
        let sys = try FakeSysfs()
        try sys.addPlatformTTY("ttyS0")
        try sys.plug(tty: "ttyUSB0", usbPort: "1-1", vendor: "067b", product: "2303", serial: nil)
        try sys.plug(tty: "ttyUSB1", usbPort: "1-2", vendor: "0403", product: "6001", serial: "FT12AB")
        #expect(sys.locator.ports().map(\.device) == [sys.devRoot + "/ttyUSB0", sys.devRoot + "/ttyUSB1"])
        #expect(try sys.locator.locate([USBSerialID(vendor: "0403", product: "6001")]) == sys.devRoot + "/ttyUSB1")
        #expect(try sys.locator.locate([USBSerialID(vendor: "067b", product: "2303")]) == sys.devRoot + "/ttyUSB0")
    }

    @Test("two adapters of one model are ambiguous unless the serial number is given; none is not found")
    func ambiguityAndAbsence() throws {
        let sys = try FakeSysfs()
        try sys.plug(tty: "ttyUSB0", usbPort: "1-1", vendor: "0403", product: "6001", serial: "AAA1")
        try sys.plug(tty: "ttyUSB1", usbPort: "1-2", vendor: "0403", product: "6001", serial: "BBB2")
        let error = #expect(throws: SerialError.self) { try sys.locator.locate([USBSerialID(vendor: "0403", product: "6001")]) }
        #expect(error?.reason.contains("2 adapters match 0403:6001") == true)
        #expect(try sys.locator.locate([USBSerialID(vendor: "0403", product: "6001", serial: "BBB2")]) == sys.devRoot + "/ttyUSB1")
        let none = #expect(throws: SerialError.self) { try sys.locator.locate([USBSerialID(vendor: "10c4", product: "ea60")]) }
        #expect(none?.code == .notFound)
        #expect(none?.reason.contains("no USB-serial adapter 10c4:ea60 is plugged in") == true)
    }

    @Test("a link addressed usb:VVVV:PPPP reads the adapter, reports its unplug, and finds it again on another tty")
    func linkFollowsTheAdapterAcrossTTYs() async throws {
        let sys = try FakeSysfs()
        let first = try PseudoTerminal()
        try sys.plug(tty: "ttyUSB0", usbPort: "1-1", vendor: "0403", product: "6001", serial: "X1", node: first.slavePath)

        enum Event: Sendable, Hashable { case open(String), unavailable(String), bytes([UInt8]) }
        let log = EventLog<Event>()
        var link = SerialDeviceLink(path: "usb:0403:6001", settings: .rad8,
                                    backoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(100))) { state in
            switch state {
            case .open(_, let device): log.append(.open(device))
            case .unavailable(let reason, _): log.append(.unavailable(reason))
            case .opening: break
            }
        }
        link.locator = sys.locator
        let task = Task { [link] in try await link.run { log.append(.bytes($0.bytes)) } }
        defer { task.cancel() }

        var c = try #require(await log.next(from: 0, within: .seconds(5)) { $0 == .open(first.slavePath) }).cursor
        try await first.write(Array("one\r\n".utf8))
        c = try #require(await log.next(from: c, within: .seconds(5)) { $0 == .bytes(Array("one\r\n".utf8)) }).cursor

        first.close()
        sys.unplug(tty: "ttyUSB0")
        c = try #require(await log.next(from: c, within: .seconds(5)) {
            if case .unavailable(let r) = $0 { r.contains("no USB-serial adapter 0403:6001") } else { false }
        }).cursor

        let second = try PseudoTerminal()
        defer { second.close() }
        try sys.plug(tty: "ttyUSB3", usbPort: "1-4", vendor: "0403", product: "6001", serial: "X1", node: second.slavePath)
        c = try #require(await log.next(from: c, within: .seconds(5)) { $0 == .open(second.slavePath) }).cursor
        try await second.write(Array("two\r\n".utf8))
        #expect(await log.next(from: c, within: .seconds(5)) { $0 == .bytes(Array("two\r\n".utf8)) } != nil)
        task.cancel()
        try await task.value
    }
}

@Suite("A streaming device that must be asked: the link's start command and keep-alive")
struct StreamSessionTests {
    /// Reads what the link wrote to the device (the pty master) until `enough` says so or the
    /// window ends.
    static func readMaster(_ pty: PseudoTerminal, for window: Duration,
                           until enough: ([UInt8]) -> Bool = { _ in false }) async -> [UInt8] {
        var got: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        let clock = ContinuousClock()
        let end = clock.now + window
        while clock.now < end, !enough(got) {
            var p = pollfd(fd: pty.masterFD, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 0) > 0, p.revents & Int16(POLLIN) != 0 {
                let n = buffer.withUnsafeMutableBytes { read(pty.masterFD, $0.baseAddress, $0.count) }
                if n > 0 { got += buffer[0..<n] }
            } else {
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
        return got
    }

    @Test("the opening bytes go out when the port opens, then a keep-alive every interval until the link stops")
    func openingAndKeepAlive() async throws {
        let pty = try PseudoTerminal(holdSlaveOpen: true)
        defer { pty.close() }
        var link = SerialDeviceLink(path: pty.slavePath, settings: SerialSettings(baud: 115_200),
                                    backoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(100))) { _ in }
        link.session = StreamSession(opening: [0x7D, 0x81, 0xA1], keepAlive: [0x7D, 0x81, 0xAF], keepAliveInterval: .milliseconds(100))
        let clock = ContinuousClock()
        let started = clock.now
        let task = Task { [link] in try await link.run { _ in } }
        // The start command, then at least three keep-alives. The window is long because CPU-bound
        // tests running beside this one can hold every thread of the pool for seconds.
        let sent = await Self.readMaster(pty, for: .seconds(60)) { $0.count >= 12 }
        let elapsed = clock.now - started
        task.cancel()
        try await task.value
        #expect(Array(sent.prefix(3)) == [0x7D, 0x81, 0xA1], "the start command first")
        #expect(sent.count >= 12, "three keep-alives within 60 s: \(sent.count) bytes")
        #expect(stride(from: 3, to: sent.count - 2, by: 3).allSatisfy { Array(sent[$0..<$0 + 3]) == [0x7D, 0x81, 0xAF] })
        // Paced by the interval, not a tight loop: at most one per 100 ms (plus one in flight).
        #expect((sent.count - 3) / 3 <= Int(elapsed / .milliseconds(100)) + 1, "\(sent.count) bytes in \(elapsed)")
        // Stopped: once what was already queued is drained, nothing more is sent.
        _ = await Self.readMaster(pty, for: .milliseconds(300))
        let after = await Self.readMaster(pty, for: .milliseconds(400))
        #expect(after.isEmpty, "no keep-alive after the link stopped")
    }

    @Test("the Contec V7 decoder's device is started with stop-storage then start-real-time and kept alive every 5 s")
    func contecSession() throws {
        let session = try #require(makeStreamSession(named: "contec-cms50-v7"))
        #expect(session.opening == ContecV7RealtimeSession.openingBytes)
        #expect(session.keepAlive == ContecV7RealtimeSession.keepAliveBytes)
        #expect(session.keepAliveInterval == .seconds(5))
        #expect(makeStreamSession(named: "nonin-sdf2") == nil, "a device that streams unasked gets nothing")
    }
}
