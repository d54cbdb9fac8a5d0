import Chat
import Testing

/// The user list's order as a treap: checked against a sorted array through random
/// inserts, moves and removals, and for the cost a login storm has.
@Suite struct UserOrderTests {
    typealias Key = UserOrder.Key

    /// A deterministic generator, so that a failure can be replayed.
    struct Xorshift: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
    }

    @Test(arguments: [1, 2, 3, 42]) func matchesASortedArrayThroughRandomChanges(seed: UInt64) {
        var random = Xorshift(state: seed &* 0x9E37_79B9_7F4A_7C15 | 1)
        var order = UserOrder()
        var reference: [Key] = []
        for step in 0..<3_000 {
            let id = "u\(Int.random(in: 0..<400, using: &random))"
            let existing = reference.first { $0.userID == id }
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<5 where existing == nil:
                let key = Key(isSelf: Int.random(in: 0..<50, using: &random) == 0, username: "n\(Int.random(in: 0..<60, using: &random))", userID: id)
                order.insert(key)
                reference.append(key)
            case 5..<8 where existing != nil:
                let moved = Key(isSelf: existing!.isSelf, username: "n\(Int.random(in: 0..<60, using: &random))", userID: id)
                order.move(existing!, to: moved)
                reference.removeAll { $0 == existing }
                reference.append(moved)
            case 8..<10 where existing != nil:
                order.remove(existing!)
                reference.removeAll { $0 == existing }
            default:
                continue
            }
            reference.sort()
            if step % 97 == 0 || step == 2_999 {
                #expect(Array(order) == reference.map(\.userID), "after step \(step)")
                #expect(order.count == reference.count)
                for (n, key) in reference.enumerated() {
                    #expect(order[n] == key.userID)
                    #expect(order.position(of: key) == n)
                }
            }
        }
    }

    /// A big `users` list goes in with one sort and an O(n) build: the same order, and a
    /// tree that the single-key changes then keep working on.
    @Test(arguments: [0, 10, 5_000]) func manyAtOnceIsTheSameAsOneByOne(existing: Int) {
        var random = Xorshift(state: 0x1234_5678 &+ UInt64(existing))
        var order = UserOrder()
        var reference: [Key] = []
        for n in 0..<existing {
            let key = Key(isSelf: n == 3, username: "n\(Int.random(in: 0..<500, using: &random))", userID: "old\(n)")
            order.insertNew(key)
            reference.append(key)
        }
        let batch = (0..<20_000).map { Key(isSelf: false, username: "n\(Int.random(in: 0..<500, using: &random))", userID: "new\($0)") }
        order.insertNew(contentsOf: batch)
        reference += batch
        reference.sort()
        #expect(Array(order) == reference.map(\.userID))
        for n in stride(from: 0, to: reference.count, by: 101) { #expect(order.position(of: reference[n]) == n && order[n] == reference[n].userID) }
        // And it goes on as a tree: remove every other, move a few.
        for key in reference.enumerated().filter({ $0.offset.isMultiple(of: 2) }).map(\.element) { order.remove(key) }
        let kept = reference.enumerated().filter { !$0.offset.isMultiple(of: 2) }.map(\.element)
        #expect(Array(order) == kept.map(\.userID))
    }

    @Test func yourselfFirstThenByNameThenByID() {
        var order = UserOrder()
        for key in [
            Key(isSelf: false, username: "bob", userID: "b2"), Key(isSelf: false, username: "alice", userID: "a1"),
            Key(isSelf: true, username: "zed", userID: "z"), Key(isSelf: false, username: "bob", userID: "b1"),
        ] {
            order.insert(key)
        }
        #expect(Array(order) == ["z", "a1", "b1", "b2"])
        order.insert(Key(isSelf: false, username: "alice", userID: "a1"))  // again: nothing changes
        #expect(order.count == 4)
        order.remove(Key(isSelf: false, username: "nobody", userID: "x"))  // not there: nothing changes
        #expect(order.count == 4)
        #expect(order.position(of: Key(isSelf: false, username: "alice", userID: "zz")) == nil)
    }

    /// A copy is a value: changing one leaves the other as it was.
    @Test func copiesAreIndependent() {
        var order = UserOrder()
        for n in 0..<100 { order.insert(Key(isSelf: false, username: "n\(n)", userID: "\(n)")) }
        var copy = order
        copy.remove(Key(isSelf: false, username: "n5", userID: "5"))
        #expect(order.count == 100 && copy.count == 99)
        #expect(order.position(of: Key(isSelf: false, username: "n5", userID: "5")) != nil)
    }

    /// A storm of names that arrive in order (the worst case for a naive tree) stays shallow
    /// enough to be fast: 100,000 inserts, then the ends and the middle found.
    @Test func aLoginStormInSortedOrderStaysBalanced() {
        var order = UserOrder()
        for n in 0..<100_000 { order.insert(Key(isSelf: false, username: String(format: "user%06d", n), userID: "\(n)")) }
        #expect(order.count == 100_000)
        #expect(order[0] == "0" && order[99_999] == "99999" && order[50_000] == "50000")
        #expect(order.position(of: Key(isSelf: false, username: "user077777", userID: "77777")) == 77_777)
    }
}
