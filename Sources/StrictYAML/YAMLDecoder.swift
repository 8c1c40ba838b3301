/// Decodes `Decodable` values from the strict YAML subset (see the module documentation).
///
/// Scalars are typed by the YAML 1.2 core schema (§10.3.2), and only when written plain:
/// - `Bool`: `true`, `True`, `TRUE`, `false`, `False`, `FALSE` — nothing else (`yes`, `on` are strings).
/// - Integers: `[-+]?[0-9]+`, `0x…`, `0o…`, range-checked for the exact type (`300` is not a `UInt8`).
/// - `Double`/`Float`: integers and `1.5`, `.5`, `1e-3`; `.inf` and `.nan` are refused.
/// - `nil` (`decodeNil`, optionals): `null`, `Null`, `NULL`, `~` and an empty value.
/// - `String`: any scalar except an empty plain one. A quoted scalar is always a string, never a number,
///   boolean or null: `"123"` is not an `Int`, `"null"` is not `nil`.
///
/// Every key of every mapping must be asked for by the type it decodes into: an unknown key (a typo in
/// a config) is an error with a suggestion, `unknown field 'capacty' (did you mean 'capacity'?)`.
/// A `[String: V]` dictionary, or any type that reads `allKeys`, takes any key.
///
/// To validate inside `init(from:)`, throw ``YAMLValidationError``; to validate later, keep
/// `decoder.yamlContext` and throw ``YAMLError/context(_:_:)``.
public struct YAMLDecoder: Sendable {
    public enum KeyDecodingStrategy: Sendable {
        /// Keys are matched exactly.
        case useDefaultKeys
        /// `capture_directory` in the document matches the Swift property `captureDirectory`.
        case convertFromSnakeCase
    }

    public var keyDecodingStrategy: KeyDecodingStrategy
    /// Handed to `init(from:)` as `decoder.userInfo`.
    public var userInfo: [CodingUserInfoKey: any Sendable]

    public init(keyDecodingStrategy: KeyDecodingStrategy = .useDefaultKeys, userInfo: [CodingUserInfoKey: any Sendable] = [:]) {
        self.keyDecodingStrategy = keyDecodingStrategy
        self.userInfo = userInfo
    }

    /// Parses `text` and decodes a `T` from its root node.
    /// - Parameter fileName: used in error messages, e.g. `vigild.yaml`.
    public func decode<T: Decodable>(_ type: T.Type, from text: String, fileName: String) throws(YAMLError) -> T {
        try decode(type, from: YAMLNode.parse(text, fileName: fileName), fileName: fileName)
    }

    /// Parses UTF-8 bytes (refusing invalid UTF-8) and decodes a `T` from the root node.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], fileName: String) throws(YAMLError) -> T {
        try decode(type, from: YAMLNode.parse(bytes, fileName: fileName), fileName: fileName)
    }

    /// Decodes a `T` from an already parsed node.
    public func decode<T: Decodable>(_ type: T.Type, from node: YAMLNode, fileName: String) throws(YAMLError) -> T {
        let state = DecodingState(file: fileName, snakeCase: keyDecodingStrategy == .convertFromSnakeCase, userInfo: userInfo)
        let value: T
        do {
            value = try state.decode(T.self, node: node, path: [], codingPath: [])
        } catch let error as YAMLError {
            throw error
        } catch {
            // `state.decode` converts every error it sees; this is only a safety net.
            throw YAMLError(file: fileName, line: node.mark.line, column: node.mark.column, path: "", message: "\(error)")
        }
        if let unknown = state.unknownKeyError() { throw unknown }
        return value
    }
}

/// `[String: V]` dictionaries take any key, spelled exactly as written (no snake-case conversion).
protocol StringKeyedDictionary {}
extension Dictionary: StringKeyedDictionary where Key == String {}

/// Which keys of one mapping node were asked for, to find unknown keys after decoding.
final class KeyTracker {
    let pairs: [YAMLNode.Pair]
    let path: [PathComponent]
    var asked: Set<Int> = []
    /// Keys asked for, in the document's spelling, in order: the candidates for "did you mean".
    private(set) var requested: [String] = []
    private var requestedSet: Set<String> = []
    var acceptsAnyKey = false
    init(pairs: [YAMLNode.Pair], path: [PathComponent]) {
        self.pairs = pairs
        self.path = path
    }
    func request(_ documentName: String) {
        if !acceptsAnyKey && requestedSet.insert(documentName).inserted { requested.append(documentName) }
    }
}

