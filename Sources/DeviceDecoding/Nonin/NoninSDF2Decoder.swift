public import VitalSigns

/// Nonin "Serial Data Format #2" (OEM III module, Xpod, 3012 and other 8000-series OEM
/// boards): a binary stream at 9600 8N1, 75 frames a second, 25 frames to a packet
/// (one packet every 1/3 s).
///
/// A frame is five bytes (sources and the full table in `firmware-fixtures/README.md`):
///
///     byte 1  START  always 0x01
///     byte 2  STATUS bit 7 always 1; SNSD, ARTF, OOT, SNSA, RPRF/YPRF/GPRF, bit 0 SYNC
///     byte 3  PLETH  plethysmogram sample (0–255), not decoded into vitals
///     byte 4  DATA   depends on the frame's position in the packet (``NoninSDF2Frame``)
///     byte 5  CHK    (byte 1 + byte 2 + byte 3 + byte 4) mod 256
///
/// The first frame of a packet has SYNC set; the other 24 have it clear. One packet gives
/// at most two samples, in the device's field order: pulse rate (frames 1–2, 9 bits,
/// 4-beat average, /min) and SpO2 (frame 3, 7 bits, 4-beat average, %). 511 (pulse rate)
/// and 127 (SpO2) mean "no value" and give no sample. The format has no clock:
/// `deviceTime` is nil. The quality flags are the union over the packet's 25 STATUS bytes
/// (``NoninStatusBit``).
///
/// Framing: the decoder locks onto a SYNC frame (start byte, STATUS bit 7 and checksum
/// valid, SYNC set) and then reads aligned frames. A packet is accepted only if all 25 of
/// its frames are valid; one bad frame rejects the packet as a whole and the decoder
/// searches, one byte at a time, for the next SYNC frame. Everything dropped between two
/// packets is reported as one rejection: `.checksum` if a locked frame had a good start
/// byte and STATUS but a wrong check byte, else `.garbage` if any byte was skipped that
/// starts no valid frame, else `.truncated` (only whole valid frames of a packet whose
/// start was missed or that was cut short).
public struct NoninSDF2Decoder: StreamDecoder {
    public static let frameLength = 5
    public static let framesPerPacket = 25
    public static let startByte: UInt8 = 0x01
    /// SpO2 "no value" (7 bits all set).
    public static let missingSpO2 = 127
    /// Pulse rate "no value" (9 bits all set).
    public static let missingPulseRate = 511

    private enum Mode { case hunting, locked }

    /// Unconsumed bytes; at most `frameLength - 1` remain between calls.
    private var window: [UInt8] = []
    private var mode: Mode = .hunting
    /// Frames of the packet being collected (0: between packets, expecting SYNC).
    private var packet: [NoninSDF2Frame] = []
    /// The run of dropped bytes not yet reported, and the worst reason seen in it.
    private var run = RejectionRun(precedence: [.checksum, .garbage, .truncated])

    public init() {
        window.reserveCapacity(Self.frameLength * 2)
        packet.reserveCapacity(Self.framesPerPacket)
    }

    public mutating func decode(_ bytes: some Collection<UInt8>) -> [DecodeResult] {
        var out: [DecodeResult] = []
        // Byte at a time, so every decision happens at the same logical point whatever the
        // chunking.
        for byte in bytes {
            window.append(byte)
            while window.count >= Self.frameLength { step(into: &out) }
        }
        return out
    }

    public mutating func finish() -> [DecodeResult] {
        var out: [DecodeResult] = []
        switch mode {
        case .locked:
            let n = packet.count * Self.frameLength + window.count
            if n > 0 {
                out.append(.rejected(FrameError(.truncated, "the stream ended inside a packet", bytesSkipped: n)))
            }
        case .hunting:
            if !window.isEmpty {
                note(window.count, window.first == Self.startByte ? .truncated : .garbage)
            }
            flushRun(into: &out)
        }
        window.removeAll(keepingCapacity: true)
        packet.removeAll(keepingCapacity: true)
        mode = .hunting
        run.reset()
        return out
    }

    // MARK: - Framing

