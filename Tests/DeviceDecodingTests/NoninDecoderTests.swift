import DeviceDecoding
import DeviceProfiles
import StrictYAML
import Testing
import VigilTestKit
import VitalSigns

/// Builds Serial Data Format #2 bytes for tests: 0x01, STATUS | 0x80, PLETH, DATA, CHK.
enum SDF2 {
    static func frame(status: UInt8, pleth: UInt8, data: UInt8) -> [UInt8] {
        let b: [UInt8] = [0x01, status | 0x80, pleth, data]
        return b + [b.reduce(0, &+)]
    }

    /// One 25-frame packet; `status` is OR-ed into every frame's STATUS (SYNC added on frame 1).
    static func packet(hr: Int, spo2: Int, status: UInt8 = 0, statusFrames: Set<Int>? = nil) -> [UInt8] {
        var data = [UInt8](repeating: 0, count: 25)
        data[0] = UInt8((hr >> 7) & 0x03)
        data[1] = UInt8(hr & 0x7F)
        data[2] = UInt8(spo2 & 0x7F)
        data[3] = 0x2C
        var out: [UInt8] = []
        for i in 0..<25 {
            var st: UInt8 = (statusFrames == nil || statusFrames?.contains(i) == true) ? status : 0
            if i == 0 { st |= 0x01 }
            out += frame(status: st, pleth: UInt8(40 + i * 7), data: data[i])
        }
        return out
    }
}

func noninReplay(_ bytes: [UInt8], chunk: Int?) -> [DecodeResult] {
    replay(bytes, chunk: chunk, decoder: "nonin-sdf2")
}

func sample(_ vital: Vital, _ v: Double, _ flags: QualityFlags = []) -> VitalSample {
    VitalSample(vital: vital, quantity: Quantity(v, vital.unit), deviceTime: nil, flags: flags)
}

@Suite("Nonin SDF#2 fixtures")
struct NoninFixtureTests {
    static let captures = Fixtures.allCaptures().filter { $0.hasPrefix("nonin/") }

    @Test("the fixture set is there")
    func fixtureSetIsThere() {
        for name in ["normal", "sensor-off", "artifact", "low-perfusion", "missing-values", "checksum", "garbage", "truncated"] {
            #expect(Self.captures.contains("nonin/\(name).capture"), "missing \(name).capture")
        }
    }

    @Test("every byte of a capture is accounted for: in an accepted 125-byte packet, or skipped", arguments: captures)
    func byteAccounting(_ name: String) throws {
        let capture = try Fixtures.capture(name)
        var decoder = NoninSDF2Decoder()
        var results: [DecodeResult] = []
        for record in capture.records { results += decoder.decode(record.bytes) }
        results += decoder.finish()
        let accepted = results.filter { if case .samples = $0 { true } else { false } }.count * 125
        let skipped = results.reduce(0) { if case .rejected(let e) = $1 { $0 + e.bytesSkipped } else { $0 } }
        #expect(accepted + skipped == capture.allBytes.count, "\(name): byte accounting")
    }

    @Test("the normal capture is several seconds of packets at 75 frames/s")
    func normalShape() throws {
        let capture = try Fixtures.capture("nonin/normal.capture")
        #expect(capture.allBytes.count == 12 * 125)
        #expect(capture.durationMilliseconds >= 3900 && capture.durationMilliseconds <= 4000)
    }
}

@Suite("Nonin SDF#2 decoder")
struct NoninDecoderTests {
    @Test("registered under nonin-sdf2")
    func registered() {
        #expect(streamDecoderNames.contains("nonin-sdf2"))
        #expect(makeDecoder(named: "nonin-sdf2") is NoninSDF2Decoder)
    }

    @Test("a good packet gives pulse rate then SpO2, no device time")
    func goodPacket() {
        let r = noninReplay(SDF2.packet(hr: 72, spo2: 97), chunk: nil)
        #expect(r == [.samples([sample(.pulseRate, 72), sample(.spo2, 97)])])
    }

    @Test("pulse rate uses 9 bits across two frames", arguments: [0, 1, 127, 128, 129, 255, 256, 321, 383, 510])
    func nineBitPulseRate(_ hr: Int) {
        let r = noninReplay(SDF2.packet(hr: hr, spo2: 95), chunk: 3)
        #expect(r == [.samples([sample(.pulseRate, Double(hr)), sample(.spo2, 95)])])
    }

