import Chat
import ChatServer
import EngineIOServer
import Foundation
import JSON
import Logging
import SocketIO
import SocketIOServer
import SocketIOTesting
import Testing

// MARK: Stores

@Suite struct ChatStoreTests {
    func exercise(_ store: any ChatStore) throws {
        try store.save(StoredSession(sessionID: "s1", userID: "u1", username: "alice", connected: true))
        try store.save(StoredSession(sessionID: "s2", userID: "u2", username: "bob", connected: true))
        // Saving again replaces in place: the order stays the order of creation.
        try store.save(StoredSession(sessionID: "s1", userID: "u1", username: "alice", connected: false))
        #expect(try store.allSessions().map(\.sessionID) == ["s1", "s2"])
        #expect(try store.session(id: "s1")?.connected == false)
        #expect(try store.session(id: "nope") == nil)
        #expect(try store.hasUser("u2"))
        #expect(try !store.hasUser("u3"))

        try store.save(PrivateMessage(content: "hi", from: "u1", to: "u2"))
        try store.save(PrivateMessage(content: "note to self", from: "u1", to: "u1"))
        try store.save(PrivateMessage(content: "yo", from: "u2", to: "u1"))
        #expect(try store.messages(of: "u1").map(\.content) == ["hi", "note to self", "yo"])
        #expect(try store.messages(of: "u2").map(\.content) == ["hi", "yo"])
    }

    @Test func memory() throws {
        try exercise(MemoryChatStore())
    }

    /// The memory store keeps messages in chunks; a user's messages come back whole and in
    /// order across the chunks' edges, each exactly once.
    @Test func memoryKeepsOrderAcrossManyMessages() throws {
        let store = MemoryChatStore()
        let users = ["u0", "u1", "u2"]
        var expected: [String: [String]] = [:]
        for n in 0..<5_000 {
            let from = users[n % 3]
            let to = users[(n / 3) % 3]
            let message = PrivateMessage(content: "m\(n)", from: from, to: to)
            store.save(message)
            expected[from, default: []].append(message.content)
            if to != from { expected[to, default: []].append(message.content) }
        }
        for user in users {
            #expect(store.messages(of: user).map(\.content) == expected[user])
        }
        #expect(store.messages(of: "nobody").isEmpty)
    }

    @Test func sqliteKeepsEverythingAcrossARestartAndTheFileIsPrivate() throws {
        let path = NSTemporaryDirectory() + "parley-store-\(UUID().uuidString)/chat.sqlite"
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let store = try SQLiteChatStore(path: path)
        try exercise(store)
        try store.save(StoredSession(sessionID: "s2", userID: "u2", username: "bob", connected: true))
        try store.close()

        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600, "the file holds session IDs: owner only")

        let reopened = try SQLiteChatStore(path: path)
        let sessions = try reopened.allSessions()
        #expect(sessions.map(\.username) == ["alice", "bob"])
        #expect(sessions.allSatisfy { !$0.connected }, "nobody is connected to a server that just started")
        #expect(try reopened.messages(of: "u1").map(\.content) == ["hi", "note to self", "yo"])
        try reopened.close()
    }

    @Test func sqliteTightensAFileOthersCanRead() throws {
        let directory = NSTemporaryDirectory() + "parley-store-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/chat.sqlite"
        try SQLiteChatStore(path: path).close()
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        try SQLiteChatStore(path: path).close()
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int == 0o600)
    }
}

// MARK: The application, through the wire

/// parley-server's layers in this process, on a free port.
struct ChatServerHarness {
    let url: String
    let socketIO: SocketIOServer
    private let task: Task<Void, any Error>

    static func start(store: any ChatStore = MemoryChatStore(), options: ChatApplication.Options = .init()) async throws -> ChatServerHarness {
        var logger = Logger(label: "test.chat-server")
        logger.logLevel = .critical
        let socketIO = SocketIOServer(logger: logger)
        _ = try ChatApplication(server: socketIO, store: store, options: options, logger: logger)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let app = socketIO.engine.application(host: "127.0.0.1", port: 0, logger: logger) { port in
            continuation.yield(port)
        }
        let task = Task { try await app.runService(gracefulShutdownSignals: []) }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CancellationError() }
        return ChatServerHarness(url: "http://127.0.0.1:\(port)", socketIO: socketIO, task: task)
    }

    private init(url: String, socketIO: SocketIOServer, task: Task<Void, any Error>) {
        self.url = url
        self.socketIO = socketIO
        self.task = task
    }

    func stop() async {
        socketIO.shutdown()
        task.cancel()
        _ = await task.result
    }

    /// A logged-in client: its socket, events, and session.
    func login(_ auth: JSONValue) async throws -> (socket: Socket, events: SocketEventRecorder, userID: String, sessionID: String) {
        let manager = try SocketManager(url: url)
        let socket = try await manager.socket(auth: { auth })
        let events = await SocketEventRecorder(socket)
        await socket.connect()
        let session = try await events.event(named: "session").arguments.first
        return (
            socket, events,
            try #require(session?["userID"]?.stringValue),
            try #require(session?["sessionID"]?.stringValue)
        )
    }
}

