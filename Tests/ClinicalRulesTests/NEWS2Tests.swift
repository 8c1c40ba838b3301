import ClinicalRules
import Testing
import VitalSigns

// Expected values are NEWS2 Chart 1 (RCP 2017) as transcribed in CLINICAL.md §1.1, with
// non-integer inputs rounded half-up to the chart's resolution (NEWS2.roundToChart).

private let now = Timestamp(secondsSinceEpoch: 1_764_000_000)
private let window: Int64 = 3600

/// The SpO2 scale and air/oxygen combination a parameter is scored under.
enum Setting: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case scale1Air, scale1Oxygen, scale2Air, scale2Oxygen
    var scale: NEWS2Scale { self == .scale1Air || self == .scale1Oxygen ? .scale1 : .scale2 }
    var oxygen: AirOrOxygen { self == .scale1Air || self == .scale2Air ? .air : .oxygen }
    var testDescription: String { rawValue }

    /// A complete input in which every parameter scores 0 except the oxygen row.
    /// (Scale 2 on oxygen scores SpO2 ≥93 % as 1–3, so its baseline SpO2 is 90 %.)
    func baseline() -> NEWS2Input {
        NEWS2Input(
            respirationRate: .init(16, at: now), spo2: .init(scale == .scale1 ? 97 : 90, at: now),
            airOrOxygen: .init(oxygen, at: now), systolicBP: .init(120, at: now), pulse: .init(70, at: now),
            consciousness: .init(.alert, at: now), temperature: .init(37.0, at: now),
            scale: scale, evaluatedAt: now, stalenessSeconds: window)
    }
    var oxygenPoints: Int { oxygen == .oxygen ? 2 : 0 }
}

struct Case: Sendable, CustomTestStringConvertible {
    var value: Double
    var expected: Int
    init(_ value: Double, _ expected: Int) {
        self.value = value
        self.expected = expected
    }
    var testDescription: String { "\(value)→\(expected)" }
}

// Both sides of every edge, plus x.4 / x.5 (x.04 / x.05 °C) just around each rounding edge.
let respirationCases: [Case] = [
    Case(0, 3), Case(8, 3), Case(8.4, 3), Case(8.49, 3), Case(8.5, 1), Case(9, 1),
    Case(11, 1), Case(11.4, 1), Case(11.5, 0), Case(12, 0),
    Case(20, 0), Case(20.4, 0), Case(20.5, 2), Case(21, 2),
    Case(24, 2), Case(24.4, 2), Case(24.5, 3), Case(25, 3), Case(60, 3),
]
let systolicCases: [Case] = [
    Case(60, 3), Case(90, 3), Case(90.4, 3), Case(90.5, 2), Case(91, 2),
    Case(100, 2), Case(100.4, 2), Case(100.5, 1), Case(101, 1),
    Case(110, 1), Case(110.4, 1), Case(110.5, 0), Case(111, 0),
    Case(219, 0), Case(219.4, 0), Case(219.5, 3), Case(220, 3), Case(260, 3),
]
let pulseCases: [Case] = [
    Case(30, 3), Case(40, 3), Case(40.4, 3), Case(40.5, 1), Case(41, 1),
    Case(50, 1), Case(50.4, 1), Case(50.5, 0), Case(51, 0),
    Case(90, 0), Case(90.4, 0), Case(90.5, 1), Case(91, 1),
    Case(110, 1), Case(110.4, 1), Case(110.5, 2), Case(111, 2),
    Case(130, 2), Case(130.4, 2), Case(130.5, 3), Case(131, 3), Case(200, 3),
]
let temperatureCases: [Case] = [
    Case(33, 3), Case(35.0, 3), Case(35.04, 3), Case(35.05, 1), Case(35.1, 1),
    Case(36.0, 1), Case(36.04, 1), Case(36.05, 0), Case(36.1, 0),
    Case(38.0, 0), Case(38.04, 0), Case(38.05, 1), Case(38.1, 1),
    Case(39.0, 1), Case(39.04, 1), Case(39.05, 2), Case(39.1, 2), Case(42, 2),
]
/// Scale 1 SpO2: the sub-score does not depend on air/oxygen.
let spo2Scale1Cases: [Case] = [
    Case(70, 3), Case(90.5, 3), Case(91, 3), Case(91.4, 3), Case(91.5, 2), Case(92, 2),
    Case(93, 2), Case(93.4, 2), Case(93.5, 1), Case(94, 1),
    Case(95, 1), Case(95.4, 1), Case(95.5, 0), Case(96, 0), Case(100, 0),
]

