/// A GATT server database: attributes with handles, built from service specifications the way
/// a peripheral lays them out (Core v5.3 Vol 3 Part G §3): service declaration, then for each
/// characteristic its declaration, its value and, when it notifies or indicates, its CCCD.
public struct GATTDatabase: Sendable, Hashable {
    public struct Attribute: Sendable, Hashable {
        public var handle: UInt16
        public var type: BluetoothUUID
        public var value: [UInt8]
        /// For a service declaration: the last handle of the service.
        public var groupEnd: UInt16?
        /// For a characteristic value: its properties.
        public var properties: GATTCharacteristicProperties?
    }

    public private(set) var attributes: [Attribute] = []

    /// Lays out `services` from handle 1.
    public init(services: [ATTCapture.ServiceSpec]) {
        var h: UInt16 = 1
        for s in services {
            let serviceIndex = attributes.count
            attributes.append(Attribute(handle: h, type: .primaryService, value: s.uuid.wireBytes, groupEnd: nil, properties: nil))
            h += 1
            for c in s.characteristics {
                let valueHandle = h + 1
                attributes.append(Attribute(handle: h, type: .characteristicDeclaration,
                                            value: [c.properties.rawValue, UInt8(valueHandle & 0xFF), UInt8(valueHandle >> 8)] + c.uuid.wireBytes,
                                            groupEnd: nil, properties: nil))
                attributes.append(Attribute(handle: valueHandle, type: c.uuid, value: c.value, groupEnd: nil, properties: c.properties))
                h = valueHandle + 1
                if c.properties.contains(.notify) || c.properties.contains(.indicate) {
                    attributes.append(Attribute(handle: h, type: .clientCharacteristicConfiguration, value: [0, 0], groupEnd: nil, properties: nil))
                    h += 1
                }
            }
            attributes[serviceIndex].groupEnd = h - 1
        }
    }

    /// The value handle of the first characteristic with this UUID.
    public func valueHandle(of uuid: BluetoothUUID) -> UInt16? {
        attributes.first { $0.type == uuid && $0.properties != nil }?.handle
    }

    /// The CCCD of the characteristic whose value handle is given.
    public func cccdHandle(ofValue valueHandle: UInt16) -> UInt16? {
        guard let i = attributes.firstIndex(where: { $0.handle == valueHandle }) else { return nil }
        var j = i + 1
        while j < attributes.count, attributes[j].type != .characteristicDeclaration, attributes[j].type != .primaryService {
            if attributes[j].type == .clientCharacteristicConfiguration { return attributes[j].handle }
            j += 1
        }
        return nil
    }

    /// The value handle a CCCD belongs to.
    func valueHandle(ofCCCD cccd: UInt16) -> UInt16? {
        guard var i = attributes.firstIndex(where: { $0.handle == cccd }) else { return nil }
        while i > 0 {
            i -= 1
            if attributes[i].properties != nil { return attributes[i].handle }
        }
        return nil
    }

    func index(of handle: UInt16) -> Int? { attributes.firstIndex { $0.handle == handle } }

    mutating func setValue(_ v: [UInt8], at i: Int) { attributes[i].value = v }
}

