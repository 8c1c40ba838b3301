import Glibc
import Synchronization

/// Events recorded by a component under test (link states, bytes read), which a test awaits
/// one by one with a deadline instead of sleeping.
public final class EventLog<Event: Sendable>: Sendable {
    struct Waiter {
        let from: Int
        let match: @Sendable (Event) -> Bool
        let continuation: CheckedContinuation<(event: Event, cursor: Int)?, Never>
    }

    struct State {
        var events: [Event] = []
        var waiters: [Int: Waiter] = [:]
        var nextID = 0
    }

    private let state = Mutex(State())

    public init() {}

    public func append(_ event: Event) {
        let resumed = state.withLock { s -> [(CheckedContinuation<(event: Event, cursor: Int)?, Never>, (event: Event, cursor: Int))] in
            s.events.append(event)
            let index = s.events.count - 1
            var out: [(CheckedContinuation<(event: Event, cursor: Int)?, Never>, (event: Event, cursor: Int))] = []
            for (id, w) in s.waiters where index >= w.from && w.match(event) {
                out.append((w.continuation, (event, index + 1)))
                s.waiters[id] = nil
            }
            return out
        }
        for (c, value) in resumed { c.resume(returning: value) }
    }

    private func expire(_ id: Int) {
        let w = state.withLock { $0.waiters.removeValue(forKey: id) }
        w?.continuation.resume(returning: nil)
    }

    /// Every event so far.
    public var events: [Event] { state.withLock { $0.events } }

    /// The first event at or after `cursor` that matches, and the cursor just past it; nil
    /// if none arrives within `timeout`.
    public func next(from cursor: Int, within timeout: Duration,
                     where match: @escaping @Sendable (Event) -> Bool) async -> (event: Event, cursor: Int)? {
        let id = state.withLock { s -> Int in
            s.nextID += 1
            return s.nextID
        }
        return await withCheckedContinuation { (c: CheckedContinuation<(event: Event, cursor: Int)?, Never>) in
            let immediate = state.withLock { s -> (event: Event, cursor: Int)? in
                var i = max(cursor, 0)
                while i < s.events.count {
                    if match(s.events[i]) { return (s.events[i], i + 1) }
                    i += 1
                }
                s.waiters[id] = Waiter(from: max(cursor, 0), match: match, continuation: c)
                return nil
            }
            if let immediate {
                c.resume(returning: immediate)
                return
            }
            Task { [self] in
                try? await Task.sleep(for: timeout)
                self.expire(id)
            }
        }
    }
}

/// How many of this process's descriptors refer to `path` (via /proc/self/fd): lets a test
/// see that a component really closed its descriptor.
public func openDescriptorCount(for path: String) -> Int {
    openDescriptors(for: path)?.count ?? -1
}

/// This process's descriptors that refer to `path`, or nil when /proc/self/fd cannot be read.
/// Once a pty pair is gone the kernel hands its number to the next pty opened, possibly by a
/// test running in parallel: to see that *these* descriptors were closed after that, take them
/// before and check they no longer refer to the path.
public func openDescriptors(for path: String) -> Set<Int32>? {
    var found: Set<Int32> = []
    guard let dir = opendir("/proc/self/fd") else { return nil }
    defer { closedir(dir) }
    var buffer = [CChar](repeating: 0, count: 4096)
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        guard name != ".", name != ".." else { continue }
        let n = readlink("/proc/self/fd/" + name, &buffer, buffer.count - 1)
        guard n > 0 else { continue }
        let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if target == path, let fd = Int32(name) { found.insert(fd) }
    }
    return found
}

/// Polls `condition` every `interval` until it holds or `timeout` passes (for states that
/// have no event to await, such as a descriptor being closed by another thread).
public func eventually(within timeout: Duration, interval: Duration = .milliseconds(5),
                       _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while clock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return condition()
}

/// A fresh temporary directory (mkdtemp under /tmp).
public func makeTemporaryDirectory(prefix: String = "vigil-test") -> String {
    var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
    return template.withUnsafeMutableBufferPointer { buf in
        guard let base = buf.baseAddress, let p = mkdtemp(base) else { return "/tmp" }
        return String(cString: p)
    }
}
