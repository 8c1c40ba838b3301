public import VitalSigns

/// The uplink encodings a site can choose (`uplink.encoding` in vigild.yaml; docs/payloads.md).
public enum UplinkEncodingKind: String, Sendable, CaseIterable {
    /// `vigil.reading/1` JSON, one message per reading (the default).
    case vigilJSON = "vigil-json"
    /// One FHIR R4 Observation per message.
    case fhir
    /// A FHIR R4 `batch` Bundle of up to `batch_max` Observations per message.
    case fhirBundle = "fhir-bundle"
    /// The same Bundle, compressed with DEFLATE in the zlib wrapper (`Deflate`).
    case fhirBundleDeflate = "fhir-bundle-deflate"
}

/// How escalations go out when the readings are FHIR (`uplink.escalations`).
public enum EscalationRendering: String, Sendable, CaseIterable {
    /// `vigil.escalation/1`, which `vigilctl watch` and acknowledgement tooling read (default).
    case vigilJSON = "vigil-json"
    /// A FHIR R4 DetectedIssue (`FhirR4.detectedIssue`).
    case fhir
}

/// Builds the encoding the configuration names. Every encoding puts a content type and a
/// `schema` user property on each message (MQTT 5 only; ignored on 3.1.1), and an expiry of
/// `readingExpirySeconds` on messages that carry only routine readings; escalations, events
/// and status never expire (issue 6, MQTT 5).
public func makeUplinkEncoding(_ kind: UplinkEncodingKind, batchMax: Int = 50, readingExpirySeconds: UInt32? = nil,
                               escalations: EscalationRendering = .vigilJSON,
                               deviceSystem: String = FhirR4.deviceSystem) -> any UplinkEncoding {
    switch kind {
    case .vigilJSON:
        return VigilJSONPropertiesEncoding(readingExpirySeconds: readingExpirySeconds)
    case .fhir, .fhirBundle, .fhirBundleDeflate:
        return FhirObservationEncoding(batchMax: kind == .fhir ? 1 : batchMax, compressed: kind == .fhirBundleDeflate,
                                       readingExpirySeconds: readingExpirySeconds, escalations: escalations,
                                       deviceSystem: deviceSystem)
    }
}

/// `VigilJSONEncoding` plus MQTT 5 properties: content type `application/json`, user property
/// `schema` (`vigil.reading/1`, …), and the reading expiry.
public struct VigilJSONPropertiesEncoding: UplinkEncoding {
    public var readingExpirySeconds: UInt32?
    public init(readingExpirySeconds: UInt32? = nil) { self.readingExpirySeconds = readingExpirySeconds }

    public func messages(for items: [OutboxItem], topics: Topics) -> [UplinkMessage] {
        items.map { item in
            UplinkMessage(topic: topics.topic(for: item.payload), payload: PayloadEncoder.encode(item.payload),
                          properties: Self.properties(for: item.payload, readingExpirySeconds: readingExpirySeconds),
                          keys: [item.key])
        }
    }

    static func properties(for payload: OutboxPayload, readingExpirySeconds: UInt32?) -> PublishProperties {
        switch payload {
        case .reading:
            PublishProperties(messageExpirySeconds: readingExpirySeconds, contentType: "application/json",
                              userProperties: [.init("schema", "vigil.reading/1")])
        case .escalation:
            PublishProperties(contentType: "application/json", userProperties: [.init("schema", "vigil.escalation/1")])
        case .event:
            PublishProperties(contentType: "application/json", userProperties: [.init("schema", "vigil.event/1")])
        }
    }
}

/// Readings as FHIR R4 (4.0.1) Observations conforming to the vital-signs profiles, singly or
/// as `batch` Bundles, optionally compressed; escalations as `vigil.escalation/1` or as a FHIR
/// DetectedIssue; events as `vigil.event/1` (FHIR has no resource for a gateway's own events).
///
/// Blood pressure: Vigil stores systolic, diastolic and mean pressure as separate readings
/// (each with its own ID, escalating on its own). Readings of one lane passed in one call that
/// share device, patient, measured time and device record number (or, with no record number,
/// the receive time: the same BLE indication or serial record) and include both a systolic and
/// a diastolic become one 85354-9 panel Observation with 8480-6 / 8462-4 (and 8478-0)
/// components, carrying all their outbox keys and each reading ID as an `identifier`. A pair that
/// an outbox fetch splits (at most once per fetch) goes out as two plain vital-signs
/// Observations with the same `effectiveDateTime`.
public struct FhirObservationEncoding: UplinkEncoding {
    /// Observations per Bundle, at most (1: no Bundles).
    public var batchMax: Int
    /// Compress every readings message (`Deflate`).
    public var compressed: Bool
    public var readingExpirySeconds: UInt32?
    public var escalations: EscalationRendering
    /// The identifier system for device IDs (which are unique per gateway).
    public var deviceSystem: String

