import Testing
import VitalSigns

@Suite struct VocabularyTests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func sha256MatchesTheFIPS180Vectors(input: String, digest: String) {
        #expect(SHA256.hash(Array(input.utf8)).hexString == digest)
    }

    @Test func sha256OfAMillionAs() {
        #expect(SHA256.hash([UInt8](repeating: 0x61, count: 1_000_000)).hexString
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func readingIDsAreDeterministicAndDistinguishEveryField() {
        let t = Timestamp(millisecondsSinceEpoch: 1_764_000_000_000)
        let a = ReadingID.derive(device: "ox-1", vital: .spo2, measuredAt: t, sequence: nil)
        #expect(a == ReadingID.derive(device: "ox-1", vital: .spo2, measuredAt: t, sequence: nil))
        #expect(a.rawValue.count == 32 && a.rawValue.allSatisfy(\.isHexDigit))
        let others = [
            ReadingID.derive(device: "ox-2", vital: .spo2, measuredAt: t, sequence: nil),
            ReadingID.derive(device: "ox-1", vital: .pulseRate, measuredAt: t, sequence: nil),
            ReadingID.derive(device: "ox-1", vital: .spo2, measuredAt: t.adding(milliseconds: 1), sequence: nil),
            ReadingID.derive(device: "ox-1", vital: .spo2, measuredAt: t, sequence: 0),
        ]
        #expect(Set(others + [a]).count == 5)
    }

    @Test func aRepeatedDeviceTimeIsANewMeasurementUnlessTheDeviceNumbersItsRecords() {
        // A live stream without sequence numbers: the clock set back an hour repeats times.
        let t = Timestamp(secondsSinceEpoch: 1_764_072_000)
        let civil = CivilDateTime(utc: t)
        let first = Reading(sample: VitalSample(vital: .spo2, quantity: Quantity(97, "%"), deviceTime: civil),
                            device: "d", patient: "p", receivedAt: t)
        let again = Reading(sample: VitalSample(vital: .spo2, quantity: Quantity(95, "%"), deviceTime: civil),
                            device: "d", patient: "p", receivedAt: t.adding(seconds: 3600))
        #expect(first.measuredAt == again.measuredAt)
        #expect(first.id != again.id, "a new measurement must not be dropped as a duplicate")
        // A numbered record (RACP back-fill, a meter's memory) is the same record whenever it arrives.
        let stored = VitalSample(vital: .bloodGlucose, quantity: Quantity(104, "mg/dL"), deviceTime: civil, sequence: 42)
        let a = Reading(sample: stored, device: "g", patient: "p", receivedAt: t)
        let b = Reading(sample: stored, device: "g", patient: "p", receivedAt: t.adding(seconds: 86_000))
        #expect(a.id == b.id)
    }

    @Test func aReadingKeepsATrustworthyDeviceTimeAndFlagsAWrongOne() {
        let now = Timestamp(secondsSinceEpoch: 1_764_072_000)  // 2025-11-25T12:00:00Z
        let civil = CivilDateTime(year: 2025, month: 11, day: 25, hour: 13, minute: 0, second: 0)
        let sample = VitalSample(vital: .spo2, quantity: Quantity(97, "%"), deviceTime: civil)
        let inZone = Reading(sample: sample, device: "d", patient: "p", receivedAt: now, deviceUTCOffsetSeconds: 3600)
        #expect(inZone.measuredAt == now && inZone.flags.isEmpty)
        let wrong = Reading(sample: VitalSample(vital: .spo2, quantity: Quantity(97, "%"),
                                                deviceTime: CivilDateTime(year: 2016, month: 2, day: 22, hour: 1, minute: 0, second: 0)),
                            device: "d", patient: "p", receivedAt: now)
        #expect(wrong.measuredAt == now && wrong.flags == .deviceClockUnreliable)
        let none = Reading(sample: VitalSample(vital: .spo2, quantity: Quantity(97, "%"), deviceTime: nil), device: "d", patient: "p", receivedAt: now)
        #expect(none.measuredAt == now && none.flags.isEmpty, "a device without a clock measures now; nothing is wrong")
    }

    @Test(arguments: [
        ("2026-11-25T11:48:15Z", Int64(1_795_607_295_000)),
        ("2026-11-25T11:48:15.5Z", Int64(1_795_607_295_500)),
        ("2026-11-25T12:48:15.123+01:00", Int64(1_795_607_295_123)),
        ("2000-02-29T00:00:00.000Z", Int64(951_782_400_000)),
        ("1969-12-31T23:59:59.999Z", Int64(-1)),
    ])
    func iso8601ParsesAndFormats(text: String, ms: Int64) {
        #expect(Timestamp(iso8601: text)?.millisecondsSinceEpoch == ms)
        #expect(Timestamp(iso8601: Timestamp(millisecondsSinceEpoch: ms).iso8601)?.millisecondsSinceEpoch == ms)
    }

    @Test(arguments: ["2026-11-25T11:48:15", "2026-02-30T00:00:00Z", "2026-11-25 11:48:15Z", "garbage", "2026-11-25T11:48:15.Z", "2026-11-25T11:48:15.1234567890123Z0"])
    func iso8601RefusesWhatIsNotAnInstant(text: String) {
        #expect(Timestamp(iso8601: text) == nil)
    }

    @Test func civilTimeRoundTripsAcrossCenturiesAndLeapDays() {
        for seconds in stride(from: Int64(-2_208_988_800), to: 4_102_444_800, by: 86_400 * 37 + 3_601) {
            let t = Timestamp(secondsSinceEpoch: seconds)
            let c = CivilDateTime(utc: t)
            #expect(c.isValid)
            #expect(c.timestamp(utcOffsetSeconds: 0) == t)
        }
    }

    @Test func qualityFlagNamesRoundTrip() {
        let all = QualityFlags.names.reduce(into: QualityFlags()) { $0.insert($1.0) }
        #expect(QualityFlags(names: all.nameList) == all)
        #expect(QualityFlags(names: ["sensor_off", "nonsense"]) == nil)
        #expect(QualityFlags([.artifact, .sensorOff]).nameList == ["sensor_off", "artifact"])
    }

    @Test func jsonRoundTripsAndRefusesMalformedInput() throws {
        let value: JSONValue = .object([("a", 1), ("b", [true, nil, 2.5, "x\"\n\u{1}é😀"]), ("c", .object([]))])
        #expect(try JSONValue.parse(value.serialized) == value)
        #expect(value.serialized == #"{"a":1,"b":[true,null,2.5,"x\"\n\u0001é😀"],"c":{}}"#)
        #expect(try JSONValue.parse(#""\ud83d\ude00""#) == "😀")
        for bad in ["", "{", "[1,]", "01", "\"\\x\"", "tru", "{\"a\" 1}", "1 2", "\"\u{1}\"", "\"\\ud800\""] {
            #expect(throws: JSONValue.ParseError.self, "\(bad)") { try JSONValue.parse(bad) }
        }
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse(deep) }
    }
}
