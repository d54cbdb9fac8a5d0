import ChatSchema
import EngineIOServer
import EngineIOProtocol
import JSON
public import Logging
import NIOCore
public import SocketIOServer
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The private-messaging application of the Socket.IO guide, part II (persistent user ID),
/// with part III's message store (PROTOCOL.md, "The application, server side").
///
/// Beyond the guide, every resource a client can make it hold is bounded (PROTOCOL.md,
/// "Parley's server: limits it keeps"): usernames follow the one username rule; users are
/// at most `maxUsers`, made at most so fast per address, and forgotten after
/// `sessionLifetime` away; a user has at most `maxSocketsPerUser` sockets and one message
/// rate limit across all of them and across reconnections; stored messages are bounded per
/// conversation, per sender and in total; the history a login receives is bounded in bytes. A
/// `private message` that is malformed, empty, too large, too fast, or to an unknown user is
/// refused (with an error ack when asked for) and never stored or forwarded; refusals are
/// logged as summaries.
///
/// Everything is served from memory (`UserDirectory`, `MessageLog`); the store is written
/// behind, off the event loops.
public final class ChatApplication: Sendable {
    public struct Options: Sendable {
        /// Largest `content`, in UTF-8 bytes.
        public var maxMessageBytes: Int
        /// Messages a user may send per second on average, over all their sockets (0: no
        /// limit)…
        public var messagesPerSecond: Double
        /// …and in a burst.
        public var messageBurst: Double
        /// Users known at once; a new username beyond them is refused ("server full").
        public var maxUsers: Int
        /// Users one address may have created and still known (so that one address cannot
        /// fill `maxUsers`), …
        public var maxUsersPerAddress: Int
        /// …and new users one address may create per minute on average, and in a burst.
        public var newUsersPerMinutePerAddress: Double
        public var newUserBurstPerAddress: Double
        /// Sockets (tabs, clients) of one user connected at once.
        public var maxSocketsPerUser: Int
        /// Logins (CONNECTs) of one user per minute on average, and in a burst: each time a
        /// user comes online, every client is told, so a user who comes and goes without end
        /// would make the server write to everyone without end.
        public var loginsPerMinutePerUser: Double
        public var loginBurstPerUser: Double
        /// A user away for longer than this is forgotten, with their conversations.
        public var sessionLifetime: Duration
        /// Stored messages per conversation, of what one user sent, and in total (bytes of
        /// content, plus `MessageLog.overhead` each); the oldest go first.
        public var keepPerConversation: Int
        public var keepBytesPerUser: Int
        public var keepBytes: Int
        /// Bytes of history (serialized messages) a login receives in its `users` list.
        public var loginHistoryBytes: Int

        public init(
            maxMessageBytes: Int = 100_000,
            messagesPerSecond: Double = 50,
            messageBurst: Double = 100,
            maxUsers: Int = 10_000,
            maxUsersPerAddress: Int = 100,
            newUsersPerMinutePerAddress: Double = 10,
            newUserBurstPerAddress: Double = 10,
            maxSocketsPerUser: Int = 16,
            loginsPerMinutePerUser: Double = 6,
            loginBurstPerUser: Double = 10,
            sessionLifetime: Duration = .seconds(30 * 86_400),
            keepPerConversation: Int = 200,
            keepBytesPerUser: Int = 4 << 20,
            keepBytes: Int = 64 << 20,
            loginHistoryBytes: Int = 1 << 20
        ) {
            self.maxMessageBytes = maxMessageBytes
            self.messagesPerSecond = messagesPerSecond
            self.messageBurst = messageBurst
            self.maxUsers = maxUsers
            self.maxUsersPerAddress = maxUsersPerAddress
            self.newUsersPerMinutePerAddress = newUsersPerMinutePerAddress
            self.newUserBurstPerAddress = newUserBurstPerAddress
            self.maxSocketsPerUser = maxSocketsPerUser
            self.loginsPerMinutePerUser = loginsPerMinutePerUser
            self.loginBurstPerUser = loginBurstPerUser
            self.sessionLifetime = sessionLifetime
            self.keepPerConversation = keepPerConversation
            self.keepBytesPerUser = keepBytesPerUser
            self.keepBytes = keepBytes
            self.loginHistoryBytes = loginHistoryBytes
        }

        /// The largest `users` frame these options allow, in bytes: every user with the
        /// longest name (`Username.maximumBytes`, each byte escaped to two at worst: the rule
        /// leaves no control characters to escape longer), plus the login history. It must
        /// fit what a client accepts and what a connection may have waiting (`ParleyServer`
        /// checks both at start).
        public var largestUsersFrame: Int {
            maxUsers * Self.largestUsersEntry + loginHistoryBytes + 64
        }

