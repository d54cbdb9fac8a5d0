public import Logging
import Synchronization

/// Why an Engine.IO connection ended. The Socket.IO layer maps these to its
/// disconnect reasons ("transport close", "ping timeout", …).
public enum EngineIOCloseReason: Sendable, Hashable, CustomStringConvertible {
    /// The server closed the connection (close packet or end of stream).
    case transportClose
    /// The connection failed.
    case transportError(String)
    /// No ping from the server within pingInterval + pingTimeout.
    case pingTimeout
    /// The server sent something that is not valid Engine.IO.
    case parseError(String)
    /// This side closed it.
    case forcedClose

    public var description: String {
        switch self {
        case .transportClose: return "transport close"
        case .transportError(let why): return "transport error: \(why)"
        case .pingTimeout: return "ping timeout"
        case .parseError(let why): return "parse error: \(why)"
        case .forcedClose: return "forced close"
        }
    }
}

extension Logger {
    /// The default of every Parley library type: silent. A library must not write to
    /// stdout on its own (it would corrupt a terminal UI); pass a logger to see its logs.
    public static let disabled = Logger(label: "parley", factory: { _ in SwiftLogNoOpLogHandler() })
}

public enum EngineIOError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The connection ended, or sent something else, before a valid open packet.
    case handshakeFailed(String)
    /// An outbound message larger than the server's `maxPayload`; it was not sent.
    case payloadTooLarge(size: Int, limit: Int)
    /// The connection is closed; nothing was sent.
    case closed

    public var description: String {
        switch self {
        case .handshakeFailed(let why): return "Engine.IO handshake failed: \(why)"
        case .payloadTooLarge(let size, let limit):
            return "message of \(size) bytes is larger than the server accepts (\(limit) bytes)"
        case .closed: return "the connection is closed"
        }
    }
}

/// One open Engine.IO v4 session over a transport: waits for the handshake,
/// answers every ping with a pong, watches for the server going silent, and
/// hands messages up in order.
public final class EngineIOConnection: Sendable {
    public enum Event: Sendable, Hashable {
        case message(EngineIOData)
        /// Always the last event.
        case closed(EngineIOCloseReason)
    }

    public let handshake: EngineIOHandshake
    /// Messages in arrival order, then exactly one `closed`.
    public let events: AsyncStream<Event>
    private let session: Session

    private init(handshake: EngineIOHandshake, events: AsyncStream<Event>, session: Session) {
        self.handshake = handshake
        self.events = events
        self.session = session
    }

    /// Waits for the server's open packet on a fresh transport, then starts the heartbeat.
    /// Cancelling the caller closes the transport.
    public static func open(
        over transport: any EngineIOTransport,
        clock: any Clock<Duration> = ContinuousClock(),
        logger: Logger = .disabled
    ) async throws -> EngineIOConnection {
        let (events, continuation) = AsyncStream.makeStream(of: Event.self)
        let session = Session(transport: transport, events: continuation, clock: clock, logger: logger)
        let handshake = OneShot<EngineIOHandshake>()
        let reader = Task { await session.run(handshake: handshake) }
        session.setReader(reader)
        let opened = try await withTaskCancellationHandler {
            try await handshake.value
        } onCancel: {
            session.finish(.forcedClose, notify: false)
        }
        return EngineIOConnection(handshake: opened, events: events, session: session)
    }

    /// Sends a message packet. Refuses, without sending, a message larger than
    /// the server's `maxPayload` (counting the packet type byte).
    public func send(_ message: EngineIOData) throws(EngineIOError) {
        let size = message.byteCount + (message.isText ? 1 : 0)
        guard size <= handshake.maxPayload else { throw .payloadTooLarge(size: size, limit: handshake.maxPayload) }
        try session.send(.message(message))
    }

    /// Sends a close packet and closes the transport; `events` ends with `.closed(.forcedClose)`.
    public func close() {
        try? session.send(.close)
        session.finish(.forcedClose)
    }

    /// Returns once the transport is fully closed (after `close()`: everything sent was written).
    public func waitUntilClosed() async {
        await session.transport.waitUntilClosed()
    }

    /// Ends the connection with a given reason, as when the layer above
    /// found the server's data malformed.
    public func close(reason: EngineIOCloseReason) {
        session.finish(reason)
    }
}

