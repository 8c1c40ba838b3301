public import VitalSigns

/// One packet of Contec's "Communication protocol of pulse oximeter V7.0" (2010-07-08), spoken
/// by the CMS50D+ / CMS50E / CMS50F from firmware 4.6 on, at 115200 baud, 8 data bits, no
/// parity, 1 stop bit (V7.0 §2.2):
///
///     byte 0   type, bit 7 = 0 (0x01…0x15 device → host, 0x7D host → device)
///     byte 1   high byte, bit 7 = 1; bit i carries bit 7 of data byte i
///     byte 2…  data bytes, bit 7 = 1 (the real bit 7 is in the high byte)
///
/// The length is fixed by the type (V7.0 §3.3.1 Table 2; Brad Martin's `cms50.py` (2019) reads
/// the same lengths). The protocol has no checksum ("assumes that data sending is correct",
/// V7.0 §2). `data` holds the data bytes with their bit 7 restored.
public struct ContecV7Packet: Sendable, Hashable {
    public var type: UInt8
    public var data: [UInt8]

    public init(type: UInt8, data: [UInt8]) {
        self.type = type
        self.data = data
    }

    /// The packet on the wire: type, high byte, data bytes with bit 7 set.
    public var encoded: [UInt8] {
        var high: UInt8 = 0x80
        for (i, b) in data.prefix(7).enumerated() where b & 0x80 != 0 { high |= 1 << UInt8(i) }
        return [type & 0x7F, high] + data.prefix(7).map { $0 | 0x80 }
    }

    /// Device → host packet types (V7.0 Table 2).
    public enum Uplink {
        public static let realtime: UInt8 = 0x01
        public static let deviceIdentifiers: UInt8 = 0x04
        public static let userInformation: UInt8 = 0x05
        public static let storageStartDate: UInt8 = 0x07
        public static let storageDataLength: UInt8 = 0x08
        public static let storageDataWithPI: UInt8 = 0x09
        public static let storageSegmentAmount: UInt8 = 0x0A
        public static let commandFeedback: UInt8 = 0x0B
        public static let freeFeedback: UInt8 = 0x0C
        public static let disconnectNotice: UInt8 = 0x0D
        public static let piIdentifiers: UInt8 = 0x0E
        public static let storageData: UInt8 = 0x0F
        public static let userAmount: UInt8 = 0x10
        public static let deviceNotice: UInt8 = 0x11
        public static let storageStartTime: UInt8 = 0x12
        public static let storageDataIdentifiers: UInt8 = 0x15
    }

    /// Host → device packet types (V7.0 Table 2): 0x04 sets the device id, 0x7D carries a
    /// command (Table 7) and six bytes of arguments, unused ones 0x00.
    public enum Downlink {
        public static let setDeviceIdentifier: UInt8 = 0x04
        public static let control: UInt8 = 0x7D
    }

    /// Data bytes of a device → host packet, by type (Table 2's length minus type and high
    /// byte); nil for a type the device never sends.
    public static func uplinkDataLength(_ type: UInt8) -> Int? {
        switch type {
        case 0x01, 0x04, 0x05, 0x11, 0x15: 7
        case 0x07, 0x08, 0x0F, 0x12: 6
        case 0x09: 4
        case 0x0A, 0x0B: 2
        case 0x0D, 0x0E, 0x10: 1
        case 0x0C: 0
        default: nil
        }
    }

    /// Data bytes of a host → device packet, by type.
    public static func downlinkDataLength(_ type: UInt8) -> Int? {
        type == Downlink.control || type == Downlink.setDeviceIdentifier ? 7 : nil
    }
}

/// Host commands (V7.0 §3.3.2.7 Table 7), each a 9-byte 0x7D packet.
public enum ContecV7Command {
    public static let startRealtime: UInt8 = 0xA1
    public static let stopRealtime: UInt8 = 0xA2
    public static let querySegmentAmount: UInt8 = 0xA3
    public static let queryStorageLength: UInt8 = 0xA4
    public static let queryStorageStart: UInt8 = 0xA5
    public static let queryStorageData: UInt8 = 0xA6
    public static let stopStorageData: UInt8 = 0xA7
    public static let queryDeviceIdentifiers: UInt8 = 0xAA
    public static let queryPISupport: UInt8 = 0xAC
    public static let queryUserAmount: UInt8 = 0xAD
    /// "Inform device being connected", once per 5 s (Table 7).
    public static let keepAlive: UInt8 = 0xAF

    /// A control packet: the command, then its arguments, padded with 0x00 to six (Table 7
    /// note 4: the packet is always 9 bytes; a pad byte goes out as 0x80).
    public static func packet(_ command: UInt8, _ arguments: [UInt8] = []) -> ContecV7Packet {
        let args = Array(arguments.prefix(6))
        return ContecV7Packet(type: ContecV7Packet.Downlink.control,
                              data: [command] + args + [UInt8](repeating: 0, count: 6 - args.count))
    }
}

