public import EngineIO
public import Foundation
public import JSON
public import Logging

/// Reads the CONNECT payload; called again before every connection attempt,
/// so what it returns may change between attempts.
public typealias AuthProvider = @Sendable () -> JSONValue?

/// One connection to a Socket.IO server, shared by the sockets of every
/// namespace on it; reconnects with backoff as socket.io-client v4 does
/// (PROTOCOL.md, "Client defaults").
///
/// All connection state lives in this actor, so events, emits and
/// reconnection never race each other.
public actor SocketManager {
    public struct Configuration: Sendable {
        /// The Engine.IO path; `/socket.io/` when nil.
        public var path: String?
        /// Extra query items for the handshake.
        public var query: [URLQueryItem]
        public var reconnection: ReconnectPolicy
        /// Time allowed for one attempt, from opening the transport to the server's CONNECT reply.
        public var connectTimeout: Duration
        /// How the Engine.IO session is carried: by default WebSocket, else HTTP long-polling
        /// upgraded when it can be (`EngineIOTransports`); a test injects its own.
        public var transport: any EngineIOTransportFactory
        /// The clock for backoff, timeouts and the heartbeat; tests inject a manual one.
        public var clock: any Clock<Duration>
        /// Random numbers in 0..<1 for the backoff jitter.
        public var random: @Sendable () -> Double
        public var logger: Logger

        public init(
            path: String? = nil,
            query: [URLQueryItem] = [],
            reconnection: ReconnectPolicy = .socketIODefault,
            connectTimeout: Duration = .seconds(20),
            transport: any EngineIOTransportFactory = EngineIOTransports(),
            clock: any Clock<Duration> = ContinuousClock(),
            random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) },
            logger: Logger = .disabled
        ) {
            self.path = path
            self.query = query
            self.reconnection = reconnection
            self.connectTimeout = connectTimeout
            self.transport = transport
            self.clock = clock
            self.random = random
            self.logger = logger
        }
    }

    public nonisolated let endpoint: EngineIOEndpoint
    public nonisolated let configuration: Configuration
    private var logger: Logger { configuration.logger }

    private struct Listener {
        enum Filter {
            case named(String)
            case anyEvent
            case lifecycle
            case everything
        }
        let filter: Filter
        let handler: @Sendable (SocketEvent) -> Void
    }

    private struct PendingAck {
        let continuation: CheckedContinuation<[JSONValue], any Error>
        var sent: Bool
        var timer: Task<Void, Never>?
    }

    private struct Buffered {
        let frames: [EngineIOData]
        let ackID: Int?
    }

    /// A class: the hot path reads flags and listeners per event, and must not copy all of this to do so.
    private final class Namespace {
        var auth: AuthProvider?
        /// Wants to be connected (connect() called, not refused or disconnected since).
        var active = false
        var connected = false
        var sid: String?
        var sendBuffer: [Buffered] = []
        /// Events that arrived before the server's CONNECT reply (python-socketio emits from
        /// its connect handler first); delivered right after `connect`, as socket.io-client does.
        var receiveBuffer: [ReceivedEvent] = []
        /// In the order they were added (ids increase).
        var listeners: [(id: Int, listener: Listener)] = []
        var pendingAcks: [Int: PendingAck] = [:]
        var nextAckID = 0
    }

    /// Entries are never removed: a `Namespace` once made stays the state of that name.
    private var namespaces: [String: Namespace] = [:]
    /// The namespace the last packet was for: a flood is for one namespace, and comparing
    /// its short name is cheaper than hashing it for every packet.
    private var lastReceived: (name: String, state: Namespace)?
    private var engine: EngineIOConnection?
    private var decoder = SocketIOPacketDecoder()
    private var loop: Task<Void, Never>?
    /// Which loop is current: a superseded loop (cancelled by `disconnect()`, then replaced
    /// by a `connect()`) must not touch state after its awaits.
    private var generation = 0
    private var opening: Task<EngineIOConnection, any Error>?
    private var attemptTimer: Task<Void, Never>?
    private var attemptTimedOut = false
    private var attempts = 0
    private var skipReconnect = false
    private var nextListenerID = 0
    /// Most events held for a namespace whose CONNECT reply has not come yet.
    static let receiveBufferLimit = 10_000
    /// The server's limit from the last handshake; the v4 default before any.
    private var maxPayload = EngineIOHandshake.defaultMaxPayload

    /// - Parameter url: the server, `http(s)://` or `ws(s)://`.
    public init(url: String, configuration: Configuration = .init()) throws(EngineIOEndpointError) {
        self.endpoint = try EngineIOEndpoint(url: url, path: configuration.path, query: configuration.query)
        self.configuration = configuration
    }

    /// The socket for a namespace (created on first use). `auth` is the CONNECT payload.
    public func socket(namespace: String = "/", auth: AuthProvider? = nil) throws(SocketError) -> Socket {
        guard namespace.hasPrefix("/"), !namespace.contains(",") else { throw .invalidNamespace(namespace) }
        if namespaces[namespace] == nil { namespaces[namespace] = Namespace() }
        if let auth { namespaces[namespace]!.auth = auth }
        return Socket(manager: self, namespace: namespace)
    }

    // MARK: Socket operations

    func connect(_ nsp: String) {
        namespaces[nsp, default: Namespace()].active = true
        skipReconnect = false
        if let engine, opening == nil {
            if !namespaces[nsp]!.connected { sendConnect(nsp, over: engine) }
        } else if loop == nil {
            attempts = 0
            generation += 1
            let current = generation
            loop = Task { await self.runConnectionLoop(generation: current) }
        }
    }

    func disconnect(_ nsp: String) {
        guard let state = namespaces[nsp] else { return }
        let wasConnected = state.connected
        if wasConnected, let engine {
            for frame in SocketIOPacket(kind: .disconnect, namespace: nsp).encoded() { try? engine.send(frame) }
        }
        state.active = false
        state.connected = false
        state.sid = nil
        failSentAcks(nsp)
        if wasConnected { dispatch(.disconnect(.ioClientDisconnect), to: nsp) }
        closeIfIdle()
    }

    /// Leaves every namespace and returns once the connection is fully closed, so what was
    /// emitted before has been written (for a process about to exit).
    public func close() async {
        let engine = self.engine
        for nsp in namespaces.keys.sorted() where namespaces[nsp]!.active || namespaces[nsp]!.connected {
            disconnect(nsp)
        }
        await engine?.waitUntilClosed()
    }

    func isConnected(_ nsp: String) -> Bool { namespaces[nsp]?.connected ?? false }

    func sid(_ nsp: String) -> String? { namespaces[nsp]?.sid }

    func setAuth(_ nsp: String, _ auth: AuthProvider?) { namespaces[nsp, default: Namespace()].auth = auth }

    func emit(_ nsp: String, _ name: String, _ arguments: [JSONValue]) throws(SocketError) -> EmitResult {
        try emit(nsp, name, arguments, ackID: nil)
    }

    func emit(
        _ nsp: String,
        _ name: String,
        _ arguments: [JSONValue],
        then record: @Sendable (EmitResult) -> Void
    ) throws(SocketError) -> EmitResult {
        let result = try emit(nsp, name, arguments, ackID: nil)
        record(result)
        return result
    }

    private func emit(_ nsp: String, _ name: String, _ arguments: [JSONValue], ackID: Int?) throws(SocketError) -> EmitResult {
        guard !isReservedEventName(name) else { throw .reservedEventName(name) }
        let frames = SocketIOPacket.event(name, arguments, namespace: nsp, id: ackID).encoded()
        for frame in frames {
            // As the transport will send it: over polling a binary attachment is base64, and one
            // the server would refuse must be refused here, not dropped after `.sent`.
            let size = engine?.wireSize(of: frame) ?? frame.packetSize
            guard size <= maxPayload else { throw .payloadTooLarge(size: size, limit: maxPayload) }
        }
        if let engine, namespaces[nsp]?.connected == true {
            send(frames, over: engine)
            return .sent
        }
        namespaces[nsp, default: Namespace()].sendBuffer.append(Buffered(frames: frames, ackID: ackID))
        return .buffered
    }

    func emitWithAck(
        _ nsp: String,
        _ name: String,
        _ arguments: [JSONValue],
        timeout: Duration
    ) async throws -> [JSONValue] {
        let id = namespaces[nsp, default: Namespace()].nextAckID
        namespaces[nsp]!.nextAckID += 1
        let result = try emit(nsp, name, arguments, ackID: id)
        let clock = configuration.clock
        return try await withCheckedThrowingContinuation { continuation in
            let timer = Task {
                do { try await clock.sleep(for: timeout, tolerance: nil) } catch { return }
                self.resolveAck(nsp, id, with: .failure(SocketError.ackTimeout))
            }
            self.namespaces[nsp]!.pendingAcks[id] = PendingAck(
                continuation: continuation,
                sent: result == .sent,
                timer: timer
            )
        }
    }

    func sendAck(namespace nsp: String, id: Int, arguments: [JSONValue]) {
        guard let engine, namespaces[nsp]?.connected == true else { return }
        send(SocketIOPacket.ack(arguments, id: id, namespace: nsp).encoded(), over: engine)
    }

    private func addListener(_ nsp: String, _ filter: Listener.Filter, _ handler: @escaping @Sendable (SocketEvent) -> Void) -> Int {
        let id = nextListenerID
        nextListenerID += 1
        namespaces[nsp, default: Namespace()].listeners.append((id, Listener(filter: filter, handler: handler)))
        return id
    }

    func addListener(_ nsp: String, named name: String?, _ handler: @escaping @Sendable (SocketEvent) -> Void) -> Int {
        addListener(nsp, name.map { .named($0) } ?? .anyEvent, handler)
    }

    func addLifecycleListener(_ nsp: String, _ handler: @escaping @Sendable (SocketEvent) -> Void) -> Int {
        addListener(nsp, .lifecycle, handler)
    }

    func addStreamListener(_ nsp: String, _ handler: @escaping @Sendable (SocketEvent) -> Void) -> Int {
        addListener(nsp, .everything, handler)
    }

    func removeListener(_ nsp: String, _ id: Int) {
        namespaces[nsp]?.listeners.removeAll { $0.id == id }
    }

    // MARK: The connection loop

    /// Opens the connection, runs it until it closes, waits the backoff and
    /// tries again, for as long as some socket wants to be connected.
    private func runConnectionLoop(generation current: Int) async {
        defer { if generation == current { loop = nil } }
        var isCurrent: Bool { generation == current && !Task.isCancelled }
        while hasActiveSockets, isCurrent {
            attemptTimedOut = false
            startAttemptTimer()
            let factory = configuration.transport
            let endpoint = self.endpoint
            let clock = configuration.clock
            let logger = configuration.logger
            let opening = Task {
                try await EngineIOConnection.open(over: try await factory.connect(to: endpoint), clock: clock, logger: logger)
            }
            self.opening = opening
            let connection: EngineIOConnection
            do {
                connection = try await opening.value
                guard isCurrent else {
                    connection.close()
                    return
                }
                self.opening = nil
            } catch {
                guard isCurrent else { return }
                self.opening = nil
                cancelAttemptTimer()
                let message = attemptTimedOut ? "timeout" : Self.describe(error)
                logger.info("connection attempt failed: \(message)")
                for nsp in activeNamespaces { dispatch(.connectError(ConnectError(message: message, source: .transport)), to: nsp) }
                guard await waitBeforeReconnecting(), isCurrent else { break }
                continue
            }
            engine = connection
            maxPayload = connection.handshake.maxPayload
            decoder = SocketIOPacketDecoder()
            for nsp in activeNamespaces { sendConnect(nsp, over: connection) }

            var reason = EngineIOCloseReason.transportClose
            var events = connection.events.makeAsyncIterator()
            // Wait for the next event, then drain what came with it without suspending.
            while var event = await events.next(isolation: self) {
                while true {
                    switch event {
                    case .message(let frame): receive(frame, from: connection)
                    case .closed(let why): reason = why
                    }
                    guard let more = events.nextBuffered() else { break }
                    event = more
                }
            }
            guard isCurrent else { return }
            engine = nil
            cancelAttemptTimer()
            connectionClosed(reason)
            guard !skipReconnect, await waitBeforeReconnecting(), isCurrent else { break }
        }
    }

    /// Backoff before the next attempt; false when reconnection should stop.
    private func waitBeforeReconnecting() async -> Bool {
        guard hasActiveSockets, !skipReconnect, !Task.isCancelled else { return false }
        attempts += 1
        guard configuration.reconnection.allowsAttempt(attempts) else {
            for nsp in activeNamespaces { dispatch(.reconnectFailed, to: nsp) }
            return false
        }
        let delay = configuration.reconnection.delay(forAttempt: attempts, random: configuration.random())
        for nsp in activeNamespaces { dispatch(.reconnectAttempt(attempt: attempts, delay: delay), to: nsp) }
        do {
            try await configuration.clock.sleep(for: delay, tolerance: nil)
        } catch {
            return false
        }
        return hasActiveSockets && !skipReconnect
    }

    /// One timer bounds a whole attempt: the transport, the handshake and the CONNECT reply.
    private func startAttemptTimer() {
        attemptTimer?.cancel()
        let clock = configuration.clock
        let timeout = configuration.connectTimeout
        attemptTimer = Task {
            do { try await clock.sleep(for: timeout, tolerance: nil) } catch { return }
            self.attemptExpired()
        }
    }

    private func cancelAttemptTimer() {
        attemptTimer?.cancel()
        attemptTimer = nil
    }

    private func attemptExpired() {
        attemptTimer = nil
        attemptTimedOut = true
        if let opening {
            opening.cancel()
        } else if let engine, activeNamespaces.contains(where: { namespaces[$0]?.connected == false }) {
            logger.info("no CONNECT reply within \(configuration.connectTimeout)")
            for nsp in activeNamespaces where namespaces[nsp]?.connected == false {
                dispatch(.connectError(ConnectError(message: "timeout", source: .transport)), to: nsp)
            }
            engine.close(reason: .transportError("connect timeout"))
        }
    }

    private func connectionClosed(_ reason: EngineIOCloseReason) {
        let disconnect: DisconnectReason
        switch reason {
        case .transportClose, .forcedClose, .serverShutdown: disconnect = .transportClose
        case .transportError(let why): disconnect = .transportError(why)
        case .pingTimeout: disconnect = .pingTimeout
        case .parseError(let why): disconnect = .parseError(why)
        }
        logger.info("connection closed: \(reason)")
        for nsp in namespaces.keys { namespaces[nsp]!.receiveBuffer = [] }
        for (nsp, state) in namespaces where state.connected {
            namespaces[nsp]!.connected = false
            namespaces[nsp]!.sid = nil
            failSentAcks(nsp)
            dispatch(.disconnect(disconnect), to: nsp)
        }
    }

    private var activeNamespaces: [String] { namespaces.filter { $0.value.active }.keys.sorted() }
    private var hasActiveSockets: Bool { namespaces.values.contains { $0.active } }

    /// With no socket left that wants a connection, close it and stop reconnecting.
    private func closeIfIdle() {
        guard !hasActiveSockets else { return }
        skipReconnect = true
        opening?.cancel()
        opening = nil
        engine?.close()
        engine = nil
        loop?.cancel()
        loop = nil
        cancelAttemptTimer()
    }

    // MARK: Packets

    private func sendConnect(_ nsp: String, over engine: EngineIOConnection) {
        let auth = namespaces[nsp]?.auth?()
        let data: JSONValue? = auth.flatMap { $0.isNull ? nil : $0 }
        send(SocketIOPacket(kind: .connect, namespace: nsp, data: data).encoded(), over: engine)
    }

    private func send(_ frames: [EngineIOData], over engine: EngineIOConnection) {
        for frame in frames {
            do {
                try engine.send(frame)
            } catch {
                logger.debug("not sent: \(error)")
            }
        }
    }

    private func receive(_ frame: EngineIOData, from connection: EngineIOConnection) {
        var packet: SocketIOPacket
        do {
            guard let decoded = try decoder.decode(frame) else { return }
            packet = decoded
        } catch {
            // Malformed input from the server: drop this connection and reconnect.
            logger.warning("closing connection: \(error)")
            connection.close(reason: .parseError(error.description))
            return
        }
        let nsp = packet.namespace
        let found: Namespace?
        if let last = lastReceived, last.name == nsp {
            found = last.state
        } else {
            found = namespaces[nsp]
            if let found { lastReceived = (nsp, found) }
        }
        guard let state = found, state.active else {
            logger.debug("ignoring a packet for namespace \(nsp) with no active socket")
            return
        }
        switch packet.kind {
        case .connect:
            guard let sid = packet.data?["sid"]?.stringValue else {
                logger.warning("CONNECT without a sid: is this a Socket.IO v2 server?")
                connection.close(reason: .parseError("CONNECT without a sid"))
                return
            }
            namespaces[nsp]!.connected = true
            namespaces[nsp]!.sid = sid
            attempts = 0
            if !activeNamespaces.contains(where: { namespaces[$0]?.connected == false }) { cancelAttemptTimer() }
            // Flush what was emitted while offline, in order, before announcing the connection.
            let buffered = namespaces[nsp]!.sendBuffer
            namespaces[nsp]!.sendBuffer = []
            for item in buffered {
                send(item.frames, over: connection)
                if let id = item.ackID { namespaces[nsp]!.pendingAcks[id]?.sent = true }
            }
            dispatch(.connect, to: nsp)
            let early = namespaces[nsp]!.receiveBuffer
            namespaces[nsp]!.receiveBuffer = []
            for event in early { dispatch(.event(event), to: nsp) }

        case .connectError:
            let message: String
            var data: JSONValue?
            switch packet.data {
            case .string(let text)?: message = text
            case let object?:
                message = object["message"]?.stringValue ?? "connection refused"
                data = object["data"]
            case nil: message = "connection refused"
            }
            namespaces[nsp]!.active = false
            namespaces[nsp]!.connected = false
            dispatch(.connectError(ConnectError(message: message, data: data, source: .server)), to: nsp)
            closeIfIdle()

        case .disconnect:
            let wasConnected = state.connected
            namespaces[nsp]!.active = false
            namespaces[nsp]!.connected = false
            namespaces[nsp]!.sid = nil
            failSentAcks(nsp)
            if wasConnected { dispatch(.disconnect(.ioServerDisconnect), to: nsp) }
            closeIfIdle()

        case .event, .binaryEvent:
            guard let (name, arguments) = packet.takeEvent() else { return }
            let ack = packet.id.map { Acknowledgement(manager: self, namespace: nsp, id: $0) }
            let event = ReceivedEvent(name: name, arguments: arguments, ack: ack)
            if state.connected {
                dispatch(.event(event), to: state)
            } else if state.receiveBuffer.count < Self.receiveBufferLimit {
                namespaces[nsp]!.receiveBuffer.append(event)
            } else {
                logger.warning("closing connection: too many events before the CONNECT reply")
                connection.close(reason: .parseError("too many events before the CONNECT reply"))
            }

        case .ack, .binaryAck:
            guard let id = packet.id else { return }
            resolveAck(nsp, id, with: .success(packet.data?.arrayValue ?? []))
        }
    }

    private func resolveAck(_ nsp: String, _ id: Int, with result: Result<[JSONValue], any Error>) {
        guard let pending = namespaces[nsp]?.pendingAcks.removeValue(forKey: id) else { return }
        pending.timer?.cancel()
        namespaces[nsp]!.sendBuffer.removeAll { $0.ackID == id && !pending.sent }
        pending.continuation.resume(with: result)
    }

    /// Acks for events already sent can no longer arrive once the connection is gone.
    private func failSentAcks(_ nsp: String) {
        guard let pending = namespaces[nsp]?.pendingAcks else { return }
        for (id, ack) in pending where ack.sent {
            resolveAck(nsp, id, with: .failure(SocketError.disconnected))
        }
    }

    private func dispatch(_ event: SocketEvent, to nsp: String) {
        guard let state = namespaces[nsp] else { return }
        dispatch(event, to: state)
    }

    private func dispatch(_ event: SocketEvent, to state: Namespace) {
        let listeners = state.listeners
        for (_, listener) in listeners {
            switch (listener.filter, event) {
            case (.everything, _): listener.handler(event)
            case (.anyEvent, .event): listener.handler(event)
            case (.named(let name), .event(let received)) where received.name == name: listener.handler(event)
            case (.lifecycle, .event), (.named, _), (.anyEvent, _): break
            case (.lifecycle, _): listener.handler(event)
            }
        }
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? EngineIOError { return error.description }
        if error is CancellationError { return "cancelled" }
        return String(describing: error)
    }
}
