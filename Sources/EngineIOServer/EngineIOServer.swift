import EngineIOProtocol
import JSON
public import NIOCore
import Synchronization

/// An Engine.IO v4 server (engine.io-protocol v4): sessions over HTTP long-polling and
/// WebSocket, the upgrade from one to the other, the heartbeat, and the limits of
/// `EngineIOServerOptions.Limits`.
///
/// It knows nothing of HTTP libraries: `EngineIOChannel.swift` connects it to NIO's HTTP and
/// WebSocket pipelines and to Hummingbird's responder.
public final class EngineIOServer: Sendable {
    public let options: EngineIOServerOptions
    /// Every timer and rate limit of the server keeps time with this clock.
    public let clock: any ServerClock
    let registry: SessionRegistry
    /// Counts TCP connections per address and in total (see `EngineIOChannel`).
    let connections: ConnectionLimiter
    /// Makes the receiver of a new session's messages; called before any message arrives.
    private let onConnection: @Sendable (EngineIOSocket) -> any EngineIOSocketDelegate

    public init(
        options: EngineIOServerOptions = EngineIOServerOptions(),
        clock: any ServerClock = .system,
        onConnection: @escaping @Sendable (EngineIOSocket) -> any EngineIOSocketDelegate
    ) {
        self.options = options
        self.clock = clock
        self.registry = SessionRegistry(limits: options.limits, clock: clock)
        self.connections = ConnectionLimiter(limits: options.limits)
        self.onConnection = onConnection
    }

    /// Open sessions.
    public var sessionCount: Int { registry.count }
    /// Open sessions that have joined no namespace (see `EngineIOSocket.setHalfOpen`).
    public var halfOpenSessionCount: Int { registry.halfOpenCount }
    /// Open TCP connections.
    public var connectionCount: Int { connections.count }

    public func session(id: String) -> EngineIOSocket? { registry.session(id: id) }

    /// Closes every session (`server shutting down`) and refuses new ones.
    public func shutdown() {
        for socket in registry.shutDown() { socket.close(reason: .serverShutdown) }
    }

    // MARK: Handshake

    /// The open packet for a new session on `transport`: only a polling session has
    /// an upgrade to offer (a WebSocket session says `upgrades: []`).
    func handshakePacket(_ sid: String, _ transport: EngineIOServerOptions.Transport) -> EngineIOPacket {
        var upgrades: [String] = []
        if transport == .polling && options.allowUpgrades && options.transports.contains(.websocket) {
            upgrades = ["websocket"]
        }
        return .open(
            EngineIOHandshake(
                sid: sid,
                upgrades: upgrades,
                pingInterval: options.pingInterval,
                pingTimeout: options.pingTimeout,
                maxPayload: options.maxHttpBufferSize
            )
        )
    }

    /// Creates and registers a new session, or says why not (the answer for the client).
    func open(request: EngineIOHandshakeRequest, on loop: any EventLoop) -> Result<EngineIOSocket, HTTPAnswer> {
        let socket = EngineIOSocket(
            id: Self.randomID(),
            request: request,
            options: options,
            clock: clock,
            loop: loop,
            registry: registry
        )
        if let refusal = registry.add(socket) { return .failure(refusal) }
        return .success(socket)
    }

    /// Starts the application's side and the heartbeat, after the open packet is on its way.
    func start(_ socket: EngineIOSocket) {
        socket.setDelegate(onConnection(socket))
        socket.scheduleHeartbeat()
    }

