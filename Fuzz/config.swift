// libFuzzer target: vigild's configuration loader. `VigilConfig` lives in the vigild executable, so
// scripts/fuzz compiles Sources/VigilDaemon/Config.swift (with DownlinkConfig.swift and the `control:` section of Access.swift) into this binary.
import StrictYAML

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = FuzzInput(data, size).bytes
    _ = try? YAMLDecoder().decode(VigilConfig.self, from: bytes, fileName: "vigild.yaml")
    return 0
}
