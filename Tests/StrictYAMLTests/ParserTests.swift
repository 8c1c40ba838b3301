import Testing
@testable import StrictYAML

func parseError(_ text: String) -> YAMLError? {
    do {
        _ = try YAMLNode.parse(text, fileName: "t.yaml")
        return nil
    } catch {
        return error
    }
}

func scalar(_ text: String, _ style: YAMLNode.ScalarStyle, _ line: Int, _ column: Int) -> YAMLNode {
    YAMLNode(.scalar(text, style: style), mark: Mark(line: line, column: column))
}

func scalar(_ text: String, _ line: Int, _ column: Int) -> YAMLNode { scalar(text, .plain, line, column) }

@Test func treeKeepsKeyOrderAndMarks() throws {
    let node = try YAMLNode.parse("""
        # comment
        zeta: 1
        alpha:
          - x
          - 'y'
        mid: {b: [2, "3"], a: }
        """, fileName: "t.yaml")
    guard case .mapping(let pairs) = node.kind else { Issue.record("not a mapping"); return }
    #expect(pairs.map(\.key) == ["zeta", "alpha", "mid"])
    #expect(node.mark == Mark(line: 2, column: 1))
    #expect(pairs[0].value == scalar("1", 2, 7))
    #expect(pairs[1].keyMark == Mark(line: 3, column: 1))
    #expect(pairs[1].value == YAMLNode(.sequence([scalar("x", 4, 5), scalar("y", .singleQuoted, 5, 5)]), mark: Mark(line: 4, column: 3)))
    guard case .mapping(let flow) = pairs[2].value.kind else { Issue.record("not a flow mapping"); return }
    #expect(pairs[2].value.mark == Mark(line: 6, column: 6))
    #expect(flow.map(\.key) == ["b", "a"])
    #expect(flow[0].value == YAMLNode(.sequence([scalar("2", 6, 11), scalar("3", .doubleQuoted, 6, 14)]), mark: Mark(line: 6, column: 10)))
    #expect(flow[1].value.isNull)
}

@Test func scalarsAndComments() throws {
    let node = try YAMLNode.parse("""
        ---
        a: b # comment
        b: "x # not a comment"
        c: b#c
        d: 'it''s'
        e: "tab\\tquote\\"slash\\\\ \\u00e9\\x41\\U0001F600"
        f: http://host:80/path
        g:
        h: ~
        ...
        # trailing comment
        """)
    guard case .mapping(let pairs) = node.kind else { Issue.record("not a mapping"); return }
    let values = pairs.map { pair -> String in
        if case .scalar(let s, _) = pair.value.kind { return s }
        return "?"
    }
    #expect(values == ["b", "x # not a comment", "b#c", "it's", "tab\tquote\"slash\\ éA😀", "http://host:80/path", "", "~"])
    #expect(pairs[6].value.isNull && pairs[7].value.isNull)
}

@Test func literalBlockScalars() throws {
    let node = try YAMLNode.parse("a: |\n  line one\n    indented\n\n  line three\n\nb: |-\n  stripped\nc: |+\n  kept\n\nd: x\n")
    guard case .mapping(let pairs) = node.kind else { Issue.record("not a mapping"); return }
    #expect(pairs.map(\.key) == ["a", "b", "c", "d"])
    #expect(pairs[0].value == scalar("line one\n  indented\n\nline three\n", .literal, 1, 4))
    #expect(pairs[1].value == scalar("stripped", .literal, 7, 4))
    #expect(pairs[2].value == scalar("kept\n\n", .literal, 9, 4))
}