/// Splits a V7.0 byte stream into packets. Resynchronises at any byte: a byte with bit 7
/// clear always starts a new packet (cutting one still open: `.truncated`); a data byte
/// outside a packet, or a type byte no packet has, is `.garbage`. Dropped bytes accumulate
/// in one ``RejectionRun`` (precedence malformedField > truncated > garbage) that is
/// reported when the next good packet is accepted (``flush(into:)``) or at ``finish(into:)``.
public struct ContecV7PacketParser: Sendable {
    public enum Direction: Sendable { case uplink, downlink }
    public enum Item: Sendable, Hashable {
        case packet(ContecV7Packet)
        case rejected(FrameError)
    }

    private let direction: Direction
    /// The raw bytes of the packet being collected (type first); empty between packets.
    private var raw: [UInt8] = []
    private var expected = 0
    private var run = RejectionRun(precedence: [.malformedField, .truncated, .garbage])

    public init(direction: Direction = .uplink) {
        self.direction = direction
        raw.reserveCapacity(9)
    }

    private func dataLength(_ type: UInt8) -> Int? {
        direction == .uplink ? ContecV7Packet.uplinkDataLength(type) : ContecV7Packet.downlinkDataLength(type)
    }

    /// One byte; returns the packet it completes. Framing rejections go into the run.
    public mutating func push(_ byte: UInt8) -> ContecV7Packet? {
        if byte & 0x80 == 0 {
            if !raw.isEmpty {
                run.add(raw.count, .truncated)
                raw.removeAll(keepingCapacity: true)
            }
            guard let n = dataLength(byte) else {
                run.add(1, .garbage)
                return nil
            }
            raw.append(byte)
            expected = n + 2
            return nil
        }
        guard !raw.isEmpty else {
            run.add(1, .garbage)
            return nil
        }
        raw.append(byte)
        guard raw.count == expected else { return nil }
        let high = raw[1]
        var data: [UInt8] = []
        data.reserveCapacity(expected - 2)
        for i in 0..<(expected - 2) {
            // V7.0 §3.2: bit 7 of data byte i travels as bit i of the high byte.
            data.append(raw[i + 2] & 0x7F | ((high >> UInt8(i)) & 1) << 7)
        }
        let packet = ContecV7Packet(type: raw[0], data: data)
        raw.removeAll(keepingCapacity: true)
        return packet
    }

    /// Counts a whole packet the caller refused (a field out of range) into the run.
    public mutating func drop(_ packet: ContecV7Packet, _ code: FrameError.Code) {
        run.add(packet.data.count + 2, code)
    }

    /// Reports the run of dropped bytes, if any (call before acting on an accepted packet).
    public mutating func flush(into out: inout [DecodeResult]) {
        let rejection = run.flush { code in
            switch code {
            case .malformedField: "a packet with a field outside its range (V7.0 Table 3, Table 2)"
            case .truncated: "a packet was cut short by a type byte or the end of the stream"
            default: "bytes that start no packet (a data byte outside a packet, or an unknown type)"
            }
        }
        if let rejection { out.append(rejection) }
    }

    /// The stream ended: a packet still open is truncated; the run is reported; the parser
    /// is ready for the next connection.
    public mutating func finish(into out: inout [DecodeResult]) {
        if !raw.isEmpty {
            run.add(raw.count, .truncated)
            raw.removeAll(keepingCapacity: true)
        }
        flush(into: &out)
    }

    /// Convenience for a caller that accepts every well-framed packet: packets and the
    /// rejections between them, in order.
    public mutating func feed(_ bytes: some Collection<UInt8>) -> [Item] {
        var items: [Item] = []
        for b in bytes {
            guard let p = push(b) else { continue }
            var r: [DecodeResult] = []
            flush(into: &r)
            for case .rejected(let e) in r { items.append(.rejected(e)) }
            items.append(.packet(p))
        }
        return items
    }
}

/// A V7.0 stored record (§3.3.2.5): SpO2 and pulse rate, and the perfusion index in 0x09
/// packets; one record a second from the recording's start (the rate every source assumes:
/// timegrid/CMS50Dplus7's 1 s storage interval, Brad Martin's relative time in seconds,
/// Tommi Airikka's "1Hz"; V7.0 itself does not state it).
public enum ContecV7Storage {
    /// Records past this index are not read: their sequences would repeat (11.5 days at
    /// one a second, far more than the devices store), so a 0x08 length beyond it is refused.
    public static let maxRecords = 1_000_000

