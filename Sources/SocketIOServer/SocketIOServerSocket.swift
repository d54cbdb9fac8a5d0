public import EngineIOServer
public import NIOCore
import EngineIOProtocol
public import JSON
import Logging
import SocketIOProtocol
import Synchronization

/// One client connection (one Engine.IO session) and the sockets it opened, one per namespace.
///
/// What a client may make it do is bounded: one socket per namespace (a CONNECT to a
/// namespace it is in already is a protocol error, and ends the connection), CONNECT
/// attempts at `SocketIOServer.Limits`' rate (more are refused with CONNECT_ERROR, and as
/// many refusals again as the burst end the connection), and no
/// longer than the connect timeout without a namespace, whatever its CONNECTs said: the timer
/// stops only when a namespace is joined, and starts again when the last one is left.
final class SocketIOClient: EngineIOSocketDelegate {
    let engineSocket: EngineIOSocket
    private let server: WeakServer
    let limits: SocketIOServer.Limits
    private let state: Mutex<State>

    struct State {
        var decoder: SocketIOPacketDecoder
        var sockets: [String: SocketIOServerSocket] = [:]
        /// Namespaces whose CONNECT is being decided: a second CONNECT meanwhile is one to a
        /// namespace the client is in.
        var connecting: Set<String> = []
        var connectTimer: ServerTimer?
        var connectAttempts: TokenBucket
        /// CONNECTs refused in a row for coming too fast.
        var refusedAttempts = 0
        var closed = false
    }

    init(engineSocket: EngineIOSocket, server: WeakServer, limits: SocketIOServer.Limits) {
        self.engineSocket = engineSocket
        self.server = server
        self.limits = limits
        let now = engineSocket.clock.now
        // What an incomplete binary packet may hold: as much as one message may.
        let decoder = SocketIOPacketDecoder(maxAttachmentBytes: engineSocket.options.maxHttpBufferSize)
        self.state = Mutex(State(
            decoder: decoder,
            connectAttempts: TokenBucket(rate: limits.connectAttemptsPerSecond, burst: limits.connectAttemptBurst, now: now)
        ))
        armConnectTimer()
    }

    /// A client without a namespace does not hold a session for long.
    private func armConnectTimer() {
        let socket = engineSocket
        let timer = socket.clock.schedule(after: limits.connectTimeout, on: socket.eventLoop) { [self] in
            // A namespace joined as the timer came due keeps the connection.
            guard state.withLock({ $0.sockets.isEmpty }) else { return }
            socket.close(reason: .forcedClose)
        }
        let stale = state.withLock { state -> Bool in
            guard !state.closed, state.sockets.isEmpty else { return true }
            state.connectTimer?.cancel()
            state.connectTimer = timer
            return false
        }
        if stale { timer.cancel() }
    }

    func send(_ packet: SocketIOPacket) {
        engineSocket.send(packet.encoded().map(EngineIOOutgoing.message))
    }

    func engineIOSocket(_ socket: EngineIOSocket, didReceive message: EngineIOData) {
        let decoded: Result<SocketIOPacket?, SocketIOParseError> = state.withLock { state in
            Result { () throws(SocketIOParseError) -> SocketIOPacket? in try state.decoder.decode(message) }
        }
        switch decoded {
        case .failure(let error):
            server.value?.logger.debug("closing a client that sent an invalid packet", metadata: ["error": "\(error)"])
            engineSocket.close(reason: .parseError(error.description))
        case .success(nil):
            break  // waiting for binary attachments
        case .success(let packet?):
            handle(packet)
        }
    }

    private func handle(_ packet: SocketIOPacket) {
        switch packet.kind {
        case .connect:
            connect(namespace: packet.namespace, auth: packet.data)
        case .disconnect:
            guard let socket = state.withLock({ $0.sockets.removeValue(forKey: packet.namespace) }) else { return }
            left(socket, reason: "client namespace disconnect")
        case .event, .binaryEvent:
            guard let socket = state.withLock({ $0.sockets[packet.namespace] }) else { return }
            var packet = packet
            guard let (name, arguments) = packet.takeEvent() else { return }
            socket.dispatch(event: name, arguments: arguments, ackID: packet.id)
        case .ack, .binaryAck:
            // An answer to an emit that asked for one; a stray or late one is ignored (as
            // socket.io does), and so is one without an id or arguments.
            guard let id = packet.id, case .array(let arguments)? = packet.data,
                let socket = state.withLock({ $0.sockets[packet.namespace] })
            else { return }
            socket.acknowledged(id: id, arguments: arguments)
        case .connectError:
            engineSocket.close(reason: .parseError("a client sent CONNECT_ERROR"))
        }
    }

