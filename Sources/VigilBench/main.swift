// vigil-bench: micro-benchmarks that print figures (never run as tests).
//
//   swift run -c release vigil-bench decoders [--megabytes N] [--runs R]
//
// Decoder throughput: each serial protocol's good fixtures, concatenated and repeated to N MB,
// fed in 4 KiB chunks as the serial reader delivers them. Printed beside a baseline measured
// in the same run on the same bytes: a loop that touches every byte (counts LF bytes), the
// floor any decoder pays. Medians of R runs.
import DeviceDecoding
import Glibc
import VigilTestKit

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func median(_ v: [Double]) -> Double {
    let s = v.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func option(_ name: String, default value: Int) -> Int {
    let args = CommandLine.arguments
    if let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]), v > 0 { return v }
    return value
}

func fail(_ message: String) -> Never {
    let bytes = Array("vigil-bench: \(message)\n".utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(64)
}

/// The fixtures that hold good frames only, per decoder.
let inputs: [(String, [String])] = [
    ("masimo-ascii1", ["masimo-rad8/normal.capture", "masimo-rad8/desaturation.capture"]),
    ("masimo-trend", ["masimo-trend/night.capture"]),
    ("nonin-sdf2", ["nonin/normal.capture", "nonin/artifact.capture"]),
    ("contec-cms50-legacy", ["contec/normal.capture"]),
    ("contec-cms50-v7", ["contec-v7/normal.capture"]),
    ("onetouch-ultra2", ["onetouch-ultra2/normal.capture"]),
    ("onetouch-ultraeasy", ["onetouch-ultraeasy/normal.capture"]),
]

func decoders() {
    let megabytes = option("--megabytes", default: 8)
    let runs = option("--runs", default: 5)
    print("decoder throughput: \(megabytes) MB per run, 4 KiB chunks, median of \(runs) runs")
    print("| protocol | MB/s | readings/s | byte-scan baseline MB/s | decode time / scan time | × a 115200-baud line |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for (name, files) in inputs {
        var unit: [UInt8] = []
        for f in files {
            guard let c = try? Fixtures.capture(f) else { fail("cannot read fixture \(f)") }
            unit += c.allBytes
        }
        guard !unit.isEmpty else { fail("no bytes for \(name)") }
        var data: [UInt8] = []
        data.reserveCapacity(megabytes << 20 + unit.count)
        while data.count < megabytes << 20 { data += unit }
        var decodeTimes: [Double] = []
        var scanTimes: [Double] = []
        var readings = 0
        for _ in 0..<runs {
            guard var decoder = makeDecoder(named: name) else { fail("unknown decoder \(name)") }
            var count = 0
            let t0 = now()
            var i = 0
            while i < data.count {
                let end = min(i + 4096, data.count)
                for r in decoder.decode(data[i..<end]) { if case .samples(let s) = r { count += s.count } }
                i = end
            }
            for r in decoder.finish() { if case .samples(let s) = r { count += s.count } }
            decodeTimes.append(now() - t0)
            readings = count

            var lf = 0
            let t1 = now()
            i = 0
            while i < data.count {
                let end = min(i + 4096, data.count)
                for b in data[i..<end] where b == 0x0A { lf += 1 }
                i = end
            }
            scanTimes.append(now() - t1)
            if lf == -1 { print("") }  // keeps the scan from being optimised away
        }
        let mb = Double(data.count) / 1_048_576
        let d = median(decodeTimes), s = median(scanTimes)
        func f(_ x: Double) -> String {
            let r = (x * 10).rounded() / 10
            return r >= 1000 ? String(Int(r)) : String(r)
        }
        // A 115200-baud 8N1 line carries at most 11,520 bytes/s.
        let lineRate = Double(data.count) / d / 11_520
        print("| \(name) | \(f(mb / d)) | \(Int(Double(readings) / d)) | \(f(mb / s)) | \(f(s > 0 ? d / s : 0)) | \(Int(lineRate)) |")
    }
}

switch CommandLine.arguments.dropFirst().first {
case "decoders": decoders()
case "uplink-bytes": uplinkBytes()
case "uplink-fill": await uplinkFill()
default: fail("usage: vigil-bench decoders [--megabytes N] [--runs R] | uplink-bytes [--batch N] | uplink-fill --database PATH --readings N")
}
