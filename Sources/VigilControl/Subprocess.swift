import Glibc

/// The programs vigilctl runs: `vigild --check-config` (diagnose) and `journalctl` (logs).
enum Subprocess {
    struct Result {
        var status: Int32
        var output: String
    }

    struct Error: Swift.Error, CustomStringConvertible {
        var errno: Int32
        var description: String { String(cString: strerror(errno)) }
    }

    /// Runs a program to completion with stdout and stderr captured together (at most 64 KiB kept).
    static func run(_ argv: [String]) throws(Error) -> Result {
        var output: [UInt8] = []
        let status = try stream(argv, captureStderr: true) { chunk in
            if output.count < 65_536 { output += chunk }
        }
        return Result(status: status, output: String(decoding: output, as: UTF8.self))
    }

    /// Runs `argv` (found on PATH), hands each stdout line to `body` as it arrives, and returns
    /// the exit status. stderr passes through to ours.
    static func lines(_ argv: [String], _ body: ([UInt8]) -> Void) throws(Error) -> Int32 {
        var pending: [UInt8] = []
        let status = try stream(argv, searchPath: true) { chunk in
            pending += chunk
            var start = 0
            while let newline = pending[start...].firstIndex(of: 0x0A) {
                body(Array(pending[start..<newline]))
                start = newline + 1
            }
            pending.removeFirst(start)
            // A single entry beyond 1 MiB is not vigild's: drop it rather than grow without bound.
            if pending.count > 1 << 20 { pending.removeAll() }
        }
        if !pending.isEmpty { body(pending) }
        return status
    }

    /// Spawns `argv` (argv[0] a path, or looked up on PATH when `searchPath`) with stdin from
    /// /dev/null and stdout — and stderr too when `captureStderr` — into a pipe, hands every
    /// chunk read to `body`, and returns the exit status: 128 + the signal when killed, -1 when
    /// the child cannot be reaped. The corresponding C functions are `posix_spawn(p)`, `read`
    /// and `waitpid`.
    private static func stream(_ argv: [String], searchPath: Bool = false, captureStderr: Bool = false,
                               _ body: (ArraySlice<UInt8>) -> Void) throws(Error) -> Int32 {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw Error(errno: errno) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        if captureStderr { posix_spawn_file_actions_adddup2(&actions, fds[1], 2) }
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addclose(&actions, fds[1])
        let cArgs = argv.map { strdup($0) }
        defer { for a in cArgs { free(a) } }
        var argvC: [UnsafeMutablePointer<CChar>?] = cArgs + [nil]
        var child: pid_t = 0
        let rc = argvC.withUnsafeMutableBufferPointer { a -> Int32 in
            guard let base = a.baseAddress, let program = argv.first else { return EINVAL }
            return searchPath ? posix_spawnp(&child, program, &actions, nil, base, environ)
                              : posix_spawn(&child, program, &actions, nil, base, environ)
        }
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw Error(errno: rc)
        }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            body(buffer[0..<n])
        }
        close(fds[0])
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 {
            if errno != EINTR { return -1 }
        }
        return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }
}
