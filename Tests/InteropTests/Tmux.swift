import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A tmux server of its own (a private socket, no configuration file) for
/// driving the full-screen interface the way a person's terminal does.
///
/// Every tmux command is a short-lived process, run and awaited on a thread of
/// its own (never on the cooperative pool); waiting for the screen polls
/// `capture-pane` with `Task.sleep` in between.
final class Tmux: Sendable {
    /// `tmux` on the PATH, if there is one.
    static let executable: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = String(directory) + "/tmux"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }()

    static var isAvailable: Bool { executable != nil }

    /// The `-L` name: a socket of its own, so no test meets another's server (or a person's).
    let socket = "parley-test-\(UUID().uuidString.prefix(8).lowercased())"

    struct CommandError: Error, CustomStringConvertible {
        let description: String
    }

    /// Runs `tmux -L <socket> -f /dev/null <arguments>` and returns its standard output.
    @discardableResult
    func run(_ arguments: [String]) async throws -> String {
        guard let executable = Self.executable else { throw CommandError(description: "tmux is not installed") }
        let all = ["-L", socket, "-f", "/dev/null", "-u"] + arguments
        var environment = ProcessInfo.processInfo.environment
        // UTF-8 in and out (the server, started by the first command, keeps this locale),
        // and no outer tmux to talk to.
        environment["LC_ALL"] = "C.UTF-8"
        environment["TMUX"] = nil
        let variables = environment.map { "\($0.key)=\($0.value)" }
        let result = await runOnOwnThread { spawnAndWait(executable, arguments: all, environment: variables) }
        let (status, out, err) = try result.get()
        guard status == 0 else {
            throw CommandError(description: "tmux \(arguments.joined(separator: " ")) exited \(status): \(err)")
        }
        return out
    }

    /// A detached session of a fixed size running `command` (through the shell).
    func newSession(_ name: String, width: Int = 100, height: Int = 30, command: String) async throws -> TmuxSession {
        try await run(["new-session", "-d", "-s", name, "-x", String(width), "-y", String(height), command])
        return TmuxSession(tmux: self, target: "=\(name):0.0", name: name)
    }

    /// Ends the server and everything running in it (the panes get SIGHUP), and
    /// removes its socket file. Never throws: this is cleanup.
    func kill() async {
        let socketPath = try? await run(["display-message", "-p", "#{socket_path}"]).trimmingCharacters(in: .whitespacesAndNewlines)
        _ = try? await run(["kill-server"])
        if let socketPath, !socketPath.isEmpty { try? FileManager.default.removeItem(atPath: socketPath) }
    }
}

/// One pane of a `Tmux` server: keys in, the screen out.
struct TmuxSession: Sendable {
    let tmux: Tmux
    let target: String
    let name: String

    /// Named keys, as tmux spells them: "Enter", "Tab", "C-q".
    func send(keys: String...) async throws {
        try await tmux.run(["send-keys", "-t", target] + keys)
    }

    /// Text as typed, each character literally (UTF-8).
    func type(_ text: String) async throws {
        try await tmux.run(["send-keys", "-t", target, "-l", text])
    }

    /// The screen as text, one line a row (wide characters once, trailing blanks trimmed).
    func capture() async throws -> String {
        try await tmux.run(["capture-pane", "-p", "-t", target])
    }

    /// The screen with its attributes as escape sequences (`capture-pane -e`).
    func captureWithAttributes() async throws -> String {
        try await tmux.run(["capture-pane", "-p", "-e", "-t", target])
    }

