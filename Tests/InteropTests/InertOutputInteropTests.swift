import Foundation
import InertText
import JSON
import SocketIOTesting
import Testing

/// `parley --headless` is run in terminals (README shows it), and its log is read with
/// `tail`: a peer or a server must not be able to drive the terminal through either. The
/// fake server plays a hostile server whose names, messages and refusals carry every kind of
/// character a terminal could act on.
@Suite(.timeLimit(.minutes(1))) struct InertOutputInteropTests {
    static let hostile = "esc\u{1B}[2J bel\u{07} nl\n del\u{7F} csi\u{9B}31m nel\u{85} rlo\u{202E}gnp.exe lri\u{2066} rlm\u{200F} alm\u{061C} ls\u{2028} ps\u{2029} zwsp\u{200B} bom\u{FEFF} tag\u{E0041} é中😀"

    @Test func whatAHostileServerSendsReachesNeitherStdoutNorTheLogRaw() async throws {
        let server = try await FakeSocketIOServer.start()
        let directory = scratchDirectory()
        let parley = try HeadlessProcess(url: server.url, configDirectory: directory, username: "alice")
        let connection = try await server.nextConnection()
        _ = try await connection.expectConnect()
        // A refusal that may pass, whose reason is hostile: it is logged and printed.
        connection.reject(message: Self.hostile)
        let refused = try await parley.next("status") { $0["state"] == "refused" }
        #expect(refused["reason"] == .string(Self.hostile))  // the JSON says exactly what came…
        let again = try await server.nextConnection()
        _ = try await again.expectConnect()
        again.accept()
        again.emit("session", ["sessionID": "s-1", "userID": "u1"])
        again.emit("users", [
            ["userID": "u1", "username": "alice", "connected": true],
            ["userID": "u2", "username": .string("mallory" + Self.hostile), "connected": true],
        ])
        again.emit("private message", ["content": .string(Self.hostile), "from": "u2", "to": "u1"])
        let message = try await parley.next("message")
        #expect(message["content"] == .string(Self.hostile))
        parley.closeInput()
        _ = await parley.waitForExit()
        await server.stop()

        // …and no line of it, on stdout or in the log, carries an active character raw.
        #expect(!parley.output.isEmpty)
        for line in parley.output {
            #expect(!line.unicodeScalars.contains(where: InertText.isEscaped), "raw on stdout: \(line.debugDescription)")
        }
        let log = try String(contentsOfFile: parley.logFile, encoding: .utf8)
        #expect(log.contains(#"esc\u{1b}[2J"#), "the refusal's reason is logged, escaped:\n\(log)")
        for line in log.split(separator: "\n") {
            #expect(!line.unicodeScalars.contains(where: InertText.isEscaped), "raw in the log: \(line.debugDescription)")
        }
    }
}
