import Foundation
import JSON
import SocketIO
import SocketIOTesting
import Testing

/// Two `parley-server` processes on one PostgreSQL database (`--postgres`), with `parley
/// --headless` clients on each: one chat, and nothing acknowledged lost when a server is
/// killed with SIGKILL.
@Suite(.timeLimit(.minutes(3))) struct ClusterInteropTests {
    @Test func twoServersOneChatAndAKilledServerLosesNothingAcknowledged() async throws {
        let postgres = try await PrivatePostgres.shared()
        let database = try await postgres.database()
        let a = try await InteropServer.start(.parley, extraArguments: ["--postgres", database])
        let b = try await InteropServer.start(.parley, extraArguments: ["--postgres", database])

        // alice reaches the servers through a proxy that picks the first that answers (as
        // nginx would): A, then B once A is gone. bob goes to B directly.
        let proxy = try await FailoverProxy.start(backends: [a.port, b.port])
        let aliceConfig = scratchDirectory()
        let alice = try HeadlessProcess(url: proxy.url, configDirectory: aliceConfig, username: "alice")
        let aliceID = try #require(try await alice.next("session")["userID"]?.stringValue)
        // bob on the other server; alice hears him come.
        let bob = try HeadlessProcess(url: b.url, configDirectory: scratchDirectory(), username: "bob")
        let bobID = try #require(try await bob.next("session")["userID"]?.stringValue)
        try await alice.next("user_connected") { $0["username"] == "bob" }

        alice.send(["send": ["to": .string(bobID), "content": "hello from A"]])
        #expect(try await bob.next("message")["content"] == "hello from A")
        bob.send(["send": ["to": .string(aliceID), "content": "hello from B"]])
        #expect(try await alice.next("message") { $0["fromSelf"] == false }["content"] == "hello from B")

        // Twenty messages from a client that asks for acknowledgements (a Socket.IO client
        // of the library, as alice, on A), each acknowledged, then server A is killed at once.
        let manager = try SocketManager(url: a.url)
        let sessionID = try storedSessionID(in: aliceConfig)
        let acking = try await manager.socket(auth: { ["sessionID": .string(sessionID)] })
        let recorder = await SocketEventRecorder(acking)
        await acking.connect()
        _ = try await recorder.event(named: "session")
        for n in 1...20 {
            let answer = try await acking.emitWithAck("private message", ["content": .string("m\(n)"), "to": .string(bobID)])
            #expect(answer.first?["ok"] == true, "m\(n): \(answer)")
        }
        await a.stop()  // SIGKILL
        // alice's client reconnects through the proxy, to B: the same user, and the chat goes on.
        let back = try await alice.next("session", timeout: .seconds(30))
        #expect(back["userID"] == .string(aliceID))
        alice.send(["send": ["to": .string(bobID), "content": "after the crash"]])
        #expect(try await bob.next("message") { $0["content"] == "after the crash" }["fromSelf"] == false)

        // Every acknowledged message is in the database, though A wrote them and died.
        let name = String(database.split(separator: "/").last!)
        let stored = try await postgres.psql("SELECT convert_from(content, 'UTF8') FROM parley_message ORDER BY id", database: name)
        let texts = stored.split(separator: "\n").map(String.init)
        #expect(texts == ["hello from A", "hello from B"] + (1...20).map { "m\($0)" } + ["after the crash"], "\(texts)")

        // A server started afresh on the database knows alice and bob, and their conversation.
        let c = try await InteropServer.start(.parley, extraArguments: ["--postgres", database])
        let carol = try HeadlessProcess(url: c.url, configDirectory: scratchDirectory(), username: "carol")
        let list = try await carol.next("users")
        #expect(Set(list["users"]?.arrayValue?.compactMap { $0["username"]?.stringValue } ?? []) == ["alice", "bob", "carol"])
        for client in [alice, bob, carol] {
            client.send(["quit": true])
            _ = await client.waitForExit()
        }
        for server in [b, c] { _ = await server.shutdown() }
        proxy.stop()
    }
}


/// python-socketio's clients (an independent Socket.IO implementation) run the whole
/// private-messaging scenario across two parley-servers on one database: bob and alice's
/// second tab on the other server, bob back on the first; on long-polling with the upgrade,
/// and on WebSocket only.
@Suite(.timeLimit(.minutes(3))) struct PythonClusterInteropTests {
    @Test(arguments: [false, true]) func theWholeScenarioAcrossTwoServers(webSocketOnly: Bool) async throws {
        let database = try await PrivatePostgres.shared().database()
        let a = try await InteropServer.start(.parley, extraArguments: ["--postgres", database])
        let b = try await InteropServer.start(.parley, extraArguments: ["--postgres", database])
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("client_scenario.py")
        let python = ProcessInfo.processInfo.environment["PARLEY_PYTHON"] ?? "python3"
        let output = try await runToEnd("/usr/bin/env", [python, script.path, a.url, b.url] + (webSocketOnly ? ["--websocket-only"] : []))
        _ = await a.shutdown()
        _ = await b.shutdown()
        #expect(output.status == 0, "\(output.text)")
        #expect(output.text.contains("SCENARIO OK"), "\(output.text)")
    }
}

/// `failover_proxy.py`: new connections to the first of its backends that accepts them.
struct FailoverProxy {
    let url: String
    let process: Process
    let input: Pipe

    static func start(backends: [Int]) async throws -> FailoverProxy {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("failover_proxy.py")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [ProcessInfo.processInfo.environment["PARLEY_PYTHON"] ?? "python3", script.path] + backends.flatMap { ["--backend", "127.0.0.1:\($0)"] }
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let line = await withCheckedContinuation { (continuation: CheckedContinuation<String, Never>) in
            Thread {
                var text = ""
                while !text.contains("\n") {
                    let chunk = output.fileHandleForReading.availableData
                    if chunk.isEmpty { break }
                    text += String(decoding: chunk, as: UTF8.self)
                }
                continuation.resume(returning: text)
            }.start()
        }
        guard line.hasPrefix("LISTENING "), let port = Int(line.dropFirst(10).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            process.terminate()
            throw InteropServer.StartError(description: "the failover proxy did not start: \(line)")
        }
        return FailoverProxy(url: "http://127.0.0.1:\(port)", process: process, input: input)
    }

    func stop() {
        try? input.fileHandleForWriting.close()
    }
}
