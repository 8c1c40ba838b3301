/// An IEEE 11073-20601 medical-device number: `SFLOAT` (16 bit: 4-bit exponent, 12-bit
/// mantissa) or `FLOAT` (32 bit: 8-bit exponent, 24-bit mantissa), both two's complement,
/// base 10: value = mantissa × 10^exponent (IEEE 11073-20601 §F.6; GATT Specification
/// Supplement §2.2 "medfloat16/medfloat32").
///
/// The special values are told apart by the mantissa alone (exponent 0 in a conforming
/// encoder); Vigil treats any exponent with a special mantissa as that special value, so
/// a device that sets the exponent on a NaN never produces a number (a failed cuff
/// measurement must never read as 2047 mmHg).
public enum MDERFloat: Hashable, Sendable, CustomStringConvertible {
    /// A finite number, exactly `mantissa × 10^exponent`.
    case number(mantissa: Int32, exponent: Int8)
    /// Not a Number: the device has no value for the field.
    case notANumber
    /// Not at this Resolution: the value cannot be represented with this encoding.
    case notAtThisResolution
    case positiveInfinity
    case negativeInfinity
    /// Reserved for future use by IEEE 11073-20601 (SFLOAT mantissa −2046, FLOAT −(2^23 − 2)).
    case reservedValue

    /// Decodes an SFLOAT. Special mantissas: 0x7FF NaN, 0x800 NRes, 0x7FE +INF,
    /// 0x802 −INF, 0x801 reserved.
    public init(sfloat raw: UInt16) {
        let m = raw & 0x0FFF
        switch m {
        case 0x07FF: self = .notANumber
        case 0x0800: self = .notAtThisResolution
        case 0x07FE: self = .positiveInfinity
        case 0x0802: self = .negativeInfinity
        case 0x0801: self = .reservedValue
        default:
            let mantissa = Int32(Int16(bitPattern: m << 4) >> 4)
            let exponent = Int8(truncatingIfNeeded: Int16(bitPattern: raw) >> 12)
            self = .number(mantissa: mantissa, exponent: exponent)
        }
    }

    /// Decodes a FLOAT. Special mantissas: 0x7FFFFF NaN, 0x800000 NRes, 0x7FFFFE +INF,
    /// 0x800002 −INF, 0x800001 reserved.
    public init(float raw: UInt32) {
        let m = raw & 0x00FF_FFFF
        switch m {
        case 0x007F_FFFF: self = .notANumber
        case 0x0080_0000: self = .notAtThisResolution
        case 0x007F_FFFE: self = .positiveInfinity
        case 0x0080_0002: self = .negativeInfinity
        case 0x0080_0001: self = .reservedValue
        default:
            let mantissa = Int32(bitPattern: m << 8) >> 8
            let exponent = Int8(truncatingIfNeeded: Int32(bitPattern: raw) >> 24)
            self = .number(mantissa: mantissa, exponent: exponent)
        }
    }

    /// The SFLOAT encoding, or nil when the mantissa or exponent does not fit 12 / 4 bits.
    public var sfloatBits: UInt16? {
        switch self {
        case .notANumber: return 0x07FF
        case .notAtThisResolution: return 0x0800
        case .positiveInfinity: return 0x07FE
        case .negativeInfinity: return 0x0802
        case .reservedValue: return 0x0801
        case let .number(m, e):
            guard (-2045...2045).contains(m), (-8...7).contains(e) else { return nil }
            return UInt16(truncatingIfNeeded: Int(e)) << 12 | UInt16(truncatingIfNeeded: Int(m)) & 0x0FFF
        }
    }

    /// The FLOAT encoding, or nil when the mantissa does not fit 24 bits.
    public var floatBits: UInt32? {
        switch self {
        case .notANumber: return 0x007F_FFFF
        case .notAtThisResolution: return 0x0080_0000
        case .positiveInfinity: return 0x007F_FFFE
        case .negativeInfinity: return 0x0080_0002
        case .reservedValue: return 0x0080_0001
        case let .number(m, e):
            guard (-8_388_605...8_388_605).contains(m) else { return nil }
            return UInt32(UInt8(bitPattern: e)) << 24 | UInt32(bitPattern: m) & 0x00FF_FFFF
        }
    }

    /// Whether this is one of the five special values (no number).
    public var isSpecial: Bool { if case .number = self { false } else { true } }

    /// The nearest `Double` to the exact decimal value (so `367e-1` prints as `36.7`),
    /// or nil for a special value.
    public var doubleValue: Double? {
        guard case let .number(m, e) = self else { return nil }
        return decimalDouble(Int64(m), Int(e))
    }

    /// This number times 10^shift (a unit change such as kg/L → mg/dL), exactly.
    func scaled(byPowerOfTen shift: Int) -> Double? {
        guard case let .number(m, e) = self else { return nil }
        return decimalDouble(Int64(m), Int(e) + shift)
    }

    public var description: String {
        switch self {
        case let .number(m, e): "\(m)e\(e)"
        case .notANumber: "NaN"
        case .notAtThisResolution: "NRes"
        case .positiveInfinity: "+INF"
        case .negativeInfinity: "-INF"
        case .reservedValue: "reserved"
        }
    }
}

private let exactPowersOfTen: [Double] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
]

/// The `Double` nearest to `mantissa × 10^exponent`.
///
/// Every power of ten up to 10^22 and every mantissa below 2^53 is exact in binary64, and
/// IEEE 754 multiplication and division round once, correctly: the result is the nearest
/// double to the decimal, which Swift prints back as the same shortest digits. Beyond
/// 10^22 the standard library's correctly rounded text parser does the work.
func decimalDouble(_ mantissa: Int64, _ exponent: Int) -> Double {
    if mantissa == 0 { return 0 }
    if exponent >= 0, exponent < exactPowersOfTen.count, abs(mantissa) < 1 << 53 {
        return Double(mantissa) * exactPowersOfTen[exponent]
    }
    if exponent < 0, -exponent < exactPowersOfTen.count, abs(mantissa) < 1 << 53 {
        return Double(mantissa) / exactPowersOfTen[-exponent]
    }
    return Double("\(mantissa)e\(exponent)") ?? .nan
}
