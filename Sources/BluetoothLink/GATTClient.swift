import Glibc
import Synchronization
public import Logging
public import VitalSigns

/// Vigil's own GATT client (Core v5.3 Vol 3 Part G) over any ``ATTBearer``.
///
/// ATT rules kept (Part F §3.3): one outstanding request at a time (callers are queued); a
/// transaction that gets no response within `transactionTimeout` (30 s) closes the bearer and
/// fails with `.timeout`; a protocol violation (an unexpected response opcode, a second
/// indication before the confirmation, a malformed PDU) closes the bearer and fails with
/// `.protocolViolation` naming it. After either, every call fails with that error and
/// ``values`` ends with it. Errors never contain characteristic values.
///
/// Threading: the bearer's thread receives; a pump task started by ``connect(bearer:configuration:logger:)``
/// dispatches PDUs; nothing here blocks a cooperative-pool thread.
public final class GATTClient: Sendable {
    public struct Configuration: Sendable {
        /// The ATT transaction timeout (Core v5.3 Vol 3 Part F §3.3.3: 30 s). Shorter in tests.
        public var transactionTimeout: Duration
        /// The receive MTU Vigil offers in Exchange MTU, in octets (23…517).
        public var preferredMTU: UInt16
        /// How long a RACP procedure may take from the request to its response (not an ATT
        /// transaction: records arrive in between, each waiting for its commit).
        public var racpTimeout: Duration

        public init(transactionTimeout: Duration = .seconds(30), preferredMTU: UInt16 = 247, racpTimeout: Duration = .seconds(120)) {
            self.transactionTimeout = transactionTimeout
            self.preferredMTU = min(517, max(23, preferredMTU))
            self.racpTimeout = racpTimeout
        }
    }

    public let bearer: any ATTBearer
    public let configuration: Configuration
    /// Values the peripheral pushed, in arrival order. Single consumer. Ends normally after
    /// ``close()``, or with the ``BluetoothError`` that ended the link.
    public let values: AsyncThrowingStream<GATTValue, any Error>
    private let valuesContinuation: AsyncThrowingStream<GATTValue, any Error>.Continuation
    private let logger: Logger
    private let state = Mutex(State())

    private struct Pending {
        var id: UInt64
        var request: UInt8
        var expected: UInt8
        var continuation: CheckedContinuation<ATTPDU, any Error>
        var timer: Task<Void, Never>?
    }

    private struct RACPWait {
        var handle: UInt16
        var continuation: CheckedContinuation<[UInt8], any Error>?
        var received: [UInt8]?
        var valuesReceived = 0
    }

    private struct State {
        var mtu = 23
        var nextID: UInt64 = 1
        var busy = false
        var waiters: [CheckedContinuation<Void, any Error>] = []
        var pending: Pending?
        var failure: BluetoothError?
        var closedByUser = false
        var handles: [UInt16: BluetoothUUID] = [:]
        var outstandingIndication: UInt64?
        var confirmedUpTo: UInt64 = 0
        var racp: RACPWait?
        var pump: Task<Void, Never>?
    }

    private init(bearer: any ATTBearer, configuration: Configuration, logger: Logger) {
        self.bearer = bearer
        self.configuration = configuration
        self.logger = logger
        (values, valuesContinuation) = AsyncThrowingStream<GATTValue, any Error>.makeStream()
    }

    /// A client over `bearer`, already receiving. (A factory, not an initialiser, because it
    /// starts the task that dispatches incoming PDUs.)
    public static func connect(bearer: any ATTBearer, configuration: Configuration = Configuration(),
                               logger: Logger = Logger(label: "vigil.ble")) -> GATTClient {
        let client = GATTClient(bearer: bearer, configuration: configuration, logger: logger)
        let pump = Task { [client] in await client.pumpIncoming() }
        client.state.withLock { $0.pump = pump }
        return client
    }

    /// The ATT_MTU in force: 23 until ``exchangeMTU()``.
    public var mtu: Int { state.withLock { $0.mtu } }

    /// The error that ended the link, if it has ended.
    public var failure: BluetoothError? { state.withLock { $0.failure } }

    /// Closes the link. ``values`` ends normally; pending calls fail with `.disconnected`.
    public func close() {
        let pump = state.withLock { s -> Task<Void, Never>? in
            s.closedByUser = true
            return s.pump
        }
        fail(BluetoothError(code: .disconnected, link: bearer.link, operation: "close", reason: "the link was closed by Vigil"))
        pump?.cancel()
    }

