/// Scalar typing by the YAML 1.2 core schema (YAML 1.2.2 §10.3.2), for plain scalars only:
/// a quoted or literal scalar is always a string.
enum Scalars {
    static func isNull(_ t: String) -> Bool { t.isEmpty || t == "~" || t == "null" || t == "Null" || t == "NULL" }

    static func bool(_ t: String) -> Bool? {
        switch t {
        case "true", "True", "TRUE": true
        case "false", "False", "FALSE": false
        default: nil
        }
    }

    enum Integer: Equatable {
        case value(negative: Bool, magnitude: UInt64)
        /// Integer syntax, but more than 64 bits of magnitude.
        case tooLarge
    }

    /// `[-+]?[0-9]+`, `0o[0-7]+` or `0x[0-9a-fA-F]+`; nil when the text is not an integer.
    static func integer(_ t: String) -> Integer? {
        var digits = Substring(t)
        var negative = false
        var radix: UInt64 = 10
        if digits.hasPrefix("0x") { radix = 16; digits = digits.dropFirst(2) }
        else if digits.hasPrefix("0o") { radix = 8; digits = digits.dropFirst(2) }
        else if let sign = digits.first, sign == "-" || sign == "+" { negative = sign == "-"; digits = digits.dropFirst() }
        guard !digits.isEmpty else { return nil }
        var magnitude: UInt64 = 0
        var overflow = false
        for ch in digits.unicodeScalars {
            guard let d = Int(String(ch), radix: Int(radix)) else { return nil }
            let (m, o1) = magnitude.multipliedReportingOverflow(by: radix)
            let (s, o2) = m.addingReportingOverflow(UInt64(d))
            overflow = overflow || o1 || o2
            magnitude = s
        }
        return overflow ? .tooLarge : .value(negative: negative, magnitude: magnitude)
    }

    /// Converts a parsed integer to `T`, or nil when it is out of `T`'s range.
    static func convert<T: FixedWidthInteger>(_ integer: Integer, to: T.Type) -> T? {
        guard case .value(let negative, let magnitude) = integer else { return nil }
        if !negative || magnitude == 0 { return T(exactly: magnitude) }
        guard T.isSigned, magnitude <= UInt64(Int64.max) + 1 else { return nil }
        let value = magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        return T(exactly: value)
    }

    /// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` — finite numbers only.
    static func isFiniteNumber(_ t: String) -> Bool {
        var s = Array(t.utf8)[...]
        if let f = s.first, f == UInt8(ascii: "-") || f == UInt8(ascii: "+") { s = s.dropFirst() }
        func digits(_ s: inout ArraySlice<UInt8>) -> Int {
            var n = 0
            while let f = s.first, f >= UInt8(ascii: "0") && f <= UInt8(ascii: "9") { s = s.dropFirst(); n += 1 }
            return n
        }
        var mantissa = digits(&s)
        if s.first == UInt8(ascii: ".") { s = s.dropFirst(); mantissa += digits(&s) }
        guard mantissa > 0 else { return false }
        if let e = s.first, e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            s = s.dropFirst()
            if let f = s.first, f == UInt8(ascii: "-") || f == UInt8(ascii: "+") { s = s.dropFirst() }
            guard digits(&s) > 0 else { return false }
        }
        return s.isEmpty
    }

    static func isInfinityOrNaN(_ t: String) -> Bool {
        let body = t.hasPrefix("-") || t.hasPrefix("+") ? String(t.dropFirst()) : t
        return [".inf", ".Inf", ".INF"].contains(body) || [".nan", ".NaN", ".NAN"].contains(t)
    }

    /// What a node is, for messages that must not repeat the value: "found a string".
    static func kind(of node: YAMLNode) -> String {
        switch node.kind {
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        case .scalar(_, .singleQuoted), .scalar(_, .doubleQuoted): return "a quoted string"
        case .scalar(_, .literal): return "a block string"
        case .scalar(let t, .plain):
            if t.isEmpty { return "an empty value" }
            if isNull(t) { return "null" }
            if bool(t) != nil { return "a boolean" }
            if integer(t) != nil { return "an integer" }
            if isFiniteNumber(t) { return "a number" }
            if isInfinityOrNaN(t) { return "an infinite or NaN number" }
            return "a string"
        }
    }

    /// What a Swift type expects, for "expected …" messages.
    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Bool.Type: "a boolean"
        case is String.Type: "a string"
        case is any FixedWidthInteger.Type: "an integer"
        case is any BinaryFloatingPoint.Type: "a number"
        default: "a value of type \(type)"
        }
    }

    // MARK: Key spelling

    /// `capture_directory` → `captureDirectory`, as Foundation's `JSONDecoder` does (ASCII only).
    static func fromSnakeCase(_ key: String) -> String {
        let chars = Array(key)
        guard let first = chars.firstIndex(where: { $0 != "_" }), let last = chars.lastIndex(where: { $0 != "_" }) else { return key }
        let components = chars[first...last].split(separator: "_")
        guard components.count > 1 else { return key }
        var out = String(chars[..<first])
        for (i, c) in components.enumerated() {
            let word = String(c).lowercased()
            out += i == 0 ? word : word.prefix(1).uppercased() + word.dropFirst()
        }
        return out + String(chars[(last + 1)...])
    }

    /// `captureDirectory` → `capture_directory`, `mqttURL` → `mqtt_url`.
    static func toSnakeCase(_ key: String) -> String {
        let chars = Array(key)
        var out = ""
        for (i, c) in chars.enumerated() {
            if c.isUppercase && i > 0 {
                let previous = chars[i - 1]
                let nextIsLower = i + 1 < chars.count && chars[i + 1].isLowercase
                if previous.isLowercase || previous.isNumber || (previous.isUppercase && nextIsLower) { out += "_" }
            }
            out += c.lowercased()
        }
        return out
    }

    /// The edit distance from `a` to `b` when `a` looks like a typo of `b` (one edit for names of up
    /// to three letters, two otherwise); nil when it does not.
    static func misspellingDistance(_ a: String, of b: String) -> Int? {
        let limit = b.unicodeScalars.count <= 3 ? 1 : 2
        // The length check first keeps a hostile, very long key from costing a full distance computation.
        guard abs(a.unicodeScalars.count - b.unicodeScalars.count) <= limit else { return nil }
        let d = editDistance(a, b)
        return d <= limit ? d : nil
    }

    /// Optimal string alignment distance (a transposition counts as one edit), for "did you mean".
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.unicodeScalars), b = Array(b.unicodeScalars)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var previous2 = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [Int](repeating: 0, count: b.count + 1)
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    current[j] = min(current[j], previous2[j - 2] + 1)
                }
            }
            previous2 = previous
            previous = current
        }
        return previous[b.count]
    }
}
