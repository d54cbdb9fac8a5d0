public import EngineIOServer
import EngineIOProtocol
public import JSON
public import Logging
public import SocketIOCluster
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
    private let owner: WeakServer
    let limits: Limits
    let logger: Logger

    /// What one client connection may do before it joins a namespace.
    public struct Limits: Sendable, Equatable {
        /// How long a client may stay without joining any namespace before it is
        /// disconnected (socket.io's `connectTimeout`), counted from the handshake and again
        /// from when it leaves its last namespace; a refused CONNECT does not stop it.
        public var connectTimeout: Duration
        /// CONNECT attempts one connection may make per second on average, and in a burst;
        /// more are refused with CONNECT_ERROR "too many connection attempts".
        public var connectAttemptsPerSecond: Double
        public var connectAttemptBurst: Double

        /// Acknowledgements the server may wait for on one socket (`emit(_:arguments:ackTimeout:_:)`):
        /// a client that never answers holds each until its timeout, and no more than this many.
        public var maxPendingAcksPerSocket: Int

        public init(
            connectTimeout: Duration = .seconds(45),
            connectAttemptsPerSecond: Double = 1,
            connectAttemptBurst: Double = 10,
            maxPendingAcksPerSocket: Int = 256
        ) {
            self.connectTimeout = connectTimeout
            self.connectAttemptsPerSecond = connectAttemptsPerSecond
            self.connectAttemptBurst = connectAttemptBurst
            self.maxPendingAcksPerSocket = maxPendingAcksPerSocket
        }
    }

    public init(
        engineOptions: EngineIOServerOptions = EngineIOServerOptions(),
        limits: Limits = Limits(),
        clock: any ServerClock = .system,
        logger: Logger = Logger(label: "parley.socketio")
    ) {
        let namespaces = Mutex<[String: SocketIONamespace]>([:])
        self.namespaces = namespaces
        self.limits = limits
        self.logger = logger
        let box = WeakServer()
        owner = box
        // A session is half-open until its client joins a namespace.
        var engineOptions = engineOptions
        engineOptions.sessionsStartHalfOpen = true
        self.engine = EngineIOServer(options: engineOptions, clock: clock) { socket in
            SocketIOClient(engineSocket: socket, server: box, limits: limits)
        }
        box.server.withLock { $0 = WeakReference(self) }
        _ = of("/")
    }

    /// The clock of every timer and rate limit (the engine's).
    public var clock: any ServerClock { engine.clock }

    /// The namespace of this name, created on first use.
    @discardableResult
    public func of(_ name: String) -> SocketIONamespace {
        let name = name.hasPrefix("/") ? name : "/" + name
        return namespaces.withLock { table in
            if let existing = table[name] { return existing }
            let created = SocketIONamespace(name: name, logger: logger, server: owner)
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

    // MARK: A cluster

    /// Joins a cluster: from now on, every broadcast (but a `local` one) goes to the other
    /// servers through `link` too, and `receive(_:)` delivers theirs to the sockets here.
    /// `delivering` says which of the other servers' broadcasts reach the sockets here (an
    /// application knows what it sends; a writer of the database could send anything).
    public func join(cluster link: any ClusterLink, delivering: @escaping @Sendable (ClusterMessage.Broadcast) -> Bool = { _ in true }) {
        cluster.withLock { $0 = link }
        deliveryFilter.withLock { $0 = delivering }
    }

    private let deliveryFilter = Mutex<@Sendable (ClusterMessage.Broadcast) -> Bool>({ _ in true })

    let cluster = Mutex<(any ClusterLink)?>(nil)

    /// Server-side emits from the other servers (`SocketIOServer.serverSideEmit`) go here.
    public func onServerSideEmit(_ handler: @escaping @Sendable (_ event: String, _ arguments: [JSONValue], _ from: String) -> Void) {
        serverSideEmitHandlers.withLock { $0.append(handler) }
    }

    private let serverSideEmitHandlers = Mutex<[@Sendable (String, [JSONValue], String) -> Void]>([])

    /// Broadcasts from the other servers, as they come (before they reach the sockets here):
    /// an application may keep what they carry.
    public func onClusterBroadcast(_ handler: @escaping @Sendable (_ event: String, _ arguments: [JSONValue], _ from: String) -> Void) {
        clusterBroadcastHandlers.withLock { $0.append(handler) }
    }

    private let clusterBroadcastHandlers = Mutex<[@Sendable (String, [JSONValue], String) -> Void]>([])

    /// An event for the other servers of the cluster themselves (socket.io's `serverSideEmit`).
    public func serverSideEmit(_ event: String, _ arguments: [JSONValue], nsp: String = "/") {
        guard let link = cluster.withLock({ $0 }) else { return }
        link.send(.serverSideEmit(uid: link.uid, nsp: nsp, event: event, arguments: arguments))
    }

    /// A message from another server of the cluster: a broadcast reaches the sockets here that
    /// it names (never sent on: that server sent it to every server itself); a server-side
    /// emit goes to its handlers. The rest is not asked for by Parley and is let go.
    public func receive(_ message: ClusterMessage) {
        if let broadcast = message.broadcast, let namespace = existingNamespace(message.nsp) {
            guard !broadcast.local, deliveryFilter.withLock({ $0 })(broadcast) else { return }
            for handler in clusterBroadcastHandlers.withLock({ $0 }) { handler(broadcast.event, broadcast.arguments, message.uid) }
            // Each socket is in a room named by its ID: `except` leaves out rooms and sockets.
            SocketIOBroadcast(namespace: namespace, rooms: broadcast.rooms, exceptRooms: broadcast.except, exceptSockets: broadcast.except)
                .emitHere(broadcast.event, arguments: broadcast.arguments)
        } else if let emit = message.serverSideEmit {
            for handler in serverSideEmitHandlers.withLock({ $0 }) { handler(emit.event, emit.arguments, message.uid) }
        }
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

/// Why an acknowledgement the server asked for did not come.
public enum SocketIOAckFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// None came within the timeout.
    case timeout
    /// The socket went before it came.
    case disconnected
    /// Nothing was sent: `Limits.maxPendingAcksPerSocket` acknowledgements were awaited already.
    case tooManyPending

    public var description: String {
        switch self {
        case .timeout: return "timeout"
        case .disconnected: return "disconnected"
        case .tooManyPending: return "too many pending acknowledgements"
        }
    }
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
        /// Each room's members, by socket ID: a broadcast reaches them without a lookup each.
        var rooms: [String: [String: SocketIOServerSocket]] = [:]
        var memberships: [String: Set<String>] = [:]
    }

    /// The server it belongs to (weakly: the server holds its namespaces).
    private let owner: WeakServer

    init(name: String, logger: Logger, server: WeakServer) {
        self.name = name
        self.logger = logger
        owner = server
    }

    var server: SocketIOServer? { owner.value }

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
            state.rooms[room].map { Array($0.values) } ?? []
        }
    }

    /// Every connected socket.
    public var sockets: [SocketIOServerSocket] { state.withLock { Array($0.sockets.values) } }

    /// A broadcast to these rooms.
    public func to(_ rooms: String...) -> SocketIOBroadcast { SocketIOBroadcast(namespace: self, rooms: rooms) }

    /// A broadcast to every socket but those in these rooms.
    public func except(_ rooms: String...) -> SocketIOBroadcast {
        SocketIOBroadcast(namespace: self, rooms: [], exceptRooms: rooms)
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
            Self.join(&state, socket, room: socket.id)
            return state.onConnection
        }
    }

    func remove(_ socket: SocketIOServerSocket) {
        state.withLock { state in
            state.sockets.removeValue(forKey: socket.id)
            for room in state.memberships.removeValue(forKey: socket.id) ?? [] {
                state.rooms[room]?.removeValue(forKey: socket.id)
                if state.rooms[room]?.isEmpty == true { state.rooms.removeValue(forKey: room) }
            }
        }
    }

    func join(_ socketID: String, room: String) {
        state.withLock { state in
            guard let socket = state.sockets[socketID] else { return }
            Self.join(&state, socket, room: room)
        }
    }

    private static func join(_ state: inout State, _ socket: SocketIOServerSocket, room: String) {
        state.rooms[room, default: [:]][socket.id] = socket
        state.memberships[socket.id, default: []].insert(room)
    }

    func leave(_ socketID: String, room: String) {
        state.withLock { state in
            state.memberships[socketID]?.remove(room)
            state.rooms[room]?.removeValue(forKey: socketID)
            if state.rooms[room]?.isEmpty == true { state.rooms.removeValue(forKey: room) }
        }
    }

    func rooms(of socketID: String) -> Set<String> {
        state.withLock { $0.memberships[socketID] ?? [] }
    }

    /// The sockets a broadcast reaches, each once: members of any of `rooms` (every socket
    /// when empty), minus members of `exceptRooms` and the sockets in `exceptSockets`.
    ///
    /// Every private message is such a broadcast (two rooms, the sender left out), so the
    /// common case builds no set: `exceptSockets` is short and compared in place, and the
    /// members of a few small rooms are told apart by identity.
    func targets(rooms: [String], exceptRooms: [String], exceptSockets: [String]) -> [SocketIOServerSocket] {
        state.withLock { state in
            // A handful of excepted sockets is compared in place; more of them, and the
            // members of excepted rooms, go into a set.
            let shortList = exceptSockets.count > 8 ? [] : exceptSockets
            var excluded: Set<String> = exceptSockets.count > 8 ? Set(exceptSockets) : []
            // Each socket is in a room named by its ID, as in socket.io: a name that is no room
            // is looked up as a socket.
            func members(_ room: String) -> [String: SocketIOServerSocket]? {
                state.rooms[room] ?? state.sockets[room].map { [room: $0] }
            }
            for room in exceptRooms {
                if let members = members(room) { excluded.formUnion(members.keys) }
            }
            func isExcluded(_ socket: SocketIOServerSocket) -> Bool {
                shortList.contains(socket.id) || (!excluded.isEmpty && excluded.contains(socket.id))
            }
            if rooms.isEmpty {
                return state.sockets.values.filter { !isExcluded($0) }
            }
            if rooms.count == 1 {
                return members(rooms[0])?.values.filter { !isExcluded($0) } ?? []
            }
            var found: [SocketIOServerSocket] = []
            for room in rooms {
                guard let members = members(room) else { continue }
                for socket in members.values where !isExcluded(socket) { found.append(socket) }
            }
            // A member of several of the rooms is reached once.
            return uniqued(found, by: ObjectIdentifier.init)
        }
    }
}

