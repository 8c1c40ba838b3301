// Shared helpers for the libFuzzer entry points in Fuzz/ (compiled by scripts/fuzz, never by SwiftPM).

/// Reads a fuzzer input front to back: selector bytes, length-prefixed records, the rest.
struct FuzzInput {
    let bytes: [UInt8]
    var offset = 0

    init(_ data: UnsafePointer<UInt8>, _ size: Int) {
        bytes = Array(UnsafeBufferPointer(start: data, count: size))
    }

    var isAtEnd: Bool { offset >= bytes.count }

    /// The next byte, or 0 past the end (so short inputs still select something).
    mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    /// Up to `count` next bytes.
    mutating func take(_ count: Int) -> [UInt8] {
        let end = min(bytes.count, offset + max(0, count))
        defer { offset = end }
        return Array(bytes[offset..<end])
    }

    mutating func rest() -> [UInt8] { take(bytes.count - offset) }
}

/// A property the target checks failed: crash so libFuzzer keeps the input.
func fuzzFail(_ message: String) -> Never {
    fatalError("fuzz property violated: \(message)")
}
