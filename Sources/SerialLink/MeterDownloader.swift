public import DeviceDecoding
import Glibc
import Synchronization

/// Downloads a meter's memory over a serial line: opens the port, sends the protocol's
/// request, and reads the reply until the protocol says it is whole. A meter that falls
/// silent for `replyTimeout` (not plugged in, asleep, cable pulled mid-dump) ends the attempt;
/// the next attempt reopens the port after `retryDelay` and asks again from the start, and the
/// protocol drops the records an earlier attempt already delivered, so nothing is repeated.
/// After `attempts` failures the download fails with ``MeterDownloadError``.
public struct MeterDownloader: Sendable {
    /// A device path, or `usb:VVVV:PPPP[:SERIAL]` (see ``SerialDeviceLink``).
    public var path: String
    public var settings: SerialSettings
    /// The longest silence allowed before the first byte of a reply and between its bytes.
    public var replyTimeout: Duration
    public var attempts: Int
    public var retryDelay: Duration
    public var locator = USBSerialLocator()

    public init(path: String, settings: SerialSettings, replyTimeout: Duration = .seconds(5),
                attempts: Int = 3, retryDelay: Duration = .seconds(1)) {
        self.path = path
        self.settings = settings
        self.replyTimeout = replyTimeout
        self.attempts = max(attempts, 1)
        self.retryDelay = retryDelay
    }

    /// Runs one download. `consume` gets the results as they arrive (a caller commits them
    /// before returning, so a crash mid-download loses nothing it was handed). Returns the
    /// number of attempts it took.
    public func download<P: CommandProtocol>(
        _ proto: inout P, consume: ([DecodeResult]) async throws -> Void
    ) async throws -> Int {
        var lastFailure = "no attempt was made"
        for attempt in 1...attempts {
            try Task.checkCancellation()
            if attempt > 1 { try await Task.sleep(for: retryDelay) }
            switch try await self.attempt(&proto, consume: consume) {
            case .complete:
                return attempt
            case .failed(let reason):
                lastFailure = reason
                let cut = proto.abandonAttempt()
                if !cut.isEmpty { try await consume(cut) }
            }
        }
        throw MeterDownloadError(path: path, attempts: attempts, reason: lastFailure)
    }

    enum AttemptOutcome { case complete, failed(String) }

    enum Event: Sendable {
        case bytes([UInt8])
        case ended(String)
        case tick
    }

    private func attempt<P: CommandProtocol>(
        _ proto: inout P, consume: ([DecodeResult]) async throws -> Void
    ) async throws -> AttemptOutcome {
        let port: SerialPort
        do {
            let device = try SerialDeviceLink.resolve(path, locator: locator)
            port = try SerialPort.open(path: device, settings: settings)
        } catch {
            return .failed(error.reason)
        }
        let writer: SerialWriter
        do {
            writer = try port.writer()
            try writer.write(proto.begin())
        } catch {
            port.close()
            return .failed(error.reason)
        }
        defer { writer.close() }
        let chunks = port.chunks(readSize: 4096)
        let (events, sink) = AsyncStream<Event>.makeStream()
        let timeout = replyTimeout
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await chunk in chunks { sink.yield(.bytes(chunk.bytes)) }
                    sink.yield(.ended("the reader stopped"))
                } catch let error as SerialError {
                    sink.yield(.ended(error.reason))
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    try await Task.sleep(for: .milliseconds(50))
                    sink.yield(.tick)
                }
            }
            defer { group.cancelAll() }
            let clock = ContinuousClock()
            var lastActivity = clock.now
            for await event in events {
                switch event {
                case .bytes(let bytes):
                    lastActivity = clock.now
                    let (results, answer) = proto.receive(bytes)
                    if !results.isEmpty { try await consume(results) }
                    for packet in answer {
                        // The device's guard time between packets (100 ms for LifeScan's binary link).
                        if proto.packetGap > .zero { try await Task.sleep(for: proto.packetGap) }
                        do throws(SerialError) { try writer.write(packet) } catch { return .failed(error.reason) }
                    }
                    if proto.isComplete { return .complete }
                case .ended(let reason):
                    return .failed(reason)
                case .tick:
                    // Bytes still waiting in the port's queue mean this task was slow to get a
                    // thread, not that the meter fell silent.
                    if clock.now - lastActivity > timeout, !writer.hasPendingInput {
                        return .failed("the meter did not answer within \(timeout)")
                    }
                }
            }
            return .failed("cancelled")
        }
    }
}

/// A download that did not complete in the attempts allowed.
public struct MeterDownloadError: Error, Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var attempts: Int
    /// Why the last attempt failed.
    public var reason: String

    public var description: String {
        "meter download from \(path) failed after \(attempts) attempt\(attempts == 1 ? "" : "s"): \(reason)"
    }
}
