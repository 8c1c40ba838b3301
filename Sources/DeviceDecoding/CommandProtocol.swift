import VitalSigns

/// A device that answers only when asked: a meter whose memory is downloaded by a command.
///
/// A conforming value is pure state: it says what to send, decodes what comes back, and says
/// when the download is whole. The link that drives it (`SerialLink.MeterDownloader`) owns
/// the port, the timeouts and the retries. A download that fails part-way is simply asked
/// for again from the start; the protocol drops records it already delivered in an earlier
/// attempt (by their sequence number), so a resumed download yields each record once, and
/// the records' deterministic IDs make any repeat across downloads a no-op in the store.
public protocol CommandProtocol: Sendable {
    /// Starts an attempt: the bytes to send first (a wake-up and a request, a link reset).
    mutating func begin() -> [UInt8]
    /// Feeds the device's bytes as they arrive; returns what they decoded to and the packets
    /// to send in answer (an acknowledgement, the next request), in order, none when empty.
    mutating func receive(_ bytes: some Collection<UInt8>) -> (results: [DecodeResult], send: [[UInt8]])
    /// The quiet time the device needs between two packets it is sent.
    var packetGap: Duration { get }
    /// Whether the download is whole.
    var isComplete: Bool { get }
    /// Ends an attempt (timeout or hang-up): reports what was cut off and gets ready to ask
    /// again. Records already delivered stay remembered.
    mutating func abandonAttempt() -> [DecodeResult]
}

/// The LifeScan OneTouch Ultra / Ultra 2 memory download: wake the meter with DC1 CR, send
/// `DMP`, and read the dump (header, then as many records as it announces; see
/// ``OneTouchUltra2Decoder``). The wake-up sequence is the one glucometerutils' `otultra2`
/// driver sends; commands carry no terminator (LifeScan's RS-232 protocol notes).
public struct OneTouchUltra2Download: CommandProtocol {
    private var decoder = OneTouchUltra2Decoder()
    private var completedAtStart = 0
    private var delivered: Set<UInt64> = []

    public init() {}

    public static let request: [UInt8] = [0x11, 0x0D] + Array("DMP".utf8)

    public mutating func begin() -> [UInt8] { Self.request }

    public var isComplete: Bool { decoder.dumpsCompleted > completedAtStart }

    public mutating func receive(_ bytes: some Collection<UInt8>) -> (results: [DecodeResult], send: [[UInt8]]) {
        var out: [DecodeResult] = []
        for r in decoder.decode(bytes) { if let kept = dropRepeats(r) { out.append(kept) } }
        return (out, [])
    }

    public var packetGap: Duration { .zero }

    public mutating func abandonAttempt() -> [DecodeResult] {
        var cut: [DecodeResult] = []
        for r in decoder.finish() { if let kept = dropRepeats(r) { cut.append(kept) } }
        completedAtStart = decoder.dumpsCompleted
        return cut
    }

    /// A record's samples pass once per download; a repeat from a retried attempt is dropped.
    private mutating func dropRepeats(_ result: DecodeResult) -> DecodeResult? {
        guard case .samples(let samples) = result, let sequence = samples.first?.sequence else { return result }
        return delivered.insert(sequence).inserted ? result : nil
    }
}

/// A fresh download conversation for a profile's `decoder:` name, or nil for a device that
/// streams on its own: for the named ones the daemon downloads instead of listening. One
/// conversation serves one download; the next download starts a new one.
public func makeCommandProtocol(named name: String) -> (any CommandProtocol)? {
    switch name {
    case "onetouch-ultra2": OneTouchUltra2Download()
    case "onetouch-ultraeasy": OneTouchUltraEasyDownload()
    default: nil
    }
}

/// What the host must send to a streaming device for it to stream: bytes when the port opens
/// (a "start real-time" command), and a keep-alive at an interval, if the device stops
/// without one. Devices that stream on their own need none.
public struct StreamSession: Sendable, Hashable {
    public var opening: [UInt8]
    public var keepAlive: [UInt8]?
    public var keepAliveInterval: Duration

    public init(opening: [UInt8], keepAlive: [UInt8]? = nil, keepAliveInterval: Duration = .seconds(5)) {
        self.opening = opening
        self.keepAlive = keepAlive
        self.keepAliveInterval = keepAliveInterval
    }
}

/// The session a decoder's device needs, by the name profiles use; nil for devices that
/// stream unasked.
public func makeStreamSession(named name: String) -> StreamSession? {
    switch name {
    case "contec-cms50-v7":
        StreamSession(opening: ContecV7RealtimeSession.openingBytes, keepAlive: ContecV7RealtimeSession.keepAliveBytes,
                      keepAliveInterval: ContecV7RealtimeSession.keepAliveInterval)
    default: nil
    }
}