    public init(batchMax: Int = 50, compressed: Bool = false, readingExpirySeconds: UInt32? = nil,
                escalations: EscalationRendering = .vigilJSON, deviceSystem: String = FhirR4.deviceSystem) {
        self.batchMax = max(1, batchMax)
        self.compressed = compressed
        self.readingExpirySeconds = readingExpirySeconds
        self.escalations = escalations
        self.deviceSystem = deviceSystem
    }

    public func messages(for items: [OutboxItem], topics: Topics) -> [UplinkMessage] {
        var out: [UplinkMessage] = []
        var run: [(key: OutboxKey, reading: Reading)] = []
        func flushRun() {
            if !run.isEmpty { out.append(contentsOf: readingMessages(run, topics: topics)) }
            run.removeAll()
        }
        for item in items {
            switch item.payload {
            case .reading(let r):
                run.append((item.key, r))
            case .escalation(let e) where escalations == .fhir:
                flushRun()
                out.append(UplinkMessage(
                    topic: topics.escalations, payload: FhirR4.detectedIssue(e),
                    properties: PublishProperties(contentType: FhirR4.contentType,
                                                  userProperties: [.init("schema", "fhir.DetectedIssue/4.0.1")]),
                    keys: [item.key]))
            case .escalation, .event:
                flushRun()
                out.append(UplinkMessage(topic: topics.topic(for: item.payload), payload: PayloadEncoder.encode(item.payload),
                                         properties: VigilJSONPropertiesEncoding.properties(for: item.payload, readingExpirySeconds: nil),
                                         keys: [item.key]))
            }
        }
        flushRun()
        return out
    }

    private func readingMessages(_ run: [(key: OutboxKey, reading: Reading)], topics: Topics) -> [UplinkMessage] {
        let groups = FhirR4.panelGroups(run.map(\.reading))
        var out: [UplinkMessage] = []
        var index = 0
        while index < groups.count {
            let chunk = groups[index..<min(groups.count, index + batchMax)]
            index = chunk.endIndex
            let readings = chunk.map { $0.map { run[$0].reading } }
            let keys = chunk.flatMap { $0.map { run[$0].key } }.sorted()
            let schema: String
            var payload: [UInt8]
            if readings.count == 1, let only = readings.first {
                schema = "fhir.Observation/4.0.1"
                payload = FhirR4.observation(only, deviceSystem: deviceSystem)
            } else {
                schema = "fhir.Bundle/4.0.1"
                payload = FhirR4.bundle(readings, deviceSystem: deviceSystem)
            }
            var user: [PublishProperties.UserProperty] = [.init("schema", schema), .init("count", String(keys.count))]
            if compressed, let packed = try? Deflate.compress(payload) {
                payload = packed
                user.append(.init("content-encoding", "deflate"))
            }
            out.append(UplinkMessage(
                topic: topics.readings, payload: payload,
                properties: PublishProperties(messageExpirySeconds: readingExpirySeconds, contentType: FhirR4.contentType,
                                              userProperties: user),
                keys: keys))
        }
        return out
    }
}

/// Hand-written FHIR R4 (4.0.1) JSON, in the style of `PayloadEncoder`: fixed key order, so equal
/// inputs give byte-identical payloads. See docs/payloads.md for every element and why.
public enum FhirR4 {
    public static let contentType = "application/fhir+json"
    public static let readingSystem = "urn:vigil:reading-id"
    public static let escalationSystem = "urn:vigil:escalation-id"
    public static let patientSystem = "urn:vigil:patient-id"
    public static let deviceSystem = "urn:vigil:device-id"
    public static let ruleSystem = "urn:vigil:care-plan-rule"
    /// Vigil's extensions (Extension.url); `urn:` because Vigil owns no web domain to host
    /// StructureDefinitions on.
    public static let receivedAtExtension = "urn:vigil:fhir:extension:received-at"
    public static let qualityFlagExtension = "urn:vigil:fhir:extension:quality-flag"
    public static let deviceRecordExtension = "urn:vigil:fhir:extension:device-record"
    public static let escalationStateExtension = "urn:vigil:fhir:extension:escalation-state"
    public static let carePlanVersionExtension = "urn:vigil:fhir:extension:care-plan-version"
    public static let eventTimeExtension = "urn:vigil:fhir:extension:event-time"

