import ChatSchema
@testable import ChatServer
@testable import EngineIOServer
import Foundation
import JSON
import Logging
import SocketIO
import SocketIOServer
import SocketIOTesting
import Testing

// MARK: Stores

@Suite struct MessageLogTests {
    func message(_ n: Int, _ from: String = "a", _ to: String = "b", size: Int = 1) -> PrivateMessage {
        PrivateMessage(content: "m\(n)" + String(repeating: "x", count: max(0, size - 1)), from: from, to: to)
    }

    @Test func aConversationKeepsItsNewestMessagesAndSaysWhichWentFirst() {
        var log = MessageLog(perConversation: 3, maxBytes: 1 << 20)
        var dropped: [Int64] = []
        for n in 0..<5 { dropped += log.append(message(n, n.isMultiple(of: 2) ? "a" : "b", n.isMultiple(of: 2) ? "b" : "a")).dropped }
        #expect(log.conversation("a", "b").map(\.content) == ["m2", "m3", "m4"])
        #expect(log.conversation("b", "a") == log.conversation("a", "b"))
        #expect(dropped == [1, 2])
        #expect(log.count == 3)
        // Another conversation is not touched.
        _ = log.append(message(9, "a", "c"))
        #expect(log.conversation("a", "c").count == 1 && log.count == 4)
    }

    @Test func theTotalIsBoundedInBytesAndTheOldestGoFirstWhicheverConversationTheyAreIn() {
        let size = 1000
        let cost = size + 1 + MessageLog.overhead
        var log = MessageLog(perConversation: 100, maxBytes: 10 * cost + cost / 2)
        for n in 10..<40 { _ = log.append(message(n, "u\(n % 3)", "v", size: size)) }
        #expect(log.count == 10)
        #expect(log.bytes <= 10 * cost + cost / 2)
        let kept = ["u0", "u1", "u2"].flatMap { log.conversation($0, "v") }.map { Int($0.content.dropFirst().prefix(2))! }
        #expect(kept.sorted() == Array(30..<40))
    }

    @Test func oneSenderCannotPushEveryoneElsesHistoryOut() {
        let cost = 1000 + 2 + MessageLog.overhead  // "mNN" and 998 more
        var log = MessageLog(perConversation: 1000, maxBytesPerSender: 5 * cost, maxBytes: 20 * cost)
        // Others' conversations first, then a flood from one sender to many.
        for n in 10..<20 { _ = log.append(message(n, "u\(n)", "v", size: 1000)) }
        var dropped: [Int64] = []
        for n in 20..<90 { dropped += log.append(message(n, "flood", "w\(n % 7)", size: 1000)).dropped }
        #expect(log.count == 15, "ten of the others, five of the flood")
        #expect((10..<20).allSatisfy { log.conversation("u\($0)", "v").count == 1 })
        let kept = (0..<7).flatMap { log.conversation("flood", "w\($0)") }.map { String($0.content.prefix(3)) }
        #expect(kept.sorted() == ["m85", "m86", "m87", "m88", "m89"])
        #expect(dropped.count == 65)
        // A reply in a conversation the flood fills stays: the bound is the flood's, not the conversation's.
        _ = log.append(message(95, "w5", "flood", size: 1000))
        #expect(log.conversation("flood", "w5").map { String($0.content.prefix(3)) }.contains("m95"))
    }

    @Test func manyMessagesInOneConversationDoNotGrowTheArrivalQueue() {
        // Every message past the tenth drops one: the queue of arrivals must not keep them all.
        var log = MessageLog(perConversation: 10, maxBytes: 1 << 30)
        for n in 0..<200_000 { _ = log.append(message(n)) }
        #expect(log.count == 10)
        #expect(log.conversation("a", "b").first?.content == "m199990")
        #expect(log.arrivalCount <= 2 * log.count + 1024)
        // Then the byte bound still drops the oldest first.
        var small = MessageLog(perConversation: 10, maxBytes: 5 * (7 + MessageLog.overhead))
        for n in 0..<100_000 { _ = small.append(message(n)) }
        #expect(small.conversation("a", "b").map(\.content) == (99_995..<100_000).map { "m\($0)" })
    }

