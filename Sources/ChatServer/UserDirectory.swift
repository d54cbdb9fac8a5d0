import ChatSchema
import EngineIOServer
import JSON
import NIOCore

/// A user's session as the server keeps it. `sessionID` is the bearer secret; `userID` is
/// public. `lastSeen` (seconds since 1970) is when the user last connected or left: a user
/// away for longer than the session lifetime is forgotten.
public struct StoredSession: Sendable, Equatable {
    public var sessionID: String
    public var userID: String
    public var username: String
    public var connected: Bool
    public var lastSeen: Int64

    public init(sessionID: String, userID: String, username: String, connected: Bool, lastSeen: Int64) {
        self.sessionID = sessionID
        self.userID = userID
        self.username = username
        self.connected = connected
        self.lastSeen = lastSeen
    }
}

/// Every known user, as a plain value: their sessions, whether they are online, their
/// message rate bucket, and their `users` entry ready to send. Bounded: at most `maxUsers`,
/// and a user offline for longer than the session lifetime is forgotten (`expire`).
struct UserDirectory {
    struct User {
        var session: StoredSession
        /// Sockets of this user connected now, on any connection.
        var sockets = 0
        /// Private messages this user may send: one bucket for all their sockets, kept
        /// across reconnections.
        var messages: TokenBucket?
        /// Logins this user may make (see `ChatApplication.Options.loginsPerMinutePerUser`).
        var logins: TokenBucket?
        /// The `users` entry without history (`"messages":[]`), serialized once per change.
        var entry: JSONFragment

        init(_ session: StoredSession) {
            self.session = session
            self.entry = JSONFragment(UserEntry(userID: session.userID, username: session.username, connected: session.connected, messages: []).json)
        }

        mutating func setConnected(_ connected: Bool, at now: Int64) {
            session.lastSeen = now
            guard session.connected != connected else { return }
            session.connected = connected
            entry = JSONFragment(UserEntry(userID: session.userID, username: session.username, connected: connected, messages: []).json)
        }
    }

    private(set) var users: [String: User] = [:]
    private var userIDBySession: [String: String] = [:]
    /// User IDs in the order the users were created: the order of every `users` list.
    private(set) var order: [String] = []

    var count: Int { users.count }

    func user(withSession sessionID: String) -> User? {
        userIDBySession[sessionID].flatMap { users[$0] }
    }

    func contains(_ userID: String) -> Bool { users[userID] != nil }

    subscript(userID: String) -> User? { users[userID] }

    /// Changes a user in place (one lookup, no copy); nil when there is no such user.
    mutating func update<T>(_ userID: String, _ change: (inout User) -> T) -> T? {
        guard let index = users.index(forKey: userID) else { return nil }
        return change(&users.values[index])
    }

    mutating func add(_ session: StoredSession) {
        guard users[session.userID] == nil else { return }
        users[session.userID] = User(session)
        userIDBySession[session.sessionID] = session.userID
        order.append(session.userID)
    }

    /// Forgets the users for whom `isExpired` holds; their user IDs.
    mutating func removeAll(where isExpired: (User) -> Bool) -> [String] {
        let gone = users.values.filter(isExpired).map(\.session.userID)
        guard !gone.isEmpty else { return [] }
        for userID in gone {
            guard let user = users.removeValue(forKey: userID) else { continue }
            userIDBySession.removeValue(forKey: user.session.sessionID)
        }
        let goneSet = Set(gone)
        order.removeAll { goneSet.contains($0) }
        return gone
    }

    /// The `users` list, each entry from its ready fragment unless `history` has messages
    /// for it.
    func usersList(history: [String: [JSONFragment]]) -> JSONFragment {
        var entries: [JSONFragment] = []
        entries.reserveCapacity(order.count)
        for userID in order {
            guard let user = users[userID] else { continue }
            if let messages = history[userID] {
                let session = user.session
                entries.append(UserEntry(userID: session.userID, username: session.username, connected: session.connected).json(serializedMessages: messages))
            } else {
                entries.append(user.entry)
            }
        }
        return .array(entries)
    }
}