/// State shared by every decoder of one `decode` call. Lives and dies on the caller's thread.
final class DecodingState {
    let file: String
    let snakeCase: Bool
    let userInfo: [CodingUserInfoKey: any Sendable]
    /// Keyed by the mapping node's mark, which is unique per node, so that two containers over
    /// the same mapping share one record.
    var trackers: [Mark: KeyTracker] = [:]

    init(file: String, snakeCase: Bool, userInfo: [CodingUserInfoKey: any Sendable]) {
        self.file = file
        self.snakeCase = snakeCase
        self.userInfo = userInfo
    }

    func error(_ message: String, _ mark: Mark, _ path: [PathComponent]) -> YAMLError {
        YAMLError(file: file, line: mark.line, column: mark.column, path: renderPath(path), message: message)
    }

    /// The spelling of a Swift key in the document, for messages.
    func documentName(_ swiftKey: String) -> String { snakeCase ? Scalars.toSnakeCase(swiftKey) : swiftKey }

    /// Decodes a `T` from `node`; every error thrown by `T.init(from:)` leaves as a `YAMLError` located
    /// at (or below) `node`.
    func decode<T: Decodable>(_ type: T.Type, node: YAMLNode, path: [PathComponent], codingPath: [any CodingKey]) throws -> T {
        // Parsed trees are already bounded; this bounds trees built in code, and `init(from:)`
        // implementations that recurse without descending.
        guard codingPath.count <= YAMLNode.maximumDepth else {
            throw error("nesting deeper than \(YAMLNode.maximumDepth) levels", node.mark, path)
        }
        let decoder = NodeDecoder(node: node, path: path, codingPath: codingPath, state: self,
                                  rawKeys: T.self is any StringKeyedDictionary.Type)
        do {
            return try T(from: decoder)
        } catch let error as YAMLError {
            throw error
        } catch {
            throw convert(error, at: decoder)
        }
    }

    func convert(_ error: any Error, at decoder: NodeDecoder) -> YAMLError {
        switch error {
        case let v as YAMLValidationError:
            if let field = v.field, case .mapping(let pairs) = decoder.node.kind,
               let p = pairs.first(where: { $0.key == field || $0.key == documentName(field) }) {
                return self.error(v.message, p.value.mark, decoder.path + [.key(p.key)])
            }
            return self.error(v.message, decoder.node.mark, decoder.path)
        case let d as DecodingError:
            switch d {
            case .typeMismatch(let type, let context):
                let (node, path) = resolve(decoder, context.codingPath)
                return self.error("expected \(Scalars.describe(type)), found \(Scalars.kind(of: node))", node.mark, path)
            case .valueNotFound(let type, let context):
                let (node, path) = resolve(decoder, context.codingPath)
                let found = node.isNull ? Scalars.kind(of: node) : "no value"
                return self.error("expected \(Scalars.describe(type)), found \(found)", node.mark, path)
            case .keyNotFound(let key, let context):
                let (node, path) = resolve(decoder, context.codingPath)
                return self.error("missing required field '\(documentName(key.stringValue))'", node.mark, path)
            case .dataCorrupted(let context):
                let (node, path) = resolve(decoder, context.codingPath)
                return self.error(Self.withoutValue(context.debugDescription), node.mark, path)
            @unknown default:
                return self.error("invalid value", decoder.node.mark, decoder.path)
            }
        default:
            return self.error("\(error)", decoder.node.mark, decoder.path)
        }
    }

    /// The standard library's `RawRepresentable` message repeats the value
    /// ("Cannot initialize Transport from invalid String value ble"); keep only the type.
    static func withoutValue(_ message: String) -> String {
        let prefix = "Cannot initialize "
        guard message.hasPrefix(prefix) else { return message }
        let rest = message.dropFirst(prefix.count)
        var i = rest.startIndex
        while i < rest.endIndex {
            if rest[i...].hasPrefix(" from invalid ") { return "not a valid \(rest[..<i]) value" }
            i = rest.index(after: i)
        }
        return message
    }

