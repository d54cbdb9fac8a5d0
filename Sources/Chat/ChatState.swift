public import DequeModule
public import Foundation

/// One message of a conversation.
public struct ChatMessage: Sendable, Hashable {
    public enum Delivery: UInt8, Sendable, Hashable {
        /// From the peer (or from this user's other client).
        case received
        /// Typed while offline: held until the connection is back.
        case queued
        /// Handed to the server.
        case sent
    }

    public var content: String
    public var fromSelf: Bool
    public var delivery: Delivery
    /// When this client received (or sent) it.
    public var at: Date

    public init(content: String, fromSelf: Bool, delivery: Delivery, at: Date) {
        self.content = content
        self.fromSelf = fromSelf
        self.delivery = delivery
        self.at = at
    }
}

/// A user and the conversation with them.
public struct ChatUser: Sendable, Hashable, Identifiable {
    public let id: String
    public var username: String
    public var isSelf: Bool
    public var isConnected: Bool
    /// Oldest first. A deque, so a history cap drops the oldest in O(1).
    public var messages: Deque<ChatMessage>
    /// Messages that arrived while the conversation was not selected.
    public var unreadCount: Int
    /// Messages of ours still waiting for the connection.
    public var queuedCount: Int
    /// How many messages left the front of `messages` so far (the history cap, or a history
    /// replaced by the server's): `droppedCount + i` names message `i` for as long as it stays.
    public var droppedCount: Int

    public init(id: String, username: String, isSelf: Bool, isConnected: Bool) {
        self.id = id
        self.username = username
        self.isSelf = isSelf
        self.isConnected = isConnected
        self.messages = []
        self.unreadCount = 0
        self.queuedCount = 0
        self.droppedCount = 0
    }
}

/// The state of the connection, as the person sees it.
public enum ConnectionStatus: Sendable, Hashable {
    case connecting
    case connected
    case reconnecting(attempt: Int, delay: Duration)
    /// The server refused the login for a reason that may pass (PROTOCOL.md: any but
    /// `invalid username`): the session is kept, and the next try comes after `retryIn`. The
    /// status (with the server's reason) lasts through that try, until it is taken or refused.
    case refused(reason: String, attempt: Int, retryIn: Duration)
    case offline(reason: String)

    /// How long after this status came the next attempt to connect is made, when one is due.
    public var nextAttemptIn: Duration? {
        switch self {
        case .reconnecting(_, let delay), .refused(_, _, let delay): return delay
        case .connecting, .connected, .offline: return nil
        }
    }
}

/// One of this user's messages, as it was handed to the socket (or queued for it). `id`
/// counts from 0 per client, so that a queued message can be matched when it is sent.
public struct SentMessage: Sendable, Hashable {
    public let id: Int
    public let to: String
    public let content: String
    public let at: Date

    public init(id: Int, to: String, content: String, at: Date) {
        self.id = id
        self.to = to
        self.content = content
        self.at = at
    }
}

/// Everything that happens to the chat, from the network or from the person: the one
/// vocabulary the chat client reports in, and the only input of `ChatState.apply(_:)`.
public enum ChatEvent: Sendable, Hashable {
    case connecting
    /// Connected; the messages queued while offline (`flushed`) have been handed to the server.
    case connected(flushed: [SentMessage])
    case reconnecting(attempt: Int, delay: Duration)
    case refused(reason: String, attempt: Int, retryIn: Duration)
    case offline(reason: String)
    /// The server's `session`: who "self" is.
    case session(userID: String, username: String)
    case users([UserEntry])
    case userConnected(UserEntry)
    case userDisconnected(userID: String)
    case messageReceived(PrivateMessage, at: Date)
    /// This user sent a message (emitted, or queued while offline).
    case messageSent(SentMessage, queued: Bool)
    case select(userID: String?)
    /// No identity any more (a logout, or the server's `invalid username`), or none yet: back
    /// to no self and no users, and a username is needed. `reason` is the server's refusal.
    case loggedOut(reason: String?)
    /// Something the person should know that did not stop the client (a session file that
    /// could not be written, say). It changes nothing in the state.
    case warning(String)
    /// A conversation kept on this machine (the local history), after the login: the peer,
    /// added as offline when the server has not listed them, and the newest messages kept.
    /// A conversation that has messages already (a part III server's history came first) is
    /// left as the server has it.
    case restored(UserEntry, messages: [ChatMessage])
    /// Older kept messages of a conversation, asked for by scrolling up: they go before what
    /// is shown (within the history cap), and every message shown keeps its position number.
    case restoredOlder(userID: String, messages: [ChatMessage])
}

