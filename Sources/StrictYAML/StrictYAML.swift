// StrictYAML: a small, dependency-free reader for a strict subset of YAML 1.2, and a `Decoder` over it.
//
// Vigil's configuration (`/etc/vigil/vigild.yaml`), device profiles (`devices/*.yaml`) and care plans
// are written by people and read by a medical device, so this reader is deliberately strict: anything
// outside the subset below is refused with `file:line:column: path: message`, never guessed at.
//
// ## The subset (YAML 1.2.2 chapter references in brackets)
// - One document, optionally opened by `---` and closed by `...` (nothing may follow `...`) [§9.1].
//   Directives (`%YAML`) and a second document are refused.
// - Indentation by spaces only; a tab in indentation is refused [§6.1]. Every entry of a block
//   collection sits at exactly the same indentation; children are indented more.
// - Block mappings `key: value` [§8.2.2]; keys are plain or quoted scalars (no `?` complex keys,
//   no lists or mappings as keys); a key appears at most once per mapping; `key:` with nothing after
//   it (and no indented block below) is null.
// - Block sequences `- item` [§8.2.1], including compact nesting (`- name: x` followed by `  value: y`,
//   `- - a`) and a sequence as a mapping value at the key's own indentation (`key:` / `- a`).
// - Scalars on one line: plain; single-quoted (`''` is a quote); double-quoted with the escapes
//   `\" \\ \/ \0 \a \b \t \n \v \f \r \e \xXX \uXXXX \UXXXXXXXX` [§5.7]. A plain value may not contain
//   `": "` or `" #"` (quote it); multi-line plain or quoted scalars are refused.
// - Literal block scalars `|`, `|-`, `|+` [§8.1.2] (no indentation indicator, no folded `>`); nothing
//   but a comment may follow the indicator on its line.
// - Flow sequences `[a, "b", 3]` and flow mappings `{a: 1, b: [2, 3]}`, nested, on one line [§7.4].
// - Comments: `#` at the start of a line or after a space or tab, never inside quotes [§6.6].
// - Refused outright: anchors `&`, aliases `*`, tags `!`, reserved `@` and `` ` ``, text that is not
//   valid UTF-8, control characters other than tab, LF and CR-LF, nesting deeper than
//   ``YAMLNode/maximumDepth`` (so hostile input cannot exhaust the stack).
//
// Scalars are typed only when decoded, by the YAML 1.2 core schema [§10.3.2]; see ``YAMLDecoder``.
// Error messages name the kind of thing found ("found a string"), never the value itself: a care
// plan may carry patient identifiers.

/// A position in a YAML text: 1-based line and column (column counted in Unicode scalars).
public struct Mark: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
    public static func < (a: Mark, b: Mark) -> Bool { (a.line, a.column) < (b.line, b.column) }
    public var description: String { "\(line):\(column)" }
}

/// One node of a parsed YAML document, with the position where it starts.
/// ``parse(_:fileName:)`` accepts exactly the subset described at the top of this file.
public struct YAMLNode: Hashable, Sendable {
    /// How a scalar was written. Only `.plain` scalars are typed (bool, int, float, null);
    /// every other style is always a string.
    public enum ScalarStyle: Hashable, Sendable {
        case plain, singleQuoted, doubleQuoted, literal
    }
    /// One `key: value` entry of a mapping, in document order.
    public struct Pair: Hashable, Sendable {
        public var key: String
        public var keyMark: Mark
        public var value: YAMLNode
        public init(key: String, keyMark: Mark, value: YAMLNode) {
            self.key = key
            self.keyMark = keyMark
            self.value = value
        }
    }
    public enum Kind: Hashable, Sendable {
        case scalar(String, style: ScalarStyle)
        case sequence([YAMLNode])
        case mapping([Pair])
    }

    /// Deepest nesting of collections the parser accepts.
    public static let maximumDepth = 64

    public var kind: Kind
    public var mark: Mark
    public init(_ kind: Kind, mark: Mark) {
        self.kind = kind
        self.mark = mark
    }

