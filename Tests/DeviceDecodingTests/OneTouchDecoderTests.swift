import DeviceDecoding
import Testing
import VigilTestKit
import VitalSigns

/// Builds OneTouch Ultra 2 dump lines for tests (the checksum computed here independently:
/// the 16-bit sum of the line's bytes before the space that precedes the checksum).
enum Ultra2 {
    static func sum(_ s: String) -> String {
        let v = s.utf8.reduce(0) { ($0 + Int($1)) & 0xFFFF }
        let hex = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: 4 - hex.count) + hex
    }
    static func line(_ body: String) -> [UInt8] { Array((body + " " + sum(body) + "\r\n").utf8) }
    static func header(_ count: Int, unit: String = "MG/DL ") -> [UInt8] {
        let n = String(count)
        return line("P " + String(repeating: "0", count: 3 - n.count) + n + ",\"GMF600DCY\",\"" + unit + "\"")
    }
    /// A record at `day` of March 2015, `hour`:00:00; `flag` is "C" (control) or " ".
    static func record(day: Int, hour: Int, value: Int, flag: String = " ", parity: String = " ") -> [UInt8] {
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let v = String(value)
        let value3 = String(repeating: "0", count: 3 - v.count) + v
        return line("P \"SUN\",\"03/\(two(day))/15\",\"\(two(hour)):00:00   \",\"\(flag) \(value3)\(parity)\",\"N\",\"00\", 00")
    }
    /// A dump of `readings` given OLDEST first (the meter sends them newest first).
    static func dump(_ readings: [(day: Int, value: Int)], unit: String = "MG/DL ") -> [UInt8] {
        header(readings.count, unit: unit) + readings.reversed().flatMap { record(day: $0.day, hour: 8, value: $0.value) }
    }
}

func oneTouch(_ bytes: [UInt8], chunk: Int? = nil) -> [DecodeResult] {
    replay(bytes, chunk: chunk, decoder: "onetouch-ultra2")
}

func glucose(_ results: [DecodeResult]) -> [VitalSample] {
    results.flatMap { r -> [VitalSample] in
        if case .samples(let s) = r { return s }
        return []
    }
}

func rejections(_ results: [DecodeResult]) -> [FrameError.Code] {
    results.compactMap { r -> FrameError.Code? in
        if case .rejected(let e) = r { return e.code }
        return nil
    }
}

@Suite("OneTouch Ultra 2 DMP decoder")
struct OneTouchDecoderTests {
    @Test func checksumMatchesTheWorkedExamplesFromTheSources() {
        // Tidepool oneTouchUltra2.js header comment: `P 003,"GMF600DCY","MG/DL " 05A6` and
        // `P "SAT","03/21/15","16:45:24   ","  081 ","N","03", 00 09B6`.
        #expect(OneTouchUltra2Decoder.checksum(Array("P 003,\"GMF600DCY\",\"MG/DL \"".utf8)) == 0x05A6)
        #expect(OneTouchUltra2Decoder.checksum(Array("P \"SAT\",\"03/21/15\",\"16:45:24   \",\"  081 \",\"N\",\"03\", 00".utf8)) == 0x09B6)
        // The older Ultra record without meal/comment (Dickason's onetouch parser): 0829.
        #expect(OneTouchUltra2Decoder.checksum(Array("P \"SAT\",\"05/27/06\",\"16:42:08   \",\"  051 \", 00".utf8)) == 0x0829)
        // 16-bit wrap-around.
        #expect(OneTouchUltra2Decoder.checksum([UInt8](repeating: 0xFF, count: 258)) == UInt16((255 * 258) & 0xFFFF))
    }

    @Test func theWorkedExampleDumpDecodes() {
        let text = "P 003,\"GMF600DCY\",\"MG/DL \" 05A6\r\n"
            + "P \"SAT\",\"03/21/15\",\"16:45:24   \",\"  081 \",\"N\",\"03\", 00 09B6\r\n"
            + "P \"SAT\",\"03/21/15\",\"16:42:11   \",\"  105 \",\"B\",\"02\", 00 099F\r\n"
            + "P \"SAT\",\"03/21/15\",\"16:39:46   \",\"  176 \",\"N\",\"02\", 00 09C1\r\n"
        var d = OneTouchUltra2Decoder()
        let results = d.decode(Array(text.utf8)) + d.finish()
        #expect(rejections(results).isEmpty)
        let s = glucose(results)
        #expect(s.map(\.quantity.value) == [81, 105, 176])
        #expect(s.map(\.sequence) == [2, 1, 0])
        #expect(s.first?.deviceTime == CivilDateTime(year: 2015, month: 3, day: 21, hour: 16, minute: 45, second: 24))
        #expect(s.allSatisfy { $0.vital == .bloodGlucose && $0.quantity.unit == "mg/dL" })
    }

