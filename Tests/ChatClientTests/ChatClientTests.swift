import Chat
import ChatClient
import EngineIO
import History
import Foundation
import JSON
import SocketIO
import SocketIOTesting
import Testing

/// Collects the events a client reports (as its observer) so a test can wait for one.
final class EventLog: Sendable {
    private let queue = AsyncQueue<ChatEvent>(what: "a chat event")

    func observe(_ event: ChatEvent, in chat: ChatState) { queue.push(event) }

    /// Skips events until one matches (within 10 s) and returns what `match` made of it.
    func next<T: Sendable>(_ match: (ChatEvent) -> T?) async throws -> T {
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { throw TimeoutError(what: "a matching chat event", after: .seconds(10)) }
            if let found = match(try await queue.next(timeout: left)) { return found }
        }
    }
}

struct ChatHarness {
    let server: FakeSocketIOServer
    let clock: ManualClock
    let directory: String

    static func make() async throws -> ChatHarness {
        ChatHarness(server: try await FakeSocketIOServer.start(), clock: ManualClock(), directory: temporaryDirectory())
    }

    func client() async throws -> (ChatClient, EventLog) {
        let log = EventLog()
        let client = try await ChatClient(options: .init(
            url: server.url,
            configDirectory: directory,
            observer: log.observe,
            socket: .init(clock: clock, random: { 0.5 })
        ))
        return (client, log)
    }

    /// A client logged in as alice ("u1", session "s1"), bob ("b") known.
    func loggedInAsAlice() async throws -> (ChatClient, EventLog, FakeConnection) {
        let (client, log) = try await self.client()
        try await client.start(username: "alice")
        let connection = try await server.nextConnection()
        _ = try await connection.expectConnect()
        serve(connection, userID: "u1", sessionID: "s1", username: "alice")
        _ = try await log.next { if case .users = $0 { true } else { nil } }
        return (client, log, connection)
    }

    /// Plays the part II server's login: session, users.
    func serve(_ connection: FakeConnection, userID: String, sessionID: String, username: String) {
        connection.accept()
        connection.emit("session", ["sessionID": .string(sessionID), "userID": .string(userID)])
        connection.emit("users", [
            ["userID": .string(userID), "username": .string(username), "connected": true],
            ["userID": "b", "username": "bob", "connected": true],
        ])
    }
}

