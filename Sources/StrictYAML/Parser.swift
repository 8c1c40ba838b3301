// The parser works line by line on Unicode scalars: block structure is decided by indentation, and
// everything else (keys, scalars, flow collections) lives on one line. Every function that can see
// hostile input throws instead of trapping; array indices are always checked against `count`.

extension YAMLNode {
    /// Parses one document of the subset described in the module documentation.
    /// - Parameter fileName: used only in error messages.
    public static func parse(_ text: String, fileName: String = "<input>") throws(YAMLError) -> YAMLNode {
        try parse(scalars: Array(text.unicodeScalars), fileName: fileName)
    }

    /// Parses UTF-8 bytes; invalid UTF-8 is refused at the line and column of the first bad byte.
    public static func parse(_ bytes: [UInt8], fileName: String = "<input>") throws(YAMLError) -> YAMLNode {
        try parse(scalars: decodeUTF8(bytes, fileName: fileName), fileName: fileName)
    }

    static func parse(scalars: [Unicode.Scalar], fileName: String) throws(YAMLError) -> YAMLNode {
        var parser = try Parser(file: fileName, scalars: scalars)
        return try parser.parseDocument()
    }

    static func decodeUTF8(_ bytes: [UInt8], fileName: String) throws(YAMLError) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(bytes.count)
        var iterator = bytes.makeIterator()
        var utf8 = UTF8()
        var line = 1, column = 1
        while true {
            switch utf8.decode(&iterator) {
            case .scalarValue(let s):
                out.append(s)
                if s == "\n" { line += 1; column = 1 } else { column += 1 }
            case .emptyInput:
                return out
            case .error:
                throw YAMLError(file: fileName, line: line, column: column, path: "",
                                message: "the file is not valid UTF-8")
            }
        }
    }
}

private func isWhite(_ s: Unicode.Scalar) -> Bool { s == " " || s == "\t" }
private func isFlowIndicator(_ s: Unicode.Scalar) -> Bool { s == "," || s == "[" || s == "]" || s == "{" || s == "}" }

private func hex(_ v: UInt32) -> String {
    let digits = String(v, radix: 16, uppercase: true)
    return "U+" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}

struct Parser {
    let file: String
    /// The text, one array per line, without line terminators.
    var lines: [[Unicode.Scalar]]
    /// Where each line's content starts for block parsing: 0, or just after `- ` once a compact
    /// sequence entry (`- key: v`) has been entered, so the entry's content gets its own indentation.
    var starts: [Int]
    /// The next line to parse.
    var index = 0

    init(file: String, scalars: [Unicode.Scalar]) throws(YAMLError) {
        self.file = file
        var lines: [[Unicode.Scalar]] = [[]]
        var i = scalars.first == "\u{FEFF}" ? 1 : 0  // a byte order mark is allowed, and ignored
        while i < scalars.count {
            let s = scalars[i]
            if s == "\n" {
                lines.append([])
            } else if s == "\r" && i + 1 < scalars.count && scalars[i + 1] == "\n" {
                // CR-LF: the LF ends the line.
            } else if (s.value < 0x20 && s != "\t") || s.value == 0x7F || (0x80...0x9F).contains(s.value)
                        || s == "\u{FEFF}" || s == "\r" {
                throw YAMLError(file: file, line: lines.count, column: lines[lines.count - 1].count + 1, path: "",
                                message: "control character \(hex(s.value)) is not allowed")
            } else {
                lines[lines.count - 1].append(s)
            }
            i += 1
        }
        self.lines = lines
        self.starts = Array(repeating: 0, count: lines.count)
    }

    func error(_ message: String, _ line: Int, _ column: Int, _ path: [PathComponent]) -> YAMLError {
        YAMLError(file: file, line: line + 1, column: column + 1, path: renderPath(path), message: message)
    }

    // MARK: Lines

    enum LineKind: Equatable {
        case content(indent: Int)
        case documentStart, documentEnd
    }

    private func isMarker(_ l: [Unicode.Scalar], _ c: Unicode.Scalar) -> Bool {
        l.count >= 3 && l[0] == c && l[1] == c && l[2] == c && (l.count == 3 || isWhite(l[3]))
    }

