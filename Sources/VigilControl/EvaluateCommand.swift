import ArgumentParser
import ClinicalRules
import Glibc
import VitalSigns

/// `vigilctl evaluate`: replays a history of readings through a care plan, with the same
/// engine vigild runs, and prints the escalations (and gateway events) as JSON lines.
/// Clinicians use it to tune a plan on past data before it goes live.
struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay readings through a care plan and print the escalations as JSON lines.",
        discussion: """
            --readings is a JSON-lines file, one reading per line: {"vital", "value", "unit", \
            "measured_at", "patient", "device", "flags", "id"} (docs/care-plans.md has the details). \
            Readings should be in time order. Time-driven rules (expected readings, device silence) \
            are ticked every --tick-seconds of replayed time. Exit status: 0 success, 65 bad plan \
            or readings, 64 bad arguments.
            """)

    @Option(name: .customLong("care-plan"), help: ArgumentHelp("The care plan (YAML).", valueName: "plan.yaml"))
    var carePlan: String

    @Option(help: ArgumentHelp("Readings as JSON lines.", valueName: "readings.jsonl"))
    var readings: String?

    @Option(name: .customLong("tick-seconds"), help: ArgumentHelp("Replayed seconds between ticks.", valueName: "seconds"))
    var tickSeconds: Int64 = 60

    @Flag(help: ArgumentHelp("Benchmark: generate a year of synthetic history for the plan's patient and report rule cost per reading.", visibility: .hidden))
    var bench = false

    @Option(name: .customLong("bench-days"), help: ArgumentHelp("Days of synthetic history.", visibility: .hidden))
    var benchDays = 365

    @Option(name: .customLong("bench-sql"), help: ArgumentHelp("Also write the synthetic history as SQL INSERTs into `readings`.", visibility: .hidden))
    var benchSQL: String?

    func validate() throws {
        guard bench || readings != nil else { throw ValidationError("give --readings (or --bench)") }
        guard (1...86_400).contains(tickSeconds) else { throw ValidationError("--tick-seconds must be between 1 and 86400") }
    }

    func run() throws {
        let plan: CarePlan
        do {
            plan = try CarePlan.load(yaml: try readFile(carePlan), fileName: carePlan)
        } catch let error as CarePlanError {
            printError("care plan refused: \(error)")
            throw ExitCode(65)
        }
        if bench { return try runBench(plan) }
        let text = String(decoding: try readFile(readings ?? ""), as: UTF8.self)
        var replay = Replay(plan: plan, tickSeconds: tickSeconds)
        var number = 0
        var out = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            number += 1
            let reading: Reading?
            do {
                reading = try ReplayReadings.parse(line: String(line), number: number, defaultPatient: plan.patient)
            } catch {
                printError("\(readings ?? ""): \(error)")
                throw ExitCode(65)
            }
            guard let reading else { continue }
            for o in replay.feed(reading) {
                switch o {
                case .escalation(let e): out += e.json.serialized + "\n"
                case .event(let e): out += e.json.serialized + "\n"
                }
            }
            if out.utf8.count > 65_536 { writeOut(out); out = "" }
        }
        writeOut(out)
    }

    // MARK: Benchmark (hidden)

    /// Per-reading rule cost: the whole synthetic year replayed through a fresh engine,
    /// five times; prints the median of the five per-reading averages.
    func runBench(_ plan: CarePlan) throws {
        let end = Timestamp(millisecondsSinceEpoch: Self.now().millisecondsSinceEpoch / 60_000 * 60_000)
        let history = BenchHistory.make(patient: plan.patient, days: benchDays, end: end, utcOffsetMinutes: plan.utcOffsetMinutes)
        if let path = benchSQL { try BenchHistory.writeSQL(history, to: path) }
        var perReading: [Double] = []
        var escalations = 0
        for _ in 0..<5 {
            var replay = Replay(plan: plan, tickSeconds: 60)
            let t0 = Self.monotonicNanoseconds()
            var n = 0
            for r in history { n += replay.feed(r).count }
            let t1 = Self.monotonicNanoseconds()
            perReading.append(Double(t1 - t0) / Double(max(1, history.count)))
            escalations = n
        }
        // The same year through the bare engine: readings only, no ticks.
        var bare: [Double] = []
        for _ in 0..<5 {
            var engine = RuleEngine(plan: plan)
            let t0 = Self.monotonicNanoseconds()
            for r in history { _ = engine.ingest(r) }
            bare.append(Double(Self.monotonicNanoseconds() - t0) / Double(max(1, history.count)))
        }
        bare.sort()
        perReading.sort()
        let median = perReading[perReading.count / 2]
        print("readings: \(history.count) over \(benchDays) days; rules: \(plan.ruleIDs.count); escalation events + gateway events per replay: \(escalations)")
        print("rule evaluation per reading (RuleEngine.ingest only): median \(Self.fmt(bare[2] / 1000)) µs, min \(Self.fmt(bare[0] / 1000)) µs, max \(Self.fmt(bare[4] / 1000)) µs (5 runs)")
        print("rule evaluation per reading (replay incl. a tick per replayed minute): median \(Self.fmt(median / 1000)) µs, min \(Self.fmt(perReading[0] / 1000)) µs, max \(Self.fmt(perReading[perReading.count - 1] / 1000)) µs (5 runs)")
    }

    static func fmt(_ d: Double) -> String { String((d * 100).rounded() / 100) }

    static func monotonicNanoseconds() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec)
    }

    static func now() -> Timestamp {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return Timestamp(millisecondsSinceEpoch: Int64(t.tv_sec) * 1000 + Int64(t.tv_nsec) / 1_000_000)
    }

    func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            printError("\(path): cannot open: \(String(cString: strerror(errno)))")
            throw ExitCode(65)
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                printError("\(path): cannot read: \(String(cString: strerror(errno)))")
                throw ExitCode(65)
            }
            if n == 0 { break }
            bytes += buffer[0..<n]
        }
        return bytes
    }
}

