@preconcurrency import Dispatch
import DeviceDecoding
import Glibc
import SerialLink
import Synchronization
import Testing
import VitalSigns

/// A CMS50D+ with firmware 4.6+ on the far end of a real pseudo-terminal, answering the V7.0
/// host commands from the device's side: A2/A7 with free feedback (0x0C), A4 with the storage
/// length (0x08), A5 with the start date and time (0x07, 0x12), A6 with its records in 0x0F
/// packets, the last padded with zeros. Packets are built with `ContecV7Packet`.
final class ScriptedCMS50: Sendable {
    enum Fault: Sendable, Hashable {
        /// In the first session (up to the second A2), send only this many storage packets.
        case silentAfterStoragePackets(Int)
        /// Never answer anything.
        case mute
        /// Refuse A4 with command feedback, reason 0x03 "recording".
        case refuseWhileRecording
    }

    static let user: UInt8 = 0
    static let segment: UInt8 = 0

    let pty: PseudoTerminal
    let records: [(spo2: UInt8, pr: UInt8)]
    let start: CivilDateTime
    private let fault: Fault?
    private struct State {
        var running = true
        var sessions = 0
        var commands: [UInt8] = []
        var storagePacketsSent = 0
    }
    private let state = Mutex(State())

    init(records: [(spo2: UInt8, pr: UInt8)], start: CivilDateTime, fault: Fault? = nil) throws {
        pty = try PseudoTerminal(holdSlaveOpen: true)
        self.records = records
        self.start = start
        self.fault = fault
        DispatchQueue.global().async { [self] in serve() }
    }

    /// Commands received, in order, over every session.
    var commands: [UInt8] { state.withLock { $0.commands } }
    var sessions: Int { state.withLock { $0.sessions } }

    func stop() {
        state.withLock { $0.running = false }
        pty.close()
    }

    private func send(_ packets: [ContecV7Packet]) {
        let bytes = packets.flatMap(\.encoded)
        var offset = 0
        while offset < bytes.count {
            guard let n = try? pty.writeSome(bytes[offset...]) else { return }
            if n == 0 { usleep(1000) }
            offset += n
        }
    }

    private func storagePackets() -> [ContecV7Packet] {
        var flat = records.flatMap { [$0.spo2, $0.pr] }
        while flat.count % 6 != 0 { flat.append(0) }
        return stride(from: 0, to: flat.count, by: 6).map { ContecV7Packet(type: 0x0F, data: Array(flat[$0..<$0 + 6])) }
    }

    private func serve() {
        var parser = ContecV7PacketParser(direction: .downlink)
        var buffer = [UInt8](repeating: 0, count: 256)
        while state.withLock({ $0.running }) {
            var p = pollfd(fd: pty.masterFD, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 20) >= 0 else { if errno == EINTR { continue } else { return } }
            guard p.revents & Int16(POLLIN) != 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { read(pty.masterFD, $0.baseAddress, $0.count) }
            guard n > 0 else { continue }
            for case .packet(let packet) in parser.feed(buffer[0..<n]) where packet.type == 0x7D {
                let command = packet.data[0]
                let session = state.withLock { s -> Int in
                    s.commands.append(command)
                    if command == ContecV7Command.stopRealtime { s.sessions += 1 }
                    return s.sessions
                }
                if fault == .mute { continue }
                let u = Self.user, g = Self.segment
                switch command {
                case ContecV7Command.stopRealtime, ContecV7Command.stopStorageData:
                    send([ContecV7Packet(type: 0x0C, data: [])])
                case ContecV7Command.queryStorageLength:
                    if fault == .refuseWhileRecording {
                        send([ContecV7Packet(type: 0x0B, data: [command, 0x03])])
                        continue
                    }
                    let len = records.count * 2
                    send([ContecV7Packet(type: 0x08, data: [u, g] + (0..<4).map { UInt8(truncatingIfNeeded: len >> ($0 * 8)) })])
                case ContecV7Command.queryStorageStart:
                    send([ContecV7Packet(type: 0x07, data: [u, g, UInt8(start.year / 100), UInt8(start.year % 100),
                                                           UInt8(start.month), UInt8(start.day)]),
                          ContecV7Packet(type: 0x12, data: [u, g, UInt8(start.hour), UInt8(start.minute), UInt8(start.second), 0])])
                case ContecV7Command.queryStorageData:
                    var packets = storagePackets()
                    if session == 1, case .silentAfterStoragePackets(let k) = fault { packets = Array(packets.prefix(k)) }
                    state.withLock { $0.storagePacketsSent += packets.count }
                    send(packets)
                default:
                    send([ContecV7Packet(type: 0x0B, data: [command, 0x05])])
                }
            }
        }
    }
}

@Suite("Contec CMS50 V7.0 stored-data download over a real pty", .serialized)
struct ContecDownloadTests {
    static let start = CivilDateTime(year: 2026, month: 11, day: 24, hour: 22, minute: 0, second: 0)
    static let records: [(spo2: UInt8, pr: UInt8)] = (0..<100).map { (i: Int) -> (spo2: UInt8, pr: UInt8) in
        if i == 40 { return (spo2: 0x7F, pr: 0xFF) }
        let spo2 = UInt8(94 + i % 6)
        let pr = UInt8(55 + i % 40)
        return (spo2: spo2, pr: pr)
    }