    // MARK: Procedures

    /// Exchange MTU (§4.3.1): offers `configuration.preferredMTU`; the ATT_MTU becomes the
    /// smaller of both receive MTUs, never below 23. Returns it.
    @discardableResult
    public func exchangeMTU() async throws(BluetoothError) -> Int {
        let rsp = try await transact(.exchangeMTURequest(clientRxMTU: configuration.preferredMTU), "Exchange MTU")
        guard case .exchangeMTUResponse(let server) = rsp else { throw unexpected(rsp, "Exchange MTU") }
        let mtu = max(23, min(Int(configuration.preferredMTU), Int(server)))
        state.withLock { $0.mtu = mtu }
        return mtu
    }

    /// Discover All Primary Services (§4.4.1): Read By Group Type over 0x0001…0xFFFF for 0x2800.
    public func discoverPrimaryServices() async throws(BluetoothError) -> [GATTService] {
        var services: [GATTService] = []
        var start: UInt16 = 1
        let procedure = "Discover All Primary Services"
        while true {
            let rsp = try await transact(.readByGroupTypeRequest(start: start, end: 0xFFFF, type: .primaryService), procedure, endOnNotFound: true)
            guard let rsp else { break }
            guard case .readByGroupTypeResponse(let list) = rsp else { throw unexpected(rsp, procedure) }
            var last = start
            for item in list {
                guard item.handle >= start, item.endGroupHandle >= item.handle,
                      let uuid = BluetoothUUID(littleEndian: item.value), item.value.count == 2 || item.value.count == 16 else {
                    throw violation("\(procedure): a service group with an invalid handle range or UUID")
                }
                services.append(GATTService(uuid: uuid, startHandle: item.handle, endHandle: item.endGroupHandle))
                last = item.endGroupHandle
            }
            if last == 0xFFFF { break }
            start = last + 1
        }
        return services
    }

    /// Discover All Characteristics of a Service (§4.6.1): Read By Type for 0x2803 over the
    /// service's handle range. `endHandle` of each is set from the next declaration.
    public func discoverCharacteristics(of service: GATTService) async throws(BluetoothError) -> [GATTCharacteristicInfo] {
        var found: [GATTCharacteristicInfo] = []
        var start = service.startHandle
        let procedure = "Discover All Characteristics of a Service"
        while start <= service.endHandle {
            let rsp = try await transact(.readByTypeRequest(start: start, end: service.endHandle, type: .characteristicDeclaration), procedure, endOnNotFound: true)
            guard let rsp else { break }
            guard case .readByTypeResponse(let list) = rsp else { throw unexpected(rsp, procedure) }
            var last = start
            for item in list {
                let v = item.value
                guard item.handle >= start, item.handle <= service.endHandle, v.count == 5 || v.count == 19,
                      let uuid = BluetoothUUID(littleEndian: v[3...]) else {
                    throw violation("\(procedure): a characteristic declaration with an invalid handle or length")
                }
                let valueHandle = UInt16(v[1]) | UInt16(v[2]) << 8
                guard valueHandle > item.handle, valueHandle <= service.endHandle else {
                    throw violation("\(procedure): a characteristic value handle outside its service")
                }
                found.append(GATTCharacteristicInfo(uuid: uuid, properties: GATTCharacteristicProperties(rawValue: v[0]),
                                                    declarationHandle: item.handle, valueHandle: valueHandle, endHandle: service.endHandle))
                last = item.handle
            }
            if last == 0xFFFF { break }
            start = last + 1
        }
        for i in found.indices.dropLast() { found[i].endHandle = found[i + 1].declarationHandle - 1 }
        state.withLock { s in for c in found { s.handles[c.valueHandle] = c.uuid } }
        return found
    }

