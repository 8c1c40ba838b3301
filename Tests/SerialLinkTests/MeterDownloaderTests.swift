@preconcurrency import Dispatch
import DeviceDecoding
import Glibc
import SerialLink
import Synchronization
import Testing
import VigilTestKit
import VitalSigns

/// A OneTouch Ultra 2 on the far end of a real pseudo-terminal: it waits for the wake-up and
/// `DMP`, then answers with a dump from the fixtures, as the script for that request says.
final class ScriptedMeter: Sendable {
    enum Reply: Sendable {
        /// The whole dump.
        case dump
        /// The first `lines` lines of the dump, then silence.
        case stopAfter(lines: Int)
        /// No answer at all.
        case silent
    }

    let pty: PseudoTerminal
    let dumpLines: [[UInt8]]
    private let script: [Reply]
    private let requests = Mutex(0)
    private let running = Mutex(true)

    init(script: [Reply], linkPath: String? = nil) throws {
        pty = try PseudoTerminal(linkPath: linkPath, holdSlaveOpen: true)
        let capture = try Fixtures.capture("onetouch-ultra2/normal.capture")
        var lines: [[UInt8]] = []
        var current: [UInt8] = []
        for b in capture.allBytes {
            current.append(b)
            if b == 0x0A { lines.append(current); current = [] }
        }
        dumpLines = lines
        self.script = script
        DispatchQueue.global().async { [self] in serve() }
    }

    var requestCount: Int { requests.withLock { $0 } }

    func stop() {
        running.withLock { $0 = false }
        pty.close()
    }

    private func serve() {
        var heard: [UInt8] = []
        let request = [0x11, 0x0D] + Array("DMP".utf8)
        var buffer = [UInt8](repeating: 0, count: 256)
        while running.withLock({ $0 }) {
            var p = pollfd(fd: pty.masterFD, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 50) >= 0 else { if errno == EINTR { continue } else { return } }
            guard p.revents & Int16(POLLIN) != 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { read(pty.masterFD, $0.baseAddress, $0.count) }
            guard n > 0 else { continue }
            heard += buffer[0..<n]
            while let r = heard.firstRange(of: request) {
                heard.removeSubrange(..<r.upperBound)
                let index = requests.withLock { count in
                    defer { count += 1 }
                    return count
                }
                let reply = index < script.count ? script[index] : .dump
                switch reply {
                case .dump: send(dumpLines.flatMap { $0 })
                case .stopAfter(let k): send(dumpLines.prefix(k).flatMap { $0 })
                case .silent: break
                }
            }
        }
    }

    private func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count, running.withLock({ $0 }) {
            let n = (try? pty.writeSome(bytes[offset...])) ?? 0
            if n == 0 { usleep(2000) }
            offset += n
        }
    }
}

@Suite("Meter memory download: command, reply, timeout and retry over a real pty", .serialized)
struct MeterDownloaderTests {
    /// Generous by default (a loaded machine can delay the downloader's task past a real
    /// meter's answer time); the timeout paths pass a short one with a meter that is silent.
    static func downloader(_ meter: ScriptedMeter, timeout: Duration = .seconds(10)) -> MeterDownloader {
        MeterDownloader(path: meter.pty.slavePath, settings: SerialSettings(), replyTimeout: timeout,
                        attempts: 3, retryDelay: .milliseconds(50))
    }

    static func glucose(_ results: [DecodeResult]) -> [VitalSample] {
        results.flatMap { r -> [VitalSample] in if case .samples(let s) = r { s } else { [] } }
    }

    @Test("an answering meter's whole dump arrives in one attempt: 14 records, each once")
    func wholeDump() async throws {
        let meter = try ScriptedMeter(script: [.dump])
        defer { meter.stop() }
        var proto = OneTouchUltra2Download()
        var got: [DecodeResult] = []
        let attempts = try await Self.downloader(meter).download(&proto) { got += $0 }
        #expect(attempts == 1)
        let samples = Self.glucose(got)
        #expect(samples.count == 14)
        #expect(Set(samples.compactMap(\.sequence)) == Set(0..<14))
        #expect(!got.contains { if case .rejected = $0 { true } else { false } })
    }

    @Test("a meter that stops mid-dump is asked again; the retry completes with no record twice")
    func stopsMidDumpThenResumes() async throws {
        let meter = try ScriptedMeter(script: [.stopAfter(lines: 6), .dump])
        defer { meter.stop() }
        var proto = OneTouchUltra2Download()
        var got: [DecodeResult] = []
        let attempts = try await Self.downloader(meter, timeout: .milliseconds(2500)).download(&proto) { got += $0 }
        #expect(attempts == 2)
        #expect(meter.requestCount == 2)
        let sequences = Self.glucose(got).compactMap(\.sequence)
        #expect(sequences.count == 14, "5 from the cut-off attempt, the other 9 from the retry")
        #expect(Set(sequences) == Set(0..<14))
        // The cut-off dump is reported as truncated, once.
        let truncated = got.filter { if case .rejected(let e) = $0 { e.code == .truncated } else { false } }
        #expect(truncated.count == 1)
    }

    @Test("a meter that never answers fails after every attempt, with the reason")
    func neverAnswers() async throws {
        let meter = try ScriptedMeter(script: [.silent, .silent, .silent])
        defer { meter.stop() }
        var proto = OneTouchUltra2Download()
        var got: [DecodeResult] = []
        let error = await #expect(throws: MeterDownloadError.self) {
            try await Self.downloader(meter, timeout: .milliseconds(200)).download(&proto) { got += $0 }
        }
        #expect(error?.attempts == 3)
        #expect(error?.reason.contains("did not answer") == true)
        #expect(await eventually(within: .seconds(5)) { meter.requestCount == 3 }, "the meter heard every attempt")
        #expect(got.isEmpty)
    }

    @Test("an unplugged meter (the pty closed) fails with the device's absence as the reason")
    func unpluggedMeter() async throws {
        // Through a symlink, as a by-id path would be: the unplug removes it, so the retry
        // cannot land on a pseudo-terminal another test opened with the same number.
        let path = makeTemporaryDirectory(prefix: "vigil-meter") + "/meter"
        let meter = try ScriptedMeter(script: [.stopAfter(lines: 3)], linkPath: path)
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { meter.stop() }
        var proto = OneTouchUltra2Download()
        var got: [DecodeResult] = []
        let error = await #expect(throws: MeterDownloadError.self) {
            try await MeterDownloader(path: path, settings: SerialSettings(), replyTimeout: .seconds(3),
                                      attempts: 2, retryDelay: .milliseconds(300)).download(&proto) { got += $0 }
        }
        #expect(error?.reason.contains("no such device") == true || error?.reason.contains("went away") == true)
        #expect(Self.glucose(got).count == 2, "the records that arrived before the unplug are kept")
    }
}