    private func connect(namespace name: String, auth: JSONValue?) {
        enum Admission { case accept, alreadyConnected, tooFast, abusive }
        let now = engineSocket.clock.now
        let limits = self.limits
        let admission = state.withLock { state -> Admission in
            if state.sockets[name] != nil || state.connecting.contains(name) { return .alreadyConnected }
            if state.connectAttempts.take(now: now) {
                state.refusedAttempts = 0
                state.connecting.insert(name)
                return .accept
            }
            state.refusedAttempts += 1
            // Refused as many times again as the burst allows, without waiting: no client
            // does that (socket.io-client never retries a refused CONNECT by itself).
            return Double(state.refusedAttempts) > limits.connectAttemptBurst ? .abusive : .tooFast
        }
        switch admission {
        case .alreadyConnected:
            // socket.io-protocol v5: one socket per namespace per connection.
            engineSocket.close(reason: .parseError("CONNECT to \(name), which this client is connected to already"))
            return
        case .tooFast, .abusive:
            send(SocketIOPacket(kind: .connectError, namespace: name, data: ["message": "too many connection attempts"]))
            if admission == .abusive { engineSocket.close(reason: .parseError("CONNECT attempts go on after refusals")) }
            return
        case .accept:
            break
        }
        defer { state.withLock { _ = $0.connecting.remove(name) } }
        guard let server = server.value, let namespace = server.existingNamespace(name) else {
            send(SocketIOPacket(kind: .connectError, namespace: name, data: ["message": "Invalid namespace"]))
            return
        }
        let socket = SocketIOServerSocket(client: self, namespace: namespace, auth: auth ?? .object([:]))
        if case .reject(let message, let data) = namespace.connect(socket) {
            let payload: JSONValue = data.map { ["message": .string(message), "data": $0] } ?? ["message": .string(message)]
            send(SocketIOPacket(kind: .connectError, namespace: name, data: payload))
            return
        }
        let (joined, timer) = state.withLock { state -> (Bool, ServerTimer?) in
            guard !state.closed else { return (false, nil) }
            state.sockets[name] = socket
            defer { state.connectTimer = nil }
            return (true, state.connectTimer)
        }
        guard joined else { return }  // the connection closed meanwhile
        timer?.cancel()
        engineSocket.setHalfOpen(false)
        let handlers = namespace.add(socket)
        send(SocketIOPacket(kind: .connect, namespace: name, data: ["sid": .string(socket.id)]))
        for handler in handlers { handler(socket) }
    }

    /// A socket left its namespace while the connection stays: with no namespace left, the
    /// client is half-open again, and has the connect timeout to join one.
    private func left(_ socket: SocketIOServerSocket, reason: String) {
        socket.closed(reason: reason)
        becomeHalfOpenIfNoNamespace()
    }

    /// With no namespace joined and the connection still open, the client is half-open
    /// again: the connect timeout runs and the half-open limits apply.
    private func becomeHalfOpenIfNoNamespace() {
        guard state.withLock({ !$0.closed && $0.sockets.isEmpty }) else { return }
        armConnectTimer()
        engineSocket.setHalfOpen(true)
    }

    func engineIOSocket(_ socket: EngineIOSocket, didCloseWith reason: EngineIOCloseReason) {
        let (sockets, timer) = state.withLock { state in
            state.closed = true
            let all = Array(state.sockets.values)
            state.sockets.removeAll()
            let timer = state.connectTimer
            state.connectTimer = nil
            return (all, timer)
        }
        timer?.cancel()
        for socket in sockets { socket.closed(reason: reason.name) }
    }

    /// The server side ended one namespace's socket.
    func forget(_ socket: SocketIOServerSocket) {
        let removed = state.withLock { state -> Bool in
            guard state.sockets[socket.namespace.name] === socket else { return false }
            state.sockets.removeValue(forKey: socket.namespace.name)
            return true
        }
        if removed { becomeHalfOpenIfNoNamespace() }
    }
}

