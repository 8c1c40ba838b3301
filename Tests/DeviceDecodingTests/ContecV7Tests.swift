import DeviceDecoding
import DeviceProfiles
import StrictYAML
import Testing
import VigilTestKit
import VitalSigns

/// Builds V7.0 packets for tests (through `ContecV7Packet.encoded`, whose bit layout the
/// first test checks byte by byte against the V7.0 text).
enum V7 {
    static func realtime(pr: UInt8 = 72, spo2: UInt8 = 97, pi: UInt16 = 235, status: UInt8 = 0x06,
                         pleth: UInt8 = 0x30, bar: UInt8 = 0x05) -> [UInt8] {
        ContecV7Packet(type: 0x01, data: [status, pleth, bar, pr, spo2, UInt8(pi & 0xFF), UInt8(pi >> 8)]).encoded
    }

    static func second(n: Int = 60, pr: UInt8 = 72, spo2: UInt8 = 97, pi: UInt16 = 235, status: UInt8 = 0x06,
                       pleth: UInt8 = 0x30, bar: UInt8 = 0x05) -> [UInt8] {
        (0..<n).flatMap { _ in realtime(pr: pr, spo2: spo2, pi: pi, status: status, pleth: pleth, bar: bar) }
    }
}

private func v7Replay(_ bytes: [UInt8], chunk: Int?) -> [DecodeResult] {
    replay(bytes, chunk: chunk, decoder: "contec-cms50-v7")
}

private func s(_ vital: Vital, _ v: Double, _ flags: QualityFlags = []) -> VitalSample {
    VitalSample(vital: vital, quantity: Quantity(v, vital.unit), deviceTime: nil, flags: flags)
}

private func v7Readings(_ results: [DecodeResult]) -> [[VitalSample]] {
    results.compactMap { if case .samples(let x) = $0, !x.isEmpty { x } else { nil } }
}

private func v7Rejections(_ results: [DecodeResult]) -> [FrameError] {
    results.compactMap { if case .rejected(let e) = $0 { e } else { nil } }
}

private func v7Skipped(_ results: [DecodeResult]) -> Int { v7Rejections(results).reduce(0) { $0 + $1.bytesSkipped } }

@Suite("Contec CMS50 V7.0 (firmware 4.6+) fixtures and profile")
struct ContecV7FixtureTests {
    static let captures = Fixtures.allCaptures().filter { $0.hasPrefix("contec-v7/") }

    @Test("the fixture set is there")
    func fixtureSetIsThere() {
        for name in ["normal", "finger-out", "garbage", "corrupt", "truncated", "stored-download", "stored-download-pi"] {
            #expect(Self.captures.contains("contec-v7/\(name).capture"), "missing \(name).capture")
        }
    }

    @Test("every byte of a capture is in an accepted packet or skipped", arguments: captures)
    func byteAccounting(_ name: String) throws {
        let capture = try Fixtures.capture(name)
        var decoder = ContecV7Decoder()
        var results: [DecodeResult] = []
        for record in capture.records { results += decoder.decode(record.bytes) }
        results += decoder.finish()
        #expect(decoder.acceptedBytes + v7Skipped(results) == capture.allBytes.count, "\(name): byte accounting")
    }

    @Test("the stored download: 100 records a second apart across midnight, sequences from the start time")
    func storedDownloadShape() throws {
        let expected = try Fixtures.expected(forCapture: "contec-v7/stored-download.capture")
        #expect(expected.count == 100)
        let firsts = expected.compactMap { e -> VitalSample? in if case .samples(let x) = e { x.first } else { nil } }
        let start = CivilDateTime(year: 2026, month: 11, day: 24, hour: 23, minute: 59, second: 30)
        #expect(firsts.first?.deviceTime == start)
        #expect(firsts.first?.sequence == ContecV7Storage.sequence(start: start, index: 0))
        #expect(firsts.last?.deviceTime == CivilDateTime(year: 2026, month: 11, day: 25, hour: 0, minute: 1, second: 9))
    }

