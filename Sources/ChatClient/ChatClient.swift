public import Chat
public import EngineIO
public import Foundation
import JSON
public import Logging
public import PrivateFiles
public import SocketIO
import Synchronization

/// What changed, for a front end to show (the terminal UI) or print (headless mode).
public enum ChatUpdate: Sendable, Hashable {
    case status(ConnectionStatus)
    /// Logged in: who "self" is. Never carries the session ID.
    case session(userID: String, username: String)
    case users([UserSummary])
    case userConnected(UserSummary)
    case userDisconnected(userID: String)
    case message(MessageRecord)
    /// Part III servers: the stored conversation with a user, sent on (re)connection.
    case history(userID: String, messages: [MessageRecord])
    /// No usable session: a username is needed (with the server's reason after a refusal).
    case needsUsername(reason: String?)
    /// Something the person should know that did not stop the client.
    case warning(String)
}

public struct UserSummary: Sendable, Hashable {
    public let userID: String
    public let username: String
    public let connected: Bool
    public let isSelf: Bool
    public let unread: Int

    init(_ user: ChatUser) {
        userID = user.id
        username = user.username
        connected = user.isConnected
        isSelf = user.isSelf
        unread = user.unreadCount
    }
}

/// A message as a front end reports it. Own messages carry a local `id`, so a
/// queued one can be matched when it is reported again as sent.
public struct MessageRecord: Sendable, Hashable {
    public let id: Int?
    public let from: String
    public let to: String
    public let content: String
    public let fromSelf: Bool
    public let at: Date
    public let delivery: ChatMessage.Delivery
}

public enum SendError: Error, Sendable, Hashable, CustomStringConvertible {
    case empty
    case notLoggedIn
    case unknownRecipient(String)
    /// More than one user's name looks like the one given: nothing is sent to a guess.
    case ambiguous(String, userIDs: [String])
    case tooLong(size: Int, limit: Int)

    public var description: String {
        switch self {
        case .empty: return "nothing to send"
        case .notLoggedIn: return "not logged in yet"
        case .unknownRecipient(let who): return "no user called \(who.debugDescription)"
        case .ambiguous(let name, let userIDs):
            return "\(userIDs.count) users have names that look like \(name.debugDescription) (userIDs \(userIDs.joined(separator: ", "))): "
                + "send to a userID"
        case .tooLong(let size, let limit):
            return "message too long: \(size) bytes, the server accepts \(limit)"
        }
    }
}

/// The chat core: drives a `ChatState` from a Socket.IO connection, keeps the
/// session in the session file, and reports every change as a `ChatUpdate`.
///
/// Network events are applied on the Socket.IO manager's executor, in order,
/// under one lock; front ends read snapshots and updates, never the socket.
public final class ChatClient: Sendable {
    public struct Options: Sendable {
        public var url: String
        /// Where `sessions.json` lives; `$XDG_CONFIG_HOME/parley` when nil.
        public var configDirectory: String?
        /// Whether a config directory that is another user's or open to writers is refused.
        public var fileModes: PrivateFiles.Modes
        /// Most messages kept per conversation; nil keeps everything.
        public var historyLimit: Int?
        /// Publish `updates` (turn off when nothing reads them).
        public var publishesUpdates: Bool
        /// Called with every update, synchronously, on the network executor, in order: for a
        /// front end that only needs a wake-up (a terminal UI's self-pipe) or a benchmark. Keep it short.
        public var observer: (@Sendable (ChatUpdate) -> Void)?
        /// Called with every event applied to the chat state, in the order applied, while the
        /// state is locked (so: only enqueue). A front end that keeps its own copy of the state
        /// applies the same events to it, rather than copying snapshots of a growing history.
        public var stateObserver: (@Sendable (ChatEvent) -> Void)?
        public var socket: SocketManager.Configuration
        /// When to log in again after a refusal that may pass (any but `invalid username`):
        /// on the socket's clock, with its randomness. 2 s doubling to a minute by default: a
        /// busy server is not asked again every second by every refused client.
        public var refusalRetry: ReconnectPolicy
        public var logger: Logger