/// A client's socket in one namespace (socket.io's `Socket`, server side).
public final class SocketIOServerSocket: Sendable {
    /// The socket's id: public, and the name of a room it is always in.
    public let id: String
    public let namespace: SocketIONamespace
    /// The CONNECT payload (`{}` when the client sent none).
    public let auth: JSONValue
    let client: SocketIOClient
    private let state = Mutex(State())

    struct State {
        var handlers: [String: @Sendable (SocketIOServerSocket, [JSONValue], SocketIOAck?) -> Void] = [:]
        var onDisconnect: [@Sendable (SocketIOServerSocket, String) -> Void] = []
        var data: (any Sendable)?
        var connected = true
        /// Why the socket went, once it has.
        var closeReason: String?
        /// Acknowledgements asked for and not yet answered, by packet id.
        var pendingAcks: [Int: PendingAck] = [:]
        var nextAckID = 0
    }

    struct PendingAck {
        let callback: @Sendable (Result<[JSONValue], SocketIOAckFailure>) -> Void
        var timer: ServerTimer?
    }

    init(client: SocketIOClient, namespace: SocketIONamespace, auth: JSONValue) {
        self.id = EngineIOServer.randomID()
        self.client = client
        self.namespace = namespace
        self.auth = auth
    }

    /// The opening HTTP request of the connection.
    public var request: EngineIOHandshakeRequest { client.engineSocket.request }

    /// The event loop of the connection (where its timers run).
    public var eventLoop: any EventLoop { client.engineSocket.eventLoop }

    /// Whatever the application keeps with this socket.
    public var data: (any Sendable)? {
        get { state.withLock { $0.data } }
        set { state.withLock { $0.data = newValue } }
    }

    public var isConnected: Bool { state.withLock { $0.connected } }

    /// Handles an event from the client; `ack` is set when the client asked for one.
    public func on(_ event: String, _ handler: @escaping @Sendable (SocketIOServerSocket, [JSONValue], SocketIOAck?) -> Void) {
        state.withLock { $0.handlers[event] = handler }
    }

    /// Runs once when the socket goes, with socket.io's reason ("transport close",
    /// "client namespace disconnect", "ping timeout", …). The socket has left its rooms by then.
    /// A handler added after the socket went (its connection closed while the connection
    /// handlers ran) runs at once: what a handler set up is always taken down.
    public func onDisconnect(_ handler: @escaping @Sendable (SocketIOServerSocket, String) -> Void) {
        let gone: String? = state.withLock { state in
            guard state.connected else { return state.closeReason ?? "transport close" }
            state.onDisconnect.append(handler)
            return nil
        }
        if let gone { handler(self, gone) }
    }

    public func emit(_ event: String, _ arguments: JSONValue...) {
        emit(event, arguments: arguments)
    }

    public func emit(_ event: String, arguments: [JSONValue]) {
        guard isConnected else { return }
        client.send(SocketIOPacket.event(event, arguments, namespace: namespace.name))
    }

    /// Emits an event that asks the client for an acknowledgement. `callback` runs once: with
    /// the arguments the client answered with, or with why none came (the timeout passed, the
    /// socket went, or `Limits.maxPendingAcksPerSocket` were awaited already and nothing was
    /// sent). A client that never answers holds nothing past the timeout.
    public func emit(
        _ event: String,
        arguments: [JSONValue],
        ackTimeout: Duration,
        _ callback: @escaping @Sendable (Result<[JSONValue], SocketIOAckFailure>) -> Void
    ) {
        let limit = client.limits.maxPendingAcksPerSocket
        let admitted: Result<Int, SocketIOAckFailure> = state.withLock { state in
            guard state.connected else { return .failure(.disconnected) }
            guard state.pendingAcks.count < limit else { return .failure(.tooManyPending) }
            // Ids stay below 2^31 (what JavaScript clients parse exactly), and skip any
            // still awaited when they wrap.
            repeat { state.nextAckID = (state.nextAckID + 1) & 0x7FFF_FFFF } while state.pendingAcks[state.nextAckID] != nil
            state.pendingAcks[state.nextAckID] = PendingAck(callback: callback)
            return .success(state.nextAckID)
        }
        let id: Int
        switch admitted {
        case .failure(let failure):
            callback(.failure(failure))
            return
        case .success(let admittedID):
            id = admittedID
        }
        let engineSocket = client.engineSocket
        let timer = engineSocket.clock.schedule(after: ackTimeout, on: engineSocket.eventLoop) { [self] in
            settle(id: id, with: .failure(.timeout))
        }
        // The answer (or the end) may have come already: then the timer has nothing to do.
        let stale = state.withLock { state -> Bool in
            guard state.pendingAcks[id] != nil else { return true }
            state.pendingAcks[id]?.timer = timer
            return false
        }
        if stale { timer.cancel() }
        client.send(SocketIOPacket.event(event, arguments, namespace: namespace.name, id: id))
    }

