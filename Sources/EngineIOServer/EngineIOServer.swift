import EngineIOProtocol
import JSON
import Synchronization

/// An Engine.IO v4 server (engine.io-protocol v4): sessions over HTTP long-polling and
/// WebSocket, the upgrade from one to the other, the heartbeat and the size limits.
///
/// It knows nothing of HTTP libraries: `EngineIOServer+Hummingbird.swift` connects it to
/// Hummingbird's requests and WebSocket upgrades.
public final class EngineIOServer: Sendable {
    public let options: EngineIOServerOptions
    private let sessions = Mutex<[String: EngineIOSocket]>([:])
    /// Makes the receiver of a new session's messages; called before any message arrives.
    private let onConnection: @Sendable (EngineIOSocket) -> any EngineIOSocketDelegate
    private let shuttingDown = Atomic<Bool>(false)

    public init(
        options: EngineIOServerOptions = EngineIOServerOptions(),
        onConnection: @escaping @Sendable (EngineIOSocket) -> any EngineIOSocketDelegate
    ) {
        self.options = options
        self.onConnection = onConnection
    }

    /// Open sessions.
    public var sessionCount: Int { sessions.withLock { $0.count } }

    public func session(id: String) -> EngineIOSocket? { sessions.withLock { $0[id] } }

