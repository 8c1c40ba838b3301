import Glibc
import Dispatch
import CBlueZ

/// An LE scan through libbluetooth's HCI interface: opens the adapter's raw HCI socket
/// (`hci_open_dev`), sets the scan parameters and enables scanning (HCI LE Set Scan
/// Parameters / Enable, Core v5.3 Vol 4 Part E §7.8.10–11), and reads LE Advertising Report
/// events. Needs CAP_NET_RAW and CAP_NET_ADMIN.
///
/// On a kernel without Bluetooth `hci_get_route`/`hci_open_dev` fail with EAFNOSUPPORT: that
/// surfaces as ``BluetoothError`` code `.unavailable`.
public final class LEScanner: Sendable {
    private let socket: DatagramSocket
    private let dd: Int32
    /// Advertising reports as they arrive. Ends after ``stop()`` or with the error that ended
    /// the scan. Reports whose data do not parse carry the error in `data`.
    public let reports: AsyncThrowingStream<AdvertisingReport, any Error>

    private init(socket: DatagramSocket, dd: Int32, reports: AsyncThrowingStream<AdvertisingReport, any Error>) {
        self.socket = socket
        self.dd = dd
        self.reports = reports
    }

    /// Turns raw HCI packets into advertising reports (on a task, started by ``start``).
    private static func reportStream(_ socket: DatagramSocket) -> AsyncThrowingStream<AdvertisingReport, any Error> {
        let raw = socket.incoming
        let (stream, cont) = AsyncThrowingStream<AdvertisingReport, any Error>.makeStream()
        let pump = Task {
            do {
                for try await packet in raw {
                    // A malformed HCI event is skipped: one bad event must not end a scan.
                    for r in (try? AdvertisingReport.parseHCIEvent(packet)) ?? [] { cont.yield(r) }
                }
                cont.finish()
            } catch {
                cont.finish(throwing: error)
            }
        }
        cont.onTermination = { _ in pump.cancel(); socket.close() }
        return stream
    }

    private static let queue = DispatchQueue(label: "vigil.bluetooth.hci")

    /// Starts a scan on `adapter` (hciN; nil: the first available). `active` sends scan
    /// requests (to get scan responses, e.g. names). Interval and window in 0.625 ms units.
    /// The HCI commands wait up to 1 s for the controller, on a dedicated queue.
    public static func start(adapter: Int32? = nil, active: Bool = true,
                             interval: UInt16 = 0x0010, window: UInt16 = 0x0010) async throws(BluetoothError) -> LEScanner {
        let result: Result<Int32, BluetoothError> = await withCheckedContinuation { cont in
            queue.async {
                do throws(BluetoothError) {
                    cont.resume(returning: .success(try openAndEnable(adapter: adapter, active: active, interval: interval, window: window)))
                } catch {
                    cont.resume(returning: .failure(error))
                }
            }
        }
        let dd = try result.get()
        let link = "hci\(adapter.map(String.init) ?? "")"
        // The descriptor is shared: `DatagramSocket` reads and closes it; the scanner only uses
        // it for the disable command in stop(), before closing.
        let socket = try DatagramSocket(fd: dd, link: link)
        try socket.start()
        return LEScanner(socket: socket, dd: dd, reports: reportStream(socket))
    }

