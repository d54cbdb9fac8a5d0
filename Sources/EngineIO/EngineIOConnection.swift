public import Logging
import Synchronization

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
///
/// Frames are decoded inside the consumer's `next()` on `events`, not in a task
/// of their own: one less hand-off between threads for every message (see the
/// ingest benchmark in README.md). The consumer must keep reading `events`.
public final class EngineIOConnection: Sendable {
    public enum Event: Sendable, Hashable {
        case message(EngineIOData)
        /// Always the last event.
        case closed(EngineIOCloseReason)
    }

    public let handshake: EngineIOHandshake
    private let session: Session

    private init(handshake: EngineIOHandshake, session: Session) {
        self.handshake = handshake
        self.session = session
    }

    /// Messages in arrival order, then exactly one `closed`. One consumer only.
    public var events: Events { Events(session: session) }

    /// Waits for the server's open packet on a fresh transport, then starts the heartbeat.
    /// Cancelling the caller closes the transport.
    public static func open(
        over transport: any EngineIOTransport,
        clock: any Clock<Duration> = ContinuousClock(),
        logger: Logger = .disabled
    ) async throws -> EngineIOConnection {
        let session = Session(transport: transport, clock: clock, logger: logger)
        let opened = try await withTaskCancellationHandler {
            try await session.readHandshake()
        } onCancel: {
            session.finish(.forcedClose)
        }
        return EngineIOConnection(handshake: opened, session: session)
    }

    /// Sends a message packet. Refuses, without sending, a message larger than
    /// the server's `maxPayload` (counting the packet type byte, and as the transport
    /// encodes it).
    public func send(_ message: EngineIOData) throws(EngineIOError) {
        let size = wireSize(of: message)
        guard size <= handshake.maxPayload else { throw .payloadTooLarge(size: size, limit: handshake.maxPayload) }
        try session.send(.message(message))
    }

    /// The bytes `message` takes as this connection's transport sends it, as the server counts
    /// them against `maxPayload` (a binary message goes as base64 over HTTP long-polling).
    public func wireSize(of message: EngineIOData) -> Int { session.transport.wireSize(of: message) }

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

    /// The connection's events; decoding happens as they are read.
    public struct Events: AsyncSequence, Sendable {
        public typealias Element = Event
        let session: Session

        public struct AsyncIterator: AsyncIteratorProtocol {
            let session: Session
            var done = false

            public mutating func next() async -> Event? {
                await next(isolation: nil)
            }

            /// Runs on the caller's actor (SE-0421), so reading does not hop executors.
            public mutating func next(isolation actor: isolated (any Actor)?) async -> Event? {
                guard !done else { return nil }
                if let event = await session.nextEvent(isolation: actor) { return event }
                done = true
                return nil
            }

            /// The next event from frames already received, without suspending; nil when
            /// `next` must wait for more (or report the close). For draining a batch.
            public mutating func nextBuffered() -> Event? {
                guard !done else { return nil }
                return session.nextBufferedEvent()
            }
        }

        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(session: session) }
    }
}

extension EngineIOData {
    /// Bytes of the `message` packet carrying this data, as a server counts them
    /// against `maxPayload`: a text message also has its packet type byte.
    public var packetSize: Int {
        switch self {
        case .text(let text): return text.utf8.count + 1
        case .binary(let bytes): return bytes.count
        }
    }
}

/// Holds the transport's iterator, and the rest of the batch being read, for the
/// single consumer of a connection.
private final class InboundCursor: @unchecked Sendable {
    // Only the connection's one consumer touches this (the handshake, then `events`).
    private var iterator: AsyncThrowingStream<[EngineIOPacket], any Error>.AsyncIterator
    private let transport: any EngineIOTransport
    private var batch: [EngineIOPacket] = []
    private var position = 0

    init(_ transport: any EngineIOTransport) {
        self.transport = transport
        iterator = transport.inbound.makeAsyncIterator()
    }

    /// The next frame: from the batch in hand, else from the next batch (on the caller's actor).
    func next(isolation actor: isolated (any Actor)?) async throws -> EngineIOPacket? {
        while position == batch.count {
            guard let more = try await iterator.next(isolation: actor) else { return nil }
            transport.consumedBatch()
            batch = more
            position = 0
        }
        defer { position += 1 }
        return batch[position]
    }

    /// The next frame of the batch in hand, without waiting: nil when it is used up.
    func nextBuffered() -> EngineIOPacket? {
        guard position < batch.count else { return nil }
        defer { position += 1 }
        return batch[position]
    }
}

/// The mutable side of a connection, shared by its consumer, the watchdog
/// and callers of `send`/`close`.
final class Session: Sendable {
    private struct State {
        var closeReason: EngineIOCloseReason?
        var reportedClose = false
        var heartbeat: Duration?
        var watchdog: Task<Void, Never>?
    }