    /// Closes every session (`server shutting down`) and refuses new ones.
    public func shutdown() {
        shuttingDown.store(true, ordering: .relaxed)
        let all = sessions.withLock { Array($0.values) }
        for socket in all { socket.close(reason: .serverShutdown) }
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

    /// Creates, registers and hands to the application a new session.
    func open(request: EngineIOHandshakeRequest) -> EngineIOSocket? {
        guard !shuttingDown.load(ordering: .relaxed) else { return nil }
        let socket = EngineIOSocket(id: Self.randomID(), request: request, options: options) { [weak self] socket in
            _ = self?.sessions.withLock { $0.removeValue(forKey: socket.id) }
        }
        sessions.withLock { $0[socket.id] = socket }
        return socket
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

    /// An HTTP answer for the polling transport.
    public struct HTTPAnswer: Sendable, Equatable {
        public var status: Int
        public var body: String
        public var contentType: String

        static func ok(_ body: String) -> HTTPAnswer {
            HTTPAnswer(status: 200, body: body, contentType: "text/plain; charset=UTF-8")
        }

        /// engine.io's error body: `{"code":N,"message":"…"}`.
        static func error(_ code: ErrorCode, status: Int = 400, message: String? = nil) -> HTTPAnswer {
            let json: JSONValue = ["code": .int(code.rawValue), "message": .string(message ?? code.message)]
            return HTTPAnswer(status: status, body: json.serialized(), contentType: "application/json")
        }
    }

    /// engine.io's error codes.
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

    /// A long-polling request. `body` reads the POST body up to the limit (nil when it is
    /// larger); `abort` is set by the caller to learn the poll's generation, so that it can
    /// report a client that goes away mid-poll through `pollAborted`.
    public func handlePolling(
        method: String,
        query: [String: String],
        request: @autoclosure () -> EngineIOHandshakeRequest,
        body: () async -> [UInt8]?,
        onPollStart: (_ abort: @escaping @Sendable () -> Void) -> Void = { _ in }
    ) async -> HTTPAnswer {
        if let error = validate(query: query, expecting: .polling) { return error }
        guard let sid = query["sid"] else {
            // A handshake: only GET opens a session.
            guard method == "GET" else { return .error(.badHandshakeMethod) }
            guard options.transports.contains(.polling), let socket = open(request: request()) else {
                return .error(.forbidden, status: 403)
            }
            let answer = HTTPAnswer.ok(handshakePacket(socket.id, .polling).encodedText())
            start(socket)
            return answer
        }
        guard let socket = session(id: sid) else { return .error(.unknownSession) }
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
            guard let bytes = await body() else {
                socket.close(reason: .parseError, pollAnswer: "1")
                return .error(.badRequest, status: 413, message: "Payload too large")
            }
            let packets: [EngineIOPacket]
            do {
                packets = try EngineIOPayload.decode(String(decoding: bytes, as: UTF8.self))
            } catch {
                socket.close(reason: .parseError, pollAnswer: "1")
                return .error(.badRequest, message: "Bad request: \(error.description)")
            }
            for packet in packets {
                if case .close = packet {
                    socket.close(reason: .transportClose, pollAnswer: "6")
                    break
                }
                socket.received(packet)
            }
            return .ok("ok")
        default:
            return .error(.badRequest, message: "Bad request: method \(method)")
        }
    }

    // MARK: WebSocket

    /// What to do with a WebSocket upgrade request: refuse it, open a new session on it, or
    /// move an existing polling session onto it.
    public enum WebSocketPlan: Sendable {
        case refuse
        case open
        case upgrade(EngineIOSocket)
    }

    public func planWebSocket(query: [String: String]) -> WebSocketPlan {
        guard validate(query: query, expecting: .websocket) == nil, options.transports.contains(.websocket) else {
            return .refuse
        }
        guard let sid = query["sid"] else { return .open }
        guard options.allowUpgrades, let socket = session(id: sid), socket.beginUpgrade() else { return .refuse }
        return .upgrade(socket)
    }

    /// One WebSocket message from the client.
    public enum WebSocketMessage: Sendable {
        case text(String)
        case binary([UInt8])
    }

    /// Runs a session on a WebSocket until either side closes it. `receive` yields the
    /// client's messages (nil at the end); packets for the client go to `sink`.
    public func serveWebSocket(
        plan: WebSocketPlan,
        request: EngineIOHandshakeRequest,
        receive: () async throws -> WebSocketMessage?,
        sink: any EngineIOWebSocketSink,
        readOnEventLoop: (EngineIOSocket) async -> Void = { _ in }
    ) async {
        let socket: EngineIOSocket
        switch plan {
        case .refuse:
            return
        case .open:
            guard let opened = open(request: request) else {
                sink.close()
                return
            }
            socket = opened
            // The order matters: the client speaks once it has the open packet, and what it
            // says may be read on the event loop at once (see the Hummingbird side), so the
            // reading and the receiver are in place before the open packet leaves, and the
            // open packet is queued before anything the receiver might send.
            await readOnEventLoop(socket)
            socket.send(EngineIOOutgoing(handshakePacket(socket.id, .websocket)))
            start(socket)
            socket.attach(sink)
        case .upgrade(let existing):
            socket = existing
            guard await probe(socket, receive: receive, sink: sink) else {
                socket.abortUpgrade()
                sink.close()
                return
            }
        }

        do {
            while let message = try await receive() {
                switch message {
                case .binary(let bytes):
                    socket.received(.message(.binary(bytes)))
                case .text(let text):
                    do {
                        socket.received(try EngineIOPacket(decodingText: text))
                    } catch {
                        socket.close(reason: .parseError)
                    }
                }
                if socket.isClosed { break }
            }
            socket.close(reason: .transportClose)
        } catch {
            // Larger than maxHttpBufferSize, or the connection failed.
            socket.close(reason: socket.isClosed ? .transportClose : .parseError)
        }
    }

    /// The upgrade handshake on a new WebSocket: `2probe` → `3probe`, then `5`.
    private func probe(
        _ socket: EngineIOSocket,
        receive: () async throws -> WebSocketMessage?,
        sink: any EngineIOWebSocketSink
    ) async -> Bool {
        // The upgrade timeout: a client that opens the WebSocket and says nothing does not hold it.
        let timeout = options.upgradeTimeout
        let timer = Task {
            do { try await Task.sleep(for: timeout) } catch { return }
            socket.abortUpgrade()
            sink.close()
        }
        defer { timer.cancel() }
        do {
            guard case .text("2probe")? = try await receive() else { return false }
            if sink.send([EngineIOOutgoing(.pong("probe"))]) { sink.flushWritten() }
            socket.probed()
            guard case .text("5")? = try await receive() else { return false }
            return socket.completeUpgrade(to: sink)
        } catch {
            return false
        }
    }
}