/// The chat as the reference client keeps it (PROTOCOL.md, "client side"), plus
/// unread counts, receive times, queued messages and an optional history cap.
///
/// A plain value: `apply(_:)` is the only way it changes, and it is tested
/// event by event without sockets or a terminal.
public struct ChatState: Sendable {
    public private(set) var selfID: String?
    public private(set) var selfUsername: String?
    public private(set) var connection: ConnectionStatus = .connecting
    public private(set) var selectedUserID: String?
    /// Most messages kept per conversation; nil keeps everything.
    public let historyLimit: Int?

    private var usersByID: [String: ChatUser] = [:]
    /// Self first, then by username (then userID): kept as users change, O(log n) each.
    public private(set) var order = UserOrder()
    /// Users shown online, kept as they change (the list's header counts them every frame).
    public private(set) var onlineCount = 0
    /// Unread messages in every conversation, kept as they change (the terminal's title shows
    /// it every frame).
    public private(set) var totalUnread = 0
    /// Whether the peers' presence is the server's word: not while we are not connected, and
    /// after a reconnection not until the server's `users` list says it again.
    public private(set) var presenceKnown = false
    /// The users of each name skeleton (`Username.skeleton`): more than one is a lookalike.
    /// Kept as the one user of a skeleton (no allocation per user), or the set of them when
    /// there are several: every change is O(1), however many lookalikes a server makes.
    private var namesakes: [String: Namesakes] = [:]
    /// Each user's skeleton, computed once per name.
    private var skeletons: [String: String] = [:]

    private enum Namesakes {
        case one(String)
        case many(Set<String>)
    }

    public init(historyLimit: Int? = nil) {
        self.historyLimit = historyLimit.map { max($0, 1) }
    }

    /// Users in display order: self first, then by username.
    public var users: [ChatUser] { order.compactMap { usersByID[$0] } }

    public func user(_ id: String) -> ChatUser? { usersByID[id] }

    public var selectedUser: ChatUser? { selectedUserID.flatMap { usersByID[$0] } }

    /// Whether another user's name looks the same as this user's (the same skeleton: it
    /// differs only by invisible characters, Unicode form or case): then the two are told
    /// apart by their IDs wherever a name is shown.
    public func hasLookalike(_ userID: String) -> Bool {
        guard let skeleton = skeletons[userID], case .many? = namesakes[skeleton] else { return false }
        return true
    }

    /// The users whose names look like `name` (the same skeleton), in order.
    public func users(lookingLike name: String) -> [ChatUser] {
        switch namesakes[Username.skeleton(name)] {
        case nil: return []
        case .one(let id)?: return usersByID[id].map { [$0] } ?? []
        case .many(let ids)?: return ids.compactMap { usersByID[$0] }.sorted { Self.key($0) < Self.key($1) }
        }
    }

    /// A user's position in `order`, in O(log n).
    public func position(of userID: String) -> Int? {
        usersByID[userID].flatMap { order.position(of: Self.key($0)) }
    }

    static func key(_ user: ChatUser) -> UserOrder.Key {
        UserOrder.Key(isSelf: user.isSelf, username: user.username, userID: user.id)
    }

    /// The one user whose name looks like `name`; nil when there is none, or more than one
    /// (an impostor may have taken a lookalike of a name while its owner is away: a
    /// message by name is never sent to a guess).
    public func user(named name: String) -> ChatUser? {
        let matches = users(lookingLike: name)
        return matches.count == 1 ? matches[0] : nil
    }


