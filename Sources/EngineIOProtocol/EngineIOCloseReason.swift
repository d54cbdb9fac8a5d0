/// Why an Engine.IO session ended, on either side (engine.io's and engine.io-client's close
/// reasons). `name` is the reason as Socket.IO reports it ("transport close", "ping timeout", …);
/// the detail, where there is one, says what went wrong.
public enum EngineIOCloseReason: Sendable, Hashable, CustomStringConvertible {
    /// The peer closed the connection or sent a `close` packet (client: or the stream ended).
    case transportClose
    /// The transport failed (a socket error, a polling request aborted or refused).
    case transportError(String)
    /// The heartbeat failed: no ping (client) or no pong (server) in time.
    case pingTimeout
    /// The peer sent something that is not valid Engine.IO, or too large.
    case parseError(String)
    /// This side closed it.
    case forcedClose
    /// The server is stopping (server side only).
    case serverShutdown

    /// engine.io's name of the reason, without the detail.
    public var name: String {
        switch self {
        case .transportClose: return "transport close"
        case .transportError: return "transport error"
        case .pingTimeout: return "ping timeout"
        case .parseError: return "parse error"
        case .forcedClose: return "forced close"
        case .serverShutdown: return "server shutting down"
        }
    }

    public var description: String {
        switch self {
        case .transportError(let why), .parseError(let why): return why.isEmpty ? name : "\(name): \(why)"
        default: return name
        }
    }
}