    static let loinc = "http://loinc.org"
    static let ucum = "http://unitsofmeasure.org"
    static let mdc = "urn:iso:std:iso:11073:10101"
    static let categorySystem = "http://terminology.hl7.org/CodeSystem/observation-category"
    static let vitalSignsProfile = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
    static let profileBase = "http://hl7.org/fhir/StructureDefinition/"

    /// How one vital maps onto FHIR: its specific vital-signs profile (R4 §8.1 "Vital Signs"
    /// table), extra codings the profile requires, category and unit conversion.
    struct Mapping {
        /// The specific profile's id (`oxygensat`, …); nil for a vital-sign code with no
        /// specific profile (systolic alone, mean pressure).
        var profile: String?
        /// Whether it is a vital sign at all (then category vital-signs and the base profile).
        var vitalSign: Bool
        var category: (code: String, display: String)
        var extraCodings: [(code: String, display: String)] = []
        /// Multiply the stored value by this to get `unit` (the profile's unit binding).
        var scale: Double = 1
        var unit: String?
    }

    static let vitalSignsCategory = (code: "vital-signs", display: "Vital Signs")
    static let laboratory = (code: "laboratory", display: "Laboratory")
    static let exam = (code: "exam", display: "Exam")

    static func mapping(_ v: Vital) -> Mapping {
        switch v.key {
        case "spo2":
            // R4 oxygensat requires the 2708-6 coding; 59408-5 (pulse oximetry) stays first.
            Mapping(profile: "oxygensat", vitalSign: true, category: vitalSignsCategory,
                    extraCodings: [("2708-6", "Oxygen saturation in Arterial blood")])
        case "pulse_rate", "heart_rate": Mapping(profile: "heartrate", vitalSign: true, category: vitalSignsCategory)
        case "respiratory_rate": Mapping(profile: "resprate", vitalSign: true, category: vitalSignsCategory)
        case "body_temperature": Mapping(profile: "bodytemp", vitalSign: true, category: vitalSignsCategory)
        case "body_weight": Mapping(profile: "bodyweight", vitalSign: true, category: vitalSignsCategory)
        // R4 bodyheight binds the unit to cm or [in_i]; Vigil stores metres.
        case "body_height": Mapping(profile: "bodyheight", vitalSign: true, category: vitalSignsCategory, scale: 100, unit: "cm")
        case "bmi": Mapping(profile: "bmi", vitalSign: true, category: vitalSignsCategory)
        case "systolic_bp", "diastolic_bp", "mean_bp": Mapping(profile: nil, vitalSign: true, category: vitalSignsCategory)
        case "blood_glucose", "interstitial_glucose", "hba1c": Mapping(profile: nil, vitalSign: false, category: laboratory)
        default: Mapping(profile: nil, vitalSign: false, category: exam)
        }
    }

    // MARK: Pairing

    private struct PanelKey: Hashable {
        var device: DeviceID
        var patient: PatientID
        var measuredAt: Timestamp
        var sequence: UInt64?
        var receivedAt: Timestamp?
    }

    /// Groups readings into Observations: each group is one or more indices into `readings`,
    /// ascending. Groups are ordered by their last member, so the highest outbox key sent only
    /// ever grows (the forwarder's cursor follows each message's last key).
    static func panelGroups(_ readings: [Reading]) -> [[Int]] {
        var panels: [PanelKey: [Int]] = [:]
        for (i, r) in readings.enumerated() where ["systolic_bp", "diastolic_bp", "mean_bp"].contains(r.vital.key) {
            let k = PanelKey(device: r.device, patient: r.patient, measuredAt: r.measuredAt, sequence: r.sequence,
                             receivedAt: r.sequence == nil ? r.receivedAt : nil)
            panels[k, default: []].append(i)
        }
        var member = [Int: [Int]]()  // first index of a panel → its members
        var inPanel = Set<Int>()
        for (_, members) in panels {
            let keys = members.map { readings[$0].vital.key }
            // Exactly one systolic and one diastolic, at most one mean: anything else (a device
            // that sent two systolics for one record) is not a panel Vigil can vouch for.
            guard keys.count(where: { $0 == "systolic_bp" }) == 1, keys.count(where: { $0 == "diastolic_bp" }) == 1,
                  keys.count(where: { $0 == "mean_bp" }) <= 1, let last = members.last else { continue }
            member[last] = members
            inPanel.formUnion(members)
        }
        var groups: [[Int]] = []
        for i in readings.indices {
            if let members = member[i] { groups.append(members) } else if !inPanel.contains(i) { groups.append([i]) }
        }
        return groups
    }