    /// Discover All Characteristic Descriptors (§4.7.1): Find Information over
    /// valueHandle+1 … endHandle.
    public func discoverDescriptors(of characteristic: GATTCharacteristicInfo) async throws(BluetoothError) -> [GATTDescriptor] {
        var found: [GATTDescriptor] = []
        guard characteristic.valueHandle < characteristic.endHandle else { return [] }
        var start = characteristic.valueHandle + 1
        let procedure = "Discover All Characteristic Descriptors"
        while start <= characteristic.endHandle {
            let rsp = try await transact(.findInformationRequest(start: start, end: characteristic.endHandle), procedure, endOnNotFound: true)
            guard let rsp else { break }
            guard case .findInformationResponse(let list) = rsp else { throw unexpected(rsp, procedure) }
            var last = start
            for item in list {
                guard item.handle >= start, item.handle <= characteristic.endHandle else {
                    throw violation("\(procedure): a descriptor handle outside the requested range")
                }
                found.append(GATTDescriptor(handle: item.handle, uuid: item.uuid))
                last = item.handle
            }
            if last == 0xFFFF { break }
            start = last + 1
        }
        return found
    }

    /// All of the above: every primary service with its characteristics and their descriptors.
    public func discover() async throws(BluetoothError) -> [GATTService] {
        var services = try await discoverPrimaryServices()
        for i in services.indices {
            var chars = try await discoverCharacteristics(of: services[i])
            for j in chars.indices where chars[j].properties.contains(.notify) || chars[j].properties.contains(.indicate) || chars[j].valueHandle < chars[j].endHandle {
                chars[j].descriptors = try await discoverDescriptors(of: chars[j])
            }
            services[i].characteristics = chars
        }
        return services
    }

    /// Read Characteristic Value (§4.8.1): Read Request. Values longer than MTU−1 are returned
    /// cut at MTU−1 (Read Blob is not used: no health characteristic Vigil reads is that long).
    public func read(handle: UInt16) async throws(BluetoothError) -> [UInt8] {
        let rsp = try await transact(.readRequest(handle: handle), "Read Characteristic Value")
        guard case .readResponse(let v) = rsp else { throw unexpected(rsp, "Read Characteristic Value") }
        return v
    }

    /// Write Characteristic Value (§4.9.3): Write Request, waits for the Write Response.
    public func write(handle: UInt16, value: [UInt8]) async throws(BluetoothError) {
        try checkLength(value, "Write Characteristic Value")
        let rsp = try await transact(.writeRequest(handle: handle, value: value), "Write Characteristic Value")
        guard case .writeResponse = rsp else { throw unexpected(rsp, "Write Characteristic Value") }
    }

    /// Write Without Response (§4.9.1): Write Command.
    public func writeWithoutResponse(handle: UInt16, value: [UInt8]) throws(BluetoothError) {
        try checkLength(value, "Write Without Response")
        try checkOpen()
        try bearer.send(ATTPDU.writeCommand(handle: handle, value: value).serialize())
    }

    /// Enables notifications or indications (or neither) by writing the characteristic's CCCD
    /// (§4.12.3, §3.3.3.3). The characteristic must have been discovered with its descriptors.
    public func subscribe(_ characteristic: GATTCharacteristicInfo, _ mode: GATTSubscription) async throws(BluetoothError) {
        guard let cccd = characteristic.cccdHandle else {
            throw BluetoothError(code: .notFound, link: bearer.link, operation: "Write CCCD",
                                 reason: "characteristic \(characteristic.uuid) has no Client Characteristic Configuration descriptor")
        }
        if mode == .notifications, !characteristic.properties.contains(.notify) {
            throw BluetoothError(code: .invalidUse, link: bearer.link, operation: "Write CCCD", reason: "characteristic \(characteristic.uuid) does not support notifications")
        }
        if mode == .indications, !characteristic.properties.contains(.indicate) {
            throw BluetoothError(code: .invalidUse, link: bearer.link, operation: "Write CCCD", reason: "characteristic \(characteristic.uuid) does not support indications")
        }
        state.withLock { $0.handles[characteristic.valueHandle] = characteristic.uuid }
        try await write(handle: cccd, value: [UInt8(mode.rawValue & 0xFF), UInt8(mode.rawValue >> 8)])
    }