    let transport: any EngineIOTransport
    private let cursor: InboundCursor
    private let clock: any Clock<Duration>
    private let logger: Logger
    private let state = Mutex(State())
    /// `state.closeReason != nil`, readable per frame without the lock.
    private let closed = Atomic(false)

    init(transport: any EngineIOTransport, clock: any Clock<Duration>, logger: Logger) {
        self.transport = transport
        self.cursor = InboundCursor(transport)
        self.clock = clock
        self.logger = logger
    }

    func send(_ packet: EngineIOPacket) throws(EngineIOError) {
        guard state.withLock({ $0.closeReason == nil }) else { throw .closed }
        transport.send(packet.encoded())
    }

    /// The first frame must be a valid open packet.
    func readHandshake() async throws -> EngineIOHandshake {
        let packet: EngineIOPacket?
        do {
            packet = try await cursor.next(isolation: nil)
        } catch let error as EngineIOParseError {
            finish(.parseError(error.description))
            throw EngineIOError.handshakeFailed(error.description)
        } catch WebSocketTransportError.messageTooLarge(let limit) {
            let why = WebSocketTransportError.messageTooLarge(limit: limit).description
            finish(.parseError(why))
            throw EngineIOError.handshakeFailed(why)
        } catch {
            finish(.transportError("\(error)"))
            throw EngineIOError.handshakeFailed("\(error)")
        }
        guard let packet else {
            finish(.transportClose)
            throw EngineIOError.handshakeFailed("connection closed")
        }
        guard case .open(let info) = packet else {
            finish(.parseError("expected an open packet first"))
            throw EngineIOError.handshakeFailed("expected an open packet first")
        }
        state.withLock { $0.heartbeat = info.pingInterval + info.pingTimeout }
        resetWatchdog()
        return info
    }

    /// Reads frames until a message (returned), the end (`.closed` once, then nil).
    func nextEvent(isolation actor: isolated (any Actor)?) async -> EngineIOConnection.Event? {
        while true {
            if let reason = state.withLock({ $0.closeReason }) {
                return reportClose(reason)
            }
            let packet: EngineIOPacket?
            do {
                packet = try await cursor.next(isolation: actor)
            } catch let error as EngineIOParseError {
                logger.warning("closing connection: \(error)")
                finish(.parseError(error.description))
                continue
            } catch WebSocketTransportError.messageTooLarge(let limit) {
                // Oversize input is malformed input, not a network failure.
                finish(.parseError(WebSocketTransportError.messageTooLarge(limit: limit).description))
                continue
            } catch {
                finish(.transportError("\(error)"))
                continue
            }
            guard let packet else {
                finish(.transportClose)
                continue
            }
            if let event = process(packet) { return event }
        }
    }

    /// The next event from frames already received, without waiting: nil when
    /// there are none (or the connection is closing; `nextEvent` then reports it).
    /// A flood is handled a batch at a time, one frame after another, with no
    /// suspension point per frame.
    func nextBufferedEvent() -> EngineIOConnection.Event? {
        while !closed.load(ordering: .acquiring), let packet = cursor.nextBuffered() {
            if let event = process(packet) { return event }
        }
        return nil
    }

    /// One frame: a message for the layer above, or handled here (nil).
    private func process(_ packet: EngineIOPacket) -> EngineIOConnection.Event? {
        switch packet {
        case .ping(let data):
            // engine.io-protocol v4, "Heartbeat": the server pings, the client answers.
            try? send(.pong(data))
            resetWatchdog()
        case .message(let data):
            if !closed.load(ordering: .acquiring) { return .message(data) }
        case .close:
            finish(.transportClose)
        case .open, .pong, .upgrade, .noop:
            break
        }
        return nil
    }

    /// `.closed(reason)` the first time, nil after.
    private func reportClose(_ reason: EngineIOCloseReason) -> EngineIOConnection.Event? {
        let first = state.withLock { state in
            defer { state.reportedClose = true }
            return !state.reportedClose
        }
        return first ? .closed(reason) : nil
    }

    /// Restarts the "no ping within pingInterval + pingTimeout" timer.
    private func resetWatchdog() {
        state.withLock { state in
            state.watchdog?.cancel()
            guard state.closeReason == nil, let limit = state.heartbeat else { return }
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

    /// Ends the connection once, with the first reason given; closing the transport
    /// ends the consumer's reading, which then reports `.closed(reason)`.
    func finish(_ reason: EngineIOCloseReason) {
        let watchdog: Task<Void, Never>?? = state.withLock { state in
            guard state.closeReason == nil else { return nil }
            state.closeReason = reason
            closed.store(true, ordering: .releasing)
            defer { state.watchdog = nil }
            return .some(state.watchdog)
        }
        guard let watchdog else { return }
        watchdog?.cancel()
        transport.close()
    }
}