    // MARK: Observation

    /// One Observation: a single reading, or a blood-pressure panel (readings in outbox order;
    /// the panel is recognised by its vitals).
    public static func observation(_ readings: [Reading], deviceSystem: String = FhirR4.deviceSystem) -> [UInt8] {
        var w = JSONWriter(capacity: 1024)
        writeObservation(&w, readings, deviceSystem: deviceSystem)
        return w.bytes
    }

    public static func observation(_ reading: Reading, deviceSystem: String = FhirR4.deviceSystem) -> [UInt8] {
        observation([reading], deviceSystem: deviceSystem)
    }

    /// A `batch` Bundle: each entry a conditional create (`POST Observation`, `ifNoneExist` on
    /// the reading identifier), so a relay can post the Bundle to a FHIR server as it is and a
    /// re-delivered reading is not stored twice. `batch`, not `transaction`: one rejected entry
    /// must not reject the other 49.
    public static func bundle(_ groups: [[Reading]], deviceSystem: String = FhirR4.deviceSystem) -> [UInt8] {
        var w = JSONWriter(capacity: 1024 * groups.count + 64)
        w.begin()
        w.field("resourceType", "Bundle")
        w.field("type", "batch")
        w.key("entry")
        w.beginArray()
        for g in groups {
            guard let first = primary(g) else { continue }
            w.element()
            w.begin()
            w.field("fullUrl", uuidURN(first.id.rawValue))
            w.key("resource")
            writeObservation(&w, g, deviceSystem: deviceSystem)
            w.key("request")
            w.begin()
            w.field("method", "POST")
            w.field("url", "Observation")
            w.field("ifNoneExist", "identifier=\(readingSystem)|\(first.id.rawValue)")
            w.end()
            w.end()
        }
        w.endArray()
        w.end()
        return w.bytes
    }

    /// `urn:uuid:` form of a 32-hex-digit ID (Bundle.entry.fullUrl must be an absolute URI).
    static func uuidURN(_ hex: String) -> String {
        let h = Array(hex.utf8)
        guard h.count == 32 else { return "urn:uuid:" + hex }
        func s(_ r: Range<Int>) -> String { String(decoding: h[r], as: UTF8.self) }
        return "urn:uuid:\(s(0..<8))-\(s(8..<12))-\(s(12..<16))-\(s(16..<20))-\(s(20..<32))"
    }

    /// The reading that names an Observation (`id`, `fullUrl`, `ifNoneExist`): the only one,
    /// or a panel's systolic.
    static func primary(_ readings: [Reading]) -> Reading? {
        isPanel(readings) ? readings.first { $0.vital.key == "systolic_bp" } : readings.first
    }

    private static func isPanel(_ readings: [Reading]) -> Bool {
        readings.count > 1 && readings.contains { $0.vital.key == "systolic_bp" } && readings.contains { $0.vital.key == "diastolic_bp" }
    }

    static func status(_ flags: QualityFlags) -> String {
        // The device says the value is invalid, or it is demonstration/test data: not a
        // result for the patient's record. Values still settling: preliminary.
        if flags.contains(.invalidMeasurement) || flags.contains(.notPatientData) { return "entered-in-error" }
        if flags.contains(.searching) { return "preliminary" }
        return "final"
    }

