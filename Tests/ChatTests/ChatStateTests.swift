import Chat
import Foundation
import JSON
import Testing

let t0 = Date(timeIntervalSince1970: 1_700_000_000)

/// A state logged in as alice ("a"), with bob ("b") and carol ("c") known.
func loggedIn(historyLimit: Int? = nil) -> ChatState {
    var state = ChatState(historyLimit: historyLimit)
    state.apply(.connected(flushed: []))
    state.apply(.session(userID: "a", username: "alice"))
    state.apply(.users([
        UserEntry(userID: "c", username: "carol", connected: false),
        UserEntry(userID: "a", username: "alice", connected: true),
        UserEntry(userID: "b", username: "bob", connected: true),
    ]))
    return state
}

@Suite struct ChatStateTests {
    @Test func usersAreSortedSelfFirstThenByName() {
        let state = loggedIn()
        #expect(state.users.map(\.username) == ["alice", "bob", "carol"])
        #expect(state.users.map(\.isSelf) == [true, false, false])
        #expect(state.users.map(\.isConnected) == [true, true, false])
        #expect(state.users.allSatisfy { $0.messages.isEmpty && $0.unreadCount == 0 })
    }

    /// The order and the online count are kept as users change, not recomputed: a rename
    /// moves one user, a new userID for self moves self, presence changes the count.
    @Test func theOrderAndTheOnlineCountFollowEveryChange() {
        var state = loggedIn()
        #expect(state.onlineCount == 2)
        state.apply(.userConnected(UserEntry(userID: "c", username: "aaron", connected: true)))  // carol renamed
        #expect(Array(state.order) == ["a", "c", "b"] && state.onlineCount == 3)
        #expect(state.position(of: "c") == 1 && state.position(of: "b") == 2)
        state.apply(.userDisconnected(userID: "b"))
        state.apply(.userDisconnected(userID: "b"))  // twice: counted once
        #expect(state.onlineCount == 2)
        state.apply(.session(userID: "a2", username: "alice"))  // the server forgot us: a new userID
        #expect(Array(state.order) == ["a2", "c", "b"])
        #expect(state.users.first?.isSelf == true && state.users.filter(\.isSelf).count == 1)
        state.apply(.offline(reason: "gone"))
        #expect(state.onlineCount == 1)
        state.apply(.users([UserEntry(userID: "a2", username: "alice", connected: true)]))  // everyone else missing
        #expect(state.onlineCount == 1 && state.users.filter(\.isConnected).map(\.id) == ["a2"])
        state.apply(.loggedOut(reason: nil))
        #expect(state.order.isEmpty && state.onlineCount == 0)
    }

    /// A server that lists a user twice in a big list (careless or hostile): the last entry
    /// wins, once, in its place.
    @Test func aUserListedTwiceInABigListIsOneUserInItsPlace() {
        var state = loggedIn()
        var entries = (0..<200).map { UserEntry(userID: "x\($0)", username: "name \($0)", connected: true) }
        entries.append(UserEntry(userID: "x7", username: "aaa renamed", connected: false))
        state.apply(.users(entries + [UserEntry(userID: "a", username: "alice", connected: true)]))
        #expect(state.order.count == 203)  // with bob and carol, known before
        #expect(state.users.filter { $0.id == "x7" }.map(\.username) == ["aaa renamed"])
        #expect(state.position(of: "x7") == 1)  // after yourself, first by name
        #expect(state.onlineCount == 200)  // 199 of the list and yourself (bob, missing from it, is offline)
        #expect(state.users.map(\.username).dropFirst().elementsEqual(state.users.map(\.username).dropFirst().sorted()))
    }

    @Test func selfSortsFirstWhateverItsName() {
        var state = ChatState()
        state.apply(.session(userID: "z", username: "zed"))
        state.apply(.users([UserEntry(userID: "a", username: "aaron", connected: true), UserEntry(userID: "z", username: "zed", connected: true)]))
        #expect(state.users.map(\.username) == ["zed", "aaron"])
    }

    @Test func usersOfAKnownUserOnlyUpdatesConnected() {
        var state = loggedIn()
        state.apply(.messageReceived(PrivateMessage(content: "hi", from: "b", to: "a"), at: t0))
        state.apply(.users([UserEntry(userID: "b", username: "bob", connected: false)]))
        let bob = state.user("b")!
        #expect(!bob.isConnected)
        #expect(bob.messages.count == 1)
        #expect(bob.unreadCount == 1)
    }

