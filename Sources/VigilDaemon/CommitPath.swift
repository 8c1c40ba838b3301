import Logging
import ReadingStore
import Uplink
import VitalSigns

/// Everything after decoding — COMMIT → evaluate → COMMIT → outbox signal — shared by every
/// producer (serial streams and meter downloads in ``DevicePipeline``, the BLE supervisor):
/// one store, rule evaluator and forwarder, one order and one retry-until-durable policy, so a
/// reading from any transport takes the same path to the broker.
struct CommitPath: Sendable {
    let device: DeviceID
    let store: ReadingStore
    let rules: RuleEvaluator
    let forwarder: Forwarder
    let board: DeviceBoard
    let logger: Logger

    /// Commits `readings`, evaluates them and commits any escalations, then wakes the
    /// forwarder. Returns only once the readings are durable (true), or false if the task was
    /// cancelled first (shutdown): the caller must then not acknowledge them to the device.
    func commit(_ readings: [Reading]) async -> Bool {
        guard !readings.isEmpty else { return true }
        // 1. COMMIT: durable before anything else sees the readings.
        guard await durably("readings", { try await store.commit(readings) }) else { return false }
        // 2. EVALUATE the committed readings against the patient's care plan.
        let escalations = await rules.evaluate(readings)
        // 3. COMMIT the escalations into the priority lane (the rule state has moved on, so
        //    this escalation exists nowhere else).
        if !escalations.isEmpty {
            if await durably("escalations", { try await store.commit(escalations: escalations) }) {
                for e in escalations {
                    logger.notice("escalation \(e.state.rawValue)", metadata: [
                        "escalation.id": "\(e.id)", "rule": "\(e.rule)", "severity": "\(e.severity)",
                        "device.id": "\(device)",
                    ])
                }
            }
        }
        // 4. Wake the forwarder.
        forwarder.notify()
        return true
    }

    /// Commits gateway events (counted bad payloads and the like) into the priority lane.
    func commit(events: [GatewayEvent]) async {
        guard !events.isEmpty else { return }
        if await durably("events", { try await store.commit(events: events) }) { forwarder.notify() }
    }

    /// Runs a commit until it succeeds, backing off from 50 ms to 5 s between attempts —
    /// except on damage (`SQLITE_CORRUPT`, `SQLITE_NOTADB`), where vigild stops at once.
    /// Returns false only if the task was cancelled first (shutdown): the rows were then never
    /// committed, and an escalation among them is recovered by the rule-state rebuild at the
    /// next start.
    private func durably(_ what: String, _ commit: () async throws -> Void) async -> Bool {
        var delay = Duration.milliseconds(50)
        var attempt = 0
        while true {
            do {
                try await commit()
                if attempt > 0 {
                    logger.notice("commit succeeded after retries", metadata: ["device.id": "\(device)", "what": "\(what)", "attempts": "\(attempt + 1)"])
                }
                return true
            } catch {
                // A damaged file is not retried against: vigild stops and is restarted on a
                // checked (or quarantined) database (DatabaseQuarantine.swift).
                if let damage = error as? StoreError, damage.isDamage {
                    DatabaseDamage.stop(damage, store: store, logger: logger)
                }
                attempt += 1
                if attempt == 1 || attempt.isMultiple(of: 20) {
                    logger.error("commit failed; retrying", metadata: [
                        "device.id": "\(device)", "what": "\(what)", "attempt": "\(attempt)", "error": "\(error)",
                    ])
                    await board.recordError(device, "database: \(error)")
                }
                do { try await Task.sleep(for: delay) } catch { return false }
                delay = min(delay * 2, .seconds(5))
            }
        }
    }
}