    /// RACP "Report stored records" (op code 0x01; GLS §3.2.2 / PLXS / WSS) on the Record
    /// Access Control Point `racp` (its indications must be enabled with ``subscribe(_:_:)``).
    ///
    /// The records arrive on ``values`` as ordinary notifications or indications, and are
    /// committed and confirmed by the consumer as usual; this call returns when the RACP
    /// response indication arrives (confirmed here: it is not a reading). A response code other
    /// than success or "no records found" is returned, not thrown.
    public func reportStoredRecords(_ filter: RACPRecordFilter, racp: GATTCharacteristicInfo) async throws(BluetoothError) -> RACPOutcome {
        let procedure = "RACP Report Stored Records"
        let busy = state.withLock { s -> Bool in
            if s.racp != nil { return true }
            s.racp = RACPWait(handle: racp.valueHandle)
            return false
        }
        guard !busy else {
            throw BluetoothError(code: .invalidUse, link: bearer.link, operation: procedure, reason: "a RACP procedure is already in progress")
        }
        do {
            try await write(handle: racp.valueHandle, value: filter.requestBytes)
        } catch {
            state.withLock { $0.racp = nil }
            throw error
        }
        let response: [UInt8]
        do {
            response = try await waitForRACPResponse(procedure)
        } catch {
            state.withLock { $0.racp = nil }
            throw error
        }
        let count = state.withLock { s -> Int in
            defer { s.racp = nil }
            return s.racp?.valuesReceived ?? 0
        }
        // Response Code (0x06), operator Null (0x00), request op code, response code value.
        guard response.count == 4, response[0] == 0x06, response[1] == 0x00 else {
            throw violation("\(procedure): a RACP response that is not a Response Code (\(response.count) bytes)")
        }
        return RACPOutcome(responseCode: response[3], valuesReceived: count)
    }

    /// Writes the Current Time characteristic (CTS 0x2A2B, CTS §3.1): Exact Time 256 (Date Time,
    /// Day of Week, Fractions256) and Adjust Reason "manual time update". Devices that do not
    /// allow writing answer with an ATT error (thrown as `.attError`).
    public func writeCurrentTime(handle: UInt16, localTime t: CivilDateTime) async throws(BluetoothError) {
        try await write(handle: handle, value: Self.currentTimeBytes(t))
    }

    /// The 10-byte Current Time value for a civil time: year (uint16), month, day, hours,
    /// minutes, seconds, day of week (1 = Monday … 7 = Sunday), fractions256, adjust reason 0x01.
    public static func currentTimeBytes(_ t: CivilDateTime) -> [UInt8] {
        let year = UInt16(clamping: t.year)
        let fractions = UInt8(clamping: t.millisecond * 256 / 1000)
        return [UInt8(year & 0xFF), UInt8(year >> 8), UInt8(clamping: t.month), UInt8(clamping: t.day),
                UInt8(clamping: t.hour), UInt8(clamping: t.minute), UInt8(clamping: t.second),
                dayOfWeek(year: t.year, month: t.month, day: t.day), fractions, 0x01]
    }

    /// ISO day of week (1 = Monday … 7 = Sunday) of a proleptic Gregorian date; 0 (unknown)
    /// for an invalid date.
    static func dayOfWeek(year: Int, month: Int, day: Int) -> UInt8 {
        guard (1...12).contains(month), (1...31).contains(day) else { return 0 }
        // Days from civil (H. Hinnant's algorithm); 1970-01-01 was a Thursday (4).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        let wd = ((days % 7) + 7 + 3) % 7  // 0 = Monday
        return UInt8(wd + 1)
    }

    // MARK: Indication confirmations

    func confirmIndication(serial: UInt64) throws(BluetoothError) {
        enum Step { case send, nothing, failed(BluetoothError) }
        let step: Step = state.withLock { s in
            if serial <= s.confirmedUpTo { return .nothing }
            if let f = s.failure { return .failed(f) }
            guard s.outstandingIndication == serial else { return .nothing }
            return .send
        }
        switch step {
        case .nothing: return
        case .failed(let f): throw f
        case .send: break
        }
        do {
            try bearer.send(ATTPDU.confirmation.serialize())
        } catch {
            fail(error)
            throw error
        }
        state.withLock { s in
            if s.outstandingIndication == serial { s.outstandingIndication = nil }
            s.confirmedUpTo = max(s.confirmedUpTo, serial)
        }
    }

    func isConfirmed(serial: UInt64) -> Bool { state.withLock { serial <= $0.confirmedUpTo } }

    // MARK: Transactions

    /// One ATT request/response transaction; an Error Response is thrown as `.attError`.
    private func transact(_ request: ATTPDU, _ procedure: String) async throws(BluetoothError) -> ATTPDU {
        guard let rsp = try await transact(request, procedure, endOnNotFound: false) else {
            throw BluetoothError(code: .notFound, link: bearer.link, operation: procedure, reason: "attribute not found")
        }
        return rsp
    }

