// libFuzzer target: the StrictYAML parser and its Decodable decoder, with a generic Decodable
// mirror (`AnyYAML`) that walks any document through keyed, unkeyed and single-value containers.
import StrictYAML

indirect enum AnyYAML: Decodable {
    case map([String: AnyYAML]), list([AnyYAML]), scalar(String), number(Double), flag(Bool), null

    init(from decoder: any Decoder) throws {
        if let c = try? decoder.container(keyedBy: AnyKey.self) {
            var out: [String: AnyYAML] = [:]
            for key in c.allKeys { out[key.stringValue] = try c.decode(AnyYAML.self, forKey: key) }
            self = .map(out)
        } else if var c = try? decoder.unkeyedContainer() {
            var out: [AnyYAML] = []
            while !c.isAtEnd { out.append(try c.decode(AnyYAML.self)) }
            self = .list(out)
        } else {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { self = .null }
            else if let b = try? c.decode(Bool.self) { self = .flag(b) }
            else if let d = try? c.decode(Double.self) { self = .number(d) }
            else { _ = try? c.decode(Int.self); _ = try? c.decode(UInt8.self); self = .scalar(try c.decode(String.self)) }
        }
    }
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { self.stringValue = String(intValue); self.intValue = intValue }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzYAML(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = FuzzInput(data, size).bytes
    guard let node = try? YAMLNode.parse(bytes, fileName: "fuzz.yaml") else { return 0 }
    _ = try? YAMLDecoder().decode(AnyYAML.self, from: node, fileName: "fuzz.yaml")
    return 0
}
