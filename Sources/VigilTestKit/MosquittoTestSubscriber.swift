import Glibc
public import Uplink
import Synchronization

/// A message a `TestSubscriber` received.
public struct ReceivedMessage: Sendable, Hashable {
    public var topic: String
    public var payload: [UInt8]
    public var text: String { String(decoding: payload, as: UTF8.self) }
}

/// Timed out waiting for messages; says how many arrived.
public struct TestSubscriberTimeout: Error, CustomStringConvertible {
    public var wanted: Int
    public var received: Int
    public var seconds: Double
    public var description: String { "waited \(seconds) s for \(wanted) messages, received \(received)" }
}

/// A test client built on `MQTTConnection`: subscribes to one filter (again on every
/// connect, so it survives broker restarts) and collects messages for tests to await.
public final class TestSubscriber: Sendable {
    public let connection: MQTTConnection
    public let filter: String

    private struct Waiter {
        var count: Int
        var matching: @Sendable (ReceivedMessage) -> Bool
        var continuation: CheckedContinuation<Void, Never>
        /// Matching messages so far, kept incrementally.
        var seen: Int
    }

    private struct State {
        var messages: [ReceivedMessage] = []
        var subscribedCount = 0
        var waiters: [Int: Waiter] = [:]
        var nextWaiter = 0
        /// Waiters that timed out before they registered.
        var abandoned: Set<Int> = []
    }

    private let state = Mutex(State())
    private let consumer = Mutex<Task<Void, Never>?>(nil)

    /// Connects to `broker` and subscribes to `filter` at QoS 1. Returns once the
    /// connection is accepted and the SUBSCRIBE sent (use a fresh client ID per test).
    /// `cleanSession: false` keeps the subscription (and queued messages) on the broker
    /// while this client is away, given broker persistence across restarts.
    public static func start(broker: MosquittoBroker, filter: String, clientID: String,
                             cleanSession: Bool = true, timeout: Double = 5) async throws -> TestSubscriber {
        let options = MQTTOptions(host: broker.host, port: broker.port, clientID: clientID, cleanSession: cleanSession,
                                  reconnectDelayMin: .milliseconds(50), reconnectDelayMax: .milliseconds(500))
        let sub = try TestSubscriber(connection: MQTTConnection(options: options), filter: filter)
        let events = sub.connection.events()
        let (connected, connectedCont) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let task = Task { [sub] in
            for await event in events {
                switch event {
                case .connected:
                    _ = try? sub.connection.subscribe(filter, qos: 1)
                    sub.state.withLock { $0.subscribedCount += 1 }
                    connectedCont.yield()
                case .message(let topic, let payload):
                    sub.append(ReceivedMessage(topic: topic, payload: payload))
                default:
                    break
                }
            }
            connectedCont.finish()
        }
        sub.consumer.withLock { $0 = task }
        try sub.connection.start()
        let ok = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await _ in connected { return true }
                return false
            }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(Int(timeout * 1000)))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !ok {
            await sub.stop()
            throw MosquittoBrokerError("TestSubscriber", "no CONNACK from 127.0.0.1:\(broker.port) within \(timeout) s: \(sub.connection.snapshot.lastError ?? "no error recorded")")
        }
        return sub
    }

    private init(connection: MQTTConnection, filter: String) {
        self.connection = connection
        self.filter = filter
    }

    private func append(_ m: ReceivedMessage) {
        let ready = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.messages.append(m)
            var ready: [CheckedContinuation<Void, Never>] = []
            for id in Array(s.waiters.keys) {
                guard var w = s.waiters[id] else { continue }
                if w.matching(m) { w.seen += 1 }
                if w.seen >= w.count {
                    s.waiters.removeValue(forKey: id)
                    ready.append(w.continuation)
                } else {
                    s.waiters[id] = w
                }
            }
            return ready
        }
        for c in ready { c.resume() }
    }

    /// Everything received so far, in arrival order.
    public var messages: [ReceivedMessage] { state.withLock { $0.messages } }

    /// How many times it has (re)subscribed, one per accepted connection.
    public var subscriptions: Int { state.withLock { $0.subscribedCount } }

    /// Waits until at least `count` messages (that satisfy `matching`) have arrived, or
    /// throws after `timeout` seconds. Returns the matching messages in arrival order.
    @discardableResult
    public func waitFor(count: Int, timeout: Double = 10,
                        matching: @escaping @Sendable (ReceivedMessage) -> Bool = { _ in true }) async throws -> [ReceivedMessage] {
        let id = state.withLock { s -> Int in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        let arrived = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    let now = self.state.withLock { s -> Bool in
                        let seen = s.messages.lazy.filter(matching).count
                        if seen >= count || s.abandoned.remove(id) != nil { return true }
                        s.waiters[id] = Waiter(count: count, matching: matching, continuation: c, seen: seen)
                        return false
                    }
                    if now { c.resume() }
                }
                return true
            }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(Int(timeout * 1000)))
                return false
            }
            let first = await group.next() ?? false
            if !first {
                // Release the waiter so the first child can finish.
                let c = self.state.withLock { s -> CheckedContinuation<Void, Never>? in
                    if let w = s.waiters.removeValue(forKey: id) { return w.continuation }
                    s.abandoned.insert(id)
                    return nil
                }
                c?.resume()
            }
            group.cancelAll()
            return first
        }
        let got = messages.filter(matching)
        guard arrived || got.count >= count else {
            throw TestSubscriberTimeout(wanted: count, received: got.count, seconds: timeout)
        }
        return got
    }

    /// Disconnects cleanly and ends the consumer.
    public func stop() async {
        await connection.stop()
        let task = consumer.withLock { $0 }
        await task?.value
    }
}