    /// True for a plain `null`, `Null`, `NULL`, `~` or an empty value (YAML 1.2 core schema).
    public var isNull: Bool {
        if case .scalar(let text, .plain) = kind { return Scalars.isNull(text) }
        return false
    }
}

/// A refusal or decoding failure, located in the file: `vigild.yaml:12:5: outbox.capacity: message`.
///
/// `message` never contains a scalar value from the document.
public struct YAMLError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The file name given to the parser or decoder.
    public var file: String
    /// 1-based line and column.
    public var line: Int
    public var column: Int
    /// The coding path in the document's own spelling, e.g. `devices[2].port`; empty at the root.
    public var path: String
    public var message: String

    public init(file: String, line: Int, column: Int, path: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        self.message = message
    }

    public var mark: Mark { Mark(line: line, column: column) }

    public var description: String {
        path.isEmpty ? "\(file):\(line):\(column): \(message)" : "\(file):\(line):\(column): \(path): \(message)"
    }

    /// An error at a node captured while decoding (see ``YAMLContext``), for validation done after decoding.
    public static func context(_ context: YAMLContext, _ message: String) -> YAMLError {
        YAMLError(file: context.file, line: context.mark.line, column: context.mark.column,
                  path: context.path, message: message)
    }
}

/// Where a decoded value came from: file, position and path. Capture it in `init(from:)` with
/// `decoder.yamlContext` to report validation errors found later, e.g. when a device profile names
/// a decoder that does not exist: `throw YAMLError.context(profile.context, "unknown decoder")`.
public struct YAMLContext: Hashable, Sendable {
    public var file: String
    public var mark: Mark
    public var path: String
    public init(file: String, mark: Mark, path: String) {
        self.file = file
        self.mark = mark
        self.path = path
    }
    public func error(_ message: String) -> YAMLError { .context(self, message) }
}

/// A validation failure thrown from inside `init(from:)` while ``YAMLDecoder`` runs it. The decoder
/// turns it into a ``YAMLError`` at the node being decoded (or at its child `field`, if given):
///
/// ```swift
/// struct Outbox: Decodable {
///     var capacity: Int
///     init(from decoder: any Decoder) throws {
///         let c = try decoder.container(keyedBy: CodingKeys.self)
///         capacity = try c.decode(Int.self, forKey: .capacity)
///         guard capacity > 0 else {
///             // vigild.yaml:7:13: outbox.capacity: must be at least 1
///             throw YAMLValidationError("must be at least 1", field: "capacity")
///         }
///     }
/// }
/// ```
///
/// Without `field`, the error points at the mapping being decoded (`decoder.yamlMark`).
/// The message must not contain the offending value (patient data); say what was wrong with it.
public struct YAMLValidationError: Error, Hashable, Sendable {
    public var message: String
    /// A key of the mapping being decoded, as spelled in the document or as the Swift property name.
    public var field: String?
    public init(_ message: String, field: String? = nil) {
        self.message = message
        self.field = field
    }
}

extension Decoder {
    /// The position of the node this decoder reads, when it is a ``YAMLDecoder``; nil otherwise.
    public var yamlMark: Mark? { (self as? NodeDecoder)?.node.mark }

    /// File, position and path of the node this decoder reads, when it is a ``YAMLDecoder``.
    public var yamlContext: YAMLContext? {
        guard let d = self as? NodeDecoder else { return nil }
        return YAMLContext(file: d.state.file, mark: d.node.mark, path: renderPath(d.path))
    }
}

/// One step of a path in the document's spelling.
enum PathComponent: Hashable, Sendable {
    case key(String)
    case index(Int)
}

func renderPath(_ path: [PathComponent]) -> String {
    var out = ""
    for component in path {
        switch component {
        case .key(let k): out += out.isEmpty ? k : "." + k
        case .index(let i): out += "[\(i)]"
        }
    }
    return out
}
