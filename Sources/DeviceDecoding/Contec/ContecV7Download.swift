import VitalSigns

/// The stored-data download of a CMS50D+ / CMS50E / CMS50F with firmware 4.6+ (V7.0
/// protocol, ``ContecV7Packet``), driven by `SerialLink.MeterDownloader` at 115200 8N1.
///
/// The conversation (V7.0 §3.3.2.7 Table 7 and §3.4 "Additional instruction" 1, 3 and 4):
///
///     host  A2 stop real-time, A7 stop storage   device  0x0C free feedback (each)
///     host  A4 user segment (storage length)     device  0x08 user segment length(32-bit LE)
///     host  A5 user segment (start time)         device  0x07 date, 0x12 time
///     host  A6 user segment (storage data)       device  0x0F (or 0x09) packets until done
///
/// The device acknowledges nothing and wants no acknowledgement: the protocol "does not
/// consider error detecting retransmission" (§2) and storage packets are "sent completely"
/// (Table 2). No keep-alive is sent while storage data flows (§3.4.3: no other request while
/// the device sends storage data); at 115200 baud a full 24 h recording (about 230 kB) takes
/// some 20 s. A command the device refuses comes back as 0x0B (reason: Table 4) and ends the
/// attempt; a length of 0 completes the download with no records.
///
/// Records: see ``ContecV7Storage``; each yields one `.samples` result (possibly empty when
/// the device stored no value) with device time = start + index s and the sequence
/// ``ContecV7Storage/sequence(start:index:)``. A retried attempt asks for everything again
/// (the protocol cannot start mid-recording) and passes on only records past the last one
/// already delivered, when the device reports the same start time; a new start time (a new
/// recording) delivers from its first record.
///
/// User and segment: V7.0 Table 7 note 1 says a device with a single segment is asked for
/// segment 0, and Brad Martin's driver asks for user 0, segment 0; timegrid/CMS50Dplus7 asks
/// for user 1, segment 1. Unverified: both are parameters, default 0 and 0.
public struct ContecStoredDataDownload: CommandProtocol {
    enum State: Hashable, Sendable {
        case stopping
        case awaitingLength
        case awaitingStart
        case reading
        case done
        /// The attempt went wrong: everything is ignored until the downloader, seeing the
        /// device fall quiet, abandons it and begins again.
        case failed
    }

    public let user: UInt8
    public let segment: UInt8
    private var parser = ContecV7PacketParser()
    private var state = State.stopping
    private var length = 0
    private var startDate: [UInt8]?
    private var start: CivilDateTime?
    private var index = 0
    /// The recording whose records were delivered, and how many of them.
    private var deliveredStart: CivilDateTime??
    private var delivered = 0

    public init(user: UInt8 = 0, segment: UInt8 = 0) {
        self.user = user
        self.segment = segment
    }

    public var isComplete: Bool { state == .done }
    public var packetGap: Duration { .zero }

    public mutating func begin() -> [UInt8] {
        parser = ContecV7PacketParser()
        state = .stopping
        startDate = nil
        index = 0
        // Stop whatever the device is sending (§3.4.1), so stale packets end before its
        // first free-feedback answer.
        return ContecV7Command.packet(ContecV7Command.stopRealtime).encoded
            + ContecV7Command.packet(ContecV7Command.stopStorageData).encoded
    }

    public mutating func abandonAttempt() -> [DecodeResult] {
        var cut: [DecodeResult] = []
        parser.finish(into: &cut)
        state = .stopping
        return cut
    }

    /// Starts a fresh download (the next time the device is connected): forgets what was
    /// delivered; the store ignores the records it already holds (same IDs).
    public mutating func startNewDownload() {
        deliveredStart = nil
        delivered = 0
        _ = abandonAttempt()
    }

    public mutating func receive(_ bytes: some Collection<UInt8>) -> (results: [DecodeResult], send: [[UInt8]]) {
        var results: [DecodeResult] = []
        var out: [[UInt8]] = []
        for b in bytes {
            guard let p = parser.push(b) else { continue }
            let before = results.count
            parser.flush(into: &results)
            if results.count > before, state == .reading {
                // Storage bytes were lost in transit: the records that follow cannot be
                // placed in time. Give up this attempt; the retry resumes after the last
                // record delivered.
                protocolError("storage data lost in transit: the attempt is abandoned", &results)
            }
            handle(p, results: &results, out: &out)
        }
        return (results, out)
    }

    private var arguments: [UInt8] { [user, segment] }

    private mutating func protocolError(_ message: String, _ results: inout [DecodeResult]) {
        results.append(.rejected(FrameError(.malformedField, message, bytesSkipped: 0)))
        // Nothing more is read in this attempt; the downloader times out and retries.
        state = .failed
    }

