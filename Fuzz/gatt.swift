// libFuzzer target: every GATT characteristic decoder, through `GATTDeviceDecoder` (which
// dispatches on the characteristic UUID and holds the state some values need: a Glucose
// Measurement waiting for its Context, the Record Access Control Point).
//
// Input: [options] then records [characteristic selector][length] value…  The selector picks one
// of the characteristics below (the last value: any UUID, from the next two bytes). Each value is
// decoded in order on one decoder; `finish()` and `reset()` run at the end.
import DeviceDecoding

let characteristics: [GATTCharacteristic] = [
    .batteryLevel, .currentTime, .dateTime, .heartRateMeasurement, .bloodPressureMeasurement,
    .intermediateCuffPressure, .temperatureMeasurement, .intermediateTemperature, .plxSpotCheckMeasurement,
    .plxContinuousMeasurement, .weightMeasurement, .bodyCompositionMeasurement, .glucoseMeasurement,
    .glucoseMeasurementContext, .cgmMeasurement, .recordAccessControlPoint,
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGATT(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    var decoder = GATTDeviceDecoder(options: GATTDecoderOptions(cgmCRCPresent: input.byte() & 1 == 1))
    while !input.isAtEnd {
        let s = Int(input.byte())
        let characteristic = s < characteristics.count ? characteristics[s]
            : s == 255 ? GATTCharacteristic(rawValue: UInt16(input.byte()) << 8 | UInt16(input.byte()))
            : characteristics[s % characteristics.count]
        let value = input.take(Int(input.byte()))
        _ = try? decoder.decode(characteristic, value)
        _ = decoder.details
    }
    _ = decoder.finish()
    _ = decoder.reset()
    return 0
}