    /// Skips blank and comment-only lines; returns what the next significant line holds.
    mutating func peek(_ path: [PathComponent]) throws(YAMLError) -> LineKind? {
        while index < lines.count {
            let l = lines[index]
            var c = starts[index]
            while c < l.count, l[c] == " " { c += 1 }
            if c == l.count || l[c] == "#" { index += 1; continue }
            if l[c] == "\t" {
                var d = c
                while d < l.count, isWhite(l[d]) { d += 1 }
                if d == l.count || l[d] == "#" { index += 1; continue }
                throw error("tab character in indentation (indent with spaces only)", index, c, path)
            }
            if starts[index] == 0 && c == 0 {
                if isMarker(l, "-") { return .documentStart }
                if isMarker(l, ".") { return .documentEnd }
                if l[0] == "%" { throw error("directives ('%') are not supported", index, 0, path) }
            }
            return .content(indent: c)
        }
        return nil
    }

    /// The indentation of the next significant line; -1 for a document marker (ends every block).
    mutating func peekIndent(_ path: [PathComponent]) throws(YAMLError) -> Int? {
        switch try peek(path) {
        case .content(let indent): indent
        case .documentStart, .documentEnd: -1
        case nil: nil
        }
    }

    /// After a value that ends at `end`: only spaces and a comment may follow on the line.
    func expectLineEnd(_ l: [Unicode.Scalar], _ end: Int, _ i: Int, _ path: [PathComponent],
                       _ what: String = "unexpected text after the value") throws(YAMLError) {
        var j = end
        while j < l.count, isWhite(l[j]) { j += 1 }
        if j == l.count { return }
        if l[j] == "#" && j > end { return }
        throw error(l[j] == "#" ? "a comment needs a space before '#'" : what, i, j, path)
    }

    // MARK: Document

    mutating func parseDocument() throws(YAMLError) -> YAMLNode {
        if try peek([]) == .documentStart {
            try expectLineEnd(lines[index], 3, index, [], "content on the '---' line is not supported; start it on the next line")
            index += 1
        }
        let root: YAMLNode
        switch try peek([]) {
        case .content(let indent):
            root = try parseBlock(indent: indent, path: [], depth: 1, parentIndent: -1)
        case .documentStart, .documentEnd:
            root = YAMLNode(.scalar("", style: .plain), mark: Mark(line: index + 1, column: 1))
        case nil:
            root = YAMLNode(.scalar("", style: .plain), mark: Mark(line: 1, column: 1))
        }
        switch try peek([]) {
        case nil:
            return root
        case .documentStart:
            throw error("multiple documents are not supported", index, 0, [])
        case .documentEnd:
            try expectLineEnd(lines[index], 3, index, [])
            index += 1
            switch try peek([]) {
            case nil: return root
            case .documentStart: throw error("multiple documents are not supported", index, 0, [])
            case .content, .documentEnd: throw error("content after the document end marker '...'", index, 0, [])
            }
        case .content(let indent):
            throw error("inconsistent indentation: this line does not continue any block above it", index, indent, [])
        }
    }

    // MARK: Block structure

    /// Parses the node whose first line is `index`, starting at column `indent`.
    /// `parentIndent` is the indentation a literal block scalar's lines must exceed.
    mutating func parseBlock(indent n: Int, path: [PathComponent], depth: Int, parentIndent: Int) throws(YAMLError) -> YAMLNode {
        guard depth <= YAMLNode.maximumDepth else {
            throw error("nesting deeper than \(YAMLNode.maximumDepth) levels", index, n, path)
        }
        let l = lines[index]
        if isDash(l, n) { return try parseSequence(indent: n, path: path, depth: depth) }
        if try scanKey(l, n, index, path, depth) != nil { return try parseMapping(indent: n, path: path, depth: depth) }
        return try parseInline(index, n, parentIndent: parentIndent, path: path, depth: depth)
    }

    func isDash(_ l: [Unicode.Scalar], _ c: Int) -> Bool {
        c < l.count && l[c] == "-" && (c + 1 == l.count || isWhite(l[c + 1]))
    }

