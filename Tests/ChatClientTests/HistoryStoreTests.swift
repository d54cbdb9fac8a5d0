import Chat
import ChatClient
import Foundation
import History
import PrivateFiles
import Testing

/// The local history's file, and what it gives back.
@Suite struct HistoryStoreTests {
    func directory() -> String { temporaryDirectory() + "/history" }

    @Test func conversationsComeBackPerServerAndUserNewestLast() async throws {
        let (store, warnings) = try HistoryStore.open(directory: directory())
        #expect(warnings.isEmpty)
        let t0 = Date(timeIntervalSince1970: 1_700_000_000)
        for n in 0..<5 {
            store.append(server: "ws://a/", me: "u1", StoredMessage(peer: "b", fromSelf: n.isMultiple(of: 2), content: "m\(n)", at: t0 + Double(n)), peerName: "bob")
        }
        store.append(server: "ws://a/", me: "u1", StoredMessage(peer: "c", fromSelf: false, content: "hi", at: t0), peerName: "carol")
        store.append(server: "ws://a/", me: "u2", StoredMessage(peer: "b", fromSelf: false, content: "not u1's", at: t0), peerName: "bob")
        store.append(server: "ws://other/", me: "u1", StoredMessage(peer: "b", fromSelf: false, content: "another server", at: t0), peerName: "bobby")
        store.append(server: "ws://a/", me: "u1", StoredMessage(peer: "b", fromSelf: false, content: "m5", at: t0 + 5), peerName: "bob b.")
        await store.flush()

        #expect(try store.peers(server: "ws://a/", me: "u1").map { "\($0.userID)=\($0.username)" } == ["b=bob b.", "c=carol"])
        let last = try store.lastMessages(server: "ws://a/", me: "u1", peer: "b", limit: 3)
        #expect(last.map(\.content) == ["m3", "m4", "m5"])
        #expect(last.map(\.fromSelf) == [false, true, false])
        #expect(last.first?.at == t0 + 3)
        #expect(try store.lastMessages(server: "ws://other/", me: "u1", peer: "b", limit: 10).map(\.content) == ["another server"])
        // Paging back: before the oldest one had.
        let older = try store.lastMessages(server: "ws://a/", me: "u1", peer: "b", before: last.first?.id, limit: 2)
        #expect(older.map(\.content) == ["m1", "m2"])
        #expect(try store.lastMessages(server: "ws://a/", me: "u1", peer: "b", before: older.first?.id, limit: 2).map(\.content) == ["m0"])

        try store.delete(server: "ws://a/", me: "u1")
        #expect(try store.peers(server: "ws://a/", me: "u1").isEmpty)
        #expect(try store.peers(server: "ws://a/", me: "u2").count == 1)
    }

    /// A search reads the whole history of one account on one server, newest first, with the
    /// peers' names, and gives back at most its limit.
    @Test func aSearchFindsWhatMatchesNewestFirstWithinItsLimit() async throws {
        let (store, _) = try HistoryStore.open(directory: directory())
        let t0 = Date(timeIntervalSince1970: 1_700_000_000)
        for n in 0..<1_000 {
            let peer = n.isMultiple(of: 2) ? "b" : "c"
            store.append(server: "ws://a/", me: "u1", StoredMessage(peer: peer, fromSelf: false, content: n % 100 == 7 ? "ÉCOLE \(n)" : "m\(n)", at: t0 + Double(n)), peerName: peer == "b" ? "bob" : "carol")
        }
        store.append(server: "ws://a/", me: "u2", StoredMessage(peer: "b", fromSelf: false, content: "école, not u1's", at: t0), peerName: "bob")
        await store.flush()
        let hits = try store.search(server: "ws://a/", me: "u1", limit: 100) { MessageSearch.matches($0, "ecole") }
        #expect(hits.map(\.message.content) == (0..<10).reversed().map { "ÉCOLE \($0 * 100 + 7)" })
        #expect(hits.allSatisfy { $0.username == "carol" && $0.message.peer == "c" })
        #expect(try store.search(server: "ws://a/", me: "u1", limit: 3) { MessageSearch.matches($0, "ecole") }.count == 3)
        // The query is the caller's rule, a plain string: SQL's wildcards mean nothing.
        #expect(try store.search(server: "ws://a/", me: "u1", limit: 10) { MessageSearch.matches($0, "%") }.isEmpty)
    }

    /// `--history-days`: what is older is forgotten when the history is opened, and a peer
    /// with nothing left with them too.
    @Test func aRetentionForgetsWhatIsOlder() async throws {
        let directory = directory()
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let (store, _) = try HistoryStore.open(directory: directory)
        store.append(server: "s", me: "u", StoredMessage(peer: "b", fromSelf: false, content: "old", at: now - 40 * 86_400), peerName: "bob")
        store.append(server: "s", me: "u", StoredMessage(peer: "b", fromSelf: true, content: "recent", at: now - 86_400), peerName: "bob")
        store.append(server: "s", me: "u", StoredMessage(peer: "c", fromSelf: false, content: "ancient", at: now - 400 * 86_400), peerName: "carol")
        await store.flush()
        let (kept, _) = try HistoryStore.open(directory: directory, retention: .seconds(30 * 86_400), now: now)
        #expect(try kept.lastMessages(server: "s", me: "u", peer: "b", limit: 10).map(\.content) == ["recent"])
        #expect(try kept.peers(server: "s", me: "u").map(\.userID) == ["b"])
    }

    @Test func theFileIsPrivateAndNeverOpenedThroughALink() throws {
        let directory = directory()
        let (store, _) = try HistoryStore.open(directory: directory)
        let attributes = try FileManager.default.attributesOfItem(atPath: store.path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let folder = try FileManager.default.attributesOfItem(atPath: directory)
        #expect((folder[.posixPermissions] as? NSNumber)?.intValue == 0o700)

        // history.sqlite as a link to a file elsewhere: refused, and the target untouched.
        let other = temporaryDirectory() + "/elsewhere"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let target = other + "/target"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: target))
        let linked = temporaryDirectory() + "/linked"
        try FileManager.default.createDirectory(atPath: linked, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try FileManager.default.createSymbolicLink(atPath: linked + "/history.sqlite", withDestinationPath: target)
        #expect(throws: HistoryError.self) { _ = try HistoryStore.open(directory: linked) }
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "precious")
    }

    @Test func aDirectoryOthersCanWriteIsRefusedUnlessRelaxed() throws {
        let open = temporaryDirectory() + "/open"
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o777])
        chmod(open, 0o777)
        #expect(throws: HistoryError.self) { _ = try HistoryStore.open(directory: open) }
        let (_, warnings) = try HistoryStore.open(directory: open, modes: .relaxed)
        #expect(!warnings.isEmpty)
    }
}
