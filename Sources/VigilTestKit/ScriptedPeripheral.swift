public import BluetoothLink

/// A scripted BLE peripheral for tests: listens on a Unix SOCK_SEQPACKET path (or serves one
/// end of a socketpair), holds the GATT database of an ATT capture
/// (`firmware-fixtures/ble/*.att`), answers MTU, discovery, reads and writes as a real
/// peripheral would, and plays the capture's script. The protocol engine is BluetoothLink's
/// ``SimulatedPeripheral``; this type adds the listening socket and fixture loading.
public final class ScriptedPeripheral: Sendable {
    public let path: String
    public let capture: ATTCapture
    private let listener: SeqPacketListener
    private let served: AsyncStream<SimulatedPeripheral>
    private let servedContinuation: AsyncStream<SimulatedPeripheral>.Continuation

    private init(path: String, capture: ATTCapture, listener: SeqPacketListener) {
        self.path = path
        self.capture = capture
        self.listener = listener
        (served, servedContinuation) = AsyncStream<SimulatedPeripheral>.makeStream()
    }

    /// Listens at `path` and serves each connection, one at a time, with a new
    /// ``SimulatedPeripheral`` playing `capture`.
    public static func listen(path: String, capture: ATTCapture) throws(BluetoothError) -> ScriptedPeripheral {
        let listener = try SeqPacketListener.listen(path: path)
        let p = ScriptedPeripheral(path: path, capture: capture, listener: listener)
        _ = acceptLoop(listener: listener, capture: capture, served: p.servedContinuation)
        return p
    }

    /// Listens at `path`, playing `firmware-fixtures/ble/<name>.att`.
    public static func listen(path: String, fixture name: String) throws -> ScriptedPeripheral {
        try listen(path: path, capture: loadCapture(name))
    }

    /// Parses `firmware-fixtures/ble/<name>.att`.
    public static func loadCapture(_ name: String) throws -> ATTCapture {
        let bytes = try Fixtures.readFile(Fixtures.fixturesDirectory + "/ble/" + name + ".att")
        return try ATTCapture.parse(String(decoding: bytes, as: UTF8.self))
    }

    private static func acceptLoop(listener: SeqPacketListener, capture: ATTCapture,
                                   served: AsyncStream<SimulatedPeripheral>.Continuation) -> Task<Void, Never> {
        Task {
            do {
                for try await bearer in listener.connections {
                    let peripheral = SimulatedPeripheral(capture: capture)
                    served.yield(peripheral)
                    await peripheral.serve(bearer)
                    bearer.close()
                }
            } catch {}
            served.finish()
        }
    }

    /// The peripherals serving each accepted connection, in order: a fresh one per connection,
    /// so a reconnecting client sees the script again from the start.
    public var connections: AsyncStream<SimulatedPeripheral> { served }

    /// Stops listening; a connection being served ends when its client leaves.
    public func stop() {
        listener.close()
    }

    /// Serves one end of a socketpair: returns the client's end and the peripheral, already
    /// serving on its own task.
    public static func pair(capture: ATTCapture) throws(BluetoothError) -> (client: SeqPacketBearer, peripheral: SimulatedPeripheral) {
        let (client, server) = try SeqPacketBearer.pair()
        let peripheral = SimulatedPeripheral(capture: capture)
        Task { await peripheral.serve(server); server.close() }
        return (client, peripheral)
    }
}