    private static func writeObservation(_ w: inout JSONWriter, _ readings: [Reading], deviceSystem: String) {
        guard let head = primary(readings) else { w.null(); return }
        let panel = isPanel(readings)
        let members = panel ? readings.sorted { order($0.vital.key) < order($1.vital.key) } : [head]
        var flags = QualityFlags()
        for r in members { flags.formUnion(r.flags) }
        let m = mapping(head.vital)

        w.begin()
        w.field("resourceType", "Observation")
        w.field("id", head.id.rawValue)
        w.key("meta")
        w.begin()
        let profiles: [String] = panel ? [vitalSignsProfile, profileBase + "bp"]
            : m.vitalSign ? [vitalSignsProfile] + (m.profile.map { [profileBase + $0] } ?? []) : []
        if !profiles.isEmpty {
            w.key("profile")
            w.beginArray()
            for p in profiles { w.element(); w.string(p) }
            w.endArray()
        }
        // Demonstration, test or control-solution data (v3-ActReason HTEST).
        if flags.contains(.notPatientData) {
            w.key("security")
            w.beginArray()
            w.element()
            w.begin()
            w.field("system", "http://terminology.hl7.org/CodeSystem/v3-ActReason")
            w.field("code", "HTEST")
            w.field("display", "test health data")
            w.end()
            w.endArray()
        }
        w.key("source"); w.string("urn:vigil:gateway")
        w.end()

        w.key("extension")
        w.beginArray()
        w.element(); w.begin()
        w.field("url", receivedAtExtension)
        w.time("valueInstant", head.receivedAt)
        w.end()
        for name in flags.nameList {
            w.element(); w.begin()
            w.field("url", qualityFlagExtension)
            w.field("valueCode", name)
            w.end()
        }
        if let s = head.sequence {
            w.element(); w.begin()
            w.field("url", deviceRecordExtension)
            w.field("valueString", String(s))
            w.end()
        }
        w.endArray()

        w.key("identifier")
        w.beginArray()
        for r in members {
            w.element(); w.begin()
            w.field("system", readingSystem)
            w.field("value", r.id.rawValue)
            w.end()
        }
        w.endArray()

        w.field("status", status(flags))
        w.key("category")
        w.beginArray()
        w.element(); w.begin()
        w.key("coding")
        w.beginArray()
        w.element(); w.begin()
        w.field("system", categorySystem)
        w.field("code", panel ? vitalSignsCategory.code : m.category.code)
        w.field("display", panel ? vitalSignsCategory.display : m.category.display)
        w.end()
        w.endArray()
        w.field("text", panel ? vitalSignsCategory.display : m.category.display)
        w.end()
        w.endArray()

        w.key("code")
        if panel {
            writeCode(&w, loincCode: "85354-9", display: "Blood pressure panel with all children optional", extra: [], mdc: nil)
        } else {
            writeCode(&w, vital: head.vital, extra: m.extraCodings)
        }

        w.key("subject")
        writeReference(&w, type: "Patient", system: patientSystem, value: head.patient.rawValue)
        w.time("effectiveDateTime", head.measuredAt)
        if panel {
            w.key("device")
            writeReference(&w, type: "Device", system: deviceSystem, value: head.device.rawValue)
            w.key("component")
            w.beginArray()
            for r in members {
                w.element(); w.begin()
                w.key("code")
                writeCode(&w, vital: r.vital, extra: [])
                writeValue(&w, r, mapping: mapping(r.vital))
                w.end()
            }
            w.endArray()
        } else {
            writeValue(&w, head, mapping: m)
            w.key("device")
            writeReference(&w, type: "Device", system: deviceSystem, value: head.device.rawValue)
        }
        w.end()
    }

    private static func order(_ key: String) -> Int {
        switch key {
        case "systolic_bp": 0
        case "diastolic_bp": 1
        default: 2
        }
    }

    private static func writeCode(_ w: inout JSONWriter, vital: Vital, extra: [(code: String, display: String)]) {
        writeCode(&w, loincCode: vital.loinc.isEmpty ? nil : vital.loinc, display: vital.display, extra: extra,
                  mdc: vital.mdc.map { ($0, vital.mdcReference ?? "") })
    }

    private static func writeCode(_ w: inout JSONWriter, loincCode: String?, display: String,
                                  extra: [(code: String, display: String)], mdc: (UInt32, String)?) {
        w.begin()
        w.key("coding")
        w.beginArray()
        if let loincCode {
            w.element(); w.begin()
            w.field("system", loinc); w.field("code", loincCode); w.field("display", display)
            w.end()
        }
        for e in extra {
            w.element(); w.begin()
            w.field("system", loinc); w.field("code", e.code); w.field("display", e.display)
            w.end()
        }
        if let (code, reference) = mdc {
            w.element(); w.begin()
            w.field("system", self.mdc); w.field("code", String(code))
            if !reference.isEmpty { w.field("display", reference) }
            w.end()
        }
        w.endArray()
        w.field("text", display)
        w.end()
    }