    /// One ATT request/response transaction. With `endOnNotFound`, an Error Response
    /// "Attribute Not Found" ends a discovery procedure and yields nil.
    private func transact(_ request: ATTPDU, _ procedure: String, endOnNotFound: Bool) async throws(BluetoothError) -> ATTPDU? {
        let rsp = try await exchange(request, procedure)
        if case .errorResponse(_, let handle, let code) = rsp {
            if endOnNotFound, code == ATTPDU.ErrorCode.attributeNotFound { return nil }
            throw BluetoothError(code: .attError, link: bearer.link, operation: procedure,
                                 reason: "the device refused: \(attErrorName(code)) at handle 0x\(hex(handle))", attErrorCode: code)
        }
        return rsp
    }

    private func exchange(_ request: ATTPDU, _ procedure: String) async throws(BluetoothError) -> ATTPDU {
        try await acquire()
        defer { release() }
        guard let expected = request.expectedResponseOpcode else {
            throw BluetoothError(code: .invalidUse, link: bearer.link, operation: procedure, reason: "not a request")
        }
        let timeout = configuration.transactionTimeout
        do {
            return try await withCheckedThrowingContinuation { (cont: CheckedContinuation<ATTPDU, any Error>) in
                let id: UInt64? = state.withLock { s in
                    if let f = s.failure { cont.resume(throwing: f); return nil }
                    let id = s.nextID
                    s.nextID += 1
                    s.pending = Pending(id: id, request: request.opcode, expected: expected, continuation: cont, timer: nil)
                    return id
                }
                guard let id else { return }
                let timer = Task { [weak self] in
                    try? await Task.sleep(for: timeout)
                    guard !Task.isCancelled else { return }
                    self?.transactionTimedOut(id: id, procedure: procedure)
                }
                let stillPending = state.withLock { s -> Bool in
                    guard s.pending?.id == id else { return false }
                    s.pending?.timer = timer
                    return true
                }
                if !stillPending { timer.cancel(); return }
                do throws(BluetoothError) {
                    try bearer.send(request.serialize())
                } catch {
                    fail(error)
                }
            }
        } catch let e as BluetoothError {
            throw e
        } catch {
            throw BluetoothError(code: .io, link: bearer.link, operation: procedure, reason: "\(error)")
        }
    }

