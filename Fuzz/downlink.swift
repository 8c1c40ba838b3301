// libFuzzer target: the downlink command parser (Uplink `DownlinkParser.parse(topic:payload:now:)`,
// docs/downlink.md). Input: the topic's last level, a newline, then the payload. The clock is fixed
// at 2026-11-25T11:50:00Z so `issued_at` values near it get past the window check.
import Uplink
import VitalSigns

let parser = DownlinkParser(prefix: "vigil/v1/site/gw")
let now = Timestamp(secondsSinceEpoch: 1_795_607_400)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDownlink(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = FuzzInput(data, size).bytes
    let newline = bytes.firstIndex(of: 10) ?? bytes.count
    let topic = parser.prefix + "/cmd/" + String(decoding: bytes[..<newline], as: UTF8.self)
    let payload = Array(bytes[min(bytes.count, newline + 1)...])
    _ = try? parser.parse(topic: topic, payload: payload, now: now)
    return 0
}