    // MARK: The reducer

    public mutating func apply(_ event: ChatEvent) {
        switch event {
        case .connecting:
            connection = .connecting
        case .connected:
            connection = .connected
            setSelfConnected(true)
            markQueuedAsSent()
        case .reconnecting(let attempt, let delay):
            connection = .reconnecting(attempt: attempt, delay: delay)
            setSelfConnected(false)
            presenceKnown = false
        case .refused(let reason, let attempt, let retryIn):
            connection = .refused(reason: reason, attempt: attempt, retryIn: retryIn)
            setSelfConnected(false)
            presenceKnown = false
        case .offline(let reason):
            connection = .offline(reason: reason)
            setSelfConnected(false)
            presenceKnown = false
        case .session(let userID, let username):
            if let old = selfID, old != userID { replaceSelf(old, with: userID) }
            // Only the old self and the new one change places.
            for id in [selfID, userID].compactMap({ $0 }) where usersByID[id] != nil {
                change(id) { $0.isSelf = (id == userID) }
            }
            selfID = userID
            selfUsername = username
            upsert(UserEntry(userID: userID, username: username, connected: connection == .connected))
        case .users(let entries):
            presenceKnown = true
            // The users not known yet go into the order together (one sort for a big list).
            var newcomers: [UserOrder.Key] = []
            var pending: [String: Int] = [:]
            for entry in entries {
                if let index = pending[entry.userID] {
                    // Listed twice (a careless or hostile server): the last entry wins.
                    let wasConnected = usersByID[entry.userID]!.isConnected
                    if !entry.username.isEmpty, entry.username != usersByID[entry.userID]!.username {
                        forgetName(of: entry.userID)
                        noteName(entry.username, of: entry.userID)
                        usersByID[entry.userID]!.username = entry.username
                    }
                    usersByID[entry.userID]!.isConnected = entry.connected
                    if wasConnected != entry.connected { onlineCount += entry.connected ? 1 : -1 }
                    newcomers[index] = Self.key(usersByID[entry.userID]!)
                    if let history = entry.messages { replaceHistory(of: entry.userID, with: history) }
                } else if usersByID[entry.userID] == nil {
                    let user = ChatUser(id: entry.userID, username: entry.username, isSelf: entry.userID == selfID, isConnected: entry.connected)
                    usersByID[user.id] = user
                    if user.isConnected { onlineCount += 1 }
                    noteName(user.username, of: user.id)
                    pending[user.id] = newcomers.count
                    newcomers.append(Self.key(user))
                    if let history = entry.messages { replaceHistory(of: entry.userID, with: history) }
                } else {
                    upsert(entry)
                }
            }
            order.insertNew(contentsOf: newcomers)
            // The server's whole list: anyone missing from it is not connected (a restarted
            // server that forgot them, say), rather than shown online forever.
            let listed = Set(entries.map(\.userID))
            for id in usersByID.keys where !listed.contains(id) && id != selfID && usersByID[id]!.isConnected {
                change(id) { $0.isConnected = false }
            }
        case .userConnected(let entry):
            // PROTOCOL.md: if known, mark online; else add it with an empty conversation. A part
            // III server sends `messages: []` here: that is not the conversation, which a peer
            // coming back must not wipe.
            upsert(UserEntry(userID: entry.userID, username: entry.username, connected: true))
        case .userDisconnected(let userID):
            if usersByID[userID] != nil { change(userID) { $0.isConnected = false } }
        case .messageReceived(let message, let at):
            receive(message, at: at)
        case .messageSent(let message, let queued):
            let slot = self.slot(for: message.to)
            append(ChatMessage(content: message.content, fromSelf: true, delivery: queued ? .queued : .sent, at: message.at), at: slot)
            if queued { usersByID.values[slot].queuedCount += 1 }
        case .select(let userID):
            guard let userID, usersByID[userID] != nil else {
                selectedUserID = nil
                return
            }
            selectedUserID = userID
            totalUnread -= usersByID[userID]!.unreadCount
            usersByID[userID]!.unreadCount = 0
        case .loggedOut:
            // Who we were is gone; whether we are connected is not.
            let connection = self.connection
            self = ChatState(historyLimit: historyLimit)
            self.connection = connection
        case .warning:
            break
        case .restored(let entry, let messages):
            if usersByID[entry.userID] == nil {
                add(ChatUser(id: entry.userID, username: entry.username, isSelf: entry.userID == selfID, isConnected: false))
            }
            guard usersByID[entry.userID]!.messages.isEmpty else { return }
            usersByID[entry.userID]!.messages = Deque(messages.suffix(historyLimit ?? Int.max))
        case .restoredOlder(let userID, let messages):
            guard let user = usersByID[userID] else { return }
            let room = (historyLimit ?? Int.max) - user.messages.count
            let older = messages.suffix(max(room, 0))
            guard !older.isEmpty else { return }
            usersByID[userID]!.messages.insert(contentsOf: older, at: usersByID[userID]!.messages.startIndex)
            // `droppedCount + index` names a message: the ones shown keep their numbers.
            usersByID[userID]!.droppedCount -= older.count
        }
    }