        /// `{"connected":false,"messages":[],"userID":"…16…","username":"…"}` at its longest.
        static let largestUsersEntry = 64 + 16 + 2 * Username.maximumBytes
    }

    let store: any ChatStore
    let options: Options
    /// The Socket.IO server it runs on (for the cluster's server-side emits).
    let socketIO: SocketIOServer
    /// Set once it joins a cluster (`joinCluster`).
    let cluster = Mutex<ClusterState?>(nil)
    let sessionLookUp = Mutex<(@Sendable (String) async -> StoredSession?)?>(nil)
    let logger: Logger
    let clock: any ServerClock
    let records: Mutex<Records>
    /// The stored messages, under a lock of their own: every message takes it, every login
    /// reads it, and neither need the directory meanwhile.
    let log: Mutex<MessageLog>
    private let refusals: RefusalLog
    /// The wall clock, from the server's clock: seconds since 1970 when the server started,
    /// and the server clock's reading then.
    let wallStart: (seconds: Int64, at: NIODeadline)
    /// The real-time clock in milliseconds when the server started (for the cluster's seqs,
    /// which order the servers' messages by time: a second's precision would not).
    let wallStartMilliseconds: Int64

    /// The users, under one lock.
    struct Records {
        var directory = UserDirectory()
        /// New users per address (see `Options.newUsersPerMinutePerAddress`).
        var newUsers: [String: TokenBucket] = [:]
        /// When to look for expired users next (at a login).
        var nextExpiry: NIODeadline
    }

    /// Reads the stored sessions (all offline: the server just started) and messages, and
    /// installs the application on the main namespace.
    public init(
        server: SocketIOServer,
        store: any ChatStore,
        options: Options = Options(),
        logger: Logger,
        wallClock: @Sendable () -> Int64 = ChatApplication.secondsSince1970
    ) async throws {
        self.store = store
        self.options = options
        self.logger = logger
        self.socketIO = server
        self.clock = server.clock
        self.refusals = RefusalLog(logger: logger, clock: server.clock)
        let now = server.clock.now
        self.wallStart = (wallClock(), now)
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        wallStartMilliseconds = Int64(spec.tv_sec) * 1_000 + Int64(spec.tv_nsec) / 1_000_000
        var log = MessageLog(perConversation: options.keepPerConversation, maxBytesPerSender: options.keepBytesPerUser, maxBytes: options.keepBytes)
        var records = Records(nextExpiry: now)
        let stored = try await store.load()
        for session in stored.sessions { records.directory.add(session) }
        var dropped: [Int64] = []
        for entry in stored.messages {
            // A message of a user who is gone (a store from an older version) is not kept.
            guard records.directory.contains(entry.message.from), records.directory.contains(entry.message.to) else {
                dropped.append(entry.seq)
                continue
            }
            dropped += log.restore(entry)
        }
        var changes: [StoreChange] = dropped.isEmpty ? [] : [.dropMessages(dropped)]
        let gone = Self.expire(&records, options: options, wallNow: wallStart.seconds, now: now)
        for userID in gone {
            log.removeConversations(of: userID)
            changes.append(.forgetUser(userID: userID))
        }
        store.record(changes)
        self.records = Mutex(records)
        self.log = Mutex(log)
        install(on: server.main)
    }

    /// The number of known users.
    public var userCount: Int { records.withLock { $0.directory.count } }
    /// The number of stored messages.
    public var messageCount: Int { log.withLock { $0.count } }

    /// Seconds since 1970, now.
    var wallNow: Int64 {
        wallStart.seconds + (clock.now - wallStart.at).nanoseconds / 1_000_000_000
    }

    // MARK: Per-socket state

    final class Member: Sendable {
        let sessionID: String
        let userID: String
        let username: String

        init(sessionID: String, userID: String, username: String) {
            self.sessionID = sessionID
            self.userID = userID
            self.username = username
        }
    }

    // MARK: The protocol

    private func install(on namespace: SocketIONamespace) {
        namespace.use { [self] socket in authenticate(socket) }
        namespace.onConnection { [self] socket in connected(socket, namespace: namespace) }
    }

