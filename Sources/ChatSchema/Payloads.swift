public import JSON

// The private-messaging application's wire shapes (PROTOCOL.md, "The application"), for
// both sides: the client decodes what the server sends with `ServerPayload` and encodes its
// sends with `OutgoingMessage.json`; the server decodes those with `ClientPayload` and builds
// every event it emits from these types' `json`. One schema, so the two cannot drift apart.

/// The application's event names.
public enum ChatEventName {
    public static let session = "session"
    public static let users = "users"
    public static let userConnected = "user connected"
    public static let userDisconnected = "user disconnected"
    public static let privateMessage = "private message"
}

/// Why a server refuses a login: the `message` of its CONNECT_ERROR (PROTOCOL.md). Only
/// `invalidUsername` says the session is of no use (the client forgets it and asks for a
/// name); every other refusal may pass, and the client keeps its session and tries again
/// later. A server may send reasons not listed here: they are refusals of the second kind.
public enum LoginRefusal: String, Sendable, Hashable, CaseIterable, Error {
    case invalidUsername = "invalid username"
    case tooManySockets = "too many connections for this user"
    case tooManyLogins = "too many logins for this user; try again later"
    case serverFull = "server full: no new users for now"
    case tooManyNewUsers = "too many new users from this address; try again later"
    case tooManyUsersFromAddress = "too many users from this address"

    /// Whether a refusal with this message means the stored session will never be taken.
    public static func forgetsSession(_ message: String) -> Bool {
        message == LoginRefusal.invalidUsername.rawValue
    }
}

/// `session` `{sessionID, userID}`: the server tells a socket who it is.
///
/// `sessionID` is a bearer secret: it goes to its owner only; this type's descriptions (what
/// string interpolation, `print`, `dump` and test failures show) leave it out.
public struct SessionPayload: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var sessionID: String
    public var userID: String

    public init(sessionID: String, userID: String) {
        self.sessionID = sessionID
        self.userID = userID
    }

    public var description: String { "session of userID \(userID)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["userID": userID]) }

    public var json: JSONValue { ["sessionID": .string(sessionID), "userID": .string(userID)] }
}

/// A user as the server describes it in `users` and `user connected`.
public struct UserEntry: Sendable, Hashable {
    public var userID: String
    public var username: String
    public var connected: Bool
    /// Part III servers: the whole conversation between this user and the receiver.
    public var messages: [PrivateMessage]?

    public init(userID: String, username: String, connected: Bool, messages: [PrivateMessage]? = nil) {
        self.userID = userID
        self.username = username
        self.connected = connected
        self.messages = messages
    }

    /// `{userID, username, connected, messages?}`: `messages` only when set (part III).
    public var json: JSONValue {
        var object: JSONObject = ["userID": .string(userID), "username": .string(username), "connected": .bool(connected)]
        if let messages { object["messages"] = .array(messages.map(\.json)) }
        return .object(object)
    }

    /// The entry with its conversation given serialized already (`messages` is ignored): a
    /// server's `users` list, built from messages serialized once.
    public func json(serializedMessages: [JSONFragment]) -> JSONFragment {
        .object([
            ("userID", JSONFragment(.string(userID))), ("username", JSONFragment(.string(username))),
            ("connected", JSONFragment(.bool(connected))), ("messages", .array(serializedMessages)),
        ])
    }
}

/// `private message` as the server sends it: `from` is set by the server.
public struct PrivateMessage: Sendable, Hashable {
    public var content: String
    public var from: String
    public var to: String

    public init(content: String, from: String, to: String) {
        self.content = content
        self.from = from
        self.to = to
    }

    public var json: JSONValue { ["content": .string(content), "from": .string(from), "to": .string(to)] }
}

/// `private message` `{content, to}` as a client sends it: the server sets `from`.
public struct OutgoingMessage: Sendable, Hashable {
    public var content: String
    public var to: String

    public init(content: String, to: String) {
        self.content = content
        self.to = to
    }

    public var json: JSONValue { ["content": .string(content), "to": .string(to)] }
}

/// Why a payload from the peer was not used.
public struct PayloadProblem: Error, Sendable, Hashable, CustomStringConvertible {
    public let event: String
    public let why: String
    public var description: String { "ignored a malformed \"\(event)\" payload: \(why)" }
}