    mutating func parseSequence(indent n: Int, path: [PathComponent], depth: Int) throws(YAMLError) -> YAMLNode {
        let mark = Mark(line: index + 1, column: n + 1)
        var items: [YAMLNode] = []
        while let indent = try peekIndent(path), indent >= n {
            guard indent == n else {
                throw error("inconsistent indentation: expected \(n) spaces, found \(indent)", index, indent, path)
            }
            // A line at this indentation that is not `- ` ends the list (e.g. the next key of a mapping
            // whose value this list is); the caller decides whether it belongs there.
            guard isDash(lines[index], n) else { break }
            let itemPath = path + [.index(items.count)]
            let l = lines[index]
            var c = n + 1
            while c < l.count, isWhite(l[c]) { c += 1 }
            if c == l.count || l[c] == "#" {
                let line = index
                index += 1
                if let child = try peekIndent(itemPath), child > n {
                    items.append(try parseBlock(indent: child, path: itemPath, depth: depth + 1, parentIndent: n))
                } else {
                    items.append(YAMLNode(.scalar("", style: .plain), mark: Mark(line: line + 1, column: n + 1)))
                }
            } else {
                if l[n + 1] == "\t" { throw error("tab character after '-' (use a space)", index, n + 1, itemPath) }
                starts[index] = n + 1
                items.append(try parseBlock(indent: c, path: itemPath, depth: depth + 1, parentIndent: n))
            }
        }
        return YAMLNode(.sequence(items), mark: mark)
    }

    mutating func parseMapping(indent n: Int, path: [PathComponent], depth: Int) throws(YAMLError) -> YAMLNode {
        let mark = Mark(line: index + 1, column: n + 1)
        var pairs: [YAMLNode.Pair] = []
        var seen: [String: Int] = [:]
        while let indent = try peekIndent(path), indent >= n {
            guard indent == n else {
                throw error("inconsistent indentation: expected \(n) spaces, found \(indent)", index, indent, path)
            }
            let i = index
            let l = lines[i]
            if isDash(l, n) { throw error("expected 'key: value', found a list item", i, n, path) }
            guard let (key, colon) = try scanKey(l, n, i, path, depth) else {
                throw error("expected 'key: value'", i, n, path)
            }
            let keyMark = Mark(line: i + 1, column: n + 1)
            if let first = seen[key] { throw error("duplicate key '\(key)' (first at line \(first))", i, n, path) }
            seen[key] = i + 1
            let valuePath = path + [.key(key)]
            var c = colon + 1
            while c < l.count, isWhite(l[c]) { c += 1 }
            let value: YAMLNode
            if c == l.count || l[c] == "#" {
                index += 1
                let next = try peekIndent(valuePath)
                if let next, next > n {
                    value = try parseBlock(indent: next, path: valuePath, depth: depth + 1, parentIndent: n)
                } else if next == n && isDash(lines[index], n) {
                    value = try parseSequence(indent: n, path: valuePath, depth: depth + 1)
                } else {
                    value = YAMLNode(.scalar("", style: .plain), mark: keyMark)
                }
            } else {
                if isDash(l, c) { throw error("a list cannot start on the same line as its key", i, c, valuePath) }
                value = try parseInline(i, c, parentIndent: n, path: valuePath, depth: depth + 1)
            }
            pairs.append(YAMLNode.Pair(key: key, keyMark: keyMark, value: value))
        }
        return YAMLNode(.mapping(pairs), mark: mark)
    }

    /// If line `l` holds `key:` at column `c`, returns the key and the column of its colon.
    func scanKey(_ l: [Unicode.Scalar], _ c: Int, _ i: Int, _ path: [PathComponent], _ depth: Int)
        throws(YAMLError) -> (String, Int)? {
        var j: Int
        let key: String
        switch l[c] {
        case "\"", "'":
            (key, j) = try quoted(l, c, i, path)
        case "[", "{":
            j = c
            _ = try flowNode(l, &j, i, path, depth)
            while j < l.count, isWhite(l[j]) { j += 1 }
            if j < l.count && l[j] == ":" { throw error("mapping keys must be scalars, not lists or mappings", i, c, path) }
            return nil
        case "?" where c + 1 == l.count || isWhite(l[c + 1]):
            throw error("complex mapping keys ('?') are not supported", i, c, path)
        default:
            j = c
            while j < l.count {
                if l[j] == "#" && j > c && isWhite(l[j - 1]) { return nil }
                if l[j] == ":" && (j + 1 == l.count || isWhite(l[j + 1])) {
                    try checkIndicator(l, c, i, path)
                    var e = j
                    while e > c, isWhite(l[e - 1]) { e -= 1 }
                    if e == c { throw error("empty mapping key", i, c, path) }
                    return (String(String.UnicodeScalarView(l[c..<e])), j)
                }
                j += 1
            }
            return nil
        }
        while j < l.count, isWhite(l[j]) { j += 1 }
        guard j < l.count, l[j] == ":", j + 1 == l.count || isWhite(l[j + 1]) else { return nil }
        return (key, j)
    }