    private func acquire() async throws(BluetoothError) {
        do {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Void, any Error>) in
                state.withLock { s in
                    if let f = s.failure { cont.resume(throwing: f); return }
                    if !s.busy { s.busy = true; cont.resume(); return }
                    s.waiters.append(cont)
                }
            }
        } catch let e as BluetoothError {
            throw e
        } catch {
            throw BluetoothError(code: .io, link: bearer.link, operation: "request", reason: "\(error)")
        }
    }

    private func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, any Error>? in
            if s.waiters.isEmpty { s.busy = false; return nil }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }

    private func waitForRACPResponse(_ procedure: String) async throws(BluetoothError) -> [UInt8] {
        let timeout = configuration.racpTimeout
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            guard !Task.isCancelled, let self else { return }
            let cont = self.state.withLock { s -> CheckedContinuation<[UInt8], any Error>? in
                defer { s.racp?.continuation = nil }
                return s.racp?.continuation
            }
            cont?.resume(throwing: BluetoothError(code: .timeout, link: self.bearer.link, operation: procedure,
                                                  reason: "no RACP response within \(timeout)"))
        }
        defer { timer.cancel() }
        do {
            return try await withCheckedThrowingContinuation { (cont: CheckedContinuation<[UInt8], any Error>) in
                state.withLock { s in
                    if let f = s.failure { cont.resume(throwing: f); return }
                    if let r = s.racp?.received { cont.resume(returning: r); return }
                    s.racp?.continuation = cont
                }
            }
        } catch let e as BluetoothError {
            throw e
        } catch {
            throw BluetoothError(code: .io, link: bearer.link, operation: procedure, reason: "\(error)")
        }
    }

    private func transactionTimedOut(id: UInt64, procedure: String) {
        let isCurrent = state.withLock { $0.pending?.id == id }
        guard isCurrent else { return }
        logger.warning("ATT transaction timeout", metadata: ["link": "\(bearer.link)", "procedure": "\(procedure)"])
        fail(BluetoothError(code: .timeout, link: bearer.link, operation: procedure,
                            reason: "no response within the ATT transaction timeout (\(configuration.transactionTimeout)); link closed"))
    }

    // MARK: Incoming

    private func pumpIncoming() async {
        do {
            for try await bytes in bearer.incoming {
                handle(bytes)
                if state.withLock({ $0.failure != nil }) { return }
            }
            fail(BluetoothError(code: .disconnected, link: bearer.link, operation: "receive", reason: "the link was closed"))
        } catch let e as BluetoothError {
            fail(e)
        } catch {
            fail(BluetoothError(code: .disconnected, link: bearer.link, operation: "receive", reason: "the link ended (\(error))"))
        }
    }

    private func handle(_ bytes: [UInt8]) {
        let pdu: ATTPDU
        do {
            pdu = try ATTPDU.parse(bytes)
        } catch {
            if error.code == .unknownOpcode, let op = error.opcode {
                // Commands (bit 6 set) that we do not know are ignored (§3.3: "shall be
                // ignored"); unknown requests get "Request Not Supported".
                // Requests have even opcodes; responses, notifications and indications odd.
                if op & 0x40 != 0 { return }
                if op & 0x01 == 0 {
                    try? bearer.send(ATTPDU.errorResponse(requestOpcode: op, handle: 0, error: ATTPDU.ErrorCode.requestNotSupported).serialize())
                    return
                }
            }
            fail(violation(error.description))
            return
        }
        switch pdu {
        case .errorResponse(let req, _, _):
            resolve(pdu, matching: { $0.request == req })
        case .exchangeMTUResponse, .findInformationResponse, .readByTypeResponse, .readResponse, .readByGroupTypeResponse, .writeResponse:
            resolve(pdu, matching: { $0.expected == pdu.opcode })
        case .notification(let h, let v):
            let uuid = state.withLock { s -> BluetoothUUID? in
                if s.racp != nil, s.racp?.handle != h { s.racp?.valuesReceived += 1 }
                return s.handles[h]
            }
            valuesContinuation.yield(GATTValue(handle: h, uuid: uuid, bytes: v, receivedAt: realtimeNow(), indication: nil))
        case .indication(let h, let v):
            enum Route { case violation, racp(CheckedContinuation<[UInt8], any Error>?), deliver(UInt64, BluetoothUUID?) }
            let route: Route = state.withLock { s in
                if s.outstandingIndication != nil { return .violation }
                let serial = s.nextID
                s.nextID += 1
                s.outstandingIndication = serial
                if let r = s.racp, r.handle == h {
                    s.racp?.received = v
                    let c = r.continuation
                    s.racp?.continuation = nil
                    return .racp(c)
                }
                if s.racp != nil { s.racp?.valuesReceived += 1 }
                return .deliver(serial, s.handles[h])
            }
            switch route {
            case .violation:
                fail(violation("a second Handle Value Indication before the previous one was confirmed"))
            case .racp(let cont):
                // The RACP response is control, not a reading: confirm it at once.
                let serial = state.withLock { $0.outstandingIndication } ?? 0
                try? confirmIndication(serial: serial)
                cont?.resume(returning: v)
            case .deliver(let serial, let uuid):
                let token = IndicationConfirmation(client: self, serial: serial)
                valuesContinuation.yield(GATTValue(handle: h, uuid: uuid, bytes: v, receivedAt: realtimeNow(), indication: token))
            }
        case .exchangeMTURequest:
            // A server-initiated MTU exchange is not allowed (only the client sends it), but
            // answering costs nothing and keeps odd peers working.
            try? bearer.send(ATTPDU.exchangeMTUResponse(serverRxMTU: configuration.preferredMTU).serialize())
        case .findInformationRequest, .readByTypeRequest, .readRequest, .readByGroupTypeRequest, .writeRequest:
            // Vigil has no GATT server.
            try? bearer.send(ATTPDU.errorResponse(requestOpcode: pdu.opcode, handle: 0, error: ATTPDU.ErrorCode.requestNotSupported).serialize())
        case .writeCommand:
            return
        case .confirmation:
            fail(violation("a Handle Value Confirmation, but Vigil sent no indication"))
        }
    }

    private func resolve(_ pdu: ATTPDU, matching: (Pending) -> Bool) {
        enum Outcome { case resume(CheckedContinuation<ATTPDU, any Error>, Task<Void, Never>?), violation }
        let outcome: Outcome = state.withLock { s in
            guard let p = s.pending, matching(p) else { return .violation }
            s.pending = nil
            return .resume(p.continuation, p.timer)
        }
        switch outcome {
        case .resume(let c, let timer):
            timer?.cancel()
            c.resume(returning: pdu)
        case .violation:
            let waiting = state.withLock { $0.pending.map { ATTPDU.name(ofOpcode: $0.expected) } }
            fail(violation("unexpected \(ATTPDU.name(ofOpcode: pdu.opcode))" + (waiting.map { " while waiting for a \($0)" } ?? " with no request outstanding")))
        }
    }

    /// Ends the link with `error` (first error wins): closes the bearer, fails the pending
    /// request, the queued callers and a RACP wait, and ends ``values``.
    private func fail(_ error: BluetoothError) {
        struct Drained {
            var pending: Pending?
            var waiters: [CheckedContinuation<Void, any Error>]
            var racp: CheckedContinuation<[UInt8], any Error>?
            var error: BluetoothError
            var byUser: Bool
        }
        let drained: Drained? = state.withLock { s in
            guard s.failure == nil else { return nil }
            s.failure = error
            let d = Drained(pending: s.pending, waiters: s.waiters, racp: s.racp?.continuation, error: error, byUser: s.closedByUser)
            s.pending = nil
            s.waiters = []
            s.racp?.continuation = nil
            return d
        }
        guard let d = drained else { return }
        if error.code == .protocolViolation {
            logger.warning("ATT protocol violation; disconnecting", metadata: ["link": "\(bearer.link)", "reason": "\(error.reason)"])
        }
        bearer.close()
        d.pending?.timer?.cancel()
        d.pending?.continuation.resume(throwing: d.error)
        for w in d.waiters { w.resume(throwing: d.error) }
        d.racp?.resume(throwing: d.error)
        if d.byUser { valuesContinuation.finish() } else { valuesContinuation.finish(throwing: d.error) }
    }

    private func violation(_ what: String) -> BluetoothError {
        BluetoothError(code: .protocolViolation, link: bearer.link, operation: "ATT", reason: "protocol violation: \(what); link closed")
    }

    private func unexpected(_ pdu: ATTPDU, _ procedure: String) -> BluetoothError {
        let e = violation("\(procedure) got an unexpected \(ATTPDU.name(ofOpcode: pdu.opcode))")
        fail(e)
        return e
    }

    private func checkOpen() throws(BluetoothError) {
        if let f = state.withLock({ $0.failure }) { throw f }
    }

    private func checkLength(_ value: [UInt8], _ procedure: String) throws(BluetoothError) {
        let limit = mtu - 3
        guard value.count <= limit else {
            throw BluetoothError(code: .invalidUse, link: bearer.link, operation: procedure,
                                 reason: "a \(value.count)-byte value does not fit the ATT_MTU (at most \(limit) bytes)")
        }
    }
}

