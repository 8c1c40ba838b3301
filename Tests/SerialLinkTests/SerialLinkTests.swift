import DeviceDecoding
import DeviceProfiles
import Glibc
import SerialLink
import StrictYAML
import Synchronization
import Testing
import VigilTestKit
import VitalSigns

/// Reads a port's stream into an event log on a task of its own.
func drain(_ stream: SerialChunks, into log: EventLog<[UInt8]>,
           ended: EventLog<String>) -> Task<Void, Never> {
    Task {
        do {
            for try await chunk in stream { log.append(chunk.bytes) }
            ended.append("finished")
        } catch let e as SerialError {
            ended.append("error:\(e.code.rawValue)")
        } catch {
            ended.append("error:other")
        }
    }
}

/// Waits until the log holds `count` bytes in total; returns them.
func awaitBytes(_ log: EventLog<[UInt8]>, count: Int, within: Duration = .seconds(5)) async -> [UInt8] {
    var cursor = 0
    var bytes: [UInt8] = []
    while bytes.count < count {
        guard let (chunk, next) = await log.next(from: cursor, within: within, where: { _ in true }) else { break }
        bytes += chunk
        cursor = next
    }
    return bytes
}

@Suite("Serial port over a real pseudo-terminal", .serialized)
struct SerialPortTests {
    @Test("raw mode carries every byte value 0x00–0xFF intact, twice over")
    func everyByteRoundTrips() async throws {
        let pty = try PseudoTerminal()
        defer { pty.close() }
        let port = try SerialPort.open(path: pty.slavePath, settings: .rad8)
        let log = EventLog<[UInt8]>(), ended = EventLog<String>()
        let task = drain(port.chunks(), into: log, ended: ended)
        let all = (0...255).map(UInt8.init)
        try await pty.write(all + all)
        let got = await awaitBytes(log, count: 512)
        #expect(got == all + all)
        task.cancel()
        #expect(await ended.next(from: 0, within: .seconds(5), where: { $0 == "finished" }) != nil)
    }

    @Test("chunks arrive as written, stamped with the wall-clock receive time")
    func chunksArriveWithTimestamps() async throws {
        let pty = try PseudoTerminal()
        defer { pty.close() }
        let port = try SerialPort.open(path: pty.slavePath, settings: SerialSettings(baud: 115200))
        let stream = port.chunks()
        let before = realtimeNow()
        try await pty.write(Array("hello\r\n".utf8))
        var iterator = stream.makeAsyncIterator()
        let chunk = try #require(try await iterator.next())
        let after = realtimeNow()
        #expect(chunk.bytes == Array("hello\r\n".utf8))
        #expect(chunk.receivedAt >= before && chunk.receivedAt <= after)
    }

    @Test("open errors say what is wrong: missing device, not a tty, bad settings")
    func openErrors() throws {
        #expect {
            _ = try SerialPort.open(path: "/dev/serial/by-id/vigil-no-such-device", settings: .rad8)
        } throws: { error in
            guard let e = error as? SerialError else { return false }
            return e.code == .notFound && e.errno == ENOENT && e.reason.contains("plugged in")
                && e.description.contains("/dev/serial/by-id/vigil-no-such-device")
        }
        let dir = makeTemporaryDirectory()
        let file = dir + "/not-a-tty"
        let fd = creat(file, 0o600)
        close(fd)
        #expect {
            _ = try SerialPort.open(path: file, settings: .rad8)
        } throws: { ($0 as? SerialError)?.code == .notATerminal }
        let pty = try PseudoTerminal()
        defer { pty.close() }
        #expect {
            _ = try SerialPort.open(path: pty.slavePath, settings: SerialSettings(baud: 12345))
        } throws: { ($0 as? SerialError)?.code == .unsupportedSettings }
        #expect(SerialError.from(errno: EACCES, path: "/dev/ttyUSB0", operation: "open").reason.contains("dialout"))
    }

    @Test("the master closing (unplug) ends the stream with a hang-up error")
    func unplugEndsStream() async throws {
        let pty = try PseudoTerminal(holdSlaveOpen: false)
        let port = try SerialPort.open(path: pty.slavePath, settings: .rad8)
        let log = EventLog<[UInt8]>(), ended = EventLog<String>()
        _ = drain(port.chunks(), into: log, ended: ended)
        try await pty.write(Array("last words\r\n".utf8))
        #expect(await awaitBytes(log, count: 12) == Array("last words\r\n".utf8))
        let ours = openDescriptors(for: pty.slavePath) ?? []
        #expect(!ours.isEmpty)
        pty.close()
        let end = await ended.next(from: 0, within: .seconds(5), where: { _ in true })
        #expect(end?.event == "error:hangup")
        // The port's own descriptors: once closed, a parallel test may reopen the same pts number.
        #expect(await eventually(within: .seconds(5)) { (openDescriptors(for: pty.slavePath) ?? ours).isDisjoint(with: ours) })
    }
}