/// Turns the JSON arguments of what a client sends into typed values (the server's side).
public enum ClientPayload {
    /// `private message` `{content, to}`. The problem's `why` is what the sender is told.
    public static func privateMessage(_ arguments: [JSONValue]) -> Result<OutgoingMessage, PayloadProblem> {
        func problem(_ why: String) -> Result<OutgoingMessage, PayloadProblem> {
            .failure(PayloadProblem(event: ChatEventName.privateMessage, why: why))
        }
        guard let payload = arguments.first?.objectValue else { return problem("the message is not an object") }
        guard case .string(let content)? = payload["content"] else { return problem("content is not a string") }
        guard case .string(let to)? = payload["to"] else { return problem("to is not a string") }
        guard !content.isEmpty else { return problem("content is empty") }
        return .success(OutgoingMessage(content: content, to: to))
    }
}

/// Turns the JSON arguments of the application's events into typed values.
/// Every byte from the network is untrusted: wrong shapes are reported, never trusted.
public enum ServerPayload {
    /// `session` `{sessionID, userID}`.
    public static func session(_ arguments: [JSONValue]) -> Result<SessionPayload, PayloadProblem> {
        guard let payload = arguments.first, let sessionID = payload["sessionID"]?.stringValue, !sessionID.isEmpty,
            let userID = payload["userID"]?.stringValue, !userID.isEmpty
        else { return .failure(PayloadProblem(event: "session", why: "needs string sessionID and userID")) }
        return .success(SessionPayload(sessionID: sessionID, userID: userID))
    }

    /// `users` `[{userID, username, connected, messages?}]`: good entries, and a problem per skipped one.
    public static func users(_ arguments: [JSONValue]) -> (entries: [UserEntry], problems: [PayloadProblem]) {
        guard let list = arguments.first?.arrayValue else {
            return ([], [PayloadProblem(event: "users", why: "not an array")])
        }
        var entries: [UserEntry] = []
        var problems: [PayloadProblem] = []
        entries.reserveCapacity(list.count)
        for (index, item) in list.enumerated() {
            switch userEntry(item, event: "users") {
            case .success(let entry): entries.append(entry)
            case .failure(let problem):
                problems.append(PayloadProblem(event: "users", why: "entry \(index): \(problem.why)"))
            }
        }
        return (entries, problems)
    }

    /// `user connected` `{userID, username, connected?, messages?}`.
    public static func userConnected(_ arguments: [JSONValue]) -> Result<UserEntry, PayloadProblem> {
        guard let payload = arguments.first else {
            return .failure(PayloadProblem(event: "user connected", why: "no payload"))
        }
        return userEntry(payload, event: "user connected", connectedByDefault: true)
    }

    /// `user disconnected` with the bare userID.
    public static func userDisconnected(_ arguments: [JSONValue]) -> Result<String, PayloadProblem> {
        guard let userID = arguments.first?.stringValue, !userID.isEmpty else {
            return .failure(PayloadProblem(event: "user disconnected", why: "needs a userID string"))
        }
        return .success(userID)
    }

    /// `private message` `{content, from, to}`.
    public static func privateMessage(_ arguments: [JSONValue]) -> Result<PrivateMessage, PayloadProblem> {
        guard let payload = arguments.first else {
            return .failure(PayloadProblem(event: "private message", why: "no payload"))
        }
        return message(payload, event: "private message")
    }

    static func message(_ value: JSONValue, event: String) -> Result<PrivateMessage, PayloadProblem> {
        guard let content = value["content"]?.stringValue else {
            return .failure(PayloadProblem(event: event, why: "content is not a string"))
        }
        guard let from = value["from"]?.stringValue, !from.isEmpty, let to = value["to"]?.stringValue, !to.isEmpty else {
            return .failure(PayloadProblem(event: event, why: "needs from and to userIDs"))
        }
        return .success(PrivateMessage(content: content, from: from, to: to))
    }

    static func userEntry(_ value: JSONValue, event: String, connectedByDefault: Bool = false) -> Result<UserEntry, PayloadProblem> {
        guard let userID = value["userID"]?.stringValue, !userID.isEmpty else {
            return .failure(PayloadProblem(event: event, why: "no userID string"))
        }
        guard let username = value["username"]?.stringValue else {
            return .failure(PayloadProblem(event: event, why: "no username string"))
        }
        let connected: Bool
        switch value["connected"] {
        case .bool(let flag)?: connected = flag
        case nil, .null?: connected = connectedByDefault
        default: return .failure(PayloadProblem(event: event, why: "connected is not a boolean"))
        }
        var messages: [PrivateMessage]?
        if let history = value["messages"], !history.isNull {
            guard let list = history.arrayValue else {
                return .failure(PayloadProblem(event: event, why: "messages is not an array"))
            }
            // A bad message inside an otherwise good history is dropped, not the whole user.
            messages = list.compactMap { try? message($0, event: event).get() }
        }
        return .success(UserEntry(userID: userID, username: username, connected: connected, messages: messages))
    }
}
