public import Chat
import Foundation
import JSON

/// A command read from standard input, one JSON object per line.
public enum HeadlessCommand: Sendable, Hashable {
    /// `{"send":{"to":"<username or userID>","content":"…"}}`
    case send(to: String, content: String)
    /// `{"logout":true}`: forget the session; `{"logout":{"deleteHistory":true}}`: and this
    /// account's local history.
    case logout(deleteHistory: Bool)
    /// `{"quit":true}`
    case quit

    public struct Problem: Error, Sendable, Hashable, CustomStringConvertible {
        public let description: String
    }

    public init(line: String) throws(Problem) {
        let json: JSONValue
        do {
            json = try JSONValue(parsing: line)
        } catch {
            throw Problem(description: "not JSON: \(error)")
        }
        guard let object = json.objectValue, object.count == 1, let (key, value) = object.first else {
            throw Problem(description: #"expected one of {"send":{"to":…,"content":…}}, {"logout":true}, {"quit":true}"#)
        }
        switch key {
        case "send":
            guard let to = value["to"]?.stringValue, !to.isEmpty else {
                throw Problem(description: #""send" needs "to": a username or userID"#)
            }
            guard let content = value["content"]?.stringValue else {
                throw Problem(description: #""send" needs "content": a string"#)
            }
            self = .send(to: to, content: content)
        case "logout" where value == .bool(true):
            self = .logout(deleteHistory: false)
        case "logout" where value.objectValue != nil:
            guard let object = value.objectValue, object.count == 1, case .bool(let delete)? = value["deleteHistory"] else {
                throw Problem(description: #""logout" takes true or {"deleteHistory":true|false}"#)
            }
            self = .logout(deleteHistory: delete)
        case "quit" where value == .bool(true):
            self = .quit
        default:
            throw Problem(description: "unknown command \(key.debugDescription)")
        }
    }
}

/// The JSON lines written to standard output for each event the chat client applies, each
/// with its kind in `"event"`: a projection of the event and the state right after it. Never
/// carries the session ID.
public enum HeadlessOutput {
    public static func lines(for event: ChatEvent, in chat: ChatState) -> [String] {
        json(for: event, in: chat).map { $0.serializedInert() }
    }

    public static func error(_ message: String) -> String {
        JSONValue.object(["event": "error", "message": .string(message)]).serializedInert()
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-27T11:16:37.332Z`.
    static let timestamp = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    static func json(for event: ChatEvent, in chat: ChatState) -> [JSONValue] {
        switch event {
        case .connecting: return [["event": "status", "state": "connecting"]]
        case .connected(let flushed):
            // What was queued while offline went out with the connection: reported as sent.
            return [["event": "status", "state": "connected"]] + flushed.map { json(for: $0, queued: false, in: chat) }
        case .reconnecting(let attempt, let delay):
            return [["event": "status", "state": "reconnecting", "attempt": .int(attempt), "delay_ms": .int(delay.wholeMilliseconds)]]
        case .refused(let reason, let attempt, let retryIn):
            return [[
                "event": "status", "state": "refused", "reason": .string(reason), "attempt": .int(attempt),
                "delay_ms": .int(retryIn.wholeMilliseconds),
            ]]
        case .offline(let reason): return [["event": "status", "state": "offline", "reason": .string(reason)]]
        case .loggedOut(let reason):
            var object: JSONObject = ["event": "status", "state": "needs_username"]
            if let reason { object["reason"] = .string(reason) }
            return [.object(object)]
        case .session(let userID, let username):
            return [["event": "session", "userID": .string(userID), "username": .string(username)]]
        case .users(let entries):
            // The whole list as it stands, then each conversation a part III server sent with it.
            var lines: [JSONValue] = [["event": "users", "users": .array(chat.users.map(json(for:)))]]
            for entry in entries {
                guard let history = entry.messages, !history.isEmpty else { continue }
                lines.append([
                    "event": "history", "userID": .string(entry.userID),
                    "messages": .array(history.map { json(for: $0, at: Date(), in: chat) }),
                ])
            }
            return lines
        case .userConnected(let entry):
            let username = chat.user(entry.userID)?.username ?? entry.username
            return [["event": "user_connected", "userID": .string(entry.userID), "username": .string(username)]]
        case .userDisconnected(let userID):
            return [["event": "user_disconnected", "userID": .string(userID)]]
        case .messageReceived(let message, let at):
            guard case .object(var object) = json(for: message, at: at, in: chat) else { return [] }
            object["event"] = "message"
            return [.object(object)]
        case .messageSent(let message, let queued):
            return [json(for: message, queued: queued, in: chat)]
        case .warning(let text):
            return [["event": "warning", "message": .string(text)]]
        case .select, .restoredOlder:
            // The person's own doing in the terminal (headless mode neither selects nor scrolls).
            return []
        case .restored(let entry, let messages):
            // As a server's history is reported: the conversation, oldest first.
            let me = chat.selfID ?? ""
            return [[
                "event": "history", "userID": .string(entry.userID),
                "messages": .array(messages.map { message in
                    [
                        "from": .string(message.fromSelf ? me : entry.userID), "to": .string(message.fromSelf ? entry.userID : me),
                        "content": .string(message.content), "fromSelf": .bool(message.fromSelf),
                        "at": .string(message.at.formatted(timestamp)),
                    ]
                }),
            ]]
        }
    }

    /// A message from the server: `from`, `to`, `content`, `fromSelf`, `at` (a `message` line
    /// adds its `event`; a `history` line lists them as they are).
    static func json(for message: PrivateMessage, at: Date, in chat: ChatState) -> JSONValue {
        [
            "from": .string(message.from), "to": .string(message.to),
            "content": .string(message.content), "fromSelf": .bool(message.from == chat.selfID),
            "at": .string(at.formatted(timestamp)),
        ]
    }

    /// One of ours, as sent or queued: with its `id` (the same when a queued one is sent), `queued` and `sent`.
    static func json(for message: SentMessage, queued: Bool, in chat: ChatState) -> JSONValue {
        var object: JSONObject = [
            "event": "message", "id": .int(message.id), "to": .string(message.to),
            "content": .string(message.content), "fromSelf": true, "at": .string(message.at.formatted(timestamp)),
            "queued": .bool(queued), "sent": .bool(!queued),
        ]
        // Sending needs a login, so the sender is known.
        if let selfID = chat.selfID { object["from"] = .string(selfID) }
        return .object(object)
    }

    static func json(for user: ChatUser) -> JSONValue {
        [
            "userID": .string(user.id), "username": .string(user.username), "connected": .bool(user.isConnected),
            "self": .bool(user.isSelf), "unread": .int(user.unreadCount),
        ]
    }
}