@Suite(.timeLimit(.minutes(1))) struct ChatApplicationTests {
    @Test func sessionIDsAreLongAndRandomAndUserIDsDistinct() async throws {
        let server = try await ChatServerHarness.start()
        let a = try await server.login(["username": "alice"])
        let b = try await server.login(["username": "bob"])
        #expect(a.sessionID.count >= 32, "at least 128 bits, hex")
        #expect(a.sessionID != b.sessionID)
        #expect(a.userID != b.userID)
        #expect(a.sessionID != a.userID)
        await a.socket.disconnect()
        await b.socket.disconnect()
        await server.stop()
    }

    @Test func badMessagesAreRefusedWithAReasonAndNeverForwarded() async throws {
        let server = try await ChatServerHarness.start(options: .init(maxMessageBytes: 16))
        let alice = try await server.login(["username": "alice"])
        let bob = try await server.login(["username": "bob"])
        let to = JSONValue.string(bob.userID)

        func refusal(_ payload: JSONValue) async throws -> String? {
            try await alice.socket.emitWithAck("private message", payload).first?["error"]?.stringValue
        }
        #expect(try await refusal(["content": 42, "to": to]) == "content is not a string")
        #expect(try await refusal(["content": "", "to": to]) == "content is empty")
        #expect(try await refusal(["content": "seventeen bytes!!", "to": to]) == "content is larger than 16 bytes")
        #expect(try await refusal(["content": "hi", "to": "no-such-user"]) == "no such user")
        #expect(try await refusal(["content": "hi"]) == "to is not a string")
        #expect(try await refusal("just a string") == "the message is not an object")

        // A good one is acknowledged and is the first thing bob receives.
        let ok = try await alice.socket.emitWithAck("private message", ["content": "hi bob", "to": to])
        #expect(ok.first?["ok"] == true)
        let first = try await bob.events.event(named: "private message")
        #expect(first.arguments.first?["content"] == "hi bob")
        #expect(first.arguments.first?["from"] == .string(alice.userID))

        await alice.socket.disconnect()
        await bob.socket.disconnect()
        await server.stop()
    }

    @Test func aFloodIsCutOffByTheRateLimit() async throws {
        let server = try await ChatServerHarness.start(options: .init(messagesPerSecond: 0.5, messageBurst: 3))
        let alice = try await server.login(["username": "alice"])
        let bob = try await server.login(["username": "bob"])
        var answers: [String] = []
        for i in 0..<5 {
            let ack = try await alice.socket.emitWithAck("private message", ["content": .string("m\(i)"), "to": .string(bob.userID)])
            answers.append(ack.first?["error"]?.stringValue ?? "ok")
        }
        #expect(answers == ["ok", "ok", "ok", "rate limit exceeded", "rate limit exceeded"])
        await alice.socket.disconnect()
        await bob.socket.disconnect()
        await server.stop()
    }

    @Test(arguments: [
        JSONValue.object([:]), ["username": ""], ["username": 7], ["username": "bad\u{1B}[2Jname"],
        ["username": .string(String(repeating: "x", count: 65))], ["sessionID": "unknown"],
    ])
    func invalidUsernamesAreRefused(auth: JSONValue) async throws {
        let server = try await ChatServerHarness.start()
        let manager = try SocketManager(url: server.url)
        let socket = try await manager.socket(auth: { auth })
        let events = await SocketEventRecorder(socket)
        await socket.connect()
        let event = try await events.next { if case .connectError = $0 { return true } else { return false } }
        guard case .connectError(let error) = event else { return }
        #expect(error.message == "invalid username")
        await server.stop()
    }

    /// Shutting down closes every connection; the clients are not told of each other's
    /// departure on the way out (for 10,000 clients that was 50 million frames, minutes of
    /// work before the server could exit).
    @Test func aShutdownDoesNotAnnounceEachDepartureToThoseLeavingToo() async throws {
        let server = try await ChatServerHarness.start()
        var clients: [(socket: Socket, events: SocketEventRecorder, userID: String, sessionID: String)] = []
        for name in ["alice", "bob", "carol", "dave"] {
            clients.append(try await server.login(["username": .string(name)]))
        }
        server.socketIO.shutdown()
        for client in clients {
            var heard: [String] = []
            while true {
                let event = try await client.events.next()
                if case .disconnect = event { break }
                if case .event(let received) = event { heard.append(received.name) }
            }
            #expect(!heard.contains("user disconnected"), "\(heard)")
            await client.socket.disconnect()
        }
        await server.stop()
    }

    @Test func aMessageToSomeoneOfflineIsKeptAndDeliveredWhenTheyReturn() async throws {
        let path = NSTemporaryDirectory() + "parley-chat-\(UUID().uuidString).sqlite"
        defer { try? FileManager.default.removeItem(atPath: path) }
        var server = try await ChatServerHarness.start(store: try SQLiteChatStore(path: path))
        let alice = try await server.login(["username": "alice"])
        let bob = try await server.login(["username": "bob"])
        await bob.socket.disconnect()
        _ = try await alice.events.event(named: "user disconnected")
        _ = try await alice.socket.emitWithAck("private message", ["content": "see this later", "to": .string(bob.userID)])
        await alice.socket.disconnect()
        await server.stop()

        // A restart on the same file: bob's session and the message are still there.
        server = try await ChatServerHarness.start(store: try SQLiteChatStore(path: path))
        let back = try await server.login(["sessionID": .string(bob.sessionID)])
        #expect(back.userID == bob.userID)
        let users = try #require(try await back.events.event(named: "users").arguments.first?.arrayValue)
        let aliceEntry = try #require(users.first { $0["userID"] == .string(alice.userID) })
        #expect(aliceEntry["connected"] == false)
        #expect(aliceEntry["messages"] == [["content": "see this later", "from": .string(alice.userID), "to": .string(bob.userID)]])
        let own = try #require(users.first { $0["userID"] == .string(bob.userID) })
        #expect(own["connected"] == true)
        await back.socket.disconnect()
        await server.stop()
    }
}
