import Foundation
import Testing

/// python-socketio's client (a real, independent Socket.IO implementation) runs the whole
/// private-messaging scenario (`client_scenario.py`) against parley-server: once with its
/// default transports (long-polling, then the upgrade to WebSocket) and once on WebSocket only.
@Suite(.timeLimit(.minutes(2))) struct PythonClientInteropTests {
    @Test(arguments: [false, true]) func theWholeScenarioAgainstParleyServer(webSocketOnly: Bool) async throws {
        let server = try await InteropServer.start(.parley)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("client_scenario.py")
        let python = ProcessInfo.processInfo.environment["PARLEY_PYTHON"] ?? "python3"
        let output = try await runToEnd(
            "/usr/bin/env",
            [python, script.path, server.url] + (webSocketOnly ? ["--websocket-only"] : [])
        )
        await server.stop()
        #expect(output.status == 0, "\(output.text)")
        #expect(output.text.contains("SCENARIO OK"), "\(output.text)")
    }
}

/// Runs a program to its end on a thread of its own; its standard output and error, joined.
func runToEnd(_ executable: String, _ arguments: [String]) async throws -> (status: Int32, text: String) {
    try await withCheckedThrowingContinuation { continuation in
        Thread {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            process.standardInput = FileHandle.nullDevice
            do {
                try process.run()
            } catch {
                continuation.resume(throwing: error)
                return
            }
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            continuation.resume(returning: (process.terminationStatus, String(decoding: data, as: UTF8.self)))
        }.start()
    }
}
