import CZlib

/// A zlib error, with the call and zlib's return code. Never carries payload bytes.
public struct CompressionError: Error, Sendable, Hashable, CustomStringConvertible {
    public var operation: String
    /// zlib's return code (`Z_BUF_ERROR` = -5, `Z_DATA_ERROR` = -3, `Z_MEM_ERROR` = -4, …).
    public var code: Int32
    public var reason: String
    public var description: String { "\(operation) failed (zlib \(code)): \(reason)" }
}

/// DEFLATE (RFC 1951) in the zlib wrapper (RFC 1950: 2-byte header, Adler-32 trailer), which
/// is what HTTP's `Content-Encoding: deflate` means (RFC 9110 §8.4.1.2) and what Python's
/// `zlib.decompress` reads by default. The first byte is always 0x78, which no JSON text starts
/// with, so a consumer on an MQTT 3.1.1 link (no content-type property) can still tell a
/// compressed batch from plain JSON.
public enum Deflate {
    /// zlib level 9: the batches are small (tens of KiB), so the extra CPU is negligible and
    /// every byte saved is a byte not paid for on a metered link.
    public static let level: Int32 = 9

    public static func compress(_ input: [UInt8], level: Int32 = Deflate.level) throws(CompressionError) -> [UInt8] {
        var bound = compressBound(uLong(input.count))
        var output = [UInt8](repeating: 0, count: Int(bound))
        let rc = output.withUnsafeMutableBufferPointer { out in
            input.withUnsafeBufferPointer { inp in
                compress2(out.baseAddress, &bound, inp.baseAddress, uLong(inp.count), level)
            }
        }
        guard rc == Z_OK else {
            throw CompressionError(operation: "compress2", code: rc, reason: "could not compress \(input.count) bytes")
        }
        output.removeSubrange(Int(bound)...)
        return output
    }

    /// Inflates a zlib stream, refusing output larger than `maxBytes` (a corrupt or hostile
    /// stream cannot make it allocate without bound).
    public static func decompress(_ input: [UInt8], maxBytes: Int = 64 << 20) throws(CompressionError) -> [UInt8] {
        var capacity = max(1024, min(maxBytes, input.count * 8))
        while true {
            var size = uLong(capacity)
            var output = [UInt8](repeating: 0, count: capacity)
            let rc = output.withUnsafeMutableBufferPointer { out in
                input.withUnsafeBufferPointer { inp in
                    uncompress(out.baseAddress, &size, inp.baseAddress, uLong(inp.count))
                }
            }
            switch rc {
            case Z_OK:
                output.removeSubrange(Int(size)...)
                return output
            case Z_BUF_ERROR where capacity < maxBytes:
                // Either the output did not fit, or the input is truncated; grow and retry,
                // and let the size limit end a truncated stream.
                capacity = min(maxBytes, capacity * 4)
            case Z_BUF_ERROR:
                throw CompressionError(operation: "uncompress", code: rc,
                                       reason: "the stream is truncated or inflates to more than \(maxBytes) bytes")
            case Z_DATA_ERROR:
                throw CompressionError(operation: "uncompress", code: rc, reason: "the input is not a valid zlib stream")
            default:
                throw CompressionError(operation: "uncompress", code: rc, reason: "zlib could not inflate the input")
            }
        }
    }
}