        public init(
            url: String,
            configDirectory: String? = nil,
            fileModes: PrivateFiles.Modes = .strict,
            historyLimit: Int? = nil,
            publishesUpdates: Bool = true,
            observer: (@Sendable (ChatUpdate) -> Void)? = nil,
            stateObserver: (@Sendable (ChatEvent) -> Void)? = nil,
            socket: SocketManager.Configuration = .init(),
            refusalRetry: ReconnectPolicy = ReconnectPolicy(initialDelay: .seconds(2), maxDelay: .seconds(60)),
            logger: Logger = .disabled
        ) {
            self.url = url
            self.configDirectory = configDirectory
            self.fileModes = fileModes
            self.historyLimit = historyLimit
            self.publishesUpdates = publishesUpdates
            self.observer = observer
            self.stateObserver = stateObserver
            self.socket = socket
            self.refusalRetry = refusalRetry
            self.logger = logger
        }
    }

    private struct Inner: Sendable {
        private(set) var chat: ChatState
        let stateObserver: (@Sendable (ChatEvent) -> Void)?
        var session: StoredSession?
        /// The name to log in with when there is no session yet.
        var username: String?
        var nextMessageID = 0
        var queued: [MessageRecord] = []
        /// Woken when nothing is queued any more.
        var flushWaiters: [CheckedContinuation<Void, Never>] = []
        /// Refusals in a row (that may pass), and the login planned after the last one.
        var refusals = 0
        var retry: Task<Void, Never>?

        init(chat: ChatState, stateObserver: (@Sendable (ChatEvent) -> Void)?) {
            self.chat = chat
            self.stateObserver = stateObserver
        }

        /// The one way the state changes here: applied, then reported in order.
        mutating func apply(_ event: ChatEvent) {
            chat.apply(event)
            stateObserver?(event)
        }

        /// No more logging in again after a refusal (a new login, a logout, the end).
        mutating func cancelRetry() {
            retry?.cancel()
            retry = nil
            refusals = 0
        }

        mutating func takeFlushWaitersIfEmpty() -> [CheckedContinuation<Void, Never>] {
            guard queued.isEmpty else { return [] }
            defer { flushWaiters = [] }
            return flushWaiters
        }
    }

    public let server: ServerKey
    public let store: SessionStore
    public let updates: AsyncStream<ChatUpdate>
    private let continuation: AsyncStream<ChatUpdate>.Continuation
    private let publishes: Bool
    private let observer: (@Sendable (ChatUpdate) -> Void)?
    private let manager: SocketManager
    private let socket: Socket
    private let inner: Locked<Inner>
    private let logger: Logger
    private let refusalRetry: ReconnectPolicy
    /// The longest refusal reason shown or logged, in characters.
    static let maxReasonLength = 200
    private let clock: any Clock<Duration>
    private let random: @Sendable () -> Double

    /// Opens the session store (creating the directory) and sets up the socket.
    /// Throws for a bad URL or an unusable config directory.
    public init(options: Options) async throws {
        let endpoint = try EngineIOEndpoint(url: options.url, path: options.socket.path, query: options.socket.query)
        server = ServerKey(endpoint)
        store = SessionStore(directory: options.configDirectory ?? SessionStore.defaultDirectory(), modes: options.fileModes)
        logger = options.logger
        publishes = options.publishesUpdates
        observer = options.observer
        refusalRetry = options.refusalRetry
        clock = options.socket.clock
        random = options.socket.random
        (updates, continuation) = AsyncStream.makeStream(of: ChatUpdate.self)
        inner = Locked(Inner(chat: ChatState(historyLimit: options.historyLimit), stateObserver: options.stateObserver))
        let warnings = try store.prepare()
        manager = try SocketManager(url: options.url, configuration: options.socket)
        let inner = self.inner
        socket = try await manager.socket(auth: {
            // Read at every attempt: {sessionID, username} once there is a session, so a
            // server that forgot it (a restart) makes a new one under the same name.
            inner.withLock { state in
                if let session = state.session {
                    return ["sessionID": .string(session.sessionID), "username": .string(session.username)]
                }
                return state.username.map { ["username": .string($0)] }
            }
        })
        for warning in warnings { publish(.warning(warning)) }
        await socket.onLifecycle { [weak self] event in self?.handle(event) }
        await socket.onAny { [weak self] event in self?.handle(event) }
    }