    /// `valueQuantity` in UCUM, with a comparator for a meter's HI / LO (the value is the edge
    /// of the range; the truth lies beyond), or `dataAbsentReason` `error` for a value JSON
    /// cannot carry (NaN, infinity).
    private static func writeValue(_ w: inout JSONWriter, _ r: Reading, mapping m: Mapping) {
        var value = r.quantity.value * m.scale
        guard value.isFinite else {
            w.key("dataAbsentReason")
            w.begin()
            w.key("coding")
            w.beginArray()
            w.element(); w.begin()
            w.field("system", "http://terminology.hl7.org/CodeSystem/data-absent-reason")
            w.field("code", "error")
            w.field("display", "Error")
            w.end()
            w.endArray()
            w.end()
            return
        }
        // Unit scaling must not turn 1.75 m into 175.00000000000003 cm.
        if m.scale != 1 { value = (value * 1_000_000).rounded() / 1_000_000 }
        let unit = m.unit ?? r.quantity.unit
        w.key("valueQuantity")
        w.begin()
        w.key("value"); w.number(value)
        if r.flags.contains(.aboveMeasuringRange) { w.field("comparator", ">") }
        else if r.flags.contains(.belowMeasuringRange) { w.field("comparator", "<") }
        w.field("unit", unit)
        w.field("system", ucum)
        w.field("code", unit)
        w.end()
    }

    private static func writeReference(_ w: inout JSONWriter, type: String, system: String, value: String) {
        // A logical reference (by identifier): Vigil does not know the server's resource ids.
        w.begin()
        w.field("type", type)
        w.key("identifier")
        w.begin()
        w.field("system", system)
        w.field("value", value)
        w.end()
        w.end()
    }

    // MARK: DetectedIssue

    /// An escalation as a FHIR R4 DetectedIssue (docs/payloads.md says why not Flag or
    /// Communication). The triggering readings are `implicated`, by their reading identifier.
    public static func detectedIssue(_ e: Escalation) -> [UInt8] {
        var w = JSONWriter(capacity: 1024)
        w.begin()
        w.field("resourceType", "DetectedIssue")
        w.field("id", e.id)
        w.key("extension")
        w.beginArray()
        w.element(); w.begin(); w.field("url", escalationStateExtension); w.field("valueCode", e.state.rawValue); w.end()
        w.element(); w.begin(); w.field("url", carePlanVersionExtension); w.key("valueInteger"); w.integer(Int64(e.carePlanVersion)); w.end()
        w.element(); w.begin(); w.field("url", eventTimeExtension); w.time("valueInstant", e.at); w.end()
        w.endArray()
        w.key("identifier")
        w.beginArray()
        w.element(); w.begin(); w.field("system", escalationSystem); w.field("value", e.id); w.end()
        w.endArray()
        // The finding itself is final; its lifecycle (open, renotified, acknowledged, resolved)
        // is the escalation-state extension. `cancelled` is kept for a retraction Vigil never makes.
        w.field("status", "final")
        w.key("code")
        w.begin()
        w.key("coding")
        w.beginArray()
        w.element(); w.begin(); w.field("system", ruleSystem); w.field("code", e.rule); w.end()
        w.endArray()
        w.field("text", e.summary)
        w.end()
        w.field("severity", severity(e.severity))
        w.key("patient")
        writeReference(&w, type: "Patient", system: patientSystem, value: e.patient.rawValue)
        w.time("identifiedDateTime", e.openedAt)
        w.key("implicated")
        w.beginArray()
        for id in e.triggeringReadings {
            w.element()
            writeReference(&w, type: "Observation", system: readingSystem, value: id.rawValue)
        }
        w.endArray()
        w.field("detail", e.summary)
        if e.state == .acknowledged || e.acknowledgedAt != nil {
            w.key("mitigation")
            w.beginArray()
            w.element(); w.begin()
            w.key("action")
            w.begin(); w.field("text", "acknowledged by the care team"); w.end()
            if let at = e.acknowledgedAt { w.time("date", at) }
            if let by = e.acknowledgedBy, !by.isEmpty {
                w.key("author")
                w.begin(); w.field("display", by); w.end()
            }
            w.end()
            w.endArray()
        }
        w.end()
        return w.bytes
    }

    /// DetectedIssue.severity (required binding detectedissue-severity): emergency → high,
    /// urgent → moderate, advisory → low.
    static func severity(_ s: Severity) -> String {
        switch s {
        case .emergency: "high"
        case .urgent: "moderate"
        case .advisory: "low"
        }
    }
}
