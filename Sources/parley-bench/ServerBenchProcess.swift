import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A server this benchmark started: parley-server or the python-socketio port, run with
/// `--port 0 --exit-with-stdin`, listening once it printed `LISTENING <port>`.
///
/// Spawned with posix_spawn rather than Foundation's Process: Process hands the child the
/// signal mask of the thread that starts it, and Swift's worker threads block most signals,
/// so such a child could not be stopped with SIGTERM. Here the child starts with no signal
/// blocked and every signal at its default action, stdin and stdout on pipes, stderr shared.
final class StartedServer: Sendable {
    let name: String
    let port: Int
    let pid: pid_t
    /// The write end of the child's stdin: closing it asks an `--exit-with-stdin` server to exit.
    private let stdin: Mutex<Int32>
    private let exited = Mutex(false)

    private init(name: String, port: Int, pid: pid_t, stdin: Int32) {
        self.name = name
        self.port = port
        self.pid = pid
        self.stdin = Mutex(stdin)
    }

    /// Starts `executable arguments…` (looked up in PATH unless it has a slash) and waits, at
    /// most `timeout`, for `LISTENING <port>` on its stdout.
    static func start(name: String, executable: String, arguments: [String], timeout: Duration = .seconds(60)) async throws -> StartedServer {
        var input: [Int32] = [-1, -1]
        var output: [Int32] = [-1, -1]
        guard pipe(&input) == 0 else { throw ServerBenchError("pipe: \(String(cString: strerror(errno)))") }
        guard pipe(&output) == 0 else {
            close(input[0])
            close(input[1])
            throw ServerBenchError("pipe: \(String(cString: strerror(errno)))")
        }
        // Not inherited: the child gets them only as its fds 0 and 1 (nothing else spawns meanwhile).
        for fd in input + output { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let pid: pid_t
        do {
            pid = try spawn(executable: executable, arguments: arguments, stdin: input[0], stdout: output[1])
        } catch {
            for fd in input + output { close(fd) }
            throw ServerBenchError("could not start the \(name) server (\(executable)): \(error)")
        }
        close(input[0])
        close(output[1])
        let server = StartedServer(name: name, port: 0, pid: pid, stdin: input[1])

        let listening = ListeningLine()
        let reader = output[0]
        // A thread of its own reads the server's stdout to the end, so a chatty server never
        // blocks on a full pipe.
        Thread.detachNewThread {
            var line: [UInt8] = []
            var found = false
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = chunk.withUnsafeMutableBytes { read(reader, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                if count <= 0 { break }
                guard !found else { continue }
                for byte in chunk[0..<count] {
                    guard byte == UInt8(ascii: "\n") else {
                        if line.count < 4096 { line.append(byte) }
                        continue
                    }
                    let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespaces)
                    line.removeAll(keepingCapacity: true)
                    if text.hasPrefix("LISTENING "), let port = Int(text.dropFirst("LISTENING ".count)) {
                        found = true
                        listening.resolve(.success(port))
                        break
                    }
                    listening.note(text)
                }
            }
            close(reader)
            listening.resolve(.failure(ServerBenchError("it exited before it printed LISTENING <port>\(listening.earlierOutput)")))
        }
        let timer = Task {
            try await Task.sleep(for: timeout)
            listening.resolve(.failure(ServerBenchError("it did not print LISTENING <port> within \(timeout)")))
        }
        let result = await listening.wait()
        timer.cancel()
        switch result {
        case .success(let port):
            return StartedServer(name: name, port: port, pid: pid, stdin: server.takeStdin())
        case .failure(let error):
            await server.stop()
            throw ServerBenchError("the \(name) server (\(executable)): \(error)")
        }
    }

    private static func spawn(executable: String, arguments: [String], stdin: Int32, stdout: Int32) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for arg in argv { free(arg) } }
        var pid: pid_t = 0
        let status = posix_spawnp(&pid, executable, &actions, &attributes, argv, environ)
        guard status == 0 else { throw ServerBenchError(String(cString: strerror(status))) }
        return pid
    }

    private func takeStdin() -> Int32 {
        stdin.withLock { fd in
            defer { fd = -1 }
            return fd
        }
    }

    /// Resident set now and at its peak (VmRSS, VmHWM), in MB.
    func memory() -> (rss: Double, peak: Double)? { Self.memory(of: String(pid)) }

    /// CPU time used so far, all threads.
    func cpu() -> CPUTime? { CPUTime.of(String(pid)) }

    /// The same for /proc/`process` ("self" for this one).
    static func memory(of process: String) -> (rss: Double, peak: Double)? {
        guard let status = try? String(contentsOfFile: "/proc/\(process)/status", encoding: .utf8) else { return nil }
        var rss: Double?
        var peak: Double?
        for line in status.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, let kilobytes = Double(fields[1]) else { continue }
            if fields[0] == "VmRSS:" { rss = kilobytes / 1024 }
            if fields[0] == "VmHWM:" { peak = kilobytes / 1024 }
        }
        guard let rss, let peak else { return nil }
        return (rss, peak)
    }

    /// Closes its stdin (an `--exit-with-stdin` server exits on its own), then SIGTERM, then
    /// SIGKILL, waiting in between; reaps it.
    func stop() async {
        let fd = takeStdin()
        if fd >= 0 { close(fd) }
        if await waitForExit(within: .seconds(2)) { return }
        kill(pid, SIGTERM)
        if await waitForExit(within: .seconds(5)) { return }
        FileHandle.standardError.write(Data("parley-bench: the \(name) server did not exit on SIGTERM; killing it\n".utf8))
        kill(pid, SIGKILL)
        _ = await waitForExit(within: .seconds(5))
    }

    private var hasExited: Bool {
        exited.withLock { exited in
            if !exited {
                var status: Int32 = 0
                let result = waitpid(pid, &status, WNOHANG)
                if result == pid || (result < 0 && errno == ECHILD) { exited = true }
            }
            return exited
        }
    }

    private func waitForExit(within limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while !hasExited {
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }
}

