public import JSON

/// Why a socket lost its connection (socket.io-client's disconnect reasons).
public enum DisconnectReason: Sendable, Hashable, CustomStringConvertible {
    /// The server sent DISCONNECT: no automatic reconnection.
    case ioServerDisconnect
    /// This side called `disconnect()`: no automatic reconnection.
    case ioClientDisconnect
    case pingTimeout
    case transportClose
    case transportError(String)
    /// The server sent data that is not valid Engine.IO / Socket.IO.
    case parseError(String)

    /// Whether the manager reconnects by itself after this.
    public var reconnectsAutomatically: Bool {
        switch self {
        case .ioServerDisconnect, .ioClientDisconnect: return false
        default: return true
        }
    }

    public var description: String {
        switch self {
        case .ioServerDisconnect: return "io server disconnect"
        case .ioClientDisconnect: return "io client disconnect"
        case .pingTimeout: return "ping timeout"
        case .transportClose: return "transport close"
        case .transportError(let why): return "transport error: \(why)"
        case .parseError(let why): return "parse error: \(why)"
        }
    }
}

/// A failed attempt to connect a socket to its namespace.
public struct ConnectError: Sendable, Hashable, CustomStringConvertible {
    public enum Source: Sendable, Hashable {
        /// The server answered CONNECT_ERROR: no automatic reconnection.
        case server
        /// The connection could not be made (refused, timed out, broken): reconnection goes on.
        case transport
    }

    public var message: String
    /// The `data` field of a CONNECT_ERROR, if any.
    public var data: JSONValue?
    public var source: Source

    public init(message: String, data: JSONValue? = nil, source: Source) {
        self.message = message
        self.data = data
        self.source = source
    }

    public var description: String { message }
}

/// An application event from the server.
public struct ReceivedEvent: Sendable {
    public let name: String
    public let arguments: [JSONValue]
    /// Present when the server asked for an acknowledgement: call it once with the reply.
    public let ack: Acknowledgement?
}

/// Replies to an event that asked for an acknowledgement.
public struct Acknowledgement: Sendable {
    let manager: SocketManager
    let namespace: String
    let id: Int

    public func callAsFunction(_ arguments: JSONValue...) async {
        await reply(arguments)
    }

    public func reply(_ arguments: [JSONValue]) async {
        await manager.sendAck(namespace: namespace, id: id, arguments: arguments)
    }
}

/// Everything a socket reports, in order.
public enum SocketEvent: Sendable {
    /// Connected to the namespace; anything emitted while offline has been sent.
    case connect
    case disconnect(DisconnectReason)
    case connectError(ConnectError)
    /// A reconnection attempt will start after `delay` (emitted when the wait begins).
    case reconnectAttempt(attempt: Int, delay: Duration)
    /// `maxAttempts` were used up; the manager stopped trying.
    case reconnectFailed
    case event(ReceivedEvent)
}

/// What happened to an emit.
public enum EmitResult: Sendable, Hashable {
    /// Handed to the transport.
    case sent
    /// Held until the socket connects; it will be sent first thing then, in order.
    case buffered
}

public enum SocketError: Error, Sendable, Hashable, CustomStringConvertible {
    case reservedEventName(String)
    /// Larger than the server's `maxPayload`; not sent.
    case payloadTooLarge(size: Int, limit: Int)
    case ackTimeout
    /// The connection was lost after the event was sent, so no acknowledgement can come.
    case disconnected
    case invalidNamespace(String)

    public var description: String {
        switch self {
        case .reservedEventName(let name): return "\(name.debugDescription) is a reserved event name"
        case .payloadTooLarge(let size, let limit):
            return "message of \(size) bytes is larger than the server accepts (\(limit) bytes)"
        case .ackTimeout: return "no acknowledgement before the timeout"
        case .disconnected: return "disconnected before the acknowledgement arrived"
        case .invalidNamespace(let nsp): return "invalid namespace \(nsp.debugDescription) (must start with \"/\", no commas)"
        }
    }
}
