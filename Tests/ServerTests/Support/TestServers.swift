import EngineIOProtocol
@testable import EngineIOServer
import Hummingbird
import JSON
import Logging
import ProtocolTestApps
import ServiceLifecycle
import SocketIOServer
import Synchronization
import Testing

/// Every suite of this target runs one test at a time: each starts servers and opens
/// connections, and on a small machine many at once only make each slower. No test waits
/// for real time: the servers keep time with a `ManualServerClock` that the tests advance.
@Suite(.serialized) enum ServerSuites {}

/// Why each session of an echo server ended, by sid.
final class CloseReasons: Sendable {
    private let reasons = Mutex<[String: EngineIOCloseReason]>([:])

    func record(_ reason: EngineIOCloseReason, for sid: String) { reasons.withLock { $0[sid] = reason } }

    subscript(sid: String) -> EngineIOCloseReason? { reasons.withLock { $0[sid] } }
}

/// Servers run quietly: warnings and errors only.
let quietLogger: Logger = {
    var logger = Logger(label: "ServerTests")
    logger.logLevel = .warning
    return logger
}()

/// The Engine.IO v4 test suite's server (`ProtocolTestApp.engineIO`, what `parley-server
/// --app engine.io-test` runs): path `/engine.io/`, pingInterval 300 ms, pingTimeout 200 ms,
/// maxPayload 1000000, echo; on a manual clock. The settings may be changed for a test.
func makeEchoEngine(
    pingInterval: Duration = ProtocolTestApp.Settings.pingInterval,
    pingTimeout: Duration = ProtocolTestApp.Settings.pingTimeout,
    maxHttpBufferSize: Int = ProtocolTestApp.Settings.maxPayload,
    cors: EngineIOServerOptions.CORS = ProtocolTestApp.Settings.cors,
    limits: EngineIOServerOptions.Limits = EngineIOServerOptions.Limits(),
    sessionsStartHalfOpen: Bool = false,
    transports: Set<EngineIOServerOptions.Transport> = [.polling, .websocket],
    closeReasons: CloseReasons = CloseReasons()
) -> EngineIOServer {
    var options = ProtocolTestApp.engineIO.engineOptions(limits: limits)
    options.transports = transports
    options.pingInterval = pingInterval
    options.pingTimeout = pingTimeout
    options.maxHttpBufferSize = maxHttpBufferSize
    options.cors = cors
    options.sessionsStartHalfOpen = sessionsStartHalfOpen
    return EngineIOEchoApp.server(options: options, clock: ManualServerClock()) { socket, reason in
        closeReasons.record(reason, for: socket.id)
    }
}

/// The Socket.IO v5 test suite's server (`SocketIOTestApp`, what `parley-server --app
/// socket.io-test` runs): path `/socket.io/`, pingInterval 300 ms, pingTimeout 200 ms,
/// connectTimeout 1000 ms; namespaces `/` and `/custom` that emit `auth` with the CONNECT
/// payload; on `/`, `message` answered with `message-back`, `message-with-ack` acknowledged
/// with its own arguments, and `ask` (ours) asking back; on a manual clock.
func makeSuiteSocketIOServer(
    engineLimits: EngineIOServerOptions.Limits = EngineIOServerOptions.Limits(),
    limits: SocketIOServer.Limits = SocketIOServer.Limits(connectTimeout: ProtocolTestApp.Settings.connectTimeout)
) -> SocketIOServer {
    SocketIOTestApp.server(
        engineOptions: ProtocolTestApp.socketIO.engineOptions(limits: engineLimits),
        limits: limits,
        clock: ManualServerClock(),
        logger: quietLogger
    )
}

/// The request targets of a suite's Engine.IO path, as the official suites write them.
protocol EngineIOTargets {
    var path: String { get }
}

extension EngineIOTargets {
    var polling: String { "\(path)?EIO=4&transport=polling" }
    var websocket: String { "\(path)?EIO=4&transport=websocket" }
    func polling(_ sid: String) -> String { "\(polling)&sid=\(sid)" }
    func websocket(_ sid: String) -> String { "\(websocket)&sid=\(sid)" }
}

