import Foundation
import JSON
import Testing

func scratchDirectory() -> String { NSTemporaryDirectory() + "parley-e2e-\(UUID().uuidString)" }

/// The session ID stored for the only server in a config directory.
func storedSessionID(in directory: String) throws -> String {
    let data = try #require(FileManager.default.contents(atPath: directory + "/sessions.json"))
    let json = try JSONValue(parsingUTF8: Array(data))
    return try #require(json["servers"]?.objectValue?.values.first?["sessionID"]?.stringValue)
}

/// Two `parley --headless` processes, different config dirs, through python-socketio.
@Suite(.timeLimit(.minutes(2))) struct HeadlessInteropTests {
    @Test(arguments: ServerKind.allCases) func twoHeadlessClientsChatAndTheSecretNeverLeaks(_ kind: ServerKind) async throws {
        let server = try await InteropServer.start(kind)
        let alice = try HeadlessProcess(url: server.url, configDirectory: scratchDirectory(), username: "alice")
        let aliceSession = try await alice.next("session")
        let bob = try HeadlessProcess(url: server.url, configDirectory: scratchDirectory(), username: "bob")
        let bobSession = try await bob.next("session")
        let bobID = try #require(bobSession["userID"]?.stringValue)
        try await alice.next("user_connected") { $0["username"] == "bob" }

        let text = "héllo bob — 中文 — 😀"
        alice.send(["send": ["to": "bob", "content": .string(text)]])
        let sent = try await alice.next("message")
        #expect(sent["to"] == .string(bobID))
        #expect(sent["sent"] == true && sent["queued"] == false)
        let received = try await bob.next("message")
        #expect(received["content"] == .string(text))
        #expect(received["from"] == aliceSession["userID"])
        #expect(received["fromSelf"] == false)
        #expect(received["at"]?.stringValue?.hasSuffix("Z") == true)

        // Bad input gets an error line, and the client goes on.
        alice.sendRaw("this is not json")
        alice.send(["send": ["to": "nobody-here", "content": "x"]])
        alice.send(["launch": true])
        #expect(try await alice.next("error")["message"]?.stringValue?.hasPrefix("bad command: not JSON") == true)
        #expect(try await alice.next("error")["message"]?.stringValue?.contains("no user called") == true)
        #expect(try await alice.next("error")["message"]?.stringValue?.contains("unknown command") == true)
        bob.send(["send": ["to": .string(try #require(aliceSession["userID"]?.stringValue)), "content": "back at you"]])
        #expect(try await alice.next("message") { $0["fromSelf"] == false }["content"] == "back at you")

        alice.send(["quit": true])
        #expect(await alice.waitForExit() == 0)
        bob.closeInput()
        #expect(await bob.waitForExit() == 0)

        // The session file is private, and its secret appears in no output and no log.
        for client in [alice, bob] {
            let attributes = try FileManager.default.attributesOfItem(atPath: client.configDirectory + "/sessions.json")
            #expect(attributes[.posixPermissions] as? Int == 0o600)
            let secret = try storedSessionID(in: client.configDirectory)
            let log = String(decoding: FileManager.default.contents(atPath: client.logFile) ?? Data(), as: UTF8.self)
            #expect(!log.isEmpty)
            #expect(!log.contains(secret))
            #expect(!client.output.joined().contains(secret))
        }
        await server.stop()
    }

    @Test(arguments: ServerKind.allCases) func aRestartKeepsTheIdentity(_ kind: ServerKind) async throws {
        let server = try await InteropServer.start(kind)
        let directory = scratchDirectory()
        let first = try HeadlessProcess(url: server.url, configDirectory: directory, username: "carol")
        let userID = try #require(try await first.next("session")["userID"])
        let watcher = try HeadlessProcess(url: server.url, configDirectory: scratchDirectory(), username: "dave")
        try await watcher.next("users")
        first.closeInput()
        #expect(await first.waitForExit() == 0)
        try await watcher.next("user_disconnected") { $0["userID"] == userID }

        // No --username: the stored session is used, and the server returns the same user.
        let again = try HeadlessProcess(url: server.url, configDirectory: directory)
        #expect(try await again.next("session")["userID"] == userID)
        try await watcher.next("user_connected") { $0["userID"] == userID }
        again.send(["quit": true])
        watcher.send(["quit": true])
        #expect(await again.waitForExit() == 0)
        #expect(await watcher.waitForExit() == 0)
        await server.stop()
    }

    /// The guide's part II server keeps no messages: a restarted client shows its earlier
    /// conversation from its own history, bob listed offline until he is back.
    @Test func aRestartedClientShowsItsConversationsWithAPartIIServer() async throws {
        let server = try await InteropServer.start(.python)
        let directory = scratchDirectory()
        let alice = try HeadlessProcess(url: server.url, configDirectory: directory, username: "alice")
        try await alice.next("session")
        let bob = try HeadlessProcess(url: server.url, configDirectory: scratchDirectory(), username: "bob")
        let bobID = try #require(try await bob.next("session")["userID"])
        try await alice.next("user_connected")
        alice.send(["send": ["to": "bob", "content": "remember this"]])
        #expect(try await bob.next("message")["content"] == "remember this")
        bob.send(["send": ["to": "alice", "content": "and this ✓"]])
        try await alice.next("message") { $0["content"] == "and this ✓" }
        alice.closeInput()
        #expect(await alice.waitForExit() == 0)
        bob.closeInput()
        #expect(await bob.waitForExit() == 0)

        let again = try HeadlessProcess(url: server.url, configDirectory: directory)
        try await again.next("session")
        let kept = try await again.next("history")
        #expect(kept["userID"] == bobID)
        #expect(kept["messages"]?.arrayValue?.compactMap { $0["content"]?.stringValue } == ["remember this", "and this ✓"])
        #expect(kept["messages"]?.arrayValue?.compactMap { $0["fromSelf"] } == [true, false])
        let users = try await again.next("users")
        #expect(users["users"]?.arrayValue?.first { $0["userID"] == bobID }?["connected"] == false)
        again.send(["quit": true])
        #expect(await again.waitForExit() == 0)
        // --no-history: nothing kept, nothing shown.
        let forgetful = try HeadlessProcess(url: server.url, configDirectory: directory, extraArguments: ["--no-history"])
        try await forgetful.next("users")
        #expect(!forgetful.output.contains { $0.contains(#""event":"history""#) })
        forgetful.send(["quit": true])
        _ = await forgetful.waitForExit()
        await server.stop()
    }

    @Test(arguments: ServerKind.allCases) func withoutASessionOrAUsernameItExitsWithAnError(_ kind: ServerKind) async throws {
        let server = try await InteropServer.start(kind)
        let nobody = try HeadlessProcess(url: server.url, configDirectory: scratchDirectory())
        #expect(try await nobody.next("status")["state"] == "needs_username")
        #expect(try await nobody.next("error")["message"]?.stringValue?.contains("give --username") == true)
        #expect(await nobody.waitForExit() == 2)
        await server.stop()
    }

    /// On each transport: alice on the one given, bob on WebSocket.
    @Test(arguments: ServerKind.allCases, ["websocket", "polling"])
    func aServerRestartMidChatLosesNothing(_ kind: ServerKind, transport: String) async throws {
        let sessions = scratchDirectory() + "-sessions.json"
        // A server with persistent sessions and a message store (the guide's part III): with part II's
        // in-memory store a restart forgets every user, and a message to a user who is not yet back is lost.
        var server = try await InteropServer.start(kind, sessionsFile: sessions, storeMessages: true)
        let alice = try HeadlessProcess(
            url: server.url, configDirectory: scratchDirectory(), username: "alice", extraArguments: ["--transport", transport]
        )
        let aliceID = try #require(try await alice.next("session")["userID"])
        let bob = try HeadlessProcess(url: server.url, configDirectory: scratchDirectory(), username: "bob")
        let bobID = try #require(try await bob.next("session")["userID"])
        try await alice.next("user_connected")
        alice.send(["send": ["to": "bob", "content": "before"]])
        #expect(try await bob.next("message")["content"] == "before")

        // The server dies: both go offline, and what alice types is queued.
        let port = server.port
        await server.stop()
        try await alice.next("status") { $0["state"] == "offline" }
        try await bob.next("status") { $0["state"] == "offline" }
        alice.send(["send": ["to": "bob", "content": "while down 1"]])
        alice.send(["send": ["to": "bob", "content": "while down 2"]])
        let queued = try await alice.next("message")
        #expect(queued["queued"] == true)
        try await alice.next("message") { $0["queued"] == true }

        // Back on the same port: both reconnect as themselves, the queue goes out in order.
        server = try await InteropServer.start(kind, port: port, sessionsFile: sessions, storeMessages: true)
        try await alice.next("status", timeout: .seconds(30)) { $0["state"] == "connected" }
        // The flush comes with the connection, before the server's session and users.
        let flushed = try await alice.next("message") { $0["sent"] == true }
        #expect(flushed["id"] == queued["id"])
        #expect(try await alice.next("session")["userID"] == aliceID)
        try await bob.next("status", timeout: .seconds(30)) { $0["state"] == "connected" }
        #expect(try await bob.next("session")["userID"] == bobID)
        // Bob gets them live if he was back first, else in the stored history when he is.
        var got: [String] = []
        while got.count < 2 {
            let line = try await bob.next("message|history") { _ in true }
            if line["event"] == "message", let content = line["content"]?.stringValue, content.hasPrefix("while down") {
                got.append(content)
            } else if line["event"] == "history" {
                // Each message as it is, without an "event" of its own.
                #expect(line["messages"]?.arrayValue?.allSatisfy { $0["event"] == nil } == true, "\(line)")
                got = (line["messages"]?.arrayValue ?? []).compactMap { $0["content"]?.stringValue }.filter { $0.hasPrefix("while down") }
            }
        }
        #expect(got == ["while down 1", "while down 2"])

        alice.send(["send": ["to": "bob", "content": "after"]])
        #expect(try await bob.next("message")["content"] == "after")
        alice.closeInput()
        bob.closeInput()
        #expect(await alice.waitForExit() == 0)
        #expect(await bob.waitForExit() == 0)
        await server.stop()
    }

    /// A server configured for HTTP long-polling only (python-socketio with
    /// `transports=["polling"]`): the default `auto` falls back to polling and logs in, and
    /// chats both ways with a client that asked for polling.
    @Test func aPollingOnlyServerIsReachedByFallingBackToPolling() async throws {
        let server = try await InteropServer.start(.python, extraArguments: ["--transports", "polling"])
        let alice = try HeadlessProcess(url: server.url, configDirectory: scratchDirectory(), username: "alice")
        try await alice.next("session")
        let bob = try HeadlessProcess(
            url: server.url, configDirectory: scratchDirectory(), username: "bob", extraArguments: ["--transport", "polling"]
        )
        try await bob.next("session")
        try await alice.next("user_connected") { $0["username"] == "bob" }
        alice.send(["send": ["to": "bob", "content": "reached over polling ✓"]])
        #expect(try await bob.next("message")["content"] == "reached over polling ✓")
        bob.send(["send": ["to": "alice", "content": .string(String(repeating: "long ", count: 2_000))]])
        #expect(try await alice.next("message") { $0["fromSelf"] == false }["content"]?.stringValue?.count == 10_000)
        // A client that insists on WebSocket cannot log in there, and says why.
        let carol = try HeadlessProcess(
            url: server.url, configDirectory: scratchDirectory(), username: "carol", extraArguments: ["--transport", "websocket"]
        )
        try await carol.next("status") { $0["state"] == "reconnecting" }
        carol.send(["quit": true])
        alice.closeInput()
        bob.closeInput()
        #expect(await alice.waitForExit() == 0)
        #expect(await bob.waitForExit() == 0)
        _ = await carol.waitForExit()
        await server.stop()
    }

    /// HTTP long-polling over TLS (what a proxy in front of a server most often speaks): a
    /// python-socketio server on HTTPS for polling only, its certificate trusted with
    /// `--ca-file`; and refused without it, the certificate being no one's the system trusts.
    @Test func pollingOverTLSWithAPrivateCA() async throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("SocketIOTests/Fixtures")
        let certificate = fixtures.appendingPathComponent("test-cert.pem").path
        let server = try await InteropServer.start(
            .python, extraArguments: ["--transports", "polling", "--tls", certificate, fixtures.appendingPathComponent("test-key.pem").path]
        )
        #expect(server.url.hasPrefix("https://"))
        let alice = try HeadlessProcess(
            url: server.url, configDirectory: scratchDirectory(), username: "alice", extraArguments: ["--ca-file", certificate]
        )
        try await alice.next("session")
        let bob = try HeadlessProcess(
            url: server.url, configDirectory: scratchDirectory(), username: "bob",
            extraArguments: ["--ca-file", certificate, "--transport", "polling"]
        )
        try await bob.next("session")
        try await alice.next("user_connected") { $0["username"] == "bob" }
        alice.send(["send": ["to": "bob", "content": "over https"]])
        #expect(try await bob.next("message")["content"] == "over https")
        let stranger = try HeadlessProcess(
            url: server.url, configDirectory: scratchDirectory(), username: "carol", extraArguments: ["--transport", "polling"]
        )
        try await stranger.next("status") { $0["state"] == "reconnecting" }
        stranger.send(["quit": true])
        alice.closeInput()
        bob.closeInput()
        #expect(await alice.waitForExit() == 0)
        #expect(await bob.waitForExit() == 0)
        _ = await stranger.waitForExit()
        await server.stop()
    }

    /// SIGTERM (here, by closing its input): parley-server closes every session, stops
    /// listening, makes the store durable and exits 0; the clients go offline (none is told
    /// of another leaving first) and wait to reconnect. (That the sessions are closed before
    /// the HTTP server drains, not by it, shows in time, not here: 3,000 clients, 6.5 s → 0.6 s.)
    @Test func parleyServerShutsDownCleanly() async throws {
        let data = scratchDirectory() + "-chat.sqlite"
        let server = try await InteropServer.start(.parley, sessionsFile: data)
        var clients: [HeadlessProcess] = []
        for name in ["alice", "bob", "carol"] {
            let client = try HeadlessProcess(url: server.url, configDirectory: scratchDirectory(), username: name)
            _ = try await client.next("session")
            clients.append(client)
        }
        _ = try await clients[0].next("user_connected") { $0["username"] == "carol" }

        #expect(await server.shutdown() == 0)
        for client in clients {
            let first = try await client.next("user_disconnected|status") { $0["event"] == "user_disconnected" || $0["state"] == "offline" }
            #expect(first["event"] == "status", "told of another client leaving before going offline: \(first)")
            client.closeInput()
            #expect(await client.waitForExit() == 0)
        }
    }

    @Test(arguments: ServerKind.allCases) func twoInstancesWithOneConfigDirAreOneUserInTwoPlaces(_ kind: ServerKind) async throws {
        let server = try await InteropServer.start(kind)
        let directory = scratchDirectory()
        let laptop = try HeadlessProcess(url: server.url, configDirectory: directory, username: "erin")
        let erinID = try #require(try await laptop.next("session")["userID"])
        let phone = try HeadlessProcess(url: server.url, configDirectory: directory)
        #expect(try await phone.next("session")["userID"] == erinID)
        let friend = try HeadlessProcess(url: server.url, configDirectory: scratchDirectory(), username: "frank")
        let frankID = try #require(try await friend.next("session")["userID"])
        try await laptop.next("user_connected") { $0["username"] == "frank" }
        try await phone.next("user_connected") { $0["username"] == "frank" }

        // What one place sends, the other shows as its own.
        laptop.send(["send": ["to": "frank", "content": "from the laptop"]])
        #expect(try await friend.next("message")["content"] == "from the laptop")
        let echo = try await phone.next("message")
        #expect(echo["fromSelf"] == true && echo["to"] == frankID && echo["content"] == "from the laptop")
        // And a message to oneself reaches the other place.
        phone.send(["send": ["to": .string(try #require(erinID.stringValue)), "content": "note to self"]])
        #expect(try await laptop.next("message") { $0["content"] == "note to self" }["fromSelf"] == true)

        for client in [laptop, phone, friend] { client.send(["quit": true]) }
        for client in [laptop, phone, friend] { #expect(await client.waitForExit() == 0) }
        _ = try storedSessionID(in: directory)  // still a valid file after both wrote it
        await server.stop()
    }
}