    // MARK: What a front end calls

    /// The current state, to draw from.
    public func snapshot() -> ChatState { inner.withLock { $0.chat } }

    /// Connects with the stored session, or with `username` for a first login.
    /// Without either, reports `.needsUsername` and waits for `login(username:)`.
    public func start(username: String? = nil) async throws(Username.Problem) {
        let (session, warnings) = store.load(server)
        for warning in warnings {
            logger.warning("\(warning)")
            publish(.warning(warning))
        }
        if let session {
            inner.withLock {
                $0.session = session
                $0.username = session.username
            }
            await connect()
        } else if let username {
            try await login(username: username)
        } else {
            publish(.needsUsername(reason: nil))
        }
    }

    /// A first login (or a new one after a refusal or logout).
    public func login(username raw: String) async throws(Username.Problem) {
        let username = try Username.validate(raw).get()
        inner.withLock {
            $0.session = nil
            $0.username = username
            $0.cancelRetry()
        }
        await connect()
    }

    private func connect() async {
        apply(.connecting)
        publish(.status(.connecting))
        await socket.connect()
    }

    /// Sends to a user (by userID, or by username when no userID matches).
    /// Offline, the message is queued and sent after the reconnection.
    @discardableResult
    public func send(_ text: String, to recipient: String) async throws(SendError) -> MessageRecord {
        guard !text.isBlank else { throw .empty }
        let (selfID, candidates) = inner.withLock { state -> (String?, [String]) in
            let chat = state.chat
            if let user = chat.user(recipient) { return (chat.selfID, [user.id]) }
            return (chat.selfID, chat.users(lookingLike: recipient).map(\.id))
        }
        guard let selfID else { throw .notLoggedIn }
        guard let to = candidates.first else { throw .unknownRecipient(recipient) }
        guard candidates.count == 1 else { throw .ambiguous(recipient, userIDs: candidates) }
        let at = Date()
        let record = Mutex<MessageRecord?>(nil)
        do {
            try await socket.emit(ChatEventName.privateMessage, arguments: [OutgoingMessage(content: text, to: to).json]) {
                [inner] result in
                // On the manager's executor: ordered before the connect that would flush it.
                let queued = result == .buffered
                let message = inner.withLock { state -> MessageRecord in
                    state.apply(.messageSent(content: text, to: to, at: at, queued: queued))
                    let message = MessageRecord(
                        id: state.nextMessageID, from: selfID, to: to, content: text, fromSelf: true, at: at,
                        delivery: queued ? .queued : .sent
                    )
                    state.nextMessageID += 1
                    if queued { state.queued.append(message) }
                    return message
                }
                record.withLock { $0 = message }
            }
        } catch {
            if case .payloadTooLarge(let size, let limit) = error { throw .tooLong(size: size, limit: limit) }
            throw .empty
        }
        let message = record.withLock { $0 }!
        publish(.message(message))
        return message
    }

    public func select(_ userID: String?) { apply(.select(userID: userID)) }

    /// Forgets the session (here and in the session file) and disconnects.
    public func logout() async {
        await socket.disconnect()
        forgetSession(andUsername: true)
        publish(.needsUsername(reason: nil))
    }