/// A server listening on 127.0.0.1, with clients for it.
struct RunningServer: Sendable {
    let port: Int
    let engine: EngineIOServer

    /// The server's clock, which the test moves.
    var clock: ManualServerClock {
        guard let clock = engine.clock as? ManualServerClock else { fatalError("the test servers keep time with a ManualServerClock") }
        return clock
    }

    func get(_ target: String, headers: [(String, String)] = []) async throws -> HTTPReply {
        try await request("GET", target, headers: headers)
    }

    func post(_ target: String, body: String) async throws -> HTTPReply {
        try await request("POST", target, body: body)
    }

    func request(
        _ method: String,
        _ target: String,
        headers: [(String, String)] = [],
        body: String? = nil
    ) async throws -> HTTPReply {
        try await HTTPClient.request(method, port: port, target, headers: headers, body: body)
    }

    func start(
        _ method: String,
        _ target: String,
        contentLength: Int? = nil,
        bodyPrefix: String = ""
    ) async throws -> InFlightRequest {
        try await HTTPClient.start(method, port: port, target, contentLength: contentLength, bodyPrefix: bodyPrefix)
    }

    func webSocket(_ target: String, answerPings: Bool = false) async throws -> WebSocketClient {
        try await WebSocketClient.connect(port: port, target, answerPings: answerPings)
    }

    /// The suites' `initLongPollingSession`: a polling handshake on `path`; the sid.
    func openPollingSession(path: String) async throws -> String {
        let reply = try await get("\(path)?EIO=4&transport=polling")
        try #require(reply.status == 200, "handshake: \(reply)")
        return try handshakeSID(reply.text)
    }

    /// Whether the session is gone from the server (closed and forgotten).
    func sessionIsGone(_ sid: String) -> Bool { engine.session(id: sid) == nil }

    /// Whether a GET of this session is waiting for packets on the server.
    func isPolling(_ sid: String) -> Bool { engine.session(id: sid)?.isPolling == true }
}

/// The sid of an Engine.IO open packet `0{…}`.
func handshakeSID(_ packet: String) throws -> String {
    try #require(packet.hasPrefix("0"), "not an open packet: \(packet)")
    let value = try JSONValue(parsing: packet.dropFirst())
    return try #require(value["sid"]?.stringValue, "no sid in \(packet)")
}

/// Runs `engine` on an ephemeral port for the duration of `body`, and always stops it:
/// every session is closed (so no long poll is left waiting), then the service group
/// shuts down gracefully (cancelled if that takes more than a few seconds).
func withServer(_ engine: EngineIOServer, _ body: (RunningServer) async throws -> Void) async throws {
    let ports = Mailbox<Int>()
    let app = engine.application(host: "127.0.0.1", port: 0, logger: quietLogger) { port in ports.put(port) }
    let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: quietLogger))
    let service = Task { try await group.run() }
    let outcome: Result<Void, any Error>
    do {
        let port = try await ports.next(timeout: .seconds(10), "the server to start")
        try await body(RunningServer(port: port, engine: engine))
        outcome = .success(())
    } catch {
        outcome = .failure(error)
    }
    engine.shutdown()
    await group.triggerGracefulShutdown()
    let stopped = Mailbox<Bool>()
    Task {
        _ = await service.result
        stopped.put(true)
    }
    if (try? await stopped.next(timeout: .seconds(5), "the server to stop")) == nil {
        Issue.record("the server did not shut down gracefully within 5 s")
        service.cancel()
        _ = try? await stopped.next(timeout: .seconds(5), "the server to stop")
    }
    try outcome.get()
}

func withServer(_ io: SocketIOServer, _ body: (RunningServer) async throws -> Void) async throws {
    try await withServer(io.engine, body)
}

/// The keys of a JSON object, sorted.
func sortedKeys(_ value: JSONValue) -> [String] {
    (value.objectValue?.keys ?? []).sorted()
}
