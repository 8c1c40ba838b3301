import DeviceDecoding
@preconcurrency import Dispatch
import Glibc
import SerialLink
import Testing
import VigilTestKit
import VitalSigns

/// The built `vigilctl capture` against a real pseudo-terminal: what a device sends comes back
/// byte for byte as a capture file that the decoder and the replayer read.
@Suite struct VigilctlCaptureTests {
    static let ctl = VigildProcess.binDirectory + "/vigilctl"

    /// The first records of a real fixture: under the pty's 4 KiB input queue, so they can be
    /// written before the capture starts.
    static func deviceBytes() throws -> [UInt8] {
        let capture = try Fixtures.capture("nonin/normal.capture")
        return Array(capture.allBytes.prefix(1500))
    }

    @Test func capturedBytesRoundTripThroughTheCaptureFormat() throws {
        let dir = makeTemporaryDirectory(prefix: "vigil-capture")
        let pty = try PseudoTerminal(holdSlaveOpen: true)
        defer { pty.close() }
        let bytes = try Self.deviceBytes()
        var offset = 0
        while offset < bytes.count { offset += try pty.writeSome(bytes[offset...]) }

        let out = dir + "/nonin.capture"
        let run = try VigildProcess.run([Self.ctl, "capture", "--port", pty.slavePath, "--out", out,
                                         "--max-bytes", "\(bytes.count)", "--duration", "30", "--comment", "Nonin Xpod, bench", "--json"])
        #expect(run.status == 0)
        let summary = try JSONValue.parse(run.output.trimmingSuffixNewlines)
        #expect(summary["bytes"]?.int64Value == Int64(bytes.count))
        #expect(summary["ended"]?.stringValue == "max_bytes")

        let text = String(decoding: try Fixtures.readFile(out), as: UTF8.self)
        #expect(text.contains("# Nonin Xpod, bench\n"))
        let captured = try Capture.parse(text)
        #expect(captured.allBytes == bytes)
        #expect(summary["records"]?.int64Value == Int64(captured.records.count))

        // The file is a fixture like any other: it decodes to the same readings as the source.
        let decoded = try VigildProcess.run([Self.ctl, "decode", "--protocol", "nonin-sdf2", "--file", out], quiet: true)
        var decoder = NoninSDF2Decoder()
        let samples = decoder.decode(bytes).flatMap { r -> [VitalSample] in if case .samples(let s) = r { s } else { [] } }
        #expect(!samples.isEmpty)
        #expect(decoded.output.split(separator: "\n").count == samples.count)
    }

    @Test func anUnpluggedDeviceEndsTheCaptureAndKeepsWhatArrived() throws {
        let dir = makeTemporaryDirectory(prefix: "vigil-capture")
        let pty = try PseudoTerminal(holdSlaveOpen: true)
        let bytes = try Self.deviceBytes()
        var offset = 0
        while offset < bytes.count { offset += try pty.writeSome(bytes[offset...]) }
        // Unplug a second after the capture has had time to read the queue.
        DispatchQueue.global().asyncAfter(deadline: .now() + 1.5) { pty.close() }

        let out = dir + "/unplugged.capture"
        let run = try VigildProcess.run([Self.ctl, "capture", "--port", pty.slavePath, "--out", out, "--duration", "30", "--json"])
        #expect(run.status == 0)
        let summary = try JSONValue.parse(run.output.trimmingSuffixNewlines)
        #expect(summary["ended"]?.stringValue == "device_gone")
        let captured = try Capture.parse(String(decoding: try Fixtures.readFile(out), as: UTF8.self))
        #expect(captured.allBytes == bytes)
    }

    @Test func badArgumentsAndUnusablePathsAreRefusedClearly() throws {
        let dir = makeTemporaryDirectory(prefix: "vigil-capture")
        let existing = dir + "/existing.capture"
        let fd = open(existing, O_WRONLY | O_CREAT, 0o600)
        #expect(fd >= 0)
        close(fd)
        let pty = try PseudoTerminal(holdSlaveOpen: true)
        defer { pty.close() }

        let baud = try VigildProcess.run([Self.ctl, "capture", "--port", pty.slavePath, "--baud", "1234", "--out", dir + "/a"], quiet: true)
        #expect(baud.status == 64)
        let parity = try VigildProcess.run([Self.ctl, "capture", "--port", pty.slavePath, "--parity", "mark", "--out", dir + "/a"], quiet: true)
        #expect(parity.status == 64)
        let missing = try VigildProcess.run([Self.ctl, "capture", "--port", dir + "/no-such-tty", "--out", dir + "/b"], quiet: true)
        #expect(missing.status == 66)
        let notATTY = try VigildProcess.run([Self.ctl, "capture", "--port", existing, "--out", dir + "/c"], quiet: true)
        #expect(notATTY.status == 66)
        let overwrite = try VigildProcess.run([Self.ctl, "capture", "--port", pty.slavePath, "--out", existing, "--duration", "1"], quiet: true)
        #expect(overwrite.status == 73)
        #expect(try Fixtures.readFile(existing).isEmpty, "an existing file is never overwritten")
    }
}

extension String {
    var trimmingSuffixNewlines: String {
        var s = self
        while s.last == "\n" { s.removeLast() }
        return s
    }
}