@Test func sequencesOfMappingsAtEveryIndentation() throws {
    let expected = [["name": "x", "value": "1"], ["name": "y", "value": "2"]]
    func entries(_ node: YAMLNode) -> [[String: String]] {
        guard case .mapping(let top) = node.kind, case .sequence(let items) = top[0].value.kind else { return [] }
        return items.map { item in
            guard case .mapping(let pairs) = item.kind else { return [:] }
            var out: [String: String] = [:]
            for p in pairs { if case .scalar(let s, _) = p.value.kind { out[p.key] = s } }
            return out
        }
    }
    let atParentIndent = "list:\n- name: x\n  value: 1\n- name: y\n  value: 2\n"
    let deeper = "list:\n    - name: x\n      value: 1\n    -   name: y\n        value: 2\n"
    let dashAlone = "list:\n  -\n    name: x\n    value: 1\n  - name: y\n    value: 2\n"
    for text in [atParentIndent, deeper, dashAlone] {
        #expect(entries(try YAMLNode.parse(text)) == expected, "\(text)")
    }
    // The mapping continues after a list at the key's own indentation.
    let then = try YAMLNode.parse("list:\n- a\n- b\nnext: 1\n")
    guard case .mapping(let pairs) = then.kind else { Issue.record("not a mapping"); return }
    #expect(pairs.map(\.key) == ["list", "next"])
    // Compact nested lists.
    let nested = try YAMLNode.parse("- - a\n  - b\n- - c\n")
    #expect(nested == YAMLNode(.sequence([
        YAMLNode(.sequence([scalar("a", 1, 5), scalar("b", 2, 5)]), mark: Mark(line: 1, column: 3)),
        YAMLNode(.sequence([scalar("c", 3, 5)]), mark: Mark(line: 3, column: 3)),
    ]), mark: Mark(line: 1, column: 1)))
}

@Test func documentsAndLineEndings() throws {
    #expect(try YAMLNode.parse("").isNull)
    #expect(try YAMLNode.parse("# only a comment\n---\n...\n").isNull)
    #expect(try YAMLNode.parse("a: 1\r\nb: 2\r\n") == YAMLNode.parse("a: 1\nb: 2\n"))
    #expect(try YAMLNode.parse("\u{FEFF}a: 1") == YAMLNode.parse("a: 1"))
    #expect(try YAMLNode.parse(Array("a: é".utf8)) == YAMLNode.parse("a: é"))
}

struct Refusal: Sendable, CustomTestStringConvertible {
    var text: String
    var line: Int
    var column: Int
    var path: String
    var message: String
    var testDescription: String { message }
}