    @Test func usersMissingFromTheServersListAreOffline() {
        var state = loggedIn()
        state.apply(.messageReceived(PrivateMessage(content: "hi", from: "b", to: "a"), at: t0))
        // A restarted server that forgot everyone lists only who came back.
        state.apply(.users([UserEntry(userID: "a", username: "alice", connected: true), UserEntry(userID: "b2", username: "bob", connected: true)]))
        #expect(state.user("b")?.isConnected == false)
        #expect(state.user("b")?.messages.count == 1)  // nothing lost
        #expect(state.user("b2")?.isConnected == true)
        #expect(state.user("a")?.isConnected == true)
    }

    @Test func aNewUserIDForSelfKeepsOneSelfWithItsNotes() {
        var state = loggedIn()
        state.apply(.messageSent(SentMessage(id: 1, to: "a", content: "note to self", at: t0), queued: false))
        state.apply(.select(userID: "a"))
        state.apply(.session(userID: "a2", username: "alice"))
        #expect(state.user("a") == nil)
        #expect(state.users.filter(\.isSelf).map(\.id) == ["a2"])
        #expect(state.users.filter { $0.username == "alice" }.count == 1)
        #expect(state.user("a2")?.messages.map(\.content) == ["note to self"])
        #expect(state.selectedUserID == "a2")
        #expect(state.users.first?.id == "a2")
    }

    @Test func userConnectedMarksOnlineOrAdds() {
        var state = loggedIn()
        state.apply(.userConnected(UserEntry(userID: "c", username: "carol", connected: true)))
        #expect(state.user("c")!.isConnected)
        state.apply(.userConnected(UserEntry(userID: "d", username: "aardvark", connected: true)))
        #expect(state.users.map(\.username) == ["alice", "aardvark", "bob", "carol"])
        #expect(state.user("d")!.unreadCount == 0)
    }

    @Test func userDisconnectedMarksOffline() {
        var state = loggedIn()
        state.apply(.userDisconnected(userID: "b"))
        #expect(!state.user("b")!.isConnected)
        state.apply(.userDisconnected(userID: "nobody"))  // unknown: nothing happens
        #expect(state.users.count == 3)
    }

    @Test func aMessageGoesToTheSendersConversationAndCountsAsUnread() {
        var state = loggedIn()
        state.apply(.messageReceived(PrivateMessage(content: "one", from: "b", to: "a"), at: t0))
        state.apply(.messageReceived(PrivateMessage(content: "two", from: "b", to: "a"), at: t0 + 1))
        let bob = state.user("b")!
        #expect(bob.messages.map(\.content) == ["one", "two"])
        #expect(bob.messages.map(\.fromSelf) == [false, false])
        #expect(bob.messages.map(\.at) == [t0, t0 + 1])
        #expect(bob.unreadCount == 2)
        #expect(state.totalUnread == 2)
    }

    @Test func theSelectedConversationDoesNotCountUnreadAndSelectingClearsIt() {
        var state = loggedIn()
        state.apply(.messageReceived(PrivateMessage(content: "one", from: "c", to: "a"), at: t0))
        state.apply(.select(userID: "b"))
        state.apply(.messageReceived(PrivateMessage(content: "hey", from: "b", to: "a"), at: t0))
        #expect(state.user("b")!.unreadCount == 0)
        #expect(state.user("c")!.unreadCount == 1)
        state.apply(.select(userID: "c"))
        #expect(state.user("c")!.unreadCount == 0)
        #expect(state.selectedUser?.username == "carol")
        state.apply(.select(userID: "ghost"))
        #expect(state.selectedUserID == nil)
    }

    @Test func ownMessagesFromAnotherClientGoToTheRecipientsConversation() {
        // The server forwards what this user sends from another tab.
        var state = loggedIn()
        state.apply(.messageReceived(PrivateMessage(content: "from my phone", from: "a", to: "b"), at: t0))
        let bob = state.user("b")!
        #expect(bob.messages.first?.fromSelf == true)
        #expect(bob.messages.first?.delivery == .sent)
        #expect(state.user("a")!.messages.isEmpty)
    }

    @Test func messagesToOneselfLandInTheSelfConversation() {
        var state = loggedIn()
        state.apply(.messageSent(SentMessage(id: 2, to: "a", content: "note", at: t0), queued: false))
        state.apply(.messageReceived(PrivateMessage(content: "note", from: "a", to: "a"), at: t0))
        #expect(state.user("a")!.messages.map(\.content) == ["note", "note"])
    }