    @Test func aLoginsHistoryFitsItsBudgetSharedFairlyNewestFirst() throws {
        var log = MessageLog(perConversation: 1000, maxBytes: 1 << 30)
        // A flood of large messages from m to v, and a short conversation between v and f.
        for n in 0..<180 { _ = log.append(message(n, "m", "v", size: 99_000)) }
        _ = log.append(PrivateMessage(content: "hi", from: "f", to: "v"))
        _ = log.append(PrivateMessage(content: "hello", from: "v", to: "f"))
        let history = log.history(of: "v", budget: 1 << 20)
        let bytes = history.values.joined().reduce(0) { $0 + $1.byteCount + 1 }
        #expect(bytes <= 1 << 20)
        #expect(history["f"]?.map(\.text) == [
            JSONFragment(PrivateMessage(content: "hi", from: "f", to: "v").json).text,
            JSONFragment(PrivateMessage(content: "hello", from: "v", to: "f").json).text,
        ])
        let flood = try #require(history["m"])
        #expect(flood.count == 10, "ten of 99 KB fit in a megabyte")
        #expect(flood.last?.text.contains("\"m179") == true, "the newest, oldest first")
        #expect(log.history(of: "v", budget: 0).isEmpty)
        #expect(log.history(of: "nobody", budget: 1 << 20).isEmpty)
    }

    @Test func forgettingAUserForgetsTheirConversationsOnly() {
        var log = MessageLog(perConversation: 100, maxBytes: 1 << 20)
        _ = log.append(message(1, "a", "b"))
        _ = log.append(message(2, "b", "c"))
        _ = log.append(message(3, "c", "a"))
        #expect(log.removeConversations(of: "a") == 2)
        #expect(log.count == 1)
        #expect(log.conversation("b", "c").count == 1)
        #expect(log.history(of: "a", budget: 1 << 20).isEmpty)
        #expect(log.history(of: "c", budget: 1 << 20).keys.sorted() == ["b"])
    }
}

@Suite struct ChatStoreTests {
    func temporaryPath() -> String {
        NSTemporaryDirectory() + "parley-store-\(UUID().uuidString)/chat.sqlite"
    }