    /// Follows the part of a `DecodingError`'s coding path below `decoder` to the node it names.
    func resolve(_ decoder: NodeDecoder, _ codingPath: [any CodingKey]) -> (YAMLNode, [PathComponent]) {
        var node = decoder.node
        var path = decoder.path
        guard codingPath.count > decoder.codingPath.count else { return (node, path) }
        for key in codingPath[decoder.codingPath.count...] {
            switch node.kind {
            case .mapping(let pairs):
                guard let p = pairs.first(where: { $0.key == key.stringValue || $0.key == documentName(key.stringValue) }) else {
                    return (node, path)
                }
                node = p.value
                path.append(.key(p.key))
            case .sequence(let items):
                guard let i = key.intValue, items.indices.contains(i) else { return (node, path) }
                node = items[i]
                path.append(.index(i))
            case .scalar:
                return (node, path)
            }
        }
        return (node, path)
    }

    func tracker(for node: YAMLNode, pairs: [YAMLNode.Pair], path: [PathComponent]) -> KeyTracker {
        if let t = trackers[node.mark] { return t }
        let t = KeyTracker(pairs: pairs, path: path)
        trackers[node.mark] = t
        return t
    }

    /// The first key in the document that no decoder asked for, as an error with a suggestion.
    func unknownKeyError() -> YAMLError? {
        var first: (pair: YAMLNode.Pair, tracker: KeyTracker)?
        for tracker in trackers.values where !tracker.acceptsAnyKey {
            for (i, pair) in tracker.pairs.enumerated() where !tracker.asked.contains(i) {
                if let current = first, current.pair.keyMark < pair.keyMark { break }
                first = (pair, tracker)
                break
            }
        }
        guard let (pair, tracker) = first else { return nil }
        let present = Set(tracker.pairs.map(\.key))
        let candidates = tracker.requested.filter { !present.contains($0) }
        var message = "unknown field '\(pair.key)'"
        let scored = candidates.compactMap { c in Scalars.misspellingDistance(pair.key, of: c).map { (c, $0) } }
        if let best = scored.min(by: { $0.1 < $1.1 }) {
            message += " (did you mean '\(best.0)'?)"
        } else if candidates.isEmpty {
            message += tracker.requested.isEmpty ? "; this mapping takes no fields" : ""
        } else {
            message += "; expected one of: " + candidates.prefix(12).joined(separator: ", ")
        }
        return error(message, pair.keyMark, tracker.path)
    }
}

/// The `Decoder` for one node.
final class NodeDecoder: Decoder {
    let node: YAMLNode
    let path: [PathComponent]
    let codingPath: [any CodingKey]
    let state: DecodingState
    /// Keys of a mapping decoded by this decoder are matched as written (a `[String: V]`).
    let rawKeys: Bool
    var userInfo: [CodingUserInfoKey: Any] { state.userInfo }

    init(node: YAMLNode, path: [PathComponent], codingPath: [any CodingKey], state: DecodingState, rawKeys: Bool = false) {
        self.node = node
        self.path = path
        self.codingPath = codingPath
        self.state = state
        self.rawKeys = rawKeys
    }

    func mismatch(_ expected: String) -> YAMLError {
        state.error("expected \(expected), found \(Scalars.kind(of: node))", node.mark, path)
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .mapping(let pairs) = node.kind else { throw mismatch("a mapping") }
        return KeyedDecodingContainer(try KeyedContainer<Key>(decoder: self, pairs: pairs))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .sequence(let items) = node.kind else { throw mismatch("a list") }
        return UnkeyedContainer(decoder: self, items: items)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleValueContainer(decoder: self) }

    // MARK: Scalars

    func scalar(_ expected: String) throws(YAMLError) -> String {
        guard case .scalar(let text, .plain) = node.kind else { throw mismatch(expected) }
        return text
    }

    func decodeBool() throws(YAMLError) -> Bool {
        guard let b = Scalars.bool(try scalar("a boolean (true or false)")) else { throw mismatch("a boolean (true or false)") }
        return b
    }

    func decodeString() throws(YAMLError) -> String {
        guard case .scalar(let text, let style) = node.kind, !(style == .plain && text.isEmpty) else { throw mismatch("a string") }
        return text
    }

    func decodeInteger<T: FixedWidthInteger>(_ type: T.Type) throws(YAMLError) -> T {
        guard let parsed = Scalars.integer(try scalar("an integer")) else { throw mismatch("an integer") }
        guard let value = Scalars.convert(parsed, to: T.self) else {
            throw state.error("integer out of range for \(T.self) (\(T.min)...\(T.max))", node.mark, path)
        }
        return value
    }

