public import VitalSigns

/// The answer to a downlink command, published at QoS 1 on `<prefix>/reply/<id>`
/// (`vigil.reply/1`, docs/schemas/reply.schema.json):
/// `{"schema":"vigil.reply/1","id","command","ok":bool,"at","result":{…}|null,
///   "error":{"code":"<snake_case>","message":"…"}|null}`.
/// Exactly one of `result` and `error` is non-null. Pure: the caller passes the time.
public struct DownlinkReply: Sendable, Hashable {
    public var id: String
    public var command: String
    public var at: Timestamp
    /// The command's result (an object), or nil when it was refused.
    public var result: JSONValue?
    public var error: DownlinkError?

    public static let schema = "vigil.reply/1"

    public static func success(id: String, command: String, at: Timestamp, result: JSONValue) -> DownlinkReply {
        DownlinkReply(id: id, command: command, at: at, result: result, error: nil)
    }

    public static func failure(id: String, command: String, at: Timestamp, error: DownlinkError) -> DownlinkReply {
        DownlinkReply(id: id, command: command, at: at, result: nil, error: error)
    }

    public var ok: Bool { error == nil }

    public var json: JSONValue {
        .object([
            ("schema", .string(Self.schema)),
            ("id", .string(id)),
            ("command", .string(command)),
            ("ok", .bool(ok)),
            ("at", .string(at.iso8601)),
            ("result", error == nil ? (result ?? .object([])) : .null),
            ("error", error.map { .object([("code", .string($0.code.rawValue)), ("message", .string($0.message))]) } ?? .null),
        ])
    }

    public var payload: [UInt8] { Array(json.serialized.utf8) }
}