    @Test func aMessageFromAnUnknownUserCreatesThatUser() {
        var state = loggedIn()
        state.apply(.messageReceived(PrivateMessage(content: "psst", from: "x", to: "a"), at: t0))
        let stranger = state.user("x")!
        #expect(stranger.username == "x")
        #expect(stranger.messages.count == 1)
        state.apply(.userConnected(UserEntry(userID: "x", username: "xavier", connected: true)))
        #expect(state.user("x")!.username == "xavier")
        #expect(state.user("x")!.messages.count == 1)
    }

    @Test func sendingAppendsLocallyAsSentOrQueued() {
        var state = loggedIn()
        state.apply(.messageSent(SentMessage(id: 3, to: "b", content: "hi bob", at: t0), queued: false))
        #expect(state.user("b")!.messages.last == ChatMessage(content: "hi bob", fromSelf: true, delivery: .sent, at: t0))
        #expect(state.user("b")!.unreadCount == 0)
    }

    @Test func queuedMessagesBecomeSentOnReconnectionInOrder() {
        var state = loggedIn()
        state.apply(.offline(reason: "transport close"))
        #expect(state.connection == .offline(reason: "transport close"))
        #expect(!state.user("a")!.isConnected)
        state.apply(.messageSent(SentMessage(id: 4, to: "b", content: "1", at: t0), queued: true))
        state.apply(.messageSent(SentMessage(id: 5, to: "c", content: "2", at: t0), queued: true))
        state.apply(.messageSent(SentMessage(id: 6, to: "b", content: "3", at: t0), queued: true))
        #expect(state.user("b")!.messages.map(\.delivery) == [.queued, .queued])
        #expect(state.user("b")!.queuedCount == 2)
        state.apply(.reconnecting(attempt: 1, delay: .seconds(1)))
        #expect(state.connection == .reconnecting(attempt: 1, delay: .seconds(1)))
        state.apply(.connected(flushed: []))
        #expect(state.user("a")!.isConnected)
        #expect(state.user("b")!.messages.map(\.content) == ["1", "3"])
        #expect(state.user("b")!.messages.map(\.delivery) == [.sent, .sent])
        #expect(state.user("c")!.messages.map(\.delivery) == [.sent])
        #expect(state.users.allSatisfy { $0.queuedCount == 0 })
    }

    @Test func partIIIHistoryReplacesTheConversation() {
        var state = loggedIn()
        state.apply(.messageReceived(PrivateMessage(content: "stale", from: "b", to: "a"), at: t0))
        state.apply(.users([UserEntry(userID: "b", username: "bob", connected: true, messages: [
            PrivateMessage(content: "hi", from: "a", to: "b"),
            PrivateMessage(content: "hello", from: "b", to: "a"),
        ])]))
        let bob = state.user("b")!
        #expect(bob.messages.map(\.content) == ["hi", "hello"])
        #expect(bob.messages.map(\.fromSelf) == [true, false])
        // An empty history (user connected of part III) clears nothing that was not there.
        state.apply(.userConnected(UserEntry(userID: "d", username: "dan", connected: true, messages: [])))
        #expect(state.user("d")!.messages.isEmpty)
        // Nor a conversation that is: bob coming back (part III's `messages: []`) keeps it.
        state.apply(.userDisconnected(userID: "b"))
        state.apply(.userConnected(UserEntry(userID: "b", username: "bob", connected: true, messages: [])))
        #expect(state.user("b")!.messages.map(\.content) == ["hi", "hello"])
        #expect(state.user("b")!.isConnected)
    }

    @Test func historyReplacementKeepsQueuedMessages() {
        var state = loggedIn()
        state.apply(.offline(reason: "x"))
        state.apply(.messageSent(SentMessage(id: 7, to: "b", content: "pending", at: t0), queued: true))
        state.apply(.users([UserEntry(userID: "b", username: "bob", connected: true, messages: [PrivateMessage(content: "old", from: "b", to: "a")])]))
        #expect(state.user("b")!.messages.map(\.content) == ["old", "pending"])
        state.apply(.connected(flushed: []))
        #expect(state.user("b")!.messages.last?.delivery == .sent)
    }

    @Test func theHistoryCapDropsTheOldest() {
        var state = loggedIn(historyLimit: 3)
        for i in 1...5 { state.apply(.messageReceived(PrivateMessage(content: "\(i)", from: "b", to: "a"), at: t0)) }
        #expect(state.user("b")!.messages.map(\.content) == ["3", "4", "5"])
        #expect(state.user("b")!.unreadCount == 5)
    }

