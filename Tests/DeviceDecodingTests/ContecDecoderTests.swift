import DeviceDecoding
import DeviceProfiles
import StrictYAML
import Testing
import VigilTestKit
import VitalSigns

/// Builds Contec CMS50 legacy live frames for tests.
enum CMS50 {
    /// One 5-byte frame. `sync` bits (beep 0x40, dropping 0x20, finger out 0x10) are OR-ed into
    /// byte 1 with `strength`; `status` bits (searching 0x20, probe error 0x10) into byte 3.
    static func frame(pr: Int, spo2: Int, strength: UInt8 = 6, sync: UInt8 = 0, status: UInt8 = 0,
                      pleth: UInt8 = 50, bar: UInt8 = 4) -> [UInt8] {
        [0x80 | sync | (strength & 0x0F),
         pleth & 0x7F,
         status | (bar & 0x0F) | UInt8((pr & 0x80) >> 1),
         UInt8(pr & 0x7F),
         UInt8(spo2 & 0x7F)]
    }

    /// `n` frames of the same values (a second by default); `at` overrides single frames.
    static func second(pr: Int, spo2: Int, n: Int = 60, strength: UInt8 = 6, sync: UInt8 = 0, status: UInt8 = 0,
                       at: [Int: [UInt8]] = [:]) -> [UInt8] {
        (0..<n).flatMap { i in at[i] ?? frame(pr: pr, spo2: spo2, strength: strength, sync: sync, status: status,
                                               pleth: UInt8(20 + i % 90)) }
    }
}

func contecReplay(_ bytes: [UInt8], chunk: Int?) -> [DecodeResult] {
    replay(bytes, chunk: chunk, decoder: "contec-cms50-legacy")
}

private func s(_ vital: Vital, _ v: Double, _ flags: QualityFlags = []) -> VitalSample {
    VitalSample(vital: vital, quantity: Quantity(v, vital.unit), deviceTime: nil, flags: flags)
}

private func reading(_ pr: Double, _ spo2: Double, _ flags: QualityFlags = []) -> DecodeResult {
    .samples([s(.pulseRate, pr, flags), s(.spo2, spo2, flags)])
}

private func isReading(_ r: DecodeResult) -> Bool {
    if case .samples(let x) = r { !x.isEmpty } else { false }
}

private func skipped(_ results: [DecodeResult]) -> Int {
    results.reduce(0) { if case .rejected(let e) = $1 { $0 + e.bytesSkipped } else { $0 } }
}

@Suite("Contec CMS50 legacy fixtures")
struct ContecFixtureTests {
    static let captures = Fixtures.allCaptures().filter { $0.hasPrefix("contec/") }

    @Test("the fixture set is there")
    func fixtureSetIsThere() {
        for name in ["normal", "finger-out", "searching", "low-signal", "missing-values", "garbage", "truncated"] {
            #expect(Self.captures.contains("contec/\(name).capture"), "missing \(name).capture")
        }
    }

    @Test("every byte of a capture is in an accepted frame or skipped", arguments: captures)
    func byteAccounting(_ name: String) throws {
        let capture = try Fixtures.capture(name)
        var decoder = ContecLegacyDecoder()
        var results: [DecodeResult] = []
        for record in capture.records { results += decoder.decode(record.bytes) }
        results += decoder.finish()
        #expect(decoder.acceptedFrames * 5 + skipped(results) == capture.allBytes.count, "\(name): byte accounting")
    }

    @Test("the profile reads as written: 19200 8O1, CP210x adapter, the legacy decoder")
    func profile() throws {
        let path = Fixtures.repositoryRoot + "/devices/contec-cms50d-plus.yaml"
        let p = try YAMLDecoder().decode(DeviceProfile.self, from: Fixtures.readFile(path), fileName: path)
        #expect(p.decoder == "contec-cms50-legacy")
        #expect(p.transport == .serial)
        #expect(p.serial?.baud == 19200 && p.serial?.dataBits == 8 && p.serial?.parity == .odd && p.serial?.stopBits == 1)
        #expect(p.vitals == [.spo2, .pulseRate])
        #expect(p.isPlausible(97, for: .spo2) && !p.isPlausible(101, for: .spo2))
        #expect(p.isPlausible(72, for: .pulseRate) && !p.isPlausible(251, for: .pulseRate))
        #expect(p.fixtures.count == 7)
    }
}

@Suite("Contec CMS50 legacy decoder")
struct ContecDecoderTests {
    @Test("registered under contec-cms50-legacy")
    func registered() {
        #expect(streamDecoderNames.contains("contec-cms50-legacy"))
        #expect(makeDecoder(named: "contec-cms50-legacy") is ContecLegacyDecoder)
    }

    @Test("one second of frames gives one reading: pulse rate then SpO2, no device time")
    func oneSecond() {
        #expect(contecReplay(CMS50.second(pr: 72, spo2: 97), chunk: nil) == [reading(72, 97)])
        #expect(contecReplay(CMS50.second(pr: 72, spo2: 97, n: 59), chunk: 1) == [])
    }