    /// 120 random bits from the system's cryptographic source (getrandom), base64url:
    /// 20 characters. Session ids and socket ids are both made this way.
    public static func randomID() -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(15)
        for _ in 0..<15 { bytes.append(UInt8.random(in: 0...255, using: &generator)) }
        return base64URL(bytes)
    }

    static func base64URL(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var out: [UInt8] = []
        var i = 0
        while i + 2 < bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            for shift in [18, 12, 6, 0] { out.append(alphabet[Int((n >> UInt32(shift)) & 63)]) }
            i += 3
        }
        let rest = bytes.count - i
        if rest > 0 {
            var n = UInt32(bytes[i]) << 16
            if rest == 2 { n |= UInt32(bytes[i + 1]) << 8 }
            let chars = rest == 1 ? 2 : 3
            for k in 0..<chars { out.append(alphabet[Int((n >> UInt32(18 - 6 * k)) & 63)]) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: Requests, independent of the HTTP library

    /// An HTTP answer for the polling transport, or a refusal.
    public struct HTTPAnswer: Sendable, Equatable, Error {
        public var status: Int
        public var body: String
        public var contentType: String
        /// For 429 and 503: when the client may try again (`Retry-After`, in seconds).
        public var retryAfter: Int?

        static func ok(_ body: String) -> HTTPAnswer {
            HTTPAnswer(status: 200, body: body, contentType: "text/plain; charset=UTF-8")
        }

        /// engine.io's error body: `{"code":N,"message":"…"}`.
        static func error(_ code: ErrorCode, status: Int = 400, message: String? = nil, retryAfter: Int? = nil) -> HTTPAnswer {
            let json: JSONValue = ["code": .int(code.rawValue), "message": .string(message ?? code.message)]
            return HTTPAnswer(status: status, body: json.serialized(), contentType: "application/json", retryAfter: retryAfter)
        }

        /// The whole HTTP/1.1 response as bytes, for a connection that gets nothing else
        /// (a refused WebSocket upgrade, a refused connection): engine.io writes these raw too.
        var rawResponse: String {
            var head = "HTTP/1.1 \(status) \(Self.reason(status))\r\nConnection: close\r\n"
            head += "Content-Type: \(contentType)\r\nContent-Length: \(body.utf8.count)\r\n"
            if let retryAfter { head += "Retry-After: \(retryAfter)\r\n" }
            return head + "\r\n" + body
        }

        static func reason(_ status: Int) -> String {
            switch status {
            case 200: return "OK"
            case 400: return "Bad Request"
            case 403: return "Forbidden"
            case 408: return "Request Timeout"
            case 413: return "Payload Too Large"
            case 429: return "Too Many Requests"
            case 503: return "Service Unavailable"
            default: return "Error"
            }
        }
    }

    /// engine.io's error codes. A refusal by a limit is engine.io's `allowRequest` refusal:
    /// code 4, with a message that says which limit.
    public enum ErrorCode: Int, Sendable {
        case unknownTransport = 0
        case unknownSession = 1
        case badHandshakeMethod = 2
        case badRequest = 3
        case forbidden = 4
        case unsupportedProtocolVersion = 5

        var message: String {
            switch self {
            case .unknownTransport: return "Transport unknown"
            case .unknownSession: return "Session ID unknown"
            case .badHandshakeMethod: return "Bad handshake method"
            case .badRequest: return "Bad request"
            case .forbidden: return "Forbidden"
            case .unsupportedProtocolVersion: return "Unsupported protocol version"
            }
        }
    }

    /// Checks `EIO` and `transport`: the error to answer, or nil when they are fine.
    func validate(query: [String: String], expecting transport: EngineIOServerOptions.Transport) -> HTTPAnswer? {
        guard query["EIO"] == "4" else { return .error(.unsupportedProtocolVersion) }
        guard let name = query["transport"], let asked = EngineIOServerOptions.Transport(rawValue: name),
            asked == transport, options.transports.contains(asked) || query["sid"] != nil
        else { return .error(.unknownTransport) }
        return nil
    }

    /// What a POST body turned out to be.
    public enum PostBody: Sendable {
        case complete([UInt8])
        /// Larger than maxHttpBufferSize.
        case tooLarge
        /// The connection failed or the body stalled (see `Limits.requestBodyTimeout`).
        case failed
    }

    /// A long-polling request. `body` reads the POST body up to the limit it is given;
    /// `onPollStart`
    /// learns the GET's abort action, so that a client that goes away mid-poll ends it.
    public func handlePolling(
        method: String,
        query: [String: String],
        request: @autoclosure () -> EngineIOHandshakeRequest,
        loop: any EventLoop,
        body: (_ limit: Int) async -> PostBody,
        onPollStart: (_ abort: @escaping @Sendable () -> Void) -> Void = { _ in }
    ) async -> HTTPAnswer {
        if let error = validate(query: query, expecting: .polling) { return error }
        guard let sid = query["sid"] else {
            // A handshake: only GET opens a session.
            guard method == "GET" else { return .error(.badHandshakeMethod) }
            guard options.transports.contains(.polling) else { return .error(.forbidden, status: 403) }
            switch open(request: request(), on: loop) {
            case .failure(let refusal):
                return refusal
            case .success(let socket):
                let answer = HTTPAnswer.ok(handshakePacket(socket.id, .polling).encodedText())
                start(socket)
                return answer
            }
        }
        guard let socket = session(id: sid) else {
            // The GET its client sent just before it closed the session: the end it would have
            // had, had it come first (a `noop`), rather than an error.
            if method == "GET", registry.closedByClientPoll(sid) { return .ok("6") }
            return .error(.unknownSession)
        }
        switch method {
        case "GET":
            let generation = socket.beginPoll()
            // Strong references throughout: a weak one would give the socket a side table, and
            // every retain of it (one per message sent to it) would take the slow path.
            onPollStart { socket.pollAborted(generation: generation) }
            switch await socket.poll(generation: generation) {
            case .payload(let text): return .ok(text)
            case .badRequest(let why): return .error(.badRequest, message: why)
            }
        case "POST":
            guard socket.transport == .polling else { return .error(.badRequest, message: "Bad request: the session is on another transport") }
            guard socket.beginPost() else { return .error(.badRequest, message: "Bad request: overlapping POST requests") }
            defer { socket.endPost() }
            let bytes: [UInt8]
            let limit = socket.maxPayloadBytes
            switch await body(limit) {
            case .complete(let complete):
                bytes = complete
            case .tooLarge:
                socket.close(reason: .parseError("a POST body over \(limit) bytes"), pollAnswer: "1")
                return .error(.badRequest, status: 413, message: "Payload too large")
            case .failed:
                socket.close(reason: .transportError("the POST body did not arrive"), pollAnswer: "1")
                return .error(.badRequest, status: 408, message: "Bad request: the body did not arrive in time")
            }
            // The session may have moved to a WebSocket while the body came: its packets
            // are read there now, in order, and this body's are not delivered after them.
            guard socket.transport == .polling else {
                return .error(.badRequest, message: "Bad request: the session is on another transport")
            }
            let decoded = bytes.withUnsafeBufferPointer { body in
                Result { () throws(EngineIOParseError) in try EngineIOPayload.decode(utf8: body) }
            }
            let packets: [EngineIOPacket]
            switch decoded {
            case .success(let all): packets = all
            case .failure(let error):
                socket.close(reason: .parseError(error.description), pollAnswer: "1")
                return .error(.badRequest, message: "Bad request: \(error.description)")
            }
            for packet in packets {
                if case .close = packet {
                    // Remembered before the session goes, so that no GET finds neither; forgotten
                    // again if the GET was waiting, and has its answer.
                    registry.rememberClosedByClient(sid)
                    if socket.close(reason: .transportClose, pollAnswer: "6") { registry.forgetClosedByClient(sid) }
                    break
                }
                socket.received(packet)
                // What a packet did may have ended the session (a limit, a protocol error):
                // the rest of the payload is not worth reading.
                if socket.isClosed { break }
            }
            return .ok("ok")
        default:
            return .error(.badRequest, message: "Bad request: method \(method)")
        }
    }

    // MARK: WebSocket

    /// What to do with a WebSocket upgrade request: refuse it (with this answer), open a new
    /// session on it, or move an existing polling session onto it.
    public enum WebSocketPlan: Sendable {
        case refuse(HTTPAnswer)
        case open(EngineIOSocket)
        case upgrade(EngineIOSocket)
        /// A WebSocket for a session that has one already, or is getting one: the handshake
        /// completes, and a close frame with this reason follows at once (engine.io closes
        /// such a WebSocket after its handshake, and clients expect that, not an HTTP error).
        case dismiss(String)
    }

    /// Decides on a WebSocket request. A new session is registered here (it counts against
    /// the limits from now on), so that a refusal is known before the upgrade is answered.
    func planWebSocket(query: [String: String], request: @autoclosure () -> EngineIOHandshakeRequest, loop: any EventLoop) -> WebSocketPlan {
        if let error = validate(query: query, expecting: .websocket) { return .refuse(error) }
        guard options.transports.contains(.websocket) else { return .refuse(.error(.unknownTransport)) }
        guard let sid = query["sid"] else {
            switch open(request: request(), on: loop) {
            case .failure(let refusal): return .refuse(refusal)
            case .success(let socket): return .open(socket)
            }
        }
        guard options.allowUpgrades else { return .refuse(.error(.badRequest, message: "Bad request: upgrades are off")) }
        guard let socket = session(id: sid) else { return .refuse(.error(.unknownSession)) }
        switch socket.beginUpgrade() {
        case nil: return .upgrade(socket)
        case .closed?: return .refuse(.error(.unknownSession))
        case .onWebSocket?: return .dismiss("session already on a WebSocket")
        case .upgrading?: return .dismiss("session already upgrading")
        }
    }

    /// A session opened on a WebSocket, once its reader is in place: the open packet goes
    /// first, then whatever the application sends.
    func startWebSocketSession(_ socket: EngineIOSocket, sink: any EngineIOWebSocketSink) {
        socket.send(EngineIOOutgoing(handshakePacket(socket.id, .websocket)))
        start(socket)
        socket.attach(sink)
    }
}

// MARK: - Sessions and their limits

/// Every open session, and what each address holds: the session table, with the limits on
/// sessions (in total, per address, half-open) and on how fast an address opens them.
final class SessionRegistry: Sendable {
    private let limits: EngineIOServerOptions.Limits
    private let clock: any ServerClock
    private let state = Mutex(State())

    struct State {
        /// Each session, and whether it counts as half-open (the registry's own record, so
        /// that a session that closes while it changes is counted out as it was counted in).
        var sessions: [String: (socket: EngineIOSocket, halfOpen: Bool)] = [:]
        var halfOpen = 0
        var byAddress: [String: AddressUsage] = [:]
        /// `byAddress` is swept of forgotten addresses when it grows past this.
        var sweepAt = 1024
        var shuttingDown = false
        /// Sessions their client closed with a `close` packet over polling, until when a GET
        /// that was on its way meanwhile is still answered (`closedByClient`).
        var closedByClient: [String: NIODeadline] = [:]
    }

    /// How long a polling session closed by its client still answers one GET, and how many
    /// such sessions are remembered at most (past that, a GET that comes late gets the
    /// unknown-session error, as it would without this).
    static let closedByClientGrace = TimeAmount.seconds(1)
    static let maxClosedByClient = 1024

    struct AddressUsage {
        var sessions = 0
        var halfOpen = 0
        var newSessions: TokenBucket
    }

    init(limits: EngineIOServerOptions.Limits, clock: any ServerClock) {
        self.limits = limits
        self.clock = clock
    }

    var count: Int { state.withLock { $0.sessions.count } }
    var halfOpenCount: Int { state.withLock { $0.halfOpen } }

    func session(id: String) -> EngineIOSocket? { state.withLock { $0.sessions[id]?.socket } }

    /// Registers a new (half-open) session, or says why it may not open.
    func add(_ socket: EngineIOSocket) -> EngineIOServer.HTTPAnswer? {
        let now = clock.now
        let limits = self.limits
        let halfOpen = socket.isHalfOpen
        return state.withLock { state -> EngineIOServer.HTTPAnswer? in
            func busy(_ why: String) -> EngineIOServer.HTTPAnswer {
                .error(.forbidden, status: 503, message: "Server busy: \(why)", retryAfter: 5)
            }
            guard !state.shuttingDown else { return busy("shutting down") }
            guard state.sessions.count < limits.maxSessions else { return busy("too many sessions") }
            guard !halfOpen || state.halfOpen < limits.maxHalfOpenSessions else { return busy("too many sessions waiting to connect") }
            let key = socket.addressKey
            var usage = state.byAddress[key]
                ?? AddressUsage(newSessions: TokenBucket(rate: limits.newSessionsPerSecondPerAddress, burst: limits.newSessionBurstPerAddress, now: now))
            func tooMany(_ why: String, retryAfter: Int = 5) -> EngineIOServer.HTTPAnswer {
                .error(.forbidden, status: 429, message: "Too many requests: \(why)", retryAfter: retryAfter)
            }
            guard usage.sessions < limits.maxSessionsPerAddress else { return tooMany("too many sessions from this address") }
            guard !halfOpen || usage.halfOpen < limits.maxHalfOpenSessionsPerAddress else {
                return tooMany("too many sessions from this address waiting to connect")
            }
            guard usage.newSessions.take(now: now) else {
                let wait = usage.newSessions.wait(now: now)
                state.byAddress[key] = usage
                let (seconds, fraction) = wait.components
                return tooMany("new sessions from this address come too fast", retryAfter: max(1, Int(seconds) + (fraction > 0 ? 1 : 0)))
            }
            usage.sessions += 1
            if halfOpen { usage.halfOpen += 1 }
            state.byAddress[key] = usage
            if halfOpen { state.halfOpen += 1 }
            state.sessions[socket.id] = (socket, halfOpen)
            if state.byAddress.count > state.sweepAt { Self.sweep(&state, now: now) }
            return nil
        }
    }

    /// A session joined its first namespace (false) or left its last one (true).
    func setHalfOpen(_ socket: EngineIOSocket, _ halfOpen: Bool) {
        state.withLock { state in
            guard let entry = state.sessions[socket.id], entry.socket === socket, entry.halfOpen != halfOpen else { return }
            state.sessions[socket.id]?.halfOpen = halfOpen
            let delta = halfOpen ? 1 : -1
            state.halfOpen += delta
            state.byAddress[socket.addressKey]?.halfOpen += delta
        }
    }

    /// A client closed its polling session with a `close` packet in a POST. Its GET may have
    /// been sent just before and still be on its way (on another connection, which another
    /// thread reads): it is answered as a waiting GET would have been (`closedByClientPoll`).
    func rememberClosedByClient(_ sid: String) {
        let now = clock.now
        state.withLock { state in
            if state.closedByClient.count >= Self.maxClosedByClient {
                state.closedByClient = state.closedByClient.filter { $0.value > now }
                guard state.closedByClient.count < Self.maxClosedByClient else { return }
            }
            state.closedByClient[sid] = now + Self.closedByClientGrace
        }
    }

    /// Sessions remembered as closed by their client (for the tests).
    var closedByClientCount: Int { state.withLock { $0.closedByClient.count } }

    func forgetClosedByClient(_ sid: String) {
        state.withLock { _ = $0.closedByClient.removeValue(forKey: sid) }
    }

    /// Whether a GET for an unknown `sid` is the one its client had on its way when it closed
    /// the session: once, and only just after the close.
    func closedByClientPoll(_ sid: String) -> Bool {
        let now = clock.now
        return state.withLock { state in
            guard let until = state.closedByClient.removeValue(forKey: sid) else { return false }
            return until > now
        }
    }

    /// A session closed.
    func remove(_ socket: EngineIOSocket) {
        state.withLock { state in
            guard let entry = state.sessions[socket.id], entry.socket === socket else { return }
            let wasHalfOpen = entry.halfOpen
            state.sessions.removeValue(forKey: socket.id)
            if wasHalfOpen { state.halfOpen -= 1 }
            let key = socket.addressKey
            guard var usage = state.byAddress[key] else { return }
            usage.sessions -= 1
            if wasHalfOpen { usage.halfOpen -= 1 }
            state.byAddress[key] = usage
        }
    }

    /// Refuses new sessions from now on; every open one, to close.
    func shutDown() -> [EngineIOSocket] {
        state.withLock { state in
            state.shuttingDown = true
            return state.sessions.values.map(\.socket)
        }
    }

    /// Forgets addresses that hold nothing and whose rate bucket has refilled (a new entry
    /// would be the same), so the table is as large as what addresses hold, not as every
    /// address ever seen. Amortised: the next sweep waits until the table has doubled.
    private static func sweep(_ state: inout State, now: NIODeadline) {
        state.byAddress = state.byAddress.filter { _, usage in
            usage.sessions > 0 || !usage.newSessions.isFull(now: now)
        }
        state.sweepAt = max(1024, state.byAddress.count * 2)
    }
}
