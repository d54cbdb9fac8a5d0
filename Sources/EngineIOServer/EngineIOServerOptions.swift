/// What an Engine.IO v4 server allows and how it keeps time (engine.io's `ServerOptions`).
public struct EngineIOServerOptions: Sendable {
    /// The request path the server answers on; clients of Socket.IO use `/socket.io/`.
    public var path: String
    /// The server sends a ping this often…
    public var pingInterval: Duration
    /// …and closes the session when no pong comes within this long after it.
    public var pingTimeout: Duration
    /// Largest HTTP body or WebSocket message accepted, in bytes (sent to clients as `maxPayload`).
    public var maxHttpBufferSize: Int
    /// Transports a client may open a session with.
    public var transports: Set<Transport>
    /// Whether a polling session may move to WebSocket (`upgrades: ["websocket"]`).
    public var allowUpgrades: Bool
    /// How long an upgrade may take between the WebSocket opening and the client's `5`.
    public var upgradeTimeout: Duration
    /// Which browser origins get CORS headers on polling requests.
    public var cors: CORS

    public enum Transport: String, Sendable, Hashable, CaseIterable {
        case polling
        case websocket
    }

    /// Cross-origin requests, for web clients served from another origin.
    public enum CORS: Sendable, Equatable {
        /// No CORS headers: only same-origin web pages (and every non-browser client) work.
        case disabled
        /// Any origin, echoed back (engine.io's `cors: { origin: true }`).
        case anyOrigin
        /// These origins exactly (scheme://host[:port]).
        case origins(Set<String>)

        func allows(_ origin: String) -> Bool {
            switch self {
            case .disabled: return false
            case .anyOrigin: return true
            case .origins(let set): return set.contains(origin)
            }
        }
    }

    public init(
        path: String = "/socket.io/",
        pingInterval: Duration = .seconds(25),
        pingTimeout: Duration = .seconds(20),
        maxHttpBufferSize: Int = 1_000_000,
        transports: Set<Transport> = [.polling, .websocket],
        allowUpgrades: Bool = true,
        upgradeTimeout: Duration = .seconds(10),
        cors: CORS = .disabled
    ) {
        self.path = path.hasSuffix("/") ? path : path + "/"
        self.pingInterval = pingInterval
        self.pingTimeout = pingTimeout
        self.maxHttpBufferSize = maxHttpBufferSize
        self.transports = transports
        self.allowUpgrades = allowUpgrades
        self.upgradeTimeout = upgradeTimeout
        self.cors = cors
    }
}

/// Why a session ended (engine.io's close reasons).
public enum EngineIOCloseReason: String, Sendable, Equatable {
    /// The client closed the connection or sent a `close` packet.
    case transportClose = "transport close"
    /// The transport failed (a polling request aborted, a socket error).
    case transportError = "transport error"
    /// No pong within pingTimeout.
    case pingTimeout = "ping timeout"
    /// The client sent something that is not Engine.IO (or too large).
    case parseError = "parse error"
    /// The application closed it.
    case forcedClose = "forced close"
    /// The server is stopping.
    case serverShutdown = "server shutting down"
}

/// The parts of the opening HTTP request an application may look at (Socket.IO's `handshake`).
public struct EngineIOHandshakeRequest: Sendable {
    /// Query parameters of the first request, decoded.
    public var query: [String: String]
    /// Request headers, lower-cased names.
    public var headers: [String: String]
    /// The peer's address, when known.
    public var remoteAddress: String?
    /// The transport the session started on.
    public var transport: EngineIOServerOptions.Transport

    public init(
        query: [String: String],
        headers: [String: String],
        remoteAddress: String?,
        transport: EngineIOServerOptions.Transport
    ) {
        self.query = query
        self.headers = headers
        self.remoteAddress = remoteAddress
        self.transport = transport
    }
}