struct Scale2Case: Sendable, CustomTestStringConvertible {
    var value: Double
    var onAir: Int
    var onOxygen: Int
    init(_ value: Double, air: Int, oxygen: Int) {
        self.value = value
        onAir = air
        onOxygen = oxygen
    }
    var testDescription: String { "\(value)→air \(onAir)/O2 \(onOxygen)" }
}

/// Scale 2 SpO2: ≥93 % scores 0 on air and 1/2/3 on oxygen; below 93 % air/oxygen does not matter.
let spo2Scale2Cases: [Scale2Case] = [
    Scale2Case(70, air: 3, oxygen: 3), Scale2Case(83, air: 3, oxygen: 3), Scale2Case(83.4, air: 3, oxygen: 3),
    Scale2Case(83.5, air: 2, oxygen: 2), Scale2Case(84, air: 2, oxygen: 2),
    Scale2Case(85, air: 2, oxygen: 2), Scale2Case(85.4, air: 2, oxygen: 2),
    Scale2Case(85.5, air: 1, oxygen: 1), Scale2Case(86, air: 1, oxygen: 1),
    Scale2Case(87, air: 1, oxygen: 1), Scale2Case(87.4, air: 1, oxygen: 1),
    Scale2Case(87.5, air: 0, oxygen: 0), Scale2Case(88, air: 0, oxygen: 0), Scale2Case(90.5, air: 0, oxygen: 0),
    Scale2Case(92, air: 0, oxygen: 0), Scale2Case(92.4, air: 0, oxygen: 0),
    Scale2Case(92.5, air: 0, oxygen: 1), Scale2Case(93, air: 0, oxygen: 1),
    Scale2Case(94, air: 0, oxygen: 1), Scale2Case(94.4, air: 0, oxygen: 1),
    Scale2Case(94.5, air: 0, oxygen: 2), Scale2Case(95, air: 0, oxygen: 2),
    Scale2Case(96, air: 0, oxygen: 2), Scale2Case(96.4, air: 0, oxygen: 2),
    Scale2Case(96.5, air: 0, oxygen: 3), Scale2Case(97, air: 0, oxygen: 3), Scale2Case(100, air: 0, oxygen: 3),
]

private func expectOnly(_ p: NEWS2Parameter, scores expected: Int, in r: NEWS2Result, setting: Setting) {
    #expect(r.subScore(p) == expected)
    #expect(r.total == expected + setting.oxygenPoints)
    #expect(r.unavailable.isEmpty)
    #expect(r.hasRedScore == (expected == 3))
    #expect(r.redParameters == (expected == 3 ? [p] : []))
    for other in NEWS2Parameter.allCases where other != p && other != .airOrOxygen {
        #expect(r.subScore(other) == 0, "\(other) should score 0 in the baseline")
    }
}

@Suite struct NEWS2Tests {
    // MARK: Chart 1 rows, through the whole scorer, under every scale × air/oxygen setting

    @Test(arguments: respirationCases, Setting.allCases)
    func respirationRate(_ c: Case, _ s: Setting) {
        var input = s.baseline()
        input.respirationRate = .init(c.value, at: now)
        expectOnly(.respirationRate, scores: c.expected, in: NEWS2.score(input), setting: s)
        #expect(NEWS2.respirationScore(c.value) == c.expected)
    }

    @Test(arguments: systolicCases, Setting.allCases)
    func systolicBP(_ c: Case, _ s: Setting) {
        var input = s.baseline()
        input.systolicBP = .init(c.value, at: now)
        expectOnly(.systolicBP, scores: c.expected, in: NEWS2.score(input), setting: s)
        #expect(NEWS2.systolicScore(c.value) == c.expected)
    }

    @Test(arguments: pulseCases, Setting.allCases)
    func pulse(_ c: Case, _ s: Setting) {
        var input = s.baseline()
        input.pulse = .init(c.value, at: now)
        expectOnly(.pulse, scores: c.expected, in: NEWS2.score(input), setting: s)
        #expect(NEWS2.pulseScore(c.value) == c.expected)
    }

    @Test(arguments: temperatureCases, Setting.allCases)
    func temperature(_ c: Case, _ s: Setting) {
        var input = s.baseline()
        input.temperature = .init(c.value, at: now)
        expectOnly(.temperature, scores: c.expected, in: NEWS2.score(input), setting: s)
        #expect(NEWS2.temperatureScore(c.value) == c.expected)
    }

