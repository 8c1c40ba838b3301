import Glibc
import Logging
import Uplink
import VigilTestKit
import VitalSigns

/// An in-memory outbox with the store's contract: sequence order per lane, undelivered only.
actor MemoryOutbox: OutboxSource {
    private var lanes: [OutboxLane: [OutboxItem]] = [.priority: [], .readings: []]
    private var nextSequence: [OutboxLane: Int64] = [.priority: 1, .readings: 1]
    private(set) var delivered: Set<OutboxKey> = []
    private(set) var markCalls = 0

    @discardableResult
    func commit(_ payload: OutboxPayload) -> OutboxKey {
        let lane: OutboxLane = if case .reading = payload { .readings } else { .priority }
        let seq = nextSequence[lane, default: 1]
        nextSequence[lane] = seq + 1
        let key = OutboxKey(lane: lane, sequence: seq)
        lanes[lane, default: []].append(OutboxItem(key: key, payload: payload))
        return key
    }

    func pending(lane: OutboxLane, after: Int64, limit: Int) async throws -> [OutboxItem] {
        let items = lanes[lane] ?? []
        // Binary search for the first sequence > after (items are in sequence order).
        var lo = 0, hi = items.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if items[mid].key.sequence <= after { lo = mid + 1 } else { hi = mid }
        }
        var out: [OutboxItem] = []
        var i = lo
        while i < items.count, out.count < limit {
            if !delivered.contains(items[i].key) { out.append(items[i]) }
            i += 1
        }
        return out
    }

    func markDelivered(_ keys: [OutboxKey]) async throws {
        markCalls += 1
        delivered.formUnion(keys)
    }

    var count: Int { lanes.values.reduce(0) { $0 + $1.count } }
    var undeliveredCount: Int { count - delivered.count }
}

enum Fixtures {
    static let t0 = Timestamp(millisecondsSinceEpoch: 1_795_000_000_000)

    static func reading(_ n: Int, device: String = "rad8-bedroom") -> Reading {
        let device = DeviceID(device)
        let measured = t0.adding(milliseconds: Int64(n) * 1000)
        return Reading(id: .derive(device: device, vital: .spo2, measuredAt: measured, sequence: UInt64(n)),
                       patient: "patient-001", device: device, vital: .spo2, quantity: Quantity(Double(90 + n % 10), "%"),
                       measuredAt: measured, receivedAt: measured.adding(milliseconds: 40), flags: [], sequence: UInt64(n))
    }

    static func escalation(_ n: Int = 0) -> Escalation {
        let r = reading(n)
        return Escalation(patient: "patient-001", rule: "spo2-low", severity: .urgent, state: .open,
                          triggeringReadings: [r.id],
                          values: [TriggerValue(reading: r.id, vital: "spo2", value: 85, unit: "%", measuredAt: r.measuredAt)],
                          carePlanVersion: 3, openedAt: r.measuredAt, at: r.measuredAt, summary: "SpO2 below 88 % for 60 s")
    }
}

/// Unique names per test so parallel tests never share a client ID or topic.
func uniqueName(_ base: String) -> String {
    "\(base)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
}

/// The first event matching `predicate` within `timeout` seconds, or nil.
func awaitEvent(_ stream: AsyncStream<MQTTEvent>, timeout: Double,
                _ predicate: @escaping @Sendable (MQTTEvent) -> Bool) async -> MQTTEvent? {
    await withTaskGroup(of: MQTTEvent?.self) { group in
        group.addTask {
            for await e in stream where predicate(e) { return e }
            return nil
        }
        group.addTask {
            try? await Task.sleep(for: .milliseconds(Int(timeout * 1000)))
            return nil
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` seconds pass. For states no
/// event announces (store contents, counters).
func eventually(timeout: Double, _ condition: @Sendable () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return await condition()
}

/// A broker-backed forwarder with its connection, started, and a task running it.
struct ForwarderRig {
    let connection: MQTTConnection
    let forwarder: Forwarder
    let task: Task<Void, Never>

    static func start(broker: MosquittoBroker, source: MemoryOutbox, topics: Topics, maxInFlight: Int = 256,
                      clientID: String = uniqueName("gw")) throws -> ForwarderRig {
        let options = MQTTOptions(host: broker.host, port: broker.port, clientID: clientID, will: topics.offlineWill,
                                  reconnectDelayMin: .milliseconds(50), reconnectDelayMax: .milliseconds(400))
        let connection = try MQTTConnection(options: options)
        var logger = Logger(label: "test.uplink")
        logger.logLevel = .warning
        let forwarder = Forwarder(connection: connection, source: source,
                                  configuration: .init(topics: topics, maxInFlight: maxInFlight), logger: logger)
        let task = Task { await forwarder.run() }
        try connection.start()
        return ForwarderRig(connection: connection, forwarder: forwarder, task: task)
    }

    func stop() async {
        task.cancel()
        await task.value
        await connection.stop()
    }
}