    /// The reply timeout is generous where the test expects answers (a loaded machine can
    /// stall the scripted device for a moment) and short where it expects silence.
    static func downloader(_ device: ScriptedCMS50, attempts: Int = 3, timeout: Duration = .seconds(10)) -> MeterDownloader {
        MeterDownloader(path: device.pty.slavePath, settings: SerialSettings(baud: 115_200), replyTimeout: timeout,
                        attempts: attempts, retryDelay: .milliseconds(50))
    }

    /// Every record result's sequence, in order (records with no value have none: nil).
    static func sequences(_ results: [DecodeResult]) -> [UInt64?] {
        results.compactMap { r -> UInt64?? in if case .samples(let s) = r { .some(s.first?.sequence) } else { nil } }
    }

    static func expectedSequences(_ range: Range<Int>) -> [UInt64?] {
        range.map { $0 == 40 ? nil : ContecV7Storage.sequence(start: start, index: $0) }
    }

    @Test("a whole download: stop, length, start time, records; one result per record, a second apart")
    func wholeDownload() async throws {
        let device = try ScriptedCMS50(records: Self.records, start: Self.start)
        defer { device.stop() }
        var proto = ContecStoredDataDownload()
        var got: [DecodeResult] = []
        let attempts = try await Self.downloader(device).download(&proto) { got += $0 }
        #expect(attempts == 1)
        #expect(device.commands == [0xA2, 0xA7, 0xA4, 0xA5, 0xA6])
        #expect(got.count == 100)
        #expect(Self.sequences(got) == Self.expectedSequences(0..<100))
        guard case .samples(let first) = got.first, case .samples(let last) = got.last else { return }
        #expect(first == [VitalSample(vital: .spo2, quantity: Quantity(94, "%"), deviceTime: Self.start,
                                      sequence: ContecV7Storage.sequence(start: Self.start, index: 0)),
                          VitalSample(vital: .pulseRate, quantity: Quantity(55, "/min"), deviceTime: Self.start,
                                      sequence: ContecV7Storage.sequence(start: Self.start, index: 0))])
        #expect(last.first?.deviceTime == CivilDateTime(year: 2026, month: 11, day: 24, hour: 22, minute: 1, second: 39))
        #expect(got[40] == .samples([]), "a record stored with no values gives an empty result")
    }

    @Test("a device that stops mid-download: the retry reads again and delivers each record once")
    func stopsMidDownload() async throws {
        let device = try ScriptedCMS50(records: Self.records, start: Self.start, fault: .silentAfterStoragePackets(10))
        defer { device.stop() }
        var proto = ContecStoredDataDownload()
        var got: [DecodeResult] = []
        let attempts = try await Self.downloader(device).download(&proto) { got += $0 }
        #expect(attempts == 2)
        #expect(device.sessions == 2)
        #expect(device.commands == [0xA2, 0xA7, 0xA4, 0xA5, 0xA6, 0xA2, 0xA7, 0xA4, 0xA5, 0xA6])
        // 30 records came in the first attempt, the other 70 in the second; none twice.
        #expect(Self.sequences(got) == Self.expectedSequences(0..<100))
    }

    @Test("downloading again yields the same records with the same sequences")
    func repeatDownload() async throws {
        let device = try ScriptedCMS50(records: Self.records, start: Self.start)
        defer { device.stop() }
        var proto = ContecStoredDataDownload()
        var first: [DecodeResult] = []
        _ = try await Self.downloader(device).download(&proto) { first += $0 }
        proto.startNewDownload()
        var second: [DecodeResult] = []
        _ = try await Self.downloader(device).download(&proto) { second += $0 }
        #expect(first == second && first.count == 100)
    }

    @Test("a device that never answers: MeterDownloadError after every attempt, no readings")
    func neverAnswers() async throws {
        let device = try ScriptedCMS50(records: Self.records, start: Self.start, fault: .mute)
        defer { device.stop() }
        var proto = ContecStoredDataDownload()
        var got: [DecodeResult] = []
        let error = await #expect(throws: MeterDownloadError.self) {
            try await Self.downloader(device, timeout: .milliseconds(300)).download(&proto) { got += $0 }
        }
        #expect(error?.attempts == 3)
        #expect(error?.reason.contains("did not answer") == true)
        // Each attempt asked (the device thread may still be reading the last one: poll with a deadline).
        let deadline = ContinuousClock.now + .seconds(3)
        while device.commands.filter({ $0 == 0xA2 }).count < 3, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(device.commands.filter { $0 == 0xA2 }.count == 3)
        #expect(got.isEmpty)
    }

    @Test("a device that refuses (recording): the refusal is reported, the download fails, no readings")
    func refuses() async throws {
        let device = try ScriptedCMS50(records: Self.records, start: Self.start, fault: .refuseWhileRecording)
        defer { device.stop() }
        var proto = ContecStoredDataDownload()
        var got: [DecodeResult] = []
        let error = await #expect(throws: MeterDownloadError.self) {
            try await Self.downloader(device, attempts: 2, timeout: .seconds(2)).download(&proto) { got += $0 }
        }
        #expect(error?.attempts == 2)
        let refusals = got.compactMap { r -> FrameError? in if case .rejected(let e) = r { e } else { nil } }
        #expect(refusals.count == 2 && refusals.allSatisfy { $0.message.contains("recording") })
        #expect(!got.contains { if case .samples = $0 { true } else { false } })
    }
}
