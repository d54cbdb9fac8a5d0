public import Foundation
public import JSON

/// What an event from a chat server means to the client, decoded with the shared schema
/// (`ServerPayload`). The one mapping from the wire to `ChatEvent`: the chat client and the
/// client fuzz target both go through it.
public enum ServerEvent: Sendable, Hashable {
    /// `session`: who we are. The session ID is a secret, for the session file only: the
    /// chat state never holds it.
    case session(SessionPayload)
    /// Every other event of the application changes the chat state as it is.
    case chat(ChatEvent)

    /// The event named `name` with these arguments, received at `at`: nil for an event the
    /// application does not have; problems for a payload (or entries of one) not used.
    public static func decode(name: String, arguments: [JSONValue], at: Date) -> (event: ServerEvent?, problems: [PayloadProblem]) {
        func decoded<T>(_ result: Result<T, PayloadProblem>, _ event: (T) -> ServerEvent) -> (ServerEvent?, [PayloadProblem]) {
            switch result {
            case .success(let value): return (event(value), [])
            case .failure(let problem): return (nil, [problem])
            }
        }
        // The event of a flood first: a switch on strings compares them in order.
        switch name {
        case ChatEventName.privateMessage:
            return decoded(ServerPayload.privateMessage(arguments)) { .chat(.messageReceived($0, at: at)) }
        case ChatEventName.session:
            return decoded(ServerPayload.session(arguments)) { .session($0) }
        case ChatEventName.users:
            let (entries, problems) = ServerPayload.users(arguments)
            return (.chat(.users(entries)), problems)
        case ChatEventName.userConnected:
            return decoded(ServerPayload.userConnected(arguments)) { .chat(.userConnected($0)) }
        case ChatEventName.userDisconnected:
            return decoded(ServerPayload.userDisconnected(arguments)) { .chat(.userDisconnected(userID: $0)) }
        default:
            return (nil, [])
        }
    }
}
