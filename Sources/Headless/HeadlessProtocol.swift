import Chat
public import ChatClient
import Foundation
import JSON

/// A command read from standard input, one JSON object per line.
public enum HeadlessCommand: Sendable, Hashable {
    /// `{"send":{"to":"<username or userID>","content":"…"}}`
    case send(to: String, content: String)
    /// `{"logout":true}`: forget the session.
    case logout
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
            self = .logout
        case "quit" where value == .bool(true):
            self = .quit
        default:
            throw Problem(description: "unknown command \(key.debugDescription)")
        }
    }
}

/// The JSON line written to standard output for each change, its kind in `"event"`.
/// Never carries the session ID.
public enum HeadlessOutput {
    public static func line(for update: ChatUpdate) -> String {
        json(for: update).serializedInert()
    }

    public static func error(_ message: String) -> String {
        JSONValue.object(["event": "error", "message": .string(message)]).serializedInert()
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-27T11:16:37.332Z`.
    static let timestamp = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    static func json(for update: ChatUpdate) -> JSONValue {
        switch update {
        case .status(let status):
            switch status {
            case .connecting: return ["event": "status", "state": "connecting"]
            case .connected: return ["event": "status", "state": "connected"]
            case .reconnecting(let attempt, let delay):
                return [
                    "event": "status", "state": "reconnecting", "attempt": .int(attempt),
                    "delay_ms": .int(delay.wholeMilliseconds),
                ]
            case .refused(let reason, let attempt, let retryIn):
                return [
                    "event": "status", "state": "refused", "reason": .string(reason), "attempt": .int(attempt),
                    "delay_ms": .int(retryIn.wholeMilliseconds),
                ]
            case .offline(let reason): return ["event": "status", "state": "offline", "reason": .string(reason)]
            }
        case .session(let userID, let username):
            return ["event": "session", "userID": .string(userID), "username": .string(username)]
        case .users(let users):
            return ["event": "users", "users": .array(users.map(json(for:)))]
        case .userConnected(let user):
            return ["event": "user_connected", "userID": .string(user.userID), "username": .string(user.username)]
        case .userDisconnected(let userID):
            return ["event": "user_disconnected", "userID": .string(userID)]
        case .message(let message):
            guard case .object(var object) = json(for: message) else { return nil }
            object["event"] = "message"
            return .object(object)
        case .history(let userID, let messages):
            return ["event": "history", "userID": .string(userID), "messages": .array(messages.map(json(for:)))]
        case .needsUsername(let reason):
            var object: JSONObject = ["event": "status", "state": "needs_username"]
            if let reason { object["reason"] = .string(reason) }
            return .object(object)
        case .warning(let text):
            return ["event": "warning", "message": .string(text)]
        }
    }

    /// `from`, `to`, `content`, `fromSelf`, `at`; for own messages also `id`, `queued` and `sent`.
    static func json(for message: MessageRecord) -> JSONValue {
        var object: JSONObject = [
            "from": .string(message.from), "to": .string(message.to),
            "content": .string(message.content), "fromSelf": .bool(message.fromSelf),
            "at": .string(message.at.formatted(timestamp)),
        ]
        if message.fromSelf, let id = message.id {
            object["id"] = .int(id)
            object["queued"] = .bool(message.delivery == .queued)
            object["sent"] = .bool(message.delivery == .sent)
        }
        return .object(object)
    }

    static func json(for user: UserSummary) -> JSONValue {
        [
            "userID": .string(user.userID), "username": .string(user.username), "connected": .bool(user.connected),
            "self": .bool(user.isSelf), "unread": .int(user.unread),
        ]
    }
}