    /// Drops the session here and in the session file, with the chat state that went with it.
    private func forgetSession(andUsername: Bool) {
        inner.withLock {
            $0.session = nil
            if andUsername { $0.username = nil }
            $0.queued = []
            $0.cancelRetry()
            $0.apply(.logout)
        }
        do {
            try store.remove(server)
        } catch {
            publish(.warning(error.description))
        }
    }

    /// Disconnects, waits until everything sent has been written, and ends `updates`.
    public func close() async {
        inner.withLock { $0.cancelRetry() }
        await manager.close()
        continuation.finish()
    }

    public var isConnected: Bool { inner.withLock { $0.chat.connection == .connected } }

    /// Whether messages are waiting for the connection.
    public var hasQueuedMessages: Bool { inner.withLock { !$0.queued.isEmpty } }

    /// Waits until no message is queued (they were sent after a reconnection), or
    /// until `timeout`; returns whether the queue is empty.
    public func waitUntilQueueFlushed(timeout: Duration) async -> Bool {
        guard hasQueuedMessages else { return true }
        let timer = Task { [inner] in
            try? await Task.sleep(for: timeout)
            let waiters = inner.withLock { state in
                defer { state.flushWaiters = [] }
                return state.flushWaiters
            }
            waiters.forEach { $0.resume() }
        }
        defer { timer.cancel() }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = inner.withLock { state in
                if state.queued.isEmpty { return true }
                state.flushWaiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
        return !hasQueuedMessages
    }

    // MARK: Network events (on the manager's executor, in order)

    private func handle(_ event: SocketEvent) {
        switch event {
        case .connect:
            let (flushed, waiters) = inner.withLock { state in
                state.apply(.connected)
                let flushed = state.queued
                state.queued = []
                return (flushed, state.takeFlushWaitersIfEmpty())
            }
            waiters.forEach { $0.resume() }
            publish(.status(.connected))
            for message in flushed {
                publish(.message(MessageRecord(
                    id: message.id, from: message.from, to: message.to, content: message.content,
                    fromSelf: true, at: message.at, delivery: .sent
                )))
            }
        case .disconnect(let reason):
            goOffline(reason.description)
        case .connectError(let error):
            if error.source == .server {
                refused(error.message)
            } else {
                goOffline(error.message)
            }
        case .reconnectAttempt(let attempt, let delay):
            apply(.reconnecting(attempt: attempt, delay: delay))
            publish(.status(.reconnecting(attempt: attempt, delay: delay)))
        case .reconnectFailed:
            goOffline("gave up reconnecting")
        case .event(let received):
            handle(received)
        }
    }

    private func goOffline(_ reason: String) {
        apply(.offline(reason: reason))
        publish(.status(.offline(reason: reason)))
    }

    /// CONNECT_ERROR: the server will not have us. Only "invalid username" means the stored
    /// session is useless: forget it and ask for a name again (PROTOCOL.md). Any other reason
    /// may pass (a busy or full server, a rate limit): keep the session, say why, and log in
    /// again after a backoff, longer after each refusal in a row.
    private func refused(_ reason: String) {
        // A reason is for a person to read: a server's 16 MiB of it is cut to what one reads.
        let message = reason.count > Self.maxReasonLength ? String(reason.prefix(Self.maxReasonLength)) + "…" : reason
        logger.notice("server refused the login", metadata: ["reason": "\(message)"])
        if LoginRefusal.forgetsSession(message) {
            forgetSession(andUsername: false)
            apply(.offline(reason: message))
            publish(.status(.offline(reason: message)))
            publish(.needsUsername(reason: message))
            return
        }
        let random = self.random()
        let (attempt, delay) = inner.withLock { state -> (Int, Duration) in
            state.refusals += 1
            let delay = refusalRetry.delay(forAttempt: state.refusals, random: random)
            state.apply(.refused(reason: message, attempt: state.refusals, retryIn: delay))
            return (state.refusals, delay)
        }
        publish(.status(.refused(reason: message, attempt: attempt, retryIn: delay)))
        let clock = self.clock
        let retry = Task { [weak self] in
            do { try await clock.sleep(for: delay, tolerance: nil) } catch { return }
            guard let self, self.inner.withLock({ $0.refusals == attempt && $0.retry != nil }) else { return }
            await self.connect()
        }
        inner.withLock { state in
            state.retry?.cancel()
            state.retry = retry
        }
    }

    private func handle(_ event: ReceivedEvent) {
        // The event of a flood first: a switch on strings compares them in order.
        switch event.name {
        case ChatEventName.privateMessage:
            switch ServerPayload.privateMessage(event.arguments) {
            case .success(let message):
                let at = Date()
                let fromSelf = inner.withLock { state in
                    state.apply(.messageReceived(message, at: at))
                    return message.from == state.chat.selfID
                }
                if publishes || observer != nil {
                    publish(.message(MessageRecord(
                        id: nil, from: message.from, to: message.to, content: message.content,
                        fromSelf: fromSelf, at: at, delivery: fromSelf ? .sent : .received
                    )))
                }
            case .failure(let problem):
                logger.warning("\(problem)")
            }
        case ChatEventName.session:
            switch ServerPayload.session(event.arguments) {
            case .success(let (sessionID, userID)):
                let username = inner.withLock { $0.username } ?? userID
                let session = StoredSession(sessionID: sessionID, userID: userID, username: username)
                inner.withLock {
                    // Logged in: refusals in a row are over (not at CONNECT, which a server
                    // could accept and then refuse, to make us retry without backoff).
                    $0.refusals = 0
                    $0.session = session
                    $0.apply(.session(userID: userID, username: username))
                }
                do {
                    try store.save(session, for: server)
                } catch {
                    logger.error("\(error)")
                    publish(.warning(error.description))
                }
                publish(.session(userID: userID, username: username))
            case .failure(let problem):
                logger.warning("\(problem)")
            }
        case ChatEventName.users:
            let (entries, problems) = ServerPayload.users(event.arguments)
            for problem in problems { logger.warning("\(problem)") }
            // The list as a front end reads it only when one does (a terminal UI keeps its own
            // state from the events): for 100,000 users that is 100,000 summaries.
            let reported = publishes || observer != nil
            let (users, selfID) = inner.withLock { state in
                state.apply(.users(entries))
                return (reported ? state.chat.users.map(UserSummary.init) : [], state.chat.selfID)
            }
            guard reported else { return }
            publish(.users(users))
            let at = Date()
            for entry in entries {
                guard let history = entry.messages, !history.isEmpty else { continue }
                publish(.history(userID: entry.userID, messages: history.map { message in
                    let fromSelf = message.from == selfID
                    return MessageRecord(
                        id: nil, from: message.from, to: message.to, content: message.content,
                        fromSelf: fromSelf, at: at, delivery: fromSelf ? .sent : .received
                    )
                }))
            }
        case ChatEventName.userConnected:
            switch ServerPayload.userConnected(event.arguments) {
            case .success(let entry):
                let user = inner.withLock { state in
                    state.apply(.userConnected(entry))
                    return state.chat.user(entry.userID).map(UserSummary.init)
                }
                if let user { publish(.userConnected(user)) }
            case .failure(let problem):
                logger.warning("\(problem)")
            }
        case ChatEventName.userDisconnected:
            switch ServerPayload.userDisconnected(event.arguments) {
            case .success(let userID):
                apply(.userDisconnected(userID: userID))
                publish(.userDisconnected(userID: userID))
            case .failure(let problem):
                logger.warning("\(problem)")
            }
        default:
            logger.debug("ignoring event \(event.name)")
        }
    }

    private func apply(_ event: ChatEvent) {
        inner.withLock { $0.apply(event) }
    }

    private func publish(_ update: ChatUpdate) {
        observer?(update)
        if publishes { continuation.yield(update) }
    }
}

/// A value behind a lock, shareable by reference (a `Mutex` itself cannot be captured).
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        try mutex.withLock { try body(&$0) }
    }
}
