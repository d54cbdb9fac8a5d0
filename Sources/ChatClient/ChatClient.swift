public import Chat
public import EngineIO
import Foundation
public import History
import JSON
public import Logging
public import PrivateFiles
public import SocketIO
import Synchronization

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

/// The chat core, and the one owner of the chat state: drives a `ChatState` from a Socket.IO
/// connection, keeps the session in the session file, and reports every event it applies, in
/// one vocabulary (`ChatEvent`), to one observer.
///
/// Network events are applied on the Socket.IO manager's executor, in order, under one lock.
/// Front ends are projections of the state: headless mode turns each event (with the state
/// right after it) into output lines; the terminal UI draws from the state under `read(_:)`.
/// Neither keeps a copy, and neither touches the socket.
public final class ChatClient: Sendable {
    /// Called with every event, in the order applied, and the chat state right after it,
    /// while the state is locked: read what you need, hand it on and return, without calling
    /// into the client (that would wait for the lock it holds).
    public typealias Observer = @Sendable (ChatEvent, ChatState) -> Void

    public struct Options: Sendable {
        public var url: String
        /// Where `sessions.json` lives; `$XDG_CONFIG_HOME/parley` when nil.
        public var configDirectory: String?
        /// Whether a config directory that is another user's or open to writers is refused.
        public var fileModes: PrivateFiles.Modes
        /// Most messages kept per conversation; nil keeps everything.
        public var historyLimit: Int?
        /// Told of every event (see `Observer`): a front end's projection.
        public var observer: Observer?
        /// Where conversations are kept across restarts (nil: nowhere, `--no-history`).
        public var history: HistoryStore?
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
            observer: Observer? = nil,
            history: HistoryStore? = nil,
            socket: SocketManager.Configuration = .init(),
            refusalRetry: ReconnectPolicy = ReconnectPolicy(initialDelay: .seconds(2), maxDelay: .seconds(60)),
            logger: Logger = .disabled
        ) {
            self.url = url
            self.configDirectory = configDirectory
            self.fileModes = fileModes
            self.historyLimit = historyLimit
            self.observer = observer
            self.history = history
            self.socket = socket
            self.refusalRetry = refusalRetry
            self.logger = logger
        }
    }

    private struct Inner: Sendable {
        private(set) var chat: ChatState
        let observer: Observer?
        let history: HistoryStore?
        let server: String
        /// The user whose kept conversations were restored (once per login, not per reconnection).
        var restoredFor: String?
        /// Per peer: the oldest kept message in the state (its history id), nil once no older is left.
        var oldestRestored: [String: Int64?] = [:]
        var session: StoredSession?
        /// The name to log in with when there is no session yet.
        var username: String?
        var nextMessageID = 0
        /// Handed to the socket while offline: it sends them when the connection is back.
        var queued: [SentMessage] = []
        /// Woken when nothing is queued any more.
        var flushWaiters: [CheckedContinuation<Void, Never>] = []
        /// Refusals in a row (that may pass), and the login planned after the last one.
        var refusals = 0
        var retry: Task<Void, Never>?

        init(chat: ChatState, observer: Observer?, history: HistoryStore?, server: String) {
            self.chat = chat
            self.observer = observer
            self.history = history
            self.server = server
        }

        /// The one way the state changes here: applied, kept, then reported in order.
        mutating func apply(_ event: ChatEvent) {
            chat.apply(event)
            if let history {
                keep(event, in: history)
                forgetOlder(after: event)
            }
            observer?(event, chat)
        }

        /// A page of kept messages of `peer` is in the state: paging back resumes before its
        /// oldest, or is over when the page was not full.
        mutating func restored(_ page: [StoredMessage], of peer: String) {
            oldestRestored[peer] = page.count < ChatClient.restoredMessagesPerConversation ? .some(nil) : page.first?.id
        }

        /// A server's own history of a conversation (part III) took its place: nothing of
        /// ours goes above it when scrolling up.
        private mutating func forgetOlder(after event: ChatEvent) {
            switch event {
            case .users(let entries):
                for entry in entries where entry.messages != nil { oldestRestored[entry.userID] = .some(nil) }
            default:
                break
            }
        }

        /// A message said or heard goes into the local history (queued there; nothing waits).
        private func keep(_ event: ChatEvent, in history: HistoryStore) {
            guard let me = chat.selfID else { return }
            let message: StoredMessage
            switch event {
            case .messageReceived(let received, let at):
                let fromSelf = received.from == me
                message = StoredMessage(peer: fromSelf ? received.to : received.from, fromSelf: fromSelf, content: received.content, at: at)
            case .messageSent(let sent, _):
                message = StoredMessage(peer: sent.to, fromSelf: true, content: sent.content, at: sent.at)
            default:
                return
            }
            history.append(server: server, me: me, message, peerName: chat.user(message.peer)?.username ?? message.peer)
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
        refusalRetry = options.refusalRetry
        clock = options.socket.clock
        random = options.socket.random
        inner = Locked(Inner(
            chat: ChatState(historyLimit: options.historyLimit), observer: options.observer, history: options.history, server: server.value
        ))
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
        for warning in warnings { apply(.warning(warning)) }
        await socket.onLifecycle { [weak self] event in self?.handle(event) }
        await socket.onAny { [weak self] event in self?.handle(event) }
    }

    // MARK: What a front end calls

    /// Reads the state where it is, under the lock: what a front end draws, or a test checks.
    /// Nothing changes it meanwhile; keep `body` short (the network waits), and do not call
    /// into the client from it. Keeping a copy is possible but costly: the next change to a
    /// shared conversation or to the user table then copies it.
    public func read<T>(_ body: (ChatState) throws -> T) rethrows -> T {
        try inner.withLock { try body($0.chat) }
    }

    /// Connects with the stored session, or with `username` for a first login.
    /// Without either, reports `.loggedOut(reason: nil)` and waits for `login(username:)`.
    public func start(username: String? = nil) async throws(Username.Problem) {
        let (session, warnings) = store.load(server)
        for warning in warnings {
            logger.warning("\(warning)")
            apply(.warning(warning))
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
            apply(.loggedOut(reason: nil))
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

    /// Connects, saying so, except when trying again after a refusal: then the refusal (the
    /// server's reason) stays what is shown until this try is taken or refused in turn.
    private func connect(afterRefusal: Bool = false) async {
        if !afterRefusal { apply(.connecting) }
        await socket.connect()
    }

    /// Sends to a user (by userID, or by username when no userID matches).
    /// Offline, the message is queued and sent after the reconnection.
    @discardableResult
    public func send(_ text: String, to recipient: String) async throws(SendError) -> SentMessage {
        guard !text.isBlank else { throw .empty }
        let (selfID, candidates) = inner.withLock { state -> (String?, [String]) in
            let chat = state.chat
            if let user = chat.user(recipient) { return (chat.selfID, [user.id]) }
            return (chat.selfID, chat.users(lookingLike: recipient).map(\.id))
        }
        guard selfID != nil else { throw .notLoggedIn }
        guard let to = candidates.first else { throw .unknownRecipient(recipient) }
        guard candidates.count == 1 else { throw .ambiguous(recipient, userIDs: candidates) }
        let at = Date()
        let sent = Mutex<SentMessage?>(nil)
        do {
            try await socket.emit(ChatEventName.privateMessage, arguments: [OutgoingMessage(content: text, to: to).json]) {
                [inner] result in
                // On the manager's executor: ordered before the connect that would flush it.
                let queued = result == .buffered
                let message = inner.withLock { state -> SentMessage in
                    let message = SentMessage(id: state.nextMessageID, to: to, content: text, at: at)
                    state.nextMessageID += 1
                    if queued { state.queued.append(message) }
                    state.apply(.messageSent(message, queued: queued))
                    return message
                }
                sent.withLock { $0 = message }
            }
        } catch {
            if case .payloadTooLarge(let size, let limit) = error { throw .tooLong(size: size, limit: limit) }
            throw .empty
        }
        return sent.withLock { $0 }!
    }

    public func select(_ userID: String?) { apply(.select(userID: userID)) }

    /// Forgets the session (here and in the session file) and disconnects.
    /// With `deleteHistory`, what this account said and heard on this server is deleted from
    /// the local history too (after what is queued for it is written, so nothing comes back).
    public func logout(deleteHistory: Bool = false) async {
        let me = inner.withLock { $0.chat.selfID }
        await socket.disconnect()
        forgetSession(andUsername: true, reason: nil)
        guard deleteHistory, let me, let history = inner.withLock({ $0.history }) else { return }
        await history.flush()
        do {
            try history.delete(server: server.value, me: me)
        } catch {
            apply(.warning("the history could not be deleted: \(error)"))
        }
    }

    /// Drops the session here and in the session file, with the chat state that went with it.
    /// Reported once the file no longer has it: whoever hears of the logout may look.
    private func forgetSession(andUsername: Bool, reason: String?) {
        inner.withLock {
            $0.session = nil
            if andUsername { $0.username = nil }
            $0.queued = []
            $0.cancelRetry()
            // The state forgets the conversations: the next login restores them again.
            $0.restoredFor = nil
            $0.oldestRestored = [:]
        }
        do {
            try store.remove(server)
        } catch {
            apply(.warning(error.description))
        }
        apply(.loggedOut(reason: reason))
    }

    /// Disconnects and waits until everything sent has been written, to the server and to
    /// the local history. No event is reported after it.
    public func close() async {
        inner.withLock { $0.cancelRetry() }
        await manager.close()
        await inner.withLock { $0.history }?.flush()
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
            let waiters = inner.withLock { state in
                // The socket wrote its buffer before reporting the connection.
                let flushed = state.queued
                state.queued = []
                state.apply(.connected(flushed: flushed))
                return state.takeFlushWaitersIfEmpty()
            }
            waiters.forEach { $0.resume() }
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
        case .reconnectFailed:
            goOffline("gave up reconnecting")
        case .event(let received):
            handle(received)
        }
    }

    private func goOffline(_ reason: String) {
        apply(.offline(reason: reason))
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
            apply(.offline(reason: message))
            forgetSession(andUsername: false, reason: message)
            return
        }
        let random = self.random()
        let (attempt, delay) = inner.withLock { state -> (Int, Duration) in
            state.refusals += 1
            let delay = refusalRetry.delay(forAttempt: state.refusals, random: random)
            state.apply(.refused(reason: message, attempt: state.refusals, retryIn: delay))
            return (state.refusals, delay)
        }
        let clock = self.clock
        let retry = Task { [weak self] in
            do { try await clock.sleep(for: delay, tolerance: nil) } catch { return }
            guard let self, self.inner.withLock({ $0.refusals == attempt && $0.retry != nil }) else { return }
            await self.connect(afterRefusal: true)
        }
        inner.withLock { state in
            state.retry?.cancel()
            state.retry = retry
        }
    }

    private func handle(_ event: ReceivedEvent) {
        let (decoded, problems) = ServerEvent.decode(name: event.name, arguments: event.arguments, at: Date())
        for problem in problems { logger.warning("\(problem)") }
        switch decoded {
        case .chat(let chatEvent)?:
            apply(chatEvent)
        case .session(let payload)?:
            let session = inner.withLock { state in
                let session = StoredSession(sessionID: payload.sessionID, userID: payload.userID, username: state.username ?? payload.userID)
                // Logged in: refusals in a row are over (not at CONNECT, which a server
                // could accept and then refuse, to make us retry without backoff).
                state.refusals = 0
                state.session = session
                state.apply(.session(userID: session.userID, username: session.username))
                return session
            }
            do {
                try store.save(session, for: server)
            } catch {
                logger.error("\(error)")
                apply(.warning(error.description))
            }
            restoreHistory(of: session.userID)
        case nil:
            if problems.isEmpty { logger.debug("ignoring event \(event.name)") }
        }
    }

    private func apply(_ event: ChatEvent) {
        inner.withLock { $0.apply(event) }
    }

    /// The newest messages kept of each conversation, once per login: memory and startup go
    /// with the number of conversations, not the length of the history.
    static let restoredMessagesPerConversation = 200

    private static func chatMessage(_ stored: StoredMessage) -> ChatMessage {
        ChatMessage(content: stored.content, fromSelf: stored.fromSelf, delivery: stored.fromSelf ? .sent : .received, at: stored.at)
    }

    /// Brings the next older kept messages of a conversation into the state (scrolling up
    /// reached the oldest shown). Returns whether there were any.
    @discardableResult
    public func loadOlder(of peer: String) -> Bool {
        guard let (history, me, oldest) = inner.withLock({ state -> (HistoryStore, String, Int64)? in
            guard let history = state.history, let me = state.chat.selfID, case .some(.some(let oldest)) = state.oldestRestored[peer] else { return nil }
            return (history, me, oldest)
        }) else { return false }
        do {
            let older = try history.lastMessages(server: server.value, me: me, peer: peer, before: oldest, limit: Self.restoredMessagesPerConversation)
            inner.withLock { state in
                state.restored(older, of: peer)
                if !older.isEmpty { state.apply(.restoredOlder(userID: peer, messages: older.map(Self.chatMessage))) }
            }
            return !older.isEmpty
        } catch {
            apply(.warning("the history could not be read: \(error)"))
            return false
        }
    }

    /// Loads older kept messages of a conversation until the one with history id `id` is in
    /// the state (a search hit being opened), at most `maximumPages` pages.
    public func loadOlder(of peer: String, through id: Int64, maximumPages: Int = 50) {
        for _ in 0..<maximumPages {
            let more = inner.withLock { state -> Bool in
                guard case .some(.some(let oldest)) = state.oldestRestored[peer] else { return false }
                return oldest > id
            }
            guard more, loadOlder(of: peer) else { return }
        }
    }

    /// Every message that matches `query` (`MessageSearch`), newest first, at most
    /// `MessageSearch.maximumHits`: the local history (after what waits to be written is
    /// written), or without one what is in memory.
    public func search(_ query: String) async -> [SearchHit] {
        let query = MessageSearch.normalized(query)
        let (history, me) = inner.withLock { ($0.history, $0.chat.selfID) }
        guard let history, let me else { return read { $0.search(query) } }
        await history.flush()
        do {
            let matcher = MessageSearch.Matcher(query)
            let found = try history.search(server: server.value, me: me, limit: MessageSearch.maximumHits) { matcher.matches($0) }
            // Names as the server says them now, else as the history last saw them; and what is
            // in memory but not in the history (a part III server's own history of a
            // conversation), each message once.
            return read { chat in
                var hits = found.map { hit in
                    SearchHit(
                        userID: hit.message.peer, username: chat.user(hit.message.peer)?.username ?? hit.username,
                        message: Self.chatMessage(hit.message), historyID: hit.message.id
                    )
                }
                var kept: [SearchHit.Key: Int] = [:]
                for hit in hits { kept[hit.key, default: 0] += 1 }
                for hit in chat.search(query) {
                    if let count = kept[hit.key], count > 0 {
                        kept[hit.key] = count - 1
                    } else {
                        hits.append(hit)
                    }
                }
                hits.sort { $0.message.at > $1.message.at }
                return Array(hits.prefix(MessageSearch.maximumHits))
            }
        } catch {
            apply(.warning("the history could not be searched: \(error)"))
            return read { $0.search(query) }
        }
    }

    private func restoreHistory(of me: String) {
        guard let history = inner.withLock({ state -> HistoryStore? in
            guard state.restoredFor != me else { return nil }
            state.restoredFor = me
            return state.history
        }) else { return }
        do {
            for peer in try history.peers(server: server.value, me: me) {
                let stored = try history.lastMessages(server: server.value, me: me, peer: peer.userID, limit: Self.restoredMessagesPerConversation)
                inner.withLock { $0.restored(stored, of: peer.userID) }
                apply(.restored(UserEntry(userID: peer.userID, username: peer.username, connected: false), messages: stored.map(Self.chatMessage)))
            }
        } catch {
            logger.error("the history could not be read: \(error)")
            apply(.warning("the history could not be read: \(error)"))
        }
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
