@preconcurrency import Dispatch
import DeviceDecoding
import Glibc
import SerialLink
import Synchronization
import Testing
import VigilTestKit
import VitalSigns

/// A OneTouch Ultra Easy on the far end of a real pseudo-terminal, speaking the meter's side
/// of LifeScan's binary link: it acknowledges a reset, acknowledges each command, replies with
/// its own sequence bit, and waits for the host's acknowledgement before toggling it.
final class ScriptedUltraEasy: Sendable {
    struct Record: Sendable, Hashable { var seconds: UInt32; var mgdL: UInt32 }

    enum Fault: Sendable, Hashable {
        /// In the first session, stop answering once this record has been requested.
        case silentAtRecord(Int)
        /// In the first session, send this record's reply with a broken CRC.
        case corruptRecord(Int)
    }

    let pty: PseudoTerminal
    let records: [Record]
    private let fault: Fault?
    private struct State {
        var running = true
        var sessions = 0
        var requested: [Int] = []
        var meterS = false
        var meterE = false
    }
    private let state = Mutex(State())

    init(records: [Record], fault: Fault? = nil) throws {
        pty = try PseudoTerminal(holdSlaveOpen: true)
        self.records = records
        self.fault = fault
        DispatchQueue.global().async { [self] in serve() }
    }

    /// Record indexes requested, in order, over every session.
    var requested: [Int] { state.withLock { $0.requested } }
    var sessions: Int { state.withLock { $0.sessions } }

    func stop() {
        state.withLock { $0.running = false }
        pty.close()
    }

    private func send(_ packet: LifeScanPacket, corrupt: Bool = false) {
        var bytes = packet.encoded
        if corrupt { bytes[bytes.count - 1] ^= 0xFF }
        var offset = 0
        while offset < bytes.count {
            guard let n = try? pty.writeSome(bytes[offset...]) else { return }
            if n == 0 { usleep(1000) }
            offset += n
        }
    }

    private func serve() {
        var parser = LifeScanPacketParser()
        var buffer = [UInt8](repeating: 0, count: 256)
        var silent = false
        while state.withLock({ $0.running }) {
            var p = pollfd(fd: pty.masterFD, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 20) >= 0 else { if errno == EINTR { continue } else { return } }
            guard p.revents & Int16(POLLIN) != 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { read(pty.masterFD, $0.baseAddress, $0.count) }
            guard n > 0 else { continue }
            for case .packet(let packet) in parser.feed(buffer[0..<n]) {
                if packet.disconnect {
                    let session = state.withLock { s -> Int in
                        s.sessions += 1
                        s.meterS = false
                        s.meterE = false
                        return s.sessions
                    }
                    silent = false
                    _ = session
                    send(LifeScanPacket(link: 0x0C))
                    continue
                }
                if silent { continue }
                if packet.acknowledge {
                    state.withLock { $0.meterS.toggle() }
                    continue
                }
                // A command: acknowledge it, then reply.
                let (s, e, session) = state.withLock { st -> (Bool, Bool, Int) in
                    st.meterE = !packet.sequence
                    return (st.meterS, st.meterE, st.sessions)
                }
                let bits: UInt8 = (e ? 0x02 : 0) | (s ? 0x01 : 0)
                let m = packet.message
                guard m.count == 4, m[0] == 0x05, m[1] == 0x1F else { continue }
                let index = Int(m[2]) | Int(m[3]) << 8
                if m[2] == 0x00, m[3] == 0x02 {
                    send(LifeScanPacket(link: 0x04 | bits))
                    let count = UInt16(records.count)
                    send(LifeScanPacket(link: bits, message: [0x05, 0x0F, UInt8(count & 0xFF), UInt8(count >> 8)]))
                    continue
                }
                state.withLock { $0.requested.append(index) }
                if session == 1, fault == .silentAtRecord(index) {
                    silent = true
                    continue
                }
                send(LifeScanPacket(link: 0x04 | bits))
                guard index < records.count else { continue }
                let r = records[index]
                var reply: [UInt8] = [0x05, 0x06]
                for shift in stride(from: 0, to: 32, by: 8) { reply.append(UInt8(r.seconds >> UInt32(shift) & 0xFF)) }
                for shift in stride(from: 0, to: 32, by: 8) { reply.append(UInt8(r.mgdL >> UInt32(shift) & 0xFF)) }
                send(LifeScanPacket(link: bits, message: reply), corrupt: session == 1 && fault == .corruptRecord(index))
            }
        }
    }
}

@Suite("OneTouch Ultra Easy: LifeScan binary link download over a real pty", .serialized)
struct UltraEasyDownloadTests {
    static let records: [ScriptedUltraEasy.Record] = (0..<12).map { i in
        // Newest first, a reading every 6 hours, values including HI (> 600) and LO (< 20).
        let values: [UInt32] = [112, 98, 250, 61, 45, 700, 13, 180, 140, 95, 301, 77]
        return .init(seconds: 1_700_000_000 - UInt32(i) * 21_600, mgdL: values[i])
    }