    /// The middleware: adopt a known session, else create one for a username.
    func authenticate(_ socket: SocketIOServerSocket) -> SocketIOMiddlewareResult {
        let address = socket.request.addressKey
        func refuse(_ reason: RefusalReason) -> SocketIOMiddlewareResult {
            refusals.record("login", reason: reason.rawValue, peer: address, on: socket.eventLoop)
            return .reject(message: reason.rawValue)
        }
        if let sessionID = socket.auth["sessionID"]?.stringValue {
            let now = clock.now
            let options = self.options
            enum Known { case accepted(StoredSession), refused(RefusalReason), unknown }
            let known = records.withLock { records -> Known in
                guard let userID = records.directory.user(withSession: sessionID)?.session.userID else { return .unknown }
                return records.directory.update(userID) { user in
                    guard user.sockets < options.maxSocketsPerUser else { return .refused(.tooManySockets) }
                    let allowed = TokenBucket.take(
                        from: &user.logins, rate: options.loginsPerMinutePerUser / 60, burst: options.loginBurstPerUser, now: now
                    )
                    return allowed ? .accepted(user.session) : .refused(.tooManyLogins)
                } ?? .unknown
            }
            switch known {
            case .accepted(let session):
                socket.data = Member(sessionID: session.sessionID, userID: session.userID, username: session.username)
                return .accept
            case .refused(let reason):
                return refuse(reason)
            case .unknown:
                break
            }
        }
        guard let raw = socket.auth["username"]?.stringValue, case .success(let username) = Username.validate(raw) else {
            return refuse(.invalidUsername)
        }
        let now = clock.now
        let wall = wallNow
        let options = self.options
        let created = records.withLock { records -> Result<StoredSession, RefusalReason> in
            guard records.directory.count < options.maxUsers else { return .failure(.serverFull) }
            guard records.directory.created(from: address) < options.maxUsersPerAddress else { return .failure(.tooManyUsersFromAddress) }
            let allowed = TokenBucket.take(
                from: &records.newUsers[address],
                rate: options.newUsersPerMinutePerAddress / 60, burst: options.newUserBurstPerAddress, now: now
            )
            guard allowed else { return .failure(.tooManyNewUsers) }
            let session = StoredSession(
                sessionID: Self.randomHex(bytes: 16), userID: Self.randomHex(bytes: 8), username: username,
                connected: false, lastSeen: wall
            )
            records.directory.add(session, from: address)
            return .success(session)
        }
        switch created {
        case .failure(let reason):
            return refuse(reason)
        case .success(let session):
            announce(session, written: store.recordAwaitingWrite([.session(session)]))
            socket.data = Member(sessionID: session.sessionID, userID: session.userID, username: session.username)
            return .accept
        }
    }

    /// Why a login was refused: what the client reads in its CONNECT_ERROR.
    /// The refusals' wording is the protocol's (ChatSchema), which the client reads.
    typealias RefusalReason = LoginRefusal

    private func connected(_ socket: SocketIOServerSocket, namespace: SocketIONamespace) {
        guard let member = socket.data as? Member else { return }
        let now = clock.now
        let wall = wallNow
        let options = self.options
        let history = log.withLock { $0.history(of: member.userID, budget: options.loginHistoryBytes) }
        let (list, session, cameOnline, gone) = records.withLock { records -> (UserDirectory.UsersList, StoredSession?, Bool, [String]) in
            let gone = Self.expire(&records, options: options, wallNow: wall, now: now)
            if records.directory[member.userID] == nil {
                // Forgotten between the middleware and now (expired): back as it was.
                records.directory.add(StoredSession(
                    sessionID: member.sessionID, userID: member.userID, username: member.username, connected: false, lastSeen: wall
                ))
            }
            let change: (cameOnline: Bool, session: StoredSession)? = records.directory.update(member.userID) { user in
                let cameOnline = user.sockets == 0
                user.sockets += 1
                user.setConnected(true, at: wall)
                return (cameOnline, user.session)
            }
            return (records.directory.usersList(history: history), change?.session, change?.cameOnline ?? false, gone)
        }
        if !gone.isEmpty { log.withLock { log in for userID in gone { log.removeConversations(of: userID) } } }
        var changes: [StoreChange] = gone.map { StoreChange.forgetUser(userID: $0) }
        if let session { changes.append(.session(session)) }
        store.record(changes)

        socket.emit(ChatEventName.session, SessionPayload(sessionID: member.sessionID, userID: member.userID).json)
        socket.join(member.userID)
        socket.emit(ChatEventName.users, fragments: [list.joined])
        // Everyone is told when the user comes online, not again for each further socket
        // (the guide tells them every time; they know already, and a user with many tabs,
        // or one that reconnects over and over, would make the server write to all for each).
        // In a cluster, only when no other server has a socket of the user either.
        if cameOnline, localPresenceChanged(member.userID, online: true) {
            // To this server's sockets only: in a cluster, each server tells its own clients
            // when a user's presence changes as it sees it (`ChatCluster.setRemote`), so a
            // user whose first sockets come on two servers at once is announced once to each.
            socket.broadcast.emitHere(
                ChatEventName.userConnected,
                arguments: [UserEntry(userID: member.userID, username: member.username, connected: true, messages: []).json]
            )
        }

        socket.on(ChatEventName.privateMessage) { [self] socket, arguments, ack in
            privateMessage(from: socket, member: member, arguments: arguments, ack: ack)
        }
        socket.onDisconnect { [self] socket, reason in
            disconnected(socket, member: member, namespace: namespace, reason: reason)
        }
    }

