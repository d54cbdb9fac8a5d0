/// The members of a JSON object: unique keys, each with a value.
///
/// Socket.IO payloads are small objects (`{"content":…,"from":…,"to":…}`), read
/// once or twice and dropped. A hash table costs an allocation, rehashing as it
/// grows, and a hash per key; a short array scanned in order does not. Objects
/// with more than `indexThreshold` members also get a hash index, so a hostile
/// object with a million keys is still parsed and read in linear time.
///
/// Equality and hashing ignore member order, as for a dictionary.
public struct JSONObject: Sendable {
    public typealias Element = (key: String, value: JSONValue)

    /// In insertion order. Keys are unique.
    private var members: ContiguousArray<Element>
    /// Key → position in `members`, kept only for large objects.
    private var index: [String: Int]?

    static let indexThreshold = 12

    public init() {
        members = []
        index = nil
    }

    /// An object with these members; for a repeated key the last value wins
    /// (as `JSON.parse` does), at the position of the first.
    public init(_ elements: some Sequence<Element>) {
        self.init()
        members.reserveCapacity(elements.underestimatedCount)
        for (key, value) in elements { self[key] = value }
    }

    public init(_ dictionary: [String: JSONValue]) {
        self.init(dictionary.lazy.map { (key: $0.key, value: $0.value) })
    }

    /// The parser's path: members as read, usually without duplicates.
    init(parsed elements: ContiguousArray<Element>) {
        if elements.count <= Self.indexThreshold {
            var unique = true
            outer: for i in elements.indices {
                for j in elements.indices where j > i && elements[j].key == elements[i].key {
                    unique = false
                    break outer
                }
            }
            if unique {
                self.init(unique: elements)
                return
            }
        }
        self.init(elements)
    }

    private init(unique elements: ContiguousArray<Element>) {
        members = elements
        index = nil
    }

    public var count: Int { members.count }
    public var isEmpty: Bool { members.isEmpty }
    public var first: Element? { members.first }
    public var keys: [String] { members.map(\.key) }
    public var values: [JSONValue] { members.map(\.value) }

    private func position(of key: String) -> Int? {
        if let index { return index[key] }
        return members.firstIndex { $0.key == key }
    }

    public subscript(key: String) -> JSONValue? {
        get { position(of: key).map { members[$0].value } }
        set {
            if let i = position(of: key) {
                if let newValue {
                    members[i].value = newValue
                } else {
                    members.remove(at: i)
                    rebuildIndex()
                }
            } else if let newValue {
                members.append((key: key, value: newValue))
                if index != nil {
                    index![key] = members.count - 1
                } else if members.count > Self.indexThreshold {
                    rebuildIndex()
                }
            }
        }
    }

    private mutating func rebuildIndex() {
        guard members.count > Self.indexThreshold else {
            index = nil
            return
        }
        var built: [String: Int] = [:]
        built.reserveCapacity(members.count)
        for (i, member) in members.enumerated() { built[member.key] = i }
        index = built
    }

    /// The members as a dictionary.
    public var dictionary: [String: JSONValue] {
        Dictionary(members.lazy.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
    }
}

extension JSONObject: Sequence {
    public func makeIterator() -> IndexingIterator<ContiguousArray<Element>> { members.makeIterator() }
    public var underestimatedCount: Int { members.count }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init(elements.lazy.map { (key: $0.0, value: $0.1) })
    }
}

extension JSONObject: Hashable {
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.count == rhs.count else { return false }
        return lhs.members.allSatisfy { rhs[$0.key] == $0.value }
    }

    public func hash(into hasher: inout Hasher) {
        // Order-independent, as Dictionary does it: combine per-member hashes commutatively.
        var combined = 0
        for member in members {
            var own = Hasher()
            own.combine(member.key)
            own.combine(member.value)
            combined ^= own.finalize()
        }
        hasher.combine(count)
        hasher.combine(combined)
    }
}