    @Test func theOlderUltraRecordFormIsRead() {
        // Header from Dickason's example (`P 150,"QTZ0004CT","MG/DL " 05B3`) with a count of 1.
        #expect(OneTouchUltra2Decoder.checksum(Array("P 150,\"QTZ0004CT\",\"MG/DL \"".utf8)) == 0x05B3)
        let text = "P \"SAT\",\"05/27/06\",\"16:42:08   \",\"  051 \", 00 0829\r\n"
        let results = oneTouch(Ultra2.line("P 001,\"QTZ0004CT\",\"MG/DL \"") + Array(text.utf8))
        #expect(rejections(results).isEmpty)
        #expect(glucose(results).map(\.quantity.value) == [51])
    }

    @Test func anMmolHeaderDoesNotConvertTheValuesWhichAreAlwaysMgPerDl() {
        let readings = [(day: 1, value: 90), (day: 2, value: 181), (day: 3, value: 55)]
        let mg = oneTouch(Ultra2.dump(readings))
        var d = OneTouchUltra2Decoder()
        let mmol = d.decode(Ultra2.dump(readings, unit: "MMOL/L"))
        #expect(d.displayUnit == .mmolL)
        #expect(glucose(mmol) == glucose(mg))
        #expect(glucose(mmol).map(\.quantity.value) == [55, 181, 90])
        // An unknown unit is a malformed header, and its records then belong to no dump.
        let bad = oneTouch(Ultra2.dump(readings, unit: "MG/L  "))
        #expect(glucose(bad).isEmpty)
        #expect(rejections(bad) == [.malformedField, .malformedField, .malformedField, .malformedField])
    }

