import VitalSigns

/// What the daemon knows about each device right now, for `vigilctl status`.
/// Holds no patient data: device IDs, states, counts and times only.
actor DeviceBoard {
    struct Entry: Sendable {
        var id: DeviceID
        var profile: String
        var transport: String
        var port: String
        var state = "starting"
        var reason: String?
        var lastReadingAt: Timestamp?
        var readings: Int64 = 0
        var rejectedFrames: Int64 = 0
        var implausibleValues: Int64 = 0
        var bytesRead: Int64 = 0
        var lastError: String?
    }

    private var entries: [DeviceID: Entry] = [:]
    private var order: [DeviceID] = []

    func register(id: DeviceID, profile: String, transport: String, port: String) {
        if entries[id] == nil { order.append(id) }
        entries[id] = Entry(id: id, profile: profile, transport: transport, port: port)
    }

    func setState(_ id: DeviceID, _ state: String, reason: String?) {
        entries[id]?.state = state
        entries[id]?.reason = reason
        if let reason { entries[id]?.lastError = reason }
    }

    func recordChunk(_ id: DeviceID, bytes: Int, readings: Int, rejected: Int, implausible: Int, lastReadingAt: Timestamp?) {
        guard var e = entries[id] else { return }
        e.bytesRead += Int64(bytes)
        e.readings += Int64(readings)
        e.rejectedFrames += Int64(rejected)
        e.implausibleValues += Int64(implausible)
        if let t = lastReadingAt { e.lastReadingAt = max(e.lastReadingAt ?? t, t) }
        entries[id] = e
    }

    func recordError(_ id: DeviceID, _ message: String) {
        entries[id]?.lastError = message
    }

    func seedLastReading(_ id: DeviceID, _ t: Timestamp) {
        if entries[id]?.lastReadingAt == nil { entries[id]?.lastReadingAt = t }
    }

    func snapshot() -> [Entry] { order.compactMap { entries[$0] } }
}
