public import VitalSigns

/// Contec CMS50D+ / CMS50E / CMS50F legacy live ("real-time") protocol: a binary stream of
/// five-byte frames, 60 frames a second, at 19200 baud, 8 data bits, odd parity, 1 stop bit
/// (firmware before 4.6; sources and the full table in `firmware-fixtures/README.md`).
///
///     byte 1  bit 7 = 1 (sync); bit 6 pulse beep; bit 5 SpO2 dropping;
///             bit 4 finger out; bits 3–0 signal strength (0–15)
///     byte 2  bit 7 = 0; bits 6–0 plethysmogram sample (not decoded into vitals)
///     byte 3  bit 7 = 0; bit 6 pulse rate bit 7; bit 5 searching for pulse;
///             bit 4 probe error; bits 3–0 bar graph (pulse amplitude)
///     byte 4  bit 7 = 0; bits 6–0 pulse rate bits 6–0 (/min; 0 and 255 = no value)
///     byte 5  bit 7 = 0; bits 6–0 SpO2 (%; 0 and 127 = no value; 101–126 malformed)
///
/// Emission policy (the device repeats its displayed values in every frame, 60 times a
/// second; Vigil wants at most one reading a second): the decoder counts consecutive
/// well-formed frames and emits one result on every 60th (``framesPerEmission``), so at most
/// one per second of frames, decided from the byte stream alone. The result carries the
/// values of that 60th frame (the device's current display) and the union of the quality
/// flags of the 60 frames, so a flag raised for a single frame is never lost. A value the
/// 60th frame reports as "no value" gives no sample (`.samples([])` when neither is
/// valid). Any rejected byte restarts the count: the protocol has no checksum, and about
/// one 5-byte window in 32 of random noise is frame-shaped, but 60 of them back to back
/// never occur by chance, so line noise alone cannot produce a reading. `finish()` drops a
/// partial second without a result. The format has no clock: `deviceTime` is nil.
///
/// Framing: a byte with bit 7 set starts a frame; the next four must have bit 7 clear.
/// A bit-7-set byte before the frame is complete cuts it (`.truncated`) and starts the next
/// one; bit-7-clear bytes outside a frame start nothing (`.garbage`); a complete frame with
/// SpO2 101–126 is `.malformedField`. Everything dropped between two well-formed frames is
/// reported as one rejection, its code by precedence malformedField > garbage > truncated.
/// Nothing from a rejected frame counts towards an emission.
public struct ContecLegacyDecoder: StreamDecoder {
    public static let frameLength = 5
    /// One emission per this many well-formed frames: one second at the device's 60 Hz.
    public static let framesPerEmission = 60
    /// Flags ``ContecSyncByteBit/signalStrengthMask`` values below this as `lowSignal`
    /// (a Vigil choice: the sources give the field, not a threshold).
    public static let lowSignalBelow: UInt8 = 3

    /// The frame being collected (starts with a bit-7-set byte); empty between frames.
    private var frame: [UInt8] = []
    /// Consecutive well-formed frames since the last emission or rejection, and the union
    /// of their flags.
    private var framesInWindow = 0
    private var windowFlags: QualityFlags = []
    /// The run of dropped bytes not yet reported, and the worst reason seen in it.
    private var run = RejectionRun(precedence: [.malformedField, .garbage, .truncated])
    /// Well-formed frames accepted since the decoder was made (not reset by `finish()`):
    /// with the rejections' `bytesSkipped` it accounts for every input byte.
    public private(set) var acceptedFrames = 0

    public init() {
        frame.reserveCapacity(Self.frameLength)
    }

    public mutating func decode(_ bytes: some Collection<UInt8>) -> [DecodeResult] {
        var out: [DecodeResult] = []
        // Byte at a time, so every decision happens at the same point whatever the chunking.
        for byte in bytes { step(byte, into: &out) }
        return out
    }

    public mutating func finish() -> [DecodeResult] {
        var out: [DecodeResult] = []
        if !frame.isEmpty {
            note(frame.count, .truncated)
            frame.removeAll(keepingCapacity: true)
        }
        flushRun(into: &out)
        framesInWindow = 0
        windowFlags = []
        return out
    }

    // MARK: - Framing

    private mutating func step(_ byte: UInt8, into out: inout [DecodeResult]) {
        if byte & 0x80 != 0 {
            // A sync byte always starts a frame; a frame still open is cut short.
            if !frame.isEmpty {
                note(frame.count, .truncated)
                frame.removeAll(keepingCapacity: true)
            }
            frame.append(byte)
            return
        }
        guard !frame.isEmpty else {
            note(1, .garbage)
            return
        }
        frame.append(byte)
        guard frame.count == Self.frameLength else { return }
        let parsed = ContecLegacyFrame(frame[0], frame[1], frame[2], frame[3], frame[4])
        frame.removeAll(keepingCapacity: true)
        guard parsed.spo2 <= 100 || parsed.spo2 == ContecLegacyFrame.missingSpO2 else {
            note(Self.frameLength, .malformedField)
            return
        }
        flushRun(into: &out)
        acceptedFrames += 1
        framesInWindow += 1
        windowFlags.formUnion(parsed.flags)
        if framesInWindow == Self.framesPerEmission {
            out.append(.samples(parsed.samples(flags: windowFlags)))
            framesInWindow = 0
            windowFlags = []
        }
    }