/// A message to several sockets, encoded once (socket.io's `BroadcastOperator`).
public struct SocketIOBroadcast: Sendable {
    let namespace: SocketIONamespace
    // Each name once, in the order first given (usually a room or two).
    private(set) var rooms: [String] = []
    private(set) var exceptRooms: [String] = []
    private(set) var exceptSockets: [String] = []

    init(namespace: SocketIONamespace, rooms: [String], exceptRooms: [String] = [], exceptSockets: [String] = []) {
        self.namespace = namespace
        self.rooms = uniqued(rooms, by: { $0 })
        self.exceptRooms = uniqued(exceptRooms, by: { $0 })
        self.exceptSockets = uniqued(exceptSockets, by: { $0 })
    }

    public func to(_ more: String...) -> SocketIOBroadcast {
        var copy = self
        copy.rooms = uniqued(rooms + more, by: { $0 })
        return copy
    }

    public func except(_ more: String...) -> SocketIOBroadcast {
        var copy = self
        copy.exceptRooms = uniqued(exceptRooms + more, by: { $0 })
        return copy
    }

    /// Leaves out one socket (socket.io's `socket.to(room)` leaves out the sender this way).
    public func excluding(_ socket: SocketIOServerSocket) -> SocketIOBroadcast {
        var copy = self
        copy.exceptSockets = uniqued(exceptSockets + [socket.id], by: { $0 })
        return copy
    }

