import EngineIO
import JSON
import SocketIO
import SocketIOTesting
import Synchronization
import Testing

/// A value the test can change between connection attempts.
final class Box<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
    func get() -> Value { value.withLock { $0 } }
    func set(_ newValue: Value) { value.withLock { $0 = newValue } }
}

/// A client wired to a fake server, with its events recorded.
struct Harness {
    let server: FakeSocketIOServer
    let manager: SocketManager
    let socket: Socket
    let events: SocketEventRecorder
    let clock: ManualClock?

    static func make(
        server options: FakeSocketIOServer.Options = .init(),
        clock: ManualClock? = ManualClock(),
        reconnection: ReconnectPolicy = .socketIODefault,
        random: Double = 0.5,
        path: String? = nil,
        query: [URLQueryItem] = [],
        auth: AuthProvider? = { ["username": "alice"] },
        transport: TransportKind = .nio
    ) async throws -> Harness {
        let server = try await FakeSocketIOServer.start(options: options)
        var configuration = SocketManager.Configuration(
            path: path,
            query: query,
            reconnection: reconnection,
            transport: transport.factory(.init()),
            random: { random }
        )
        if let clock { configuration.clock = clock }
        let manager = try SocketManager(url: server.url, configuration: configuration)
        let socket = try await manager.socket(auth: auth)
        let events = await SocketEventRecorder(socket)
        return Harness(server: server, manager: manager, socket: socket, events: events, clock: clock)
    }

    /// Connects and accepts: returns the server side of the connection.
    func connectAndAccept() async throws -> FakeConnection {
        await socket.connect()
        return try await acceptNextConnection()
    }

    /// Accepts the next connection's CONNECT and waits for the client to report it.
    func acceptNextConnection() async throws -> FakeConnection {
        let connection = try await server.nextConnection()
        _ = try await connection.expectConnect()
        connection.accept()
        try await events.connected()
        return connection
    }

    /// Lets the first backoff run out on the manual clock, then accepts the reconnection.
    func reconnectAndAccept() async throws -> FakeConnection {
        let (_, delay) = try await reconnectAttempt()
        try await elapseBackoff(delay)
        return try await acceptNextConnection()
    }

    /// Waits for the next reconnectAttempt and returns its attempt number and delay.
    func reconnectAttempt() async throws -> (attempt: Int, delay: Duration) {
        let event = try await events.next {
            if case .reconnectAttempt = $0 { return true } else { return false }
        }
        guard case .reconnectAttempt(let attempt, let delay) = event else { throw Unexpected(event) }
        return (attempt, delay)
    }

    /// Lets the pending backoff elapse on the manual clock.
    func elapseBackoff(_ delay: Duration) async throws {
        try await clock!.waitForSleep(of: delay)
        clock!.advance(by: delay)
    }

    func shutDown() async {
        await socket.disconnect()
        await server.stop()
    }
}

struct Unexpected: Error, CustomStringConvertible {
    let event: SocketEvent
    init(_ event: SocketEvent) { self.event = event }
    var description: String { "unexpected event \(event)" }
}

extension SocketEvent {
    var connectError: ConnectError? {
        if case .connectError(let error) = self { return error }
        return nil
    }
}