    @Test func sequencesStayTheSameWhenTheMemoryGrowsAtTheNewestEnd() {
        let first = (1...12).map { (day: $0, value: 80 + $0) }
        let second = first + [(day: 13, value: 140), (day: 14, value: 150)]
        let a = glucose(oneTouch(Ultra2.dump(first)))
        let b = glucose(oneTouch(Ultra2.dump(second)))
        #expect(a.count == 12 && b.count == 14)
        func bySequence(_ s: [VitalSample]) -> [UInt64: VitalSample] {
            Dictionary(s.compactMap { x in x.sequence.map { ($0, x) } }, uniquingKeysWith: { a, _ in a })
        }
        let ma = bySequence(a), mb = bySequence(b)
        for (seq, sample) in ma { #expect(mb[seq] == sample, "sequence \(seq)") }
        #expect(mb[12]?.quantity.value == 140 && mb[13]?.quantity.value == 150)
        #expect(ma[0]?.deviceTime?.day == 1)
    }

    @Test func loAndHiAreReadingsAtTheRangeEdgeWithAFlagAndControlSolutionIsNot() {
        let bytes = Ultra2.header(6)
            + Ultra2.record(day: 6, hour: 9, value: 601)          // HI
            + Ultra2.record(day: 5, hour: 9, value: 19)           // LO
            + Ultra2.record(day: 4, hour: 9, value: 130, flag: "C")
            + Ultra2.record(day: 3, hour: 9, value: 600)
            + Ultra2.record(day: 2, hour: 9, value: 20)
            + Ultra2.record(day: 1, hour: 9, value: 110, parity: "?")
        let results = oneTouch(bytes)
        #expect(results.count == 7)
        #expect(rejections(results) == [.malformedField])   // the parity-error mark only
        let s = glucose(results)
        // A dangerous glucose must never vanish: HI and LO are reported at the range's edge,
        // flagged, and the flags do not gate escalation.
        #expect(s.map(\.quantity.value) == [600, 20, 600, 20])
        #expect(s.map(\.flags) == [.aboveMeasuringRange, .belowMeasuringRange, [], []])
        #expect(s.allSatisfy { $0.flags.isDisjoint(with: .clinicallyUnreliable) })
        #expect(s.map(\.sequence) == [5, 4, 2, 1])            // the control record keeps its place
        #expect(results[0] == .samples([]) && results[3] == .samples([]), "header and control solution")
    }

    @Test func theSpecsHighResultIsAReadingAndAControlHighIsNot() {
        // LifeScan Ultra spec as quoted by OneTouchUltraParser: " HIGH " and "CHIGH ".
        func high(_ flag: String) -> [UInt8] {
            Ultra2.line("P \"SUN\",\"03/01/15\",\"09:00:00   \",\"\(flag)HIGH \",\"N\",\"00\", 00")
        }
        let results = oneTouch(Ultra2.header(3) + high(" ") + high("C") + Ultra2.record(day: 1, hour: 8, value: 99))
        #expect(rejections(results).isEmpty)
        #expect(glucose(results).map(\.quantity.value) == [600, 99])
        #expect(glucose(results).map(\.flags) == [.aboveMeasuringRange, []])
        #expect(glucose(results).map(\.sequence) == [2, 0])
        // `HI GH` or `HIGX` are not the form.
        let bad = oneTouch(Ultra2.header(1) + Ultra2.line("P \"SUN\",\"03/01/15\",\"09:00:00   \",\" HIGX \",\"N\",\"00\", 00"))
        #expect(rejections(bad) == [.malformedField])
    }

    @Test func aBadChecksumRejectsOnlyItsLine() {
        var bad = Ultra2.record(day: 2, hour: 9, value: 123)
        bad[37] = UInt8(ascii: "9")
        let results = oneTouch(Ultra2.header(3) + Ultra2.record(day: 3, hour: 9, value: 100) + bad
                               + Ultra2.record(day: 1, hour: 9, value: 90))
        #expect(rejections(results) == [.checksum])
        #expect(glucose(results).map(\.sequence) == [2, 0])
        if case .rejected(let e) = results[2] {
            #expect(e.bytesSkipped == 59)
            #expect(!e.message.contains("123") && !e.message.contains("193"))
        }
    }

    @Test func aShortDumpIsTruncatedAtFinishAndExtraRecordsAreMalformed() {
        let short = Ultra2.header(5) + Ultra2.record(day: 5, hour: 9, value: 100) + Ultra2.record(day: 4, hour: 9, value: 101)
        var d = OneTouchUltra2Decoder()
        let r = d.decode(short)
        #expect(rejections(r).isEmpty)
        #expect(glucose(r).map(\.sequence) == [4, 3])
        let end = d.finish()
        #expect(rejections(end) == [.truncated])
        // After finish the decoder starts clean: a record without a header is not read.
        let orphan = d.decode(Ultra2.record(day: 1, hour: 9, value: 90))
        #expect(rejections(orphan) == [.malformedField])
        let extra = oneTouch(Ultra2.header(1) + Ultra2.record(day: 2, hour: 9, value: 100) + Ultra2.record(day: 1, hour: 9, value: 90))
        #expect(rejections(extra) == [.malformedField])
        #expect(oneTouch(Ultra2.header(0)) == [.samples([])])
    }

    @Test func garbageIsDroppedAndTheDecoderResynchronisesAtAnyByte() {
        let dump = Ultra2.dump([(day: 1, value: 90), (day: 2, value: 100), (day: 3, value: 110)])
        let good = glucose(oneTouch(dump))
        // Noise glued before the dump, for every noise length 1...40 (a resync at every offset).
        var rng = SplitMix64(state: 0x0117_0C4A)
        for n in 1...40 {
            let noise = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }.filter { $0 != 0x0D && $0 != 0x0A && $0 != 0x50 }
            let results = oneTouch(noise + dump)
            #expect(glucose(results) == good, "noise length \(n)")
            if !noise.isEmpty { #expect(rejections(results) == [.garbage]) }
        }
    }

    @Test func randomNoiseNeverYieldsAReadingAndChunkingNeverChangesResults() {
        var rng = SplitMix64(state: 0x5EED_0002)
        let dump = Ultra2.dump((1...5).map { (day: $0, value: 100 + $0) })
        for iteration in 0..<200 {
            let count = Int(rng.next() % 400)
            // Noise biased towards the protocol's own bytes so lines, quotes and digits occur.
            let alphabet = Array("P \",0123456789ABCDEF/:CNBA?\r\n".utf8)
            let noise = (0..<count).map { _ -> UInt8 in
                rng.next() % 2 == 0 ? alphabet[Int(rng.next() % UInt64(alphabet.count))] : UInt8(truncatingIfNeeded: rng.next())
            }
            let whole = oneTouch(noise)
            #expect(glucose(whole).isEmpty, "iteration \(iteration)")
            for chunk in [1, 2, 3, 7, 64] {
                #expect(oneTouch(noise, chunk: chunk) == whole, "iteration \(iteration) chunk \(chunk)")
            }
            // Noise then a real dump: the dump's readings come through whatever the noise was.
            let mixed = oneTouch(noise + Array("\r\n".utf8) + dump)
            #expect(glucose(mixed) == glucose(oneTouch(dump)), "iteration \(iteration)")
            #expect(oneTouch(noise + Array("\r\n".utf8) + dump, chunk: 3) == mixed)
        }
    }

    @Test func aRecordWithABadDateIsMalformed() {
        let results = oneTouch(Ultra2.header(1) + Ultra2.record(day: 32, hour: 9, value: 100))
        #expect(rejections(results) == [.malformedField])
    }
}
