import DeviceDecoding
import VigilTestKit
import Testing
import VitalSigns

let exampleLine = "02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"

func line(spo2: String = "098", bpm: String = "097", pi: String = "03.60", alarm: String = "0000", exc: String = "000800",
          date: String = "02/22/16", time: String = "22:47:45") -> String {
    "\(date) \(time) SN=0000056661 SPO2=\(spo2)% BPM=\(bpm) PI=\(pi)% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=\(alarm) EXC=\(exc)\r\n"
}

func decodeAll(_ text: String) -> [DecodeResult] {
    var d = MasimoASCIIDecoder()
    return d.decode(Array(text.utf8)) + d.finish()
}

func onlySamples(_ results: [DecodeResult]) -> [VitalSample]? {
    guard results.count == 1, case .samples(let s) = results[0] else { return nil }
    return s
}

@Suite("Masimo ASCII 1 decoder")
struct MasimoDecoderTests {
    @Test("the manual's example line decodes to SpO2, pulse rate and PI with the device time")
    func exampleDecodes() throws {
        let samples = try #require(onlySamples(decodeAll(exampleLine)))
        let t = CivilDateTime(year: 2016, month: 2, day: 22, hour: 22, minute: 47, second: 45)
        #expect(samples == [
            VitalSample(vital: .spo2, quantity: Quantity(98, "%"), deviceTime: t),
            VitalSample(vital: .pulseRate, quantity: Quantity(97, "/min"), deviceTime: t),
            VitalSample(vital: .perfusionIndex, quantity: Quantity(3.6, "%"), deviceTime: t),
        ])
        #expect(samples.allSatisfy { $0.sequence == nil && $0.flags.isEmpty })
    }

    @Test("CivilDateTime fields: MM/DD/YY HH:MM:SS, two-digit year is 20YY",
          arguments: [("01/02/03", "04:05:06", 2003, 1, 2, 4, 5, 6), ("12/31/99", "23:59:59", 2099, 12, 31, 23, 59, 59),
                      ("02/29/16", "00:00:00", 2016, 2, 29, 0, 0, 0), ("10/09/00", "12:30:07", 2000, 10, 9, 12, 30, 7)])
    func civilFields(_ d: String, _ tm: String, _ y: Int, _ mo: Int, _ day: Int, _ h: Int, _ mi: Int, _ s: Int) throws {
        let samples = try #require(onlySamples(decodeAll(line(date: d, time: tm))))
        let t = try #require(samples.first?.deviceTime)
        #expect([t.year, t.month, t.day, t.hour, t.minute, t.second, t.millisecond] == [y, mo, day, h, mi, s, 0])
    }

    @Test("invalid calendar dates and times are rejected whole",
          arguments: [("02/29/15", "10:00:00"), ("13/01/16", "10:00:00"), ("00/10/16", "10:00:00"), ("04/31/16", "10:00:00"),
                      ("01/01/16", "24:00:00"), ("01/01/16", "10:60:00"), ("01/01/16", "10:00:60")])
    func invalidDates(_ d: String, _ tm: String) {
        let r = decodeAll(line(date: d, time: tm))
        #expect(r.count == 1)
        guard case .rejected(let e) = r.first else { Issue.record("accepted an invalid date"); return }
        #expect(e.code == .malformedField)
    }

    @Test("each EXC bit maps to its quality flag on every value of the line",
          arguments: MasimoExceptionBit.all)
    func exceptionBit(_ bit: MasimoExceptionBit) throws {
        let hex = String(bit.mask, radix: 16, uppercase: true)
        let exc = String(repeating: "0", count: 6 - hex.count) + hex
        let samples = try #require(onlySamples(decodeAll(line(exc: exc))))
        #expect(samples.count == 3)
        for s in samples { #expect(s.flags == bit.flags, "EXC \(exc) \(bit.name)") }
    }

    @Test("the brief's mapping of exception conditions to flags")
    func exceptionTable() {
        let byName = Dictionary(MasimoExceptionBit.all.map { ($0.name, $0.flags) }, uniquingKeysWith: { a, _ in a })
        #expect(byName["No Sensor"] == .sensorOff)
        #expect(byName["Sensor Off"] == .sensorOff)
        #expect(byName["Defective Sensor"] == .sensorFault)
        #expect(byName["Unrecognized Sensor"] == .sensorFault)
        #expect(byName["Low Perfusion"] == .lowPerfusion)
        #expect(byName["Pulse Search"] == .searching)
        #expect(byName["Interference"] == .artifact)
        #expect(byName["Ambient Light"] == .artifact)
        #expect(byName["Low Signal IQ"] == .lowSignal)
        #expect(byName["Masimo SET"] == [])
        #expect(MasimoExceptionBit.flags(for: 0x000C28) == [.sensorOff, .searching, .lowSignal])
        // Bits are distinct and cover the 24-bit field.
        #expect(Set(MasimoExceptionBit.all.map(\.mask)).count == 24)
        #expect(MasimoExceptionBit.all.reduce(0) { $0 | $1.mask } == 0xFFFFFF)
    }

    @Test("each ALARM bit marks the vital it is about (alarm active marks all)", arguments: MasimoAlarmBit.all)
    func alarmBit(_ bit: MasimoAlarmBit) throws {
        let hex = String(bit.mask, radix: 16, uppercase: true)
        let alarm = String(repeating: "0", count: 4 - hex.count) + hex
        let samples = try #require(onlySamples(decodeAll(line(alarm: alarm))))
        for s in samples {
            let marked = bit.marksValues && (bit.vital == nil || bit.vital == s.vital)
            #expect(s.flags == (marked ? .deviceAlarm : []), "ALARM \(alarm) \(bit.name) on \(s.vital.key)")
        }
    }

    @Test("dashes mean no value; only the fields with a value yield samples")
    func missingValues() throws {
        #expect(try #require(onlySamples(decodeAll(line(spo2: "---", bpm: "---", pi: "--.--")))).isEmpty)
        let s = try #require(onlySamples(decodeAll(line(spo2: "---", pi: "--.-"))))
        #expect(s.map(\.vital) == [.pulseRate])
    }

    @Test("a line with one bad field is rejected whole, naming the field but not its value")
    func badFieldRejectsLine() throws {
        let r = decodeAll(line(spo2: "1X7"))
        #expect(r.count == 1)
        guard case .rejected(let e) = r.first else { Issue.record("accepted"); return }
        #expect(e.code == .malformedField)
        #expect(e.message.contains("SPO2"))
        #expect(!e.message.contains("1X7"))
        #expect(e.bytesSkipped == line(spo2: "1X7").utf8.count - 2)
        // Out-of-range values are not echoed either.
        let r2 = decodeAll(line(spo2: "187"))
        guard case .rejected(let e2) = r2.first else { Issue.record("accepted SpO2 187"); return }
        #expect(!e2.message.contains("187"))
        #expect(!e2.description.contains("0000056661"))
    }

    @Test("every message of every rejection is free of the line's digits runs")
    func messagesCarryNoValues() {
        let bad = [line(spo2: "0X8"), line(bpm: "1.5"), line(pi: "1.2.3"), line(exc: "ZZ"), line(alarm: "123456789"),
                   "02/22/16 22:47:45 SN=0000056661 SPO2=098%\r\n", "\u{01}\u{02}98765\r\n"]
        for text in bad {
            for case .rejected(let e) in decodeAll(text) {
                #expect(!e.message.contains("0000056661") && !e.message.contains("98765") && !e.message.contains("098"), "\(e)")
            }
        }
    }

    @Test("a line longer than 256 bytes without an end is dropped, and the next line decodes")
    func overlongLine() throws {
        let long = "02/22/16 22:47:45 " + String(repeating: "X=1 ", count: 100)
        let results = decodeAll(long + "\r\n" + exampleLine)
        #expect(results.contains { if case .rejected(let e) = $0 { e.code == .lineTooLong } else { false } })
        guard case .samples(let s) = results.last else { Issue.record("the good line was lost"); return }
        #expect(s.count == 3)
    }

    @Test("LF-only and CR-only terminated lines decode too")
    func terminators() {
        let body = String(exampleLine.dropLast(2))
        for t in ["\n", "\r", "\r\n", "\n\r"] {
            let r = decodeAll(body + t + body + t)
            #expect(r.count == 2 && r.allSatisfy { if case .samples(let s) = $0 { s.count == 3 } else { false } }, "terminator \(t.utf8.map { $0 })")
        }
    }

    @Test("finish() resets: the decoder can be reused after a stream ended mid-line")
    func finishResets() {
        var d = MasimoASCIIDecoder()
        #expect(d.decode(Array(exampleLine.utf8.prefix(30))).isEmpty)
        let f = d.finish()
        #expect(f.count == 1)
        let after = d.decode(Array(exampleLine.utf8))
        #expect(after.count == 1)
        #expect(d.finish().isEmpty)
    }

    @Test("the registry makes a Masimo decoder by name and nothing for unknown names")
    func registry() {
        #expect(makeDecoder(named: "masimo-ascii1") is MasimoASCIIDecoder)
        #expect(makeDecoder(named: "nonin-2") == nil)
        #expect(streamDecoderNames.allSatisfy { makeDecoder(named: $0) != nil })
    }
}