    @Test func sqliteKeepsEverythingAcrossARestartAndTheFileIsPrivate() async throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let store = try SQLiteChatStore(path: path)
        let alice = StoredSession(sessionID: "s1", userID: "u1", username: "alice", connected: true, lastSeen: 100)
        let bob = StoredSession(sessionID: "s2", userID: "u2", username: "bob", connected: true, lastSeen: 200)
        let carol = StoredSession(sessionID: "s3", userID: "u3", username: "carol", connected: false, lastSeen: 300)
        store.record([.session(alice), .session(bob), .session(carol)])
        store.record([
            .message(.init(seq: 1, message: PrivateMessage(content: "hi", from: "u1", to: "u2"))),
            .message(.init(seq: 2, message: PrivateMessage(content: "dropped", from: "u1", to: "u2"))),
            .message(.init(seq: 3, message: PrivateMessage(content: "yo", from: "u2", to: "u1"))),
            .message(.init(seq: 4, message: PrivateMessage(content: "carol's", from: "u3", to: "u1"))),
            .dropMessages([2]),
            // Saving again replaces in place: the order stays the order of creation.
            .session(StoredSession(sessionID: "s1", userID: "u1", username: "alice", connected: false, lastSeen: 150)),
            .forgetUser(userID: "u3"),
        ])
        try await store.close()

        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600, "the file holds session IDs: owner only")

        let reopened = try SQLiteChatStore(path: path)
        let state = try await reopened.load()
        #expect(state.sessions.map(\.username) == ["alice", "bob"])
        #expect(state.sessions.map(\.lastSeen) == [150, 200])
        #expect(state.sessions.allSatisfy { !$0.connected }, "nobody is connected to a server that just started")
        #expect(state.messages.map(\.seq) == [1, 3])
        #expect(state.messages.map(\.message.content) == ["hi", "yo"])
        try await reopened.close()
    }

    /// Changes recorded while a transaction is being written wait for the next one: a burst
    /// of messages from many sockets costs a few transactions, not one each.
    @Test func theSessionIDNeverAppearsInDescriptions() {
        let secret = "5f3c0ffee5f3c0ffee5f3c0ffee5f3c0"
        let session = StoredSession(sessionID: secret, userID: "u1", username: "alice", connected: false, lastSeen: 100)
        var dumped = ""
        dump(session, to: &dumped)
        let change = StoreChange.session(session)
        for text in ["\(session)", String(reflecting: session), dumped, "\([session])", "\(change)", "\(Optional(session) as Any)"] {
            #expect(!text.contains(secret), "leaked in: \(text)")
            #expect(text.contains("u1"))
        }
    }

    @Test func sqliteWritesInBatches() async throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let store = try SQLiteChatStore(path: path)
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for n in 0..<250 {
                        let seq = Int64(task * 250 + n + 1)
                        store.record([.message(.init(seq: seq, message: PrivateMessage(content: "m\(seq)", from: "a", to: "b")))])
                    }
                }
            }
        }
        await store.flush()
        #expect(store.transactions < 2_000)
        try await store.close()
        let reopened = try SQLiteChatStore(path: path)
        #expect(try await reopened.load().messages.map(\.seq) == (1...2_000).map(Int64.init))
        try await reopened.close()
    }

    /// A disk that does not keep up (here: another process holds the database's write lock)
    /// does not make the queue of changes grow without end: past its bound, new messages are
    /// shed, with one log line, and sessions are still written.
    @Test func aStoreThatDoesNotKeepUpShedsMessagesNotSessions() async throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let log = CapturedLog()
        let store = try SQLiteChatStore(path: path, logger: log.logger, maxPendingChanges: 4)
        let locker = Process()
        locker.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        locker.arguments = [
            "python3", "-c",
            "import sqlite3, sys\ndb = sqlite3.connect(sys.argv[1], isolation_level=None)\ndb.execute('BEGIN EXCLUSIVE')\n"
                + "print('locked', flush=True)\nsys.stdin.readline()\ndb.execute('COMMIT')\n",
            path,
        ]
        let toLocker = Pipe()
        let fromLocker = Pipe()
        locker.standardInput = toLocker
        locker.standardOutput = fromLocker
        try locker.run()
        let said = try await onThread { fromLocker.fileHandleForReading.availableData }
        try #require(String(decoding: said, as: UTF8.self).hasPrefix("locked"))

        func message(_ seq: Int64) -> StoreChange {
            .message(.init(seq: seq, message: PrivateMessage(content: "m\(seq)", from: "u1", to: "u2")))
        }
        let alice = StoredSession(sessionID: "s1", userID: "u1", username: "alice", connected: true, lastSeen: 100)
        // The writer takes the first change (or not yet) and waits for the lock; four more
        // fill the queue; then a session and a message come: the message is shed.
        store.record([message(1)])
        store.record([message(2), message(3), message(4), message(5)])
        store.record([.session(alice), message(6)])
        #expect(log.lines(containing: "the store does not keep up") == ["the store does not keep up: messages not written to disk messages=1"])

        toLocker.fileHandleForWriting.write(Data("go\n".utf8))
        locker.waitUntilExit()
        try await store.close()
        let reopened = try SQLiteChatStore(path: path)
        let state = try await reopened.load()
        #expect(state.messages.map(\.seq) == [1, 2, 3, 4, 5])
        #expect(state.sessions.map(\.sessionID) == ["s1"])
        try await reopened.close()
    }

    @Test func sqliteTightensAFileOthersCanRead() async throws {
        let path = temporaryPath()
        let directory = (path as NSString).deletingLastPathComponent
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await SQLiteChatStore(path: path).close()
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        try await SQLiteChatStore(path: path).close()
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int == 0o600)
    }

    /// A file of the first version (no last_seen) is migrated: its users count as seen when
    /// the migration ran, so none is forgotten at once.
    @Test func aFileOfTheFirstSchemaIsMigrated() async throws {
        let path = temporaryPath()
        let directory = (path as NSString).deletingLastPathComponent
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let script = """
            import sqlite3, sys
            db = sqlite3.connect(sys.argv[1])
            db.executescript(
                "CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);"
                "INSERT INTO grdb_migrations VALUES ('v1');"
                "CREATE TABLE session (seq INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL UNIQUE,"
                " user_id TEXT NOT NULL, username TEXT NOT NULL, connected INTEGER NOT NULL);"
                "CREATE INDEX session_user ON session(user_id);"
                "CREATE TABLE message (id INTEGER PRIMARY KEY AUTOINCREMENT, content TEXT NOT NULL,"
                " from_user TEXT NOT NULL, to_user TEXT NOT NULL);"
                "INSERT INTO session (session_id, user_id, username, connected) VALUES ('s1', 'u1', 'alice', 1);"
                "INSERT INTO message (content, from_user, to_user) VALUES ('old', 'u1', 'u1');")
            db.commit()
            """
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", script, path]
        try python.run()
        python.waitUntilExit()
        try #require(python.terminationStatus == 0)
        let store = try SQLiteChatStore(path: path)
        let state = try await store.load()
        #expect(state.sessions.map(\.username) == ["alice"])
        #expect(abs(state.sessions[0].lastSeen - ChatApplication.secondsSince1970()) < 3600)
        #expect(state.messages.map(\.message.content) == ["old"])
        try await store.close()
    }
}