    @Test(arguments: ACVPU.allCases, Setting.allCases)
    func consciousness(_ c: ACVPU, _ s: Setting) {
        var input = s.baseline()
        input.consciousness = .init(c, at: now)
        expectOnly(.consciousness, scores: c == .alert ? 0 : 3, in: NEWS2.score(input), setting: s)
    }

    @Test(arguments: Setting.allCases)
    func airScoresZeroAndOxygenTwoOnBothScales(_ s: Setting) {
        let r = NEWS2.score(s.baseline())
        #expect(r.subScore(.airOrOxygen) == (s.oxygen == .air ? 0 : 2))
        #expect(r.total == s.oxygenPoints)
        #expect(r.redParameters.isEmpty, "the oxygen row's 2 is never a red score")
    }

    @Test(arguments: spo2Scale1Cases, [AirOrOxygen.air, .oxygen])
    func spo2Scale1(_ c: Case, _ o: AirOrOxygen) {
        let s: Setting = o == .air ? .scale1Air : .scale1Oxygen
        var input = s.baseline()
        input.spo2 = .init(c.value, at: now)
        expectOnly(.spo2, scores: c.expected, in: NEWS2.score(input), setting: s)
        #expect(NEWS2.spo2Score(c.value, scale: .scale1, oxygen: o) == c.expected)
        #expect(NEWS2.spo2Score(c.value, scale: .scale1, oxygen: nil) == c.expected, "Scale 1 needs no air/oxygen status")
    }

    @Test(arguments: spo2Scale2Cases, [AirOrOxygen.air, .oxygen])
    func spo2Scale2(_ c: Scale2Case, _ o: AirOrOxygen) {
        let s: Setting = o == .air ? .scale2Air : .scale2Oxygen
        let expected = o == .air ? c.onAir : c.onOxygen
        var input = s.baseline()
        input.spo2 = .init(c.value, at: now)
        expectOnly(.spo2, scores: expected, in: NEWS2.score(input), setting: s)
        #expect(NEWS2.spo2Score(c.value, scale: .scale2, oxygen: o) == expected)
    }

    @Test func scale2SpO2AtOrAbove93NeedsTheOxygenStatusButLowerValuesDoNot() {
        #expect(NEWS2.spo2Score(93, scale: .scale2, oxygen: nil) == nil)
        #expect(NEWS2.spo2Score(92.5, scale: .scale2, oxygen: nil) == nil, "92.5 rounds to 93")
        #expect(NEWS2.spo2Score(92.4, scale: .scale2, oxygen: nil) == 0)
        #expect(NEWS2.spo2Score(83, scale: .scale2, oxygen: nil) == 3)

        var input = Setting.scale2Oxygen.baseline()
        input.spo2 = .init(97, at: now)
        input.airOrOxygen = nil
        var r = NEWS2.score(input)
        #expect(r[.spo2] == .undetermined)
        #expect(r[.airOrOxygen] == .missing)
        #expect(r.total == nil)
        #expect(r.unavailable == [.spo2, .airOrOxygen])
        #expect(r.missing == [.airOrOxygen])
        #expect(!r.hasRedScore, "an undetermined SpO2 is not a red score")

        input.airOrOxygen = .init(.oxygen, at: now.adding(seconds: -window - 1))
        r = NEWS2.score(input)
        #expect(r[.spo2] == .undetermined, "a stale oxygen status does not decide the SpO2 score")
        #expect(r.stale == [.airOrOxygen])

        input.spo2 = .init(83, at: now)
        r = NEWS2.score(input)
        #expect(r[.spo2] == .scored(3))
        #expect(r.redParameters == [.spo2])
        #expect(r.total == nil)
    }

    // MARK: Rounding

    @Test(arguments: [
        (8.5, false, 9), (8.49, false, 8), (90.5, false, 91), (0.5, false, 1), (0, false, 0),
        (35.05, true, 351), (35.04, true, 350), (38.05, true, 381), (39.05, true, 391), (36.95, true, 370),
        (1e300, false, 1_000_000_000_000),
    ])
    func roundsHalfUpToTheChartResolution(_ value: Double, _ tenths: Bool, _ expected: Int) {
        #expect(NEWS2.roundToChart(value, tenths: tenths) == expected)
    }

    // MARK: Missing, invalid and stale