    @Test func logoutForgetsEverything() {
        var state = loggedIn(historyLimit: 7)
        state.apply(.select(userID: "b"))
        state.apply(.loggedOut(reason: nil))
        #expect(state.selfID == nil)
        #expect(state.users.isEmpty)
        #expect(state.selectedUserID == nil)
        #expect(state.historyLimit == 7)
    }

    /// The impostor's way in used to be: take "bob" while bob is offline, and messages sent
    /// to "bob" went to the one online. Now two users of one name are no user by that name.
    @Test func findingUsersByNameNeverPicksAmongLookalikes() {
        var state = loggedIn()
        #expect(state.user(named: "bob")?.id == "b" && state.user(named: "BOB")?.id == "b")
        state.apply(.userConnected(UserEntry(userID: "b2", username: "bob", connected: true)))
        state.apply(.userDisconnected(userID: "b"))
        #expect(state.user(named: "bob") == nil)
        #expect(state.users(lookingLike: "bob").map(\.id) == ["b", "b2"])
        #expect(state.user(named: "nobody") == nil)
    }

    /// Names that differ only by what does not show (zero-width characters, bidi marks), by
    /// Unicode form (fullwidth letters, ligatures) or by case look alike: each is tagged.
    @Test(arguments: ["bo\u{200B}b", "\u{200E}bob", "ｂｏｂ", "BOB", "Bob\u{2060}", "bo\u{00AD}b", "bob\u{2800}", "bob ", "b\u{2002}ob", "bob\u{FEFF}"])
    func lookalikesAreToldApart(impostor: String) {
        var state = loggedIn()
        #expect(!state.hasLookalike("b"))
        state.apply(.userConnected(UserEntry(userID: "evil", username: impostor, connected: true)))
        #expect(state.hasLookalike("b") && state.hasLookalike("evil"))
        #expect(!state.hasLookalike("c"))
        #expect(state.user(named: "bob") == nil)
        // The impostor renames away (or goes): bob is bob again.
        state.apply(.userConnected(UserEntry(userID: "evil", username: "mallory", connected: true)))
        #expect(!state.hasLookalike("b") && state.user(named: "bob")?.id == "b")
    }

    @Test func lookalikesStayToldApartAsTheyRenameOneByOne() {
        var state = loggedIn()
        state.apply(.userConnected(UserEntry(userID: "b2", username: "Bob", connected: true)))
        state.apply(.userConnected(UserEntry(userID: "b3", username: "BOB", connected: true)))
        #expect(["b", "b2", "b3"].allSatisfy(state.hasLookalike))
        state.apply(.userConnected(UserEntry(userID: "b", username: "robert", connected: true)))  // the first of them goes
        #expect(!state.hasLookalike("b") && state.hasLookalike("b2") && state.hasLookalike("b3"))
        #expect(state.users(lookingLike: "bob").map(\.id) == ["b3", "b2"])  // "BOB" sorts before "Bob"
        state.apply(.userConnected(UserEntry(userID: "b3", username: "bobby", connected: true)))
        #expect(!state.hasLookalike("b2") && state.user(named: "BOB")?.id == "b2")
    }

    /// A hostile server renames lookalikes back and forth, thousands of them: the counts stay
    /// right (each change is O(1) in the bookkeeping: a set per skeleton, never a scan).
    @Test func thousandsOfLookalikesStayCheapToChange() {
        var state = loggedIn()
        state.apply(.users((0..<5_000).map { UserEntry(userID: "x\($0)", username: "bo" + String(repeating: "\u{200B}", count: $0 % 7) + "b", connected: true) }))
        #expect(state.hasLookalike("b") && state.hasLookalike("x4999"))
        for n in 0..<2_000 {
            state.apply(.userConnected(UserEntry(userID: "x\(n)", username: n.isMultiple(of: 2) ? "away\(n)" : "bob", connected: true)))
        }
        #expect(state.users(lookingLike: "bob").count == 1 + 1_000 + 3_000)
        #expect(!state.hasLookalike("x0") && state.hasLookalike("x1"))
    }

    @Test func differentNamesAreNotLookalikes() {
        var state = loggedIn()
        for (id, name) in [("f", "ﬁsh"), ("g", "bób"), ("h", "bob2"), ("i", "bobb")] {
            state.apply(.userConnected(UserEntry(userID: id, username: name, connected: true)))
        }
        #expect(!state.hasLookalike("b"))
        #expect(state.hasLookalike("f") == false && state.user(named: "fish")?.id == "f")  // NFKC: the ligature is "fi"
    }
}