let refusals: [Refusal] = [
    Refusal(text: "a:\n\tb: 1\n", line: 2, column: 1, path: "a", message: "tab character in indentation (indent with spaces only)"),
    Refusal(text: "a:\n  b: 1\n  \tc: 2\n", line: 3, column: 3, path: "a", message: "tab character in indentation (indent with spaces only)"),
    Refusal(text: "a: 1\nb: 2\na: 3\n", line: 3, column: 1, path: "", message: "duplicate key 'a' (first at line 1)"),
    Refusal(text: "outbox:\n  cap: 1\n  cap: 2\n", line: 3, column: 3, path: "outbox", message: "duplicate key 'cap' (first at line 2)"),
    Refusal(text: "d:\n  - {a: 1, a: 2}\n", line: 2, column: 12, path: "d[0]", message: "duplicate key 'a'"),
    Refusal(text: "a: &anchor 1\n", line: 1, column: 4, path: "a", message: "anchors ('&') are not supported"),
    Refusal(text: "a: 1\nb: *anchor\n", line: 2, column: 4, path: "b", message: "aliases ('*') are not supported"),
    Refusal(text: "a: !!int 1\n", line: 1, column: 4, path: "a", message: "tags ('!') are not supported"),
    Refusal(text: "a: [1, !x 2]\n", line: 1, column: 8, path: "a[1]", message: "tags ('!') are not supported"),
    Refusal(text: "&a k: 1\n", line: 1, column: 1, path: "", message: "anchors ('&') are not supported"),
    Refusal(text: "a: 1\n---\nb: 2\n", line: 2, column: 1, path: "", message: "multiple documents are not supported"),
    Refusal(text: "a: 1\n...\n---\nb: 2\n", line: 3, column: 1, path: "", message: "multiple documents are not supported"),
    Refusal(text: "a: 1\n...\nb: 2\n", line: 3, column: 1, path: "", message: "content after the document end marker '...'"),
    Refusal(text: "--- a: 1\n", line: 1, column: 5, path: "", message: "content on the '---' line is not supported; start it on the next line"),
    Refusal(text: "%YAML 1.2\n---\na: 1\n", line: 1, column: 1, path: "", message: "directives ('%') are not supported"),
    Refusal(text: "a:\n  b: 1\n   c: 2\n", line: 3, column: 4, path: "a", message: "inconsistent indentation: expected 2 spaces, found 3"),
    Refusal(text: "a:\n    b: 1\n  c: 2\n", line: 3, column: 3, path: "", message: "inconsistent indentation: expected 0 spaces, found 2"),
    Refusal(text: "l:\n  - 1\n   - 2\n", line: 3, column: 4, path: "l", message: "inconsistent indentation: expected 2 spaces, found 3"),
    Refusal(text: "a: b\n  c\n", line: 2, column: 3, path: "", message: "inconsistent indentation: expected 0 spaces, found 2"),
    Refusal(text: "  a: 1\nb: 2\n", line: 2, column: 1, path: "", message: "inconsistent indentation: this line does not continue any block above it"),
    Refusal(text: "a: | text\n", line: 1, column: 6, path: "a", message: "a block scalar's text must start on the next line"),
    Refusal(text: "a: |2\n  x\n", line: 1, column: 5, path: "a", message: "block scalar indentation indicators are not supported"),
    Refusal(text: "a: >\n  x\n", line: 1, column: 4, path: "a", message: "folded block scalars ('>') are not supported; use '|'"),
    Refusal(text: "a: \"abc\n", line: 1, column: 4, path: "a", message: "unterminated quoted string (quoted strings must end on the same line)"),
    Refusal(text: "a: 'abc\n  def'\n", line: 1, column: 4, path: "a", message: "unterminated quoted string (quoted strings must end on the same line)"),
    Refusal(text: "x:\n  a: [1, 2\n", line: 2, column: 6, path: "x.a", message: "unterminated flow sequence: missing ']' (flow collections must end on the same line)"),
    Refusal(text: "a: {b: 1, c: [2]\n", line: 1, column: 4, path: "a", message: "unterminated flow mapping: missing '}' (flow collections must end on the same line)"),
    Refusal(text: "a: [1, 2] x\n", line: 1, column: 11, path: "a", message: "unexpected text after the value"),
    Refusal(text: "a: \"x\"# c\n", line: 1, column: 7, path: "a", message: "a comment needs a space before '#'"),
    Refusal(text: "[a, b]: 1\n", line: 1, column: 1, path: "", message: "mapping keys must be scalars, not lists or mappings"),
    Refusal(text: "m:\n  {a: 1}: x\n", line: 2, column: 3, path: "m", message: "mapping keys must be scalars, not lists or mappings"),
    Refusal(text: "a: {[b]: 1}\n", line: 1, column: 5, path: "a", message: "mapping keys must be scalars, not lists or mappings"),
    Refusal(text: "? a\n: b\n", line: 1, column: 1, path: "", message: "complex mapping keys ('?') are not supported"),
    Refusal(text: "a: b: c\n", line: 1, column: 5, path: "a", message: "unexpected ': ' inside a value; quote the value"),
    Refusal(text: "a: - b\n", line: 1, column: 4, path: "a", message: "a list cannot start on the same line as its key"),
    Refusal(text: "a: 1\n- b\n", line: 2, column: 1, path: "", message: "expected 'key: value', found a list item"),
    Refusal(text: "a: 1\njust text\n", line: 2, column: 1, path: "", message: "expected 'key: value'"),
    Refusal(text: "a: \"\\q\"\n", line: 1, column: 5, path: "a", message: "invalid escape sequence in a double-quoted string"),
    Refusal(text: "a: \"\\u12G4\"\n", line: 1, column: 9, path: "a", message: "escape '\\u' needs 4 hexadecimal digits"),
    Refusal(text: "a: \"\\uD800\"\n", line: 1, column: 5, path: "a", message: "escape is not a valid Unicode scalar value"),
    Refusal(text: "a: [1, , 2]\n", line: 1, column: 8, path: "a[1]", message: "unexpected ','"),
    Refusal(text: "a: [b: 1]\n", line: 1, column: 6, path: "a", message: "'key: value' inside a flow sequence is not supported; use {key: value}"),
    Refusal(text: "a: @x\n", line: 1, column: 4, path: "a", message: "a plain value cannot start with a reserved character ('@' or '`'); quote it"),
    Refusal(text: "a: 1\nb: x\u{07}\n", line: 2, column: 5, path: "", message: "control character U+0007 is not allowed"),
    Refusal(text: ": 1\n", line: 1, column: 1, path: "", message: "empty mapping key"),
]

