import ChatSchema
import EngineIOServer
import JSON
import NIOCore

/// A user's session as the server keeps it. `sessionID` is the bearer secret; `userID` is
/// public. `lastSeen` (seconds since 1970) is when the user last connected or left: a user
/// away for longer than the session lifetime is forgotten. This type's descriptions (what
/// string interpolation, `print`, `dump`, a log line and a test failure show) leave the
/// secret out.
public struct StoredSession: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
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

    public var description: String {
        "session of \(username) (userID \(userID), \(connected ? "connected" : "last seen \(lastSeen)"))"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: ["userID": userID, "username": username, "connected": connected, "lastSeen": lastSeen])
    }
}

/// Every known user, as a plain value: their sessions, whether they are online, their
/// message rate bucket, and their `users` entry ready to send. Bounded: at most `maxUsers`,
/// and a user offline for longer than the session lifetime is forgotten (`expire`).
///
/// The entries are also kept in one array in the order of the `users` list, so that a login,
/// which sends the whole list, joins them without a lookup per user.
struct UserDirectory {
    struct User {
        var session: StoredSession
        /// Where the user's entry is in `entries` (the order of creation).
        var position: Int
        /// Sockets of this user connected now, on any connection.
        var sockets = 0
        /// Private messages this user may send: one bucket for all their sockets, kept
        /// across reconnections.
        var messages: TokenBucket?
        /// Logins this user may make (see `ChatApplication.Options.loginsPerMinutePerUser`).
        var logins: TokenBucket?
        /// The address that created the user (counted against `maxUsersPerAddress`); nil for
        /// users read from a store.
        var createdFrom: String?

        init(_ session: StoredSession, position: Int) {
            self.session = session
            self.position = position
        }

        mutating func setConnected(_ connected: Bool, at now: Int64) {
            session.lastSeen = now
            session.connected = connected
        }

        /// The `users` entry without history (`"messages":[]`).
        var entry: JSONFragment {
            JSONFragment(UserEntry(userID: session.userID, username: session.username, connected: session.connected, messages: []).json)
        }
    }

    private(set) var users: [String: User] = [:]
    private var userIDBySession: [String: String] = [:]
    /// Each user's entry, serialized once per change, in the order the users were created:
    /// the order of every `users` list.
    private var entries: [JSONFragment] = []
    /// Users each address created and that are still known.
    private var createdByAddress: [String: Int] = [:]

    var count: Int { users.count }

    /// How many known users an address created.
    func created(from address: String) -> Int { createdByAddress[address, default: 0] }

    func user(withSession sessionID: String) -> User? {
        userIDBySession[sessionID].flatMap { users[$0] }
    }

    func contains(_ userID: String) -> Bool { users[userID] != nil }

    subscript(userID: String) -> User? { users[userID] }

    /// Changes a user in place (one lookup, no copy); nil when there is no such user. A
    /// change of presence is written into the user's entry.
    mutating func update<T>(_ userID: String, _ change: (inout User) -> T) -> T? {
        guard let index = users.index(forKey: userID) else { return nil }
        let wasConnected = users.values[index].session.connected
        let result = change(&users.values[index])
        let user = users.values[index]
        if user.session.connected != wasConnected { entries[user.position] = user.entry }
        return result
    }

    mutating func add(_ session: StoredSession, from address: String? = nil) {
        guard users[session.userID] == nil else { return }
        var user = User(session, position: entries.count)
        user.createdFrom = address
        if let address { createdByAddress[address, default: 0] += 1 }
        users[session.userID] = user
        userIDBySession[session.sessionID] = session.userID
        entries.append(user.entry)
    }

    /// Forgets the users for whom `isExpired` holds; their user IDs.
    mutating func removeAll(where isExpired: (User) -> Bool) -> [String] {
        let gone = users.values.filter(isExpired).map(\.session.userID)
        guard !gone.isEmpty else { return [] }
        for userID in gone {
            guard let user = users.removeValue(forKey: userID) else { continue }
            userIDBySession.removeValue(forKey: user.session.sessionID)
            if let address = user.createdFrom {
                createdByAddress[address, default: 1] -= 1
                if createdByAddress[address] == 0 { createdByAddress.removeValue(forKey: address) }
            }
        }
        // The survivors keep their order, closed up.
        let survivors = users.values.sorted { $0.position < $1.position }.map(\.session.userID)
        entries = []
        entries.reserveCapacity(survivors.count)
        for (position, userID) in survivors.enumerated() {
            users[userID]!.position = position
            entries.append(users[userID]!.entry)
        }
        return gone
    }

    /// The `users` list's parts: every entry (from its ready fragment, or with the history
    /// `history` has for it), to be joined by `UsersList.joined` outside the lock: the
    /// entries are taken as they are (the array is copied only if it changes meanwhile), and
    /// joining them, the login's O(users) work, does not hold up the other event loop.
    func usersList(history: [String: [JSONFragment]]) -> UsersList {
        var list = UsersList(entries: entries)
        for (userID, messages) in history {
            guard let user = users[userID] else { continue }
            let session = user.session
            list.replacements.append((user.position, UserEntry(userID: session.userID, username: session.username, connected: session.connected)
                .json(serializedMessages: messages)))
        }
        return list
    }

    struct UsersList {
        var entries: [JSONFragment]
        var replacements: [(position: Int, entry: JSONFragment)] = []

        var joined: JSONFragment {
            guard !replacements.isEmpty else { return .array(entries) }
            var list = entries
            for (position, entry) in replacements { list[position] = entry }
            return .array(list)
        }
    }
}