    // MARK: Helpers

    /// A server that forgot our session gave us a new userID: the old "self" is still us,
    /// so its conversation (notes to self) moves over instead of showing as a stranger.
    private mutating func replaceSelf(_ old: String, with new: String) {
        guard let previous = usersByID.removeValue(forKey: old) else { return }
        order.remove(Self.key(previous))
        if previous.isConnected { onlineCount -= 1 }
        totalUnread -= previous.unreadCount
        forgetName(of: old)
        if usersByID[new] != nil {
            change(new) { current in
                current.messages.insert(contentsOf: previous.messages, at: current.messages.startIndex)
                current.queuedCount += previous.queuedCount
            }
        } else {
            var moved = ChatUser(id: new, username: previous.username, isSelf: true, isConnected: previous.isConnected)
            moved.messages = previous.messages
            moved.queuedCount = previous.queuedCount
            add(moved)
        }
        if selectedUserID == old { selectedUserID = new }
    }

    /// `users` / `user connected`: update a known user, add an unknown one.
    private mutating func upsert(_ entry: UserEntry) {
        if usersByID[entry.userID] != nil {
            change(entry.userID) { user in
                user.isConnected = entry.connected
                if !entry.username.isEmpty { user.username = entry.username }
            }
        } else {
            add(ChatUser(id: entry.userID, username: entry.username, isSelf: entry.userID == selfID, isConnected: entry.connected))
        }
        if let history = entry.messages {
            replaceHistory(of: entry.userID, with: history)
        }
    }

    /// Part III: the server's history replaces ours, with fromSelf computed.
    private mutating func replaceHistory(of userID: String, with history: [PrivateMessage]) {
        var messages = Deque<ChatMessage>()
        let now = Date()
        for message in history.suffix(historyLimit ?? Int.max) {
            messages.append(ChatMessage(content: message.content, fromSelf: message.from == selfID, delivery: message.from == selfID ? .sent : .received, at: now))
        }
        // Keep what is still waiting to be sent.
        if let user = usersByID[userID], user.queuedCount > 0 {
            messages.append(contentsOf: user.messages.filter { $0.delivery == .queued })
        }
        // Everything before counts as gone: positions into the old history mean nothing now.
        usersByID[userID]!.droppedCount += usersByID[userID]!.messages.count
        usersByID[userID]!.messages = messages
    }

    private mutating func receive(_ message: PrivateMessage, at: Date) {
        let fromSelf = message.from == selfID
        let peer = fromSelf ? message.to : message.from
        let slot = self.slot(for: peer)
        append(ChatMessage(content: message.content, fromSelf: fromSelf, delivery: fromSelf ? .sent : .received, at: at), at: slot)
        if peer != selectedUserID {
            usersByID.values[slot].unreadCount += 1
            totalUnread += 1
        }
    }