    /// A tmux format about the pane, e.g. "#{alternate_on}".
    func format(_ format: String) async throws -> String {
        try await tmux.run(["display-message", "-p", "-t", target, format]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Pastes `text` as a terminal does (bracketed when the program asked for it).
    func paste(_ text: String) async throws {
        let buffer = "parley-test-\(name)"
        try await tmux.run(["set-buffer", "-b", buffer, text])
        try await tmux.run(["paste-buffer", "-p", "-d", "-b", buffer, "-t", target])
    }

    /// The process the pane runs (the shell running the command line).
    func panePID() async throws -> pid_t {
        let text = try await format("#{pane_pid}")
        guard let pid = pid_t(text) else { throw Tmux.CommandError(description: "no pane pid in \"\(text)\"") }
        return pid
    }

    /// Polls a tmux format about the pane (`#{pane_title}`, say) every 50 ms until `condition`
    /// holds; after `timeout`, records an issue at the caller with the last value and throws.
    @discardableResult
    func waitFor(
        format: String, _ what: String, timeout: Duration = .seconds(20),
        sourceLocation: SourceLocation = #_sourceLocation,
        _ condition: (String) -> Bool
    ) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while true {
            let value = try await self.format(format)
            if condition(value) { return value }
            if ContinuousClock.now >= deadline {
                try #require(condition(value), "\(name): no \(what) after \(timeout); \(format) is \"\(value)\"", sourceLocation: sourceLocation)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Polls the screen every 50 ms until `condition` holds; after `timeout`, records
    /// an issue at the caller with the last screen and throws.
    @discardableResult
    func waitFor(
        _ what: String, timeout: Duration = .seconds(20),
        sourceLocation: SourceLocation = #_sourceLocation,
        _ condition: (Screen) -> Bool
    ) async throws -> Screen {
        let deadline = ContinuousClock.now + timeout
        while true {
            let screen = Screen(try await capture())
            let conditionMet = condition(screen)
            if conditionMet { return screen }
            if ContinuousClock.now >= deadline {
                try #require(conditionMet, "\(name): no \(what) after \(timeout); the screen:\n\(screen.framed)", sourceLocation: sourceLocation)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// A captured screen of Parley's chat layout: the user list left of the `│`
/// separator, the conversation right of it, the status bar and input below.
struct Screen: Sendable, CustomStringConvertible {
    let text: String
    let lines: [String]

    init(_ text: String) {
        self.text = text
        var lines = text.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        self.lines = lines
    }

    var description: String { text }

    func contains(_ string: String) -> Bool { text.contains(string) }

    /// For failure messages: the rows between rules.
    var framed: String {
        let rule = String(repeating: "-", count: 40)
        return ([rule] + lines + [rule]).joined(separator: "\n")
    }

    /// The first row right of the separator: the selected conversation's status and name.
    var header: String {
        guard let first = lines.first, let bar = first.firstIndex(of: "│") else { return "" }
        return first[first.index(after: bar)...].trimmingCharacters(in: .whitespaces)
    }

    /// The rows of the user list (below its title), each trimmed.
    var userList: [String] {
        lines.dropFirst().compactMap { line in
            guard let bar = line.firstIndex(of: "│") else { return nil }
            let row = line[..<bar].trimmingCharacters(in: .whitespaces)
            return row.isEmpty ? nil : row
        }
    }

    /// The conversation's rows (right of the separator, below the header), each trimmed.
    var conversation: [String] {
        lines.dropFirst().compactMap { line in
            guard let bar = line.firstIndex(of: "│") else { return nil }
            return line[line.index(after: bar)...].trimmingCharacters(in: .whitespaces)
        }
    }

    /// The user list has a row for `name` in this state ("●" online, "○" offline).
    func lists(_ name: String, online: Bool) -> Bool {
        let glyph = online ? "●" : "○"
        return userList.contains { $0 == "\(glyph) \(name)" || $0.hasPrefix("\(glyph) \(name) ") }
    }

    /// The conversation shows a line containing `text`.
    func shows(_ text: String) -> Bool { conversation.contains { $0.contains(text) } }

    /// The row the shell printed after parley exited, if it did.
    var exitLine: String? { lines.first { $0.hasPrefix("PARLEY-EXITED ") } }
}

/// Runs a program to its end and collects its output (small outputs: one pipe is
/// read after the other).
///
/// posix_spawn rather than Foundation's `Process`, for the tmux server the first
/// command forks off: it must start with no signal blocked (a thread of the test
/// process blocks most of them, and a child inherits its mask: a tmux server
/// deaf to SIGTERM ignores kill-server, and shells deaf to SIGHUP outlive it),
/// and without the socket `Process` leaves open in its children to notice
/// their exit (held by the server, it would make the first command last as long
/// as the server does).
private func spawnAndWait(_ path: String, arguments: [String], environment: [String]) -> Result<(status: Int32, out: String, err: String), any Error> {
    var out: [Int32] = [-1, -1]
    var err: [Int32] = [-1, -1]
    guard pipe(&out) == 0 else { return .failure(Tmux.CommandError(description: "pipe: errno \(errno)")) }
    guard pipe(&err) == 0 else {
        close(out[0])
        close(out[1])
        return .failure(Tmux.CommandError(description: "pipe: errno \(errno)"))
    }
    // Ours alone: no other child should inherit them.
    for fd in out + err { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, out[1], 1)
    posix_spawn_file_actions_adddup2(&actions, err[1], 2)
    closeInheritedDescriptors(&actions)
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

    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
    defer {
        for pointer in argv { free(pointer) }
        for pointer in envp { free(pointer) }
    }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
    close(out[1])
    close(err[1])
    defer {
        close(out[0])
        close(err[0])
    }
    guard spawned == 0 else { return .failure(Tmux.CommandError(description: "cannot run \(path): error \(spawned)")) }
    let output = readToEnd(out[0])
    let errors = readToEnd(err[0])
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        guard errno == EINTR else { return .failure(Tmux.CommandError(description: "waitpid: errno \(errno)")) }
    }
    // Exit status when it exited, else 128 + the signal, as a shell reports it.
    let code = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    return .success((code, output, errors))
}

/// Has the child close every descriptor above 2: glibc's closefrom action when
/// there is one (2.34), else each descriptor open now without close-on-exec.
private func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
    typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32
    if let symbol = dlsym(dlopen(nil, RTLD_NOW), "posix_spawn_file_actions_addclosefrom_np") {
        _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
        return
    }
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
        guard let fd = Int32(entry), fd > 2 else { continue }
        let flags = fcntl(fd, F_GETFD)
        if flags >= 0, flags & FD_CLOEXEC == 0 { posix_spawn_file_actions_addclose(&actions, fd) }
    }
}

private func readToEnd(_ fd: Int32) -> String {
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n < 0, errno == EINTR { continue }
        guard n > 0 else { break }
        bytes += buffer[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Runs blocking work on a fresh thread and awaits its result.
private func runOnOwnThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: work()) }.start()
    }
}
