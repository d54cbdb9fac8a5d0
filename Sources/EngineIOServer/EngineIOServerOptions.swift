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
    /// What a client, an address and everyone together may make the server hold.
    public var limits: Limits
    /// Whether a new session is half-open until the application admits it
    /// (`EngineIOSocket.setHalfOpen(false)`): a Socket.IO server does when the client joins
    /// a namespace, and sets this. Half-open sessions are capped (`Limits.maxHalfOpen…`) and
    /// may send only small payloads (`Limits.maxHalfOpenPayloadBytes`). An Engine.IO
    /// application without such a step leaves it off: its sessions are never half-open.
    public var sessionsStartHalfOpen: Bool

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
        cors: CORS = .disabled,
        limits: Limits = Limits(),
        sessionsStartHalfOpen: Bool = false
    ) {
        self.path = path.hasSuffix("/") ? path : path + "/"
        self.pingInterval = pingInterval
        self.pingTimeout = pingTimeout
        self.maxHttpBufferSize = maxHttpBufferSize
        self.transports = transports
        self.allowUpgrades = allowUpgrades
        self.upgradeTimeout = upgradeTimeout
        self.cors = cors
        self.limits = limits
        self.sessionsStartHalfOpen = sessionsStartHalfOpen
    }

    /// Every resource a client can make the server hold, bounded per connection, per remote
    /// address and in total (PROTOCOL.md, "Parley's server: limits it keeps"). A refusal is
    /// always an answer: HTTP 429 or 503 with engine.io's error body, or a closed session.
    ///
    /// An address is an IPv4 address, or the /64 prefix of an IPv6 one (what one host
    /// usually holds). `Int.max` or `.infinity` switches a limit off.
    public struct Limits: Sendable, Equatable {
        /// Open TCP connections, in total and from one address.
        public var maxConnections: Int
        public var maxConnectionsPerAddress: Int
        /// Engine.IO sessions, in total and from one address.
        public var maxSessions: Int
        public var maxSessionsPerAddress: Int
        /// Sessions that have not (or no longer) joined any namespace, in total and from one
        /// address. A real client has one for a few milliseconds, between its handshake and
        /// its CONNECT; an attacker would keep thousands.
        public var maxHalfOpenSessions: Int
        public var maxHalfOpenSessionsPerAddress: Int
        /// The largest HTTP body or WebSocket message of a half-open session: before it has
        /// joined a namespace a client sends its CONNECT and nothing else, so a megabyte then
        /// is only work for the server (a 900 KB username).
        public var maxHalfOpenPayloadBytes: Int
        /// New sessions one address may open per second on average, and in a burst.
        public var newSessionsPerSecondPerAddress: Double
        public var newSessionBurstPerAddress: Double
        /// Bytes waiting for a client that does not read (a WebSocket's backlog, a polling
        /// session's outbox) before the session is closed.
        public var maxBacklogBytes: Int
        /// A request head must be complete within this long of the connection opening or of
        /// the last response (so also the keep-alive idle time)…
        public var requestHeadTimeout: Duration
        /// …and a request body within this long of its head.
        public var requestBodyTimeout: Duration

        public init(
            maxConnections: Int = 20_000,
            maxConnectionsPerAddress: Int = 512,
            maxSessions: Int = 20_000,
            maxSessionsPerAddress: Int = 256,
            maxHalfOpenSessions: Int = 1_024,
            maxHalfOpenSessionsPerAddress: Int = 16,
            maxHalfOpenPayloadBytes: Int = 16 << 10,
            newSessionsPerSecondPerAddress: Double = 5,
            newSessionBurstPerAddress: Double = 30,
            maxBacklogBytes: Int = 8 << 20,
            requestHeadTimeout: Duration = .seconds(10),
            requestBodyTimeout: Duration = .seconds(15)
        ) {
            self.maxConnections = maxConnections
            self.maxConnectionsPerAddress = maxConnectionsPerAddress
            self.maxSessions = maxSessions
            self.maxSessionsPerAddress = maxSessionsPerAddress
            self.maxHalfOpenSessions = maxHalfOpenSessions
            self.maxHalfOpenSessionsPerAddress = maxHalfOpenSessionsPerAddress
            self.maxHalfOpenPayloadBytes = maxHalfOpenPayloadBytes
            self.newSessionsPerSecondPerAddress = newSessionsPerSecondPerAddress
            self.newSessionBurstPerAddress = newSessionBurstPerAddress
            self.maxBacklogBytes = maxBacklogBytes
            self.requestHeadTimeout = requestHeadTimeout
            self.requestBodyTimeout = requestBodyTimeout
        }

        /// No limits but the timeouts and the backlog: for tests and benchmarks that open
        /// thousands of sessions from one address.
        public static var unlimitedAddresses: Limits {
            var limits = Limits()
            limits.maxConnectionsPerAddress = .max
            limits.maxSessionsPerAddress = .max
            limits.maxHalfOpenSessionsPerAddress = .max
            limits.maxHalfOpenSessions = .max
            limits.newSessionsPerSecondPerAddress = .infinity
            return limits
        }
    }
}

/// The parts of the opening HTTP request an application may look at (Socket.IO's `handshake`).
public struct EngineIOHandshakeRequest: Sendable {
    /// Query parameters of the first request, decoded.
    public var query: [String: String]
    /// Request headers, lower-cased names.
    public var headers: [String: String]
    /// The peer's address, when known.
    public var remoteAddress: String?
    /// What the per-address limits count the peer as (see `EngineIOServerOptions.Limits`).
    public var addressKey: String {
        guard let remoteAddress else { return "" }
        return AddressKey.of(remoteAddress)
    }
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
