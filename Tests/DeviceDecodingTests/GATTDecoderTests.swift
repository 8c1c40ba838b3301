import DeviceDecoding
import Testing
import VitalSigns

/// Every flag combination of every characteristic, built field by field and decoded; the
/// status bits, units, times and sequence numbers checked against the service specifications.
@Suite struct GATTDecoderTests {
    // MARK: Blood pressure (BLS 1.0 §3.1)

    @Test func bloodPressureEveryFlagCombination() throws {
        for flags in 0..<256 {
            var d = GATTDeviceDecoder()
            let event = try d.decode(.bloodPressureMeasurement, GATTCorpus.bloodPressure(flags & 0x1F, status: 0x25)
                                      .replacingFirst(UInt8(flags)))
            guard case .measurement(let s) = event else { Issue.record("flags \(flags): \(event)"); continue }
            let kpa = flags & 1 != 0
            #expect(s.count == (flags & 4 != 0 ? 4 : 3), "flags \(flags)")
            #expect(s.map(\.vital).prefix(3) == [.systolicPressure, .diastolicPressure, .meanArterialPressure])
            #expect(s[0].quantity == Quantity(kpa ? 16.0 : 120, kpa ? "kPa" : "mm[Hg]"), "flags \(flags)")
            #expect(s[1].quantity.value == (kpa ? 10.7 : 80) && s[2].quantity.value == (kpa ? 13.3 : 93))
            for x in s { #expect(x.deviceTime == (flags & 2 != 0 ? testTime : nil), "flags \(flags)") }
            if flags & 4 != 0 { #expect(s[3].vital == .pulseRate && s[3].quantity == Quantity(72, "/min")) }
            #expect((details(d)["user_id"] == "3") == (flags & 8 != 0))
            // Status 0x25: body movement, irregular pulse, improper position.
            let expected: QualityFlags = flags & 16 != 0 ? [.bodyMovement, .irregularPulse, .position] : []
            for x in s { #expect(x.flags == expected, "flags \(flags)") }
        }
    }

    @Test func bloodPressureEveryMeasurementStatus() throws {
        for status in 0..<128 {
            var d = GATTDeviceDecoder()
            let s = samples(try d.decode(.bloodPressureMeasurement, GATTCorpus.bloodPressure(0x14, status: status)))
            var pressure = QualityFlags()
            if status & 1 != 0 { pressure.insert(.bodyMovement) }
            if status & 2 != 0 { pressure.insert(.cuffFit) }
            if status & 4 != 0 { pressure.insert(.irregularPulse) }
            if status & 32 != 0 { pressure.insert(.position) }
            let range = (status >> 3) & 3
            #expect(s[0].flags == pressure, "status \(status)")
            // Pulse rate range 1 (above) and 2 (below) flag the pulse only; 3 is reserved.
            #expect(s[3].flags == pressure.union(range == 1 || range == 2 ? .pulseRateRange : []), "status \(status)")
            #expect(details(d)["pulse_rate_range"] == [nil, "above_upper_limit", "below_lower_limit", nil][range])
        }
    }

    @Test func bloodPressureSpecialValuesGiveNoReadingAndAFlag() throws {
        for special in [0x07FF, 0x0800, 0x07FE, 0x0802, 0x0801] {
            var p = GATTPayload()
            p.u8(0x04); p.u16(special); p.sfloat(80, 0); p.u16(0x07FF); p.sfloat(70, 0)
            var d = GATTDeviceDecoder()
            let s = samples(try d.decode(.bloodPressureMeasurement, p.bytes))
            #expect(s.map(\.vital) == [.diastolicPressure, .pulseRate])
            #expect(s.allSatisfy { $0.flags == .specialValue })
            #expect(d.details.filter { $0.name == "special_value" }.count == 2)
        }
    }

    @Test func intermediateCuffPressureIsProgressNotAMeasurement() throws {
        var p = GATTPayload()
        p.u8(0x00); p.sfloat(142, 0); p.u16(0x07FF); p.u16(0x07FF)
        var d = GATTDeviceDecoder()
        let event = try d.decode(.intermediateCuffPressure, p.bytes)
        #expect(event == .intermediate([VitalSample(vital: .cuffPressure, quantity: Quantity(142, "mm[Hg]"), deviceTime: nil)]))
    }

    // MARK: Temperature (HTS 1.0 §3.1)

    @Test func temperatureEveryFlagCombination() throws {
        for flags in 0..<256 {
            for c in [GATTCharacteristic.temperatureMeasurement, .intermediateTemperature] {
                var d = GATTDeviceDecoder()
                let event = try d.decode(c, GATTCorpus.temperature(flags & 7).replacingFirst(UInt8(flags)))
                let s = samples(event)
                #expect(s.count == 1)
                #expect(s.first?.quantity == (flags & 1 != 0 ? Quantity(98.6, "[degF]") : Quantity(36.7, "Cel")), "flags \(flags)")
                #expect(s.first?.deviceTime == (flags & 2 != 0 ? testTime : nil))
                #expect(details(d)["temperature_type"] == (flags & 4 != 0 ? "mouth" : nil))
                if c == .intermediateTemperature {
                    #expect(event == .intermediate(s))
                } else {
                    #expect(event == .measurement(s))
                }
            }
        }
    }

    @Test func everyTemperatureType() throws {
        let names = ["reserved", "armpit", "body", "ear", "finger", "gastrointestinal_tract", "mouth", "rectum", "toe", "tympanum"]
        for t in 0..<256 {
            var d = GATTDeviceDecoder()
            _ = try d.decode(.temperatureMeasurement, GATTCorpus.temperature(4, type: t))
            #expect(details(d)["temperature_type"] == (t < names.count ? names[t] : "reserved"))
        }
    }

    @Test func temperatureSpecialValues() throws {
        for raw: UInt32 in [0x007F_FFFF, 0x0080_0000, 0x007F_FFFE, 0x0080_0002, 0x0080_0001] {
            var d = GATTDeviceDecoder()
            let event = try d.decode(.temperatureMeasurement, [0x00, UInt8(raw & 0xFF), UInt8(raw >> 8 & 0xFF), UInt8(raw >> 16), 0])
            #expect(event == .measurement([]))
            #expect(details(d)["special_value"] != nil)
        }
    }

    // MARK: Pulse oximetry (PLXS 1.0.1)

    /// The mapping of CLINICAL.md §5.2, restated bit by bit.
    static let measurementStatus: [Int: QualityFlags] = [
        5: .searching, 6: .searching, 9: .storedData, 10: .notPatientData, 11: .notPatientData, 12: .searching,
        13: .invalidMeasurement, 14: .questionableMeasurement, 15: .invalidMeasurement,
    ]
    static let deviceStatus: [Int: QualityFlags] = [
        1: .sensorFault, 2: .artifact, 3: .lowSignal, 4: .lowSignal, 5: .lowPerfusion, 6: .artifact, 7: .lowSignal,
        8: .questionableMeasurement, 9: .searching, 10: .artifact, 11: .sensorOff, 12: .sensorFault, 13: .sensorOff,
        14: .sensorFault, 15: .sensorOff,
    ]

    @Test func plxSpotCheckEveryFlagCombination() throws {
        for flags in 0..<256 {
            var d = GATTDeviceDecoder()
            let s = samples(try d.decode(.plxSpotCheckMeasurement, GATTCorpus.plxSpot(flags & 0x1F).replacingFirst(UInt8(flags))))
            #expect(s.map(\.vital) == [.spo2, .pulseRate] + (flags & 8 != 0 ? [.perfusionIndex] : []), "flags \(flags)")
            #expect(s[0].quantity == Quantity(97, "%") && s[1].quantity == Quantity(64, "/min"))
            if flags & 8 != 0 { #expect(s[2].quantity == Quantity(5.2, "%")) }
            var expected = QualityFlags()
            if flags & 4 != 0 { expected.insert(.lowPerfusion) }  // DSS 0x20
            if flags & 0x10 != 0 { expected.insert(.deviceClockUnreliable) }
            // Clock not set: the timestamp is dropped, the gateway's time stands in.
            let time = flags & 1 != 0 && flags & 0x10 == 0 ? testTime : nil
            for x in s { #expect(x.flags == expected && x.deviceTime == time, "flags \(flags)") }
            #expect((details(d)["validated"] == "true") == (flags & 2 != 0))
        }
    }

    @Test func plxContinuousEveryFlagCombination() throws {
        for flags in 0..<256 {
            var d = GATTDeviceDecoder()
            let s = samples(try d.decode(.plxContinuousMeasurement, GATTCorpus.plxContinuous(flags & 0x1F).replacingFirst(UInt8(flags))))
            #expect(s.map(\.vital) == [.spo2, .pulseRate] + (flags & 0x10 != 0 ? [.perfusionIndex] : []), "flags \(flags)")
            #expect(s[0].quantity.value == 96 && s[1].quantity.value == 70 && s.allSatisfy { $0.deviceTime == nil })
            let dt = details(d)
            #expect((dt["spo2_fast"], dt["pr_fast"]) == (flags & 1 != 0 ? ("95", "71") : (nil, nil)))
            #expect((dt["spo2_slow"], dt["pr_slow"]) == (flags & 2 != 0 ? ("97", "69") : (nil, nil)))
            #expect(s[0].flags == (flags & 8 != 0 ? .lowPerfusion : []))
        }
    }

    @Test func plxEveryStatusBit() throws {
        for bit in 0..<16 {
            var d = GATTDeviceDecoder()
            let s = samples(try d.decode(.plxSpotCheckMeasurement, GATTCorpus.plxSpot(0x02, ms: 1 << bit)))
            #expect(s[0].flags == Self.measurementStatus[bit] ?? [], "measurement status bit \(bit)")
            let c = samples(try d.decode(.plxContinuousMeasurement, GATTCorpus.plxContinuous(0x04, ms: 1 << bit)))
            // Stored data has no time of its own on the continuous characteristic.
            #expect(c[0].flags == (Self.measurementStatus[bit] ?? []).union(bit == 9 ? .deviceClockUnreliable : []))
        }
        for bit in 0..<24 {
            var d = GATTDeviceDecoder()
            let s = samples(try d.decode(.plxSpotCheckMeasurement, GATTCorpus.plxSpot(0x04, dss: 1 << bit)))
            #expect(s[0].flags == Self.deviceStatus[bit] ?? [], "device and sensor status bit \(bit)")
        }
        #expect(QualityFlags.clinicallyUnreliable.isSuperset(of: [.notPatientData, .questionableMeasurement, .invalidMeasurement]))
        #expect(QualityFlags.clinicallyUnreliable.isDisjoint(with: [.specialValue, .storedData]))
    }

    // MARK: Weight scale (WSS 1.0) and body composition (BCS 1.0)

    @Test func weightEveryFlagCombination() throws {
        for flags in 0..<256 {
            var d = GATTDeviceDecoder()
            let s = samples(try d.decode(.weightMeasurement, GATTCorpus.weight(flags & 0x0F).replacingFirst(UInt8(flags))))
            let imperial = flags & 1 != 0
            #expect(s.first == VitalSample(vital: .bodyWeight, quantity: imperial ? Quantity(154.32, "[lb_av]") : Quantity(70, "kg"),
                                           deviceTime: flags & 2 != 0 ? CivilDateTime(year: 2026, month: 11, day: 25, hour: 7, minute: 0, second: 0) : nil),
                    "flags \(flags)")
            #expect((details(d)["user_id"] == "1") == (flags & 4 != 0))
            if flags & 8 != 0 {
                #expect(s.count == 3)
                #expect(s[1].quantity == Quantity(24.5, "kg/m2"))
                #expect(s[2].quantity == (imperial ? Quantity(68.9, "[in_i]") : Quantity(1.75, "m")))
            } else {
                #expect(s.count == 1)
            }
        }
    }

    @Test func weightMeasurementUnsuccessful() throws {
        var d = GATTDeviceDecoder()
        let event = try d.decode(.weightMeasurement, [0x08, 0xFF, 0xFF, 245, 0, 0xD6, 0x06])
        #expect(samples(event).map(\.vital) == [.bodyMassIndex, .bodyHeight])
        #expect(samples(event).allSatisfy { $0.flags == .specialValue })
    }

    @Test func bodyCompositionEveryFlagCombination() throws {
        for flags in 0..<0x1000 {
            var d = GATTDeviceDecoder()
            let s = samples(try d.decode(.bodyCompositionMeasurement, GATTCorpus.bodyComposition(flags)))
            let imperial = flags & 1 != 0
            var vitals: [Vital] = [.bodyFatPercentage]
            if flags & 0x400 != 0 { vitals.append(.bodyWeight) }
            if flags & 0x800 != 0 { vitals.append(.bodyHeight) }
            #expect(s.map(\.vital) == vitals, "flags \(flags)")
            #expect(s[0].quantity == Quantity(21.5, "%"))
            if flags & 0x400 != 0 { #expect(s[1].quantity == (imperial ? Quantity(154.32, "[lb_av]") : Quantity(70, "kg"))) }
            let dt = details(d)
            #expect((dt["basal_metabolism"] == "6500 kJ") == (flags & 0x08 != 0))
            #expect((dt["muscle_percentage"] == "40.2 %") == (flags & 0x10 != 0))
            #expect((dt["muscle_mass"] == (imperial ? "50.32 [lb_av]" : "25.16 kg")) == (flags & 0x20 != 0), "flags \(flags)")
            #expect((dt["impedance"] == "512.3 Ohm") == (flags & 0x200 != 0))
            #expect(s.allSatisfy { ($0.deviceTime != nil) == (flags & 2 != 0) })
        }
    }

    @Test func bodyCompositionInTwoPacketsIsIncompleteUntilTheSecond() throws {
        var d = GATTDeviceDecoder()
        let first = try d.decode(.bodyCompositionMeasurement, GATTCorpus.bodyComposition(0x1000 | 0x0002 | 0x0400))
        #expect(first == .incomplete)
        let second = try d.decode(.bodyCompositionMeasurement, GATTCorpus.bodyComposition(0x1000 | 0x0800 | 0x0200))
        let s = samples(second)
        #expect(s.map(\.vital) == [.bodyFatPercentage, .bodyWeight, .bodyHeight])
        #expect(s.allSatisfy { $0.deviceTime == CivilDateTime(year: 2026, month: 11, day: 25, hour: 7, minute: 0, second: 0) })
        #expect(details(d)["impedance"] == "512.3 Ohm")
        // A lone first part then a disconnect: reported as dropped.
        _ = try d.decode(.bodyCompositionMeasurement, GATTCorpus.bodyComposition(0x1000))
        #expect(d.reset() == 1)
        #expect(d.finish().isEmpty)
    }

    // MARK: Glucose (GLS 1.0)

    @Test func glucoseEveryFlagCombination() throws {
        for flags in 0..<256 {
            var d = GATTDeviceDecoder()
            let event = try d.decode(.glucoseMeasurement, GATTCorpus.glucose(flags & 0x1F, ssa: 0x0020).replacingFirst(UInt8(flags)))
            if flags & 0x10 != 0 {
                #expect(event == .incomplete, "flags \(flags)")
                let released = d.finish()
                #expect(released.count == (flags & 2 != 0 ? 1 : 0))
                continue
            }
            let s = samples(event)
            #expect(s.count == (flags & 2 != 0 ? 1 : 0), "flags \(flags)")
            guard let g = s.first else { continue }
            #expect(g.vital == .bloodGlucose && g.sequence == 7)
            #expect(g.quantity == (flags & 4 != 0 ? Quantity(5.5, "mmol/L") : Quantity(95, "mg/dL")), "flags \(flags)")
            let minute = flags & 1 != 0 ? 50 : 55
            #expect(g.deviceTime == CivilDateTime(year: 2026, month: 11, day: 25, hour: 7, minute: minute, second: 0))
            #expect(g.flags == (flags & 8 != 0 ? .aboveMeasuringRange : []))
            #expect(details(d)["sample_type"] == "capillary_whole_blood" && details(d)["sample_location"] == "finger")
        }
    }

    @Test func glucoseEverySensorStatusBit() throws {
        let expected: [Int: QualityFlags] = [
            1: .sensorFault, 2: .questionableMeasurement, 3: .questionableMeasurement, 4: .questionableMeasurement,
            5: .aboveMeasuringRange, 6: .belowMeasuringRange, 7: .questionableMeasurement, 8: .questionableMeasurement,
            9: .questionableMeasurement, 10: .sensorFault, 11: .deviceClockUnreliable,
        ]
        for bit in 0..<16 {
            var d = GATTDeviceDecoder()
            let g = samples(try d.decode(.glucoseMeasurement, GATTCorpus.glucose(0x0A, ssa: 1 << bit)))[0]
            #expect(g.flags == expected[bit] ?? [], "bit \(bit)")
            #expect((g.deviceTime == nil) == (bit == 11))
        }
    }

    @Test func glucoseSampleTypesAndControlSolution() throws {
        for type in 0..<16 {
            for location in [1, 4, 15] {
                var d = GATTDeviceDecoder()
                let g = samples(try d.decode(.glucoseMeasurement, GATTCorpus.glucose(0x02, typeLocation: location << 4 | type)))[0]
                #expect(g.vital == (type == 9 ? .interstitialGlucose : .bloodGlucose))
                #expect(g.flags.contains(.notPatientData) == (type == 10 || location == 4))
            }
        }
    }

    @Test func glucoseContextEveryFlagCombinationPairsBySequenceNumber() throws {
        for flags in 0..<256 {
            var d = GATTDeviceDecoder()
            #expect(try d.decode(.glucoseMeasurement, GATTCorpus.glucose(0x12, sequence: 300)) == .incomplete)
            let s = samples(try d.decode(.glucoseMeasurementContext, GATTCorpus.glucoseContext(flags, sequence: 300)))
            #expect(s.map(\.vital) == [.bloodGlucose] + (flags & 0x40 != 0 ? [.hemoglobinA1c] : []), "flags \(flags)")
            #expect(s.allSatisfy { $0.sequence == 300 })
            if flags & 0x40 != 0 { #expect(s[1].quantity == Quantity(6.2, "%")) }
            let dt = details(d)
            #expect(dt["sample_type"] == "capillary_whole_blood")
            #expect((dt["carbohydrate"] == "45 g" && dt["carbohydrate_id"] == "breakfast") == (flags & 1 != 0))
            #expect((dt["meal"] == "preprandial") == (flags & 2 != 0))
            #expect((dt["tester"] == "self" && dt["health"] == "no_health_issues") == (flags & 4 != 0))
            #expect((dt["exercise_duration"] == "1800 s" && dt["exercise_intensity"] == "40 %") == (flags & 8 != 0))
            #expect((dt["medication"] == (flags & 0x20 != 0 ? "0.004 mL" : "4 mg")) == (flags & 0x10 != 0), "flags \(flags)")
            #expect(d.finish().isEmpty)
        }
    }

    @Test func glucoseContextOutOfSequenceIsATypedError() throws {
        var d = GATTDeviceDecoder()
        #expect(throws: GATTDecodeError.self) { try d.decode(.glucoseMeasurementContext, GATTCorpus.glucoseContext(0x02)) }
        _ = try d.decode(.glucoseMeasurement, GATTCorpus.glucose(0x12, sequence: 8))
        do {
            _ = try d.decode(.glucoseMeasurementContext, GATTCorpus.glucoseContext(0x02, sequence: 9))
            Issue.record("a context for another sequence number paired")
        } catch {
            #expect(error.code == .outOfSequence)
        }
        // The measurement whose context never came is released by the next one, not lost.
        let next = samples(try d.decode(.glucoseMeasurement, GATTCorpus.glucose(0x02, sequence: 9)))
        #expect(next.map(\.sequence) == [8, 9])
    }

    // MARK: CGM (CGMS 1.0.1)

    @Test func cgmEveryFlagCombinationWithAndWithoutCRC() throws {
        for flags in 0..<256 {
            for crc in [false, true] {
                var d = GATTDeviceDecoder(options: GATTDecoderOptions(cgmCRCPresent: crc))
                let s = samples(try d.decode(.cgmMeasurement, GATTCorpus.cgmRecord(flags & ~0x1C, crc: crc).withCGMFlags(flags)))
                #expect(s.count == 1, "flags \(flags)")
                #expect(s.first?.quantity == Quantity(112, "mg/dL") && s.first?.vital == .interstitialGlucose)
                #expect(s.first?.sequence == 600 && s.first?.deviceTime == nil)
                var expected = QualityFlags()
                if flags & 0x20 != 0 { expected.insert(.deviceAlarm) }  // warning 0x10: rate of decrease exceeded
                if flags & 0x40 != 0 { expected.insert(.questionableMeasurement) }  // calibration required
                #expect(s.first?.flags == expected, "flags \(flags)")
                let dt = details(d)
                #expect((dt["trend"] == "-1.5 mg/dL/min") == (flags & 1 != 0))
                #expect((dt["quality"] == "98 %") == (flags & 2 != 0))
                #expect((dt["device_battery_low"] == "true") == (flags & 0x80 != 0))
            }
        }
    }

    @Test func cgmSeveralRecordsAndTheCRC() throws {
        let a = GATTCorpus.cgmRecord(0x00, glucose: 100, offset: 5, crc: true)
        let b = GATTCorpus.cgmRecord(0x03, glucose: 104, offset: 10, crc: true)
        let c = GATTCorpus.cgmRecord(0xE0, glucose: 110, offset: 15, crc: true, annunciation: (0x80, 0, 0))
        var d = GATTDeviceDecoder(options: GATTDecoderOptions(cgmCRCPresent: true))
        let s = samples(try d.decode(.cgmMeasurement, a + b + c))
        #expect(s.map(\.quantity.value) == [100, 104, 110] && s.map(\.sequence) == [5, 10, 15])
        #expect(s[2].flags == .aboveMeasuringRange)
        for i in a.indices.dropFirst(2) {
            var bad = a
            bad[i] ^= 0x01
            #expect(throws: GATTDecodeError(.crc, .cgmMeasurement, "record 1: E2E-CRC does not match")) {
                try d.decode(.cgmMeasurement, bad)
            }
        }
        // The feature says CRC, the record has none: a size error, not a silent accept.
        do {
            _ = try d.decode(.cgmMeasurement, GATTCorpus.cgmRecord(0, crc: false))
            Issue.record("a CRC-less record accepted")
        } catch { #expect(error.code == .invalidField) }
        do {
            _ = try d.decode(.cgmMeasurement, [5, 0, 0x70, 0x00, 0x0A])
            Issue.record("a size below 6 accepted")
        } catch { #expect(error.code == .invalidField) }
    }

    // MARK: RACP, time, battery

    @Test func racpRequestsEncodeAsTheSpecificationSays() {
        #expect(RACPRequest.reportAllRecords.encoded == [0x01, 0x01])
        #expect(RACPRequest.reportRecords(from: 0x1234).encoded == [0x01, 0x03, 0x01, 0x34, 0x12])
        #expect(RACPRequest.reportNumberOfAllRecords.encoded == [0x04, 0x01])
        #expect(RACPRequest.reportNumberOfRecords(from: 7).encoded == [0x04, 0x03, 0x01, 0x07, 0x00])
        #expect(RACPRequest.abort.encoded == [0x03, 0x00])
    }

    @Test func racpResponsesDecode() throws {
        var d = GATTDeviceDecoder()
        #expect(try d.decode(.recordAccessControlPoint, [0x05, 0x00, 0x2C, 0x01]) == .racp(.numberOfRecords(300)))
        #expect(try d.decode(.recordAccessControlPoint, [0x06, 0x00, 0x01, 0x06])
                == .racp(.responseCode(request: 1, code: .noRecordsFound)))
        let names = ["reserved_0x00", "success", "op_code_not_supported", "invalid_operator", "operator_not_supported",
                     "invalid_operand", "no_records_found", "abort_unsuccessful", "procedure_not_completed",
                     "operand_not_supported", "reserved_0x0A"]
        for (i, n) in names.enumerated() { #expect(RACPResponseCode(rawValue: UInt8(i)).description == n) }
        for bad: [UInt8] in [[0x01, 0x01], [0x05, 0x01, 0, 0], [0x06, 0x00, 0x01, 0x01, 0x00]] {
            #expect(throws: GATTDecodeError.self) { try d.decode(.recordAccessControlPoint, bad) }
        }
    }

    @Test func currentTimeRoundTripsAndNamesTheWeekday() throws {
        let t = CivilDateTime(year: 2026, month: 11, day: 25, hour: 14, minute: 30, second: 5, millisecond: 500)
        let bytes = GATTCurrentTime.encode(t)
        #expect(bytes == [0xEA, 0x07, 11, 25, 14, 30, 5, 3, 128, 1])  // Wednesday, 128/256 s
        var d = GATTDeviceDecoder()
        #expect(try d.decode(.currentTime, bytes) == .deviceTime(t))
        #expect(GATTCurrentTime.encode(CivilDateTime(year: 2024, month: 2, day: 29, hour: 0, minute: 0, second: 0))[7] == 4)
        #expect(GATTCurrentTime.encode(CivilDateTime(year: 1969, month: 12, day: 28, hour: 0, minute: 0, second: 0))[7] == 7)
        #expect(try d.decode(.dateTime, Array(bytes.prefix(7))) == .deviceTime(CivilDateTime(year: 2026, month: 11, day: 25, hour: 14, minute: 30, second: 5)))
        // An unknown date (zeros, GSS §3.70) names no instant: the clock is reported as not set.
        #expect(try d.decode(.dateTime, [0, 0, 0, 0, 0, 0, 0]) == .deviceTime(nil))
    }

    @Test func batteryLevelAboveOneHundredIsReserved() throws {
        var d = GATTDeviceDecoder()
        #expect(try d.decode(.batteryLevel, [100]) == .batteryLevel(100))
        for v in 101...255 {
            do {
                _ = try d.decode(.batteryLevel, [UInt8(v)])
                Issue.record("\(v) accepted")
            } catch { #expect(error.code == .invalidField) }
        }
    }
}

extension Array where Element == UInt8 {
    /// The value with its first byte (the flags) replaced, to set reserved bits.
    func replacingFirst(_ b: UInt8) -> [UInt8] {
        var c = self
        c[0] = b
        return c
    }

    /// A CGM record with reserved flag bits set, its CRC (if any) recomputed.
    func withCGMFlags(_ flags: Int) -> [UInt8] {
        var c = self
        c[1] = UInt8(flags)
        let fields = 6 + (flags & 1 != 0 ? 2 : 0) + (flags & 2 != 0 ? 2 : 0) + (flags & 0x20 != 0 ? 1 : 0)
            + (flags & 0x40 != 0 ? 1 : 0) + (flags & 0x80 != 0 ? 1 : 0)
        if c.count == fields + 2 {
            let crc = referenceCRC(Array(c[0..<fields]))
            c[fields] = UInt8(crc & 0xFF)
            c[fields + 1] = UInt8(crc >> 8)
        }
        return c
    }
}
