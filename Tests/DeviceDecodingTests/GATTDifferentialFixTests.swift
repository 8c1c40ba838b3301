import DeviceDecoding
import Testing
import VitalSigns

/// The decoder bugs the Wireshark differential test (`scripts/gatt-differential`,
/// docs/gatt-differential.md) found, one test each. They use only the API that existed before
/// the fixes (decoder events, `GATTBatch.run` lines), so each failed on the old decoder.
@Suite struct GATTDifferentialFixTests {
    /// Dates a device may send that name no instant: GSS §3.70 "not known" zeros, and
    /// impossible ones (`CivilDateTime.isValid` false).
    static let unknownDates: [(Int, Int, Int, Int, Int, Int)] = [
        (0, 4, 5, 10, 0, 0), (2026, 0, 5, 10, 0, 0), (2026, 3, 0, 10, 0, 0), (0, 0, 0, 0, 0, 0),
        (2026, 2, 30, 10, 0, 0), (2026, 11, 25, 24, 0, 0),
    ]

    /// One timestamped value of every characteristic that carries a Date Time.
    static func timestamped(_ t: (Int, Int, Int, Int, Int, Int)) -> [(GATTCharacteristic, [UInt8])] {
        var out: [(GATTCharacteristic, [UInt8])] = []
        var p = GATTPayload()
        p.u8(0x02); p.sfloat(120, 0); p.sfloat(80, 0); p.sfloat(93, 0); p.time(t.0, t.1, t.2, t.3, t.4, t.5)
        out.append((.bloodPressureMeasurement, p.bytes))
        p = GATTPayload()
        p.u8(0x02); p.float(367, -1); p.time(t.0, t.1, t.2, t.3, t.4, t.5)
        out.append((.temperatureMeasurement, p.bytes))
        p = GATTPayload()
        p.u8(0x01); p.sfloat(97, 0); p.sfloat(70, 0); p.time(t.0, t.1, t.2, t.3, t.4, t.5)
        out.append((.plxSpotCheckMeasurement, p.bytes))
        p = GATTPayload()
        p.u8(0x02); p.u16(14_000); p.time(t.0, t.1, t.2, t.3, t.4, t.5)
        out.append((.weightMeasurement, p.bytes))
        p = GATTPayload()
        p.u16(0x0002); p.u16(250); p.time(t.0, t.1, t.2, t.3, t.4, t.5)
        out.append((.bodyCompositionMeasurement, p.bytes))
        p = GATTPayload()
        p.u8(0x03); p.u16(7); p.time(t.0, t.1, t.2, t.3, t.4, t.5); p.u16(15); p.sfloat(95, -5); p.u8(0x11)
        out.append((.glucoseMeasurement, p.bytes))
        return out
    }

    @Test func unknownOrImpossibleDateGivesNoDeviceTimeAndTheUnreliableClockFlag() throws {
        for t in Self.unknownDates {
            for (c, bytes) in Self.timestamped(t) {
                var d = GATTDeviceDecoder()
                let s = samples(try d.decode(c, bytes))
                #expect(!s.isEmpty, "\(c) \(t)")
                for x in s {
                    #expect(x.deviceTime == nil, "\(c) \(t): printed as \(String(describing: x.deviceTime))")
                    #expect(x.flags.contains(.deviceClockUnreliable), "\(c) \(t)")
                }
            }
        }
        // A valid date is untouched.
        for (c, bytes) in Self.timestamped((2026, 11, 25, 14, 30, 5)) {
            var d = GATTDeviceDecoder()
            let s = samples(try d.decode(c, bytes))
            #expect(s.allSatisfy { $0.deviceTime != nil && !$0.flags.contains(.deviceClockUnreliable) }, "\(c)")
        }
    }

