import DeviceDecoding
import Testing
import VigilTestKit
import VitalSigns

/// IEEE 11073-20601 SFLOAT and FLOAT (§F.6): every 16-bit pattern, a seeded sample of the
/// 32-bit ones, the special values and the exact-decimal promise.
@Suite struct GATTFloatTests {
    @Test func everySFLOATIsItsExactDecimalOrASpecialValue() {
        var specials = 0
        for raw in 0...0xFFFF {
            let f = MDERFloat(sfloat: UInt16(raw))
            let mantissa = raw & 0x0FFF
            if [0x07FF, 0x0800, 0x07FE, 0x0802, 0x0801].contains(mantissa) {
                specials += 1
                #expect(f.isSpecial && f.doubleValue == nil, "raw \(raw)")
                continue
            }
            guard case let .number(m, e) = f else { Issue.record("raw \(raw) not a number"); continue }
            let expectedM = mantissa >= 0x800 ? mantissa - 0x1000 : mantissa
            let expectedE = raw >> 12 >= 8 ? raw >> 12 - 16 : raw >> 12
            #expect(Int(m) == expectedM && Int(e) == expectedE, "raw \(raw)")
            // Swift's text parser rounds correctly: the decoder must give the same double.
            #expect(f.doubleValue == Double("\(expectedM)e\(expectedE)"), "raw \(raw)")
            if e == 0 || m != 0 { #expect(f.sfloatBits == UInt16(raw), "raw \(raw) re-encodes") }
        }
        #expect(specials == 5 * 16)
    }

    @Test func specialSFLOATsAndFLOATsAreNamed() {
        #expect(MDERFloat(sfloat: 0x07FF) == .notANumber)
        #expect(MDERFloat(sfloat: 0x0800) == .notAtThisResolution)
        #expect(MDERFloat(sfloat: 0x07FE) == .positiveInfinity)
        #expect(MDERFloat(sfloat: 0x0802) == .negativeInfinity)
        #expect(MDERFloat(sfloat: 0x0801) == .reservedValue)
        // A special mantissa with a non-zero exponent is still not a number.
        #expect(MDERFloat(sfloat: 0xF7FF) == .notANumber)
        #expect(MDERFloat(float: 0x007F_FFFF) == .notANumber)
        #expect(MDERFloat(float: 0x0080_0000) == .notAtThisResolution)
        #expect(MDERFloat(float: 0x007F_FFFE) == .positiveInfinity)
        #expect(MDERFloat(float: 0x0080_0002) == .negativeInfinity)
        #expect(MDERFloat(float: 0x0080_0001) == .reservedValue)
        #expect(MDERFloat(float: 0xFF7F_FFFF) == .notANumber)
        for s in [MDERFloat.notANumber, .notAtThisResolution, .positiveInfinity, .negativeInfinity, .reservedValue] {
            #expect(s.sfloatBits.map { MDERFloat(sfloat: $0) } == s)
            #expect(s.floatBits.map { MDERFloat(float: $0) } == s)
        }
    }

    @Test func seededFLOATsAreTheirExactDecimal() {
        var rng = SplitMix64(state: 0x11073)
        for _ in 0..<200_000 {
            let raw = UInt32(truncatingIfNeeded: rng.next())
            let f = MDERFloat(float: raw)
            let mantissa = Int(raw & 0x00FF_FFFF)
            if [0x7F_FFFF, 0x80_0000, 0x7F_FFFE, 0x80_0002, 0x80_0001].contains(mantissa) {
                #expect(f.isSpecial)
                continue
            }
            let m = mantissa >= 0x80_0000 ? mantissa - 0x100_0000 : mantissa
            let e = Int(Int8(truncatingIfNeeded: raw >> 24))
            #expect(f == .number(mantissa: Int32(m), exponent: Int8(e)))
            #expect(f.doubleValue == Double("\(m)e\(e)"), "raw \(raw)")
            #expect(f.floatBits == raw)
        }
    }

    @Test func decimalsPrintAsTheirDigits() {
        // 36.7 °C as a thermometer sends it: FLOAT mantissa 367, exponent −1.
        let t = MDERFloat(float: 0xFF00_016F)
        #expect(t.doubleValue == 36.7)
        #expect(JSONValue.format(t.doubleValue ?? 0) == "36.7")
        for (m, e, text) in [(1, -1, "0.1"), (983, -1, "98.3"), (-15, -1, "-1.5"), (55, -4, "0.0055"), (1234, -3, "1.234"),
                             (2045, 7, "20450000000"), (7, -8, "7e-08")] {
            let f = MDERFloat.number(mantissa: Int32(m), exponent: Int8(e))
            #expect(f.doubleValue.map(JSONValue.format) == text, "\(m)e\(e)")
        }
    }
}
