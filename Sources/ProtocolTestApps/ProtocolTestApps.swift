public import EngineIOProtocol
public import EngineIOServer
import JSON
public import Logging
public import SocketIOServer

/// The test applications that the Engine.IO v4 and Socket.IO v5 protocol documents describe
/// in their "Test suite" sections: what the official suites (`docs/engine.io-protocol/
/// v4-test-suite/` and `docs/socket.io-protocol/v5-test-suite/` in socketio/socket.io) expect
/// on the other end. `parley-server --app engine.io-test | socket.io-test` runs them; the
/// conformance tests run them in process, on a manual clock.
public enum ProtocolTestApp: String, Sendable, CaseIterable {
    /// engine.io's: no Socket.IO layer, every message echoed back as it came.
    case engineIO = "engine.io-test"
    /// socket.io's: namespaces `/` and `/custom`, `auth`, `message-back`, `message-with-ack`.
    case socketIO = "socket.io-test"

    /// Where the suite calls it: `/engine.io/` for the Engine.IO suite, `/socket.io/` for
    /// the Socket.IO one.
    public var path: String {
        switch self {
        case .engineIO: return "/engine.io/"
        case .socketIO: return "/socket.io/"
        }
    }

    /// The documents' server configuration: `pingInterval: 300, pingTimeout: 200,
    /// maxPayload: 1e6, cors: { origin: "*" }`, and for Socket.IO `connectTimeout: 1000`.
    public enum Settings {
        public static let pingInterval = Duration.milliseconds(300)
        public static let pingTimeout = Duration.milliseconds(200)
        public static let maxPayload = 1_000_000
        public static let connectTimeout = Duration.milliseconds(1000)
        /// The suites run in browsers too (their `index.html`), from any origin.
        public static let cors = EngineIOServerOptions.CORS.anyOrigin
    }

    /// The documents' Engine.IO options, on this app's path unless `path` says otherwise.
    public func engineOptions(path: String? = nil, limits: EngineIOServerOptions.Limits = EngineIOServerOptions.Limits()) -> EngineIOServerOptions {
        EngineIOServerOptions(
            path: path ?? self.path,
            pingInterval: Settings.pingInterval,
            pingTimeout: Settings.pingTimeout,
            maxHttpBufferSize: Settings.maxPayload,
            cors: Settings.cors,
            limits: limits
        )
    }
}

// MARK: - Engine.IO

/// engine.io's test server:
///
/// ```js
/// server.on("connection", socket => {
///   socket.on("data", (...args) => { socket.send(...args); });
/// });
/// ```
///
/// Text comes back as text, binary as binary. `onClose` hears why each session ended (the
/// tests use it).
public final class EngineIOEchoApp: EngineIOSocketDelegate {
    private let onClose: (@Sendable (EngineIOSocket, EngineIOCloseReason) -> Void)?

    public init(onClose: (@Sendable (EngineIOSocket, EngineIOCloseReason) -> Void)? = nil) {
        self.onClose = onClose
    }

    public func engineIOSocket(_ socket: EngineIOSocket, didReceive message: EngineIOData) {
        socket.send(.message(message))
    }

    public func engineIOSocket(_ socket: EngineIOSocket, didCloseWith reason: EngineIOCloseReason) {
        onClose?(socket, reason)
    }

    /// An Engine.IO server whose every session runs the echo.
    public static func server(
        options: EngineIOServerOptions,
        clock: any ServerClock = .system,
        onClose: (@Sendable (EngineIOSocket, EngineIOCloseReason) -> Void)? = nil
    ) -> EngineIOServer {
        EngineIOServer(options: options, clock: clock) { _ in EngineIOEchoApp(onClose: onClose) }
    }
}

// MARK: - Socket.IO

/// socket.io's test server, as the document gives it:
///
/// ```js
/// io.on("connection", (socket) => {
///   socket.emit("auth", socket.handshake.auth);
///   socket.on("message", (...args) => { socket.emit.apply(socket, ["message-back", ...args]); });
///   socket.on("message-with-ack", (...args) => { const ack = args.pop(); ack(...args); });
/// });
/// io.of("/custom").on("connection", (socket) => { socket.emit("auth", socket.handshake.auth); });
/// ```
///
/// The document's suite never has the server ask for an acknowledgement; so that the other
/// direction can be tried too, the main namespace also answers `ask`: the server emits
/// `question` with the same arguments and an acknowledgement id, then `answer` with the
/// arguments the client acknowledged with, or `no-answer` with the reason ("timeout", or
/// "too many pending acknowledgements") when none came within `askTimeout`.
public enum SocketIOTestApp {
    public static let askTimeout = Duration.seconds(5)

    /// Adds the test app's namespaces and handlers to `io`.
    public static func install(on io: SocketIOServer, askTimeout: Duration = askTimeout) {
        io.of("/").onConnection { socket in
            socket.emit("auth", socket.auth)
            socket.on("message") { socket, arguments, _ in
                socket.emit("message-back", arguments: arguments)
            }
            socket.on("message-with-ack") { _, arguments, ack in
                ack?(arguments: arguments)
            }
            socket.on("ask") { socket, arguments, _ in
                socket.emit("question", arguments: arguments, ackTimeout: askTimeout) { outcome in
                    switch outcome {
                    case .success(let answer): socket.emit("answer", arguments: answer)
                    case .failure(let failure): socket.emit("no-answer", .string(failure.description))
                    }
                }
            }
        }
        io.of("/custom").onConnection { socket in
            socket.emit("auth", socket.auth)
        }
    }

    /// A Socket.IO server with the documents' settings on `engineOptions`, running the app.
    public static func server(
        engineOptions: EngineIOServerOptions = ProtocolTestApp.socketIO.engineOptions(),
        limits: SocketIOServer.Limits = SocketIOServer.Limits(connectTimeout: ProtocolTestApp.Settings.connectTimeout),
        clock: any ServerClock = .system,
        askTimeout: Duration = askTimeout,
        logger: Logger
    ) -> SocketIOServer {
        let io = SocketIOServer(engineOptions: engineOptions, limits: limits, clock: clock, logger: logger)
        install(on: io, askTimeout: askTimeout)
        return io
    }
}