    func decodeFloat<T: BinaryFloatingPoint & LosslessStringConvertible>(_ type: T.Type) throws(YAMLError) -> T {
        let text = try scalar("a number")
        if Scalars.isInfinityOrNaN(text) { throw state.error("infinite and NaN values are not allowed", node.mark, path) }
        if case .value(let negative, let magnitude)? = Scalars.integer(text) {
            return negative ? -T(magnitude) : T(magnitude)
        }
        guard Scalars.isFiniteNumber(text), let value = T(text) else { throw mismatch("a number") }
        guard value.isFinite else { throw state.error("number out of range for \(T.self)", node.mark, path) }
        return value
    }
}

/// A coding key for list positions.
struct IndexKey: CodingKey {
    let intValue: Int?
    var stringValue: String { "\(intValue ?? 0)" }
    init(_ i: Int) { intValue = i }
    init?(intValue: Int) { self.intValue = intValue }
    init?(stringValue: String) { return nil }
}

struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: NodeDecoder
    let pairs: [YAMLNode.Pair]
    let tracker: KeyTracker
    /// Swift key spelling → pair index (only when keys are converted from snake case).
    let converted: [String: Int]
    let exact: [String: Int]

    init(decoder: NodeDecoder, pairs: [YAMLNode.Pair]) throws(YAMLError) {
        self.decoder = decoder
        self.pairs = pairs
        self.tracker = decoder.state.tracker(for: decoder.node, pairs: pairs, path: decoder.path)
        var exact: [String: Int] = [:]
        var converted: [String: Int] = [:]
        for (i, p) in pairs.enumerated() {
            exact[p.key] = i
            guard decoder.state.snakeCase && !decoder.rawKeys else { continue }
            let swiftName = Scalars.fromSnakeCase(p.key)
            if let other = converted[swiftName] {
                throw decoder.state.error("field '\(p.key)' is the same field as '\(pairs[other].key)'", p.keyMark, decoder.path)
            }
            converted[swiftName] = i
        }
        self.exact = exact
        self.converted = converted
        if decoder.rawKeys { tracker.acceptsAnyKey = true }
    }

    var codingPath: [any CodingKey] { decoder.codingPath }

    var allKeys: [Key] {
        tracker.acceptsAnyKey = true
        let snake = decoder.state.snakeCase && !decoder.rawKeys
        return pairs.compactMap { Key(stringValue: snake ? Scalars.fromSnakeCase($0.key) : $0.key) }
    }

    /// Finds the pair for `key` and records that it was asked for.
    func find(_ key: Key) -> Int? {
        let name = key.stringValue
        let index: Int?
        if decoder.rawKeys || !decoder.state.snakeCase {
            index = exact[name]
        } else {
            index = exact[Scalars.toSnakeCase(name)] ?? converted[name]
        }
        if let index {
            tracker.asked.insert(index)
            tracker.request(pairs[index].key)
        } else {
            tracker.request(decoder.rawKeys ? name : decoder.state.documentName(name))
        }
        return index
    }

    func pair(_ key: Key) throws(YAMLError) -> YAMLNode.Pair {
        guard let i = find(key) else {
            let name = decoder.rawKeys ? key.stringValue : decoder.state.documentName(key.stringValue)
            // A misspelt key makes a required field missing before unknown keys are checked, so point at
            // the likeliest misspelling among the keys not asked for yet.
            let suspects = pairs.indices.filter { !tracker.asked.contains($0) }
                .compactMap { i in Scalars.misspellingDistance(pairs[i].key, of: name).map { (index: i, distance: $0) } }
            if let suspect = suspects.min(by: { $0.distance < $1.distance }) {
                let p = pairs[suspect.index]
                throw decoder.state.error("missing required field '\(name)' (is '\(p.key)' a misspelling of it?)", p.keyMark, decoder.path)
            }
            throw decoder.state.error("missing required field '\(name)'", decoder.node.mark, decoder.path)
        }
        return pairs[i]
    }

    func child(_ key: Key) throws(YAMLError) -> NodeDecoder {
        let p = try pair(key)
        return NodeDecoder(node: p.value, path: decoder.path + [.key(p.key)], codingPath: codingPath + [key], state: decoder.state)
    }

    func contains(_ key: Key) -> Bool { find(key) != nil }
    func decodeNil(forKey key: Key) throws -> Bool { try pair(key).value.isNull }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        let p = try pair(key)
        return try decoder.state.decode(T.self, node: p.value, path: decoder.path + [.key(p.key)], codingPath: codingPath + [key])
    }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try child(key).decodeBool() }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try child(key).decodeString() }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try child(key).decodeFloat(type) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try child(key).decodeFloat(type) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try child(key).decodeInteger(type) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try child(key).decodeInteger(type) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try child(key).decodeInteger(type) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try child(key).decodeInteger(type) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try child(key).decodeInteger(type) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try child(key).decodeInteger(type) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try child(key).decodeInteger(type) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try child(key).decodeInteger(type) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try child(key).decodeInteger(type) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try child(key).decodeInteger(type) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try child(key).container(keyedBy: type)
    }
    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer { try child(key).unkeyedContainer() }
    func superDecoder() throws -> any Decoder {
        guard let key = Key(stringValue: "super") else { throw decoder.mismatch("a mapping") }
        return try child(key)
    }
    func superDecoder(forKey key: Key) throws -> any Decoder { try child(key) }
}