    /// The client answered the emit with this packet id.
    func acknowledged(id: Int, arguments: [JSONValue]) {
        settle(id: id, with: .success(arguments))
    }

    private func settle(id: Int, with outcome: Result<[JSONValue], SocketIOAckFailure>) {
        guard let pending = state.withLock({ $0.pendingAcks.removeValue(forKey: id) }) else { return }
        pending.timer?.cancel()
        pending.callback(outcome)
    }

    /// Emits an event whose arguments are serialized already (no binary values): a large,
    /// mostly unchanging payload is assembled from parts serialized once (`JSONFragment`)
    /// rather than built as values and serialized again for every socket.
    public func emit(_ event: String, fragments: [JSONFragment]) {
        guard isConnected else { return }
        client.engineSocket.send(.message(SocketIOPacket.encodedEvent(event, fragments, namespace: namespace.name)))
    }

    public func join(_ room: String) { namespace.join(id, room: room) }
    public func leave(_ room: String) { namespace.leave(id, room: room) }
    public var rooms: Set<String> { namespace.rooms(of: id) }

    /// A broadcast to every socket of the namespace but this one.
    public var broadcast: SocketIOBroadcast {
        SocketIOBroadcast(namespace: namespace, rooms: [], exceptSockets: [id])
    }

    /// A broadcast to these rooms that leaves this socket out.
    public func to(_ rooms: String...) -> SocketIOBroadcast {
        SocketIOBroadcast(namespace: namespace, rooms: rooms, exceptSockets: [id])
    }

    /// Ends this socket: DISCONNECT to the client, and with `closeConnection` the whole
    /// connection too.
    public func disconnect(closeConnection: Bool = false) {
        guard isConnected else { return }
        client.send(SocketIOPacket(kind: .disconnect, namespace: namespace.name))
        client.forget(self)
        closed(reason: "server namespace disconnect")
        if closeConnection { client.engineSocket.close(reason: .forcedClose) }
    }

    func dispatch(event: String, arguments: [JSONValue], ackID: Int?) {
        guard let handler = state.withLock({ $0.connected ? $0.handlers[event] : nil }) else { return }
        var ack: SocketIOAck?
        if let ackID {
            let sent = Once()
            ack = SocketIOAck { arguments in
                guard sent.first(), self.isConnected else { return }
                self.client.send(SocketIOPacket.ack(arguments, id: ackID, namespace: self.namespace.name))
            }
        }
        handler(self, arguments, ack)
    }

    func closed(reason: String) {
        let handlers: [@Sendable (SocketIOServerSocket, String) -> Void]? = state.withLock { state in
            guard state.connected else { return nil }
            state.connected = false
            state.closeReason = reason
            state.handlers.removeAll()
            let handlers = state.onDisconnect
            state.onDisconnect.removeAll()
            return handlers
        }
        guard let handlers else { return }
        namespace.remove(self)
        // Every acknowledgement still awaited will not come.
        let pending = state.withLock { state in
            defer { state.pendingAcks.removeAll() }
            return Array(state.pendingAcks.values)
        }
        for ack in pending {
            ack.timer?.cancel()
            ack.callback(.failure(.disconnected))
        }
        for handler in handlers { handler(self, reason) }
    }
}

/// True the first time only.
final class Once: Sendable {
    private let done = Atomic<Bool>(false)
    func first() -> Bool { !done.exchange(true, ordering: .relaxed) }
}
