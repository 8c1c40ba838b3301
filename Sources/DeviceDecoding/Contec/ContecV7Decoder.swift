public import VitalSigns

/// Contec CMS50D+ / CMS50E / CMS50F, firmware 4.6 and later: the V7.0 packet protocol
/// (``ContecV7Packet``), decoder name `contec-cms50-v7`. Reads the two packet kinds that carry
/// readings; every other well-framed packet (feedback, notices, identifiers) is accepted and
/// gives no result.
///
/// Real-time packets (0x01, about 60 a second once the host sends ``ContecV7Command/startRealtime``):
/// the same emission policy as ``ContecLegacyDecoder`` — one result per 60 consecutive
/// well-formed real-time packets, with the values of the 60th and the union of the 60's
/// flags; any rejected byte restarts the count; `finish()` drops a partial second. No device
/// time (the packet has none). Fields in ``ContecV7Realtime``.
///
/// Stored records (0x0F three per packet, 0x09 one with PI), as a download brings them: one
/// result per record, in order, with device time = the recording's start plus one second per
/// record, and ``ContecV7Storage/sequence(start:index:)``. The protocol has no checksum, so
/// records are read only inside a download's context: a 0x08 storage length, then the 0x07
/// and 0x12 start date and time, for the same user and segment, with no byte rejected since
/// (any rejection forgets the context: the records' places in time would be unknown). Records
/// past the length (the padding of the last packet, §3.3.2.5) give nothing. A storage packet
/// with a value out of range is rejected whole (`.malformedField`), which also ends the
/// context. Random noise would have to form those three packets in a row to yield a record.
public struct ContecV7Decoder: StreamDecoder {
    public static let framesPerEmission = 60

    private var parser = ContecV7PacketParser()
    private var framesInWindow = 0
    private var windowFlags: QualityFlags = []
    /// The storage context: the 0x08 length (user, segment, bytes), then the start date and
    /// time; `start` is `.some` once both arrived valid (`.some(nil)`: the device keeps none).
    private var storage: (user: UInt8, segment: UInt8, bytes: Int)?
    private var startDate: [UInt8]?
    private var start: CivilDateTime??
    private var recordIndex = 0
    /// Well-formed packets accepted since the decoder was made, and their bytes: with the
    /// rejections' `bytesSkipped` they account for every input byte.
    public private(set) var acceptedPackets = 0
    public private(set) var acceptedBytes = 0

    public init() {}

    public mutating func decode(_ bytes: some Collection<UInt8>) -> [DecodeResult] {
        var out: [DecodeResult] = []
        for b in bytes {
            if let p = parser.push(b) { handle(p, into: &out) }
        }
        return out
    }

    public mutating func finish() -> [DecodeResult] {
        var out: [DecodeResult] = []
        parser.finish(into: &out)
        framesInWindow = 0
        windowFlags = []
        forgetStorage()
        return out
    }

    private mutating func forgetStorage() {
        storage = nil
        startDate = nil
        start = nil
        recordIndex = 0
    }

    private mutating func reject(_ p: ContecV7Packet) {
        parser.drop(p, .malformedField)
        framesInWindow = 0
        windowFlags = []
        forgetStorage()
    }

    private mutating func accept(_ p: ContecV7Packet, into out: inout [DecodeResult]) {
        let before = out.count
        parser.flush(into: &out)
        if out.count > before {
            // Bytes were dropped since the last good packet: the second being collected is
            // void, and stored records could no longer be placed in time.
            framesInWindow = 0
            windowFlags = []
            forgetStorage()
        }
        acceptedPackets += 1
        acceptedBytes += p.data.count + 2
    }

    private mutating func handle(_ p: ContecV7Packet, into out: inout [DecodeResult]) {
        typealias U = ContecV7Packet.Uplink
        switch p.type {
        case U.realtime:
            guard let rt = ContecV7Realtime(p) else { return reject(p) }
            accept(p, into: &out)
            framesInWindow += 1
            windowFlags.formUnion(rt.flags)
            if framesInWindow == Self.framesPerEmission {
                out.append(.samples(rt.samples(flags: windowFlags)))
                framesInWindow = 0
                windowFlags = []
            }
        case U.storageDataLength:
            accept(p, into: &out)
            forgetStorage()
            storage = (p.data[0], p.data[1], Int(p.data[2]) | Int(p.data[3]) << 8 | Int(p.data[4]) << 16 | Int(p.data[5]) << 24)
        case U.storageStartDate:
            accept(p, into: &out)
            guard let s = storage, s.user == p.data[0], s.segment == p.data[1] else { return forgetStorage() }
            startDate = p.data
            start = nil
        case U.storageStartTime:
            let begun = startDate.flatMap { ContecV7Storage.start(date: $0, time: p.data) }
            if startDate != nil, begun == nil { return reject(p) }
            // Accept first: a rejection pending since the 0x08 forgets the context.
            accept(p, into: &out)
            guard let s = storage, s.user == p.data[0], s.segment == p.data[1], let begun else { return forgetStorage() }
            start = .some(begun)
            recordIndex = 0
        case U.storageData, U.storageDataWithPI:
            let records = ContecV7Storage.records(p)
            guard records.allSatisfy({ ContecV7Storage.valid(spo2: $0.spo2, pi: $0.pi) }) else { return reject(p) }
            accept(p, into: &out)
            guard let s = storage, let begun = start else { return }
            let total = min(s.bytes / ContecV7Storage.recordBytes(p.type), ContecV7Storage.maxRecords)
            for r in records {
                defer { recordIndex += 1 }
                guard recordIndex < total else { continue }
                out.append(.samples(ContecV7Storage.samples(
                    spo2: r.spo2, pulseRate: r.pulseRate, pi: r.pi,
                    time: ContecV7Storage.time(start: begun, index: recordIndex),
                    sequence: ContecV7Storage.sequence(start: begun, index: recordIndex))))
            }
        default:
            accept(p, into: &out)
        }
    }
}