func writeOut(_ s: String) {
    let bytes = Array(s.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        offset += n
    }
}

/// A synthetic year for one patient with every model exercised: a morning weight with a
/// slow drift and two fluid-gain episodes, BP twice a day (one crisis pair), glucose four
/// times, temperature and respiration once, and three one-minute oximetry spot checks
/// (SpO2 and pulse at 1 Hz). Seeded SplitMix64, so every run is the same history.
enum BenchHistory {
    struct SplitMix64 {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
        mutating func noise(_ sd: Double) -> Double { (unit() + unit() + unit() - 1.5) * 2 * sd }
    }

    static func make(patient: PatientID, days: Int, end: Timestamp, utcOffsetMinutes: Int) -> [Reading] {
        var rng = SplitMix64(state: 0x5647_494C)
        var out: [Reading] = []
        let dayMs: Int64 = 86_400_000
        let offset = Int64(utcOffsetMinutes) * 60_000
        let lastMidnight = (end.millisecondsSinceEpoch + offset) / dayMs * dayMs - offset
        func add(_ vital: Vital, _ value: Double, _ t: Int64, device: DeviceID) {
            let at = Timestamp(millisecondsSinceEpoch: t)
            guard at <= end else { return }
            out.append(Reading(id: .derive(device: device, vital: vital, measuredAt: at, sequence: nil, arrival: at),
                               patient: patient, device: device, vital: vital, quantity: Quantity((value * 10).rounded() / 10, vital.unit),
                               measuredAt: at, receivedAt: at, flags: [], sequence: nil))
        }
        for d in 0..<days {
            let midnight = lastMidnight - Int64(days - 1 - d) * dayMs
            let gain = (d % 120 >= 110) ? Double(d % 120 - 109) * 0.4 : 0
            add(.bodyWeight, 80 + 0.002 * Double(d) + gain + rng.noise(0.3), midnight + 7 * 3_600_000, device: "scale")
            for h in [8, 20] {
                let t = midnight + Int64(h) * 3_600_000
                let crisis = d % 97 == 50 && h == 8
                add(.systolicPressure, (crisis ? 186 : 128) + rng.noise(6), t, device: "cuff")
                add(.diastolicPressure, (crisis ? 121 : 80) + rng.noise(4), t, device: "cuff")
                if crisis {
                    add(.systolicPressure, 184, t + 180_000, device: "cuff")
                    add(.diastolicPressure, 118, t + 180_000, device: "cuff")
                }
            }
            for h in [7, 12, 17, 22] { add(.bloodGlucose, 120 + rng.noise(30) - (d % 61 == 30 && h == 12 ? 70 : 0), midnight + Int64(h) * 3_600_000 + 1_800_000, device: "meter") }
            add(.bodyTemperature, 36.7 + rng.noise(0.2) + (d % 89 == 44 ? 1.8 : 0), midnight + 9 * 3_600_000, device: "thermo")
            add(.respiratoryRate, 16 + rng.noise(1.5), midnight + 9 * 3_600_000 + 60_000, device: "thermo")
            for h in [9, 14, 21] {
                let start = midnight + Int64(h) * 3_600_000
                let dip = d % 53 == 26 && h == 14 ? 5.0 : 0
                for s in 0..<60 {
                    add(.spo2, 96 + rng.noise(0.7) - dip, start + Int64(s) * 1000, device: "oximeter")
                    add(.pulseRate, 72 + rng.noise(3), start + Int64(s) * 1000, device: "oximeter")
                }
            }
        }
        return out.sorted { ($0.measuredAt, $0.id) < ($1.measuredAt, $1.id) }
    }

    /// SQL for `sqlite3`: the history as rows of the `readings` table (delivered, so the
    /// outbox does not try to send a year of data when vigild starts on it).
    static func writeSQL(_ readings: [Reading], to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            printError("\(path): cannot create: \(String(cString: strerror(errno)))")
            throw ExitCode(65)
        }
        defer { close(fd) }
        var text = "BEGIN;\n"
        func flush() {
            let bytes = Array(text.utf8)
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                offset += n
            }
            text = ""
        }
        for r in readings {
            text += "INSERT INTO readings (reading_id, patient, device, vital, value, unit, measured_at, received_at, flags, delivered) VALUES ('\(r.id.rawValue)', '\(r.patient.rawValue)', '\(r.device.rawValue)', '\(r.vital.key)', \(r.quantity.value), '\(r.quantity.unit)', \(r.measuredAt.millisecondsSinceEpoch), \(r.receivedAt.millisecondsSinceEpoch), 0, 1);\n"
            if text.utf8.count > 1 << 20 { flush() }
        }
        text += "COMMIT;\n"
        flush()
    }
}