@Suite(.timeLimit(.minutes(1))) struct SocketScenarioTests {
    @Test func connectsWithAuthOverTheEngineIOWebSocketURL() async throws {
        let h = try await Harness.make(path: "/chat/", query: [URLQueryItem(name: "room", value: "lobby")])
        await h.socket.connect()
        let connection = try await h.server.nextConnection()
        #expect(connection.requestURI.hasPrefix("/chat/?"))
        #expect(connection.query == ["EIO": "4", "transport": "websocket", "room": "lobby"])
        let request = try await connection.expectConnect()
        #expect(request.namespace == "/")
        #expect(request.auth == ["username": "alice"])
        connection.accept(sid: "socket-1")
        try await h.events.connected()
        #expect(await h.socket.isConnected)
        #expect(await h.socket.id == "socket-1")

        connection.emit("session", ["sessionID": "s", "userID": "u"])
        let session = try await h.events.event(named: "session")
        #expect(session.arguments == [["sessionID": "s", "userID": "u"]])
        await h.shutDown()
    }

    @Test func invalidUsernameIsReportedAndNotRetried() async throws {
        let h = try await Harness.make(auth: { ["username": ""] })
        await h.socket.connect()
        let connection = try await h.server.nextConnection()
        _ = try await connection.expectConnect()
        connection.reject(message: "invalid username", data: ["hint": "longer"])
        let event = try await h.events.next()
        let error = try #require(event.connectError)
        #expect(error.message == "invalid username")
        #expect(error.data == ["hint": "longer"])
        #expect(error.source == .server)
        // The client closes the connection and schedules nothing.
        try await connection.waitUntilClosed()
        try await h.clock!.waitUntilNoSleepers()
        h.clock!.advance(by: .seconds(3600))
        await #expect(throws: TimeoutError.self) { _ = try await h.server.nextConnection(timeout: .milliseconds(300)) }
        #expect(!(await h.socket.isConnected))

        // A manual connect() works again.
        await h.socket.connect()
        _ = try await h.acceptNextConnection()
        await h.shutDown()
    }

    @Test func aDroppedConnectionReconnectsWithTheAuthReadAgain() async throws {
        let auth = Box<JSONValue>(["username": "alice"])
        let h = try await Harness.make(auth: { auth.get() })
        let first = try await h.connectAndAccept()
        auth.set(["sessionID": "secret", "username": "alice"])

        first.drop()
        #expect(try await h.events.disconnected() == .transportClose)
        let (attempt, delay) = try await h.reconnectAttempt()
        #expect(attempt == 1)
        // random 0.5: floor(5) is odd, so +25 % of 1000 ms.
        #expect(delay == .milliseconds(1250))
        try await h.elapseBackoff(delay)

        let second = try await h.server.nextConnection()
        let request = try await second.expectConnect()
        #expect(request.auth == ["sessionID": "secret", "username": "alice"])
        second.accept()
        try await h.events.connected()
        await h.shutDown()
    }

    @Test func backoffGrowsWithinBoundsAndResetsAfterAConnection() async throws {
        let h = try await Harness.make(random: 0.75)  // floor(7.5) = 7, odd: +37 % (rounded down)
        let first = try await h.connectAndAccept()
        await h.server.stop()
        _ = first
        #expect(try await h.events.disconnected() == .transportClose)

        var delays: [Duration] = []
        for expectedAttempt in 1...5 {
            let (attempt, delay) = try await h.reconnectAttempt()
            #expect(attempt == expectedAttempt)
            delays.append(delay)
            try await h.elapseBackoff(delay)
            // Refused: the attempt fails and is reported as a transport connect error.
            let failure = try await h.events.next { $0.connectError != nil }
            #expect(failure.connectError?.source == .transport)
        }
        #expect(delays == [.milliseconds(1375), .milliseconds(2750), .milliseconds(5000), .milliseconds(5000), .milliseconds(5000)])

        try await h.server.restart()
        let (attempt, delay) = try await h.reconnectAttempt()
        #expect(attempt == 6)
        try await h.elapseBackoff(delay)
        let back = try await h.acceptNextConnection()

        // The counter starts over after a successful connection.
        back.drop()
        _ = try await h.events.disconnected()
        #expect(try await h.reconnectAttempt() == (1, .milliseconds(1375)))
        await h.shutDown()
    }

    @Test func aSilentServerIsAPingTimeout() async throws {
        // Real time, short heartbeat: 250 ms interval + 1 s timeout (robust to stalls on a loaded machine).
        let h = try await Harness.make(
            server: .init(pingInterval: .milliseconds(250), pingTimeout: .seconds(1)),
            clock: nil,
            reconnection: ReconnectPolicy(initialDelay: .milliseconds(10), maxDelay: .milliseconds(10))
        )
        let connection = try await h.connectAndAccept()
        // Only this first connection has the short heartbeat: on a loaded two-core machine
        // a later one could time out by itself before the test accepts it.
        h.server.setOptions(.init())
        // The client answers pings.
        try await connection.waitForPong()
        try await connection.waitForPong()
        #expect(connection.pongCount >= 2)
        connection.stopPinging()
        #expect(try await h.events.disconnected(timeout: .seconds(5)) == .pingTimeout)
        _ = try await h.acceptNextConnection()
        await h.shutDown()
    }

    @Test func emitsWhileOfflineAreFlushedInOrderAfterReconnecting() async throws {
        let h = try await Harness.make()
        // Before the very first connection, too.
        #expect(try await h.socket.emit("early", "0") == .buffered)
        let first = try await h.connectAndAccept()
        #expect(try await first.nextEvent().name == "early")

        first.drop()
        _ = try await h.events.disconnected()
        for i in 1...5 {
            #expect(try await h.socket.emit("message", .int(i)) == .buffered)
        }
        let (_, delay) = try await h.reconnectAttempt()
        try await h.elapseBackoff(delay)
        let second = try await h.server.nextConnection()
        _ = try await second.expectConnect()
        second.accept()
        try await h.events.connected()
        for i in 1...5 {
            let event = try await second.nextEvent()
            #expect(event.name == "message")
            #expect(event.arguments == [.int(i)])
        }
        #expect(try await h.socket.emit("live") == .sent)
        #expect(try await second.nextEvent().name == "live")
        await h.shutDown()
    }

    @Test func aServerDisconnectIsNotRetried() async throws {
        let h = try await Harness.make()
        let connection = try await h.connectAndAccept()
        connection.disconnect()
        #expect(try await h.events.disconnected() == .ioServerDisconnect)
        try await connection.waitUntilClosed()
        try await h.clock!.waitUntilNoSleepers()
        h.clock!.advance(by: .seconds(3600))
        await #expect(throws: TimeoutError.self) { _ = try await h.server.nextConnection(timeout: .milliseconds(300)) }
        // Emits now wait for a manual connect().
        #expect(try await h.socket.emit("later") == .buffered)
        await h.socket.connect()
        let again = try await h.server.nextConnection()
        _ = try await again.expectConnect()
        again.accept()
        #expect(try await again.nextEvent().name == "later")
        await h.shutDown()
    }

    @Test(arguments: [
        EngineIOData.text("9 not engine.io"),
        .text("4 not socket.io"),
        .text("4" + #"2["a""#),
        .text("4" + #"2["connect"]"#),
        .text("4" + #"2{"x":1}"#),
        .text("0" + "{}"),
        .text(""),
        .binary([0xFF, 0x00]),
        .text("4" + String(repeating: "[", count: 5000)),
    ], TransportKind.allCases)
    func garbageFromTheServerReconnectsWithoutCrashing(garbage: EngineIOData, transport: TransportKind) async throws {
        let h = try await Harness.make(transport: transport)
        let connection = try await h.connectAndAccept()
        connection.sendRaw(garbage)
        let reason = try await h.events.disconnected()
        guard case .parseError = reason else {
            Issue.record("expected a parse error, got \(reason)")
            return
        }
        try await connection.waitUntilClosed()
        _ = try await h.reconnectAndAccept()
        await h.shutDown()
    }

    @Test func a900KBMessageBothWays() async throws {
        let h = try await Harness.make()
        let connection = try await h.connectAndAccept()
        let big = String(repeating: "0123456789abcdef", count: 900_000 / 16)
        #expect(try await h.socket.emit("private message", ["content": .string(big), "to": "u2"]) == .sent)
        let received = try await connection.nextEvent()
        #expect(received.arguments.first?["content"]?.stringValue == big)

        connection.emit("private message", ["content": .string(big), "from": "u2", "to": "u1"])
        let event = try await h.events.event(named: "private message")
        #expect(event.arguments.first?["content"]?.stringValue == big)
        await h.shutDown()
    }

    @Test func anOversizeMessageIsRefusedAndNotSent() async throws {
        let h = try await Harness.make(server: .init(maxPayload: 1000))
        let connection = try await h.connectAndAccept()
        let tooBig = String(repeating: "x", count: 1000)
        await #expect(throws: SocketError.self) { try await h.socket.emit("m", .string(tooBig)) }
        try await h.socket.emit("small")
        #expect(try await connection.nextEvent().name == "small")
        await h.shutDown()
    }

    @Test func nonASCIITextBothWays() async throws {
        let h = try await Harness.make(auth: { ["username": "zoë 中文"] })
        await h.socket.connect()
        let connection = try await h.server.nextConnection()
        #expect(try await connection.expectConnect().auth == ["username": "zoë 中文"])
        connection.accept()
        try await h.events.connected()
        let text = "héllo wörld — 你好，世界 — 😀👍🏽 — עברית — \u{301}"
        try await h.socket.emit("private message", ["content": .string(text)])
        #expect(try await connection.nextEvent().arguments == [["content": .string(text)]])
        connection.emit("private message", ["content": .string(text)])
        #expect(try await h.events.event(named: "private message").arguments == [["content": .string(text)]])
        await h.shutDown()
    }

    @Test func acknowledgementsBothWays() async throws {
        let h = try await Harness.make()
        let connection = try await h.connectAndAccept()

        async let reply = h.socket.emitWithAck("ping", "x")
        let event = try await connection.nextEvent()
        #expect(event.name == "ping")
        let id = try #require(event.ackID)
        connection.ack(id, "pong", 42)
        #expect(try await reply == ["pong", 42])

        connection.emit("question", "?", ackID: 7)
        let question = try await h.events.event(named: "question")
        try #require(question.ack != nil)
        await question.ack?("answer")
        let ack = try await connection.nextPacket()
        #expect(ack == .ack(["answer"], id: 7))
        await h.shutDown()
    }

    @Test func anUnansweredAckTimesOutOnTheInjectedClock() async throws {
        let h = try await Harness.make()
        let connection = try await h.connectAndAccept()
        let clock = try #require(h.clock)
        let reply = Task { try await h.socket.emitWithAck("ping", timeout: .seconds(5)) }
        _ = try await connection.nextEvent()
        try await clock.waitForSleep(of: .seconds(5))
        clock.advance(by: .seconds(5))
        await #expect(throws: SocketError.ackTimeout) { try await reply.value }
        await h.shutDown()
    }

    @Test func aServerThatNeverAnswersTimesOutAndIsRetried() async throws {
        let h = try await Harness.make(server: .init(sendsHandshake: false))
        let clock = try #require(h.clock)
        await h.socket.connect()
        _ = try await h.server.nextConnection()
        try await clock.waitForSleep(of: .seconds(20))
        clock.advance(by: .seconds(20))
        let failure = try await h.events.next { $0.connectError != nil }
        #expect(failure.connectError?.message == "timeout")
        let (attempt, _) = try await h.reconnectAttempt()
        #expect(attempt == 1)
        await h.shutDown()
    }

    @Test func noConnectReplyTimesOutToo() async throws {
        let h = try await Harness.make()
        let clock = try #require(h.clock)
        await h.socket.connect()
        let connection = try await h.server.nextConnection()
        _ = try await connection.expectConnect()
        // Handshake done, CONNECT never answered: the rest of the 20 s runs out.
        try await clock.waitForSleep(of: .seconds(20))
        clock.advance(by: .seconds(20))
        let failure = try await h.events.next { $0.connectError != nil }
        #expect(failure.connectError?.message == "timeout")
        try await connection.waitUntilClosed()
        _ = try await h.reconnectAttempt()
        await h.shutDown()
    }

    @Test func aSocketIO3HandshakeWithoutMaxPayloadWorks() async throws {
        let h = try await Harness.make(
            server: .init(openPacket: #"0{"sid":"old","upgrades":[],"pingInterval":25000,"pingTimeout":5000}"#)
        )
        let connection = try await h.connectAndAccept()
        try await h.socket.emit("hello")
        #expect(try await connection.nextEvent().name == "hello")
        await h.shutDown()
    }

    @Test func otherNamespacesShareTheConnection() async throws {
        let h = try await Harness.make()
        let main = try await h.connectAndAccept()
        let admin = try await h.manager.socket(namespace: "/admin", auth: { ["token": "t"] })
        let adminEvents = await SocketEventRecorder(admin)
        await admin.connect()
        let request = try await main.expectConnect()
        #expect(request.namespace == "/admin")
        #expect(request.auth == ["token": "t"])
        main.accept(namespace: "/admin")
        try await adminEvents.connected()
        try await admin.emit("hi")
        let event = try await main.nextEvent()
        #expect(event.namespace == "/admin")
        main.emit("only-admin", namespace: "/admin")
        #expect(try await adminEvents.event(named: "only-admin").name == "only-admin")
        // Leaving one namespace keeps the connection for the other.
        await admin.disconnect()
        #expect(try await main.nextPacket() == SocketIOPacket(kind: .disconnect, namespace: "/admin"))
        try await h.socket.emit("still-here")
        #expect(try await main.nextEvent().name == "still-here")
        await h.shutDown()
    }

    @Test func listenersByNameAndCatchAll() async throws {
        let h = try await Harness.make()
        let named = Box<[String]>([])
        let all = Box<[String]>([])
        await h.socket.on("a") { event in named.set(named.get() + [event.name]) }
        let anyID = await h.socket.onAny { event in all.set(all.get() + [event.name]) }
        let connection = try await h.connectAndAccept()
        connection.emit("a")
        connection.emit("b")
        _ = try await h.events.event(named: "b")
        // The recorder was registered first: it may hand "b" to this task while the
        // catch-all listener is still being called on the manager's executor.
        for _ in 0..<200 where all.get().count < 2 { try await Task.sleep(for: .milliseconds(5)) }
        #expect(named.get() == ["a"])
        #expect(all.get() == ["a", "b"])
        await h.socket.off(anyID)
        connection.emit("c")
        _ = try await h.events.event(named: "c")
        #expect(all.get() == ["a", "b"])
        await h.shutDown()
    }

    @Test func reservedNamesCannotBeEmitted() async throws {
        let h = try await Harness.make()
        await #expect(throws: SocketError.reservedEventName("disconnect")) { try await h.socket.emit("disconnect") }
        await #expect(throws: SocketError.invalidNamespace("admin")) { _ = try await h.manager.socket(namespace: "admin") }
        await h.server.stop()
    }
}

import Foundation

@Suite(.timeLimit(.minutes(1))) struct EarlyEventTests {
    @Test func eventsBeforeTheConnectReplyAreDeliveredRightAfterConnect() async throws {
        // python-socketio emits from its connect handler before sending the CONNECT reply.
        let h = try await Harness.make()
        await h.socket.connect()
        let connection = try await h.server.nextConnection()
        _ = try await connection.expectConnect()
        connection.emit("session", ["userID": "u"])
        connection.emit("users", [])
        connection.accept()
        guard case .connect = try await h.events.next() else { throw Unexpected(try await h.events.next()) }
        #expect(try await h.events.event(named: "session").arguments == [["userID": "u"]])
        #expect(try await h.events.event(named: "users").arguments == [[]])
        await h.shutDown()
    }
}

@Suite(.timeLimit(.minutes(1))) struct OversizeInboundTests {
    /// A client that only takes 4096-byte messages.
    func connectedClient(_ kind: TransportKind) async throws -> (FakeSocketIOServer, FakeConnection, Socket, SocketEventRecorder) {
        let server = try await FakeSocketIOServer.start()
        let manager = try SocketManager(
            url: server.url,
            configuration: .init(
                transport: kind.factory(.init(maxIncomingMessageSize: 4096)),
                clock: ManualClock(),
                random: { 0.5 }
            )
        )
        let socket = try await manager.socket()
        let events = await SocketEventRecorder(socket)
        await socket.connect()
        let connection = try await server.nextConnection()
        _ = try await connection.expectConnect()
        connection.accept()
        try await events.connected()
        connection.emit("fits", .string(String(repeating: "x", count: 4000)))
        _ = try await events.event(named: "fits")
        return (server, connection, socket, events)
    }

    @Test(arguments: TransportKind.allCases)
    func aMessageOverTheClientsLimitIsAParseErrorAndReconnects(kind: TransportKind) async throws {
        let (server, connection, socket, events) = try await connectedClient(kind)
        connection.emit("too big", .string(String(repeating: "x", count: 5000)))
        let reason = try await events.disconnected()
        guard case .parseError(let why) = reason else {
            Issue.record("expected a parse error, got \(reason)")
            return
        }
        #expect(why.contains("larger than 4096 bytes"))
        let event = try await events.next { if case .reconnectAttempt = $0 { true } else { false } }
        guard case .reconnectAttempt(let attempt, _) = event else { throw Unexpected(event) }
        #expect(attempt == 1)
        await socket.disconnect()
        await server.stop()
    }

    @Test(arguments: TransportKind.allCases)
    func aFrameFarOverTheLimitIsDroppedBeforeItIsBuffered(kind: TransportKind) async throws {
        // Beyond 4 × max(limit, 64 KiB) the WebSocket frame decoder closes the connection
        // before buffering the frame: a hostile server cannot make the client hold it.
        let (server, connection, socket, events) = try await connectedClient(kind)
        connection.emit("huge", .string(String(repeating: "x", count: 300_000)))
        let reason = try await events.disconnected()
        #expect(reason.reconnectsAutomatically)
        _ = try await events.next { if case .reconnectAttempt = $0 { true } else { false } }
        await socket.disconnect()
        await server.stop()
    }
}

@Suite(.timeLimit(.minutes(1))) struct ManualReconnectTests {
    @Test func disconnectThenConnectAtOnceConnectsAgain() async throws {
        // As a logout followed by a new login does.
        let h = try await Harness.make()
        _ = try await h.connectAndAccept()
        for _ in 0..<3 {
            await h.socket.disconnect()
            await h.socket.connect()
            let connection = try await h.acceptNextConnection()
            try await h.socket.emit("still works")
            #expect(try await connection.nextEvent().name == "still works")
        }
        await h.shutDown()
    }

    @Test func disconnectDuringTheBackoffStopsIt() async throws {
        let h = try await Harness.make()
        let connection = try await h.connectAndAccept()
        connection.drop()
        _ = try await h.events.disconnected()
        _ = try await h.reconnectAttempt()
        await h.socket.disconnect()
        try await h.clock!.waitUntilNoSleepers()
        await h.socket.connect()
        _ = try await h.acceptNextConnection()
        await h.shutDown()
    }
}
