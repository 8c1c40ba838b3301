// libFuzzer target: every stream decoder (DeviceDecoding `makeDecoder(named:)`) and the data-driven
// line protocol decoder.
//
// Input: [decoder selector][chunk size] bytes…  The selector picks `streamDecoderNames[s % n]`, or
// one of two line-protocol specs for the last two values. The bytes are fed whole to one decoder
// and in chunks of (chunk size % 64) + 1 to a fresh one, each followed by `finish()`; the
// `StreamDecoder` contract says both yield the same results, so a difference is a failure too.
import DeviceDecoding
import StrictYAML

let lineSpecs: [LineProtocolSpec] = {
    let texts = [
        "terminator: crlf\nmax_length: 64\nseparator: \",\"\nrequire: '^WT'\nfields:\n  - {vital: body_weight, index: 1, unit: kg}\n",
        "terminator: lf\npattern: '^TEMP=(?<body_temperature>[0-9]+\\.[0-9])C$'\nunits: {body_temperature: Cel}\n",
    ]
    return texts.map { (try? YAMLDecoder().decode(LineProtocolSpec.self, from: $0, fileName: "fuzz"))! }
}()

func makeSelected(_ selector: UInt8) -> any StreamDecoder {
    let index = Int(selector) % (streamDecoderNames.count + lineSpecs.count)
    if index < streamDecoderNames.count { return makeDecoder(named: streamDecoderNames[index])! }
    return (try? LineProtocolDecoder(spec: lineSpecs[index - streamDecoderNames.count]))!
}

func run(_ decoder: inout some StreamDecoder, _ bytes: [UInt8], chunk: Int) -> [DecodeResult] {
    var out: [DecodeResult] = []
    var start = 0
    while start < bytes.count {
        let end = min(bytes.count, start + chunk)
        out += decoder.decode(bytes[start..<end])
        start = end
    }
    out += decoder.finish()
    return out
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStream(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let selector = input.byte(), chunk = Int(input.byte()) % 64 + 1
    let bytes = input.rest()
    var whole = makeSelected(selector), chunked = makeSelected(selector)
    let a = run(&whole, bytes, chunk: bytes.count + 1)
    let b = run(&chunked, bytes, chunk: chunk)
    if a != b { fuzzFail("decoder \(selector): whole and chunk-\(chunk) results differ") }
    // finish() resets: the same decoder must decode the same bytes the same way again.
    if run(&whole, bytes, chunk: bytes.count + 1) != a { fuzzFail("decoder \(selector): not reset by finish()") }
    return 0
}
