import VitalSigns

/// LifeScan's shared binary link (OneTouch Ultra Easy, Ultra Mini), 9600 8N1:
///
///     STX(02) LEN LINK MESSAGE… ETX(03) CRC-LO CRC-HI
///
/// `LEN` counts the whole packet (6 + message length). `CRC` is CRC-16/CCITT (polynomial
/// 0x1021, initial 0xFFFF, not reflected) over STX…ETX, little-endian. `LINK` bits: 0 `S`
/// (the sender's sequence bit), 1 `E` (the sequence bit it expects next), 2 acknowledge,
/// 3 disconnect, 4 more; 5–7 are reserved and must be zero.
/// Sources: glucometer-protocols `lifescan/shared-binary-protocol.md` and
/// `onetouch-ultraeasy.md` (CC-BY-SA); Daniel Thompson's `onetouch-ultraeasy` link and
/// command code (2011) for the link procedure and the record commands. Not yet run against a
/// real meter: see firmware-fixtures/README.md.
public struct LifeScanPacket: Sendable, Hashable {
    public var link: UInt8
    public var message: [UInt8]

    public static let stx: UInt8 = 0x02
    public static let etx: UInt8 = 0x03
    /// The longest message a packet may carry (the reference driver's 64-byte packet buffer).
    public static let maxMessage = 58
    static let reservedLinkBits: UInt8 = 0xE0

    public var sequence: Bool { link & 0x01 != 0 }
    public var expected: Bool { link & 0x02 != 0 }
    public var acknowledge: Bool { link & 0x04 != 0 }
    public var disconnect: Bool { link & 0x08 != 0 }

    public init(link: UInt8, message: [UInt8] = []) {
        self.link = link
        self.message = message
    }

    /// The packet's bytes, framed and checksummed.
    public var encoded: [UInt8] {
        var p: [UInt8] = [Self.stx, UInt8(6 + message.count), link] + message + [Self.etx]
        let crc = Self.crc16(p)
        p.append(UInt8(crc & 0xFF))
        p.append(UInt8(crc >> 8))
        return p
    }

    /// CRC-16/CCITT as the meters compute it ("123456789" → 0x29B1).
    public static func crc16(_ bytes: some Collection<UInt8>) -> UInt16 {
        var crc: UInt16 = 0xFFFF
        for b in bytes {
            crc ^= UInt16(b) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        }
        return crc
    }
}

/// Splits a byte stream into LifeScan packets: resynchronises on the next STX after any bad
/// byte, and never passes a packet whose length, ETX, reserved bits or CRC is wrong.
public struct LifeScanPacketParser: Sendable {
    private var buffer: [UInt8] = []
    private var dropped = RejectionRun(precedence: [.checksum, .malformedField, .truncated, .garbage])

    public init() {}

    public enum Item: Sendable, Hashable {
        case packet(LifeScanPacket)
        case rejected(FrameError)
    }

    public mutating func feed(_ bytes: some Collection<UInt8>) -> [Item] {
        buffer.append(contentsOf: bytes)
        var out: [Item] = []
        while let first = buffer.first {
            guard first == LifeScanPacket.stx else {
                let skip = buffer.firstIndex(of: LifeScanPacket.stx) ?? buffer.count
                dropped.add(skip, .garbage)
                buffer.removeFirst(skip)
                continue
            }
            guard buffer.count >= 2 else { break }
            let length = Int(buffer[1])
            guard (6...(6 + LifeScanPacket.maxMessage)).contains(length) else {
                dropped.add(1, .malformedField)
                buffer.removeFirst()
                continue
            }
            guard buffer.count >= length else { break }
            let p = buffer[0..<length]
            let crc = UInt16(p[length - 2]) | UInt16(p[length - 1]) << 8
            if p[length - 3] != LifeScanPacket.etx || p[2] & LifeScanPacket.reservedLinkBits != 0 {
                dropped.add(1, .malformedField)
                buffer.removeFirst()
                continue
            }
            guard LifeScanPacket.crc16(p[0..<(length - 2)]) == crc else {
                dropped.add(1, .checksum)
                buffer.removeFirst()
                continue
            }
            flush(into: &out)
            out.append(.packet(LifeScanPacket(link: p[2], message: Array(p[3..<(length - 3)]))))
            buffer.removeFirst(length)
        }
        return out
    }

