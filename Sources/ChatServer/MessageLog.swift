public import ChatSchema
import DequeModule
public import JSON

/// The private messages the server keeps (part III's store), as a plain value, bounded:
/// at most `perConversation` messages in each conversation, `maxBytesPerSender` of what one
/// user sent, and `maxBytes` in all (a message counts its content plus `overhead`), the
/// oldest dropped first. The bound per sender keeps one user from pushing everyone else's
/// history out of the total by sending a lot. What a login receives is bounded too
/// (`history(of:budget:)`), so that a `users` frame always fits.
///
/// Every message goes through `append` under the application's lock, so it costs two hash
/// lookups (its conversation, its sender) and the rest by index: conversations and senders
/// live in slots, reused once empty.
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

    /// A kept message, with its cost and its sender's slot.
    struct Kept {
        var seq: Int64
        var cost: Int
        var sender: Int
        var message: PrivateMessage

        var entry: Entry { Entry(seq: seq, message: message) }
    }

    /// A conversation's slot: free while it holds no message (a conversation with none is
    /// forgotten). Not optional, so that it is read and changed in place.
    struct Conversation {
        var key: ConversationKey
        var messages: Deque<Kept> = []
    }

    /// One user's kept messages in order (lazily: entries of messages dropped otherwise stay
    /// until they come up, or until the queue is compacted), and their number and bytes.
    /// Free while its count is 0.
    struct Ledger {
        var user: String
        var queue: Deque<(seq: Int64, conversation: Int)> = []
        var count = 0
        var bytes = 0
    }

    public let perConversation: Int
    public let maxBytesPerSender: Int
    public let maxBytes: Int
    private var conversations: [Conversation] = []
    private var conversationSlot: [ConversationKey: Int] = [:]
    private var freeConversations: [Int] = []
    private var ledgers: [Ledger] = []
    private var ledgerSlot: [String: Int] = [:]
    private var freeLedgers: [Int] = []
    private var conversationsOfUser: [String: Set<Int>] = [:]
    /// Every kept message in order of arrival, for dropping the oldest first, lazily as the
    /// ledgers. (An entry whose slot was reused names a seq its new conversation does not
    /// hold: seqs are unique.)
    private var arrival: Deque<(seq: Int64, conversation: Int)> = []
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

    /// Appends a new message; the seqs of the messages this dropped, oldest first (with
    /// `reportingDrops`: a store that keeps nothing need not know, and a message need not
    /// cost an array).
    /// `minimumSeq`: in a cluster, the seqs of its servers' messages are apart by
    /// construction (`ChatApplication.clusterSeq`): none lower than this is given.
    public mutating func append(_ message: PrivateMessage, reportingDrops: Bool = true, minimumSeq: Int64 = 0) -> (entry: Entry, dropped: [Int64]) {
        lastSeq = max(lastSeq + 1, minimumSeq)
        let entry = Entry(seq: lastSeq, message: message)
        return (entry, insert(entry, reportingDrops: reportingDrops))
    }

    /// Puts back a message from a store (at start), in order of `seq`; the seqs dropped by
    /// the bounds (which may have been lowered since it was stored).
    public mutating func restore(_ entry: Entry) -> [Int64] {
        lastSeq = max(lastSeq, entry.seq)
        return insert(entry)
    }

    private mutating func insert(_ entry: Entry, reportingDrops: Bool = true) -> [Int64] {
        let slot = conversation(for: ConversationKey(entry.message.from, entry.message.to))
        let sender = ledger(for: entry.message.from)
        let cost = Self.cost(entry.message)
        conversations[slot].messages.append(Kept(seq: entry.seq, cost: cost, sender: sender, message: entry.message))
        arrival.append((entry.seq, slot))
        ledgers[sender].queue.append((entry.seq, slot))
        ledgers[sender].count += 1
        ledgers[sender].bytes += cost
        count += 1
        bytes += cost

        var dropped: [Int64] = []
        func drop(_ seq: Int64) { if reportingDrops { dropped.append(seq) } }
        while conversations[slot].messages.count > perConversation {
            drop(remove(at: 0, of: slot))
        }
        // The sender's oldest kept messages, wherever they are in their conversations.
        while ledgers[sender].count > 0, ledgers[sender].bytes > maxBytesPerSender, let next = ledgers[sender].queue.popFirst() {
            guard let index = position(of: next.seq, in: next.conversation) else { continue }
            drop(remove(at: index, of: next.conversation))
        }
        while bytes > maxBytes, let next = arrival.popFirst() {
            // The oldest kept message is the first of its conversation, if it is kept still.
            guard position(of: next.seq, in: next.conversation) == 0 else { continue }
            drop(remove(at: 0, of: next.conversation))
        }
        // Messages leave mostly from the front of their conversation and in about the order
        // they came: the lazy queues shed what they no longer stand for at their own front.
        while let front = arrival.first, position(of: front.seq, in: front.conversation) == nil { arrival.removeFirst() }
        while ledgers[sender].count > 0, let front = ledgers[sender].queue.first, position(of: front.seq, in: front.conversation) == nil {
            ledgers[sender].queue.removeFirst()
        }
        compactIfNeeded(sender: sender)
        if dropped.count > 1 { dropped.sort() }
        return dropped
    }

    /// The slot of a conversation, made when it is new.
    private mutating func conversation(for key: ConversationKey) -> Int {
        if let slot = conversationSlot[key] { return slot }
        let slot = freeConversations.popLast() ?? conversations.count
        if slot == conversations.count { conversations.append(Conversation(key: key)) } else { conversations[slot].key = key }
        conversationSlot[key] = slot
        conversationsOfUser[key.first, default: []].insert(slot)
        conversationsOfUser[key.second, default: []].insert(slot)
        return slot
    }

    /// The slot of a sender's ledger, made when they have nothing kept.
    private mutating func ledger(for user: String) -> Int {
        if let slot = ledgerSlot[user] { return slot }
        let slot = freeLedgers.popLast() ?? ledgers.count
        if slot == ledgers.count { ledgers.append(Ledger(user: user)) } else { ledgers[slot] = Ledger(user: user) }
        ledgerSlot[user] = slot
        return slot
    }

    /// Where a kept message is in its conversation (ordered by seq): a binary search.
    private func position(of seq: Int64, in slot: Int) -> Int? {
        // Read in place: binding the deque to a local would retain and release it per call.
        guard slot < conversations.count, !conversations[slot].messages.isEmpty else { return nil }
        // The usual answers first: older than the conversation's first (gone), or the first.
        let first = conversations[slot].messages[0].seq
        if seq <= first { return seq == first ? 0 : nil }
        var low = 0
        var high = conversations[slot].messages.count
        while low < high {
            let middle = (low + high) / 2
            if conversations[slot].messages[middle].seq < seq { low = middle + 1 } else { high = middle }
        }
        return low < conversations[slot].messages.count && conversations[slot].messages[low].seq == seq ? low : nil
    }

    /// Removes a kept message, and what is left empty by it; its seq.
    private mutating func remove(at index: Int, of slot: Int) -> Int64 {
        let kept = conversations[slot].messages.remove(at: index)
        count -= 1
        bytes -= kept.cost
        // Usually the oldest of its sender and of all too: then the lazy queues lose it now,
        // and have nothing to compact later.
        if arrival.first?.seq == kept.seq { arrival.removeFirst() }
        if ledgers[kept.sender].queue.first?.seq == kept.seq { ledgers[kept.sender].queue.removeFirst() }
        ledgers[kept.sender].count -= 1
        ledgers[kept.sender].bytes -= kept.cost
        if ledgers[kept.sender].count == 0 { freeLedger(kept.sender) }
        if conversations[slot].messages.isEmpty { freeConversation(slot) }
        return kept.seq
    }

    private mutating func freeLedger(_ slot: Int) {
        ledgerSlot.removeValue(forKey: ledgers[slot].user)
        ledgers[slot].queue = []
        freeLedgers.append(slot)
    }

    private mutating func freeConversation(_ slot: Int) {
        let key = conversations[slot].key
        conversationSlot.removeValue(forKey: key)
        freeConversations.append(slot)
        for user in [key.first, key.second] {
            conversationsOfUser[user]?.remove(slot)
            if conversationsOfUser[user]?.isEmpty == true { conversationsOfUser.removeValue(forKey: user) }
        }
    }

    /// Keeps the lazy queues (arrival, the sender's) within a constant factor of what they
    /// stand for: entries of messages no longer kept are filtered out once they are as many
    /// again as the kept ones.
    private mutating func compactIfNeeded(sender: Int) {
        compactArrivalIfNeeded()
        if ledgers[sender].count > 0, ledgers[sender].queue.count > 2 * ledgers[sender].count + 64 {
            let kept = ledgers[sender].queue.filter { position(of: $0.seq, in: $0.conversation) != nil }
            ledgers[sender].queue = Deque(kept)
        }
    }

    /// Forgets every conversation of a user (a user whose session expired); how many
    /// messages that dropped.
    @discardableResult
    public mutating func removeConversations(of user: String) -> Int {
        var removed = 0
        for slot in conversationsOfUser[user] ?? [] {
            while !conversations[slot].messages.isEmpty {
                _ = remove(at: conversations[slot].messages.count - 1, of: slot)
                removed += 1
            }
        }
        compactArrivalIfNeeded()
        return removed
    }

    private mutating func compactArrivalIfNeeded() {
        guard arrival.count > 2 * count + 1024 else { return }
        arrival = Deque(arrival.filter { position(of: $0.seq, in: $0.conversation) != nil })
    }

    /// Every kept message of the conversation between two users, oldest first.
    public func conversation(_ a: String, _ b: String) -> [PrivateMessage] {
        guard let slot = conversationSlot[ConversationKey(a, b)] else { return [] }
        return conversations[slot].messages.map(\.message)
    }

    /// What a login of `user` receives: for each of its conversations (by the other user's
    /// ID), the newest messages, oldest first, serialized, in `budget` bytes of JSON at most.
    /// The budget is shared out round-robin, newest first, so that one conversation full of
    /// large messages does not crowd out the others; a conversation's share ends at the first
    /// message that no longer fits.
    public func history(of user: String, budget: Int) -> [String: [JSONFragment]] {
        guard let slots = conversationsOfUser[user], !slots.isEmpty, budget > 0 else { return [:] }
        var open = slots.map { conversations[$0] }
        var taken: [ConversationKey: [JSONFragment]] = [:]
        var remaining = budget
        var depth = 0
        while !open.isEmpty {
            depth += 1
            open.removeAll { conversation in
                let messages = conversation.messages
                guard messages.count >= depth else { return true }
                let fragment = JSONFragment(messages[messages.count - depth].message.json)
                // One more byte for the comma between messages.
                guard fragment.byteCount + 1 <= remaining else { return true }
                remaining -= fragment.byteCount + 1
                taken[conversation.key, default: []].append(fragment)
                return false
            }
        }
        var byUser: [String: [JSONFragment]] = [:]
        for (key, fragments) in taken { byUser[key.other(than: user)] = fragments.reversed() }
        return byUser
    }
}