// MARK: The application, through the wire

/// parley-server's layers in this process, on a free port, keeping time with a manual clock.
struct ChatServerHarness {
    let url: String
    let port: Int
    let socketIO: SocketIOServer
    let chat: ChatApplication
    let store: any ChatStore
    private let task: Task<Void, any Error>

    var clock: ManualServerClock { socketIO.clock as! ManualServerClock }

    static func start(
        store: any ChatStore = MemoryChatStore(),
        options: ChatApplication.Options = .init(),
        engineLimits: EngineIOServerOptions.Limits = .init(),
        limits: SocketIOServer.Limits = .init(),
        logger: Logger? = nil
    ) async throws -> ChatServerHarness {
        let logger = logger ?? {
            var logger = Logger(label: "test.chat-server")
            logger.logLevel = .critical
            return logger
        }()
        let socketIO = SocketIOServer(engineOptions: EngineIOServerOptions(limits: engineLimits), limits: limits, clock: ManualServerClock(), logger: logger)
        let chat = try await ChatApplication(server: socketIO, store: store, options: options, logger: logger)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let app = socketIO.engine.application(host: "127.0.0.1", port: 0, logger: logger) { port in
            continuation.yield(port)
        }
        let task = Task { try await app.runService(gracefulShutdownSignals: []) }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CancellationError() }
        return ChatServerHarness(url: "http://127.0.0.1:\(port)", port: port, socketIO: socketIO, chat: chat, store: store, task: task)
    }

    private init(url: String, port: Int, socketIO: SocketIOServer, chat: ChatApplication, store: any ChatStore, task: Task<Void, any Error>) {
        self.url = url
        self.port = port
        self.socketIO = socketIO
        self.chat = chat
        self.store = store
        self.task = task
    }

    func stop() async {
        socketIO.shutdown()
        task.cancel()
        _ = await task.result
        try? await store.close()
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
        // The clock stands still: no token comes back during the test.
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
        ["username": .string(String(repeating: "x", count: 33))], ["sessionID": "unknown"], ["username": "ab"],
        ["username": "bo\u{200B}b"], ["username": "rtl\u{202E}name"],
        // One grapheme of 1,801 bytes: "a" and 900 combining marks (a CONNECT that large is
        // refused before it is read: ChatAttackTests).
        ["username": .string("a" + String(repeating: "\u{301}", count: 900))],
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