extension EngineIOData {
    var isText: Bool {
        if case .text = self { return true }
        return false
    }
}

/// The mutable side of a connection, shared by the reader task, the watchdog
/// and callers of `send`/`close`.
private final class Session: Sendable {
    private struct State {
        var closed = false
        var heartbeat: Duration?
        var watchdog: Task<Void, Never>?
        var reader: Task<Void, Never>?
    }

    let transport: any EngineIOTransport
    private let continuation: AsyncStream<EngineIOConnection.Event>.Continuation
    private let clock: any Clock<Duration>
    private let logger: Logger
    private let state = Mutex(State())

    init(
        transport: any EngineIOTransport,
        events: AsyncStream<EngineIOConnection.Event>.Continuation,
        clock: any Clock<Duration>,
        logger: Logger
    ) {
        self.transport = transport
        self.continuation = events
        self.clock = clock
        self.logger = logger
    }

    func setReader(_ task: Task<Void, Never>) {
        let alreadyClosed = state.withLock { state in
            state.reader = task
            return state.closed
        }
        if alreadyClosed { task.cancel() }
    }

    func send(_ packet: EngineIOPacket) throws(EngineIOError) {
        guard !state.withLock({ $0.closed }) else { throw .closed }
        transport.send(packet.encoded())
    }

    /// Reads frames until the transport ends: the first must be `open`.
    func run(handshake: OneShot<EngineIOHandshake>) async {
        var opened = false
        do {
            for try await frame in transport.inbound {
                let packet: EngineIOPacket
                do {
                    packet = try EngineIOPacket(decoding: frame)
                } catch {
                    logger.warning("closing connection: \(error)")
                    if !opened { handshake.resolve(.failure(EngineIOError.handshakeFailed(error.description))) }
                    finish(.parseError(error.description))
                    return
                }
                if !opened {
                    guard case .open(let info) = packet else {
                        handshake.resolve(.failure(EngineIOError.handshakeFailed("expected an open packet first")))
                        finish(.parseError("expected an open packet first"))
                        return
                    }
                    opened = true
                    state.withLock { $0.heartbeat = info.pingInterval + info.pingTimeout }
                    resetWatchdog()
                    handshake.resolve(.success(info))
                    continue
                }
                switch packet {
                case .ping(let data):
                    // engine.io-protocol v4, "Heartbeat": the server pings, the client answers.
                    try? send(.pong(data))
                    resetWatchdog()
                case .message(let data):
                    continuation.yield(.message(data))
                case .close:
                    finish(.transportClose)
                    return
                case .open, .pong, .upgrade, .noop:
                    break
                }
            }
            if !opened { handshake.resolve(.failure(EngineIOError.handshakeFailed("connection closed"))) }
            finish(.transportClose)
        } catch WebSocketTransportError.messageTooLarge(let limit) {
            // Oversize input is malformed input, not a network failure.
            let why = WebSocketTransportError.messageTooLarge(limit: limit).description
            if !opened { handshake.resolve(.failure(EngineIOError.handshakeFailed(why))) }
            finish(.parseError(why))
        } catch {
            if !opened { handshake.resolve(.failure(EngineIOError.handshakeFailed("\(error)"))) }
            finish(.transportError("\(error)"))
        }
    }

    /// Restarts the "no ping within pingInterval + pingTimeout" timer.
    private func resetWatchdog() {
        state.withLock { state in
            state.watchdog?.cancel()
            guard !state.closed, let limit = state.heartbeat else { return }
            let clock = self.clock
            state.watchdog = Task { [weak self] in
                do {
                    try await clock.sleep(for: limit, tolerance: nil)
                } catch {
                    return  // cancelled: a ping arrived, or the connection closed
                }
                self?.finish(.pingTimeout)
            }
        }
    }

    /// Ends the connection once; later calls do nothing.
    func finish(_ reason: EngineIOCloseReason, notify: Bool = true) {
        let tasks: (Task<Void, Never>?, Task<Void, Never>?)? = state.withLock { state in
            guard !state.closed else { return nil }
            state.closed = true
            defer {
                state.watchdog = nil
                state.reader = nil
            }
            return (state.watchdog, state.reader)
        }
        guard let (watchdog, reader) = tasks else { return }
        watchdog?.cancel()
        transport.close()
        if notify { continuation.yield(.closed(reason)) }
        continuation.finish()
        reader?.cancel()
    }
}