@Suite("Pseudo-terminal input queue across reopen (measured)", .serialized)
struct PseudoTerminalQueueTests {
    /// Reads one port's stream for `window` and returns what arrived (used to observe
    /// whether queued bytes survive; an absent byte cannot be awaited).
    func readFor(_ path: String, window: Duration, expecting count: Int) async throws -> [UInt8] {
        let port = try SerialPort.open(path: path, settings: .rad8)
        let log = EventLog<[UInt8]>(), ended = EventLog<String>()
        let task = drain(port.chunks(), into: log, ended: ended)
        let got = await awaitBytes(log, count: count, within: window)
        task.cancel()
        _ = await ended.next(from: 0, within: .seconds(5), where: { _ in true })
        return got
    }

    @Test("with a held slave descriptor, bytes written while no reader has the port open are kept")
    func heldSlaveKeepsQueuedBytes() async throws {
        let pty = try PseudoTerminal(holdSlaveOpen: true)
        defer { pty.close() }
        #expect(try await readFor(pty.slavePath, window: .seconds(5), expecting: 0).isEmpty)
        // The reader is gone (only the held descriptor remains); the device keeps talking.
        #expect(await eventually(within: .seconds(5)) { openDescriptorCount(for: pty.slavePath) == 1 })
        try await pty.write(Array("written while closed\r\n".utf8))
        let got = try await readFor(pty.slavePath, window: .seconds(5), expecting: 22)
        #expect(got == Array("written while closed\r\n".utf8))
    }

    @Test("without a held slave descriptor, Linux (6.x) also keeps them: the pty pair lives while the master is open")
    func unheldSlaveAlsoKeepsQueuedBytes() async throws {
        let pty = try PseudoTerminal(holdSlaveOpen: false)
        defer { pty.close() }
        // A reader leaves bytes unread at close, then the device sends more while no one listens.
        let port = try SerialPort.open(path: pty.slavePath, settings: .rad8)
        try await pty.write(Array("unread\r\n".utf8))
        port.close()
        #expect(openDescriptorCount(for: pty.slavePath) == 0)
        try await pty.write(Array("while closed\r\n".utf8))
        let got = try await readFor(pty.slavePath, window: .seconds(5), expecting: 22)
        #expect(String(decoding: got, as: UTF8.self) == "unread\r\nwhile closed\r\n")
    }
}

@Suite("Serial device link: hot-plug, missing device, cancellation", .serialized)
struct SerialDeviceLinkTests {
    enum Event: Sendable, Hashable {
        case state(SerialDeviceLink.State)
        case bytes([UInt8])
    }

    func isOpen(_ e: Event) -> Bool { if case .state(.open) = e { true } else { false } }
    func isUnavailable(_ e: Event) -> Bool { if case .state(.unavailable) = e { true } else { false } }