@Suite(.timeLimit(.minutes(1))) struct ChatClientTests {
    @Test func firstLoginStoresTheSessionAndARestartUsesIt() async throws {
        let h = try await ChatHarness.make()
        let (client, log) = try await h.client()
        try await client.start(username: "  alice ")
        let connection = try await h.server.nextConnection()
        #expect(try await connection.expectConnect().auth == ["username": "alice"])
        h.serve(connection, userID: "u1", sessionID: secret, username: "alice")
        let session = try await log.next { if case .session(let id, let name) = $0 { (id, name) } else { nil } }
        #expect(session == ("u1", "alice"))
        _ = try await log.next { if case .users = $0 { true } else { nil } }
        let users = client.read { $0.users }
        #expect(users.map(\.username) == ["alice", "bob"])
        #expect(users.first?.isSelf == true)
        #expect(client.read { $0.selfID } == "u1")
        let stored = client.store.load(client.server).session
        #expect(stored == StoredSession(sessionID: secret, userID: "u1", username: "alice"))
        await client.close()

        // A restart: no prompt, the stored session and the name go out together.
        let (again, againLog) = try await h.client()
        try await again.start()
        let second = try await h.server.nextConnection()
        #expect(try await second.expectConnect().auth == ["sessionID": .string(secret), "username": "alice"])
        h.serve(second, userID: "u1", sessionID: secret, username: "alice")
        _ = try await againLog.next { if case .session = $0 { true } else { nil } }
        await again.close()
        await h.server.stop()
    }

    @Test func withoutSessionOrNameItAsksForAName() async throws {
        let h = try await ChatHarness.make()
        let (client, log) = try await h.client()
        try await client.start()
        // Wrapped: the payload itself is nil here, which must not read as "no match".
        let reason = try await log.next { if case .loggedOut(let reason) = $0 { [reason] } else { nil } }
        #expect(reason == [nil])
        await #expect(throws: Username.Problem.tooShort) { try await client.login(username: "al") }
        try await client.login(username: "alice")
        let connection = try await h.server.nextConnection()
        #expect(try await connection.expectConnect().auth == ["username": "alice"])
        await client.close()
        await h.server.stop()
    }

    @Test func invalidUsernameForgetsTheStoredSession() async throws {
        let h = try await ChatHarness.make()
        _ = try SessionStore(directory: h.directory).prepare()
        try SessionStore(directory: h.directory).save(
            StoredSession(sessionID: secret, userID: "u1", username: "alice"),
            for: ServerKey(try EngineIOEndpoint(url: h.server.url))
        )
        let (client, log) = try await h.client()
        try await client.start()
        let connection = try await h.server.nextConnection()
        _ = try await connection.expectConnect()
        connection.reject(message: "invalid username")
        let reason = try await log.next { if case .loggedOut(let reason) = $0 { reason } else { nil } }
        #expect(reason == "invalid username")
        #expect(client.store.load(client.server).session == nil)
        #expect(client.read { $0.selfID } == nil)
        await client.close()
        await h.server.stop()
    }

    /// PROTOCOL.md: only "invalid username" forgets the session. A server that is busy, full
    /// or rate-limiting says so; the client keeps its identity, shows the reason, and logs in
    /// again after a backoff that grows with each refusal in a row.
    @Test(arguments: [LoginRefusal.serverFull.rawValue, LoginRefusal.tooManyLogins.rawValue, "a reason no server sent before"])
    func aRefusalThatMayPassKeepsTheSessionAndTriesAgain(reason: String) async throws {
        let h = try await ChatHarness.make()
        let key = ServerKey(try EngineIOEndpoint(url: h.server.url))
        let stored = StoredSession(sessionID: secret, userID: "u1", username: "alice")
        _ = try SessionStore(directory: h.directory).prepare()
        try SessionStore(directory: h.directory).save(stored, for: key)
        let (client, log) = try await h.client()
        try await client.start()
        var delays: [Duration] = []
        for attempt in 1...3 {
            let connection = try await h.server.nextConnection()
            #expect(try await connection.expectConnect().auth == ["sessionID": .string(secret), "username": "alice"])
            if attempt > 1 {
                // Trying again: the refusal and its reason are still what is shown.
                #expect(client.read { if case .refused(reason, attempt - 1, _) = $0.connection { true } else { false } })
            }
            connection.reject(message: reason)
            let status = try await log.next { if case .refused(let why, let n, let delay) = $0 { (why, n, delay) } else { nil } }
            #expect(status.0 == reason && status.1 == attempt)
            delays.append(status.2)
            #expect(client.store.load(client.server).session?.sessionID == stored.sessionID, "\(client.store.load(client.server).session?.sessionID ?? "nil") \(client.store.load(client.server).warnings)")
            #expect(client.read { $0.selfID == nil || $0.selfID == "u1" })
            // Nothing happens until the backoff has passed…
            try await h.clock.waitForSleep(of: status.2)
            h.clock.advance(by: status.2)
        }
        // 2 s doubling, with the harness's random 0.5: each up by a quarter.
        #expect(delays == [.milliseconds(2500), .seconds(5), .seconds(10)])
        // …then the login with the same session, which the server now takes.
        let connection = try await h.server.nextConnection()
        #expect(try await connection.expectConnect().auth == ["sessionID": .string(secret), "username": "alice"])
        h.serve(connection, userID: "u1", sessionID: secret, username: "alice")
        #expect(try await log.next { if case .session(let id, _) = $0 { id } else { nil } } == "u1")
        await client.close()
        await h.server.stop()
    }

    /// A server's 100,000-character reason is cut to what a person reads, for the screen and
    /// the log alike (one refusal a minute of megabytes would fill a disk).
    @Test func aRefusalsReasonIsCutToWhatAPersonReads() async throws {
        let h = try await ChatHarness.make()
        let (client, log) = try await h.client()
        try await client.start(username: "alice")
        let connection = try await h.server.nextConnection()
        _ = try await connection.expectConnect()
        connection.reject(message: String(repeating: "busy ", count: 20_000))
        let reason = try await log.next { if case .refused(let why, _, _) = $0 { why } else { nil } }
        #expect(reason.count == 201 && reason.hasSuffix("…"))
        await client.close()
        await h.server.stop()
    }

    @Test func aRefusalThatMayPassIsNotRetriedAfterALogout() async throws {
        let h = try await ChatHarness.make()
        let (client, log) = try await h.client()
        try await client.start(username: "alice")
        let connection = try await h.server.nextConnection()
        _ = try await connection.expectConnect()
        connection.reject(message: LoginRefusal.serverFull.rawValue)
        let delay = try await log.next { if case .refused(_, _, let delay) = $0 { delay } else { nil } }
        try await h.clock.waitForSleep(of: delay)
        await client.logout()
        try await h.clock.waitUntilNoSleepers()
        h.clock.advance(by: delay)
        await #expect(throws: (any Error).self) { _ = try await h.server.nextConnection(timeout: .milliseconds(300)) }
        await client.close()
        await h.server.stop()
    }

    /// An impostor takes a name that looks like bob's: a message to "bob" by name is refused,
    /// with both userIDs, rather than sent to a guess; by userID it goes where it should.
    @Test func sendingByANameTwoUsersLookLikeIsRefusedWithTheirIDs() async throws {
        let h = try await ChatHarness.make()
        let (client, log, connection) = try await h.loggedInAsAlice()
        connection.emit("user connected", ["userID": "evil", "username": "bo\u{200B}b"])
        _ = try await log.next { if case .userConnected(let user) = $0, user.userID == "evil" { true } else { nil } }
        await #expect(throws: SendError.ambiguous("bob", userIDs: ["b", "evil"])) { try await client.send("for bob", to: "bob") }
        let sent = try await client.send("for bob", to: "b")
        #expect(sent.to == "b")
        #expect(try await connection.nextEvent().arguments == [["content": "for bob", "to": "b"]])
        #expect(SendError.ambiguous("bob", userIDs: ["b", "evil"]).description.contains("userIDs b, evil"))
        await client.close()
        await h.server.stop()
    }

    @Test func messagesTypedOfflineAreQueuedThenSentInOrder() async throws {
        let h = try await ChatHarness.make()
        let (client, log, connection) = try await h.loggedInAsAlice()

        let live = try await client.send("hello", to: "bob")
        #expect(live.to == "b")
        #expect(client.read { $0.user("b")!.messages.map(\.delivery) } == [.sent])
        #expect(try await connection.nextEvent().arguments == [["content": "hello", "to": "b"]])

        connection.drop()
        _ = try await log.next { if case .offline = $0 { true } else { nil } }
        let first = try await client.send("one", to: "b")
        let second = try await client.send("two", to: "b")
        #expect(second.id == first.id + 1)
        #expect(client.read { $0.user("b")!.messages.map(\.delivery) } == [.sent, .queued, .queued])

        let delay = try await log.next { if case .reconnecting(_, let delay) = $0 { delay } else { nil } }
        try await h.clock.waitForSleep(of: delay)
        h.clock.advance(by: delay)
        let back = try await h.server.nextConnection()
        #expect(try await back.expectConnect().auth == ["sessionID": "s1", "username": "alice"])
        h.serve(back, userID: "u1", sessionID: "s1", username: "alice")
        #expect(try await back.nextEvent().arguments == [["content": "one", "to": "b"]])
        #expect(try await back.nextEvent().arguments == [["content": "two", "to": "b"]])
        // The connection reports what went out with it: the two queued, by their IDs.
        let flushed = try await log.next { if case .connected(let flushed) = $0 { flushed } else { nil } }
        #expect(flushed == [first, second])
        #expect(client.read { $0.user("b")!.messages.map(\.delivery) } == [.sent, .sent, .sent])
        await client.close()
        await h.server.stop()
    }

    @Test func badSendsAreRefusedWithAReason() async throws {
        let h = try await ChatHarness.make()
        let (client, log) = try await h.client()
        await #expect(throws: SendError.notLoggedIn) { try await client.send("hi", to: "b") }
        try await client.start(username: "alice")
        let connection = try await h.server.nextConnection()
        _ = try await connection.expectConnect()
        h.serve(connection, userID: "u1", sessionID: "s1", username: "alice")
        _ = try await log.next { if case .users = $0 { true } else { nil } }
        await #expect(throws: SendError.empty) { try await client.send("  \n\t ", to: "b") }
        await #expect(throws: SendError.unknownRecipient("zed")) { try await client.send("hi", to: "zed") }
        await #expect {
            try await client.send(String(repeating: "x", count: 1_000_000), to: "b")
        } throws: { error in
            if case .tooLong(_, 1_000_000) = error as? SendError { return true }
            return false
        }
        #expect(SendError.tooLong(size: 1_000_050, limit: 1_000_000).description
            == "message too long: 1000050 bytes, the server accepts 1000000")
        await client.close()
        await h.server.stop()
    }

    /// What was said is kept on this machine: a restarted client shows the conversation with
    /// bob (offline until the server lists him), after its login and before the server's
    /// list, once per login (not again on a reconnection).
    @Test func aRestartShowsTheKeptConversationsOnce() async throws {
        let h = try await ChatHarness.make()
        let (history, _) = try HistoryStore.open(directory: temporaryDirectory() + "/history")
        func client() async throws -> (ChatClient, EventLog) {
            let log = EventLog()
            let client = try await ChatClient(options: .init(
                url: h.server.url, configDirectory: h.directory, observer: log.observe, history: history,
                socket: .init(clock: h.clock, random: { 0.5 })
            ))
            return (client, log)
        }
        let (first, log) = try await client()
        try await first.start(username: "alice")
        let connection = try await h.server.nextConnection()
        _ = try await connection.expectConnect()
        h.serve(connection, userID: "u1", sessionID: "s1", username: "alice")
        _ = try await log.next { if case .users = $0 { true } else { nil } }
        connection.emit("private message", ["content": "hello alice", "from": "b", "to": "u1"])
        _ = try await log.next { if case .messageReceived = $0 { true } else { nil } }
        try await first.send("hello bob", to: "b")
        await first.close()

        let (second, againLog) = try await client()
        try await second.start()
        let again = try await h.server.nextConnection()
        _ = try await again.expectConnect()
        again.accept()
        again.emit("session", ["sessionID": "s1", "userID": "u1"])
        let (peer, messages) = try await againLog.next { if case .restored(let entry, let messages) = $0 { (entry, messages) } else { nil } }
        #expect(peer.userID == "b" && peer.username == "bob" && !peer.connected)
        #expect(messages.map(\.content) == ["hello alice", "hello bob"])
        #expect(messages.map(\.fromSelf) == [false, true])
        #expect(second.read { $0.user("b")?.isConnected } == false)
        // A reconnection restores nothing more.
        again.drop()
        let delay = try await againLog.next { if case .reconnecting(_, let delay) = $0 { delay } else { nil } }
        try await h.clock.waitForSleep(of: delay)
        h.clock.advance(by: delay)
        let third = try await h.server.nextConnection()
        _ = try await third.expectConnect()
        h.serve(third, userID: "u1", sessionID: "s1", username: "alice")
        _ = try await againLog.next { if case .users = $0 { true } else { nil } }
        #expect(second.read { $0.user("b")?.messages.count } == 2)
        // Scrolling up past what was restored: none older here.
        #expect(second.loadOlder(of: "b") == false)
        // A logout that takes the history with it: nothing of alice's is kept any more.
        await second.logout(deleteHistory: true)
        #expect(try history.peers(server: second.server.value, me: "u1").isEmpty)
        await second.close()
        await h.server.stop()
    }

    /// A long history comes back 200 at a time: the newest after the login, older ones each
    /// time scrolling up asks, until there are none.
    @Test func olderKeptMessagesComeWhenAskedFor() async throws {
        let h = try await ChatHarness.make()
        let (history, _) = try HistoryStore.open(directory: temporaryDirectory() + "/history")
        let server = ServerKey(try EngineIOEndpoint(url: h.server.url)).value
        let at = Date(timeIntervalSince1970: 1_700_000_000)
        for n in 0..<250 {
            history.append(server: server, me: "u1", StoredMessage(peer: "b", fromSelf: false, content: "m\(n)", at: at), peerName: "bob")
        }
        await history.flush()
        let log = EventLog()
        let client = try await ChatClient(options: .init(
            url: h.server.url, configDirectory: h.directory, observer: log.observe, history: history, socket: .init(clock: h.clock, random: { 0.5 })
        ))
        try await client.start(username: "alice")
        let connection = try await h.server.nextConnection()
        _ = try await connection.expectConnect()
        h.serve(connection, userID: "u1", sessionID: "s1", username: "alice")
        _ = try await log.next { if case .users = $0 { true } else { nil } }
        #expect(client.read { $0.user("b")?.messages.first?.content } == "m50")
        // Searching every conversation reads the history, not only what is in memory (the
        // newest hits first, with their history rows); opening an old hit loads back to it.
        let hits = await client.search("M7")
        #expect(hits.map(\.message.content) == (70..<80).reversed().map { "m\($0)" } + ["m7"])
        #expect(hits.allSatisfy { $0.username == "bob" && $0.userID == "b" && $0.historyID != nil })
        #expect(await client.search("   ").isEmpty)
        client.loadOlder(of: "b", through: hits.last!.historyID!)
        #expect(client.read { $0.user("b")?.messages.map(\.content) } == (0..<250).map { "m\($0)" })
        #expect(!client.loadOlder(of: "b"))
        await client.close()

        // A part III server's history of the conversation takes the place of the kept one,
        // and scrolling up brings nothing of ours above it.
        let partIII = EventLog()
        let again = try await ChatClient(options: .init(
            url: h.server.url, configDirectory: h.directory, observer: partIII.observe, history: history, socket: .init(clock: h.clock, random: { 0.5 })
        ))
        try await again.start()
        let second = try await h.server.nextConnection()
        _ = try await second.expectConnect()
        second.accept()
        second.emit("session", ["sessionID": "s1", "userID": "u1"])
        second.emit("users", [
            ["userID": "u1", "username": "alice", "connected": true],
            ["userID": "b", "username": "bob", "connected": true, "messages": [["content": "server's", "from": "b", "to": "u1"]]],
        ])
        _ = try await partIII.next { if case .users = $0 { true } else { nil } }
        #expect(again.read { $0.user("b")?.messages.map(\.content) } == ["server's"])
        #expect(!again.loadOlder(of: "b"))
        #expect(again.read { $0.user("b")?.messages.count } == 1)
        // Searching every conversation finds what is on screen though not kept (the server's
        // copy), and what is kept though not on screen.
        let found = await again.search("SERVER")
        #expect(found.map(\.message.content) == ["server's"])
        #expect(found.first?.historyID == nil)
        #expect(await again.search("m249").map(\.message.content) == ["m249"])
        await again.close()
        await h.server.stop()
    }

    /// A logout empties the state; logging in again (here as the same user) brings the kept
    /// conversations back, as after a restart.
    @Test func aLoginAfterALogoutRestoresAgain() async throws {
        let h = try await ChatHarness.make()
        let (history, _) = try HistoryStore.open(directory: temporaryDirectory() + "/history")
        let server = ServerKey(try EngineIOEndpoint(url: h.server.url)).value
        history.append(server: server, me: "u1", StoredMessage(peer: "b", fromSelf: false, content: "kept", at: Date()), peerName: "bob")
        await history.flush()
        let log = EventLog()
        let client = try await ChatClient(options: .init(
            url: h.server.url, configDirectory: h.directory, observer: log.observe, history: history, socket: .init(clock: h.clock, random: { 0.5 })
        ))
        for round in 1...2 {
            if round == 1 { try await client.start(username: "alice") } else { try await client.login(username: "alice") }
            let connection = try await h.server.nextConnection()
            _ = try await connection.expectConnect()
            h.serve(connection, userID: "u1", sessionID: "s\(round)", username: "alice")
            _ = try await log.next { if case .restored = $0 { true } else { nil } }
            #expect(client.read { $0.user("b")?.messages.map(\.content) } == ["kept"], "round \(round)")
            if round == 1 { await client.logout() }
        }
        await client.close()
        await h.server.stop()
    }

    @Test func malformedPayloadsAreSkippedNotFatal() async throws {
        let h = try await ChatHarness.make()
        let (client, log) = try await h.client()
        try await client.start(username: "alice")
        let connection = try await h.server.nextConnection()
        _ = try await connection.expectConnect()
        h.serve(connection, userID: "u1", sessionID: "s1", username: "alice")
        connection.emit("private message", ["content": 42, "from": "b", "to": "u1"])
        connection.emit("user connected", "garbage")
        connection.emit("users", ["userID": "x"])
        connection.emit("private message", ["content": "ok", "from": "b", "to": "u1"])
        let message = try await log.next { if case .messageReceived(let m, _) = $0 { m } else { nil } }
        #expect(message.content == "ok")
        #expect(client.read { $0.user("b")!.messages.count } == 1)
        await client.close()
        await h.server.stop()
    }
}
