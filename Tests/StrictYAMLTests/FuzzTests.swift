import Testing
import StrictYAML
import VigilTestKit


/// Decodes any document, taking every key, so the decoder walks the whole tree.
indirect enum AnyValue: Decodable {
    case null, bool(Bool), int(Int64), double(Double), string(String), list([AnyValue]), map([String: AnyValue])
    init(from decoder: any Decoder) throws {
        if let map = try? [String: AnyValue](from: decoder) { self = .map(map); return }
        if let list = try? [AnyValue](from: decoder) { self = .list(list); return }
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else { self = .string(try c.decode(String.self)) }
    }
}

let fuzzSeeds: [String] = [
    gatewayYAML,
    "a:\n  - b: [1, {c: d, e: 'f'}]\n    g: |\n      text\n  - - h\n    - \"i\\u0041\"\n",
    "---\nlist:\n- {a: 1, b: [2, 3]}\n- ~\n-\n  k: v # c\n...\n",
]

let fuzzAlphabet: [String] = [" ", "  ", "\t", ":", ": ", "- ", "-", "#", " #", "\"", "'", "[", "]", "{", "}", ",", "|", "|-",
                              "&", "*", "!", "\n", "\\", "\\u", "?", "%", "@", "a", "0", "0x", ".", "é", "\r", "\r\n", "\u{0}",
                              "---\n", "...\n", "\u{FEFF}", "999999999999999999999", ".inf"]

func mutate(_ text: String, _ rng: inout SplitMix64) -> String {
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    for _ in 0...Int.random(in: 0...3, using: &rng) {
        guard !lines.isEmpty else { return "" }
        let i = Int.random(in: 0..<lines.count, using: &rng)
        var line = Array(lines[i].unicodeScalars)
        let at = Int.random(in: 0...line.count, using: &rng)
        switch Int.random(in: 0..<8, using: &rng) {
        case 0, 1: line.insert(contentsOf: fuzzAlphabet.randomElement(using: &rng)!.unicodeScalars, at: at)
        case 2: if at < line.count { line.removeSubrange(at..<min(line.count, at + Int.random(in: 1...4, using: &rng))) }
        case 3: lines.insert(lines[i], at: i)
        case 4: lines.swapAt(i, Int.random(in: 0..<lines.count, using: &rng))
        case 5: line.insert(contentsOf: String(repeating: " ", count: Int.random(in: 1...3, using: &rng)).unicodeScalars, at: 0)
        case 6: if line.first == " " { line.removeFirst() }
        default: line.insert(contentsOf: String(repeating: ["[", "{", "- ", "  "].randomElement(using: &rng)!, count: 70).unicodeScalars, at: at)
        }
        lines[i] = String(String.UnicodeScalarView(line))
    }
    return lines.joined(separator: "\n")
}

/// An error's position must be inside the document (or just past its end).
func checkLocation(_ error: YAMLError, in text: String) {
    let lineCount = text.split(separator: "\n", omittingEmptySubsequences: false).count
    #expect(error.line >= 1 && error.line <= lineCount + 1, "\(error)")
    #expect(error.column >= 1, "\(error)")
    #expect(!error.message.isEmpty)
}

@Test func seedsAreValid() throws {
    for seed in fuzzSeeds { _ = try YAMLDecoder().decode(AnyValue.self, from: seed, fileName: "seed.yaml") }
}

@Test func randomMutationsNeverCrash() {
    var rng = SplitMix64(state: 0x5EED_0F_71_9111)
    var accepted = 0, refused = 0
    for iteration in 0..<4000 {
        let seed = fuzzSeeds[iteration % fuzzSeeds.count]
        let text = mutate(seed, &rng)
        do {
            _ = try YAMLDecoder().decode(AnyValue.self, from: text, fileName: "fuzz.yaml")
            accepted += 1
        } catch {
            checkLocation(error, in: text)
            refused += 1
        }
        do {
            _ = try YAMLDecoder(keyDecodingStrategy: .convertFromSnakeCase).decode(GatewayConfig.self, from: text, fileName: "fuzz.yaml")
        } catch {
            checkLocation(error, in: text)
        }
    }
    // Both outcomes must occur, or the mutations are not exercising the parser.
    #expect(accepted > 100 && refused > 100, "accepted \(accepted), refused \(refused)")
}

@Test func randomBytesNeverCrash() {
    var rng = SplitMix64(state: 42)
    let base = Array(gatewayYAML.utf8)
    for _ in 0..<2000 {
        var bytes = base
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
        }
        do {
            _ = try YAMLDecoder().decode(AnyValue.self, from: bytes, fileName: "bytes.yaml")
        } catch {
            #expect(error.line >= 1 && error.column >= 1)
        }
    }
}