    func startLink(_ path: String, log: EventLog<Event>, backoff: Backoff) -> Task<Void, any Error> {
        let link = SerialDeviceLink(path: path, settings: .rad8, backoff: backoff) { log.append(.state($0)) }
        return Task { try await link.run { chunk in log.append(.bytes(chunk.bytes)) } }
    }

    @Test("unplug reports unavailable; a new pty at the same symlink is reopened and read")
    func unplugAndReplug() async throws {
        let dir = makeTemporaryDirectory()
        let link = dir + "/rad8"
        let first = try PseudoTerminal(linkPath: link)
        let log = EventLog<Event>()
        let task = startLink(link, log: log, backoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(200)))
        defer { task.cancel() }

        var c = try #require(await log.next(from: 0, within: .seconds(5), where: isOpen)).cursor
        #expect(log.events.contains(.state(.open(path: link, device: first.slavePath))))
        try await first.write(Array("one\r\n".utf8))
        c = try #require(await log.next(from: c, within: .seconds(5), where: { $0 == .bytes(Array("one\r\n".utf8)) })).cursor

        first.close()
        let down = try #require(await log.next(from: c, within: .seconds(5), where: isUnavailable))
        c = down.cursor
        if case .state(.unavailable(let reason, _)) = down.event { #expect(reason.contains("went away")) }

        let second = try PseudoTerminal(linkPath: link)
        defer { second.close() }
        let reopened = try #require(await log.next(from: c, within: .seconds(5), where: isOpen))
        #expect(reopened.event == .state(.open(path: link, device: second.slavePath)))
        try await second.write(Array("two\r\n".utf8))
        #expect(await log.next(from: reopened.cursor, within: .seconds(5), where: { $0 == .bytes(Array("two\r\n".utf8)) }) != nil)

        task.cancel()
        try await task.value
        #expect(await eventually(within: .seconds(5)) { openDescriptorCount(for: second.slavePath) == 1 })
    }

    @Test("a missing path is reported unavailable with a clear reason, retried with growing back-off")
    func missingPathBacksOff() async throws {
        let log = EventLog<Event>()
        let path = makeTemporaryDirectory() + "/nothing-here"
        let task = startLink(path, log: log, backoff: Backoff(initial: .milliseconds(10), maximum: .milliseconds(40), jitter: 0))
        var delays: [Duration] = []
        var c = 0
        for _ in 0..<4 {
            let next = try #require(await log.next(from: c, within: .seconds(5), where: isUnavailable))
            c = next.cursor
            if case .state(.unavailable(let reason, let retry)) = next.event {
                #expect(reason.contains("no such device"))
                delays.append(retry)
            }
        }
        #expect(delays == [.milliseconds(10), .milliseconds(20), .milliseconds(40), .milliseconds(40)])
        task.cancel()
        try await task.value
    }

    @Test("cancelling the task stops the link promptly and closes its descriptor")
    func cancellationClosesDescriptor() async throws {
        let pty = try PseudoTerminal(holdSlaveOpen: true)
        defer { pty.close() }
        let log = EventLog<Event>()
        let task = startLink(pty.slavePath, log: log, backoff: Backoff())
        #expect(await log.next(from: 0, within: .seconds(5), where: isOpen) != nil)
        #expect(openDescriptorCount(for: pty.slavePath) == 2)
        task.cancel()
        try await task.value
        #expect(await eventually(within: .seconds(5)) { openDescriptorCount(for: pty.slavePath) == 1 })
    }

    @Test("back-off doubles from its initial delay up to its cap, with jitter only downward")
    func backoffSequence() {
        var b = Backoff()
        let plain = (0..<8).map { _ in b.next(random: 0) }
        #expect(plain == [250, 500, 1000, 2000, 4000, 8000, 10000, 10000].map { Duration.milliseconds($0) })
        b.reset()
        #expect(b.next(random: 0.999_999) == .milliseconds(200))
        var r = Backoff()
        for _ in 0..<50 {
            let d = r.next()
            #expect(d <= .seconds(10) && d >= .milliseconds(200))
        }
    }
}

