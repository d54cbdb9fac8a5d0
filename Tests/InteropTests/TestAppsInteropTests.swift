import Foundation
import Testing

/// `parley-server --app engine.io-test | socket.io-test` as the official suites' clients
/// would find it, tried by python-engineio and python-socketio (`test_apps_scenario.py`) on
/// each transport: long-polling only, WebSocket only, and long-polling upgraded to WebSocket.
/// The official suites themselves run from README ("Conformance").
@Suite(.timeLimit(.minutes(2))) struct TestAppsInteropTests {
    @Test(arguments: ["engine.io", "socket.io"], ["polling", "websocket", "upgrade"])
    func theTestAppAnswersAnotherImplementation(app: String, transport: String) async throws {
        let server = try await InteropServer.start(.parley, extraArguments: ["--app", "\(app)-test"])
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("test_apps_scenario.py")
        let python = ProcessInfo.processInfo.environment["PARLEY_PYTHON"] ?? "python3"
        let output = try await runToEnd("/usr/bin/env", [python, script.path, server.url, app, transport])
        #expect(await server.shutdown() == 0)
        #expect(output.status == 0, "\(output.text)")
        #expect(output.text.contains("SCENARIO OK"), "\(output.text)")
    }
}
