public import DeviceDecoding
public import VitalSigns

/// A primary service found by Discover All Primary Services (Core v5.3 Vol 3 Part G §4.4.1).
public struct GATTService: Hashable, Sendable {
    public var uuid: BluetoothUUID
    /// The handle range the service occupies (inclusive).
    public var startHandle: UInt16
    public var endHandle: UInt16
    /// Filled by ``GATTClient/discover()``; empty after ``GATTClient/discoverPrimaryServices()``.
    public var characteristics: [GATTCharacteristicInfo]

    public init(uuid: BluetoothUUID, startHandle: UInt16, endHandle: UInt16, characteristics: [GATTCharacteristicInfo] = []) {
        self.uuid = uuid
        self.startHandle = startHandle
        self.endHandle = endHandle
        self.characteristics = characteristics
    }
}

/// Characteristic Properties (Core v5.3 Vol 3 Part G §3.3.1.1, table 3.5).
public struct GATTCharacteristicProperties: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let broadcast = Self(rawValue: 0x01)
    public static let read = Self(rawValue: 0x02)
    public static let writeWithoutResponse = Self(rawValue: 0x04)
    public static let write = Self(rawValue: 0x08)
    public static let notify = Self(rawValue: 0x10)
    public static let indicate = Self(rawValue: 0x20)
    public static let authenticatedSignedWrites = Self(rawValue: 0x40)
    public static let extendedProperties = Self(rawValue: 0x80)
}

/// A characteristic found by Discover All Characteristics of a Service (§4.6.1), with the
/// descriptors found by Discover All Characteristic Descriptors (§4.7.1).
public struct GATTCharacteristicInfo: Hashable, Sendable {
    public var uuid: BluetoothUUID
    public var properties: GATTCharacteristicProperties
    /// The handle of the characteristic declaration (attribute type 0x2803).
    public var declarationHandle: UInt16
    /// The handle of the characteristic value: reads, writes, notifications and indications use it.
    public var valueHandle: UInt16
    /// The last handle that belongs to this characteristic (its descriptors lie in
    /// valueHandle+1 … endHandle).
    public var endHandle: UInt16
    public var descriptors: [GATTDescriptor]

    public init(uuid: BluetoothUUID, properties: GATTCharacteristicProperties, declarationHandle: UInt16,
                valueHandle: UInt16, endHandle: UInt16, descriptors: [GATTDescriptor] = []) {
        self.uuid = uuid
        self.properties = properties
        self.declarationHandle = declarationHandle
        self.valueHandle = valueHandle
        self.endHandle = endHandle
        self.descriptors = descriptors
    }

    /// The Client Characteristic Configuration descriptor (0x2902), when discovered.
    public var cccdHandle: UInt16? {
        descriptors.first { $0.uuid == .clientCharacteristicConfiguration }?.handle
    }

    /// The decoder's characteristic number, for 16-bit UUIDs.
    public var characteristic: GATTCharacteristic? { uuid.characteristic }
}

/// A characteristic descriptor: its handle and type.
public struct GATTDescriptor: Hashable, Sendable {
    public var handle: UInt16
    public var uuid: BluetoothUUID
    public init(handle: UInt16, uuid: BluetoothUUID) { self.handle = handle; self.uuid = uuid }
}

/// What the client asks a characteristic to send, written to its CCCD (Core v5.3 Vol 3 Part G
/// §3.3.3.3): bit 0 notifications, bit 1 indications.
public enum GATTSubscription: UInt16, Sendable, Hashable, CaseIterable {
    case none = 0x0000
    case notifications = 0x0001
    case indications = 0x0002
}

/// One value the peripheral pushed: a Handle Value Notification or Indication.
public struct GATTValue: Sendable {
    /// The characteristic value handle it came from.
    public var handle: UInt16
    /// The characteristic's UUID, nil when the handle was not discovered.
    public var uuid: BluetoothUUID?
    /// The value, as sent (patient data: never log it).
    public var bytes: [UInt8]
    /// When Vigil received it (CLOCK_REALTIME).
    public var receivedAt: Timestamp
    /// For an indication: the confirmation to send once the reading is committed. Nil for a
    /// notification.
    public var indication: IndicationConfirmation?

    public init(handle: UInt16, uuid: BluetoothUUID?, bytes: [UInt8], receivedAt: Timestamp, indication: IndicationConfirmation?) {
        self.handle = handle
        self.uuid = uuid
        self.bytes = bytes
        self.receivedAt = receivedAt
        self.indication = indication
    }

    /// The decoder's characteristic number, for 16-bit UUIDs.
    public var characteristic: GATTCharacteristic? { uuid?.characteristic }
    public var isIndication: Bool { indication != nil }
}

/// The pending Handle Value Confirmation of one indication (Core v5.3 Vol 3 Part F §3.4.7.3).
///
/// A device deletes an indicated stored record once it is confirmed, so the daemon calls
/// ``confirm()`` only after the reading is committed to SQLite. Until then ATT allows no
/// further indication. If the link drops first, the device sends the value again after
/// reconnecting.
public final class IndicationConfirmation: Sendable {
    private let client: GATTClient
    let serial: UInt64

    init(client: GATTClient, serial: UInt64) {
        self.client = client
        self.serial = serial
    }

    /// Sends the Handle Value Confirmation. Calling it again is a no-op. Throws when the link
    /// is already gone (then the device will indicate the value again on the next connection).
    public func confirm() throws(BluetoothError) {
        try client.confirmIndication(serial: serial)
    }

    /// Whether the confirmation has been sent.
    public var isConfirmed: Bool { client.isConfirmed(serial: serial) }
}

/// Record Access Control Point "Report stored records" filter (GLS/PLXS/WSS, RACP: op code 0x01).
public enum RACPRecordFilter: Sendable, Hashable {
    /// Operator 0x01: all records.
    case all
    /// Operator 0x03 (greater than or equal to) with filter type 0x01 (sequence number).
    case fromSequenceNumber(UInt16)

    /// The RACP request bytes: op code, operator, operand.
    public var requestBytes: [UInt8] {
        switch self {
        case .all: [0x01, 0x01]
        case .fromSequenceNumber(let n): [0x01, 0x03, 0x01, UInt8(n & 0xFF), UInt8(n >> 8)]
        }
    }
}

/// The end of a RACP "report stored records" procedure.
public struct RACPOutcome: Sendable, Hashable {
    /// RACP Response Code value (0x01 success, 0x06 no records found, 0x02 op code not
    /// supported, 0x04 operator not supported, 0x05 operand not supported, 0x07 abort
    /// unsuccessful, 0x08 procedure not completed, 0x09 operand not supported (filter type)).
    public var responseCode: UInt8
    /// Notifications and indications received from other characteristics between the RACP
    /// write and its response: the stored records (they are delivered on ``GATTClient/values``).
    public var valuesReceived: Int

    public init(responseCode: UInt8, valuesReceived: Int) {
        self.responseCode = responseCode
        self.valuesReceived = valuesReceived
    }

    public var succeeded: Bool { responseCode == 0x01 }
    public var noRecordsFound: Bool { responseCode == 0x06 }
}