/// A peripheral simulated in software: answers ATT requests from its ``GATTDatabase`` as a real
/// device would (MTU, discovery, reads, writes, CCCDs, RACP "report stored records") and plays
/// an ``ATTCapture`` script (notifications, indications waiting for their confirmation, delays,
/// a stall, a disconnect, raw malformed PDUs). Runs over any ``ATTBearer`` — in practice a
/// ``SeqPacketBearer`` — so the real ``GATTClient`` can be exercised without Bluetooth.
/// Used by VigilTestKit's `ScriptedPeripheral` and by `vigilctl simulate`.
public actor SimulatedPeripheral {
    public let capture: ATTCapture
    public private(set) var database: GATTDatabase
    /// The ATT_MTU agreed with the client (23 until it exchanges MTU).
    public private(set) var mtu = 23
    /// Handle Value Confirmations received.
    public private(set) var confirmationsReceived = 0
    /// Opcodes of every PDU received, in order (for tests).
    public private(set) var receivedOpcodes: [UInt8] = []
    /// Values written with Write Request or Write Command, by value handle (CCCDs excluded).
    public private(set) var writes: [(handle: UInt16, value: [UInt8])] = []
    /// RACP requests received, as bytes.
    public private(set) var racpRequests: [[UInt8]] = []
    private var stalled = false
    private var subscriptions: [UInt16: UInt16] = [:]   // value handle → CCCD value
    private var subscriptionWaiters: [(UInt16, CheckedContinuation<Void, Never>)] = []
    private var confirmationWaiter: CheckedContinuation<Bool, Never>?
    private var closed = false
    private var racpJobs: AsyncStream<[UInt8]>.Continuation?

    public init(capture: ATTCapture) {
        self.capture = capture
        self.database = GATTDatabase(services: capture.services)
    }

    /// The CCCD value the client wrote for a characteristic (0 none, 1 notifications, 2 indications).
    public func subscription(of uuid: BluetoothUUID) -> UInt16 {
        guard let h = database.valueHandle(of: uuid) else { return 0 }
        return subscriptions[h] ?? 0
    }

    /// Serves one connection until the client goes away or the script disconnects. Returns
    /// normally in both cases; throws only on a bearer error other than the peer leaving.
    public func serve(_ bearer: any ATTBearer) async {
        let (jobs, jobsContinuation) = AsyncStream<[UInt8]>.makeStream()
        racpJobs = jobsContinuation
        // Leading steps that need no waiting (stall, raw, notify, disconnect) run before any
        // request is read, so "stall" or a malformed PDU at the start is deterministic.
        runImmediateSteps(bearer)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await pdu in bearer.incoming { await self.handle(pdu, bearer) }
                } catch {}
                await self.linkEnded()
                jobsContinuation.finish()
            }
            group.addTask {
                await self.runScript(bearer)
            }
            group.addTask {
                for await request in jobs { await self.runRACP(request, bearer) }
            }
            await group.waitForAll()
        }
    }

    private func linkEnded() {
        closed = true
        confirmationWaiter?.resume(returning: false)
        confirmationWaiter = nil
        for (_, w) in subscriptionWaiters { w.resume() }
        subscriptionWaiters = []
    }

    // MARK: Script

    private var scriptIndex = 0

    private func runImmediateSteps(_ bearer: any ATTBearer) {
        while scriptIndex < capture.script.count, !closed {
            switch capture.script[scriptIndex] {
            case .stall: stalled = true
            case .raw(let bytes): try? bearer.send(bytes)
            case .notify(let uuid, let value):
                if let h = database.valueHandle(of: uuid) { try? bearer.send(ATTPDU.notification(handle: h, value: value).serialize()) }
            case .disconnect:
                closed = true
                bearer.close()
            case .waitSubscribed, .indicate, .delay:
                return
            }
            scriptIndex += 1
        }
    }

    private func runScript(_ bearer: any ATTBearer) async {
        for step in capture.script[scriptIndex...] {
            if closed { return }
            switch step {
            case .waitSubscribed(let uuid):
                guard let h = database.valueHandle(of: uuid) else { continue }
                if (subscriptions[h] ?? 0) == 0 {
                    await withCheckedContinuation { subscriptionWaiters.append((h, $0)) }
                }
            case .notify(let uuid, let value):
                guard let h = database.valueHandle(of: uuid) else { continue }
                try? bearer.send(ATTPDU.notification(handle: h, value: value).serialize())
            case .indicate(let uuid, let value):
                guard let h = database.valueHandle(of: uuid) else { continue }
                _ = await indicate(h, value, bearer)
            case .delay(let ms):
                try? await Task.sleep(for: .milliseconds(ms))
            case .stall:
                stalled = true
            case .disconnect:
                bearer.close()
                return
            case .raw(let bytes):
                try? bearer.send(bytes)
            }
        }
    }

    /// Sends an indication and waits for its confirmation; false if the link ended first.
    private func indicate(_ handle: UInt16, _ value: [UInt8], _ bearer: any ATTBearer) async -> Bool {
        if closed { return false }
        do { try bearer.send(ATTPDU.indication(handle: handle, value: value).serialize()) } catch { return false }
        return await withCheckedContinuation { confirmationWaiter = $0 }
    }

    // MARK: RACP (GLS §3.2.2 / PLXS: report stored records)

    private func runRACP(_ request: [UInt8], _ bearer: any ATTBearer) async {
        guard let racp = database.valueHandle(of: BluetoothUUID(0x2A52)) else { return }
        var minimum: UInt16? = nil
        var code: UInt8 = 0x01
        switch request.count >= 2 ? (request[0], request[1]) : (0, 0) {
        case (0x01, 0x01) where request.count == 2: minimum = 0
        case (0x01, 0x03) where request.count == 5 && request[2] == 0x01:
            minimum = UInt16(request[3]) | UInt16(request[4]) << 8
        case (0x01, _): code = 0x04   // operator not supported
        default: code = 0x02          // op code not supported
        }
        var sent = 0
        if let minimum {
            for r in capture.records where r.sequence >= minimum {
                guard let h = database.valueHandle(of: r.characteristic) else { continue }
                let props = database.attributes.first { $0.handle == h }?.properties ?? []
                if props.contains(.indicate), (subscriptions[h] ?? 0) & 2 != 0 {
                    guard await indicate(h, r.value, bearer) else { return }
                } else {
                    try? bearer.send(ATTPDU.notification(handle: h, value: r.value).serialize())
                }
                sent += 1
            }
            if sent == 0 { code = 0x06 }
        }
        let opcode = request.first ?? 0
        _ = await indicate(racp, [0x06, 0x00, opcode, code], bearer)
    }

    // MARK: Requests

    private func handle(_ bytes: [UInt8], _ bearer: any ATTBearer) {
        receivedOpcodes.append(bytes.first ?? 0)
        if bytes.first == ATTPDU.Opcode.confirmation {
            confirmationsReceived += 1
            confirmationWaiter?.resume(returning: true)
            confirmationWaiter = nil
            return
        }
        if stalled { return }
        guard let pdu = try? ATTPDU.parse(bytes) else {
            if let op = bytes.first, op & 0x40 == 0 {
                send(.errorResponse(requestOpcode: op, handle: 0, error: ATTPDU.ErrorCode.requestNotSupported), bearer)
            }
            return
        }
        switch pdu {
        case .exchangeMTURequest(let client):
            mtu = max(23, min(Int(client), Int(capture.mtu)))
            send(.exchangeMTUResponse(serverRxMTU: capture.mtu), bearer)
        case let .readByGroupTypeRequest(start, end, type):
            guard start != 0, start <= end else { return send(invalidHandle(pdu, start), bearer) }
            guard type == .primaryService || type == .secondaryService else {
                return send(.errorResponse(requestOpcode: pdu.opcode, handle: start, error: ATTPDU.ErrorCode.unsupportedGroupType), bearer)
            }
            var list: [ATTPDU.GroupValue] = []
            var size = 2
            for a in database.attributes where a.handle >= start && a.handle <= end && a.type == type {
                if let first = list.first, first.value.count != a.value.count { break }
                let entry = 4 + a.value.count
                if size + entry > mtu { break }
                list.append(ATTPDU.GroupValue(handle: a.handle, endGroupHandle: a.groupEnd ?? a.handle, value: a.value))
                size += entry
            }
            send(list.isEmpty ? notFound(pdu, start) : .readByGroupTypeResponse(list), bearer)
        case let .readByTypeRequest(start, end, type):
            guard start != 0, start <= end else { return send(invalidHandle(pdu, start), bearer) }
            var list: [ATTPDU.HandleValue] = []
            var size = 2
            for a in database.attributes where a.handle >= start && a.handle <= end && a.type == type {
                let value = Array(a.value.prefix(min(253, mtu - 4)))
                if let first = list.first, first.value.count != value.count { break }
                if size + 2 + value.count > mtu { break }
                list.append(ATTPDU.HandleValue(handle: a.handle, value: value))
                size += 2 + value.count
            }
            send(list.isEmpty ? notFound(pdu, start) : .readByTypeResponse(list), bearer)
        case let .findInformationRequest(start, end):
            guard start != 0, start <= end else { return send(invalidHandle(pdu, start), bearer) }
            var list: [ATTPDU.HandleUUID] = []
            var size = 2
            for a in database.attributes where a.handle >= start && a.handle <= end {
                let wide = a.type.shortValue == nil
                if let first = list.first, (first.uuid.shortValue == nil) != wide { break }
                let entry = 2 + (wide ? 16 : 2)
                if size + entry > mtu { break }
                list.append(ATTPDU.HandleUUID(handle: a.handle, uuid: a.type))
                size += entry
            }
            send(list.isEmpty ? notFound(pdu, start) : .findInformationResponse(list), bearer)
        case .readRequest(let h):
            guard let i = database.index(of: h) else { return send(invalidHandle(pdu, h), bearer) }
            let a = database.attributes[i]
            if let p = a.properties, !p.contains(.read) {
                return send(.errorResponse(requestOpcode: pdu.opcode, handle: h, error: ATTPDU.ErrorCode.readNotPermitted), bearer)
            }
            send(.readResponse(value: Array(a.value.prefix(mtu - 1))), bearer)
        case let .writeRequest(h, v), let .writeCommand(h, v):
            let isRequest = pdu.opcode == ATTPDU.Opcode.writeRequest
            guard let i = database.index(of: h) else {
                if isRequest { send(invalidHandle(pdu, h), bearer) }
                return
            }
            let a = database.attributes[i]
            if a.type == .clientCharacteristicConfiguration {
                guard v.count == 2 else {
                    if isRequest { send(.errorResponse(requestOpcode: pdu.opcode, handle: h, error: ATTPDU.ErrorCode.invalidAttributeValueLength), bearer) }
                    return
                }
                database.setValue(v, at: i)
                if let vh = database.valueHandle(ofCCCD: h) {
                    let mode = UInt16(v[0]) | UInt16(v[1]) << 8
                    subscriptions[vh] = mode
                    if mode != 0 {
                        let ready = subscriptionWaiters.filter { $0.0 == vh }
                        subscriptionWaiters.removeAll { $0.0 == vh }
                        for (_, w) in ready { w.resume() }
                    }
                }
                if isRequest { send(.writeResponse, bearer) }
                return
            }
            guard let p = a.properties, p.contains(.write) || p.contains(.writeWithoutResponse) else {
                if isRequest { send(.errorResponse(requestOpcode: pdu.opcode, handle: h, error: ATTPDU.ErrorCode.writeNotPermitted), bearer) }
                return
            }
            writes.append((h, v))
            if a.type == BluetoothUUID(0x2A52) {
                // RACP: the CCCD must allow indications (CSS: 0xFD), one procedure at a time.
                guard (subscriptions[h] ?? 0) & 2 != 0 else {
                    return send(.errorResponse(requestOpcode: pdu.opcode, handle: h, error: ATTPDU.ErrorCode.cccdImproperlyConfigured), bearer)
                }
                racpRequests.append(v)
                if isRequest { send(.writeResponse, bearer) }
                racpJobs?.yield(v)
                return
            }
            database.setValue(v, at: i)
            if isRequest { send(.writeResponse, bearer) }
        default:
            // Responses, notifications and indications are not for a server.
            return
        }
    }

    private func send(_ pdu: ATTPDU, _ bearer: any ATTBearer) {
        try? bearer.send(pdu.serialize())
    }

    private func invalidHandle(_ request: ATTPDU, _ handle: UInt16) -> ATTPDU {
        .errorResponse(requestOpcode: request.opcode, handle: handle, error: ATTPDU.ErrorCode.invalidHandle)
    }

    private func notFound(_ request: ATTPDU, _ handle: UInt16) -> ATTPDU {
        .errorResponse(requestOpcode: request.opcode, handle: handle, error: ATTPDU.ErrorCode.attributeNotFound)
    }
}