    /// The deterministic sequence of stored record `index` of a recording that started at
    /// `start` (device civil time, read as if UTC): start seconds since 1970 × 1 000 000 +
    /// index (so it reads in decimal, and stays below 2^53 for JSON consumers until 2255);
    /// the bare index when the device gave no start time. Indexes wrap at 1 000 000 (11.5
    /// days of records; the devices hold at most a few days). The same record of the same
    /// recording gets the same sequence on every download.
    public static func sequence(start: CivilDateTime?, index: Int) -> UInt64 {
        let i = UInt64(truncatingIfNeeded: max(index, 0)) % 1_000_000
        guard let start else { return i }
        let seconds = start.timestamp(utcOffsetSeconds: 0).millisecondsSinceEpoch / 1000
        return UInt64(truncatingIfNeeded: max(seconds, 0)) &* 1_000_000 &+ i
    }

    /// The device time of record `index`: the start plus `index` seconds.
    public static func time(start: CivilDateTime?, index: Int) -> CivilDateTime? {
        guard let start else { return nil }
        return CivilDateTime(utc: start.timestamp(utcOffsetSeconds: 0).adding(seconds: Int64(index)))
    }

    /// The start date and time from a 0x07 packet (user, segment, year high, year low, month,
    /// day) and a 0x12 packet (user, segment, hour, minute, second, unused). All zero means
    /// the device keeps no start time (Table 2 note 2): `.some(nil)`. Out of range: nil.
    public static func start(date: [UInt8], time: [UInt8]) -> CivilDateTime?? {
        guard date.count == 6, time.count == 6 else { return nil }
        if date[2...5].allSatisfy({ $0 == 0 }) && time[2...4].allSatisfy({ $0 == 0 }) { return .some(nil) }
        // Table 2 note 3: 2010 is sent as 20, 10 (binary, not BCD).
        let t = CivilDateTime(year: Int(date[2]) * 100 + Int(date[3]), month: Int(date[4]), day: Int(date[5]),
                              hour: Int(time[2]), minute: Int(time[3]), second: Int(time[4]))
        return t.isValid && date[2] <= 99 && date[3] <= 99 ? .some(t) : nil
    }

    /// Whether a stored value is in range: SpO2 0–100 or 127, pulse rate any byte, PI 0–2200
    /// or 0xFFFF.
    static func valid(spo2: UInt8, pi: UInt16?) -> Bool {
        guard spo2 <= 100 || spo2 == 0x7F else { return false }
        if let pi, pi > ContecV7Realtime.maxPI && pi != 0xFFFF { return false }
        return true
    }

    /// A stored record's samples in the device's order (SpO2, pulse rate, PI), without the
    /// values it reports as missing (SpO2 0/127, pulse rate 0/255, PI 0/0xFFFF: the markers
    /// Brad Martin's driver masks).
    static func samples(spo2: UInt8, pulseRate: UInt8, pi: UInt16?, time: CivilDateTime?, sequence: UInt64) -> [VitalSample] {
        var out: [VitalSample] = []
        if spo2 != 0 && spo2 != 0x7F {
            out.append(VitalSample(vital: .spo2, quantity: Quantity(Double(spo2), Vital.spo2.unit), deviceTime: time, sequence: sequence))
        }
        if pulseRate != 0 && pulseRate != 0xFF {
            out.append(VitalSample(vital: .pulseRate, quantity: Quantity(Double(pulseRate), Vital.pulseRate.unit),
                                   deviceTime: time, sequence: sequence))
        }
        if let pi, pi != 0 && pi != 0xFFFF {
            out.append(VitalSample(vital: .perfusionIndex, quantity: Quantity(Double(pi) / 100, Vital.perfusionIndex.unit),
                                   deviceTime: time, sequence: sequence))
        }
        return out
    }

    /// The records a storage packet carries: three (SpO2, pulse rate) pairs in 0x0F, one
    /// (SpO2, pulse rate, PI little-endian) in 0x09.
    static func records(_ p: ContecV7Packet) -> [(spo2: UInt8, pulseRate: UInt8, pi: UInt16?)] {
        switch p.type {
        case ContecV7Packet.Uplink.storageData where p.data.count == 6:
            return stride(from: 0, to: 6, by: 2).map { (p.data[$0], p.data[$0 + 1], nil) }
        case ContecV7Packet.Uplink.storageDataWithPI where p.data.count == 4:
            return [(p.data[0], p.data[1], UInt16(p.data[2]) | UInt16(p.data[3]) << 8)]
        default:
            return []
        }
    }

    /// Bytes one record takes in the 0x08 storage data length (2 without PI, 4 with; the
    /// length counts bytes, as Brad Martin's driver reads it: unverified against a device).
    static func recordBytes(_ type: UInt8) -> Int { type == ContecV7Packet.Uplink.storageDataWithPI ? 4 : 2 }
}
