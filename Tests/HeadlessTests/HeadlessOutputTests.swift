import Chat
import Foundation
import Headless
import JSON
import Testing

/// The JSON lines of headless mode, as projections of an event and the state after it.
@Suite struct HeadlessOutputTests {
    func lines(_ events: [ChatEvent]) throws -> [JSONValue] {
        var chat = ChatState()
        var out: [JSONValue] = []
        for event in events {
            chat.apply(event)
            out += try HeadlessOutput.lines(for: event, in: chat).map { try JSONValue(parsing: $0) }
        }
        return out
    }

    @Test func historiesListTheirMessagesAsTheyAreAndMessagesSayTheirEvent() throws {
        let at = Date(timeIntervalSince1970: 1_700_000_000)
        let out = try lines([
            .session(userID: "a", username: "alice"),
            .users([
                UserEntry(userID: "a", username: "alice", connected: true),
                UserEntry(userID: "b", username: "bob", connected: true, messages: [PrivateMessage(content: "old", from: "b", to: "a")]),
            ]),
            .restored(UserEntry(userID: "c", username: "carol", connected: false), messages: [
                ChatMessage(content: "kept", fromSelf: true, delivery: .sent, at: at),
            ]),
            .messageReceived(PrivateMessage(content: "new", from: "b", to: "a"), at: at),
            .messageSent(SentMessage(id: 7, to: "b", content: "mine", at: at), queued: true),
        ])
        let histories = out.filter { $0["event"] == "history" }
        #expect(histories.count == 2)
        for history in histories {
            #expect(history["messages"]?.arrayValue?.allSatisfy { $0["event"] == nil && $0["from"] != nil && $0["at"] != nil } == true, "\(history)")
        }
        #expect(histories.last?["messages"]?.arrayValue?.first?["to"] == "c")
        let messages = out.filter { $0["event"] == "message" }
        #expect(messages.count == 2)
        #expect(messages[0]["from"] == "b" && messages[0]["fromSelf"] == false && messages[0]["id"] == nil)
        #expect(messages[1]["id"] == 7 && messages[1]["queued"] == true && messages[1]["sent"] == false && messages[1]["from"] == "a")
        // A queued one comes again, sent, with the connection that flushed it.
        let flushed = try lines([
            .session(userID: "a", username: "alice"),
            .connected(flushed: [SentMessage(id: 7, to: "b", content: "mine", at: at)]),
        ]).filter { $0["event"] == "message" }
        #expect(flushed.first?["id"] == 7 && flushed.first?["sent"] == true)
    }

    @Test func logoutMayTakeTheHistoryWithIt() throws {
        #expect(try HeadlessCommand(line: #"{"logout":true}"#) == .logout(deleteHistory: false))
        #expect(try HeadlessCommand(line: #"{"logout":{"deleteHistory":true}}"#) == .logout(deleteHistory: true))
        #expect(throws: HeadlessCommand.Problem.self) { try HeadlessCommand(line: #"{"logout":{"deleteHistory":"yes"}}"#) }
        #expect(throws: HeadlessCommand.Problem.self) { try HeadlessCommand(line: #"{"logout":false}"#) }
    }
}