    @Test func nothingGivenMeansNoTotalAndEveryParameterMissing() {
        let r = NEWS2.score(NEWS2Input(evaluatedAt: now, stalenessSeconds: window))
        #expect(r.total == nil)
        #expect(r.band == nil)
        #expect(r.minimumBand == nil)
        #expect(r.unavailable == NEWS2Parameter.allCases)
        #expect(r.missing == NEWS2Parameter.allCases)
        #expect(r.stale.isEmpty)
        #expect(!r.hasRedScore)
    }

    @Test(arguments: NEWS2Parameter.allCases)
    func anyOneMissingParameterWithholdsTheTotalAndIsListed(_ p: NEWS2Parameter) {
        var input = Setting.scale1Air.baseline()
        switch p {
        case .respirationRate: input.respirationRate = nil
        case .spo2: input.spo2 = nil
        case .airOrOxygen: input.airOrOxygen = nil
        case .systolicBP: input.systolicBP = nil
        case .pulse: input.pulse = nil
        case .consciousness: input.consciousness = nil
        case .temperature: input.temperature = nil
        }
        let r = NEWS2.score(input)
        #expect(r.total == nil)
        #expect(r.band == nil)
        #expect(r.missing == [p])
        #expect(r.unavailable == [p])
        #expect(r[p] == .missing)
        for other in NEWS2Parameter.allCases where other != p {
            #expect(r.subScore(other) == 0, "present parameters are still scored")
        }
    }

    @Test(arguments: NEWS2Parameter.allCases)
    func anyOneStaleParameterWithholdsTheTotalAndIsListed(_ p: NEWS2Parameter) {
        let old = now.adding(seconds: -window - 1)
        var input = Setting.scale1Air.baseline()
        switch p {
        case .respirationRate: input.respirationRate?.measuredAt = old
        case .spo2: input.spo2?.measuredAt = old
        case .airOrOxygen: input.airOrOxygen?.measuredAt = old
        case .systolicBP: input.systolicBP?.measuredAt = old
        case .pulse: input.pulse?.measuredAt = old
        case .consciousness: input.consciousness?.measuredAt = old
        case .temperature: input.temperature?.measuredAt = old
        }
        let r = NEWS2.score(input)
        #expect(r.total == nil)
        #expect(r.stale == [p])
        #expect(r.missing.isEmpty)
        #expect(r[p] == .stale(ageSeconds: window + 1))
    }

    @Test func aValueExactlyAtTheWindowIsFreshAndOneMillisecondMoreIsStale() {
        var input = Setting.scale1Air.baseline()
        input.temperature = .init(37, at: now.adding(seconds: -window))
        #expect(NEWS2.score(input).total == 0)
        input.temperature = .init(37, at: now.adding(milliseconds: -window * 1000 - 1))
        let r = NEWS2.score(input)
        #expect(r.total == nil)
        #expect(r[.temperature] == .stale(ageSeconds: window + 1), "age rounds up to whole seconds")
        input.temperature = .init(37, at: now.adding(seconds: 30))
        #expect(NEWS2.score(input).total == 0, "a time after the evaluation counts as age 0")
    }

    @Test func aStaleRedParameterIsNotARedScore() {
        var input = Setting.scale1Air.baseline()
        input.respirationRate = .init(30, at: now.adding(seconds: -window - 60))
        let r = NEWS2.score(input)
        #expect(r.redParameters.isEmpty)
        #expect(r.stale == [.respirationRate])
    }

    @Test(arguments: [Double.nan, .infinity, -.infinity, -1])
    func unusableNumbersAreInvalidAndCountAsMissing(_ v: Double) {
        var input = Setting.scale1Air.baseline()
        input.pulse = .init(v, at: now)
        let r = NEWS2.score(input)
        #expect(r[.pulse] == .invalid)
        #expect(r.missing == [.pulse])
        #expect(r.total == nil)
    }

    // MARK: Red score and bands

    @Test func aRedScoreWithTotalFourIsLowMedium() {
        var input = Setting.scale1Air.baseline()
        input.respirationRate = .init(25, at: now) // 3, red
        input.pulse = .init(95, at: now) // 1
        let r = NEWS2.score(input)
        #expect(r.total == 4)
        #expect(r.redParameters == [.respirationRate])
        #expect(r.band == .lowMedium)
        #expect(r.minimumBand == .lowMedium)
    }

