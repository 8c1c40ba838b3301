import DeviceDecoding
import Testing
import VigilTestKit
import VitalSigns

/// Malformed values: every truncation of every valid payload, trailing bytes, random bytes
/// and unknown UUIDs all give a typed error (or, where the shorter value is itself valid, a
/// decode), never a trap.
@Suite struct GATTRobustnessTests {
    @Test func truncationAtEveryByteIsATypedError() throws {
        var checked = 0
        for (c, payload) in GATTCorpus.all {
            var whole = GATTDeviceDecoder()
            _ = try whole.decode(c, payload)
            for cut in 0..<payload.count {
                var d = GATTDeviceDecoder()
                do {
                    _ = try d.decode(c, Array(payload.prefix(cut)))
                    // Only a heart rate value cut between RR-Intervals is still a valid value.
                    #expect(c == .heartRateMeasurement && payload[0] & 0x10 != 0, "\(c) cut at \(cut) decoded")
                } catch {
                    #expect(error.code == .truncated, "\(c) cut at \(cut): \(error)")
                    #expect(error.characteristic == c)
                    checked += 1
                }
            }
        }
        #expect(checked > 5000)
    }

    @Test func trailingBytesAreATypedError() {
        for (c, payload) in GATTCorpus.all where c != .heartRateMeasurement && c != .cgmMeasurement {
            var d = GATTDeviceDecoder()
            do {
                _ = try d.decode(c, payload + [0x00])
                Issue.record("\(c) \(payload) with a trailing byte decoded")
            } catch {
                #expect(error.code == .trailingBytes, "\(c): \(error)")
            }
        }
    }

    @Test func randomBytesNeverTrap() {
        let all: [GATTCharacteristic] = [
            .heartRateMeasurement, .batteryLevel, .bloodPressureMeasurement, .intermediateCuffPressure,
            .temperatureMeasurement, .intermediateTemperature, .plxSpotCheckMeasurement, .plxContinuousMeasurement,
            .weightMeasurement, .bodyCompositionMeasurement, .glucoseMeasurement, .glucoseMeasurementContext,
            .cgmMeasurement, .recordAccessControlPoint, .currentTime, .dateTime,
        ]
        var rng = SplitMix64(state: 0xB1E_5EED)
        var decoded = 0, rejected = 0
        for crc in [false, true] {
            var d = GATTDeviceDecoder(options: GATTDecoderOptions(cgmCRCPresent: crc))
            for _ in 0..<40_000 {
                let c = all[Int(rng.next() % UInt64(all.count))]
                let n = Int(rng.next() % 40)
                let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                do {
                    let event = try d.decode(c, bytes)
                    decoded += 1
                    // Whatever decodes is a finite number in a UCUM unit.
                    for s in samples(event) { #expect(s.quantity.value.isFinite && !s.quantity.unit.isEmpty) }
                } catch {
                    rejected += 1
                    #expect(!error.message.isEmpty)
                }
            }
            _ = d.finish()
        }
        #expect(decoded > 1000 && rejected > 1000)
    }

    @Test func unknownCharacteristicIsUnsupported() {
        var d = GATTDeviceDecoder()
        do {
            _ = try d.decode(GATTCharacteristic(rawValue: 0x2A6E), [0x00, 0x01])
            Issue.record("decoded an unknown characteristic")
        } catch {
            #expect(error.code == .unsupportedCharacteristic)
            #expect(error.description == "2A6E unsupportedCharacteristic: no decoder for this characteristic")
        }
    }

    @Test func errorsNeverEchoValues() {
        // A blood pressure value cut inside the time stamp: the message names the field and
        // the byte offset, not the pressures.
        var d = GATTDeviceDecoder()
        do {
            _ = try d.decode(.bloodPressureMeasurement, [0x02, 0x99, 0x00, 0x58, 0x00, 0x6A, 0x00, 0xEA])
        } catch {
            #expect(error.message == "field Time Stamp: truncated at byte 7")
        }
    }
}
