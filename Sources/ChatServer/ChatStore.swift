/// A change to what the server keeps, for a store to write.
public enum StoreChange: Sendable, Equatable {
    /// Insert or replace, by sessionID.
    case session(StoredSession)
    /// A user whose session expired: their session and every message from or to them.
    case forgetUser(userID: String)
    case message(MessageLog.Entry)
    /// Messages dropped by the retention bounds, by seq.
    case dropMessages([Int64])
}

/// What a store holds, read once when the server starts.
public struct StoredState: Sendable {
    /// Oldest first.
    public var sessions: [StoredSession]
    /// In order of seq.
    public var messages: [MessageLog.Entry]

    public init(sessions: [StoredSession] = [], messages: [MessageLog.Entry] = []) {
        self.sessions = sessions
        self.messages = messages
    }
}

/// Where sessions and messages outlive the process. The server holds what it keeps in
/// memory (bounded: `UserDirectory`, `MessageLog`) and serves every request from there; a
/// store is written behind it. `record` never blocks: the writing happens off the event
/// loops, batched.
public protocol ChatStore: Sendable {
    /// Whether anything recorded outlives the process: when not, the server records nothing
    /// (and does not keep track of what its bounds drop).
    var isDurable: Bool { get }
    /// Everything kept, at start.
    func load() async throws -> StoredState
    /// Queues changes for writing, in order; returns at once.
    func record(_ changes: [StoreChange])
    /// Writes everything recorded, and makes it durable.
    func close() async throws
    /// Queues changes as `record` does, and returns a wait for them to be written (true) or
    /// given up (false: shed, or the store could not write them in time); nil when the store
    /// does not wait (an acknowledgement then goes out at once).
    func recordAwaitingWrite(_ changes: [StoreChange]) -> (@Sendable () async -> Bool)?
}

extension ChatStore {
    public func recordAwaitingWrite(_ changes: [StoreChange]) -> (@Sendable () async -> Bool)? {
        record(changes)
        return nil
    }
}

/// The guide's store: nothing outlives the process.
public struct MemoryChatStore: ChatStore {
    public init() {}
    public var isDurable: Bool { false }
    public func load() -> StoredState { StoredState() }
    public func record(_ changes: [StoreChange]) {}
    public func close() {}
}