@Test(arguments: refusals)
func refusesWithLocation(_ r: Refusal) throws {
    let error = try #require(parseError(r.text), "accepted: \(r.text)")
    #expect(error.message == r.message)
    #expect(error.line == r.line && error.column == r.column, "at \(error.line):\(error.column)")
    #expect(error.path == r.path)
    #expect(error.file == "t.yaml")
}

@Test func refusesInvalidUTF8AtTheBadByte() throws {
    let bytes: [UInt8] = Array("a: 1\nb: x".utf8) + [0xC3, 0x28] + Array("\n".utf8)
    let error = try #require(throws: YAMLError.self) { try YAMLNode.parse(bytes, fileName: "bad.yaml") }
    #expect(error.description == "bad.yaml:2:5: the file is not valid UTF-8")
}

@Test func nestingDepthIsBounded() throws {
    // Flow, block mapping, compact list: each far deeper than the limit, none may overflow the stack.
    let flow = "a: " + String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
    var block = ""
    for level in 0..<200 { block += String(repeating: " ", count: level) + "k:\n" }
    let compact = String(repeating: "- ", count: 10_000) + "x"
    for text in [flow, block, compact] {
        let error = try #require(parseError(text))
        #expect(error.message == "nesting deeper than 64 levels")
    }
    // Exactly at the limit is fine, and decodes without exhausting the stack.
    let deepest = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
    #expect(parseError(deepest) == nil)
    #expect(parseError("[" + deepest + "]")?.message == "nesting deeper than 64 levels")
    #expect(try YAMLDecoder().decode(Nest.self, from: deepest, fileName: "deep.yaml").depth == 64)
    // A tree built in code, deeper than the parser allows, is refused by the decoder.
    var node = YAMLNode(.scalar("x", style: .plain), mark: Mark(line: 1, column: 1))
    for _ in 0..<1000 { node = YAMLNode(.sequence([node]), mark: Mark(line: 1, column: 1)) }
    let error = try #require(throws: YAMLError.self) { try YAMLDecoder().decode(Nest.self, from: node, fileName: "code") }
    #expect(error.message == "nesting deeper than 64 levels")
}

@Test func descriptionFormat() {
    let e = YAMLError(file: "vigild.yaml", line: 12, column: 5, path: "outbox.capacity_readings", message: "expected an integer, found a string")
    #expect(e.description == "vigild.yaml:12:5: outbox.capacity_readings: expected an integer, found a string")
    #expect(YAMLError(file: "f", line: 1, column: 2, path: "", message: "m").description == "f:1:2: m")
}

/// A list of lists of any depth; counts its depth.
struct Nest: Decodable {
    var depth: Int
    init(from decoder: any Decoder) throws {
        if (try? decoder.singleValueContainer().decode(String.self)) != nil {
            depth = 0
        } else {
            depth = 1 + (try [Nest](from: decoder)).map(\.depth).reduce(0, max)
        }
    }
}