    public func emit(_ event: String, _ arguments: JSONValue...) {
        emit(event, arguments: arguments)
    }

    /// Emits to the sockets here it reaches, and, in a cluster, to those of the other servers.
    public func emit(_ event: String, arguments: [JSONValue]) {
        emitHere(event, arguments: arguments)
        if let link = namespace.server?.cluster.withLock({ $0 }) {
            link.send(.broadcast(uid: link.uid, nsp: namespace.name, event: event, arguments: arguments, rooms: rooms, except: exceptRooms + exceptSockets))
        }
    }

    /// Emits to the sockets of this server only (socket.io's `local` flag).
    public func emitHere(_ event: String, arguments: [JSONValue]) {
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

/// `items` without repeats, each kept where it first appears. A few are compared one by one
/// (and come back as they are when nothing repeats); more than 16 go through a set, so a
/// long list costs linear time.
func uniqued<Item, Key: Hashable>(_ items: [Item], by key: (Item) -> Key) -> [Item] {
    if items.count <= 16 {
        var repeats = false
        for i in items.indices.dropFirst() where items[..<i].contains(where: { key($0) == key(items[i]) }) {
            repeats = true
            break
        }
        guard repeats else { return items }
    }
    var seen = Set<Key>()
    seen.reserveCapacity(items.count)
    return items.filter { seen.insert(key($0)).inserted }
}