@Suite("Masimo decoder fuzz")
struct MasimoFuzzTests {
    @Test("random garbage never crashes, and a good line after it still decodes (seeded, 4000 rounds)")
    func garbageThenGoodLine() {
        var rng = SplitMix64(state: 0x5EED_CAFE)
        let good = Array(exampleLine.utf8)
        var decoder = MasimoASCIIDecoder()
        for round in 0..<4000 {
            let n = Int.random(in: 0...600, using: &rng)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Sometimes garbage made of line-like bytes (digits, separators, field names),
            // the hardest kind for a resynchroniser.
            if round % 3 == 0 {
                let alphabet = Array("0123456789/: =%-.SPOBMIALRXC\r\n".utf8)
                bytes = (0..<n).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &rng)] }
            }
            var results: [DecodeResult] = []
            var i = 0
            let all = bytes + good
            while i < all.count {
                let step = Int.random(in: 1...80, using: &rng)
                results += decoder.decode(all[i..<min(i + step, all.count)])
                i += step
            }
            guard case .samples(let s) = results.last, s.count == 3, s[0].quantity.value == 98 else {
                Issue.record("round \(round): the good line after \(n) garbage bytes was not decoded")
                return
            }
            for case .rejected(let e) in results { #expect(e.bytesSkipped > 0) }
        }
        #expect(decoder.finish().isEmpty)
    }

    @Test("random chunking of all fixtures' bytes concatenated never crashes and is chunk-independent")
    func chunkIndependence() {
        var rng = SplitMix64(state: 42)
        let bytes = (0..<20_000).map { i -> UInt8 in
            i % 5 == 0 ? UInt8.random(in: 0...255, using: &rng) : Array(exampleLine.utf8)[i % exampleLine.utf8.count]
        }
        var reference = MasimoASCIIDecoder()
        let expected = reference.decode(bytes) + reference.finish()
        for _ in 0..<20 {
            var d = MasimoASCIIDecoder()
            var out: [DecodeResult] = []
            var i = 0
            while i < bytes.count {
                let step = Int.random(in: 1...300, using: &rng)
                out += d.decode(bytes[i..<min(i + step, bytes.count)])
                i += step
            }
            out += d.finish()
            #expect(out == expected)
        }
    }
}

@Suite("Capture format")
struct CaptureFormatTests {
    @Test("parses offsets, spaced hex and comments")
    func parses() throws {
        let c = try Capture.parse("# a comment\n\n0 3031 0d0a\n  1000 ff\r\n1000 00\n")
        #expect(c.records == [.init(offsetMilliseconds: 0, bytes: [0x30, 0x31, 0x0D, 0x0A]),
                              .init(offsetMilliseconds: 1000, bytes: [0xFF]), .init(offsetMilliseconds: 1000, bytes: [0])])
        #expect(try Capture.parse(c.formatted()) == c)
    }

    @Test("errors carry the code and the 1-based line number",
          arguments: [("0 30\nx 30\n", CaptureError.Code.badOffset, 2), ("5 30\n4 30\n", .offsetDecreasing, 2),
                      ("# c\n0 3g\n", .badHex, 2), ("0 303\n", .oddHexLength, 1), ("0\n", .missingBytes, 1),
                      ("0 \n", .missingBytes, 1), ("99999999999999999 30\n", .badOffset, 1)])
    func errors(_ text: String, _ code: CaptureError.Code, _ lineNumber: Int) {
        #expect(throws: CaptureError(code, line: lineNumber)) { try Capture.parse(text) }
    }
}
