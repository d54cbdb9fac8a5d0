public import Chat
import Synchronization

/// A user's session as the server keeps it. `sessionID` is the bearer secret; `userID` is public.
public struct StoredSession: Sendable, Equatable {
    public var sessionID: String
    public var userID: String
    public var username: String
    public var connected: Bool

    public init(sessionID: String, userID: String, username: String, connected: Bool) {
        self.sessionID = sessionID
        self.userID = userID
        self.username = username
        self.connected = connected
    }
}

/// Messages are kept as `Chat.PrivateMessage`, the value the client decodes from the wire.
/// Where sessions and messages live: in memory, or in SQLite with `--data`.
/// Implementations are thread-safe and synchronous (handlers call them inline).
public protocol ChatStore: Sendable {
    func session(id sessionID: String) throws -> StoredSession?
    func hasUser(_ userID: String) throws -> Bool
    /// Inserts or replaces by sessionID. A new session goes after every older one.
    func save(_ session: StoredSession) throws
    /// Every session, oldest first.
    func allSessions() throws -> [StoredSession]
    func save(_ message: PrivateMessage) throws
    /// Every message from or to this user, oldest first.
    func messages(of userID: String) throws -> [PrivateMessage]
    /// Makes everything durable (a no-op in memory).
    func close() throws
}

/// The store the guide's server has: nothing survives a restart.
public final class MemoryChatStore: ChatStore {
    private let state = Mutex(State())

    struct State {
        var sessions: [StoredSession] = []
        var indexBySessionID: [String: Int] = [:]
        var userIDs: Set<String> = []
        /// Every message in arrival order, in chunks of `chunkSize`. One array would copy all
        /// it holds, and fault in pages for twice as much, each time it doubles: at 500,000
        /// messages that is tens of milliseconds with the lock held, which every sender on
        /// every event loop waits out. Chunks never move what they hold.
        var chunks: [[PrivateMessage]] = []
        /// Positions (in arrival order) of each user's messages.
        var messagesByUser: [String: [Int]] = [:]

        static let chunkSize = 1024

        mutating func append(_ message: PrivateMessage) -> Int {
            if chunks.isEmpty || chunks[chunks.count - 1].count == Self.chunkSize {
                var chunk: [PrivateMessage] = []
                chunk.reserveCapacity(Self.chunkSize)
                chunks.append(chunk)
            }
            chunks[chunks.count - 1].append(message)
            return (chunks.count - 1) * Self.chunkSize + chunks[chunks.count - 1].count - 1
        }

        func message(at position: Int) -> PrivateMessage {
            chunks[position / Self.chunkSize][position % Self.chunkSize]
        }
    }

    public init() {}

    public func session(id sessionID: String) -> StoredSession? {
        state.withLock { state in state.indexBySessionID[sessionID].map { state.sessions[$0] } }
    }

    public func hasUser(_ userID: String) -> Bool {
        state.withLock { $0.userIDs.contains(userID) }
    }

    public func save(_ session: StoredSession) {
        state.withLock { state in
            if let index = state.indexBySessionID[session.sessionID] {
                state.sessions[index] = session
            } else {
                state.indexBySessionID[session.sessionID] = state.sessions.count
                state.sessions.append(session)
            }
            state.userIDs.insert(session.userID)
        }
    }

    public func allSessions() -> [StoredSession] {
        state.withLock { $0.sessions }
    }

    public func save(_ message: PrivateMessage) {
        state.withLock { state in
            let index = state.append(message)
            state.messagesByUser[message.from, default: []].append(index)
            if message.to != message.from { state.messagesByUser[message.to, default: []].append(index) }
        }
    }

    public func messages(of userID: String) -> [PrivateMessage] {
        state.withLock { state in (state.messagesByUser[userID] ?? []).map { state.message(at: $0) } }
    }

    public func close() {}
}
