public import EngineIOServer
import EngineIOProtocol
public import JSON
public import Logging
import SocketIOProtocol
import Synchronization

/// A Socket.IO v5 server (socket.io-protocol v5) on an Engine.IO server: namespaces with
/// middleware, sockets, rooms, broadcasts with exclusions, and acknowledgements.
///
/// Handlers are synchronous and run on the task that received the packet, so one client's
/// packets are handled in the order they were sent. They must not block for long.
public final class SocketIOServer: Sendable {
    public let engine: EngineIOServer
    private let namespaces: Mutex<[String: SocketIONamespace]>
    let connectTimeout: Duration
    let logger: Logger

    /// - Parameter connectTimeout: how long a client may stay without joining any
    ///   namespace before it is disconnected (socket.io's `connectTimeout`).
    public init(
        engineOptions: EngineIOServerOptions = EngineIOServerOptions(),
        connectTimeout: Duration = .seconds(45),
        logger: Logger = Logger(label: "parley.socketio")
    ) {
        let namespaces = Mutex<[String: SocketIONamespace]>([:])
        self.namespaces = namespaces
        self.connectTimeout = connectTimeout
        self.logger = logger
        let box = WeakServer()
        self.engine = EngineIOServer(options: engineOptions) { socket in
            SocketIOClient(engineSocket: socket, server: box)
        }
        box.server.withLock { $0 = WeakReference(self) }
        _ = of("/")
    }

    /// The namespace of this name, created on first use.
    @discardableResult
    public func of(_ name: String) -> SocketIONamespace {
        let name = name.hasPrefix("/") ? name : "/" + name
        return namespaces.withLock { table in
            if let existing = table[name] { return existing }
            let created = SocketIONamespace(name: name, logger: logger)
            table[name] = created
            return created
        }
    }

    /// The main namespace, `/`.
    public var main: SocketIONamespace { of("/") }

    func existingNamespace(_ name: String) -> SocketIONamespace? {
        namespaces.withLock { $0[name] }
    }

    /// Disconnects every client and refuses new ones.
    public func shutdown() {
        engine.shutdown()
    }
}

/// Lets the engine's connection callback reach the server without a retain cycle.
final class WeakServer: Sendable {
    let server = Mutex<WeakReference?>(nil)
    var value: SocketIOServer? { server.withLock { $0?.value } }
}

struct WeakReference: @unchecked Sendable {
    // Written once under WeakServer's lock, before any connection; read under it.
    weak var value: SocketIOServer?
    init(_ value: SocketIOServer) { self.value = value }
}

// MARK: - Middleware and handlers

/// What a middleware decides about a connection.
public enum SocketIOMiddlewareResult: Sendable {
    case accept
    /// Refused with CONNECT_ERROR `{message, data?}`.
    case reject(message: String, data: JSONValue? = nil)
}

/// Answers an event that asked for an acknowledgement; only the first call is sent.
public struct SocketIOAck: Sendable {
    let send: @Sendable ([JSONValue]) -> Void
    public func callAsFunction(_ arguments: JSONValue...) { send(arguments) }
    public func callAsFunction(arguments: [JSONValue]) { send(arguments) }
}

// MARK: - Namespace

/// A namespace: its middleware, its sockets and their rooms.
public final class SocketIONamespace: Sendable {
    public let name: String
    let logger: Logger
    private let state = Mutex(State())

    struct State {
        var middleware: [@Sendable (SocketIOServerSocket) -> SocketIOMiddlewareResult] = []
        var onConnection: [@Sendable (SocketIOServerSocket) -> Void] = []
        var sockets: [String: SocketIOServerSocket] = [:]
        var rooms: [String: Set<String>] = [:]
        var memberships: [String: Set<String>] = [:]
    }

    init(name: String, logger: Logger) {
        self.name = name
        self.logger = logger
    }

    /// Runs for every CONNECT, in the order added, before the socket exists for anyone else;
    /// `socket.auth` is the client's CONNECT payload.
    public func use(_ middleware: @escaping @Sendable (SocketIOServerSocket) -> SocketIOMiddlewareResult) {
        state.withLock { $0.middleware.append(middleware) }
    }

    /// Runs for every accepted socket, after its CONNECT answer is sent.
    public func onConnection(_ handler: @escaping @Sendable (SocketIOServerSocket) -> Void) {
        state.withLock { $0.onConnection.append(handler) }
    }

    /// Connected sockets.
    public var socketCount: Int { state.withLock { $0.sockets.count } }

    /// The sockets in a room.
    public func sockets(in room: String) -> [SocketIOServerSocket] {
        state.withLock { state in
            (state.rooms[room] ?? []).compactMap { state.sockets[$0] }
        }
    }

    /// Every connected socket.
    public var sockets: [SocketIOServerSocket] { state.withLock { Array($0.sockets.values) } }