struct UnkeyedContainer: UnkeyedDecodingContainer {
    let decoder: NodeDecoder
    let items: [YAMLNode]
    var currentIndex = 0

    init(decoder: NodeDecoder, items: [YAMLNode]) {
        self.decoder = decoder
        self.items = items
    }

    var codingPath: [any CodingKey] { decoder.codingPath }
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    /// The decoder for the next item; advances past it.
    mutating func next() throws(YAMLError) -> NodeDecoder {
        guard currentIndex < items.count else {
            throw decoder.state.error("expected more list items (found \(items.count))", decoder.node.mark, decoder.path)
        }
        defer { currentIndex += 1 }
        return NodeDecoder(node: items[currentIndex], path: decoder.path + [.index(currentIndex)],
                           codingPath: codingPath + [IndexKey(currentIndex)], state: decoder.state)
    }

    mutating func decodeNil() throws -> Bool {
        guard currentIndex < items.count, items[currentIndex].isNull else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let d = try next()
        return try d.state.decode(T.self, node: d.node, path: d.path, codingPath: d.codingPath)
    }
    mutating func decode(_ type: Bool.Type) throws -> Bool { try next().decodeBool() }
    mutating func decode(_ type: String.Type) throws -> String { try next().decodeString() }
    mutating func decode(_ type: Double.Type) throws -> Double { try next().decodeFloat(type) }
    mutating func decode(_ type: Float.Type) throws -> Float { try next().decodeFloat(type) }
    mutating func decode(_ type: Int.Type) throws -> Int { try next().decodeInteger(type) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try next().decodeInteger(type) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try next().decodeInteger(type) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try next().decodeInteger(type) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try next().decodeInteger(type) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try next().decodeInteger(type) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try next().decodeInteger(type) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try next().decodeInteger(type) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try next().decodeInteger(type) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try next().decodeInteger(type) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next().container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try next().unkeyedContainer() }
    mutating func superDecoder() throws -> any Decoder { try next() }
}

struct SingleValueContainer: SingleValueDecodingContainer {
    let decoder: NodeDecoder
    var codingPath: [any CodingKey] { decoder.codingPath }

    func decodeNil() -> Bool { decoder.node.isNull }
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try decoder.state.decode(T.self, node: decoder.node, path: decoder.path, codingPath: decoder.codingPath)
    }
    func decode(_ type: Bool.Type) throws -> Bool { try decoder.decodeBool() }
    func decode(_ type: String.Type) throws -> String { try decoder.decodeString() }
    func decode(_ type: Double.Type) throws -> Double { try decoder.decodeFloat(type) }
    func decode(_ type: Float.Type) throws -> Float { try decoder.decodeFloat(type) }
    func decode(_ type: Int.Type) throws -> Int { try decoder.decodeInteger(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try decoder.decodeInteger(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try decoder.decodeInteger(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try decoder.decodeInteger(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try decoder.decodeInteger(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try decoder.decodeInteger(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try decoder.decodeInteger(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try decoder.decodeInteger(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try decoder.decodeInteger(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try decoder.decodeInteger(type) }
}
