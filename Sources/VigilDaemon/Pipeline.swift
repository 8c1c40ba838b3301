import ClinicalRules
import DeviceDecoding
import DeviceProfiles
import Logging
import ReadingStore
import SerialLink
import ServiceLifecycle
import Uplink
import VitalSigns

/// One device's path through the gateway, top to bottom as ARCHITECTURE.md draws it:
///
///     link → decode → COMMIT → evaluate → COMMIT → outbox signal
///
/// Every reading is durable in SQLite before a rule sees it and before the forwarder can
/// send it. A serial device has no acknowledgement to hold back, so the window in which
/// bytes can be lost is the time from `read()` to the commit: one decode and one group
/// commit, a few milliseconds.
struct DevicePipeline: Service {
    let device: VigilConfig.DeviceEntry
    let profile: DeviceProfile
    let store: ReadingStore
    let rules: RuleEvaluator
    let forwarder: Forwarder
    let board: DeviceBoard
    let logger: Logger

    func run() async throws {
        guard let serial = profile.serial, let configured = device.port,
              let decoder = profile.makeStreamDecoder() else { return }
        // `port: usb` means the adapter the profile's match names, found in sysfs.
        guard let port = configured == VigilConfig.DeviceEntry.profileUSBPort ? profile.usbAddress : configured else { return }
        let settings = SerialSettings(
            baud: serial.baud, dataBits: serial.dataBits,
            parity: SerialSettings.Parity(rawValue: serial.parity.rawValue) ?? .none, stopBits: serial.stopBits)
        if makeCommandProtocol(named: profile.decoder) != nil {
            try await runDownloads(port: port, settings: settings, decoder: decoder)
            return
        }
        // Link states arrive on the link's task; an ordered stream carries them to the board.
        let (states, stateSink) = AsyncStream<SerialDeviceLink.State>.makeStream()
        var link = SerialDeviceLink(path: port, settings: settings, onState: { stateSink.yield($0) })
        link.session = makeStreamSession(named: profile.decoder)
        let (board, id) = (self.board, device.id)
        async let boardUpdates: Void = {
            for await state in states {
                switch state {
                case .opening: await board.setState(id, "opening", reason: nil)
                case .open: await board.setState(id, "open", reason: nil)
                case .unavailable(let reason, let retry):
                    await board.setState(id, "unavailable", reason: "\(reason); retrying in \(retry)")
                }
            }
        }()
        // Stop reading on SIGTERM; a commit already under way completes first.
        try? await cancelWhenGracefulShutdown { [self, link] in
            var ingest = Ingest(pipeline: self, decoder: decoder)
            try await link.run { chunk in
                await ingest.handle(chunk.bytes, receivedAt: chunk.receivedAt)
            }
        }
        stateSink.finish()
        await boardUpdates
    }

    /// A meter that answers only when asked: download its memory as soon as it answers, then
    /// again every `downloadInterval`. A meter that is not plugged in (or not answering) is
    /// asked again after `absentRetry`, so a patient who connects the cable is read within
    /// seconds, not at the next interval. Each download's results go through the same commit
    /// path as streamed readings as they arrive; records already stored keep their IDs (the
    /// meters' own record times), so a repeated download adds nothing twice.
    func runDownloads(port: String, settings: SerialSettings, decoder: any StreamDecoder) async throws {
        let id = device.id
        let interval = Duration.seconds(device.downloadIntervalSeconds)
        let absentRetry = min(interval, Self.absentMeterRetry)
        await cancelWhenGracefulShutdown { [self] in
            var ingest = Ingest(pipeline: self, decoder: decoder)
            while !Task.isCancelled {
                guard var proto = makeCommandProtocol(named: profile.decoder) else { return }
                await board.setState(id, "downloading", reason: nil)
                let downloader = MeterDownloader(path: port, settings: settings)
                let wait: Duration
                do {
                    let attempts = try await downloader.download(&proto) { results in
                        await ingest.process(results, bytes: 0, receivedAt: realtimeNow())
                    }
                    wait = interval
                    await board.setState(id, "idle", reason: "downloaded in \(attempts) attempt\(attempts == 1 ? "" : "s"); next download in \(interval)")
                } catch let error as MeterDownloadError {
                    wait = absentRetry
                    await board.setState(id, "unavailable", reason: "\(error.reason); asking again in \(absentRetry)")
                } catch {
                    return
                }
                do { try await Task.sleep(for: wait) } catch { return }
            }
        }
    }

    /// How soon a meter that did not answer is asked again.
    static let absentMeterRetry = Duration.seconds(15)

    /// The per-chunk work, with the decoder's framing state.
    struct Ingest {
        let pipeline: DevicePipeline
        var decoder: any StreamDecoder
        var rejectionLog = RateLimitedLog(interval: 60_000)

        mutating func handle(_ bytes: [UInt8], receivedAt: Timestamp) async {
            // 1. Decode (pure).
            let results = decoder.decode(bytes)
            await process(results, bytes: bytes.count, receivedAt: receivedAt)
        }

        mutating func process(_ results: [DecodeResult], bytes: Int, receivedAt: Timestamp) async {
            let p = pipeline
            // 2. Give each sample its identity; refuse implausible values.
            var readings: [Reading] = []
            var rejected = 0
            var implausible = 0
            for result in results {
                switch result {
                case .samples(let samples):
                    for sample in samples {
                        guard p.profile.isPlausible(sample.quantity.value, for: sample.vital) else {
                            implausible += 1
                            continue
                        }
                        readings.append(Reading(
                            sample: sample, device: p.device.id, patient: p.device.patient, receivedAt: receivedAt,
                            deviceUTCOffsetSeconds: p.device.clockUTCOffsetSeconds))
                    }
                case .rejected(let error):
                    rejected += 1
                    if let suppressed = rejectionLog.shouldLog(at: receivedAt) {
                        p.logger.warning("device bytes rejected", metadata: [
                            "device.id": "\(p.device.id)", "reason": "\(error)", "suppressed": "\(suppressed)",
                        ])
                    }
                }
            }
            // 3–6. COMMIT, evaluate, COMMIT escalations, wake the forwarder: the one commit
            //      path every transport shares. A failed commit (disk full, a lock held too
            //      long) is retried: the device's next bytes wait in the kernel meanwhile,
            //      because the link reads only on demand.
            guard await p.commitPath.commit(readings) else { return }
            await p.board.recordChunk(
                p.device.id, bytes: bytes, readings: readings.count, rejected: rejected, implausible: implausible,
                lastReadingAt: readings.isEmpty ? nil : receivedAt)
        }
    }
}

extension DevicePipeline {
    /// This device's way into the shared commit path.
    var commitPath: CommitPath {
        CommitPath(device: device.id, store: store, rules: rules, forwarder: forwarder, board: board, logger: logger)
    }
}

/// Logs the first event, then at most one line per interval with the count suppressed
/// since, so a device flooding garbage cannot flood the journal.
struct RateLimitedLog {
    let interval: Int64
    var lastLogged: Timestamp?
    var suppressed = 0

    init(interval milliseconds: Int64) { self.interval = milliseconds }

    /// Returns the number suppressed since the last line when this event should be logged.
    mutating func shouldLog(at now: Timestamp) -> Int? {
        if let last = lastLogged, now.milliseconds(since: last) < interval, now >= last {
            suppressed += 1
            return nil
        }
        defer { suppressed = 0 }
        lastLogged = now
        return suppressed
    }
}
