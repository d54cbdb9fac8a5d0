/// The user list's order, kept incrementally: yourself first, then by username, then by
/// userID. Adding, removing or moving one user costs O(log n) and so does finding a
/// position or the user at one, so a login storm of 100,000 `user connected` events (a
/// server restart, when everyone comes back) is applied in milliseconds rather than
/// re-sorting the whole list for each.
///
/// A treap (a binary search tree kept balanced by random priorities) whose nodes live in
/// arrays: a plain value, copied on write like any array, with each node's subtree size for
/// positions. The priorities come from the system's random source, so the shape does not
/// depend on the order in which a peer makes names arrive.
public struct UserOrder: Sendable, RandomAccessCollection {
    /// Where a user sorts.
    public struct Key: Sendable, Hashable, Comparable {
        public var isSelf: Bool
        public var username: String
        public var userID: String

        public init(isSelf: Bool, username: String, userID: String) {
            self.isSelf = isSelf
            self.username = username
            self.userID = userID
        }

        public static func < (a: Key, b: Key) -> Bool {
            if a.isSelf != b.isSelf { return a.isSelf }
            if a.username != b.username { return a.username < b.username }
            return a.userID < b.userID
        }
    }

    private var keys: [Key] = []
    private var left: [Int32] = []
    private var right: [Int32] = []
    private var sizes: [Int32] = []
    private var priorities: [UInt32] = []
    /// Nodes removed, to reuse.
    private var free: [Int32] = []
    private var root: Int32 = -1
    private var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))

    public init() {}

    // MARK: Collection (positions 0..<count; element access O(log n))

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }
    public var count: Int { root < 0 ? 0 : Int(sizes[Int(root)]) }

    /// The userID at `position`, in O(log n).
    public subscript(position: Int) -> String {
        precondition(position >= 0 && position < count, "position out of range")
        var node = root
        var position = Int32(position)
        while true {
            let leftSize = size(left[Int(node)])
            if position < leftSize {
                node = left[Int(node)]
            } else if position == leftSize {
                return keys[Int(node)].userID
            } else {
                position -= leftSize + 1
                node = right[Int(node)]
            }
        }
    }

    /// Every userID in order, in O(n) for the whole walk.
    public func makeIterator() -> Iterator { Iterator(order: self) }

    public struct Iterator: IteratorProtocol {
        private let order: UserOrder
        private var stack: [Int32] = []

        init(order: UserOrder) {
            self.order = order
            descend(from: order.root)
        }

        private mutating func descend(from start: Int32) {
            var node = start
            while node >= 0 {
                stack.append(node)
                node = order.left[Int(node)]
            }
        }

        public mutating func next() -> String? {
            nextKey()?.userID
        }

        /// The next user's whole key.
        mutating func nextKey() -> Key? {
            guard let node = stack.popLast() else { return nil }
            descend(from: order.right[Int(node)])
            return order.keys[Int(node)]
        }
    }

    // MARK: Changes

    /// Adds a user at their place (a key that is there already is left alone). One walk
    /// down to where the new node's priority belongs, then a split of the (expectedly
    /// small) subtree found there.
    public mutating func insert(_ key: Key) {
        guard !contains(key) else { return }
        insertNew(key)
    }

    /// `insert` for a key that is known not to be there (a new userID): one walk fewer.
    public mutating func insertNew(_ key: Key) {
        assert(!contains(key), "insertNew with a key that is there")
        let node = makeNode(key)
        let priority = priorities[Int(node)]
        var parent: Int32 = -1
        var parentLeft = false
        var current = root
        while current >= 0 && priorities[Int(current)] >= priority {
            sizes[Int(current)] += 1
            parent = current
            parentLeft = key < keys[Int(current)]
            current = parentLeft ? left[Int(current)] : right[Int(current)]
        }
        let (below, above) = split(current, before: key)
        left[Int(node)] = below
        right[Int(node)] = above
        update(node)
        link(parent, left: parentLeft, to: node)
    }

    /// Takes a user out (nothing happens when the key is not there): one walk down, then
    /// the node's two subtrees joined in its place.
    public mutating func remove(_ key: Key) {
        guard contains(key) else { return }
        var parent: Int32 = -1
        var parentLeft = false
        var current = root
        while true {
            let here = keys[Int(current)]
            if key < here {
                parentLeft = true
            } else if here < key {
                parentLeft = false
            } else {
                break
            }
            sizes[Int(current)] -= 1
            parent = current
            current = parentLeft ? left[Int(current)] : right[Int(current)]
        }
        link(parent, left: parentLeft, to: merge(left[Int(current)], right[Int(current)]))
        release(current)
    }

    public func contains(_ key: Key) -> Bool {
        var node = root
        while node >= 0 {
            let here = keys[Int(node)]
            if key < here {
                node = left[Int(node)]
            } else if here < key {
                node = right[Int(node)]
            } else {
                return true
            }
        }
        return false
    }

    private mutating func link(_ parent: Int32, left isLeft: Bool, to child: Int32) {
        if parent < 0 {
            root = child
        } else if isLeft {
            left[Int(parent)] = child
        } else {
            right[Int(parent)] = child
        }
    }

    /// Moves a user whose name or self-ness changed: O(log n).
    public mutating func move(_ old: Key, to new: Key) {
        guard old != new, contains(old) else { return }
        remove(old)
        // The userID is in the key: with the old key gone, the new one cannot be there.
        if old.userID == new.userID { insertNew(new) } else { insert(new) }
    }

    /// Puts many new users in at once (a `users` list): when they are many next to those
    /// already there, the whole order is rebuilt from one sort, in O(n log n) with the fast
    /// comparisons of a contiguous sort and an O(n) build, rather than n walks down the tree.
    public mutating func insertNew(contentsOf newKeys: [Key]) {
        guard newKeys.count > 64, newKeys.count > count / 4 else {
            for key in newKeys { insertNew(key) }
            return
        }
        var all = Array(self.keysInOrder())
        all.append(contentsOf: newKeys)
        all.sort()
        self = UserOrder(sorted: all)
    }

    /// A treap of keys given in order, built in O(n): each key goes in as the right spine's
    /// last node, and nodes of lower priority are moved under it (a Cartesian tree).
    init(sorted: [Key]) {
        self.init()
        keys.reserveCapacity(sorted.count)
        left.reserveCapacity(sorted.count)
        right.reserveCapacity(sorted.count)
        sizes.reserveCapacity(sorted.count)
        priorities.reserveCapacity(sorted.count)
        var spine: [Int32] = []
        for key in sorted {
            let node = makeNode(key)
            var last: Int32 = -1
            while let top = spine.last, priorities[Int(top)] < priorities[Int(node)] {
                last = top
                spine.removeLast()
            }
            left[Int(node)] = last
            if let top = spine.last { right[Int(top)] = node }
            spine.append(node)
        }
        root = spine.first ?? -1
        // Sizes, children before parents: a post-order walk.
        var stack: [(node: Int32, visited: Bool)] = root >= 0 ? [(root, false)] : []
        while let (node, visited) = stack.popLast() {
            if visited {
                update(node)
            } else {
                stack.append((node, true))
                if right[Int(node)] >= 0 { stack.append((right[Int(node)], false)) }
                if left[Int(node)] >= 0 { stack.append((left[Int(node)], false)) }
            }
        }
    }

    /// The keys in order (an O(n) walk).
    func keysInOrder() -> [Key] {
        var out: [Key] = []
        out.reserveCapacity(count)
        var walk = makeIterator()
        while let key = walk.nextKey() { out.append(key) }
        return out
    }

    public mutating func removeAll() {
        self = UserOrder()
    }

    // MARK: Queries

    /// The position of a user, in O(log n); nil when the key is not there.
    public func position(of key: Key) -> Int? {
        var node = root
        var before: Int32 = 0
        while node >= 0 {
            let here = keys[Int(node)]
            if key < here {
                node = left[Int(node)]
            } else if here < key {
                before += size(left[Int(node)]) + 1
                node = right[Int(node)]
            } else {
                return Int(before + size(left[Int(node)]))
            }
        }
        return nil
    }

    // MARK: The treap

    @inline(__always)
    private func size(_ node: Int32) -> Int32 { node < 0 ? 0 : sizes[Int(node)] }

    private mutating func update(_ node: Int32) {
        sizes[Int(node)] = size(left[Int(node)]) + size(right[Int(node)]) + 1
    }

    private mutating func makeNode(_ key: Key) -> Int32 {
        let priority = UInt32(truncatingIfNeeded: random.next())
        if let node = free.popLast() {
            keys[Int(node)] = key
            left[Int(node)] = -1
            right[Int(node)] = -1
            sizes[Int(node)] = 1
            priorities[Int(node)] = priority
            return node
        }
        keys.append(key)
        left.append(-1)
        right.append(-1)
        sizes.append(1)
        priorities.append(priority)
        return Int32(keys.count - 1)
    }

    private mutating func release(_ node: Int32) {
        // The strings go now; the slot waits for the next insert.
        keys[Int(node)] = Key(isSelf: false, username: "", userID: "")
        free.append(node)
    }

    /// Splits `node`'s tree into the keys below `key` and the rest.
    private mutating func split(_ node: Int32, before key: Key) -> (Int32, Int32) {
        guard node >= 0 else { return (-1, -1) }
        if keys[Int(node)] < key {
            let (middle, high) = split(right[Int(node)], before: key)
            right[Int(node)] = middle
            update(node)
            return (node, high)
        } else {
            let (low, middle) = split(left[Int(node)], before: key)
            left[Int(node)] = middle
            update(node)
            return (low, node)
        }
    }

    /// Joins two trees, every key of `low` below every key of `high`.
    private mutating func merge(_ low: Int32, _ high: Int32) -> Int32 {
        if low < 0 { return high }
        if high < 0 { return low }
        if priorities[Int(low)] > priorities[Int(high)] {
            right[Int(low)] = merge(right[Int(low)], high)
            update(low)
            return low
        } else {
            left[Int(high)] = merge(low, left[Int(high)])
            update(high)
            return high
        }
    }
}

/// A small, fast, non-cryptographic generator (Steele, Lea and Flood's SplitMix64): the
/// treap's priorities, seeded from the system's random source; also the benchmark clients'
/// WebSocket masks, where a system call per frame would be waste.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