    @Test("emission policy: one reading per 60 frames, values of the 60th, flags of all 60")
    func emissionPolicy() {
        // 180 frames whose values change every frame: exactly three readings, each with the
        // values of frames 60, 120 and 180.
        var stream: [UInt8] = []
        for i in 1...180 { stream += CMS50.frame(pr: 60 + i % 50, spo2: 90 + i % 10) }
        #expect(contecReplay(stream, chunk: 7) == [
            reading(Double(60 + 60 % 50), Double(90 + 60 % 10)),
            reading(Double(60 + 120 % 50), Double(90 + 120 % 10)),
            reading(Double(60 + 180 % 50), Double(90 + 180 % 10)),
        ])
        // A flag on one frame of the second marks the reading; the next second is clean.
        let flagged = CMS50.second(pr: 70, spo2: 96, at: [3: CMS50.frame(pr: 70, spo2: 96, status: 0x20)])
        #expect(contecReplay(flagged + CMS50.second(pr: 71, spo2: 96), chunk: 3)
            == [reading(70, 96, .searching), reading(71, 96)])
        // 119 frames: one reading; finish() drops the partial second.
        #expect(contecReplay(CMS50.second(pr: 70, spo2: 96, n: 119), chunk: nil) == [reading(70, 96)])
    }

    @Test("a rejected byte restarts the count of 60 frames")
    func rejectionRestartsCount() {
        let stream = CMS50.second(pr: 70, spo2: 96, n: 59) + [0x01] + CMS50.second(pr: 71, spo2: 97)
        let r = contecReplay(stream, chunk: 2)
        #expect(r.count == 2)
        #expect(r.first.map { if case .rejected(let e) = $0 { e.code == .garbage && e.bytesSkipped == 1 } else { false } } == true)
        #expect(r.last == reading(71, 97))
    }

    @Test("each flag bit raises its flag, on whichever frame of the second it appears", arguments: [
        (UInt8(0x10), UInt8(0), UInt8(6), QualityFlags.sensorOff),   // byte 1 bit 4: finger out
        (UInt8(0), UInt8(0x10), UInt8(6), QualityFlags.sensorOff),   // byte 3 bit 4: probe error
        (UInt8(0), UInt8(0x20), UInt8(6), QualityFlags.searching),   // byte 3 bit 5: searching
        (UInt8(0), UInt8(0), UInt8(0), QualityFlags.lowSignal),      // signal strength 0
        (UInt8(0), UInt8(0), UInt8(2), QualityFlags.lowSignal),      // signal strength 2
        (UInt8(0), UInt8(0), UInt8(3), QualityFlags()),              // signal strength 3
        (UInt8(0), UInt8(0), UInt8(15), QualityFlags()),             // signal strength 15
        (UInt8(0x40), UInt8(0), UInt8(6), QualityFlags()),           // byte 1 bit 6: pulse beep
        (UInt8(0x20), UInt8(0), UInt8(6), QualityFlags()),           // byte 1 bit 5: SpO2 dropping
        (UInt8(0), UInt8(0x0F), UInt8(6), QualityFlags()),           // byte 3 bits 3-0: bar graph
        (UInt8(0x10), UInt8(0x30), UInt8(1), QualityFlags([.sensorOff, .searching, .lowSignal])),
    ])
    func flagBits(_ sync: UInt8, _ status: UInt8, _ strength: UInt8, _ flags: QualityFlags) {
        let f = CMS50.frame(pr: 80, spo2: 95, strength: strength, sync: sync, status: status)
        #expect(ContecLegacyFrame(f[0], f[1], f[2], f[3], f[4]).flags == flags)
        for index in [0, 29, 59] {
            let r = contecReplay(CMS50.second(pr: 80, spo2: 95, at: [index: f]), chunk: 7)
            #expect(r == [reading(80, 95, flags)], "frame \(index)")
        }
    }

    @Test("no-value markers give no sample", arguments: [
        (255, 97, [Vital.spo2]), (0, 97, [.spo2]), (72, 127, [.pulseRate]), (72, 0, [.pulseRate]),
        (255, 127, []), (0, 0, []), (255, 0, []), (0, 127, []),
    ])
    func noValue(_ pr: Int, _ spo2: Int, _ present: [Vital]) {
        let r = contecReplay(CMS50.second(pr: pr, spo2: spo2), chunk: nil)
        guard r.count == 1, case .samples(let got) = r[0] else { Issue.record("got \(r)"); return }
        #expect(got.map(\.vital) == present)
    }

    @Test("pulse rate is 8 bits: bit 7 in byte 3 bit 6", arguments: [1, 30, 127, 128, 129, 200, 254])
    func eightBitPulseRate(_ pr: Int) {
        #expect(contecReplay(CMS50.second(pr: pr, spo2: 95), chunk: 3) == [reading(Double(pr), 95)])
    }

    @Test("SpO2 101-126 rejects the frame, never echoing the value", arguments: [101, 110, 126])
    func spo2OutOfRange(_ v: Int) {
        let stream = CMS50.second(pr: 70, spo2: 97, n: 30) + CMS50.frame(pr: 70, spo2: v) + CMS50.second(pr: 71, spo2: 98)
        let r = contecReplay(stream, chunk: 1)
        #expect(r.count == 2)
        guard case .rejected(let e) = r.first else { Issue.record("accepted SpO2 \(v)"); return }
        #expect(e.code == .malformedField && e.bytesSkipped == 5)
        #expect(!e.message.contains(String(v)))
        #expect(r.last == reading(71, 98))
    }

    @Test("a bit-7-set byte in positions 2-5 cuts the frame; nothing is emitted from it")
    func syncInsideFrame() {
        for position in 1..<5 {
            var bad = CMS50.frame(pr: 40, spo2: 80)
            bad[position] |= 0x80
            // 59 good frames, then the broken one: if any part of it were read as a frame, a
            // reading of 40 / 80 or of the second's values would appear.
            let stream = CMS50.second(pr: 70, spo2: 97, n: 59) + bad + CMS50.second(pr: 71, spo2: 98)
            let r = contecReplay(stream, chunk: 1)
            #expect(r.count == 2, "position \(position): \(r)")
            if case .rejected(let e) = r.first {
                #expect(e.code == .truncated || e.code == .garbage, "position \(position)")
                #expect(e.bytesSkipped == 5, "position \(position)")
            } else {
                Issue.record("position \(position): not rejected")
            }
            #expect(r.last == reading(71, 98), "position \(position)")
        }
    }

    @Test("a frame cut at the end of the stream is truncated; the decoder is reusable after finish()")
    func truncatedAndReuse() {
        var d = ContecLegacyDecoder()
        let sec = CMS50.second(pr: 70, spo2: 96)
        #expect(d.decode(sec[0..<152]).isEmpty)   // 30 frames and 2 bytes
        let end = d.finish()
        #expect(end.count == 1)
        if case .rejected(let e) = end.first { #expect(e.code == .truncated && e.bytesSkipped == 2) }
        #expect(d.decode(sec) == [reading(70, 96)], "the partial second before finish() does not carry over")
        #expect(d.finish().isEmpty)
    }

    @Test("random noise alone never yields a reading; every byte is accounted for")
    func noiseOnly() {
        var rng = SplitMix64(state: 0xC0_47EC)
        for iteration in 0..<200 {
            let bytes = (0..<Int.random(in: 0..<5000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var d = ContecLegacyDecoder()
            var r: [DecodeResult] = []
            var i = 0
            while i < bytes.count {
                let n = Int.random(in: 1...97, using: &rng)
                r += d.decode(bytes[i..<min(i + n, bytes.count)])
                i += n
            }
            r += d.finish()
            #expect(!r.contains(where: isReading), "iteration \(iteration)")
            #expect(d.acceptedFrames * 5 + skipped(r) == bytes.count, "iteration \(iteration)")
        }
    }

    /// Noise in which every fourth byte is a sync byte, so no five bytes of it form a frame:
    /// random bytes can form frames with arbitrary values (the protocol has no checksum),
    /// and ``noiseOnly()`` covers those.
    static func structuredNoise(_ n: Int, _ rng: inout SplitMix64) -> [UInt8] {
        (0..<n).map { i in i % 4 == 0 ? UInt8.random(in: 0x80...0xFF, using: &rng) : UInt8.random(in: 0...255, using: &rng) }
    }

    @Test("garbage fuzz: seconds of frames mixed with noise; chunking never changes the results")
    func garbageFuzz() {
        var rng = SplitMix64(state: 0xC0_47EC_F022)
        for iteration in 0..<150 {
            var stream: [UInt8] = []
            var sent: Set<[Int]> = []
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                let pr = Int.random(in: 30...250, using: &rng), spo2 = Int.random(in: 70...100, using: &rng)
                var sec = CMS50.second(pr: pr, spo2: spo2)
                switch Int.random(in: 0..<5, using: &rng) {
                case 0: sec[Int.random(in: 0..<300, using: &rng)] ^= 0x80  // breaks the framing
                case 1: sec = Array(sec.prefix(Int.random(in: 0..<300, using: &rng)))
                case 2:
                    sec.insert(contentsOf: Self.structuredNoise(Int.random(in: 1...30, using: &rng), &rng),
                               at: Int.random(in: 0...300, using: &rng))
                default: break
                }
                sent.insert([pr, spo2])
                stream += sec
                if Bool.random(using: &rng) {
                    stream += Self.structuredNoise(Int.random(in: 0...40, using: &rng), &rng)
                }
            }
            let whole = contecReplay(stream, chunk: nil)
            #expect(contecReplay(stream, chunk: 1) == whole, "iteration \(iteration): chunking changed the results")
            #expect(contecReplay(stream, chunk: Int.random(in: 2...64, using: &rng)) == whole, "iteration \(iteration)")
            for r in whole {
                guard case .samples(let x) = r, !x.isEmpty else { continue }
                let pair = [Int(x.first { $0.vital == .pulseRate }?.quantity.value ?? -1),
                            Int(x.first { $0.vital == .spo2 }?.quantity.value ?? -1)]
                #expect(sent.contains(pair), "iteration \(iteration): a reading that was never sent")
            }
        }
    }
}
