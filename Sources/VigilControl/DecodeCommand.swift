import ArgumentParser
import DeviceDecoding
import Glibc
import VitalSigns

/// `vigilctl decode`: what a device's bytes mean, for a technician with a capture or a hex dump.
struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode device bytes (a capture file or hex) and print the readings as JSON lines.",
        discussion: """
            Each line printed is one reading: {"vital", "loinc", "value", "unit", "measured_at", "flags"} \
            (measured_at is the device's own clock, without a zone, when the protocol carries one; \
            null otherwise). Rejected frames are reported on stderr with their reason. \
            Exit status 0 when every frame decoded, 65 when any was rejected or nothing decoded, \
            64 for bad arguments. Protocols: \(streamDecoderNames.joined(separator: ", ")).
            """)

    @Option(help: ArgumentHelp("The decoder, as device profiles name it.", valueName: "name"))
    var `protocol`: String

    @Option(help: ArgumentHelp("Bytes as hexadecimal (spaces allowed).", valueName: "hex"))
    var hex: String?

    @Option(help: ArgumentHelp("A capture file in the firmware-fixtures format.", valueName: "capture"))
    var file: String?

    @Flag(help: "Accepted for uniformity with the other commands: the output is always JSON lines.")
    var json = false

    func validate() throws {
        guard makeDecoder(named: self.protocol) != nil else {
            throw ValidationError("unknown protocol '\(self.protocol)'; known: \(streamDecoderNames.joined(separator: ", "))")
        }
        guard (hex == nil) != (file == nil) else { throw ValidationError("give exactly one of --hex or --file") }
    }

    func run() throws {
        let bytes: [UInt8]
        if let hex {
            guard let parsed = Self.parseHex(hex) else {
                printError("--hex: not an even number of hexadecimal digits")
                throw ExitCode(65)
            }
            bytes = parsed
        } else {
            bytes = try Self.load(file ?? "")
        }
        guard var decoder = makeDecoder(named: self.protocol) else { throw ExitCode(64) }
        let results = decoder.decode(bytes) + decoder.finish()
        var readings = 0
        var rejected = 0
        for result in results {
            switch result {
            case .samples(let samples):
                for s in samples {
                    readings += 1
                    print(Self.json(s).serialized)
                }
            case .rejected(let error):
                rejected += 1
                printError("rejected: \(error)")
            }
        }
        if rejected > 0 || readings == 0 {
            if readings == 0, rejected == 0 { printError("no complete frame in the input") }
            throw ExitCode(65)
        }
    }

    static func json(_ s: VitalSample) -> JSONValue {
        let time: JSONValue = s.deviceTime.map { t in
            // The device's wall clock carries no zone: print it without one.
            .string(String(t.iso8601(utcOffsetSeconds: 0).dropLast(5)))
        } ?? .null
        return .object([
            ("vital", .string(s.vital.key)), ("loinc", .string(s.vital.loinc)), ("value", .double(s.quantity.value)),
            ("unit", .string(s.quantity.unit)), ("measured_at", time),
            ("flags", .array(s.flags.nameList.map { .string($0) })),
        ])
    }

    static func parseHex(_ text: String) -> [UInt8]? {
        let digits = text.unicodeScalars.filter { !$0.properties.isWhitespace }
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        var high: UInt8?
        for d in digits {
            guard let v = UInt8(String(d), radix: 16) else { return nil }
            if let h = high {
                out.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        return out
    }

    static func load(_ path: String) throws -> [UInt8] {
        do {
            return try Simulate.load(path).flatMap(\.bytes)
        } catch {
            printError("\(error)")
            throw ExitCode(65)
        }
    }
}
