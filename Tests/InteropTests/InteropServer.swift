import Foundation
import JSON
import Testing
import Synchronization

/// Which private-messaging server an end-to-end test runs against.
enum ServerKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// The python-socketio port of the guide's server (`server.py` beside this file):
    /// a real, independent Socket.IO implementation.
    case python
    /// Parley's own `parley-server` (part II plus part III's message store).
    case parley

    var testDescription: String { rawValue }

    /// Whether `users` entries and `user connected` carry part III's `messages`.
    var sendsMessages: Bool { self == .parley }

    /// A `users` / `user connected` entry as this server sends it (without stored messages).
    func entry(userID: String, username: String, connected: Bool) -> JSONValue {
        var members: [JSONObject.Element] = [
            ("userID", .string(userID)), ("username", .string(username)), ("connected", .bool(connected)),
        ]
        if sendsMessages { members.append(("messages", .array([]))) }
        return .object(JSONObject(members))
    }
}

/// A private-messaging server (python-socketio's port or parley-server), started on a
/// free port for one test and stopped after it.
///
/// Blocking reads and waits run on threads of their own: on the cooperative
/// pool (two threads on a two-core machine) they would stall every other test.
final class InteropServer: Sendable {
    let url: String
    let port: Int
    private let process: Process
    private let stdin: Pipe
    private let exited: AsyncStream<Void>

    struct StartError: Error, CustomStringConvertible {
        let description: String
    }

    private init(url: String, port: Int, process: Process, stdin: Pipe, exited: AsyncStream<Void>) {
        self.url = url
        self.port = port
        self.process = process
        self.stdin = stdin
        self.exited = exited
    }

    /// - Parameters:
    ///   - port: 0 for a free one; a given one to restart on the same port.
    ///   - sessionsFile: keep sessions across restarts.
    ///   - storeMessages: part III: keep messages and send them in `users`.
    ///   - kind: which server; parley-server always stores messages, and keeps sessions and
    ///     messages in `sessionsFile` (SQLite) when given.
    static func start(
        _ kind: ServerKind = .python,
        port: Int = 0,
        sessionsFile: String? = nil,
        storeMessages: Bool = false,
        extraArguments: [String] = []
    ) async throws -> InteropServer {
        let process = Process()
        switch kind {
        case .python:
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("server.py")
            let python = ProcessInfo.processInfo.environment["PARLEY_PYTHON"] ?? "python3"
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [python, script.path, "--exit-with-stdin", "--port", String(port)] + (sessionsFile.map { ["--sessions-file", $0] } ?? []) + (storeMessages ? ["--store-messages"] : []) + extraArguments
        case .parley:
            // Built beside the test bundle (the test target depends on it).
            process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
                .appendingPathComponent("parley-server")
            process.arguments = ["--exit-with-stdin", "--port", String(port), "--log-level", "warning"]
                + (sessionsFile.map { ["--data", $0] } ?? []) + extraArguments
        }
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        let (exited, exit) = AsyncStream.makeStream(of: Void.self)
        process.terminationHandler = { _ in
            exit.yield()
            exit.finish()
        }
        try process.run()

        let line = await onOwnThread { () -> String? in
            var buffer = Data()
            while true {
                let chunk = stdout.fileHandleForReading.availableData
                if chunk.isEmpty { return nil }
                buffer.append(chunk)
                if let newline = buffer.firstIndex(of: 0x0A) {
                    return String(decoding: buffer[..<newline], as: UTF8.self)
                }
            }
        }
        guard let line, line.hasPrefix("LISTENING "), let listening = Int(line.dropFirst("LISTENING ".count)) else {
            process.terminate()
            let errors = await onOwnThread { String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }
            throw StartError(
                description: kind == .python
                    ? "the python-socketio interop server did not start (run `make deps` to install "
                        + "python-socketio and aiohttp):\n\(errors)"
                    : "parley-server did not start:\n\(errors)"
            )
        }
        // TLS names a server by host name (the test certificate's is localhost).
        let url = extraArguments.contains("--tls") ? "https://localhost:\(listening)" : "http://127.0.0.1:\(listening)"
        return InteropServer(url: url, port: listening, process: process, stdin: stdin, exited: exited)
    }

    /// Stops the server as Ctrl-C would (parley-server sends itself SIGTERM when its standard
    /// input closes) and waits for it to exit; its exit status.
    func shutdown() async -> Int32 {
        try? stdin.fileHandleForWriting.close()
        for await _ in exited {}
        return process.terminationStatus
    }

    /// Kills the server (as a crash would: connections drop at once) and waits for it to exit.
    /// SIGKILL, because a child of the test process may inherit a mask that blocks SIGTERM.
    func stop() async {
        try? stdin.fileHandleForWriting.close()
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        for await _ in exited {}
    }
}

/// Runs blocking work on a fresh thread and awaits its result.
private func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: work()) }.start()
    }
}