    /// The stream ended: whatever is buffered was cut off.
    public mutating func finish() -> [Item] {
        if !buffer.isEmpty { dropped.add(buffer.count, buffer.first == LifeScanPacket.stx ? .truncated : .garbage) }
        buffer.removeAll()
        var out: [Item] = []
        flush(into: &out)
        return out
    }

    private mutating func flush(into out: inout [Item]) {
        if let r = dropped.flush(message: Self.message), case .rejected(let e) = r { out.append(.rejected(e)) }
    }

    static func message(_ code: FrameError.Code) -> String {
        switch code {
        case .checksum: "packet CRC does not match"
        case .malformedField: "packet length, ETX or link byte is invalid"
        case .truncated: "a packet was cut off"
        default: "bytes that start no packet"
        }
    }
}

/// The Ultra Easy's glucose record, the reply to "read record n": `05 06`, then the meter's
/// clock as a little-endian uint32 of seconds since 1970-01-01 in the meter's own zone, then
/// the value as a little-endian uint32 in mg/dL.
enum UltraEasyRecord {
    static let replyTag: [UInt8] = [0x05, 0x06]

    static func sample(_ m: [UInt8]) -> DecodeResult? {
        guard m.count == 10, m.starts(with: replyTag) else { return nil }
        let seconds = UInt32(m[2]) | UInt32(m[3]) << 8 | UInt32(m[4]) << 16 | UInt32(m[5]) << 24
        let raw = UInt32(m[6]) | UInt32(m[7]) << 8 | UInt32(m[8]) << 16 | UInt32(m[9]) << 24
        guard raw > 0 else {
            return .rejected(FrameError(.malformedField, "record value: zero", bytesSkipped: 16))
        }
        // The meter's clock, a civil time in its own zone, written as if it were UTC.
        let time = CivilDateTime(utc: Timestamp(millisecondsSinceEpoch: Int64(seconds) * 1000))
        var value = Double(min(raw, 100_000))
        var flags: QualityFlags = []
        let range = OneTouchUltra2Decoder.reportableRange
        if value > Double(range.upperBound) {
            value = Double(range.upperBound)
            flags.insert(.aboveMeasuringRange)
        } else if value < Double(range.lowerBound) {
            value = Double(range.lowerBound)
            flags.insert(.belowMeasuringRange)
        }
        // The record's clock reading is unique per record and survives memory wrap-around,
        // unlike its index: it is the record's sequence, so repeated downloads keep IDs.
        return .samples([VitalSample(vital: .bloodGlucose, quantity: Quantity(value, "mg/dL"), deviceTime: time,
                                     flags: flags, sequence: UInt64(seconds))])
    }
}

/// Reads the meter's side of an Ultra Easy conversation from a capture (`vigilctl decode
/// --protocol onetouch-ultraeasy`): each good packet is a result, a record reply yields its
/// glucose sample, link packets and other replies yield `.samples([])`.
public struct OneTouchUltraEasyDecoder: StreamDecoder {
    private var parser = LifeScanPacketParser()

    public init() {}

    public mutating func decode(_ bytes: some Collection<UInt8>) -> [DecodeResult] {
        parser.feed(bytes).map(Self.result)
    }

    public mutating func finish() -> [DecodeResult] {
        parser.finish().map(Self.result)
    }

    static func result(_ item: LifeScanPacketParser.Item) -> DecodeResult {
        switch item {
        case .rejected(let e): .rejected(e)
        case .packet(let p): UltraEasyRecord.sample(p.message) ?? .samples([])
        }
    }
}

/// The Ultra Easy memory download over the binary link: a link reset (disconnect, answered
/// by acknowledge+disconnect), "read record count" (`05 1F 00 02` → `05 0F nn nn`), then
/// "read record n" (`05 1F n n` → a record) for every record, newest (0) first. Every command
/// is acknowledged by the meter, toggling the sender's sequence bit; every reply is
/// acknowledged by us. A retried attempt resets the link, re-reads the count and resumes at the
/// first record not yet received, so a download that failed half-way is not read twice.
public struct OneTouchUltraEasyDownload: CommandProtocol {
    enum Command: Hashable, Sendable {
        case count
        case record(Int)

