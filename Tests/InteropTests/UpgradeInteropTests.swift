import EngineIO
import Foundation
import SocketIOTesting
import Testing

/// The client's upgrade from HTTP long-polling to WebSocket against a scripted server
/// (`upgrade_server.py`) that holds the last GET after the probe, so that the client is
/// paused mid-upgrade for a while, holding what it sends.
@Suite struct UpgradeInteropTests {
    /// A process whose standard output is read line by line.
    final class Script: Sendable {
        private let lines = AsyncQueue<String>(what: "a line from the scripted server")
        private let process: Process
        private let stdin = Pipe()

        init(_ name: String, arguments: [String] = []) throws {
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(name)
            process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [ProcessInfo.processInfo.environment["PARLEY_PYTHON"] ?? "python3", script.path] + arguments
            let stdout = Pipe()
            process.standardInput = stdin
            process.standardOutput = stdout
            let lines = self.lines
            try process.run()
            readLines(from: stdout.fileHandleForReading) { lines.push($0) } atEnd: { lines.finish() }
        }

        /// The next line, within 10 s.
        func next() async throws -> String { try await lines.next(timeout: .seconds(10)) }

        func stop() {
            try? stdin.fileHandleForWriting.close()
            process.waitUntilExit()
        }
    }

    /// Closed while the upgrade holds what is sent: the held messages and the close packet
    /// still reach the server (over the WebSocket, after the upgrade packet), and the close
    /// waits for them. (It once dropped them.)
    @Test func closingMidUpgradeLosesNothing() async throws {
        let server = try Script("upgrade_server.py", arguments: ["--hold", "1.5"])
        defer { server.stop() }
        let listening = try await server.next()
        let port = try #require(Int(listening.dropFirst("LISTENING ".count)))
        let transports = EngineIOTransports(
            order: [.polling], upgrade: true, webSocket: NIOWebSocketTransportFactory(), polling: PollingTransportFactory()
        )
        let transport = try await transports.connect(to: EngineIOEndpoint(url: "http://127.0.0.1:\(port)", path: "/engine.io/"))
        let connection = try await EngineIOConnection.open(over: transport, clock: ManualClock())
        #expect(try await server.next() == "PROBED")
        // Paused now: the GET is held by the server, so these wait in the transport.
        try connection.send(.text("m1"))
        try connection.send(.text("m2"))
        connection.close()
        await connection.waitUntilClosed()
        // What reached the server, by whichever way each went, up to the close packet.
        var frames: [String] = []
        while frames.last != "1" {
            let line = try await server.next()
            frames += line.split(separator: " ", maxSplits: 1).last.map { $0.split(separator: "|").map(String.init) } ?? []
        }
        #expect(frames.filter { $0 != "5" } == ["4m1", "4m2", "1"], "\(frames)")
    }
}