    @Test func aRedScoreWithTotalFiveIsMedium() {
        var input = Setting.scale1Air.baseline()
        input.respirationRate = .init(25, at: now) // 3, red
        input.pulse = .init(111, at: now) // 2
        let r = NEWS2.score(input)
        #expect(r.total == 5)
        #expect(r.band == .medium)
    }

    @Test func totalFourWithoutARedScoreIsLowAndSevenIsHigh() {
        var input = Setting.scale1Oxygen.baseline() // 2
        input.pulse = .init(111, at: now) // 2
        var r = NEWS2.score(input)
        #expect(r.total == 4)
        #expect(r.band == .low)
        input.temperature = .init(39.1, at: now) // 2
        r = NEWS2.score(input)
        #expect(r.total == 6)
        #expect(r.band == .medium)
        #expect(!r.hasRedScore)
        input.systolicBP = .init(105, at: now) // 1
        r = NEWS2.score(input)
        #expect(r.total == 7)
        #expect(r.band == .high)
    }

    @Test func aRedScoreIsReportedWhenTheTotalIsUnavailable() {
        var input = Setting.scale1Air.baseline()
        input.consciousness = nil
        input.pulse = .init(130.5, at: now)
        input.temperature = .init(35.0, at: now)
        let r = NEWS2.score(input)
        #expect(r.total == nil)
        #expect(r.band == nil)
        #expect(r.redParameters == [.pulse, .temperature])
        #expect(r.hasRedScore)
        #expect(r.minimumBand == .lowMedium)
        #expect(r.missing == [.consciousness])
    }

    @Test(arguments: [
        (0, false, NEWS2Band.low), (4, false, .low), (3, true, .lowMedium), (4, true, .lowMedium),
        (5, false, .medium), (5, true, .medium), (6, true, .medium), (7, false, .high), (7, true, .high),
        (20, true, .high),
    ])
    func bandPrecedence(_ total: Int, _ red: Bool, _ band: NEWS2Band) {
        #expect(NEWS2Band.of(total: total, redScore: red) == band)
    }

    @Test(arguments: [NEWS2Scale.scale1, .scale2])
    func theMaximumIsTwenty(_ scale: NEWS2Scale) {
        let r = NEWS2.score(NEWS2Input(
            respirationRate: .init(30, at: now), spo2: .init(scale == .scale1 ? 85 : 98, at: now),
            airOrOxygen: .init(.oxygen, at: now), systolicBP: .init(80, at: now), pulse: .init(140, at: now),
            consciousness: .init(.unresponsive, at: now), temperature: .init(34, at: now),
            scale: scale, evaluatedAt: now, stalenessSeconds: window))
        #expect(r.total == 20)
        #expect(r.band == .high)
        #expect(r.redParameters == [.respirationRate, .spo2, .systolicBP, .pulse, .consciousness, .temperature])
    }

    @Test func aWorkedExampleScoresSixMedium() {
        // RR 22 (2), SpO2 95 % Scale 1 (1), air (0), SBP 105 (1), pulse 95 (1), alert (0), 38.5 °C (1).
        let r = NEWS2.score(NEWS2Input(
            respirationRate: .init(22, at: now), spo2: .init(95, at: now), airOrOxygen: .init(.air, at: now),
            systolicBP: .init(105, at: now), pulse: .init(95, at: now), consciousness: .init(.alert, at: now),
            temperature: .init(38.5, at: now), evaluatedAt: now, stalenessSeconds: window))
        #expect(r.total == 6)
        #expect(r.band == .medium)
        #expect(!r.hasRedScore)
        #expect(r.scale == .scale1)
        #expect(r.evaluatedAt == now)
    }

    @Test func everyResultIsLabelledHomeMeasured() {
        for input in [Setting.scale2Oxygen.baseline(), NEWS2Input(evaluatedAt: now, stalenessSeconds: 0)] {
            let r = NEWS2.score(input)
            #expect(r.isHomeMeasured)
            #expect(r.label == "NEWS2 (home-measured, not validated outside hospital)")
            #expect(r.label == NEWS2Result.homeMeasuredLabel)
        }
    }

    // MARK: Building the input from readings

    private static let patient = PatientID("patient-news2")

    private static func reading(_ vital: Vital, _ value: Double, at second: Int64, flags: QualityFlags = [],
                                patient: PatientID = patient, unit: String? = nil, device: DeviceID = "dev-1") -> Reading {
        let t = now.adding(seconds: second)
        return Reading(id: .derive(device: device, vital: vital, measuredAt: t, sequence: nil), patient: patient,
                       device: device, vital: vital, quantity: Quantity(value, unit ?? vital.unit),
                       measuredAt: t, receivedAt: t, flags: flags, sequence: nil)
    }