/// The specification's name of an ATT error code (Core v5.3 Vol 3 Part F table 3.4; CSS Part B §1.2).
public func attErrorName(_ code: UInt8) -> String {
    switch code {
    case 0x01: "Invalid Handle"
    case 0x02: "Read Not Permitted"
    case 0x03: "Write Not Permitted"
    case 0x04: "Invalid PDU"
    case 0x05: "Insufficient Authentication"
    case 0x06: "Request Not Supported"
    case 0x07: "Invalid Offset"
    case 0x08: "Insufficient Authorization"
    case 0x09: "Prepare Queue Full"
    case 0x0A: "Attribute Not Found"
    case 0x0B: "Attribute Not Long"
    case 0x0C: "Encryption Key Size Too Short"
    case 0x0D: "Invalid Attribute Value Length"
    case 0x0E: "Unlikely Error"
    case 0x0F: "Insufficient Encryption"
    case 0x10: "Unsupported Group Type"
    case 0x11: "Insufficient Resources"
    case 0x12: "Database Out Of Sync"
    case 0x13: "Value Not Allowed"
    case 0x80...0x9F: "Application Error 0x" + hex(code)
    case 0xFC: "Write Request Rejected"
    case 0xFD: "Client Characteristic Configuration Descriptor Improperly Configured"
    case 0xFE: "Procedure Already in Progress"
    case 0xFF: "Out of Range"
    default: "error 0x" + hex(code)
    }
}

/// The wall clock now (CLOCK_REALTIME), in milliseconds.
func realtimeNow() -> Timestamp {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Timestamp(millisecondsSinceEpoch: Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000)
}