        var message: [UInt8] {
            switch self {
            case .count: [0x05, 0x1F, 0x00, 0x02]
            case .record(let n): [0x05, 0x1F, UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF)]
            }
        }
    }

    enum State: Hashable, Sendable {
        case resetting
        case awaitingAck(Command)
        case awaitingReply(Command)
        case done
    }

    private var parser = LifeScanPacketParser()
    private var state = State.resetting
    private var s = false
    private var e = false
    private var total: Int?
    private var nextRecord = 0
    private var delivered: Set<UInt64> = []
    /// The meter holds at most 500 records (the reference driver's bound).
    public static let maxRecords = 500

    public init() {}

    public var isComplete: Bool { state == .done }
    public var packetGap: Duration { .milliseconds(100) }

    public mutating func begin() -> [UInt8] {
        parser = LifeScanPacketParser()
        s = false
        e = false
        state = .resetting
        return LifeScanPacket(link: 0x08).encoded
    }

    public mutating func abandonAttempt() -> [DecodeResult] {
        let cut = parser.finish().compactMap { item -> DecodeResult? in
            if case .rejected(let err) = item { .rejected(err) } else { nil }
        }
        state = .resetting
        return cut
    }

    private var linkBits: UInt8 { (e ? 0x02 : 0) | (s ? 0x01 : 0) }

    private mutating func send(_ command: Command) -> [UInt8] {
        state = .awaitingAck(command)
        return LifeScanPacket(link: linkBits, message: command.message).encoded
    }

    /// What follows a finished command: the next record, or the end.
    private mutating func next() -> [UInt8]? {
        guard let total, nextRecord < total else {
            state = .done
            return nil
        }
        return send(.record(nextRecord))
    }

    public mutating func receive(_ bytes: some Collection<UInt8>) -> (results: [DecodeResult], send: [[UInt8]]) {
        var results: [DecodeResult] = []
        var out: [[UInt8]] = []
        for item in parser.feed(bytes) {
            switch item {
            case .rejected(let err):
                results.append(.rejected(err))
            case .packet(let p):
                handle(p, results: &results, out: &out)
            }
        }
        return (results, out)
    }

    private mutating func protocolError(_ message: String, _ results: inout [DecodeResult]) {
        results.append(.rejected(FrameError(.malformedField, message, bytesSkipped: 0)))
        // Start over: the next attempt resets the link.
        state = .resetting
    }

    private mutating func handle(_ p: LifeScanPacket, results: inout [DecodeResult], out: inout [[UInt8]]) {
        switch state {
        case .resetting:
            guard p.acknowledge, p.disconnect else {
                // Stale bytes from before the reset: ignore until the meter acknowledges it.
                return
            }
            out.append(send(.count))
        case .awaitingAck(let command):
            guard p.acknowledge, !p.disconnect, p.message.isEmpty else {
                protocolError(p.disconnect ? "the meter asked to disconnect" : "the meter did not acknowledge a command", &results)
                return
            }
            s.toggle()
            state = .awaitingReply(command)
        case .awaitingReply(let command):
            guard !p.acknowledge, !p.disconnect else {
                protocolError("a link packet where a reply was expected", &results)
                return
            }
            guard p.sequence == e else {
                protocolError("the reply's sequence bit is not the one expected", &results)
                return
            }
            e = !p.sequence
            out.append(LifeScanPacket(link: 0x04 | linkBits).encoded)
            switch command {
            case .count:
                guard p.message.count == 4, p.message.starts(with: [0x05, 0x0F]) else {
                    protocolError("record count reply: not 05 0F and two bytes", &results)
                    return
                }
                let n = Int(p.message[2]) | Int(p.message[3]) << 8
                guard n <= Self.maxRecords else {
                    protocolError("record count reply: more than \(Self.maxRecords) records", &results)
                    return
                }
                total = n
                results.append(.samples([]))
            case .record(let n):
                guard let result = UltraEasyRecord.sample(p.message) else {
                    protocolError("record \(n) reply: not 05 06 and eight bytes", &results)
                    return
                }
                nextRecord = n + 1
                if case .samples(let samples) = result, let seq = samples.first?.sequence {
                    if delivered.insert(seq).inserted { results.append(result) }
                } else {
                    results.append(result)
                }
            }
            if let packet = next() { out.append(packet) }
        case .done:
            return
        }
    }
}
