import Foundation
import JSON
import SocketIOTesting
import Synchronization

/// A `parley --headless` process, its JSON output lines collected for the test.
final class HeadlessProcess: Sendable {
    let configDirectory: String
    let logFile: String
    private let process: Process
    private let stdin: Pipe
    private let lines = AsyncQueue<JSONValue>(what: "a line from parley --headless")
    private let transcript = Transcript()
    private let exited: AsyncStream<Int32>

    /// The `parley` built beside the test bundle.
    static var executable: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("parley")
    }

    init(url: String, configDirectory: String, username: String? = nil, logFile: String? = nil, extraArguments: [String] = []) throws {
        self.configDirectory = configDirectory
        self.logFile = logFile ?? configDirectory + ".log"
        process = Process()
        process.executableURL = Self.executable
        // The history beside the config directory, unless the test chooses: never the home's.
        let history = extraArguments.contains { $0 == "--history-dir" || $0 == "--no-history" } ? [] : ["--history-dir", configDirectory + "-history"]
        process.arguments = ["--headless", "--url", url, "--config-dir", configDirectory, "--log-file", self.logFile]
            + history + (username.map { ["--username", $0] } ?? []) + extraArguments
        stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle.standardError
        let (exited, exit) = AsyncStream.makeStream(of: Int32.self)
        self.exited = exited
        process.terminationHandler = { process in
            exit.yield(process.terminationStatus)
            exit.finish()
        }
        try process.run()
        let lines = self.lines
        let transcript = self.transcript
        readLines(from: stdout.fileHandleForReading) { line in
            transcript.append(line)
            // A line that is not JSON is pushed as a string, so the test sees it.
            lines.push((try? JSONValue(parsing: line)) ?? .string(line))
        } atEnd: {
            lines.finish()
        }
    }

    /// Everything printed so far.
    var output: [String] { transcript.lines }

    func send(_ command: JSONValue) {
        stdin.fileHandleForWriting.write(Data((command.serialized() + "\n").utf8))
    }

    func sendRaw(_ line: String) {
        stdin.fileHandleForWriting.write(Data((line + "\n").utf8))
    }

    func closeInput() { try? stdin.fileHandleForWriting.close() }

    /// Skips lines until one with this `event` (or one of `a|b`) matches.
    @discardableResult
    func next(_ event: String, timeout: Duration = .seconds(20), where matches: (JSONValue) -> Bool = { _ in true }) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { throw TimeoutError(what: "a \(event) line from parley", after: timeout) }
            let line = try await lines.next(timeout: left)
            let kinds = event.split(separator: "|").map(String.init)
            if let kind = line["event"]?.stringValue, kinds.contains(kind), matches(line) { return line }
        }
    }

    func waitForExit() async -> Int32 {
        for await status in exited { return status }
        return process.terminationStatus
    }

    func kill() { process.terminate() }
}

final class Transcript: Sendable {
    private let storage = Mutex<[String]>([])
    func append(_ line: String) { storage.withLock { $0.append(line) } }
    var lines: [String] { storage.withLock { $0 } }
}

/// Reads a child's output on a thread of its own (the reads block), a line at a time.
func readLines(from handle: FileHandle, _ each: @escaping @Sendable (String) -> Void, atEnd: @escaping @Sendable () -> Void) {
    Thread {
        var buffer = Data()
        while true {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            buffer.append(chunk)
            while let newline = buffer.firstIndex(of: 0x0A) {
                each(String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self))
                buffer.removeSubrange(buffer.startIndex...newline)
            }
        }
        atEnd()
    }.start()
}
