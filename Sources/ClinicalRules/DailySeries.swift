public import VitalSigns

/// One hour of one vital's clean readings for one patient: what the store keeps so the
/// baseline and trend models can be rebuilt at start-up without reading every reading
/// (a year of weights is 365 rows per patient, a week of 1 Hz SpO2 is 168).
public struct VitalAggregate: Sendable, Hashable {
    public var vital: String
    /// The start of the UTC hour.
    public var hourStart: Timestamp
    public var count: Int
    public var sum: Double
    public var firstValue: Double
    public var firstAt: Timestamp
    public var lastValue: Double
    public var lastAt: Timestamp

    public init(vital: String, hourStart: Timestamp, count: Int, sum: Double, firstValue: Double, firstAt: Timestamp,
                lastValue: Double, lastAt: Timestamp) {
        self.vital = vital
        self.hourStart = hourStart
        self.count = count
        self.sum = sum
        self.firstValue = firstValue
        self.firstAt = firstAt
        self.lastValue = lastValue
        self.lastAt = lastAt
    }

    /// Whether a reading counts towards the aggregates: clean (no clinically unreliable
    /// flag), finite, in the vital's canonical unit. The store applies the same test.
    public static func counts(_ r: Reading) -> Bool {
        r.flags.isDisjoint(with: .clinicallyUnreliable) && r.quantity.value.isFinite && r.quantity.unit == r.vital.unit
    }

    public static func hourStart(of t: Timestamp) -> Timestamp {
        Timestamp(millisecondsSinceEpoch: floorDiv(t.millisecondsSinceEpoch, 3_600_000) * 3_600_000)
    }
}

func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}

/// A local day's summary of one vital's clean readings.
struct DaySummary: Sendable, Hashable {
    var count = 0
    var sum = 0.0
    var first = 0.0
    var firstAt = Timestamp(millisecondsSinceEpoch: .max)
    var mean: Double { count > 0 ? sum / Double(count) : .nan }

    mutating func add(_ value: Double, at t: Timestamp, count n: Int = 1, sum s: Double? = nil) {
        if t < firstAt { first = value; firstAt = t }
        count += n
        sum += s ?? value
    }
}

/// Daily summaries per vital, on the patient's local days, bounded to the days the models need.
struct DailySeries: Sendable {
    var utcOffsetMilliseconds: Int64
    var keepDays: Int
    private(set) var days: [String: [Int64: DaySummary]] = [:]

    init(utcOffsetMinutes: Int, keepDays: Int) {
        utcOffsetMilliseconds = Int64(utcOffsetMinutes) * 60_000
        self.keepDays = max(2, keepDays + 1)
    }

    func day(of t: Timestamp) -> Int64 { floorDiv(t.millisecondsSinceEpoch + utcOffsetMilliseconds, 86_400_000) }
    func minuteOfDay(_ t: Timestamp) -> Int {
        Int((t.millisecondsSinceEpoch + utcOffsetMilliseconds - day(of: t) * 86_400_000) / 60_000)
    }

    subscript(vital: String, day: Int64) -> DaySummary? { days[vital]?[day] }

    /// Adds a value; returns true when it is the first of its local day.
    @discardableResult
    mutating func add(vital: String, value: Double, at t: Timestamp, count: Int = 1, sum: Double? = nil) -> Bool {
        let d = day(of: t)
        // Mutated in place: copying the series out and back would copy it on every reading.
        let isFirst = days[vital]?[d] == nil
        days[vital, default: [:]][d, default: DaySummary()].add(value, at: t, count: count, sum: sum)
        if isFirst, let series = days[vital], series.count > keepDays + 2, let newest = series.keys.max() {
            days[vital] = series.filter { $0.key > newest - Int64(keepDays) }
        }
        return isFirst
    }

    /// Daily first values of `vital` on days in `range`, oldest first.
    func firstValues(_ vital: String, days range: ClosedRange<Int64>) -> [(day: Int64, value: Double, at: Timestamp)] {
        guard let s = days[vital] else { return [] }
        return s.filter { range.contains($0.key) }.sorted { $0.key < $1.key }.map { ($0.key, $0.value.first, $0.value.firstAt) }
    }

    /// Mean of the daily means of `vital` over days in `range`, with how many days had data.
    func meanOfDailyMeans(_ vital: String, days range: ClosedRange<Int64>) -> (mean: Double, days: Int) {
        guard let s = days[vital] else { return (.nan, 0) }
        var total = 0.0, n = 0
        for d in range { if let m = s[d]?.mean, m.isFinite { total += m; n += 1 } }
        return (n > 0 ? total / Double(n) : .nan, n)
    }
}
