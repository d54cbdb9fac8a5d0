public import ChatSchema
import DequeModule
public import JSON

/// The private messages the server keeps (part III's store), as a plain value, bounded:
/// at most `perConversation` messages in each conversation and `maxBytes` in all (a message
/// counts its content plus `overhead`), the oldest dropped first. What a login receives is
/// bounded too (`history(of:budget:)`), so that a `users` frame always fits.
public struct MessageLog: Sendable {
    /// A message and its place in the order of arrival (also its key in a store).
    public struct Entry: Sendable, Hashable {
        public var seq: Int64
        public var message: PrivateMessage

        public init(seq: Int64, message: PrivateMessage) {
            self.seq = seq
            self.message = message
        }
    }

    /// The two users of a conversation, in order: a message from a to b and one from b to a
    /// are in the same conversation.
    public struct ConversationKey: Hashable, Sendable {
        public let first: String
        public let second: String

        public init(_ a: String, _ b: String) {
            if a <= b {
                first = a
                second = b
            } else {
                first = b
                second = a
            }
        }

        /// The user on the other side from `user`.
        func other(than user: String) -> String { first == user ? second : first }
    }

    /// What a message counts for beyond its content: its IDs and the bookkeeping.
    public static let overhead = 96

    public let perConversation: Int
    public let maxBytes: Int
    private var conversations: [ConversationKey: Deque<Entry>] = [:]
    private var conversationsOfUser: [String: Set<ConversationKey>] = [:]
    /// Every kept message in order of arrival, for dropping the oldest first. Entries of
    /// messages dropped otherwise (a full conversation, a forgotten user) stay until they come
    /// up, or until the queue is compacted.
    private var arrival: Deque<(seq: Int64, key: ConversationKey)> = []
    public private(set) var count = 0
    /// Entries in the arrival queue (for tests: it stays within a constant factor of `count`).
    var arrivalCount: Int { arrival.count }
    public private(set) var bytes = 0
    public private(set) var lastSeq: Int64 = 0

    public init(perConversation: Int, maxBytes: Int) {
        self.perConversation = max(1, perConversation)
        self.maxBytes = maxBytes
    }

    static func cost(_ message: PrivateMessage) -> Int { message.content.utf8.count + overhead }

    /// Appends a new message; the seqs of the messages this dropped, oldest first.
    public mutating func append(_ message: PrivateMessage) -> (entry: Entry, dropped: [Int64]) {
        lastSeq += 1
        let entry = Entry(seq: lastSeq, message: message)
        return (entry, insert(entry))
    }

    /// Puts back a message from a store (at start), in order of `seq`; the seqs dropped by
    /// the bounds (which may have been lowered since it was stored).
    public mutating func restore(_ entry: Entry) -> [Int64] {
        lastSeq = max(lastSeq, entry.seq)
        return insert(entry)
    }

    private mutating func insert(_ entry: Entry) -> [Int64] {
        let key = ConversationKey(entry.message.from, entry.message.to)
        conversations[key, default: []].append(entry)
        if conversations[key]?.count == 1 {
            conversationsOfUser[key.first, default: []].insert(key)
            conversationsOfUser[key.second, default: []].insert(key)
        }
        arrival.append((entry.seq, key))
        count += 1
        bytes += Self.cost(entry.message)
        var dropped: [Int64] = []
        while let oldest = conversations[key]?.first, conversations[key]!.count > perConversation {
            dropFirst(of: key)
            dropped.append(oldest.seq)
        }
        while bytes > maxBytes, let next = arrival.popFirst() {
            // The oldest kept message is the first of its conversation, if it is kept still.
            guard let first = conversations[next.key]?.first, first.seq == next.seq else { continue }
            dropFirst(of: next.key)
            dropped.append(next.seq)
        }
        if arrival.count > 2 * count + 1024 { compactArrival() }
        return dropped
    }

    private mutating func dropFirst(of key: ConversationKey) {
        guard let removed = conversations[key]?.removeFirst() else { return }
        count -= 1
        bytes -= Self.cost(removed.message)
        if conversations[key]?.isEmpty == true { forget(key) }
    }

    private mutating func forget(_ key: ConversationKey) {
        conversations.removeValue(forKey: key)
        conversationsOfUser[key.first]?.remove(key)
        if conversationsOfUser[key.first]?.isEmpty == true { conversationsOfUser.removeValue(forKey: key.first) }
        conversationsOfUser[key.second]?.remove(key)
        if conversationsOfUser[key.second]?.isEmpty == true { conversationsOfUser.removeValue(forKey: key.second) }
    }

    /// Keeps only the arrival entries of messages still kept (a message is kept while its
    /// seq is not older than the first of its conversation: conversations lose messages from
    /// the front only).
    private mutating func compactArrival() {
        arrival = Deque(arrival.filter { entry in
            guard let first = conversations[entry.key]?.first else { return false }
            return entry.seq >= first.seq
        })
    }

    /// Forgets every conversation of a user (a user whose session expired); how many
    /// messages that dropped.
    @discardableResult
    public mutating func removeConversations(of user: String) -> Int {
        var removed = 0
        for key in conversationsOfUser[user] ?? [] {
            for entry in conversations[key] ?? [] {
                removed += 1
                bytes -= Self.cost(entry.message)
            }
            count -= conversations[key]?.count ?? 0
            forget(key)
        }
        if arrival.count > 2 * count + 1024 { compactArrival() }
        return removed
    }

    /// Every kept message of the conversation between two users, oldest first.
    public func conversation(_ a: String, _ b: String) -> [PrivateMessage] {
        (conversations[ConversationKey(a, b)] ?? []).map(\.message)
    }

    /// What a login of `user` receives: for each of its conversations (by the other user's
    /// ID), the newest messages, oldest first, serialized, in `budget` bytes of JSON at most.
    /// The budget is shared out round-robin, newest first, so that one conversation full of
    /// large messages does not crowd out the others; a conversation's share ends at the first
    /// message that no longer fits.
    public func history(of user: String, budget: Int) -> [String: [JSONFragment]] {
        guard let keys = conversationsOfUser[user], !keys.isEmpty, budget > 0 else { return [:] }
        var open = keys.compactMap { key in conversations[key].map { (key, $0) } }
        var taken: [ConversationKey: [JSONFragment]] = [:]
        var remaining = budget
        var depth = 0
        while !open.isEmpty {
            depth += 1
            open.removeAll { key, messages in
                guard messages.count >= depth else { return true }
                let fragment = JSONFragment(messages[messages.count - depth].message.json)
                // One more byte for the comma between messages.
                guard fragment.utf8.count + 1 <= remaining else { return true }
                remaining -= fragment.utf8.count + 1
                taken[key, default: []].append(fragment)
                return false
            }
        }
        var byUser: [String: [JSONFragment]] = [:]
        for (key, fragments) in taken { byUser[key.other(than: user)] = fragments.reversed() }
        return byUser
    }
}
