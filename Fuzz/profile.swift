// libFuzzer target: the device profile loader (DeviceProfiles `DeviceProfile` through StrictYAML),
// then the decoder the profile names, fed the input's own bytes.
import DeviceDecoding
import DeviceProfiles
import StrictYAML

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProfile(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = FuzzInput(data, size).bytes
    guard let profile = try? YAMLDecoder().decode(DeviceProfile.self, from: bytes, fileName: "fuzz.yaml") else { return 0 }
    if var decoder = profile.makeStreamDecoder() {
        _ = decoder.decode(bytes.prefix(256))
        _ = decoder.finish()
    }
    return 0
}
