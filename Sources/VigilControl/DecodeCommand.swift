import ArgumentParser
import DeviceDecoding
import Glibc
import VitalSigns

/// `vigilctl decode`: what a device's bytes mean, for a technician with a capture or a hex dump.
struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode device bytes (serial captures, hex, or Bluetooth GATT values) and print JSON lines.",
        discussion: """
            Serial (--protocol): each line printed is one reading: {"vital", "loinc", "value", "unit", \
            "measured_at", "flags"} (measured_at is the device's own clock, without a zone, when the \
            protocol carries one; null otherwise). Rejected frames are reported on stderr with their \
            reason. Protocols: \(streamDecoderNames.joined(separator: ", ")).

            Bluetooth (--characteristic UUID, e.g. 2A35 or 0x2A35): --hex decodes one characteristic \
            value; --file decodes a file of values, one hex payload per line (blank lines and # \
            comments ignored), in order, through one decoder (so a glucose measurement pairs with its \
            context and a two-part body composition measurement completes). Without --characteristic, \
            --file lines are "<UUID> <hex>" (the firmware-fixtures/gatt/*.values format). Readings \
            print as {"vital", "loinc", "value", "unit", "measured_at", "flags", "sequence"} plus \
            "details" (temperature type, user ID, glucose sample type, meal…) when there are any; \
            other events as {"event": "battery" | "device_time" | "racp" | "intermediate" | \
            "incomplete" | "no_reading", …}. With --file every line starts with "payload": N, the \
            1-based line number of the value it came from, and a value that fails prints \
            {"payload": N, "error": "<code>: <message>"} on stdout; with --hex the error goes to stderr.

            Exit status: 0 when everything decoded; 65 when any frame or value was rejected (or, \
            serial, nothing decoded); 64 for bad arguments.
            """)

    @Option(help: ArgumentHelp("The serial decoder, as device profiles name it.", valueName: "name"))
    var `protocol`: String?

    @Option(help: ArgumentHelp("A Bluetooth GATT characteristic UUID (2A35, 0x2A35 or 128-bit).", valueName: "uuid"))
    var characteristic: String?

    @Option(help: ArgumentHelp("Bytes as hexadecimal (spaces allowed).", valueName: "hex"))
    var hex: String?

    @Option(help: ArgumentHelp(
        "A capture file (serial) or a file of hex values, one per line (Bluetooth).", valueName: "path"))
    var file: String?

    @Flag(help: "CGM Measurement records end in an E2E-CRC (the device's CGM Feature says so).")
    var cgmCRC = false

    @Flag(help: ArgumentHelp(
        "With --characteristic and --file: print only {\"payloads\", \"readings\", \"errors\"} (decode cost without the JSON)."))
    var summary = false

    @Flag(help: "Accepted for uniformity with the other commands: the output is always JSON lines.")
    var json = false

    func validate() throws {
        if let p = self.protocol {
            guard characteristic == nil else { throw ValidationError("give --protocol or --characteristic, not both") }
            guard makeDecoder(named: p) != nil else {
                throw ValidationError("unknown protocol '\(p)'; known: \(streamDecoderNames.joined(separator: ", "))")
            }
        } else if let c = characteristic {
            guard GATTCharacteristic(parsing: c) != nil else {
                throw ValidationError("--characteristic '\(c)': not a 16-bit UUID (2A35) or a Bluetooth base UUID")
            }
        } else if hex != nil {
            throw ValidationError("--hex needs --protocol or --characteristic")
        }
        guard (hex == nil) != (file == nil) else { throw ValidationError("give exactly one of --hex or --file") }
    }

    func run() throws {
        if self.protocol == nil {
            try runGATT()
            return
        }
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
        guard var decoder = makeDecoder(named: self.protocol ?? "") else { throw ExitCode(64) }
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

    // MARK: Bluetooth GATT values

    func runGATT() throws {
        let fixed = characteristic.flatMap { GATTCharacteristic(parsing: $0) }
        if let hex {
            guard let c = fixed else { throw ExitCode(64) }
            guard let bytes = Self.parseHex(hex) else {
                printError("--hex: not an even number of hexadecimal digits")
                throw ExitCode(65)
            }
            var decoder = GATTDeviceDecoder(options: GATTDecoderOptions(cgmCRCPresent: cgmCRC))
            do {
                let event = try decoder.decode(c, bytes)
                var renderer = GATTBatchRenderer(numbered: false)
                var out = LineWriter()
                out.write(renderer.render(event, details: decoder.details, line: 0))
                // A glucose measurement held for a context that never came prints with its own details.
                let held = decoder.heldDetails
                out.write(renderer.finished(decoder.finish(), held: held, line: 0))
                out.flush()
            } catch {
                printError("\(error.description)")
                throw ExitCode(65)
            }
            return
        }
        let text: String
        do {
            text = try Self.readText(file ?? "")
        } catch {
            printError("\(error)")
            throw ExitCode(65)
        }
        var out = LineWriter()
        let result = GATTBatch.run(text, characteristic: fixed, options: GATTDecoderOptions(cgmCRCPresent: cgmCRC),
                                   render: !summary) { out.write([$0]) }
        if summary {
            out.write([.object([("payloads", .int(Int64(result.payloads))), ("readings", .int(Int64(result.readings))),
                                ("errors", .int(Int64(result.errors)))])])
        }
        out.flush()
        if !result.ok { throw ExitCode(65) }
    }

    static func json(_ s: VitalSample) -> JSONValue {
        .object([
            ("vital", .string(s.vital.key)), ("loinc", .string(s.vital.loinc)), ("value", .double(s.quantity.value)),
            ("unit", .string(s.quantity.unit)), ("measured_at", GATTBatchRenderer.civil(s.deviceTime)),
            ("flags", .array(s.flags.nameList.map { .string($0) })),
        ])
    }

    static func parseHex(_ text: String) -> [UInt8]? { GATTBatch.parseHex(text) }

    static func load(_ path: String) throws -> [UInt8] {
        do {
            return try Simulate.load(path).flatMap(\.bytes)
        } catch {
            printError("\(error)")
            throw ExitCode(65)
        }
    }

    struct ReadError: Error, CustomStringConvertible {
        var description: String
    }

    static func readText(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ReadError(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ReadError(description: "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Writes JSON lines to stdout through one buffer (a batch can be 100 000 values).
struct LineWriter {
    var buffer: [UInt8] = []

    mutating func write(_ lines: [JSONValue]) {
        for line in lines {
            buffer += line.serialized.utf8
            buffer.append(0x0A)
        }
        if buffer.count > 1 << 16 { flush() }
    }

    mutating func flush() {
        var offset = 0
        while offset < buffer.count {
            let n = buffer[offset...].withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            offset += n
        }
        buffer.removeAll(keepingCapacity: true)
    }
}