    static func openAndEnable(adapter: Int32?, active: Bool, interval: UInt16, window: UInt16) throws(BluetoothError) -> Int32 {
        let link = "hci\(adapter.map(String.init) ?? "")"
        let devID: Int32
        if let adapter {
            devID = adapter
        } else {
            devID = hci_get_route(nil)
            if devID < 0 {
                let e = errno
                throw unavailableOrIO(e == 0 ? ENODEV : e, link: link, operation: "hci_get_route")
            }
        }
        let dd = hci_open_dev(devID)
        if dd < 0 { throw unavailableOrIO(errno, link: link, operation: "hci_open_dev") }
        // Public own address, accept all advertisers (filter policy 0), 1 s command timeout.
        if hci_le_set_scan_parameters(dd, active ? 0x01 : 0x00, vigil_htobs(interval), vigil_htobs(window), 0x00, 0x00, 1000) < 0 {
            let e = errno
            _ = hci_close_dev(dd)
            throw unavailableOrIO(e, link: link, operation: "hci_le_set_scan_parameters")
        }
        // Enable, no duplicate filtering (a device's RSSI and data changes matter).
        if hci_le_set_scan_enable(dd, 0x01, 0x00, 1000) < 0 {
            let e = errno
            _ = hci_close_dev(dd)
            throw unavailableOrIO(e, link: link, operation: "hci_le_set_scan_enable")
        }
        var filter = hci_filter()
        hci_filter_clear(&filter)
        hci_filter_set_ptype(HCI_EVENT_PKT, &filter)
        hci_filter_set_event(EVT_LE_META_EVENT, &filter)
        if setsockopt(dd, SOL_HCI, HCI_FILTER, &filter, socklen_t(MemoryLayout<hci_filter>.size)) < 0 {
            let e = errno
            _ = hci_le_set_scan_enable(dd, 0x00, 0x00, 1000)
            _ = hci_close_dev(dd)
            throw unavailableOrIO(e, link: link, operation: "setsockopt HCI_FILTER")
        }
        return dd
    }

    static func unavailableOrIO(_ e: Int32, link: String, operation: String) -> BluetoothError {
        switch e {
        case EAFNOSUPPORT, EPROTONOSUPPORT:
            BluetoothError.unavailable(link: link, operation: operation, errno: e,
                                       reason: "Bluetooth unavailable: \(errnoName(e)) (the kernel has no Bluetooth support)")
        case ENODEV:
            BluetoothError.unavailable(link: link, operation: operation, errno: e,
                                       reason: "Bluetooth unavailable: no adapter, or it is down (\(errnoName(e)))")
        default:
            BluetoothError.from(errno: e, link: link, operation: operation)
        }
    }

    /// An advertiser heard by ``collect(for:limit:)``.
    public struct Advertiser: Sendable {
        public var address: String
        public var rssi: Int8?
        public var data: AdvertisingData
    }

    /// Listens for `duration`, then stops the scan: one entry per address in the order first
    /// heard (at most `limit`), with a scan response's name and service UUIDs merged into the
    /// advertisement's and the latest RSSI kept. Reports whose data do not parse are skipped. If
    /// the scan ends early, its error comes back with what was heard until then.
    public func collect(for duration: Duration, limit: Int = .max) async -> (advertisers: [Advertiser], error: (any Error)?) {
        var heard: [Advertiser] = []
        var index: [String: Int] = [:]
        var failure: (any Error)?
        let deadline = ContinuousClock.now + duration
        let reports = self.reports
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await Task.sleep(until: deadline)
                self.stop()
            }
            do {
                for try await report in reports {
                    guard case .success(let data) = report.data else { continue }
                    if let i = index[report.address] {
                        if heard[i].data.localName == nil { heard[i].data.localName = data.localName }
                        heard[i].data.serviceUUIDs += data.serviceUUIDs.filter { !heard[i].data.serviceUUIDs.contains($0) }
                        heard[i].rssi = report.rssi ?? heard[i].rssi
                    } else if heard.count < limit {
                        index[report.address] = heard.count
                        heard.append(Advertiser(address: report.address, rssi: report.rssi, data: data))
                    }
                }
            } catch {
                failure = error
            }
            group.cancelAll()
        }
        return (heard, failure)
    }

    /// Disables scanning and closes the HCI socket.
    public func stop() {
        // Best effort: the command waits up to 1 s for the controller; the adapter may be gone.
        let dd = self.dd
        let socket = self.socket
        Self.queue.async {
            socket.withOpenDescriptor { fd in
                guard fd == dd else { return }
                _ = hci_le_set_scan_enable(fd, 0x00, 0x00, 1000)
            }
            socket.close()
        }
    }
}
