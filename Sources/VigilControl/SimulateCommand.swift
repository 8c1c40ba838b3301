import ArgumentParser
import BluetoothLink
import DeviceDecoding
@preconcurrency import Dispatch
import Glibc
import SerialLink
import VitalSigns

/// `vigilctl simulate`: a serial device made of a capture file and a pseudo-terminal, for
/// the demo and for bench tests without hardware.
struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Play a device capture into a pseudo-terminal, or be a Bluetooth LE device on a seqpacket socket.",
        discussion: """
            Serial (--capture): opens a pseudo-terminal, prints its device path (and keeps --link \
            pointing at it), then writes the capture's bytes with their recorded timing. Point \
            vigild's serial device at the printed path or the link. Capture format: \
            firmware-fixtures/README.md.
            Bluetooth LE (--ble with --socket): listens on a Unix SOCK_SEQPACKET socket and, for \
            each connection, acts as the GATT server the .att capture describes (MTU, discovery, \
            reads, CCCDs, RACP) and plays its script (notifications, indications that wait for \
            the confirmation). Point a vigild BLE device at it with \
            transport: "seqpacket:<socket>". Capture format: firmware-fixtures/ble/.
            Runs until SIGINT or SIGTERM; the link or socket is removed on exit.
            """)

    @Option(help: "The serial capture file ('<ms offset> <hex bytes>' lines, as in firmware-fixtures/).")
    var capture: String?

    @Option(name: .customLong("ble"), help: "A Bluetooth LE capture (.att, as in firmware-fixtures/ble/) to serve as a simulated peripheral.")
    var bleCapture: String?

    @Option(help: "With --ble: the Unix seqpacket socket path to listen on.")
    var socket: String?

    @Option(help: "Keep a symlink at this path pointing to the pseudo-terminal (for example /tmp/vigil-rad8).")
    var link: String?

    @Option(help: "Time scale: 2 plays twice as fast, 0 as fast as possible.")
    var speed: Double = 1

    @Flag(help: "Start again from the first record after the last.")
    var loop = false

    @Flag(help: "Print the device path as one JSON object instead of text.")
    var json = false

    func validate() throws {
        switch (capture, bleCapture) {
        case (nil, nil): throw ValidationError("give --capture (serial) or --ble with --socket (Bluetooth LE)")
        case (_?, _?): throw ValidationError("give either --capture or --ble, not both")
        case (nil, _?):
            guard let socket, socket.hasPrefix("/"), socket.utf8.count < 108 else {
                throw ValidationError("--ble needs --socket /absolute/path (under 108 bytes)")
            }
            if link != nil { throw ValidationError("--link is for serial captures; use --socket with --ble") }
        case (_?, nil):
            if socket != nil { throw ValidationError("--socket is for --ble") }
        }
        guard speed.isFinite, speed == 0 || (0.01...1000).contains(speed) else {
            throw ValidationError("--speed must be 0 (as fast as possible) or between 0.01 and 1000")
        }
    }

    func run() async throws {
        if let bleCapture, let socket {
            try await runBLE(capturePath: bleCapture, socketPath: socket)
            return
        }
        guard let capture else { return }
        let records = try Self.load(capture)
        let pty = try PseudoTerminal(linkPath: link, holdSlaveOpen: true)
        defer { pty.close() }
        if json {
            let linkValue: JSONValue = link.map { JSONValue.string($0) } ?? .null
            let members: [(String, JSONValue)] = [
                ("device", .string(pty.slavePath)), ("link", linkValue), ("records", .int(Int64(records.count))),
                ("speed", .double(speed)), ("loop", .bool(loop)),
            ]
            let doc = JSONValue.object(members)
            say(doc.serialized)
        } else {
            say("device: \(pty.slavePath)")
            if let link { say("link: \(link) -> \(pty.slavePath)") }
        }
        if !json { say("playing \(records.count) records from \(capture) at \(speed == 0 ? "full speed" : "\(speed)×")\(loop ? ", looping" : "")") }

        let replayer = CaptureReplayer(records: records, speed: speed == 0 ? nil : speed, loop: loop)
        let signals = Self.signals([SIGINT, SIGTERM])
        try await withThrowingTaskGroup(of: Int32?.self) { group in
            group.addTask {
                try await replayer.run(into: pty)
                if !Task.isCancelled { say("capture finished; the device stays connected until SIGINT/SIGTERM") }
                // Keep serving (a reader may still drain what was queued) until told to stop.
                while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
                return nil
            }
            group.addTask {
                for await s in signals { return s }
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            if let first { say("stopping on signal \(first)") }
        }
    }

    /// The Bluetooth LE mode: one ``SimulatedPeripheral`` per accepted connection, each playing
    /// the capture's script from the start (as a device that re-sends what was not confirmed).
    func runBLE(capturePath: String, socketPath: String) async throws {
        let parsed: ATTCapture
        do {
            parsed = try ATTCapture.parse(String(decoding: try Self.readFile(capturePath), as: UTF8.self))
        } catch let error as ATTCaptureError {
            throw SimulateError("\(capturePath): \(error)")
        }
        let listener = try SeqPacketListener.listen(path: socketPath)
        defer {
            listener.close()
            _ = unlink(socketPath)
        }
        if json {
            say(JSONValue.object([("socket", .string(socketPath)), ("capture", .string(capturePath)),
                                  ("services", .int(Int64(parsed.services.count)))]).serialized)
        } else {
            say("socket: \(socketPath)")
            say("serving \(capturePath) (\(parsed.services.count) services, \(parsed.script.count) script steps, \(parsed.records.count) stored records)")
        }
        let signals = Self.signals([SIGINT, SIGTERM])
        let verbose = !json
        try await withThrowingTaskGroup(of: Int32?.self) { group in
            group.addTask {
                try await withThrowingTaskGroup(of: Void.self) { connections in
                    var n = 0
                    for try await bearer in listener.connections {
                        n += 1
                        let number = n
                        if verbose { say("connection \(number): serving") }
                        connections.addTask {
                            let peripheral = SimulatedPeripheral(capture: parsed)
                            await peripheral.serve(bearer)
                            bearer.close()
                            if verbose { say("connection \(number): ended") }
                        }
                    }
                }
                return nil
            }
            group.addTask {
                for await s in signals { return s }
                return nil
            }
            let first = try await group.next() ?? nil
            listener.close()
            group.cancelAll()
            if let first { say("stopping on signal \(first)") }
        }
    }

    /// Reads and parses a capture file into replay records.
    static func load(_ path: String) throws -> [Capture.Record] {
        let bytes = try readFile(path)
        do {
            let parsed = try Capture.parse(String(decoding: bytes, as: UTF8.self))
            guard !parsed.records.isEmpty else { throw SimulateError("\(path) holds no records") }
            return parsed.records
        } catch let error as CaptureError {
            throw SimulateError("\(path): \(error)")
        }
    }

    /// A whole file's bytes.
    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SimulateError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SimulateError("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += buffer[0..<n]
        }
        return bytes
    }

    /// SIGINT/SIGTERM as an async stream (Dispatch signal sources; default actions disabled).
    static func signals(_ numbers: [Int32]) -> AsyncStream<Int32> {
        AsyncStream { continuation in
            var sources: [any DispatchSourceSignal] = []
            for number in numbers {
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { continuation.yield(number) }
                source.resume()
                sources.append(source)
            }
            let keep = sources
            continuation.onTermination = { _ in keep.forEach { $0.cancel() } }
        }
    }
}

/// A capture that cannot be read; ArgumentParser prints the description and exits 1.
struct SimulateError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Writes a line to standard output immediately (unbuffered: the demo script reads it).
private func say(_ line: String) {
    var bytes = Array((line + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeMutableBytes { write(1, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        offset += n
    }
}