    @Test("missing values give no sample")
    func missing() {
        #expect(noninReplay(SDF2.packet(hr: 511, spo2: 127), chunk: nil) == [.samples([])])
        #expect(noninReplay(SDF2.packet(hr: 511, spo2: 90), chunk: nil) == [.samples([sample(.spo2, 90)])])
        #expect(noninReplay(SDF2.packet(hr: 60, spo2: 127), chunk: nil) == [.samples([sample(.pulseRate, 60)])])
    }

    @Test("SpO2 above 100 (not 127) rejects the packet", arguments: [101, 110, 126])
    func spo2OutOfRange(_ v: Int) {
        let r = noninReplay(SDF2.packet(hr: 60, spo2: v), chunk: nil)
        #expect(r.count == 1)
        guard case .rejected(let e) = r.first else { Issue.record("accepted SpO2 \(v)"); return }
        #expect(e.code == .malformedField && e.bytesSkipped == 125)
        #expect(!e.message.contains(String(v)), "the message never echoes the value")
    }

    @Test("each STATUS bit raises its flag, on whichever frame it appears", arguments: [
        (UInt8(0x40), QualityFlags.sensorOff),
        (UInt8(0x20), QualityFlags.artifact),
        (UInt8(0x10), QualityFlags.searching),
        (UInt8(0x08), QualityFlags.sensorFault),
        (UInt8(0x04), QualityFlags.lowPerfusion),  // red perfusion
        (UInt8(0x06), QualityFlags.lowPerfusion),  // yellow perfusion
        (UInt8(0x02), QualityFlags()),             // green perfusion: good signal
        (UInt8(0x00), QualityFlags()),
    ])
    func statusBitFlag(_ bit: UInt8, _ flag: QualityFlags) {
        #expect(NoninStatusBit.flags(for: 0x80 | bit) == flag)
        for frameIndex in [0, 1, 12, 24] {
            let r = noninReplay(SDF2.packet(hr: 70, spo2: 96, status: bit, statusFrames: [frameIndex]), chunk: 7)
            #expect(r == [.samples([sample(.pulseRate, 70, flag), sample(.spo2, 96, flag)])], "bit \(bit) on frame \(frameIndex)")
        }
    }

    @Test("flags are the union over the packet's frames")
    func flagUnion() {
        var p = SDF2.packet(hr: 70, spo2: 96, status: 0x40, statusFrames: [3])
        let q = SDF2.packet(hr: 70, spo2: 96, status: 0x20, statusFrames: [20])
        p.replaceSubrange(100..<105, with: q[100..<105])
        let f: QualityFlags = [.sensorOff, .artifact]
        #expect(noninReplay(p, chunk: 1) == [.samples([sample(.pulseRate, 70, f), sample(.spo2, 96, f)])])
    }

    @Test("a wrong check byte in any frame, any byte, never yields a reading from that packet")
    func checksumNeverYields() {
        let good = SDF2.packet(hr: 80, spo2: 94)
        for frameIndex in 0..<25 {
            for byte in 2..<5 {
                var bad = good
                bad[frameIndex * 5 + byte] ^= 0x08
                let stream = SDF2.packet(hr: 60, spo2: 99) + bad + SDF2.packet(hr: 61, spo2: 98)
                let r = noninReplay(stream, chunk: 2)
                #expect(r.count == 3, "frame \(frameIndex) byte \(byte): \(r)")
                if r.count == 3 {
                    guard case .rejected(let e) = r[1] else { Issue.record("frame \(frameIndex) byte \(byte): accepted"); continue }
                    #expect(e.code == .checksum && e.bytesSkipped == 125, "frame \(frameIndex) byte \(byte): \(e)")
                    #expect(r[0] == .samples([sample(.pulseRate, 60), sample(.spo2, 99)]))
                    #expect(r[2] == .samples([sample(.pulseRate, 61), sample(.spo2, 98)]))
                }
            }
        }
    }