@Suite struct RestoredHistoryTests {
    @Test func olderMessagesGoBeforeAndEveryMessageKeepsItsNumber() {
        var state = ChatState(historyLimit: 5)
        state.apply(.session(userID: "a", username: "alice"))
        let at = Date(timeIntervalSince1970: 1_700_000_000)
        func message(_ text: String) -> ChatMessage { ChatMessage(content: text, fromSelf: false, delivery: .received, at: at) }
        state.apply(.restored(UserEntry(userID: "b", username: "bob", connected: false), messages: [message("m3"), message("m4")]))
        #expect(state.user("b")?.isConnected == false)
        let before = state.user("b")!
        let numberOfM4 = before.droppedCount + 1
        state.apply(.restoredOlder(userID: "b", messages: [message("m0"), message("m1"), message("m2")]))
        let after = state.user("b")!
        #expect(after.messages.map(\.content) == ["m0", "m1", "m2", "m3", "m4"])
        #expect(after.messages[numberOfM4 - after.droppedCount].content == "m4")
        // The cap: no more than five, the newest of the older ones kept.
        state.apply(.restoredOlder(userID: "b", messages: [message("x")]))
        #expect(state.user("b")!.messages.count == 5)
        // A conversation the server sent first is the server's.
        state.apply(.users([UserEntry(userID: "c", username: "carol", connected: true, messages: [PrivateMessage(content: "server's", from: "c", to: "a")])]))
        state.apply(.restored(UserEntry(userID: "c", username: "carol", connected: false), messages: [message("ours")]))
        #expect(state.user("c")!.messages.map(\.content) == ["server's"])
        #expect(state.user("c")!.isConnected)
    }

    /// The unread total is kept as events come, not summed: after any mix of messages,
    /// selections and a new self (a server that forgot us, with notes to self unread), it is
    /// still the sum of the conversations' counts.
    @Test func theUnreadTotalIsAlwaysTheSumOfTheConversations() {
        var state = loggedIn()
        var random = SystemRandomNumberGenerator()
        let peers = ["a", "b", "c", "d"]
        for step in 0..<2_000 {
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<6:
                let from = peers.randomElement(using: &random)!
                state.apply(.messageReceived(PrivateMessage(content: "m\(step)", from: from, to: state.selfID!), at: t0))
            case 6..<9:
                state.apply(.select(userID: Bool.random(using: &random) ? peers.randomElement(using: &random)! : nil))
            default:
                state.apply(.session(userID: "self\(step)", username: "alice"))
            }
            let sum = state.users.reduce(0) { $0 + $1.unreadCount }
            #expect(state.totalUnread == sum, "after step \(step)")
            if state.totalUnread != sum { break }
        }
    }

    /// Without a local history, a search across conversations reads what is in memory: every
    /// conversation, newest first, case and accents aside, at most the limit.
    @Test func aSearchOfEveryConversationInMemory() {
        var state = loggedIn()
        state.apply(.messageReceived(PrivateMessage(content: "Crème brûlée?", from: "b", to: "a"), at: t0))
        state.apply(.messageReceived(PrivateMessage(content: "no", from: "c", to: "a"), at: t0 + 1))
        state.apply(.messageSent(SentMessage(id: 1, to: "c", content: "creme BRULEE!", at: t0 + 2), queued: false))
        let hits = state.search("  brulee ")
        #expect(hits.map(\.message.content) == ["creme BRULEE!", "Crème brûlée?"])
        #expect(hits.map(\.userID) == ["c", "b"])
        #expect(hits.map(\.username) == ["carol", "bob"])
        #expect(state.search("brulee", limit: 1).count == 1)
        #expect(state.search("").isEmpty)
        #expect(MessageSearch.ranges(of: "aa", in: "aaaaa").count == 2)
    }

    /// The byte-by-byte way of matching agrees with Foundation's, which it stands in for,
    /// whatever the text holds.
    @Test func theFastMatcherAgreesWithFoundation() {
        let texts = ["", "a", "Number 42", "ça va, number 42", "café au lait", "CAFE\u{301}", "中文 and ASCII", "naïve", "straße", "x\u{200B}y", "aaaa", "ǅemal"]
        let queries = ["a", "num", "NUMBER 4", "cafe", "café", "e", "中", "and", "naive", "strasse", "xy", "aa", "dž", " "]
        for text in texts {
            for query in queries {
                let matcher = MessageSearch.Matcher(query)
                let foundation = text.range(of: query, options: [.caseInsensitive, .diacriticInsensitive]) != nil
                #expect(matcher.matches(text) == foundation, "\(query) in \(text)")
                #expect(!matcher.ranges(in: text).isEmpty == foundation, "\(query) in \(text)")
            }
        }
    }
}