    /// Refuses the YAML indicators this subset does not support at the start of a node.
    func checkIndicator(_ l: [Unicode.Scalar], _ c: Int, _ i: Int, _ path: [PathComponent]) throws(YAMLError) {
        switch l[c] {
        case "&": throw error("anchors ('&') are not supported", i, c, path)
        case "*": throw error("aliases ('*') are not supported", i, c, path)
        case "!": throw error("tags ('!') are not supported", i, c, path)
        case "@", "`": throw error("a plain value cannot start with a reserved character ('@' or '`'); quote it", i, c, path)
        case "%": throw error("a plain value cannot start with '%'; quote it", i, c, path)
        case ",", "]", "}": throw error("unexpected '\(l[c])'", i, c, path)
        case ">": throw error("folded block scalars ('>') are not supported; use '|'", i, c, path)
        case "|": throw error("a block scalar ('|') cannot be used here", i, c, path)
        default: return
        }
    }

    /// A value that starts on line `i` at column `c`: a scalar, a flow collection or a block scalar.
    mutating func parseInline(_ i: Int, _ c: Int, parentIndent: Int, path: [PathComponent], depth: Int) throws(YAMLError) -> YAMLNode {
        guard depth <= YAMLNode.maximumDepth else {
            throw error("nesting deeper than \(YAMLNode.maximumDepth) levels", i, c, path)
        }
        let l = lines[i]
        let mark = Mark(line: i + 1, column: c + 1)
        switch l[c] {
        case "|":
            return try literal(i, c, parentIndent: parentIndent, path: path)
        case "\"", "'", "[", "{":
            var j = c
            let node = try flowNode(l, &j, i, path, depth)
            try expectLineEnd(l, j, i, path)
            index = i + 1
            return node
        default:
            try checkIndicator(l, c, i, path)
            var end = l.count
            var j = c
            while j < l.count {
                if l[j] == "#" && j > c && isWhite(l[j - 1]) { end = j; break }
                if l[j] == ":" && (j + 1 == l.count || isWhite(l[j + 1])) {
                    throw error("unexpected ': ' inside a value; quote the value", i, j, path)
                }
                j += 1
            }
            while end > c, isWhite(l[end - 1]) { end -= 1 }
            index = i + 1
            return YAMLNode(.scalar(String(String.UnicodeScalarView(l[c..<end])), style: .plain), mark: mark)
        }
    }

