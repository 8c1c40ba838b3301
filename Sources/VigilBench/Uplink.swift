// Uplink figures for scripts/bench-uplink.
//
//   vigil-bench uplink-bytes [--batch 50]        bytes per reading for each encoding
//   vigil-bench uplink-fill --database PATH --readings N
//                                                a store with N undelivered readings
import Glibc
import Logging
import ReadingStore
import Uplink
import VitalSigns

/// The reading mix of a pulse oximeter streaming once a second (Masimo Rad-8: SpO2, pulse rate
/// and perfusion index per line, no record numbers), the commonest Vigil device; every tenth
/// second a blood-pressure cuff record (systolic, diastolic, mean, pulse; one FHIR panel).
func benchReadings(count: Int) -> [Reading] {
    var second = 0
    return benchReadings(count: count, second: &second)
}

/// `count` readings from `second` on; `second` is left at the next unused second.
func benchReadings(count: Int, second: inout Int) -> [Reading] {
    let t0 = Timestamp(millisecondsSinceEpoch: 1_795_000_000_000)
    var out: [Reading] = []
    out.reserveCapacity(count)
    while out.count < count {
        let t = t0.adding(seconds: Int64(second))
        let received = t.adding(milliseconds: 37)
        func add(_ device: DeviceID, _ vital: Vital, _ value: Double, sequence: UInt64?) {
            guard out.count < count else { return }
            out.append(Reading(
                id: .derive(device: device, vital: vital, measuredAt: t, sequence: sequence, arrival: received),
                patient: "patient-0001", device: device, vital: vital, quantity: Quantity(value, vital.unit),
                measuredAt: t, receivedAt: received, flags: [], sequence: sequence))
        }
        if second % 10 == 9 {
            let seq = UInt64(second / 10)
            add("ua651-hallway", .systolicPressure, Double(118 + second % 17), sequence: seq)
            add("ua651-hallway", .diastolicPressure, Double(76 + second % 9), sequence: seq)
            add("ua651-hallway", .meanArterialPressure, Double(90 + second % 11), sequence: seq)
            add("ua651-hallway", .pulseRate, Double(64 + second % 13), sequence: seq)
        } else {
            add("rad8-bedroom", .spo2, Double(94 + second % 5), sequence: nil)
            add("rad8-bedroom", .pulseRate, Double(60 + second % 25), sequence: nil)
            add("rad8-bedroom", .perfusionIndex, 2.5 + Double(second % 40) / 10, sequence: nil)
        }
        second += 1
    }
    return out
}

/// Size of an MQTT PUBLISH at QoS 1 (MQTT 5 §3.3, with properties; 3.1.1 §3.3 without):
/// fixed header, topic, packet identifier, properties, payload. TCP/IP and TLS framing excluded.
func publishBytes(_ m: UplinkMessage, mqtt5: Bool) -> Int {
    func varintLength(_ n: Int) -> Int { n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4 }
    var properties = 0
    if mqtt5 {
        if m.properties.messageExpirySeconds != nil { properties += 1 + 4 }
        if let ct = m.properties.contentType { properties += 1 + 2 + ct.utf8.count }
        for p in m.properties.userProperties { properties += 1 + 2 + p.name.utf8.count + 2 + p.value.utf8.count }
        properties += varintLength(properties)
    }
    let remaining = 2 + m.topic.utf8.count + 2 + properties + m.payload.count
    return 1 + varintLength(remaining) + remaining
}

func uplinkBytes() {
    let batch = option("--batch", default: 50)
    let topics: Topics
    do { topics = try Topics(prefix: "vigil/v1/site-0042/gw-01") } catch { fail("\(error)") }
    // Many batches, so the figure is an average over the mix, not one lucky Bundle.
    let readings = benchReadings(count: batch * 40)
    let items = readings.enumerated().map { i, r in
        OutboxItem(key: OutboxKey(lane: .readings, sequence: Int64(i + 1)), payload: .reading(r))
    }
    let cases: [(String, any UplinkEncoding, Int)] = [
        ("vigil-json", makeUplinkEncoding(.vigilJSON, readingExpirySeconds: 86_400), 1),
        ("fhir (single Observation)", makeUplinkEncoding(.fhir, readingExpirySeconds: 86_400), 1),
        ("fhir-bundle (Bundle of \(batch))", makeUplinkEncoding(.fhirBundle, batchMax: batch, readingExpirySeconds: 86_400), batch),
        ("fhir-bundle-deflate (zlib Bundle of \(batch))", makeUplinkEncoding(.fhirBundleDeflate, batchMax: batch, readingExpirySeconds: 86_400), batch),
    ]
    print("bytes per reading, \(readings.count) readings (oximeter at 1 Hz, a BP record every 10 s), topic \(topics.readings)")
    print("| encoding | messages | payload bytes/reading | MQTT 5 PUBLISH bytes/reading | MQTT 3.1.1 PUBLISH bytes/reading |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for (name, encoding, chunk) in cases {
        // The forwarder hands the encoding one outbox fetch at a time.
        var messages: [UplinkMessage] = []
        var i = 0
        while i < items.count {
            let end = min(items.count, i + max(128, chunk))
            messages += encoding.messages(for: Array(items[i..<end]), topics: topics)
            i = end
        }
        let carried = messages.reduce(0) { $0 + $1.keys.count }
        guard carried == items.count else { fail("\(name): \(carried) of \(items.count) readings carried") }
        let payload = messages.reduce(0) { $0 + $1.payload.count }
        let v5 = messages.reduce(0) { $0 + publishBytes($1, mqtt5: true) }
        let v3 = messages.reduce(0) { $0 + publishBytes($1, mqtt5: false) }
        let n = Double(items.count)
        func f(_ x: Int) -> String { String(Int((Double(x) / n).rounded())) }
        print("| \(name) | \(messages.count) | \(f(payload)) | \(f(v5)) | \(f(v3)) |")
    }
}

func uplinkFill() async {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: "--database"), i + 1 < args.count else { fail("uplink-fill needs --database PATH") }
    let path = args[i + 1]
    let total = option("--readings", default: 20_000)
    let store: ReadingStore
    do {
        store = try ReadingStore(options: StoreOptions(path: path, capacityReadings: max(10_368_000, total * 2)),
                                 logger: Logger(label: "vigil-bench"))
    } catch { fail("cannot open \(path): \(error)") }
    var done = 0
    var second = 0
    let chunk = 5000
    while done < total {
        let n = min(chunk, total - done)
        // Seconds advance across chunks, so every reading is a distinct measurement.
        let readings = benchReadings(count: n, second: &second)
        do { try await store.commit(readings) } catch { fail("commit failed: \(error)") }
        done += n
    }
    let undelivered = (try? store.stats().undeliveredReadings) ?? -1
    await store.close()
    print("filled \(path): \(undelivered) undelivered readings")
}
