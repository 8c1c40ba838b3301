import Glibc

/// glibc's `mallopt(M_ARENA_MAX, …)` parameter (malloc.h, which the Glibc module does not import).
private let mArenaMax: Int32 = -8

/// Caps glibc's malloc arenas at `count` for the whole process.
///
/// By default glibc gives each thread that allocates concurrently an arena of its own (up to
/// 8 per core), each with its own partly used pages; vigild's threads (the cooperative pool,
/// the store writer, one reader per serial device, the MQTT loop) allocate little, so the
/// extra arenas are mostly resident slack. With 2 arenas vigild's anonymous memory at peak fell
/// by about 0.4 MiB with four devices (docs/benchmarks.md, "Peak RSS with four devices").
/// Called first thing in main, before any thread exists. `mallopt` is looked up with `dlsym`
/// because malloc.h is not part of the Glibc module; returns false if it cannot be applied
/// (another libc), which only costs that memory.
@discardableResult
func limitMallocArenas(to count: Int32) -> Bool {
    guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "mallopt") else { return false }
    typealias MallOpt = @convention(c) (Int32, Int32) -> Int32
    let mallopt = unsafeBitCast(symbol, to: MallOpt.self)
    return mallopt(mArenaMax, count) == 1
}