    private mutating func note(_ bytes: Int, _ code: FrameError.Code) {
        // A break in the frame sequence: the second being collected is void (see the
        // emission policy above).
        framesInWindow = 0
        windowFlags = []
        run.add(bytes, code)
    }

    private mutating func flushRun(into out: inout [DecodeResult]) {
        let rejection = run.flush { code in
            switch code {
            case .malformedField: "field SpO2 (byte 5): outside 0–100 and not the no-value marker"
            case .truncated: "a frame was cut short by a sync byte or the end of the stream"
            default: "bytes with bit 7 clear outside a frame"
            }
        }
        if let rejection { out.append(rejection) }
    }
}

/// One well-formed five-byte legacy frame (byte 1 bit 7 set, bytes 2–5 bit 7 clear).
public struct ContecLegacyFrame: Sendable, Hashable {
    /// SpO2 "no value" markers (%).
    public static let missingSpO2: Int = 127
    /// Pulse rate "no value" marker (/min); 0 also means no value.
    public static let missingPulseRate: Int = 255

    public var sync: UInt8
    public var pleth: UInt8
    public var status: UInt8
    /// Pulse rate, /min, 8 bits (byte 3 bit 6 is bit 7).
    public var pulseRate: Int
    /// SpO2, %, 7 bits.
    public var spo2: Int

    public init(_ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) {
        sync = b1
        pleth = b2 & 0x7F
        status = b3
        pulseRate = Int(b3 & 0x40) << 1 | Int(b4 & 0x7F)
        spo2 = Int(b5 & 0x7F)
    }

    /// Signal strength, 0–15 (byte 1 bits 3–0).
    public var signalStrength: UInt8 { sync & ContecSyncByteBit.signalStrengthMask }

    /// The Vigil flags this frame raises (table in `firmware-fixtures/README.md`).
    public var flags: QualityFlags {
        var f: QualityFlags = []
        if sync & ContecSyncByteBit.fingerOut.rawValue != 0 { f.insert(.sensorOff) }
        if status & ContecStatusByteBit.probeError.rawValue != 0 { f.insert(.sensorOff) }
        if status & ContecStatusByteBit.searching.rawValue != 0 { f.insert(.searching) }
        if signalStrength < ContecLegacyDecoder.lowSignalBelow { f.insert(.lowSignal) }
        return f
    }

    /// Pulse rate then SpO2 (the device's field order, bytes 4 and 5), omitting a value the
    /// frame reports as missing (pulse rate 0 or 255, SpO2 0 or 127).
    func samples(flags: QualityFlags) -> [VitalSample] {
        var out: [VitalSample] = []
        if pulseRate != 0 && pulseRate != Self.missingPulseRate {
            out.append(VitalSample(vital: .pulseRate, quantity: Quantity(Double(pulseRate), Vital.pulseRate.unit),
                                   deviceTime: nil, flags: flags))
        }
        if spo2 != 0 && spo2 != Self.missingSpO2 {
            out.append(VitalSample(vital: .spo2, quantity: Quantity(Double(spo2), Vital.spo2.unit),
                                   deviceTime: nil, flags: flags))
        }
        return out
    }
}

/// Byte 1 (sync byte) bits.
public struct ContecSyncByteBit: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// Bit 7: always 1, marks the start of a frame.
    public static let sync = ContecSyncByteBit(rawValue: 0x80)
    /// Bit 6: pulse beep (a beat was detected). Not a quality flag.
    public static let beep = ContecSyncByteBit(rawValue: 0x40)
    /// Bit 5: SpO2 dropping. A device indication, not a quality flag.
    public static let spo2Dropping = ContecSyncByteBit(rawValue: 0x20)
    /// Bit 4: finger out (source B calls it "seek", searching too long) → sensor_off.
    public static let fingerOut = ContecSyncByteBit(rawValue: 0x10)
    /// Bits 3–0: signal strength.
    public static let signalStrengthMask: UInt8 = 0x0F
}

/// Byte 3 (status byte) bits.
public struct ContecStatusByteBit: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// Bit 6: bit 7 of the pulse rate.
    public static let pulseRateBit7 = ContecStatusByteBit(rawValue: 0x40)
    /// Bit 5: searching for a pulse → searching.
    public static let searching = ContecStatusByteBit(rawValue: 0x20)
    /// Bit 4: probe error (sensor off / unplugged) → sensor_off.
    public static let probeError = ContecStatusByteBit(rawValue: 0x10)
    /// Bits 3–0: bar graph (pulse amplitude), not decoded into vitals.
    public static let barGraphMask: UInt8 = 0x0F
}
