import ChatSchema
@testable import ChatServer
@testable import EngineIOServer
import Foundation
import JSON
import Logging
import SocketIO
import SocketIOServer
import SocketIOTesting
import Synchronization
import Testing

/// The attacks of "parley-server under attack" on the chat application, as a hostile client
/// makes them, each against parley-server's layers in this process.
@Suite(.serialized, .timeLimit(.minutes(2))) struct ChatAttackTests {
    /// A raw polling client of the harness.
    func polling(_ server: ChatServerHarness, _ sid: String? = nil) -> String {
        "/socket.io/?EIO=4&transport=polling" + (sid.map { "&sid=\($0)" } ?? "")
    }

    @Test func onePollingSessionFloodingConnectAndDisconnectMakesAFewUsersNotThousands() async throws {
        let server = try await ChatServerHarness.start()
        let port = server.port
        let handshake = try await HTTPClient.request(port: port, polling(server))
        let sid = try handshakeSID(handshake.text)
        // The issue's attack: three POSTs of 3,000 CONNECT/DISCONNECT pairs each, never a GET.
        var statuses: [Int] = []
        for round in 0..<3 {
            let pairs = (0..<3_000).map { #"40{"username":"flood\#(round)-\#($0)"}\#u{1e}41"# }
            statuses.append(try await HTTPClient.request("POST", port: port, polling(server, sid), body: pairs.joined(separator: "\u{1e}")).status)
        }
        // A session that has joined no namespace may send its CONNECT, not 140 KB of them:
        // the first POST is refused unread (413) and ends the session, the next are told so.
        // No user was made. (With small POSTs, the CONNECT rate limit takes over: the Socket.IO
        // attack tests.)
        #expect(statuses == [413, 400, 400])
        #expect(server.chat.userCount == 0)
        #expect(server.socketIO.engine.session(id: sid) == nil)
        await server.stop()
    }

    @Test func aCONNECTWithAUsernameOf900KBIsRefusedBeforeItIsRead() async throws {
        let server = try await ChatServerHarness.start()
        let socket = try await WebSocketClient.connect(port: server.port, "/socket.io/?EIO=4&transport=websocket")
        let sid = try handshakeSID(try await socket.next().text)
        socket.send(#"40{"username":"a"# + String(repeating: "\u{301}", count: 450_000) + #""}"#)
        try await socket.waitForClose()
        #expect(server.socketIO.engine.session(id: sid) == nil)
        #expect(server.chat.userCount == 0)
        await server.stop()
    }

    @Test func theMessageRateIsPerUserAcrossReconnectionsAndSockets() async throws {
        let server = try await ChatServerHarness.start(options: .init(messagesPerSecond: 1, messageBurst: 3))
        let bob = try await server.login(["username": "bob"])
        let alice = try await server.login(["username": "alice"])
        func send(_ socket: Socket) async throws -> String {
            let ack = try await socket.emitWithAck("private message", ["content": "hi", "to": .string(bob.userID)])
            return ack.first?["error"]?.stringValue ?? "ok"
        }
        #expect(try await send(alice.socket) == "ok")
        #expect(try await send(alice.socket) == "ok")
        // Leave and come back with the session: the bucket is the user's, not the socket's.
        await alice.socket.disconnect()
        let again = try await server.login(["sessionID": .string(alice.sessionID)])
        #expect(again.userID == alice.userID)
        #expect(try await send(again.socket) == "ok")
        #expect(try await send(again.socket) == "rate limit exceeded")
        // A second socket of the same user shares it too.
        let tab = try await server.login(["sessionID": .string(alice.sessionID)])
        #expect(try await send(tab.socket) == "rate limit exceeded")
        // A second passes: one more message.
        server.clock.advance(by: .seconds(1))
        #expect(try await send(tab.socket) == "ok")
        #expect(try await send(again.socket) == "rate limit exceeded")
        await server.stop()
    }

    @Test func aFloodOfLargeMessagesToSomeoneDoesNotStopThemLoggingIn() async throws {
        let server = try await ChatServerHarness.start(options: .init(messagesPerSecond: 0))
        let victim = try await server.login(["username": "victim"])
        await victim.socket.disconnect()
        let attacker = try await server.login(["username": "mallory"])
        let large = String(repeating: "x", count: 99_000)
        for _ in 0..<40 {
            let ack = try await attacker.socket.emitWithAck("private message", ["content": .string(large), "to": .string(victim.userID)])
            try #require(ack.first?["ok"] == true)
        }
        // 4 MB were sent to the victim; the login's `users` frame carries a megabyte of it.
        let socket = try await WebSocketClient.connect(port: server.port, "/socket.io/?EIO=4&transport=websocket")
        _ = try handshakeSID(try await socket.next().text)
        socket.send(#"40{"sessionID":"\#(victim.sessionID)"}"#)
        var usersFrame: String?
        while usersFrame == nil {
            let text = try await socket.next().text
            if text.hasPrefix(#"42["users""#) { usersFrame = text }
        }
        let frame = try #require(usersFrame)
        #expect(frame.utf8.count < (1 << 20) + 4096)
        #expect(frame.utf8.count > 900_000, "the budget is used: ten of the newest")
        let users = try JSONValue(parsing: frame.dropFirst(2)).arrayValue?[1]
        let fromAttacker = users?.arrayValue?.first { $0["userID"] == .string(attacker.userID) }
        #expect(fromAttacker?["messages"]?.arrayValue?.count == 10)
        socket.close()
        await server.stop()
    }

    @Test func usersAreBoundedInNumberAndInHowFastAnAddressMakesThem() async throws {
        let full = try await ChatServerHarness.start(options: .init(maxUsers: 2))
        _ = try await full.login(["username": "alice"])
        let bob = try await full.login(["username": "bob"])
        #expect(try await refusal(full, ["username": "carol"]) == "server full: no new users for now")
        // Someone known still comes in.
        _ = try await full.login(["sessionID": .string(bob.sessionID)])
        await full.stop()

        // An address may not own the server: users it made and that are still known are bounded too.
        let owned = try await ChatServerHarness.start(options: .init(maxUsersPerAddress: 2, newUserBurstPerAddress: 100))
        _ = try await owned.login(["username": "one"])
        _ = try await owned.login(["username": "two"])
        #expect(try await refusal(owned, ["username": "three"]) == "too many users from this address")
        await owned.stop()

        let fast = try await ChatServerHarness.start(options: .init(newUsersPerMinutePerAddress: 1, newUserBurstPerAddress: 2))
        _ = try await fast.login(["username": "one"])
        _ = try await fast.login(["username": "two"])
        #expect(try await refusal(fast, ["username": "three"]) == "too many new users from this address; try again later")
        fast.clock.advance(by: .seconds(60))
        _ = try await fast.login(["username": "three"])
        await fast.stop()
    }

    @Test func aUserHasAtMostSoManySockets() async throws {
        let server = try await ChatServerHarness.start(options: .init(maxSocketsPerUser: 2))
        let alice = try await server.login(["username": "alice"])
        _ = try await server.login(["sessionID": .string(alice.sessionID)])
        #expect(try await refusal(server, ["sessionID": .string(alice.sessionID)]) == "too many connections for this user")
        await server.stop()
    }

    @Test func aUserWhoComesAndGoesWithoutEndIsRefusedPastTheLoginRate() async throws {
        let server = try await ChatServerHarness.start(options: .init(loginsPerMinutePerUser: 6, loginBurstPerUser: 3))
        let alice = try await server.login(["username": "alice"])
        await alice.socket.disconnect()
        for _ in 0..<3 {
            let again = try await server.login(["sessionID": .string(alice.sessionID)])
            await again.socket.disconnect()
        }
        #expect(try await refusal(server, ["sessionID": .string(alice.sessionID)]) == "too many logins for this user; try again later")
        // Ten seconds give one login back (six a minute).
        server.clock.advance(by: .seconds(10))
        let back = try await server.login(["sessionID": .string(alice.sessionID)])
        #expect(back.userID == alice.userID)
        await server.stop()
    }

    @Test func aSecondSocketOfAUserOnlineIsNotAnnouncedAgain() async throws {
        let server = try await ChatServerHarness.start()
        let bob = try await server.login(["username": "bob"])
        let alice = try await server.login(["username": "alice"])
        #expect(try await bob.events.event(named: "user connected").arguments.first?["userID"] == .string(alice.userID))
        _ = try await server.login(["sessionID": .string(alice.sessionID)])
        let carol = try await server.login(["username": "carol"])
        // The next announcement bob hears is carol's: alice's second tab was not one.
        #expect(try await bob.events.event(named: "user connected").arguments.first?["userID"] == .string(carol.userID))
        await server.stop()
    }

    @Test func aUserAwayLongerThanTheSessionLifetimeIsForgottenWithTheirConversations() async throws {
        let server = try await ChatServerHarness.start(options: .init(sessionLifetime: .seconds(3600)))
        let alice = try await server.login(["username": "alice"])
        let bob = try await server.login(["username": "bob"])
        _ = try await alice.socket.emitWithAck("private message", ["content": "hi", "to": .string(bob.userID)])
        await alice.socket.disconnect()
        _ = try await bob.events.event(named: "user disconnected")
        #expect(server.chat.messageCount == 1)

        server.clock.advance(by: .seconds(3601))
        // Users are looked over at the next login.
        let carol = try await server.login(["username": "carol"])
        let users = try #require(try await carol.events.event(named: "users").arguments.first?.arrayValue)
        #expect(users.compactMap { $0["username"]?.stringValue }.sorted() == ["bob", "carol"])
        #expect(server.chat.messageCount == 0)
        // Her session is gone: alone it is refused; with her name she is someone new.
        #expect(try await refusal(server, ["sessionID": .string(alice.sessionID)]) == "invalid username")
        let back = try await server.login(["sessionID": .string(alice.sessionID), "username": "alice"])
        #expect(back.userID != alice.userID)
        // Bob, online all along, is kept.
        #expect(server.chat.userCount == 3)
        await server.stop()
    }

    @Test func storedMessagesAreBoundedPerConversation() async throws {
        let server = try await ChatServerHarness.start(options: .init(keepPerConversation: 3))
        let alice = try await server.login(["username": "alice"])
        let bob = try await server.login(["username": "bob"])
        for n in 0..<5 {
            _ = try await alice.socket.emitWithAck("private message", ["content": .string("m\(n)"), "to": .string(bob.userID)])
        }
        #expect(server.chat.messageCount == 3)
        let back = try await server.login(["sessionID": .string(bob.sessionID)])
        let users = try #require(try await back.events.event(named: "users").arguments.first?.arrayValue)
        let history = users.first { $0["userID"] == .string(alice.userID) }?["messages"]?.arrayValue
        #expect(history?.compactMap { $0["content"]?.stringValue } == ["m2", "m3", "m4"])
        await server.stop()
    }

    @Test func refusalsAreLoggedAsSummariesNotOneLineEach() async throws {
        let log = CapturedLog()
        let server = try await ChatServerHarness.start(options: .init(messagesPerSecond: 1, messageBurst: 1), logger: log.logger)
        let alice = try await server.login(["username": "alice"])
        let bob = try await server.login(["username": "bob"])
        for _ in 0..<201 {
            _ = try await alice.socket.emitWithAck("private message", ["content": "spam", "to": .string(bob.userID)])
        }
        // One accepted; the first refusal is logged at once, the next 199 are counted.
        #expect(log.lines(containing: "refused").count == 1)
        server.clock.advance(by: .seconds(10))
        #expect(await eventually { log.lines(containing: "refused").count == 2 })
        let summary = try #require(log.lines(containing: "refused").last)
        #expect(summary.contains("refused 199 more"), "\(summary)")
        #expect(summary.contains("private message: rate limit exceeded=199 (\(alice.userID)"), "\(summary)")
        await server.stop()
    }

    /// The message a login is refused with.
    func refusal(_ server: ChatServerHarness, _ auth: JSONValue) async throws -> String? {
        let manager = try SocketManager(url: server.url)
        let socket = try await manager.socket(auth: { auth })
        let events = await SocketEventRecorder(socket)
        await socket.connect()
        let event = try await events.next { if case .connectError = $0 { return true } else if case .connect = $0 { return true } else { return false } }
        await socket.disconnect()
        guard case .connectError(let error) = event else { return nil }
        return error.message
    }
}
