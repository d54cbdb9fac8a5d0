import Chat
import EngineIOServer
import JSON
public import Logging
public import SocketIOServer
import Synchronization

/// The private-messaging application of the Socket.IO guide, part II (persistent user ID),
/// with part III's message store (PROTOCOL.md, "The application, server side").
///
/// Beyond the guide: session and user IDs come from the system's cryptographic source;
/// a `private message` that is malformed, empty, too large, or to an unknown user is refused
/// (with an error ack when asked for) and never stored or forwarded; each socket has a
/// message rate limit; usernames are bounded and free of control characters.
public final class ChatApplication: Sendable {
    public struct Options: Sendable {
        /// Largest `content`, in UTF-8 bytes.
        public var maxMessageBytes: Int
        /// Messages a socket may send per second on average (0: no limit)…
        public var messagesPerSecond: Double
        /// …and in a burst.
        public var messageBurst: Double
        /// Longest username, in characters.
        public var maxUsernameLength: Int

        public init(
            maxMessageBytes: Int = 100_000,
            messagesPerSecond: Double = 50,
            messageBurst: Double = 100,
            maxUsernameLength: Int = 64
        ) {
            self.maxMessageBytes = maxMessageBytes
            self.messagesPerSecond = messagesPerSecond
            self.messageBurst = messageBurst
            self.maxUsernameLength = maxUsernameLength
        }
    }

    let store: any ChatStore
    let options: Options
    let logger: Logger
    private let directory: Mutex<Directory>

    /// Every session, in the order they were created, with each user's `users` entry
    /// (without its messages) kept as JSON text: a login sends the whole list, so it is
    /// assembled from ready pieces rather than built and serialized anew.
    struct Directory {
        var sessions: [StoredSession] = []
        var indexBySessionID: [String: Int] = [:]
        var userIDs: Set<String> = []
        var entries: [String] = []

        mutating func save(_ session: StoredSession) {
            let entry = ChatApplication.entryPrefix(session)
            if let index = indexBySessionID[session.sessionID] {
                sessions[index] = session
                entries[index] = entry
            } else {
                indexBySessionID[session.sessionID] = sessions.count
                sessions.append(session)
                entries.append(entry)
            }
            userIDs.insert(session.userID)
        }
    }

    /// Reads the stored sessions (all offline: the server just started) and installs the
    /// application on the main namespace.
    public init(server: SocketIOServer, store: any ChatStore, options: Options = Options(), logger: Logger) throws {
        self.store = store
        self.options = options
        self.logger = logger
        var directory = Directory()
        for var session in try store.allSessions() {
            session.connected = false
            directory.save(session)
        }
        self.directory = Mutex(directory)
        install(on: server.main)
    }

    /// The number of known sessions.
    public var sessionCount: Int { directory.withLock { $0.sessions.count } }

    // MARK: Per-socket state

    final class Member: Sendable {
        let sessionID: String
        let userID: String
        let username: String
        let limiter: TokenBucket?

        init(sessionID: String, userID: String, username: String, limiter: TokenBucket?) {
            self.sessionID = sessionID
            self.userID = userID
            self.username = username
            self.limiter = limiter
        }
    }

    // MARK: The protocol

    private func install(on namespace: SocketIONamespace) {
        namespace.use { [self] socket in authenticate(socket) }
        namespace.onConnection { [self] socket in connected(socket, namespace: namespace) }
    }

    /// The middleware: adopt a known session, else create one for a username.
    func authenticate(_ socket: SocketIOServerSocket) -> SocketIOMiddlewareResult {
        let limiter = options.messagesPerSecond > 0
            ? TokenBucket(rate: options.messagesPerSecond, burst: max(1, options.messageBurst)) : nil
        if let sessionID = socket.auth["sessionID"]?.stringValue,
            let session = directory.withLock({ dir in dir.indexBySessionID[sessionID].map { dir.sessions[$0] } })
        {
            socket.data = Member(sessionID: session.sessionID, userID: session.userID, username: session.username, limiter: limiter)
            return .accept
        }
        guard let username = socket.auth["username"]?.stringValue, isAcceptable(username: username) else {
            return .reject(message: "invalid username")
        }
        socket.data = Member(
            sessionID: Self.randomHex(bytes: 16),
            userID: Self.randomHex(bytes: 8),
            username: username,
            limiter: limiter
        )
        return .accept
    }