    /// Where a user's entry is. A message from (or to) a user not in the list creates
    /// that user, named by its userID until the server tells more, rather than vanishing.
    /// The hot path of a busy chat: one hash lookup, then updates in place.
    private mutating func slot(for userID: String) -> [String: ChatUser].Index {
        if let slot = usersByID.index(forKey: userID) { return slot }
        upsert(UserEntry(userID: userID, username: userID, connected: true))
        return usersByID.index(forKey: userID)!
    }

    private mutating func append(_ message: ChatMessage, at slot: [String: ChatUser].Index) {
        usersByID.values[slot].messages.append(message)
        if let limit = historyLimit {
            while usersByID.values[slot].messages.count > limit {
                let dropped = usersByID.values[slot].messages.removeFirst()
                usersByID.values[slot].droppedCount += 1
                if dropped.delivery == .queued { usersByID.values[slot].queuedCount -= 1 }
            }
        }
    }

    private mutating func setSelfConnected(_ connected: Bool) {
        guard let selfID, usersByID[selfID] != nil else { return }
        change(selfID) { $0.isConnected = connected }
    }

    /// A new user, in the table and in its place in the order.
    private mutating func add(_ user: ChatUser) {
        usersByID[user.id] = user
        order.insertNew(Self.key(user))
        if user.isConnected { onlineCount += 1 }
        noteName(user.username, of: user.id)
    }

    private mutating func noteName(_ username: String, of userID: String) {
        let skeleton = Username.skeleton(username)
        skeletons[userID] = skeleton
        switch namesakes[skeleton] {
        case nil: namesakes[skeleton] = .one(userID)
        case .one(let other)?: namesakes[skeleton] = .many([other, userID])
        case .many(var ids)?:
            namesakes[skeleton] = nil  // so that the set is uniquely referenced
            ids.insert(userID)
            namesakes[skeleton] = .many(ids)
        }
    }

    private mutating func forgetName(of userID: String) {
        guard let skeleton = skeletons.removeValue(forKey: userID) else { return }
        switch namesakes.removeValue(forKey: skeleton) {
        case .many(var ids)?:
            ids.remove(userID)
            if ids.count == 1 { namesakes[skeleton] = .one(ids.first!) } else if !ids.isEmpty { namesakes[skeleton] = .many(ids) }
        case .one(let id)? where id != userID:
            namesakes[skeleton] = .one(id)
        case .one?, nil:
            break
        }
    }

    /// Changes a known user's name, self-ness or presence, keeping the order and the count
    /// of those online: O(log n) when their place changes, O(1) otherwise.
    private mutating func change(_ userID: String, _ body: (inout ChatUser) -> Void) {
        guard let slot = usersByID.index(forKey: userID) else { return }
        let before = Self.key(usersByID.values[slot])
        let wasConnected = usersByID.values[slot].isConnected
        body(&usersByID.values[slot])
        let after = Self.key(usersByID.values[slot])
        let isConnected = usersByID.values[slot].isConnected
        if before != after { order.move(before, to: after) }
        if before.username != after.username {
            forgetName(of: userID)
            noteName(after.username, of: userID)
        }
        if wasConnected != isConnected { onlineCount += isConnected ? 1 : -1 }
    }

    /// The socket flushes its buffer before reporting the connection: every queued message is now sent.
    private mutating func markQueuedAsSent() {
        for id in usersByID.keys where usersByID[id]!.queuedCount > 0 {
            var user = usersByID.removeValue(forKey: id)!
            var index = user.messages.endIndex
            while user.queuedCount > 0, index > user.messages.startIndex {
                index -= 1
                if user.messages[index].delivery == .queued {
                    user.messages[index].delivery = .sent
                    user.queuedCount -= 1
                }
            }
            user.queuedCount = 0
            usersByID[id] = user
        }
    }
}
