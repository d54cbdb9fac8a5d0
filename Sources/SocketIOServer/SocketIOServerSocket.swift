public import EngineIOServer
import EngineIOProtocol
public import JSON
import Logging
import SocketIOProtocol
import Synchronization

/// One client connection (one Engine.IO session) and the sockets it opened, one per namespace.
final class SocketIOClient: EngineIOSocketDelegate {
    let engineSocket: EngineIOSocket
    private let server: WeakServer
    private let state: Mutex<State>

    struct State {
        var decoder = SocketIOPacketDecoder()
        var sockets: [String: SocketIOServerSocket] = [:]
        var connectTimer: Task<Void, Never>?
    }

    init(engineSocket: EngineIOSocket, server: WeakServer) {
        self.engineSocket = engineSocket
        self.server = server
        self.state = Mutex(State())
        let timeout = server.value?.connectTimeout ?? .seconds(45)
        // A client that never joins a namespace does not hold a session for long.
        // Cancelled on the first CONNECT or when the connection closes.
        let timer = Task {
            do { try await Task.sleep(for: timeout) } catch { return }
            engineSocket.close(reason: .forcedClose)
        }
        state.withLock { $0.connectTimer = timer }
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
            engineSocket.close(reason: .parseError)
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
            let socket = state.withLock { $0.sockets.removeValue(forKey: packet.namespace) }
            socket?.closed(reason: "client namespace disconnect")
        case .event, .binaryEvent:
            guard let socket = state.withLock({ $0.sockets[packet.namespace] }) else { return }
            var packet = packet
            guard let (name, arguments) = packet.takeEvent() else { return }
            socket.dispatch(event: name, arguments: arguments, ackID: packet.id)
        case .ack, .binaryAck:
            // This server does not emit with acknowledgements; a stray ACK is ignored.
            break
        case .connectError:
            engineSocket.close(reason: .parseError)
        }
    }

    private func connect(namespace name: String, auth: JSONValue?) {
        state.withLock { state in
            state.connectTimer?.cancel()
            state.connectTimer = nil
        }
        guard let server = server.value, let namespace = server.existingNamespace(name) else {
            send(SocketIOPacket(kind: .connectError, namespace: name, data: ["message": "Invalid namespace"]))
            return
        }
        guard state.withLock({ $0.sockets[name] == nil }) else { return }  // already connected there
        let socket = SocketIOServerSocket(client: self, namespace: namespace, auth: auth ?? .object([:]))
        if case .reject(let message, let data) = namespace.connect(socket) {
            let payload: JSONValue = data.map { ["message": .string(message), "data": $0] } ?? ["message": .string(message)]
            send(SocketIOPacket(kind: .connectError, namespace: name, data: payload))
            return
        }
        guard !engineSocket.isClosed else { return }
        state.withLock { $0.sockets[name] = socket }
        let handlers = namespace.add(socket)
        send(SocketIOPacket(kind: .connect, namespace: name, data: ["sid": .string(socket.id)]))
        for handler in handlers { handler(socket) }
    }

    func engineIOSocket(_ socket: EngineIOSocket, didCloseWith reason: EngineIOCloseReason) {
        let (sockets, timer) = state.withLock { state in
            let all = Array(state.sockets.values)
            state.sockets.removeAll()
            let timer = state.connectTimer
            state.connectTimer = nil
            return (all, timer)
        }
        timer?.cancel()
        for socket in sockets { socket.closed(reason: reason.rawValue) }
    }

    /// The server side ended one namespace's socket.
    func forget(_ socket: SocketIOServerSocket) {
        state.withLock { state in
            if state.sockets[socket.namespace.name] === socket { state.sockets.removeValue(forKey: socket.namespace.name) }
        }
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
    }

    init(client: SocketIOClient, namespace: SocketIONamespace, auth: JSONValue) {
        self.id = EngineIOServer.randomID()
        self.client = client
        self.namespace = namespace
        self.auth = auth
    }

    /// The opening HTTP request of the connection.
    public var request: EngineIOHandshakeRequest { client.engineSocket.request }

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
    public func onDisconnect(_ handler: @escaping @Sendable (SocketIOServerSocket, String) -> Void) {
        state.withLock { $0.onDisconnect.append(handler) }
    }

    public func emit(_ event: String, _ arguments: JSONValue...) {
        emit(event, arguments: arguments)
    }

    public func emit(_ event: String, arguments: [JSONValue]) {
        guard isConnected else { return }
        client.send(SocketIOPacket.event(event, arguments, namespace: namespace.name))
    }

    /// Emits an event whose arguments are already JSON text (one string per argument, no
    /// binary values): a large, mostly unchanging payload need not be rebuilt as values
    /// and serialized again for every socket. The caller vouches that each is valid JSON.
    public func emit(_ event: String, serializedArguments: [String]) {
        guard isConnected else { return }
        var text = "2"
        if namespace.name != "/" { text += namespace.name + "," }
        text += "[" + JSONValue.string(event).serialized()
        for argument in serializedArguments {
            text += ","
            text += argument
        }
        text += "]"
        client.engineSocket.send(.message(.text(text)))
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
            state.handlers.removeAll()
            let handlers = state.onDisconnect
            state.onDisconnect.removeAll()
            return handlers
        }
        guard let handlers else { return }
        namespace.remove(self)
        for handler in handlers { handler(self, reason) }
    }
}

/// True the first time only.
final class Once: Sendable {
    private let done = Atomic<Bool>(false)
    func first() -> Bool { !done.exchange(true, ordering: .relaxed) }
}
