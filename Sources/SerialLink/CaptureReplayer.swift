public import DeviceDecoding
/// Plays recorded bytes into a pseudo-terminal with their original timing, as the device did.
///
/// Records are those of a `Capture` (the firmware-fixtures format); the replayer knows
/// nothing of what the bytes mean.
public struct CaptureReplayer: Sendable {
    public var records: [Capture.Record]
    /// Time scale: 2 plays twice as fast; nil writes everything as fast as the pty accepts it.
    public var speed: Double?
    /// Start again from the first record after the last (one second later, as the device's
    /// next line would come).
    public var loop: Bool

    public init(records: [Capture.Record], speed: Double? = 1, loop: Bool = false) {
        self.records = records
        self.speed = speed.flatMap { $0 > 0 ? $0 : nil }
        self.loop = loop
    }

    /// Replays until the records run out (or forever with `loop`); returns early, without
    /// error, when the task is cancelled. Called with each record index after it is written.
    public func run(into pty: PseudoTerminal, clock: ContinuousClock = ContinuousClock(),
                    progress: (@Sendable (Int) -> Void)? = nil) async throws {
        guard !records.isEmpty else { return }
        var start = clock.now
        let span = (records.last?.offsetMilliseconds ?? 0) + 1000
        repeat {
            for (index, record) in records.enumerated() {
                if let speed {
                    let due = start.advanced(by: .milliseconds(Int64((Double(record.offsetMilliseconds) / speed).rounded())))
                    do { try await clock.sleep(until: due, tolerance: .milliseconds(2)) } catch { return }
                }
                if Task.isCancelled { return }
                do { try await pty.write(record.bytes) } catch is CancellationError { return }
                progress?(index)
            }
            if let speed {
                start = start.advanced(by: .milliseconds(Int64((Double(span) / speed).rounded())))
            }
        } while loop && !Task.isCancelled
    }
}
