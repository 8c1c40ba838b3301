import Uplink

extension VigilConfig {
    /// `downlink:`: commands from the care team on `<prefix>/cmd/<name>` (docs/downlink.md).
    ///
    /// ```yaml
    /// downlink:
    ///   enabled: true              # subscribe to <prefix>/cmd/+ (default true)
    ///   max_bytes: 65536           # largest command payload, bytes (1024–1048576)
    ///   replay_window_seconds: 300 # issued_at may be this far off the gateway clock (30–86400)
    /// ```
    struct Downlink: Decodable, Sendable {
        var enabled = true
        var maxBytes = DownlinkLimits.defaultMaxBytes
        var replayWindowSeconds = DownlinkLimits.defaultReplayWindowSeconds

        enum CodingKeys: String, CodingKey {
            case enabled
            case maxBytes = "max_bytes"
            case replayWindowSeconds = "replay_window_seconds"
        }

        init() {}

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            enabled = try c.decodeIfPresent(Bool.self, forKey: .enabled) ?? true
            maxBytes = try c.decodeIfPresent(Int.self, forKey: .maxBytes) ?? DownlinkLimits.defaultMaxBytes
            guard (1024...1_048_576).contains(maxBytes) else {
                throw DecodingError.dataCorruptedError(forKey: .maxBytes, in: c, debugDescription: "must be between 1024 and 1048576")
            }
            replayWindowSeconds = try c.decodeIfPresent(Int64.self, forKey: .replayWindowSeconds)
                ?? DownlinkLimits.defaultReplayWindowSeconds
            guard (30...86_400).contains(replayWindowSeconds) else {
                throw DecodingError.dataCorruptedError(forKey: .replayWindowSeconds, in: c, debugDescription: "must be between 30 and 86400")
            }
        }

        var limits: DownlinkLimits { DownlinkLimits(maxBytes: maxBytes, replayWindowSeconds: replayWindowSeconds) }
    }
}