/// Every capture a device profile lists, written into a real pseudo-terminal and read back
/// through the serial port code with the profile's line settings and decoder: once with the
/// capture's recorded timing (compressed so each takes at most about a third of a second) and
/// once as fast as the pty takes it. The results must equal the capture's expected output.
@Suite("Fixture replay through a pseudo-terminal")
struct FixtureReplayTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var capture: String
        var decoder: String
        var settings: SerialSettings
        var testDescription: String { "\(capture) via \(decoder)" }
    }

    static var cases: [Case] {
        let dir = Fixtures.repositoryRoot + "/devices"
        return Fixtures.list(dir).filter { $0.hasSuffix(".yaml") }.flatMap { name -> [Case] in
            let path = dir + "/" + name
            guard let bytes = try? Fixtures.readFile(path),
                  let profile = try? YAMLDecoder().decode(DeviceProfile.self, from: bytes, fileName: path),
                  let serial = profile.serial else { return [] }
            let settings = SerialSettings(baud: serial.baud, dataBits: serial.dataBits,
                                          parity: SerialSettings.Parity(rawValue: serial.parity.rawValue) ?? .none,
                                          stopBits: serial.stopBits)
            return profile.fixtures.filter { $0.hasSuffix(".capture") }
                .map { Case(capture: $0, decoder: profile.decoder, settings: settings) }
        }
    }

    func replayThroughPTY(_ c: Case, speed: Double?) async throws {
        let capture = try Fixtures.capture(c.capture)
        let expected = try Fixtures.expected(forCapture: c.capture)
        guard var decoder = makeDecoder(named: c.decoder) else {
            Issue.record("no decoder \(c.decoder)")
            return
        }
        let pty = try PseudoTerminal(holdSlaveOpen: false)
        let port = try SerialPort.open(path: pty.slavePath, settings: c.settings)
        let stream = port.chunks()
        let received = EventLog<Int>()
        let results = Task { () -> [DecodeResult] in
            var out: [DecodeResult] = []
            do {
                for try await chunk in stream {
                    out += decoder.decode(chunk.bytes)
                    received.append(chunk.bytes.count)
                }
            } catch {}
            return out + decoder.finish()
        }
        let replayer = CaptureReplayer(records: capture.records, speed: speed)
        try await replayer.run(into: pty)
        // Unplug once every byte has been read, so finish() sees the stream's true end.
        let total = capture.allBytes.count
        var sum = 0, cursor = 0
        while sum < total, let (n, next) = await received.next(from: cursor, within: .seconds(10), where: { _ in true }) {
            sum += n
            cursor = next
        }
        #expect(sum == total, "\(c.capture): read \(sum) of \(total) bytes")
        pty.close()
        let got = await results.value
        #expect(got.count == expected.count, "\(c.capture): \(got.count) results, expected \(expected.count)")
        for (i, (r, e)) in zip(got, expected).enumerated() where !e.matches(r) {
            Issue.record("\(c.capture) result \(i + 1): got \(r), expected \(e)")
            break
        }
    }

    @Test("every profile's captures list at least the Masimo, Nonin, Contec and OneTouch fixtures")
    func casesAreFound() {
        let names = Set(Self.cases.map(\.decoder))
        for d in ["masimo-ascii1", "nonin-sdf2", "contec-cms50-legacy", "onetouch-ultra2", "onetouch-ultraeasy", "masimo-trend"] {
            #expect(names.contains(d), "no fixtures replayed for \(d)")
        }
    }

    @Test("with the recorded timing (compressed to at most ~300 ms a capture)", arguments: cases)
    func timed(_ c: Case) async throws {
        let duration = Double(try Fixtures.capture(c.capture).durationMilliseconds)
        try await replayThroughPTY(c, speed: max(1, duration / 300))
    }

    @Test("as fast as the pseudo-terminal takes the bytes", arguments: cases)
    func fast(_ c: Case) async throws { try await replayThroughPTY(c, speed: nil) }
}
