import JSON
import SocketIO
import SocketIOTesting
import Testing

/// One user's client: a socket with its events recorded.
struct Client {
    let socket: Socket
    let events: SocketEventRecorder

    static func connect(to url: String, auth: JSONValue) async throws -> Client {
        let manager = try SocketManager(url: url)
        let socket = try await manager.socket(auth: { auth })
        let events = await SocketEventRecorder(socket)
        await socket.connect()
        return Client(socket: socket, events: events)
    }

    /// The `session` event: (sessionID, userID).
    func session() async throws -> (sessionID: String, userID: String) {
        let event = try await events.event(named: "session")
        let payload = try #require(event.arguments.first)
        return (try #require(payload["sessionID"]?.stringValue), try #require(payload["userID"]?.stringValue))
    }

    func users() async throws -> [JSONValue] {
        try #require(try await events.event(named: "users").arguments.first?.arrayValue)
    }
}

/// Parley's client stack against a real, independent Socket.IO server (python-socketio
/// running the guide's part II logic, PROTOCOL.md) and against parley-server.
@Suite(.timeLimit(.minutes(1))) struct PrivateMessagingInteropTests {
    @Test(arguments: ServerKind.allCases) func twoUsersChat(_ kind: ServerKind) async throws {
        let server = try await InteropServer.start(kind)

        // Login: session, then users with oneself in it.
        let alice = try await Client.connect(to: server.url, auth: ["username": "alice"])
        try await alice.events.connected()
        let aliceSession = try await alice.session()
        let aliceUsers = try await alice.users()
        #expect(aliceUsers == [kind.entry(userID: aliceSession.userID, username: "alice", connected: true)])

        // A second user: the first is told, the second sees both.
        let bob = try await Client.connect(to: server.url, auth: ["username": "bob"])
        let bobSession = try await bob.session()
        let bobUsers = try await bob.users()
        #expect(Set(bobUsers.compactMap { $0["username"]?.stringValue }) == ["alice", "bob"])
        let joined = try await alice.events.event(named: "user connected")
        #expect(joined.arguments == [kind.entry(userID: bobSession.userID, username: "bob", connected: true)])

        // A private message arrives with the server-set from/to, and non-ASCII intact.
        let text = "hello bob — héllo 中文 😀"
        try await alice.socket.emit("private message", ["content": .string(text), "to": .string(bobSession.userID)])
        let message = try await bob.events.event(named: "private message")
        #expect(message.arguments == [[
            "content": .string(text), "from": .string(aliceSession.userID), "to": .string(bobSession.userID),
        ]])
        // And back; a forged "from" is overridden by the server.
        try await bob.socket.emit(
            "private message",
            ["content": "hi alice", "to": .string(aliceSession.userID), "from": "forged"]
        )
        let reply = try await alice.events.event(named: "private message")
        #expect(reply.arguments.first?["from"] == .string(bobSession.userID))

        // Bob leaves: alice is told with the bare userID.
        await bob.socket.disconnect()
        let left = try await alice.events.event(named: "user disconnected")
        #expect(left.arguments == [.string(bobSession.userID)])
        await alice.socket.disconnect()
        await server.stop()
    }

    @Test(arguments: ServerKind.allCases) func reconnectingWithTheSessionIDKeepsTheUserID(_ kind: ServerKind) async throws {
        let server = try await InteropServer.start(kind)
        let first = try await Client.connect(to: server.url, auth: ["username": "carol"])
        let session = try await first.session()
        await first.socket.disconnect()

        let again = try await Client.connect(to: server.url, auth: ["sessionID": .string(session.sessionID)])
        let restored = try await again.session()
        #expect(restored.userID == session.userID)
        #expect(restored.sessionID == session.sessionID)
        let users = try await again.users()
        #expect(users.contains { $0["userID"] == .string(session.userID) && $0["username"] == "carol" })
        await again.socket.disconnect()
        await server.stop()
    }

    @Test(arguments: ServerKind.allCases) func parleysSessionPlusUsernameSurvivesAForgottenSession(_ kind: ServerKind) async throws {
        let server = try await InteropServer.start(kind)
        // A session the server never issued (as after a restart): the username makes a new one.
        let client = try await Client.connect(to: server.url, auth: ["sessionID": "unknown", "username": "dave"])
        let session = try await client.session()
        #expect(session.sessionID != "unknown")
        let users = try await client.users()
        #expect(users.contains { $0["username"] == "dave" })
        await client.socket.disconnect()
        await server.stop()
    }

    @Test(arguments: ServerKind.allCases) func noUsernameIsRefused(_ kind: ServerKind) async throws {
        let server = try await InteropServer.start(kind)
        let client = try await Client.connect(to: server.url, auth: [:])
        let event = try await client.events.next { if case .connectError = $0 { return true } else { return false } }
        guard case .connectError(let error) = event else { return }
        #expect(error.message == "invalid username")
        #expect(error.source == .server)
        #expect(!(await client.socket.isConnected))
        await server.stop()
    }
}