    @Test func buildsFromTheLatestCleanReadingOfEachVital() {
        let readings = [
            Self.reading(.respiratoryRate, 14, at: -600),
            Self.reading(.respiratoryRate, 26, at: -300),
            Self.reading(.respiratoryRate, 40, at: -100, flags: .artifact), // ignored: flagged
            Self.reading(.spo2, 88, at: -50, flags: .lowPerfusion), // ignored: flagged
            Self.reading(.spo2, 97, at: -400),
            Self.reading(.systolicPressure, 118, at: -200),
            Self.reading(.diastolicPressure, 40, at: -10), // not a NEWS2 parameter
            Self.reading(.pulseRate, 72, at: -500),
            Self.reading(.heartRate, 95, at: -20), // later than pulse_rate: it wins
            Self.reading(.bodyTemperature, 37.2, at: -250),
            Self.reading(.bodyTemperature, 39.5, at: -5, patient: "someone-else"), // ignored: other patient
            Self.reading(.bodyTemperature, 34.0, at: 10), // ignored: after the evaluation time
            Self.reading(.bodyTemperature, 99.0, at: -1, unit: "[degF]"), // ignored: not the canonical unit
            Self.reading(.systolicPressure, .nan, at: -2), // ignored: not a number
        ]
        let oxygen = NEWS2Measurement(AirOrOxygen.air, at: now.adding(seconds: -60))
        let alert = NEWS2Measurement(ACVPU.alert, at: now.adding(seconds: -60))
        let input = NEWS2Input(readings: readings, patient: Self.patient, airOrOxygen: oxygen, consciousness: alert,
                               evaluatedAt: now, stalenessSeconds: window)
        #expect(input.respirationRate == .init(26, at: now.adding(seconds: -300)))
        #expect(input.spo2 == .init(97, at: now.adding(seconds: -400)))
        #expect(input.systolicBP == .init(118, at: now.adding(seconds: -200)))
        #expect(input.pulse == .init(95, at: now.adding(seconds: -20)))
        #expect(input.temperature == .init(37.2, at: now.adding(seconds: -250)))
        #expect(input.airOrOxygen == oxygen)
        #expect(input.consciousness == alert)
        #expect(input.scale == .scale1)

        let reversed = NEWS2Input(readings: readings.reversed(), patient: Self.patient, airOrOxygen: oxygen,
                                  consciousness: alert, evaluatedAt: now, stalenessSeconds: window)
        #expect(reversed == input, "the order of the readings does not matter")

        let r = NEWS2.score(input)
        #expect(r.total == 4) // RR 26 → 3, pulse 95 → 1
        #expect(r.redParameters == [.respirationRate])
        #expect(r.band == .lowMedium)
    }

    @Test func onlyFlaggedReadingsMeansMissingAndConsciousnessIsNeverInferred() {
        let readings = [Self.reading(.pulseRate, 72, at: -10, flags: [.sensorOff])]
        let input = NEWS2Input(readings: readings, patient: Self.patient, evaluatedAt: now, stalenessSeconds: window)
        #expect(input.pulse == nil)
        #expect(input.consciousness == nil)
        #expect(input.airOrOxygen == nil)
        let r = NEWS2.score(input)
        #expect(r.missing == NEWS2Parameter.allCases)
    }

    @Test func aFlagThatDoesNotMakeAValueUnreliableKeepsTheReading() {
        let readings = [Self.reading(.pulseRate, 72, at: -10, flags: [.deviceClockUnreliable])]
        let input = NEWS2Input(readings: readings, patient: Self.patient, evaluatedAt: now, stalenessSeconds: window)
        #expect(input.pulse == .init(72, at: now.adding(seconds: -10)))
    }

    @Test func sameTimeTiesAreBrokenDeterministically() {
        let a = Self.reading(.spo2, 95, at: -10, device: "ox-a")
        let b = Self.reading(.spo2, 91, at: -10, device: "ox-b")
        let one = NEWS2Input(readings: [a, b], patient: Self.patient, evaluatedAt: now, stalenessSeconds: window)
        let two = NEWS2Input(readings: [b, a], patient: Self.patient, evaluatedAt: now, stalenessSeconds: window)
        #expect(one.spo2 == two.spo2)
        #expect(one.spo2?.value == (a.id > b.id ? 95 : 91))
    }
}