    private func privateMessage(from socket: SocketIOServerSocket, member: Member, arguments: [JSONValue], ack: SocketIOAck?) {
        func refuse(_ why: String) {
            refusals.record("private message", reason: why, peer: member.userID, on: socket.eventLoop)
            ack?(["error": .string(why)])
        }
        let payload: OutgoingMessage
        switch ClientPayload.privateMessage(arguments) {
        case .failure(let problem): return refuse(problem.why)
        case .success(let decoded): payload = decoded
        }
        guard payload.content.utf8.count <= options.maxMessageBytes else {
            return refuse("content is larger than \(options.maxMessageBytes) bytes")
        }
        let now = clock.now
        let options = self.options
        enum Outcome { case allowed, tooFast, noSuchUser }
        let message = PrivateMessage(content: payload.content, from: member.userID, to: payload.to)
        let outcome = records.withLock { records -> Outcome in
            guard records.directory.contains(payload.to) else { return .noSuchUser }
            guard options.messagesPerSecond > 0 else { return .allowed }
            let allowed = records.directory.update(member.userID) { user in
                TokenBucket.take(from: &user.messages, rate: options.messagesPerSecond, burst: options.messageBurst, now: now)
            }
            return allowed == false ? .tooFast : .allowed
        }
        switch outcome {
        case .noSuchUser:
            return refuse("no such user")
        case .tooFast:
            return refuse("rate limit exceeded")
        case .allowed:
            let durable = store.isDurable
            let minimumSeq = clusterSeq()
            let (entry, dropped) = log.withLock { $0.append(message, reportingDrops: durable, minimumSeq: minimumSeq) }
            var written: (@Sendable () async -> Bool)?
            if durable { written = store.recordAwaitingWrite(dropped.isEmpty ? [.message(entry)] : [.message(entry), .dropMessages(dropped)]) }
            socket.to(payload.to, member.userID).emit(ChatEventName.privateMessage, message.json)
            if let written, let ack {
                // A store that says when it wrote (PostgreSQL's): the acknowledgement means the
                // message is in the database, whatever happens to this server next.
                Task {
                    let stored = await written()
                    ack(stored ? ["ok": true] : ["error": "delivered to who is online, not confirmed stored: the database does not answer (it may still be stored)"])
                }
                return
            }
        }
        ack?(["ok": true])
    }

    private func disconnected(_ socket: SocketIOServerSocket, member: Member, namespace: SocketIONamespace, reason: String) {
        let wall = wallNow
        let elsewhere = isOnlineElsewhere(member.userID)
        let session = records.withLock { records -> StoredSession? in
            records.directory.update(member.userID) { user in
                user.sockets -= 1
                guard user.sockets == 0 else { return nil }
                user.setConnected(elsewhere, at: wall)
                return user.session
            } ?? nil
        }
        guard let session else { return }
        store.record([.session(session)])
        let offline = localPresenceChanged(member.userID, online: false)
        // A server that shuts down closes every connection: nobody stays to hear who left,
        // and telling each of n clients about the others would be n² frames on the way out.
        // (In a cluster, the others learn that its users left when it says it goes.)
        if offline, reason != EngineIOCloseReason.serverShutdown.name {
            namespace.except().emitHere(ChatEventName.userDisconnected, arguments: [.string(member.userID)])
        }
    }

    // MARK: Expiry

    /// Forgets users away for longer than the session lifetime; at most once per tenth of
    /// it, or hour (it walks every user). Their IDs, for the caller to forget their
    /// conversations and tell the store.
    static func expire(_ records: inout Records, options: Options, wallNow: Int64, now: NIODeadline) -> [String] {
        guard now >= records.nextExpiry else { return [] }
        let lifetime = options.sessionLifetime.components.seconds
        records.nextExpiry = now + TimeAmount(min(options.sessionLifetime / 10, .seconds(3600)))
        let gone = records.directory.removeAll { user in
            !user.session.connected && user.sockets == 0 && wallNow - user.session.lastSeen > lifetime
        }
        // Buckets that have refilled are the same as new ones.
        records.newUsers = records.newUsers.filter { !$0.value.isFull(now: now) }
        return gone
    }

    // MARK: Helpers

    /// The system's real-time clock, in seconds since 1970: read once, at start (after that,
    /// time comes from the server's monotonic clock).
    public static func secondsSince1970() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec)
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