/// The first `LISTENING <port>` line, or why there is none; resolved once.
private final class ListeningLine: Sendable {
    private struct State {
        var result: Result<Int, ServerBenchError>?
        var waiter: CheckedContinuation<Result<Int, ServerBenchError>, Never>?
        var lines: [String] = []
    }

    private let state = Mutex(State())

    func note(_ line: String) {
        state.withLock { state in
            if state.lines.count < 20, !line.isEmpty { state.lines.append(line) }
        }
    }

    var earlierOutput: String {
        state.withLock { state in state.lines.isEmpty ? "" : "; its output: " + state.lines.joined(separator: " | ") }
    }

    func resolve(_ result: Result<Int, ServerBenchError>) {
        let waiter = state.withLock { state -> CheckedContinuation<Result<Int, ServerBenchError>, Never>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: result)
    }

    func wait() async -> Result<Int, ServerBenchError> {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Result<Int, ServerBenchError>? in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}

struct ServerBenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum SystemLimits {
    /// Raises the soft limit on open files to the hard limit; returns the limit now in force.
    static func raiseOpenFileLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            // "unlimited" is not a valid soft limit for open files: the kernel's ceiling is.
            if raised.rlim_cur == rlim_t.max,
                let text = try? String(contentsOfFile: "/proc/sys/fs/nr_open", encoding: .utf8),
                let ceiling = rlim_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                raised.rlim_cur = ceiling
            }
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur > rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
    }

    /// How many local ports the kernel hands out for outgoing connections.
    static func ephemeralPorts() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8) else { return nil }
        let bounds = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        guard bounds.count == 2 else { return nil }
        return bounds[1] - bounds[0] + 1
    }
}

/// CPU time a process has used, all its threads, in seconds: in user space, and in the kernel
/// on its behalf (system calls; on loopback TCP that includes the receiving socket's work,
/// which the kernel does in the writer's context).
struct CPUTime: Sendable {
    var user: Double
    var system: Double

    var total: Double { user + system }

    static func - (a: CPUTime, b: CPUTime) -> CPUTime {
        CPUTime(user: a.user - b.user, system: a.system - b.system)
    }

    /// From /proc/`process`/stat ("self" for this one): utime and stime, fields 14 and 15.
    static func of(_ process: String) -> CPUTime? {
        guard let stat = try? String(contentsOfFile: "/proc/\(process)/stat", encoding: .utf8),
              let end = stat.lastIndex(of: ")")  // the command name may hold spaces and parentheses
        else { return nil }
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        // fields[0] is field 3 (state), so field n is fields[n - 3].
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        guard ticks > 0 else { return nil }
        return CPUTime(user: user / ticks, system: system / ticks)
    }
}