    /// The reply timeout is generous: on a loaded test machine the downloader's task can wait
    /// for a thread longer than a real meter takes to answer, and a false timeout would show as
    /// a second attempt. The timeout paths are tested with a silent meter.
    static func downloader(_ meter: ScriptedUltraEasy, timeout: Duration = .seconds(10)) -> MeterDownloader {
        MeterDownloader(path: meter.pty.slavePath, settings: SerialSettings(), replyTimeout: timeout,
                        attempts: 3, retryDelay: .milliseconds(50))
    }

    static func samples(_ results: [DecodeResult]) -> [VitalSample] {
        results.flatMap { r -> [VitalSample] in if case .samples(let s) = r { s } else { [] } }
    }

    @Test("CRC-16/CCITT matches the check value and packets round-trip through the parser")
    func framing() {
        #expect(LifeScanPacket.crc16(Array("123456789".utf8)) == 0x29B1)
        let packet = LifeScanPacket(link: 0x05, message: [0x05, 0x1F, 0x00, 0x02])
        var parser = LifeScanPacketParser()
        // Garbage before, a corrupted copy, then the good packet: only the good one passes.
        var corrupted = packet.encoded
        corrupted[4] ^= 0x01
        let items = parser.feed([0xFF, 0x00] + corrupted + packet.encoded)
        #expect(items.last == .packet(packet))
        #expect(items.contains { if case .rejected(let e) = $0 { e.code == .checksum } else { false } })
        #expect(!items.contains { if case .packet(let p) = $0 { p != packet } else { false } })
    }

    @Test("a whole download: every record once, newest first, HI and LO flagged at the range's edge")
    func wholeDownload() async throws {
        let meter = try ScriptedUltraEasy(records: Self.records)
        defer { meter.stop() }
        var proto = OneTouchUltraEasyDownload()
        var got: [DecodeResult] = []
        let attempts = try await Self.downloader(meter).download(&proto) { got += $0 }
        #expect(attempts == 1)
        let s = Self.samples(got)
        #expect(s.count == 12)
        #expect(s.map(\.sequence) == Self.records.map { UInt64($0.seconds) })
        #expect(s[5].quantity == Quantity(600, "mg/dL") && s[5].flags == .aboveMeasuringRange)
        #expect(s[6].quantity == Quantity(20, "mg/dL") && s[6].flags == .belowMeasuringRange)
        #expect(s[0].quantity == Quantity(112, "mg/dL") && s[0].flags.isEmpty)
        #expect(s[0].deviceTime == CivilDateTime(year: 2023, month: 11, day: 14, hour: 22, minute: 13, second: 20))
        #expect(meter.requested == Array(0..<12))
    }

    @Test("a meter that falls silent mid-download: the retry resets the link and resumes where it stopped")
    func silentThenResume() async throws {
        let meter = try ScriptedUltraEasy(records: Self.records, fault: .silentAtRecord(7))
        defer { meter.stop() }
        var proto = OneTouchUltraEasyDownload()
        var got: [DecodeResult] = []
        let attempts = try await Self.downloader(meter, timeout: .milliseconds(2500)).download(&proto) { got += $0 }
        #expect(attempts == 2)
        #expect(meter.sessions == 2)
        #expect(Self.samples(got).map(\.sequence) == Self.records.map { UInt64($0.seconds) })
        // Records 0–6 were read once; 7 was asked again (it never came); nothing else twice.
        #expect(meter.requested == Array(0..<8) + Array(7..<12))
    }

    @Test("a reply with a broken CRC is never a reading; the record is read again on the retry")
    func corruptReply() async throws {
        let meter = try ScriptedUltraEasy(records: Self.records, fault: .corruptRecord(3))
        defer { meter.stop() }
        var proto = OneTouchUltraEasyDownload()
        var got: [DecodeResult] = []
        let attempts = try await Self.downloader(meter, timeout: .milliseconds(2500)).download(&proto) { got += $0 }
        #expect(attempts == 2)
        #expect(Self.samples(got).map(\.sequence) == Self.records.map { UInt64($0.seconds) })
        #expect(got.contains { if case .rejected(let e) = $0 { e.code == .checksum } else { false } })
    }

    @Test("downloading twice yields the same records with the same sequences (IDs do not change)")
    func repeatDownload() async throws {
        let meter = try ScriptedUltraEasy(records: Self.records)
        defer { meter.stop() }
        var first: [DecodeResult] = []
        var second: [DecodeResult] = []
        var a = OneTouchUltraEasyDownload()
        _ = try await Self.downloader(meter).download(&a) { first += $0 }
        var b = OneTouchUltraEasyDownload()
        _ = try await Self.downloader(meter).download(&b) { second += $0 }
        #expect(Self.samples(first) == Self.samples(second))
    }
}