/// A V7.0 real-time packet (type 0x01, seven data bytes; V7.0 §3.3.2.1 Table 3, data byte n
/// here is the spec's byte n + 2):
///
///     data 0  bits 3–0 signal strength 0–8; bit 4 searching too long; bit 5 low SpO2;
///             bit 6 pulse beep; bit 7 probe error ("Finger Out")
///     data 1  bits 6–0 plethysmogram 0–127; bit 7 searching for pulse
///     data 2  bits 3–0 bar graph 0–15; bit 4 PI invalid (1) / valid (0); bits 7–5 zero
///     data 3  pulse rate, /min, valid 1–254, 0xFF no value
///     data 4  SpO2, %, valid 1–100, 0x7F no value
///     data 5–6  PI × 100, little-endian, valid 1–2200 (0.01–22 %), 0xFFFF no value
///
/// timegrid/CMS50Dplus7 reads the same bit positions but names data 2 bit 4 "pi_valid"; the
/// V7.0 text says 1 = invalid, which this decoder follows (unverified on a device).
public struct ContecV7Realtime: Sendable, Hashable {
    /// PI above this (× 100, so 22 %) is out of the protocol's range (Table 3).
    public static let maxPI: UInt16 = 2200
    /// Signal strength (0–8) below this raises `lowSignal` (a Vigil choice, as the legacy
    /// decoder's 3 of 15: the protocol gives the field, not a threshold).
    public static let lowSignalBelow: UInt8 = 2

    public var status: UInt8
    public var pleth: UInt8
    public var bar: UInt8
    public var pulseRate: UInt8
    public var spo2: UInt8
    public var pi: UInt16

    /// Nil when a field is outside its range (SpO2 101–126 or above 127, PI 2201–65534,
    /// signal strength above 8 or nonzero reserved bits are not malformed: the spec says
    /// strength is clamped to 8 and the reserved bits mean nothing).
    public init?(_ p: ContecV7Packet) {
        guard p.type == ContecV7Packet.Uplink.realtime, p.data.count == 7 else { return nil }
        status = p.data[0]
        pleth = p.data[1]
        bar = p.data[2]
        pulseRate = p.data[3]
        spo2 = p.data[4]
        pi = UInt16(p.data[5]) | UInt16(p.data[6]) << 8
        guard spo2 <= 100 || spo2 == 0x7F else { return nil }
        guard pi <= Self.maxPI || pi == 0xFFFF else { return nil }
    }

    public var signalStrength: UInt8 { status & 0x0F }
    public var probeError: Bool { status & 0x80 != 0 }
    public var searchingTooLong: Bool { status & 0x10 != 0 }
    public var lowSpO2: Bool { status & 0x20 != 0 }
    public var pulseBeep: Bool { status & 0x40 != 0 }
    public var searchingPulse: Bool { pleth & 0x80 != 0 }
    public var piInvalid: Bool { bar & 0x10 != 0 }

    /// probe error → sensorOff; searching for pulse or searching too long → searching;
    /// signal strength below ``lowSignalBelow`` → lowSignal. Low SpO2 (the device's own
    /// alarm, "Ignoring" in Table 3) and the pulse beep are not quality flags. The protocol
    /// has no artifact or perfusion bit.
    public var flags: QualityFlags {
        var f: QualityFlags = []
        if probeError { f.insert(.sensorOff) }
        if searchingPulse || searchingTooLong { f.insert(.searching) }
        if signalStrength < Self.lowSignalBelow { f.insert(.lowSignal) }
        return f
    }

    /// Pulse rate, SpO2, PI (the packet's order), each omitted when the packet reports it
    /// missing (pulse rate 0/0xFF, SpO2 0/0x7F, PI 0/0xFFFF or the PI-invalid bit).
    public func samples(flags: QualityFlags) -> [VitalSample] {
        var out: [VitalSample] = []
        if pulseRate != 0 && pulseRate != 0xFF {
            out.append(VitalSample(vital: .pulseRate, quantity: Quantity(Double(pulseRate), Vital.pulseRate.unit),
                                   deviceTime: nil, flags: flags))
        }
        if spo2 != 0 && spo2 != 0x7F {
            out.append(VitalSample(vital: .spo2, quantity: Quantity(Double(spo2), Vital.spo2.unit), deviceTime: nil, flags: flags))
        }
        if !piInvalid && pi != 0 && pi != 0xFFFF {
            out.append(VitalSample(vital: .perfusionIndex, quantity: Quantity(Double(pi) / 100, Vital.perfusionIndex.unit),
                                   deviceTime: nil, flags: flags))
        }
        return out
    }
}
