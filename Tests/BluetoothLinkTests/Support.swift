import VitalSigns

enum CivilDateTimeFixture {
    static func make(_ y: Int, _ mo: Int, _ d: Int, _ h: Int, _ mi: Int, _ s: Int, _ ms: Int) -> CivilDateTime {
        CivilDateTime(year: y, month: mo, day: d, hour: h, minute: mi, second: s, millisecond: ms)
    }
}