    private static func reason(_ code: UInt8) -> String {
        switch code {
        case 0x00: "completed"
        case 0x01: "shutting down"
        case 0x02: "users changed"
        case 0x03: "recording"
        case 0x04: "deleting failed"
        case 0x05: "not supported"
        default: "unknown reason"
        }
    }

    private mutating func handle(_ p: ContecV7Packet, results: inout [DecodeResult], out: inout [[UInt8]]) {
        typealias U = ContecV7Packet.Uplink
        let listening = state == .awaitingLength || state == .awaitingStart || state == .reading
        if p.type == U.commandFeedback, listening {
            protocolError("the device refused command \(String(p.data[0], radix: 16)): \(Self.reason(p.data[1]))", &results)
            return
        }
        if p.type == U.disconnectNotice, listening {
            protocolError("the device disconnected: \(Self.reason(p.data[0]))", &results)
            return
        }
        switch state {
        case .stopping:
            // Real-time or storage packets still in flight are ignored until the device
            // answers the stop command.
            guard p.type == U.freeFeedback else { return }
            state = .awaitingLength
            out.append(ContecV7Command.packet(ContecV7Command.queryStorageLength, arguments).encoded)
        case .awaitingLength:
            guard p.type == U.storageDataLength else { return }
            guard p.data[0] == user, p.data[1] == segment else {
                protocolError("storage length reply (0x08): for another user or segment", &results)
                return
            }
            length = Int(p.data[2]) | Int(p.data[3]) << 8 | Int(p.data[4]) << 16 | Int(p.data[5]) << 24
            guard length > 0 else {
                state = .done
                return
            }
            guard length / 2 <= ContecV7Storage.maxRecords else {
                protocolError("storage length reply (0x08): more than \(ContecV7Storage.maxRecords) records", &results)
                return
            }
            state = .awaitingStart
            out.append(ContecV7Command.packet(ContecV7Command.queryStorageStart, arguments).encoded)
        case .awaitingStart:
            if p.type == U.storageStartDate {
                startDate = p.data
                return
            }
            guard p.type == U.storageStartTime, let date = startDate else { return }
            guard let s = ContecV7Storage.start(date: date, time: p.data) else {
                protocolError("storage start time (0x07, 0x12): not a valid date and time", &results)
                return
            }
            start = s
            if deliveredStart.map({ $0 != s }) ?? true {
                deliveredStart = .some(s)
                delivered = 0
            }
            index = 0
            state = .reading
            out.append(ContecV7Command.packet(ContecV7Command.queryStorageData, arguments).encoded)
        case .reading:
            guard p.type == U.storageData || p.type == U.storageDataWithPI else { return }
            let total = length / ContecV7Storage.recordBytes(p.type)
            let records = ContecV7Storage.records(p)
            guard records.allSatisfy({ ContecV7Storage.valid(spo2: $0.spo2, pi: $0.pi) }) else {
                // A stored value out of range is the device's data, not line noise (a retry
                // would read it the same): the packet's records keep their places in time
                // and give nothing.
                results.append(.rejected(FrameError(.malformedField, "storage packet: a value outside its range",
                                                    bytesSkipped: p.data.count + 2)))
                index += records.count
                if index >= total { finishReading() }
                return
            }
            for r in records where index < total {
                defer { index += 1 }
                guard index >= delivered else { continue }
                results.append(.samples(ContecV7Storage.samples(
                    spo2: r.spo2, pulseRate: r.pulseRate, pi: r.pi,
                    time: ContecV7Storage.time(start: start, index: index),
                    sequence: ContecV7Storage.sequence(start: start, index: index))))
                delivered = index + 1
            }
            if index >= total { finishReading() }
        case .done, .failed:
            return
        }
    }

    private mutating func finishReading() {
        delivered = max(delivered, index)
        state = .done
    }
}

/// Starting the V7.0 real-time stream (decoded by ``ContecV7Decoder``): send ``openingBytes``
/// once the port is open (stop a storage transfer, then A1 "ask for continuous real-time
/// data"), then ``keepAliveBytes`` every ``keepAliveInterval`` for as long as the stream is
/// wanted: Table 7 says the host sends AF "inform device being connected" once per 5 s, and
/// albertcbraun/CMS50FW (KeepAliveTask) and timegrid/CMS50Dplus7 (`send_keepalive`) both do.
/// Without it the device may stop streaming (how soon is unverified). ``closingBytes`` (A2)
/// stops the stream. The link layer owns the timer; this type is only the bytes.
public enum ContecV7RealtimeSession {
    public static let openingBytes: [UInt8] = ContecV7Command.packet(ContecV7Command.stopStorageData).encoded
        + ContecV7Command.packet(ContecV7Command.startRealtime).encoded
    public static let keepAliveBytes: [UInt8] = ContecV7Command.packet(ContecV7Command.keepAlive).encoded
    public static let keepAliveInterval: Duration = .seconds(5)
    public static let closingBytes: [UInt8] = ContecV7Command.packet(ContecV7Command.stopRealtime).encoded
}