    /// Consumes the frame, or the byte, at the start of `window` (which holds ≥ 5 bytes).
    private mutating func step(into out: inout [DecodeResult]) {
        let check = NoninSDF2Frame.validate(window[0], window[1], window[2], window[3], window[4])
        switch mode {
        case .locked:
            guard case .valid(let frame) = check else {
                // The packet is lost. Its frames so far join the dropped run; the bad
                // bytes are re-scanned one at a time while hunting.
                note(packet.count * Self.frameLength, check == .badChecksum ? .checksum : .garbage)
                packet.removeAll(keepingCapacity: true)
                mode = .hunting
                return
            }
            if frame.isSync {
                if !packet.isEmpty {
                    out.append(.rejected(FrameError(.truncated, "a packet ended before its 25th frame",
                                                    bytesSkipped: packet.count * Self.frameLength)))
                    packet.removeAll(keepingCapacity: true)
                }
            } else if packet.isEmpty {
                // A valid frame where a packet should start: alignment to packets is lost.
                mode = .hunting
                return
            }
            packet.append(frame)
            window.removeFirst(Self.frameLength)
            if packet.count == Self.framesPerPacket {
                out.append(Self.decodePacket(packet))
                packet.removeAll(keepingCapacity: true)
            }
        case .hunting:
            switch check {
            case .valid(let frame) where frame.isSync:
                flushRun(into: &out)
                mode = .locked
            case .valid:
                note(Self.frameLength, .truncated)
                window.removeFirst(Self.frameLength)
            case .badChecksum, .notAFrame:
                note(1, .garbage)
                window.removeFirst()
            }
        }
    }

    /// Adds dropped bytes to the current run, keeping the most telling reason
    /// (checksum > garbage > truncated).
    private mutating func note(_ bytes: Int, _ code: FrameError.Code) {
        run.add(bytes, code)
    }

    private mutating func flushRun(into out: inout [DecodeResult]) {
        let rejection = run.flush { code in
            switch code {
            case .checksum: "a frame's check byte did not match; its packet was dropped"
            case .truncated: "frames of a packet whose start was missed or that was cut short"
            default: "bytes that start no frame"
            }
        }
        if let rejection { out.append(rejection) }
    }

    // MARK: - Packet contents

    /// Turns 25 valid frames (the first with SYNC) into samples.
    static func decodePacket(_ frames: [NoninSDF2Frame]) -> DecodeResult {
        guard frames.count == framesPerPacket else {
            return .rejected(FrameError(.truncated, "a packet ended before its 25th frame", bytesSkipped: frames.count * frameLength))
        }
        let fields = NoninSDF2Packet(frames: frames)
        var flags: QualityFlags = []
        for f in frames { flags.formUnion(NoninStatusBit.flags(for: f.status)) }
        var samples: [VitalSample] = []
        if fields.pulseRate != missingPulseRate {
            samples.append(VitalSample(vital: .pulseRate, quantity: Quantity(Double(fields.pulseRate), Vital.pulseRate.unit),
                                       deviceTime: nil, flags: flags))
        }
        if fields.spo2 != missingSpO2 {
            guard fields.spo2 <= 100 else {
                return .rejected(FrameError(.malformedField, "field SpO2 (frame 3): outside 0–100",
                                            bytesSkipped: framesPerPacket * frameLength))
            }
            samples.append(VitalSample(vital: .spo2, quantity: Quantity(Double(fields.spo2), Vital.spo2.unit),
                                       deviceTime: nil, flags: flags))
        }
        return .samples(samples)
    }
}

/// One five-byte frame that passed the start-byte, STATUS bit 7 and checksum tests.
struct NoninSDF2Frame: Sendable, Hashable {
    var status: UInt8
    var pleth: UInt8
    var data: UInt8

    /// STATUS bit 0: the first frame of a packet.
    var isSync: Bool { status & NoninStatusBit.sync.rawValue != 0 }

    enum Check: Hashable {
        case valid(NoninSDF2Frame)
        /// Start byte and STATUS bit 7 right, check byte wrong: a corrupted frame.
        case badChecksum
        /// Not the shape of a frame at all.
        case notAFrame
    }

    static func validate(_ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) -> Check {
        guard b1 == NoninSDF2Decoder.startByte, b2 & NoninStatusBit.alwaysSet.rawValue != 0 else { return .notAFrame }
        guard b1 &+ b2 &+ b3 &+ b4 == b5 else { return .badChecksum }
        return .valid(NoninSDF2Frame(status: b2, pleth: b3, data: b4))
    }
}

