import SerialLink
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
        /// Bluetooth LE session state; nil for a serial device.
        var ble: BLEInfo?
    }

    /// What `vigilctl status` shows for a Bluetooth LE device.
    struct BLEInfo: Sendable {
        /// `l2cap` (the radio) or `seqpacket` (the simulated seam).
        var link = "l2cap"
        var connected = false
        /// Whether the link is bonded (encrypted with stored keys); nil over the seqpacket
        /// seam, where there is no radio link to bond.
        var bonded: Bool?
        var mtu: Int?
        /// Battery Level, percent (0–100), as last read or notified.
        var batteryPercent: Int?
        /// Device clock minus gateway clock at the last connection, seconds.
        var clockOffsetSeconds: Double?
        var connections: Int64 = 0
        var lastConnectedAt: Timestamp?
        /// Values that could not be decoded and ATT protocol violations.
        var badPayloads: Int64 = 0
    }

    private var entries: [DeviceID: Entry] = [:]
    private var order: [DeviceID] = []

    func register(id: DeviceID, profile: String, transport: String, port: String) {
        if entries[id] == nil { order.append(id) }
        entries[id] = Entry(id: id, profile: profile, transport: transport, port: port)
        if transport == "ble" { entries[id]?.ble = BLEInfo(link: port.contains("via seqpacket:") ? "seqpacket" : "l2cap") }
    }

    /// Removes a device (unpaired at runtime) from what status shows.
    func unregister(_ id: DeviceID) {
        entries[id] = nil
        order.removeAll { $0 == id }
    }

    func bleConnected(_ id: DeviceID, mtu: Int, bonded: Bool?, clockOffsetSeconds: Double?) {
        guard var e = entries[id] else { return }
        var b = e.ble ?? BLEInfo()
        b.connected = true
        b.bonded = bonded
        b.mtu = mtu
        if let c = clockOffsetSeconds { b.clockOffsetSeconds = c }
        b.connections += 1
        b.lastConnectedAt = realtimeNow()
        e.ble = b
        e.state = "connected"
        e.reason = nil
        entries[id] = e
    }

    func bleDisconnected(_ id: DeviceID, state: String, reason: String?) {
        entries[id]?.ble?.connected = false
        setState(id, state, reason: reason)
    }

    /// A new connection attempt. An `error` or `unavailable` state (and its reason) stands
    /// until the attempt succeeds or fails differently, so status never flickers to a
    /// harmless-looking "connecting" between retries of a persistent fault.
    func bleConnecting(_ id: DeviceID) {
        guard let state = entries[id]?.state, state != "error", state != "unavailable" else { return }
        setState(id, "connecting", reason: nil)
    }

    func setBattery(_ id: DeviceID, _ percent: Int) { entries[id]?.ble?.batteryPercent = percent }

    func setClockOffset(_ id: DeviceID, _ seconds: Double) { entries[id]?.ble?.clockOffsetSeconds = seconds }

    func recordBadPayload(_ id: DeviceID) {
        entries[id]?.ble?.badPayloads += 1
        entries[id]?.rejectedFrames += 1
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
