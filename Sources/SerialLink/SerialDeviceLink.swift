public import DeviceDecoding
import Glibc

/// Capped exponential back-off with jitter, for reopening a device that is not there.
public struct Backoff: Sendable, Hashable {
    /// The first delay.
    public var initial: Duration
    /// No delay exceeds this.
    public var maximum: Duration
    public var multiplier: Double
    /// Each delay is reduced by up to this fraction at random, so many gateways (or many
    /// devices) do not retry in lock-step.
    public var jitter: Double
    private var attempt = 0

    public init(initial: Duration = .milliseconds(250), maximum: Duration = .seconds(10), multiplier: Double = 2, jitter: Double = 0.2) {
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self.jitter = min(max(jitter, 0), 1)
    }

    /// The next delay; `random` is in 0..<1 (injected for tests).
    public mutating func next(random: Double) -> Duration {
        let initialMs = Double(initial.components.seconds) * 1000 + Double(initial.components.attoseconds) / 1e15
        let maxMs = Double(maximum.components.seconds) * 1000 + Double(maximum.components.attoseconds) / 1e15
        var base = initialMs
        for _ in 0..<min(attempt, 64) {
            base *= multiplier
            if base >= maxMs { break }
        }
        base = min(base, maxMs)
        attempt += 1
        let withJitter = base * (1 - jitter * min(max(random, 0), 1))
        return .milliseconds(Int64(withJitter.rounded()))
    }

    public mutating func next() -> Duration {
        var g = SystemRandomNumberGenerator()
        return next(random: Double.random(in: 0..<1, using: &g))
    }

    /// After a successful open: start from `initial` again.
    public mutating func reset() { attempt = 0 }
}

/// A serial device that may come and go: opens it, reads it, and reopens it after an
/// unplug, for as long as the task runs.
public struct SerialDeviceLink: Sendable {
    public enum State: Sendable, Hashable, CustomStringConvertible {
        /// About to open `path`.
        case opening(path: String)
        /// Open; `device` is what the path resolved to (for example /dev/ttyUSB1).
        case open(path: String, device: String)
        /// Not available; the link retries after `retryIn`.
        case unavailable(reason: String, retryIn: Duration)

        public var description: String {
            switch self {
            case .opening(let p): "opening \(p)"
            case .open(let p, let d): "open \(p) → \(d)"
            case .unavailable(let r, let d): "unavailable: \(r); retrying in \(d)"
            }
        }
    }

    public var path: String
    public var settings: SerialSettings
    public var backoff: Backoff
    public var exclusive: Bool
    private let onState: @Sendable (State) -> Void

    /// Finds adapters named by USB ids (`usb:VVVV:PPPP[:serial]` paths).
    public var locator = USBSerialLocator()
    /// What to send for the device to stream (a start command, a keep-alive), if anything.
    public var session: StreamSession?

    /// - Parameters:
    ///   - path: the device path; symlinks (such as /dev/serial/by-id/…) are resolved at
    ///     every open, so a replug that lands on a new ttyUSBn is followed. Or
    ///     `usb:VVVV:PPPP` (optionally `:SERIAL`; several ids separated by commas): the one
    ///     USB-serial adapter with those ids, looked up in sysfs at every open.
    ///   - onState: called on every state change, from the task running ``run(_:)``.
    public init(path: String, settings: SerialSettings, backoff: Backoff = Backoff(), exclusive: Bool = true,
                onState: @escaping @Sendable (State) -> Void) {
        self.path = path
        self.settings = settings
        self.backoff = backoff
        self.exclusive = exclusive
        self.onState = onState
    }

    /// Runs until the task is cancelled (then returns, with the port closed) or `consume`
    /// throws (then rethrows it, with the port closed).
    public func run(_ consume: (SerialChunk) async throws -> Void) async throws {
        var backoff = self.backoff
        while !Task.isCancelled {
            onState(.opening(path: path))
            let port: SerialPort
            let device: String
            do {
                device = try Self.resolve(path, locator: locator)
                port = try SerialPort.open(path: device, settings: settings, exclusive: exclusive)
            } catch {
                guard await pause(reason: error.reason, backoff: &backoff) else { return }
                continue
            }
            backoff.reset()
            onState(.open(path: path, device: device))
            // A device that streams only when asked: start it, and keep it going while open.
            var keepAlive: Task<Void, Never>?
            var writer: SerialWriter?
            if let session {
                do {
                    let w = try port.writer()
                    try w.write(session.opening)
                    writer = w
                    if let bytes = session.keepAlive {
                        let interval = session.keepAliveInterval
                        keepAlive = Task {
                            while !Task.isCancelled {
                                do { try await Task.sleep(for: interval) } catch { return }
                                do throws(SerialError) { try w.write(bytes) } catch { return }
                            }
                        }
                    }
                } catch {
                    port.close()
                    guard await pause(reason: error.reason, backoff: &backoff) else { return }
                    continue
                }
            }
            defer {
                keepAlive?.cancel()
                writer?.close()
            }
            do {
                for try await chunk in port.chunks() {
                    try await consume(chunk)
                }
                // The stream ended without an error: we stopped iterating (cancellation).
                if Task.isCancelled { return }
                // Not expected otherwise; never spin: wait as after a failure.
                guard await pause(reason: "the reader stopped", backoff: &backoff) else { return }
            } catch let error as SerialError {
                guard await pause(reason: error.reason, backoff: &backoff) else { return }
            }
        }
    }

    /// Reports `.unavailable` and sleeps; false if the task was cancelled meanwhile.
    private func pause(reason: String, backoff: inout Backoff) async -> Bool {
        let delay = backoff.next()
        onState(.unavailable(reason: reason, retryIn: delay))
        do {
            try await Task.sleep(for: delay)
            return true
        } catch {
            return false
        }
    }

    /// The device node a configured path means: a USB id is looked up, then realpath(3)
    /// follows every symlink to the node.
    static func resolve(_ configured: String, locator: USBSerialLocator) throws(SerialError) -> String {
        var path = configured
        if configured.hasPrefix("usb:") {
            // One id, or several separated by commas (a profile's list of known adapters).
            let ids = configured.dropFirst(4).split(separator: ",").map { USBSerialID(parsing: $0) }
            guard !ids.isEmpty, ids.allSatisfy({ $0 != nil }) else {
                throw SerialError(code: .notFound, errno: EINVAL, path: configured, operation: "locate",
                                  reason: "not a USB id: expected usb:VVVV:PPPP or usb:VVVV:PPPP:SERIAL")
            }
            path = try locator.locate(ids.compactMap { $0 })
        }
        guard let p = realpath(path, nil) else {
            throw SerialError.from(errno: errno, path: path, operation: "realpath")
        }
        defer { free(p) }
        return String(cString: p)
    }
}