    @Test("the profile reads as written: 115200 8N1, CP210x adapter, the V7 decoder")
    func profile() throws {
        let path = Fixtures.repositoryRoot + "/devices/contec-cms50d-plus-v7.yaml"
        let p = try YAMLDecoder().decode(DeviceProfile.self, from: Fixtures.readFile(path), fileName: path)
        #expect(p.decoder == "contec-cms50-v7")
        #expect(p.transport == .serial)
        #expect(p.serial?.baud == 115_200 && p.serial?.dataBits == 8 && p.serial?.parity == DeviceProfile.SerialParameters.Parity.none
                && p.serial?.stopBits == 1)
        #expect(p.vitals == [.spo2, .pulseRate, .perfusionIndex])
        #expect(p.fixtures.count == 7)
    }
}

@Suite("Contec CMS50 V7.0 (firmware 4.6+) decoder")
struct ContecV7Tests {
    @Test("registered under contec-cms50-v7")
    func registered() {
        #expect(streamDecoderNames.contains("contec-cms50-v7"))
        #expect(makeDecoder(named: "contec-cms50-v7") is ContecV7Decoder)
    }

    @Test("packet layout: type, high byte carrying each data byte's bit 7, data with bit 7 set")
    func layout() {
        #expect(ContecV7Packet(type: 0x01, data: [0x86, 0x30, 0x05, 0xC8, 0x61, 0xEB, 0x00]).encoded
                == [0x01, 0x80 | 0x01 | 0x08 | 0x20, 0x86, 0xB0, 0x85, 0xC8, 0xE1, 0xEB, 0x80])
        // Tommi Airikka's downloader sends "7d 81 a6" to ask for storage data: our A6 packet
        // starts the same way, then carries the user, segment and padding (Table 7 note 4).
        #expect(ContecV7Command.packet(ContecV7Command.queryStorageData, [0, 0]).encoded
                == [0x7D, 0x81, 0xA6, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80])
        #expect(ContecV7RealtimeSession.keepAliveBytes.starts(with: [0x7D, 0x81, 0xAF]))
    }

    @Test("every uplink type round-trips through the parser with any data bits",
          arguments: [0x01, 0x04, 0x05, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0x15] as [UInt8])
    func roundTrip(_ type: UInt8) {
        var rng = SplitMix64(state: UInt64(type))
        for _ in 0..<50 {
            let n = ContecV7Packet.uplinkDataLength(type) ?? -1
            let p = ContecV7Packet(type: type, data: (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) })
            var parser = ContecV7PacketParser()
            #expect(parser.feed(p.encoded) == [.packet(p)])
        }
    }

    @Test("one second of packets gives one reading: pulse rate, SpO2, PI (%), no device time")
    func oneSecond() {
        #expect(v7Replay(V7.second(), chunk: nil) == [.samples([s(.pulseRate, 72), s(.spo2, 97), s(.perfusionIndex, 2.35)])])
        #expect(v7Replay(V7.second(n: 59), chunk: nil).isEmpty)
        #expect(v7Readings(v7Replay(V7.second(n: 180), chunk: 7)).count == 3)
    }

    @Test("each status bit raises its flag, on whichever packet of the second it appears", arguments: [
        // (status byte, pleth byte, expected flags)
        (UInt8(0x80 | 0x06), UInt8(0x40), QualityFlags.sensorOff),   // probe error: "Finger Out"
        (0x10 | 0x06, 0x30, .searching),                             // searching too long
        (0x06, 0x80 | 0x30, .searching),                             // searching for pulse
        (0x00, 0x30, .lowSignal),                                    // signal strength 0
        (0x01, 0x30, .lowSignal),                                    // signal strength 1
        (0x02, 0x30, []),                                            // strength 2: not low
        (0x08, 0x30, []),                                            // strength 8 (the maximum)
        (0x20 | 0x06, 0x30, []),                                     // low SpO2: the device's alarm, not a flag
        (0x40 | 0x06, 0x30, []),                                     // pulse beep
    ] as [(UInt8, UInt8, QualityFlags)])
    func statusBits(_ status: UInt8, _ pleth: UInt8, _ flags: QualityFlags) {
        for position in [0, 31, 59] {
            var bytes = V7.second(n: 60)
            bytes.replaceSubrange(position * 9..<(position + 1) * 9, with: V7.realtime(status: status, pleth: pleth))
            let r = v7Readings(v7Replay(bytes, chunk: nil))
            #expect(r.count == 1)
            #expect(r.first?.allSatisfy { $0.flags == flags } == true, "status \(status) at packet \(position)")
        }
    }

    @Test("the PI-invalid bit drops PI, whatever its value")
    func piInvalidBit() {
        #expect(v7Replay(V7.second(bar: 0x15), chunk: nil) == [.samples([s(.pulseRate, 72), s(.spo2, 97)])])
    }

    @Test("no-value markers give no sample", arguments: [
        (UInt8(0xFF), UInt8(97), UInt16(235), [Vital.spo2, .perfusionIndex]),
        (0, 97, 235, [.spo2, .perfusionIndex]),
        (72, 0x7F, 235, [.pulseRate, .perfusionIndex]),
        (72, 0, 235, [.pulseRate, .perfusionIndex]),
        (72, 97, 0xFFFF, [.pulseRate, .spo2]),
        (72, 97, 0, [.pulseRate, .spo2]),
        (0xFF, 0x7F, 0xFFFF, []),
    ] as [(UInt8, UInt8, UInt16, [Vital])])
    func noValue(_ pr: UInt8, _ spo2: UInt8, _ pi: UInt16, _ vitals: [Vital]) {
        let r = v7Replay(V7.second(pr: pr, spo2: spo2, pi: pi), chunk: nil)
        #expect(r.count == 1)
        guard case .samples(let x) = r.first else { Issue.record("no result"); return }
        #expect(x.map(\.vital) == vitals)
    }

    @Test("edge values are read: pulse rate 1 and 254, SpO2 1 and 100, PI 0.01 and 22 %")
    func edges() {
        #expect(v7Replay(V7.second(pr: 254, spo2: 100, pi: 2200), chunk: nil)
                == [.samples([s(.pulseRate, 254), s(.spo2, 100), s(.perfusionIndex, 22)])])
        #expect(v7Replay(V7.second(pr: 1, spo2: 1, pi: 1), chunk: nil)
                == [.samples([s(.pulseRate, 1), s(.spo2, 1), s(.perfusionIndex, 0.01)])])
    }

    @Test("a field out of range rejects the packet whole, never echoing the value", arguments: [
        (UInt8(101), UInt16(235)), (126, 235), (128, 235), (255, 235), (97, 2201), (97, 0xFFFE),
    ] as [(UInt8, UInt16)])
    func malformed(_ spo2: UInt8, _ pi: UInt16) {
        let bytes = V7.second(n: 30) + V7.realtime(spo2: spo2, pi: pi) + V7.second(n: 60)
        let r = v7Replay(bytes, chunk: nil)
        #expect(v7Rejections(r).map(\.code) == [.malformedField])
        #expect(v7Rejections(r).first?.bytesSkipped == 9)
        #expect(v7Rejections(r).first.map { !$0.message.contains(String(spo2)) && !$0.message.contains(String(pi)) } == true)
        // The 30 packets before the bad one never make a second: exactly one reading, after.
        #expect(v7Readings(r).count == 1)
    }

    @Test("resynchronises at every byte offset: a stream joined mid-packet")
    func joinAtEveryOffset() {
        let stream = V7.second(n: 62)
        for k in 0..<(9 * 2) {
            let r = v7Replay(Array(stream[k...]), chunk: nil)
            let lost = k % 9 == 0 ? 0 : 9 - k % 9
            #expect(v7Skipped(r) == lost, "offset \(k)")
            #expect(v7Rejections(r).allSatisfy { $0.code == .garbage }, "offset \(k)")
            #expect(v7Readings(r) == [[s(.pulseRate, 72), s(.spo2, 97), s(.perfusionIndex, 2.35)]], "offset \(k)")
        }
    }

    @Test("resynchronises at every byte offset: a stray type byte cuts the packet it lands in")
    func strayByteAtEveryOffset() {
        let stream = V7.second(n: 180)
        for k in 0...(60 * 9) {
            var bytes = stream
            bytes.insert(0x00, at: k)  // 0x00 is no packet type
            let r = v7Replay(bytes, chunk: nil)
            let inside = k % 9 != 0
            #expect(v7Skipped(r) == (inside ? 10 : 1), "offset \(k)")
            #expect(v7Rejections(r).count == 1, "offset \(k)")
            #expect(v7Rejections(r).first?.code == (inside ? .truncated : .garbage), "offset \(k)")
            // Seconds completed before the fault, then seconds counted afresh after it.
            let after = 180 - k / 9 - (inside ? 1 : 0)
            #expect(v7Readings(r).count == (k / 9) / 60 + after / 60, "offset \(k)")
        }
    }

    @Test("a packet cut at the end of the stream is truncated; the decoder is reusable after finish()")
    func cutAtEnd() {
        var d = ContecV7Decoder()
        _ = d.decode(V7.second(n: 10) + Array(V7.realtime().prefix(4)))
        let end = d.finish()
        #expect(end.count == 1)
        #expect(v7Rejections(end).first?.code == .truncated && v7Rejections(end).first?.bytesSkipped == 4)
        #expect(v7Readings(d.decode(V7.second())).count == 1, "the partial second before finish() does not carry over")
        #expect(d.finish().isEmpty)
    }

    @Test("stored records: only inside a download's context, a second apart, padding dropped")
    func storage() {
        let start = CivilDateTime(year: 2010, month: 7, day: 8, hour: 12, minute: 0, second: 58)
        let length = ContecV7Packet(type: 0x08, data: [0, 0, 8, 0, 0, 0]).encoded  // 4 records of 2 bytes
        let date = ContecV7Packet(type: 0x07, data: [0, 0, 20, 10, 7, 8]).encoded
        let time = ContecV7Packet(type: 0x12, data: [0, 0, 12, 0, 58, 0]).encoded
        let data = ContecV7Packet(type: 0x0F, data: [97, 72, 0x7F, 0xFF, 96, 200]).encoded
            + ContecV7Packet(type: 0x0F, data: [95, 70, 0, 0, 0, 0]).encoded
        // Without the context: nothing.
        #expect(v7Readings(v7Replay(data, chunk: nil)).isEmpty)
        #expect(v7Readings(v7Replay(date + time + data, chunk: nil)).isEmpty)
        let r = v7Replay(length + date + time + data, chunk: 3)
        func at(_ i: Int) -> CivilDateTime? { ContecV7Storage.time(start: start, index: i) }
        func rec(_ i: Int, _ spo2: Double?, _ pr: Double?) -> DecodeResult {
            let seq = ContecV7Storage.sequence(start: start, index: i)
            var x: [VitalSample] = []
            if let spo2 { x.append(VitalSample(vital: .spo2, quantity: Quantity(spo2, "%"), deviceTime: at(i), sequence: seq)) }
            if let pr { x.append(VitalSample(vital: .pulseRate, quantity: Quantity(pr, "/min"), deviceTime: at(i), sequence: seq)) }
            return .samples(x)
        }
        #expect(r == [rec(0, 97, 72), rec(1, nil, nil), rec(2, 96, 200), rec(3, 95, 70)])
        #expect(at(2) == CivilDateTime(year: 2010, month: 7, day: 8, hour: 12, minute: 1, second: 0))
        // A line error inside the storage stream forgets the context: nothing after it is placed.
        var broken = length + date + time + data
        broken.insert(0x00, at: length.count + date.count + time.count + 3)
        let b = v7Replay(broken, chunk: nil)
        #expect(v7Readings(b).isEmpty && v7Rejections(b).count == 1)
    }

    @Test("storage: an out-of-range start time is malformed; an all-zero one means no clock")
    func startTimes() {
        let length = ContecV7Packet(type: 0x08, data: [0, 0, 2, 0, 0, 0]).encoded
        let record = ContecV7Packet(type: 0x0F, data: [97, 72, 0, 0, 0, 0]).encoded
        let bad = v7Replay(length + ContecV7Packet(type: 0x07, data: [0, 0, 20, 10, 13, 1]).encoded
                           + ContecV7Packet(type: 0x12, data: [0, 0, 0, 0, 0, 0]).encoded + record, chunk: nil)
        #expect(v7Rejections(bad).map(\.code) == [.malformedField] && v7Readings(bad).isEmpty)
        let none = v7Replay(length + ContecV7Packet(type: 0x07, data: [0, 0, 0, 0, 0, 0]).encoded
                            + ContecV7Packet(type: 0x12, data: [0, 0, 0, 0, 0, 0]).encoded + record, chunk: nil)
        #expect(none == [.samples([VitalSample(vital: .spo2, quantity: Quantity(97, "%"), deviceTime: nil, sequence: 0),
                                   VitalSample(vital: .pulseRate, quantity: Quantity(72, "/min"), deviceTime: nil, sequence: 0)])])
    }

    @Test("random bytes never trap, never make a reading, and every byte is accounted for")
    func noiseOnly() {
        var rng = SplitMix64(state: 0xC0_47EC_0007)
        for iteration in 0..<200 {
            let bytes = (0..<Int.random(in: 0..<5000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var d = ContecV7Decoder()
            var r: [DecodeResult] = []
            var i = 0
            while i < bytes.count {
                let n = Int.random(in: 1...97, using: &rng)
                r += d.decode(bytes[i..<min(i + n, bytes.count)])
                i += n
            }
            r += d.finish()
            #expect(v7Readings(r).isEmpty, "iteration \(iteration)")
            #expect(d.acceptedBytes + v7Skipped(r) == bytes.count, "iteration \(iteration)")
        }
    }

    @Test("garbage fuzz: seconds mixed with noise; chunking never changes the results")
    func garbageFuzz() {
        var rng = SplitMix64(state: 0xC0_47EC_F027)
        for iteration in 0..<100 {
            var stream: [UInt8] = []
            for _ in 0..<Int.random(in: 1...5, using: &rng) {
                var sec = V7.second(pr: UInt8.random(in: 30...250, using: &rng), spo2: UInt8.random(in: 70...100, using: &rng))
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: sec[Int.random(in: 0..<sec.count, using: &rng)] ^= 0x80
                case 1: sec = Array(sec.prefix(Int.random(in: 0..<sec.count, using: &rng)))
                case 2: sec.insert(contentsOf: (0..<Int.random(in: 1...30, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) },
                                   at: Int.random(in: 0...sec.count, using: &rng))
                default: break
                }
                stream += sec
            }
            let whole = v7Replay(stream, chunk: nil)
            #expect(v7Replay(stream, chunk: 1) == whole, "iteration \(iteration): chunking changed the results")
            #expect(v7Replay(stream, chunk: Int.random(in: 2...64, using: &rng)) == whole, "iteration \(iteration)")
        }
    }

    @Test("download state machine: a line error mid-storage abandons the attempt; the retry resumes without repeats")
    func downloadResumesAfterLineError() {
        let start = CivilDateTime(year: 2026, month: 1, day: 2, hour: 3, minute: 4, second: 5)
        let feedback = ContecV7Packet(type: 0x0C, data: []).encoded
        let length = ContecV7Packet(type: 0x08, data: [0, 0, 12, 0, 0, 0]).encoded  // 6 records
        let when = ContecV7Packet(type: 0x07, data: [0, 0, 20, 26, 1, 2]).encoded
            + ContecV7Packet(type: 0x12, data: [0, 0, 3, 4, 5, 0]).encoded
        let first = ContecV7Packet(type: 0x0F, data: [97, 70, 96, 71, 95, 72]).encoded
        let second = ContecV7Packet(type: 0x0F, data: [94, 73, 93, 74, 92, 75]).encoded
        func cmd(_ c: UInt8) -> [UInt8] { ContecV7Command.packet(c, [0, 0]).encoded }
        func seqs(_ r: [DecodeResult]) -> [UInt64] { r.compactMap { if case .samples(let x) = $0 { x.first?.sequence } else { nil } } }

        var d = ContecStoredDataDownload()
        #expect(d.begin() == ContecV7Command.packet(ContecV7Command.stopRealtime).encoded
                + ContecV7Command.packet(ContecV7Command.stopStorageData).encoded)
        // Stale real-time packets before the stop's answer are ignored.
        #expect(d.receive(V7.second(n: 3) + feedback).send == [cmd(0xA4)])
        #expect(d.receive(length).send == [cmd(0xA5)])
        #expect(d.receive(when).send == [cmd(0xA6)])
        var broken = second
        broken[4] &= 0x7F
        let r1 = d.receive(first + broken).results
        #expect(seqs(r1) == (0..<3).map { ContecV7Storage.sequence(start: start, index: $0) })
        #expect(!d.isComplete)
        _ = d.receive(second)  // the rest of the stream after the loss is not read
        #expect(!d.isComplete)
        _ = d.abandonAttempt()
        _ = d.begin()
        _ = d.receive(feedback)
        _ = d.receive(length)
        _ = d.receive(when)
        let r2 = d.receive(first + second).results
        #expect(seqs(r2) == (3..<6).map { ContecV7Storage.sequence(start: start, index: $0) })
        #expect(d.isComplete)
    }
}