    /// A literal block scalar (`|`, `|-`, `|+`) whose indicator is at line `i`, column `c` [YAML §8.1.2].
    mutating func literal(_ i: Int, _ c: Int, parentIndent: Int, path: [PathComponent]) throws(YAMLError) -> YAMLNode {
        let l = lines[i]
        enum Chomping { case clip, strip, keep }
        var chomping = Chomping.clip
        var j = c + 1
        if j < l.count && l[j] == "-" { chomping = .strip; j += 1 } else if j < l.count && l[j] == "+" { chomping = .keep; j += 1 }
        if j < l.count && ("1"..."9").contains(l[j]) {
            throw error("block scalar indentation indicators are not supported", i, j, path)
        }
        try expectLineEnd(l, j, i, path, "a block scalar's text must start on the next line")
        var k = i + 1
        var blockIndent: Int?
        var body: [String] = []
        while k < lines.count {
            let line = lines[k]
            var spaces = 0
            while spaces < line.count, line[spaces] == " " { spaces += 1 }
            if spaces == line.count {  // a blank line belongs to the scalar while more text follows
                body.append(blockIndent.map { spaces > $0 ? String(String.UnicodeScalarView(line[$0...])) : "" } ?? "")
                k += 1
                continue
            }
            if spaces == 0 && (isMarker(line, "-") || isMarker(line, ".")) { break }
            if blockIndent == nil {
                if spaces <= parentIndent { break }
                if line[spaces] == "\t" { throw error("tab character in indentation (indent with spaces only)", k, spaces, path) }
                blockIndent = spaces
            }
            guard let indent = blockIndent, spaces >= indent else { break }
            body.append(String(String.UnicodeScalarView(line[indent...])))
            k += 1
        }
        var trailing = 0
        while let last = body.last, last.isEmpty { body.removeLast(); trailing += 1 }
        let text = body.joined(separator: "\n")
        let value: String
        switch chomping {
        case .strip: value = text
        case .clip: value = text.isEmpty ? "" : text + "\n"
        case .keep: value = text.isEmpty ? String(repeating: "\n", count: trailing) : text + String(repeating: "\n", count: trailing + 1)
        }
        index = k
        return YAMLNode(.scalar(value, style: .literal), mark: Mark(line: i + 1, column: c + 1))
    }

    // MARK: Flow style and quoted scalars (one line)

    /// Parses a flow node starting at or after `j` on line `l`; leaves `j` just after it.
    func flowNode(_ l: [Unicode.Scalar], _ j: inout Int, _ i: Int, _ path: [PathComponent], _ depth: Int) throws(YAMLError) -> YAMLNode {
        guard depth <= YAMLNode.maximumDepth else {
            throw error("nesting deeper than \(YAMLNode.maximumDepth) levels", i, j, path)
        }
        while j < l.count, isWhite(l[j]) { j += 1 }
        guard j < l.count else { throw error("expected a value", i, j, path) }
        let start = j
        let mark = Mark(line: i + 1, column: j + 1)
        switch l[j] {
        case "\"", "'":
            let (text, end) = try quoted(l, j, i, path)
            j = end
            return YAMLNode(.scalar(text, style: l[start] == "'" ? .singleQuoted : .doubleQuoted), mark: mark)
        case "[":
            j += 1
            var items: [YAMLNode] = []
            while true {
                while j < l.count, isWhite(l[j]) { j += 1 }
                guard j < l.count, l[j] != "#" else {
                    throw error("unterminated flow sequence: missing ']' (flow collections must end on the same line)", i, start, path)
                }
                if l[j] == "]" { j += 1; break }
                items.append(try flowNode(l, &j, i, path + [.index(items.count)], depth + 1))
                while j < l.count, isWhite(l[j]) { j += 1 }
                guard j < l.count, l[j] != "#" else {
                    throw error("unterminated flow sequence: missing ']' (flow collections must end on the same line)", i, start, path)
                }
                if l[j] == "," { j += 1; continue }
                if l[j] == "]" { j += 1; break }
                if l[j] == ":" { throw error("'key: value' inside a flow sequence is not supported; use {key: value}", i, j, path) }
                throw error("expected ',' or ']'", i, j, path)
            }
            return YAMLNode(.sequence(items), mark: mark)
        case "{":
            j += 1
            var pairs: [YAMLNode.Pair] = []
            var seen: Set<String> = []
            while true {
                while j < l.count, isWhite(l[j]) { j += 1 }
                guard j < l.count, l[j] != "#" else {
                    throw error("unterminated flow mapping: missing '}' (flow collections must end on the same line)", i, start, path)
                }
                if l[j] == "}" { j += 1; break }
                if l[j] == "[" || l[j] == "{" { throw error("mapping keys must be scalars, not lists or mappings", i, j, path) }
                let keyMark = Mark(line: i + 1, column: j + 1)
                let keyNode = try flowNode(l, &j, i, path, depth + 1)
                guard case .scalar(let key, _) = keyNode.kind else { throw error("mapping keys must be scalars", i, keyMark.column - 1, path) }
                if seen.contains(key) { throw error("duplicate key '\(key)'", i, keyMark.column - 1, path) }
                seen.insert(key)
                while j < l.count, isWhite(l[j]) { j += 1 }
                guard j < l.count, l[j] == ":" else { throw error("expected ':' after a key in a flow mapping", i, j, path) }
                j += 1
                while j < l.count, isWhite(l[j]) { j += 1 }
                let value: YAMLNode
                if j < l.count && (l[j] == "," || l[j] == "}") {
                    value = YAMLNode(.scalar("", style: .plain), mark: keyMark)
                } else {
                    value = try flowNode(l, &j, i, path + [.key(key)], depth + 1)
                }
                pairs.append(YAMLNode.Pair(key: key, keyMark: keyMark, value: value))
                while j < l.count, isWhite(l[j]) { j += 1 }
                guard j < l.count, l[j] != "#" else {
                    throw error("unterminated flow mapping: missing '}' (flow collections must end on the same line)", i, start, path)
                }
                if l[j] == "," { j += 1; continue }
                if l[j] == "}" { j += 1; break }
                throw error("expected ',' or '}'", i, j, path)
            }
            return YAMLNode(.mapping(pairs), mark: mark)
        default:
            if l[j] == "#" { throw error("expected a value", i, j, path) }
            try checkIndicator(l, j, i, path)
            if l[j] == "-" && (j + 1 == l.count || isWhite(l[j + 1])) { throw error("block list items are not allowed inside '[...]' or '{...}'", i, j, path) }
            while j < l.count {
                let s = l[j]
                if isFlowIndicator(s) { break }
                if s == ":" && (j + 1 == l.count || isWhite(l[j + 1]) || isFlowIndicator(l[j + 1])) { break }
                if s == "#" && j > start && isWhite(l[j - 1]) { break }
                j += 1
            }
            var end = j
            while end > start, isWhite(l[end - 1]) { end -= 1 }
            if end == start { throw error("expected a value", i, start, path) }
            return YAMLNode(.scalar(String(String.UnicodeScalarView(l[start..<end])), style: .plain), mark: mark)
        }
    }