    /// A broadcast to these rooms.
    public func to(_ rooms: String...) -> SocketIOBroadcast { SocketIOBroadcast(namespace: self, rooms: Set(rooms)) }

    /// A broadcast to every socket but those in these rooms.
    public func except(_ rooms: String...) -> SocketIOBroadcast {
        SocketIOBroadcast(namespace: self, rooms: [], exceptRooms: Set(rooms))
    }

    /// Emits to every socket of the namespace.
    public func emit(_ event: String, _ arguments: JSONValue...) {
        SocketIOBroadcast(namespace: self, rooms: []).emit(event, arguments: arguments)
    }

    // MARK: Internals

    func connect(_ socket: SocketIOServerSocket) -> SocketIOMiddlewareResult {
        let middleware = state.withLock { $0.middleware }
        for step in middleware {
            if case .reject(let message, let data) = step(socket) { return .reject(message: message, data: data) }
        }
        return .accept
    }

    func add(_ socket: SocketIOServerSocket) -> [@Sendable (SocketIOServerSocket) -> Void] {
        state.withLock { state in
            state.sockets[socket.id] = socket
            Self.join(&state, socket.id, room: socket.id)
            return state.onConnection
        }
    }

    func remove(_ socket: SocketIOServerSocket) {
        state.withLock { state in
            state.sockets.removeValue(forKey: socket.id)
            for room in state.memberships.removeValue(forKey: socket.id) ?? [] {
                state.rooms[room]?.remove(socket.id)
                if state.rooms[room]?.isEmpty == true { state.rooms.removeValue(forKey: room) }
            }
        }
    }

    func join(_ socketID: String, room: String) {
        state.withLock { state in
            guard state.sockets[socketID] != nil else { return }
            Self.join(&state, socketID, room: room)
        }
    }

    private static func join(_ state: inout State, _ socketID: String, room: String) {
        state.rooms[room, default: []].insert(socketID)
        state.memberships[socketID, default: []].insert(room)
    }

    func leave(_ socketID: String, room: String) {
        state.withLock { state in
            state.memberships[socketID]?.remove(room)
            state.rooms[room]?.remove(socketID)
            if state.rooms[room]?.isEmpty == true { state.rooms.removeValue(forKey: room) }
        }
    }

    func rooms(of socketID: String) -> Set<String> {
        state.withLock { $0.memberships[socketID] ?? [] }
    }

    /// The sockets a broadcast reaches: members of any of `rooms` (every socket when empty),
    /// minus members of `exceptRooms` and the sockets in `exceptSockets`.
    func targets(rooms: Set<String>, exceptRooms: Set<String>, exceptSockets: Set<String>) -> [SocketIOServerSocket] {
        state.withLock { state in
            var excluded = exceptSockets
            for room in exceptRooms { excluded.formUnion(state.rooms[room] ?? []) }
            if rooms.isEmpty {
                return state.sockets.values.filter { !excluded.contains($0.id) }
            }
            if rooms.count == 1, let members = state.rooms[rooms.first!] {
                return members.compactMap { excluded.contains($0) ? nil : state.sockets[$0] }
            }
            var ids = Set<String>()
            for room in rooms { ids.formUnion(state.rooms[room] ?? []) }
            return ids.compactMap { excluded.contains($0) ? nil : state.sockets[$0] }
        }
    }
}

/// A message to several sockets, encoded once (socket.io's `BroadcastOperator`).
public struct SocketIOBroadcast: Sendable {
    let namespace: SocketIONamespace
    var rooms: Set<String>
    var exceptRooms: Set<String> = []
    var exceptSockets: Set<String> = []

    public func to(_ more: String...) -> SocketIOBroadcast {
        var copy = self
        copy.rooms.formUnion(more)
        return copy
    }

    public func except(_ rooms: String...) -> SocketIOBroadcast {
        var copy = self
        copy.exceptRooms.formUnion(rooms)
        return copy
    }

    /// Leaves out one socket (socket.io's `socket.to(room)` leaves out the sender this way).
    public func excluding(_ socket: SocketIOServerSocket) -> SocketIOBroadcast {
        var copy = self
        copy.exceptSockets.insert(socket.id)
        return copy
    }

    public func emit(_ event: String, _ arguments: JSONValue...) {
        emit(event, arguments: arguments)
    }

    public func emit(_ event: String, arguments: [JSONValue]) {
        let targets = namespace.targets(rooms: rooms, exceptRooms: exceptRooms, exceptSockets: exceptSockets)
        guard !targets.isEmpty else { return }
        let frames = SocketIOPacket.event(event, arguments, namespace: namespace.name).encoded().map(EngineIOOutgoing.message)
        EngineIOSocket.send(frames, to: targets.map(\.client.engineSocket))
    }

    /// The sockets this broadcast would reach now.
    public var sockets: [SocketIOServerSocket] {
        namespace.targets(rooms: rooms, exceptRooms: exceptRooms, exceptSockets: exceptSockets)
    }
}