    func isAcceptable(username: String) -> Bool {
        guard !username.isEmpty, username.count <= options.maxUsernameLength else { return false }
        return !username.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    private func connected(_ socket: SocketIOServerSocket, namespace: SocketIONamespace) {
        guard let member = socket.data as? Member else { return }
        let session = StoredSession(sessionID: member.sessionID, userID: member.userID, username: member.username, connected: true)
        let (entries, userIDs) = directory.withLock { dir -> ([String], [String]) in
            dir.save(session)
            return (dir.entries, dir.sessions.map(\.userID))
        }
        persist { try store.save(session) }

        socket.emit("session", ["sessionID": .string(member.sessionID), "userID": .string(member.userID)])
        socket.join(member.userID)
        socket.emit("users", serializedArguments: [usersList(entries: entries, userIDs: userIDs, for: member.userID)])
        socket.broadcast.emit(
            "user connected",
            ["userID": .string(member.userID), "username": .string(member.username), "connected": true, "messages": []]
        )

        socket.on("private message") { [self] socket, arguments, ack in
            privateMessage(from: socket, member: member, arguments: arguments, ack: ack)
        }
        socket.onDisconnect { [self] socket, reason in
            disconnected(socket, member: member, namespace: namespace, reason: reason)
        }
    }

    private func privateMessage(from socket: SocketIOServerSocket, member: Member, arguments: [JSONValue], ack: SocketIOAck?) {
        func refuse(_ why: String) {
            logger.info("refused a private message", metadata: ["from": "\(member.userID)", "reason": "\(why)"])
            ack?(["error": .string(why)])
        }
        if let limiter = member.limiter, !limiter.take() { return refuse("rate limit exceeded") }
        guard let payload = arguments.first?.objectValue else { return refuse("the message is not an object") }
        guard case .string(let content)? = payload["content"] else { return refuse("content is not a string") }
        guard case .string(let to)? = payload["to"] else { return refuse("to is not a string") }
        guard !content.isEmpty else { return refuse("content is empty") }
        guard content.utf8.count <= options.maxMessageBytes else {
            return refuse("content is larger than \(options.maxMessageBytes) bytes")
        }
        guard directory.withLock({ $0.userIDs.contains(to) }) else { return refuse("no such user") }

        let message = PrivateMessage(content: content, from: member.userID, to: to)
        persist { try store.save(message) }
        socket.to(to, member.userID).emit(
            "private message",
            ["content": .string(content), "from": .string(member.userID), "to": .string(to)]
        )
        ack?(["ok": true])
    }

    private func disconnected(_ socket: SocketIOServerSocket, member: Member, namespace: SocketIONamespace, reason: String) {
        guard namespace.sockets(in: member.userID).isEmpty else { return }
        // A server that shuts down closes every connection: nobody stays to hear who left,
        // and telling each of n clients about the others would be n² frames on the way out.
        if reason != EngineIOCloseReason.serverShutdown.rawValue {
            namespace.emit("user disconnected", .string(member.userID))
        }
        let session = StoredSession(sessionID: member.sessionID, userID: member.userID, username: member.username, connected: false)
        directory.withLock { $0.save(session) }
        persist { try store.save(session) }
    }

    // MARK: The users list

    static func entryPrefix(_ session: StoredSession) -> String {
        "{\"userID\":" + JSONValue.string(session.userID).serialized()
            + ",\"username\":" + JSONValue.string(session.username).serialized()
            + ",\"connected\":" + (session.connected ? "true" : "false")
    }

    /// `users` for one receiver: every session, each with the conversation between that
    /// user and the receiver (part III).
    /// `entries[i]` is the entry of the user `userIDs[i]` (both taken under one lock).
    func usersList(entries: [String], userIDs: [String], for receiver: String) -> String {
        var conversations: [String: [String]] = [:]
        let stored = (try? store.messages(of: receiver)) ?? []
        for message in stored {
            let other = message.from == receiver ? message.to : message.from
            let json: JSONValue = ["content": .string(message.content), "from": .string(message.from), "to": .string(message.to)]
            conversations[other, default: []].append(json.serialized())
        }
        var text = "["
        text.reserveCapacity(entries.reduce(2) { $0 + $1.utf8.count + 16 })
        for (index, entry) in entries.enumerated() {
            if index > 0 { text += "," }
            text += entry
            text += ",\"messages\":["
            if let messages = conversations[userIDs[index]] {
                text += messages.joined(separator: ",")
            }
            text += "]}"
        }
        text += "]"
        return text
    }

    // MARK: Helpers

    private func persist(_ write: () throws -> Void) {
        do {
            try write()
        } catch {
            logger.error("storage failed", metadata: ["error": "\(error)"])
        }
    }

    /// Random bytes from the system's cryptographic source, as lower-case hex.
    static func randomHex(bytes count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(count * 2)
        for _ in 0..<count {
            let byte = UInt8.random(in: 0...255, using: &generator)
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
final class TokenBucket: Sendable {
    private let state: Mutex<(tokens: Double, last: ContinuousClock.Instant)>
    let rate: Double
    let burst: Double

    init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
        self.state = Mutex((burst, ContinuousClock.now))
    }

    func take() -> Bool {
        let now = ContinuousClock.now
        return state.withLock { state in
            let elapsed = now - state.last
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            state.tokens = min(burst, state.tokens + seconds * rate)
            state.last = now
            guard state.tokens >= 1 else { return false }
            state.tokens -= 1
            return true
        }
    }
}
