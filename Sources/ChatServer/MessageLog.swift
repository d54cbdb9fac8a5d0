public import ChatSchema
import DequeModule
public import JSON

/// The private messages the server keeps (part III's store), as a plain value, bounded:
/// at most `perConversation` messages in each conversation, `maxBytesPerSender` of what one
/// user sent, and `maxBytes` in all (a message counts its content plus `overhead`), the
/// oldest dropped first. The bound per sender keeps one user from pushing everyone else's
/// history out of the total by sending a lot. What a login receives is bounded too
/// (`history(of:budget:)`), so that a `users` frame always fits.
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
    public let maxBytesPerSender: Int
    public let maxBytes: Int
    private var conversations: [ConversationKey: Deque<Entry>] = [:]
    /// Each user's kept messages in order (lazily: entries of messages dropped otherwise stay
    /// until they come up, or until the queue is compacted), and their bytes.
    private var sent: [String: (queue: Deque<(seq: Int64, key: ConversationKey)>, count: Int, bytes: Int)] = [:]
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

    public init(perConversation: Int, maxBytesPerSender: Int = .max, maxBytes: Int) {
        self.perConversation = max(1, perConversation)
        self.maxBytesPerSender = maxBytesPerSender
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
        let sender = entry.message.from
        sent[sender, default: ([], 0, 0)].queue.append((entry.seq, key))
        counted(entry.message, +1)
        var dropped: [Int64] = []
        while let oldest = conversations[key]?.first, conversations[key]!.count > perConversation {
            remove(at: 0, of: key)
            dropped.append(oldest.seq)
        }
        while let mine = sent[sender], mine.bytes > maxBytesPerSender {
            // The sender's oldest kept message, wherever it is in its conversation.
            guard let next = sent[sender]?.queue.popFirst() else { break }
            guard let index = position(of: next.seq, in: next.key) else { continue }
            remove(at: index, of: next.key)
            dropped.append(next.seq)
        }
        while bytes > maxBytes, let next = arrival.popFirst() {
            // The oldest kept message is the first of its conversation, if it is kept still.
            guard let first = conversations[next.key]?.first, first.seq == next.seq else { continue }
            remove(at: 0, of: next.key)
            dropped.append(next.seq)
        }
        compactIfNeeded(sender: sender)
        return dropped.sorted()
    }

    /// Adds (`+1`) or takes away (`-1`) a message in the totals and its sender's.
    private mutating func counted(_ message: PrivateMessage, _ sign: Int) {
        let cost = Self.cost(message)
        count += sign
        bytes += sign * cost
        sent[message.from]?.count += sign
        sent[message.from]?.bytes += sign * cost
        if sent[message.from]?.count == 0 { sent.removeValue(forKey: message.from) }
    }

    /// Where a kept message is in its conversation (ordered by seq): a binary search.
    private func position(of seq: Int64, in key: ConversationKey) -> Int? {
        guard let messages = conversations[key] else { return nil }
        var low = 0
        var high = messages.count
        while low < high {
            let middle = (low + high) / 2
            if messages[middle].seq < seq { low = middle + 1 } else { high = middle }
        }
        return low < messages.count && messages[low].seq == seq ? low : nil
    }

    private mutating func remove(at index: Int, of key: ConversationKey) {
        guard let removed = conversations[key]?.remove(at: index) else { return }
        counted(removed.message, -1)
        if conversations[key]?.isEmpty == true { forget(key) }
    }

    private mutating func forget(_ key: ConversationKey) {
        conversations.removeValue(forKey: key)
        conversationsOfUser[key.first]?.remove(key)
        if conversationsOfUser[key.first]?.isEmpty == true { conversationsOfUser.removeValue(forKey: key.first) }
        conversationsOfUser[key.second]?.remove(key)
        if conversationsOfUser[key.second]?.isEmpty == true { conversationsOfUser.removeValue(forKey: key.second) }
    }

    /// Keeps the lazy queues (arrival, each sender's) within a constant factor of what they
    /// stand for: entries of messages no longer kept are filtered out once they are as many
    /// again as the kept ones.
    private mutating func compactIfNeeded(sender: String) {
        if arrival.count > 2 * count + 1024 {
            arrival = Deque(arrival.filter { position(of: $0.seq, in: $0.key) != nil })
        }
        if let mine = sent[sender], mine.queue.count > 2 * mine.count + 64 {
            let kept = Deque(mine.queue.filter { position(of: $0.seq, in: $0.key) != nil })
            sent[sender]?.queue = kept
        }
    }

    /// Forgets every conversation of a user (a user whose session expired); how many
    /// messages that dropped.
    @discardableResult
    public mutating func removeConversations(of user: String) -> Int {
        var removed = 0
        for key in conversationsOfUser[user] ?? [] {
            for entry in conversations[key] ?? [] {
                removed += 1
                counted(entry.message, -1)
            }
            forget(key)
        }
        sent.removeValue(forKey: user)
        if arrival.count > 2 * count + 1024 {
            arrival = Deque(arrival.filter { position(of: $0.seq, in: $0.key) != nil })
        }
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
