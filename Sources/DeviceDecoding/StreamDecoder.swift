public import VitalSigns

/// A decoder for a device that speaks a byte stream (serial ports, pseudo-terminals).
///
/// Implementations are value types holding only framing state: feeding the same bytes in
/// any chunking yields the same results. They never do I/O, never read the clock and never
/// log. Every input, however malformed, yields results or rejections; nothing traps.
public protocol StreamDecoder: Sendable {
    /// Feeds bytes as they arrived; returns what complete frames they finished.
    mutating func decode(_ bytes: some Collection<UInt8>) -> [DecodeResult]
    /// The stream ended (EOF, unplug): reports whatever partial frame was buffered, then
    /// resets, so the decoder can be reused for the next connection.
    mutating func finish() -> [DecodeResult]
}

/// The outcome of one frame (one line for line-oriented protocols).
public enum DecodeResult: Sendable, Hashable {
    /// A good frame; its samples, in the device's field order. May be empty when the device
    /// reported no value for any vital (for example every field `---`).
    case samples([VitalSample])
    /// A frame, or a run of bytes, that was dropped as a whole.
    case rejected(FrameError)
}

/// Why bytes were dropped.
///
/// The message names the field and the problem but never echoes a value: readings and
/// serial numbers are patient data.
public struct FrameError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable, CaseIterable {
        /// A frame's checksum did not match (protocols that carry one).
        case checksum
        /// A frame started but was cut off (a power-cycle, an unplug, a lost terminator).
        case truncated
        /// A frame was complete but a field was missing its form, out of range or repeated.
        case malformedField
        /// No terminator arrived within the protocol's maximum frame length.
        case lineTooLong
        /// Bytes that do not start any frame (line noise, NULs, a baud-rate mismatch).
        case garbage
    }

    public var code: Code
    /// What went wrong and where, for example "field SPO2: not a number". No values.
    public var message: String
    /// How many input bytes this rejection discarded.
    public var bytesSkipped: Int

    public init(_ code: Code, _ message: String, bytesSkipped: Int) {
        self.code = code
        self.message = message
        self.bytesSkipped = bytesSkipped
    }

    public var description: String { "\(code.rawValue): \(message) (\(bytesSkipped) bytes skipped)" }
}

/// The compiled decoders, by the name device profiles use in their `decoder:` key.
public let streamDecoderNames: [String] = [
    "masimo-ascii1", "nonin-sdf2", "contec-cms50-legacy", "onetouch-ultra2", "onetouch-ultraeasy", "masimo-trend",
    "contec-cms50-v7",
]

/// Makes a fresh decoder for a profile's `decoder:` name, or nil if no such decoder exists.
public func makeDecoder(named name: String) -> (any StreamDecoder)? {
    switch name {
    case "masimo-ascii1": MasimoASCIIDecoder()
    case "nonin-sdf2": NoninSDF2Decoder()
    case "contec-cms50-legacy": ContecLegacyDecoder()
    case "onetouch-ultra2": OneTouchUltra2Decoder()
    case "onetouch-ultraeasy": OneTouchUltraEasyDecoder()
    case "masimo-trend": MasimoTrendDecoder()
    case "contec-cms50-v7": ContecV7Decoder()
    default: nil
    }
}

/// Bytes dropped between two good frames, reported as one rejection: the count of every
/// byte skipped and the most telling reason seen (for binary protocols, where one bad
/// frame leaves a run of bytes that each fail in their own way).
public struct RejectionRun: Sendable, Hashable {
    /// Reasons from most to least telling; a reason not listed ranks below all of them.
    public let precedence: [FrameError.Code]
    public private(set) var bytes = 0
    public private(set) var code: FrameError.Code?

    public init(precedence: [FrameError.Code]) { self.precedence = precedence }

    private func rank(_ c: FrameError.Code?) -> Int {
        guard let c, let i = precedence.firstIndex(of: c) else { return -1 }
        return precedence.count - i
    }

    /// Adds `count` dropped bytes for `reason`.
    public mutating func add(_ count: Int, _ reason: FrameError.Code) {
        bytes += count
        if rank(reason) > rank(code) { code = reason }
    }

    /// Ends the run: one rejection (message chosen by its reason), or nothing if no byte
    /// was dropped.
    public mutating func flush(message: (FrameError.Code) -> String) -> DecodeResult? {
        defer { reset() }
        guard bytes > 0 else { return nil }
        let reason = code ?? .garbage
        return .rejected(FrameError(reason, message(reason), bytesSkipped: bytes))
    }

    public mutating func reset() {
        bytes = 0
        code = nil
    }
}