/// The DATA bytes of one packet, by frame position (1-based, OEM III "Serial Data Format #2").
///
/// Decoded but not emitted: SREV (frame 4), timer (6–7), STAT2 (8), SpO2-D (9), SpO2 Fast
/// (10), SpO2 B-B (11), E-HR (14–15), E-SpO2 (16), E-SpO2-D (17), HR-D (20–21),
/// E-HR-D (22–23). Vigil emits only the standard 4-beat averages; the others are display
/// or extended-averaging variants of the same two vitals.
struct NoninSDF2Packet: Sendable, Hashable {
    var pulseRate: Int
    var spo2: Int
    var firmwareRevision: UInt8
    var timer: Int
    var stat2: UInt8
    var spo2Display: Int
    var spo2Fast: Int
    var spo2BeatToBeat: Int
    var extendedPulseRate: Int
    var extendedSpO2: Int
    var extendedSpO2Display: Int
    var pulseRateDisplay: Int
    var extendedPulseRateDisplay: Int

    /// `frames` holds exactly 25 frames.
    init(frames f: [NoninSDF2Frame]) {
        /// A 9-bit value: bits 8–7 in bits 1–0 of the MSB frame, bits 6–0 in the LSB frame.
        func nine(_ msb: Int) -> Int { Int(f[msb].data & 0x03) << 7 | Int(f[msb + 1].data & 0x7F) }
        func seven(_ i: Int) -> Int { Int(f[i].data & 0x7F) }
        pulseRate = nine(0)
        spo2 = seven(2)
        firmwareRevision = f[3].data
        timer = nine(5)
        stat2 = f[7].data
        spo2Display = seven(8)
        spo2Fast = seven(9)
        spo2BeatToBeat = seven(10)
        extendedPulseRate = nine(13)
        extendedSpO2 = seven(15)
        extendedSpO2Display = seven(16)
        pulseRateDisplay = nine(19)
        extendedPulseRateDisplay = nine(21)
    }
}

/// STATUS byte bits (byte 2 of every frame) and the Vigil flags they raise.
public struct NoninStatusBit: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Bit 7: always 1 (framing aid).
    public static let alwaysSet = NoninStatusBit(rawValue: 0x80)
    /// Bit 6 SNSD: sensor disconnected or inoperable.
    public static let sensorDisconnect = NoninStatusBit(rawValue: 0x40)
    /// Bit 5 ARTF: a detected beat did not match the current pulse interval.
    public static let artifact = NoninStatusBit(rawValue: 0x20)
    /// Bit 4 OOT: out of track, an absence of consecutive good pulse signals.
    public static let outOfTrack = NoninStatusBit(rawValue: 0x10)
    /// Bit 3 SNSA: sensor alarm, the sensor is providing unusable data.
    public static let sensorAlarm = NoninStatusBit(rawValue: 0x08)
    /// Bit 2 alone RPRF: red perfusion, low or no pulse signal (only during a pulse).
    public static let redPerfusion = NoninStatusBit(rawValue: 0x04)
    /// Bit 1 alone GPRF: green perfusion, good pulse signal (only during a pulse).
    public static let greenPerfusion = NoninStatusBit(rawValue: 0x02)
    /// Bit 0 SYNC: the first frame of a packet.
    public static let sync = NoninStatusBit(rawValue: 0x01)

    /// Bits 2 and 1 together (YPRF): yellow perfusion, low/marginal pulse signal.
    static let perfusionMask: UInt8 = 0x06

    /// The Vigil flags one STATUS byte raises (table in `firmware-fixtures/README.md`).
    public static func flags(for status: UInt8) -> QualityFlags {
        var flags: QualityFlags = []
        if status & sensorDisconnect.rawValue != 0 { flags.insert(.sensorOff) }
        if status & artifact.rawValue != 0 { flags.insert(.artifact) }
        if status & outOfTrack.rawValue != 0 { flags.insert(.searching) }
        if status & sensorAlarm.rawValue != 0 { flags.insert(.sensorFault) }
        switch status & perfusionMask {
        case 0x04, 0x06: flags.insert(.lowPerfusion)  // red (low/none) or yellow (low/marginal)
        default: break  // 0x02 green (good) or 0x00 (no indication outside a pulse)
        }
        return flags
    }
}