    /// A single- or double-quoted scalar opening at column `c`; returns its text and the column after it.
    func quoted(_ l: [Unicode.Scalar], _ c: Int, _ i: Int, _ path: [PathComponent]) throws(YAMLError) -> (String, Int) {
        var out = String.UnicodeScalarView()
        var j = c + 1
        if l[c] == "'" {
            while j < l.count {
                if l[j] == "'" {
                    if j + 1 < l.count && l[j + 1] == "'" { out.append("'"); j += 2; continue }
                    return (String(out), j + 1)
                }
                out.append(l[j])
                j += 1
            }
        } else {
            while j < l.count {
                let s = l[j]
                if s == "\"" { return (String(out), j + 1) }
                guard s == "\\" else { out.append(s); j += 1; continue }
                guard j + 1 < l.count else { break }
                let escape = l[j + 1]
                var digits = 0
                switch escape {
                case "\"", "\\", "/": out.append(escape)
                case "0": out.append("\0")
                case "a": out.append("\u{07}")
                case "b": out.append("\u{08}")
                case "t", "\t": out.append("\t")
                case "n": out.append("\n")
                case "v": out.append("\u{0B}")
                case "f": out.append("\u{0C}")
                case "r": out.append("\r")
                case "e": out.append("\u{1B}")
                case " ": out.append(" ")
                case "x": digits = 2
                case "u": digits = 4
                case "U": digits = 8
                default: throw error("invalid escape sequence in a double-quoted string", i, j, path)
                }
                j += 2
                if digits > 0 {
                    var value: UInt32 = 0
                    for _ in 0..<digits {
                        guard j < l.count, let d = Int(String(l[j]), radix: 16) else {
                            throw error("escape '\\\(escape)' needs \(digits) hexadecimal digits", i, j, path)
                        }
                        value = value << 4 | UInt32(d)
                        j += 1
                    }
                    guard let scalar = Unicode.Scalar(value) else {
                        throw error("escape is not a valid Unicode scalar value", i, j - digits - 2, path)
                    }
                    out.append(scalar)
                }
            }
        }
        throw error("unterminated quoted string (quoted strings must end on the same line)", i, c, path)
    }
}