    @Test func currentTimeWithAnUnknownDateSaysTheClockIsNotSet() throws {
        for t in Self.unknownDates {
            var p = GATTPayload()
            p.time(t.0, t.1, t.2, t.3, t.4, t.5); p.u8(0); p.u8(128); p.u8(1)
            let hex = p.bytes.map { String($0, radix: 16) }.map { $0.count == 1 ? "0" + $0 : $0 }.joined()
            var lines: [JSONValue] = []
            let summary = GATTBatch.run(hex, characteristic: .currentTime) { lines.append($0) }
            #expect(summary.ok && lines.count == 1, "\(t)")
            let line = try #require(lines.first)
            #expect(line["event"]?.stringValue == "device_time", "\(t)")
            #expect(line["measured_at"] == .null, "\(t): \(line.serialized)")
            #expect(line["flags"]?.arrayValue?.contains(.string("device_clock_unreliable")) == true, "\(t)")
        }
        var p = GATTPayload()
        p.time(2026, 11, 25, 14, 30, 5); p.u8(3); p.u8(128); p.u8(1)
        var d = GATTDeviceDecoder()
        #expect(try d.decode(.currentTime, p.bytes) == .deviceTime(CivilDateTime(
            year: 2026, month: 11, day: 25, hour: 14, minute: 30, second: 5, millisecond: 500)))
    }

    /// CGMS 1.0.1 §3.2.1.5 / org.bluetooth.characteristic.cgm_measurement: the annunciation
    /// is one field, least significant octet (Status) first, only the present octets.
    @Test func cgmAnnunciationOctetsAreStatusThenCalTempThenWarning() throws {
        func record(_ flags: Int, _ octets: [Int]) -> [UInt8] {
            var p = GATTPayload()
            p.u8(6 + octets.count); p.u8(flags); p.sfloat(100, 0); p.u16(30)
            for o in octets { p.u8(o) }
            return p.bytes
        }
        let cases: [(Int, [Int], QualityFlags, [String: String])] = [
            // Status 0x08 sensor malfunction, Cal/Temp 0x08 calibration required, Warning 0x40 below range.
            (0xE0, [0x08, 0x08, 0x40], [.sensorFault, .questionableMeasurement, .belowMeasuringRange], [:]),
            // Status 0x02 battery low, Warning 0x80 above range.
            (0xA0, [0x02, 0x80], [.aboveMeasuringRange], ["device_battery_low": "true"]),
            // Status 0x10 device specific alert, Cal/Temp 0x01 time synchronisation required.
            (0xC0, [0x10, 0x01], [.deviceAlarm], ["time_synchronization_required": "true"]),
            // Cal/Temp 0x10 temperature too high, Warning 0x01 below patient low level.
            (0x60, [0x10, 0x01], [.questionableMeasurement, .deviceAlarm], [:]),
        ]
        for (flags, octets, expected, named) in cases {
            var d = GATTDeviceDecoder()
            let s = try #require(samples(try d.decode(.cgmMeasurement, record(flags, octets))).first)
            #expect(s.flags == expected, "flags \(flags) octets \(octets): \(s.flags.nameList)")
            for (k, v) in named { #expect(details(d)[k] == v, "flags \(flags): \(k)") }
        }
    }

    static func glucose(_ sequence: Int, flags: Int, typeLocation: Int, value: Int = 95) -> String {
        var p = GATTPayload()
        p.u8(flags); p.u16(sequence); p.time(2026, 11, 25, 10, 30, 0); p.sfloat(value, -5); p.u8(typeLocation)
        return "2A18 " + p.bytes.map { b in String(b >> 4, radix: 16) + String(b & 0xF, radix: 16) }.joined()
    }

    static func context(_ sequence: Int) -> String {
        var p = GATTPayload()
        p.u8(0x02); p.u16(sequence); p.u8(1)  // meal: preprandial
        return "2A34 " + p.bytes.map { b in String(b >> 4, radix: 16) + String(b & 0xF, radix: 16) }.joined()
    }

    static func run(_ lines: [String]) -> [JSONValue] {
        var out: [JSONValue] = []
        _ = GATTBatch.run(lines.joined(separator: "\n"), characteristic: nil) { out.append($0) }
        return out
    }

    static func reading(_ lines: [JSONValue], sequence: Int64) -> JSONValue? {
        lines.first { $0["vital"]?.stringValue == "blood_glucose" && $0["sequence"]?.int64Value == sequence }
    }

    /// A measurement held for its context and released by the next one keeps its own sample
    /// type and location (payload 1: capillary whole blood, finger; payload 2: venous plasma,
    /// alternate site), also when the batch ends on a held one.
    @Test func heldGlucoseReleasedWithoutItsContextKeepsItsOwnDetails() throws {
        let lines = Self.run([
            Self.glucose(1, flags: 0x12, typeLocation: 0x11),
            Self.glucose(2, flags: 0x02, typeLocation: 0x24),
            Self.glucose(3, flags: 0x12, typeLocation: 0x33),
        ])
        let first = try #require(Self.reading(lines, sequence: 1))
        #expect(first["payload"]?.int64Value == 1)
        #expect(first["details"]?["sample_type"]?.stringValue == "capillary_whole_blood", "\(first.serialized)")
        #expect(first["details"]?["sample_location"]?.stringValue == "finger", "\(first.serialized)")
        let second = try #require(Self.reading(lines, sequence: 2))
        #expect(second["payload"]?.int64Value == 2)
        #expect(second["details"]?["sample_type"]?.stringValue == "venous_plasma")
        #expect(second["details"]?["sample_location"]?.stringValue == "alternate_site_test")
        // Released by the end of the batch: its own details too.
        let third = try #require(Self.reading(lines, sequence: 3))
        #expect(third["payload"]?.int64Value == 3)
        #expect(third["details"]?["sample_type"]?.stringValue == "venous_whole_blood", "\(third.serialized)")
        #expect(third["details"]?["sample_location"]?.stringValue == "earlobe", "\(third.serialized)")
    }

    /// Two context-announcing measurements in a row: the second is held while the first is
    /// released, and is printed under its own payload number when its context comes.
    @Test func secondOfTwoHeldGlucoseMeasurementsKeepsItsPayloadNumber() throws {
        let lines = Self.run([
            Self.glucose(1, flags: 0x12, typeLocation: 0x11),
            Self.glucose(2, flags: 0x12, typeLocation: 0x24),
            Self.context(2),
        ])
        let first = try #require(Self.reading(lines, sequence: 1))
        #expect(first["payload"]?.int64Value == 1)
        let second = try #require(Self.reading(lines, sequence: 2))
        #expect(second["payload"]?.int64Value == 2, "\(second.serialized)")
        #expect(second["details"]?["sample_type"]?.stringValue == "venous_plasma")
        #expect(second["details"]?["meal"]?.stringValue == "preprandial")
        #expect(!lines.contains { $0["error"] != nil })
    }

    /// CLINICAL.md §5.1: an improper measurement position makes a BP reading questionable,
    /// so it must not fire a threshold alert on its own.
    @Test func improperMeasurementPositionIsClinicallyUnreliable() throws {
        #expect(QualityFlags.clinicallyUnreliable.contains(.position))
        var d = GATTDeviceDecoder()
        let s = samples(try d.decode(.bloodPressureMeasurement, GATTCorpus.bloodPressure(0x10, status: 0x20)))
        #expect(!s.isEmpty && s.allSatisfy { !$0.flags.isDisjoint(with: .clinicallyUnreliable) })
    }
}