    @Test("a truncated packet at the end is reported, and the decoder is reusable after finish()")
    func truncatedAndReuse() {
        var d = NoninSDF2Decoder()
        let p = SDF2.packet(hr: 70, spo2: 96)
        #expect(d.decode(p[0..<37]).isEmpty)
        let end = d.finish()
        #expect(end.count == 1)
        if case .rejected(let e) = end.first { #expect(e.code == .truncated && e.bytesSkipped == 37) }
        #expect(d.decode(p) == [.samples([sample(.pulseRate, 70), sample(.spo2, 96)])])
        #expect(d.finish().isEmpty)
    }

    @Test("random noise never yields a reading, and every byte is accounted for")
    func noiseOnly() {
        var rng = SplitMix64(state: 0xA11CE)
        for _ in 0..<50 {
            let bytes = (0..<Int.random(in: 0..<3000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let r = noninReplay(bytes, chunk: Int.random(in: 1...97, using: &rng))
            #expect(!r.contains { if case .samples = $0 { true } else { false } })
            #expect(r.reduce(0) { if case .rejected(let e) = $1 { $0 + e.bytesSkipped } else { $0 } } == bytes.count)
        }
    }

    @Test("garbage fuzz: packets mixed with noise and corruption")
    func garbageFuzz() {
        var rng = SplitMix64(state: 0x5EED_0F_A11)
        for iteration in 0..<200 {
            var stream: [UInt8] = []
            var sent: Set<[Int]> = []
            var intact = 0
            for _ in 0..<Int.random(in: 1...12, using: &rng) {
                let hr = Int.random(in: 30...250, using: &rng), spo2 = Int.random(in: 70...100, using: &rng)
                var p = SDF2.packet(hr: hr, spo2: spo2)
                switch Int.random(in: 0..<6, using: &rng) {
                case 0: p[Int.random(in: 0..<125, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
                case 1: p = Array(p.prefix(Int.random(in: 0..<125, using: &rng)))
                case 2:
                    let at = Int.random(in: 0...125, using: &rng)
                    p.insert(contentsOf: (0..<Int.random(in: 1...30, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: at)
                    // Noise before or after a whole packet leaves it intact.
                    if at == 0 || at == 125 { sent.insert([hr, spo2]); intact += 1 }
                default:
                    sent.insert([hr, spo2])
                    intact += 1
                }
                stream += p
                if Bool.random(using: &rng) {
                    stream += (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                }
            }
            let whole = noninReplay(stream, chunk: nil)
            #expect(noninReplay(stream, chunk: 1) == whole, "iteration \(iteration): chunking changed the results")
            #expect(noninReplay(stream, chunk: Int.random(in: 2...64, using: &rng)) == whole, "iteration \(iteration)")
            var got = 0
            for r in whole {
                guard case .samples(let s) = r else { continue }
                got += 1
                let pair = [Int(s.first { $0.vital == .pulseRate }?.quantity.value ?? -1), Int(s.first { $0.vital == .spo2 }?.quantity.value ?? -1)]
                #expect(sent.contains(pair), "iteration \(iteration): a reading that was never sent intact")
            }
            #expect(got <= intact)
            let skipped = whole.reduce(0) { if case .rejected(let e) = $1 { $0 + e.bytesSkipped } else { $0 } }
            #expect(got * 125 + skipped == stream.count, "iteration \(iteration): byte accounting")
        }
    }

    @Test("throughput (informal, no assertion on speed)")
    func throughput() {
        var stream: [UInt8] = []
        for i in 0..<2000 { stream += SDF2.packet(hr: 60 + i % 40, spo2: 90 + i % 10) }
        var d = NoninSDF2Decoder()
        let clock = ContinuousClock()
        var n = 0
        let elapsed = clock.measure {
            var i = 0
            while i < stream.count {
                n += d.decode(stream[i..<min(i + 64, stream.count)]).count
                i += 64
            }
        }
        #expect(n == 2000)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("nonin-sdf2 throughput: \(Int(Double(stream.count) / max(seconds, 1e-9))) bytes/s (\(stream.count) bytes, 64-byte reads)")
    }
}

@Suite struct NoninProfileTests {
    @Test func xpodProfileReadsAsWritten() throws {
        let path = Fixtures.repositoryRoot + "/devices/nonin-xpod.yaml"
        let p = try YAMLDecoder().decode(DeviceProfile.self, from: Fixtures.readFile(path), fileName: path)
        #expect(p.decoder == "nonin-sdf2")
        #expect(p.transport == .serial)
        #expect(p.serial?.baud == 9600 && p.serial?.dataBits == 8 && p.serial?.parity == DeviceProfile.SerialParameters.Parity.none)
        #expect(p.vitals == [.spo2, .pulseRate])
        #expect(p.isPlausible(97, for: .spo2) && !p.isPlausible(101, for: .spo2))
        #expect(p.fixtures.count == 8)
    }
}
