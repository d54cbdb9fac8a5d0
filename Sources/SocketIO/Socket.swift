public import JSON

/// A socket for one namespace of a `SocketManager`'s connection: a cheap,
/// `Sendable` handle; the state lives in the manager.
///
/// ```swift
/// let manager = try SocketManager(url: "http://localhost:3000")
/// let socket = try await manager.socket(auth: { ["username": "alice"] })
/// await socket.on("private message") { event in print(event.arguments) }
/// await socket.connect()
/// try await socket.emit("private message", ["content": "hi", "to": "…"])
/// ```
public struct Socket: Sendable {
    public let manager: SocketManager
    public let namespace: String

    /// An opaque token for removing a listener.
    public struct ListenerID: Sendable, Hashable {
        let rawValue: Int
    }

    /// Connects (or reconnects, after a refusal or a server DISCONNECT) this namespace.
    public func connect() async { await manager.connect(namespace) }

    /// Leaves the namespace; with no other namespace in use, closes the connection.
    /// No automatic reconnection follows.
    public func disconnect() async { await manager.disconnect(namespace) }

    public var isConnected: Bool { get async { await manager.isConnected(namespace) } }

    /// The server's id for this socket while connected.
    public var id: String? { get async { await manager.sid(namespace) } }

    /// Replaces the CONNECT payload provider; takes effect at the next attempt.
    public func setAuth(_ auth: AuthProvider?) async { await manager.setAuth(namespace, auth) }

    /// Sends an event, or buffers it while disconnected (flushed in order on connect).
    @discardableResult
    public func emit(_ event: String, _ arguments: JSONValue...) async throws(SocketError) -> EmitResult {
        try await emit(event, arguments: arguments)
    }

    @discardableResult
    public func emit(_ event: String, arguments: [JSONValue]) async throws(SocketError) -> EmitResult {
        try await manager.emit(namespace, event, arguments)
    }

    /// Sends (or buffers) an event and calls `record` with the outcome on the manager's
    /// executor, before any later event is delivered: a caller that keeps state from both
    /// sees a buffered emit before the `connect` that flushes it.
    @discardableResult
    public func emit(
        _ event: String,
        arguments: [JSONValue],
        then record: @escaping @Sendable (EmitResult) -> Void
    ) async throws(SocketError) -> EmitResult {
        try await manager.emit(namespace, event, arguments, then: record)
    }

    /// Sends an event and waits for the server's acknowledgement.
    /// Throws `SocketError.ackTimeout` when none comes in time.
    public func emitWithAck(
        _ event: String,
        _ arguments: JSONValue...,
        timeout: Duration = .seconds(10)
    ) async throws -> [JSONValue] {
        try await manager.emitWithAck(namespace, event, arguments, timeout: timeout)
    }

    /// Calls `handler` for every `event` from the server, on the manager's executor, in order.
    @discardableResult
    public func on(_ event: String, _ handler: @escaping @Sendable (ReceivedEvent) -> Void) async -> ListenerID {
        ListenerID(rawValue: await manager.addListener(namespace, named: event, Self.unwrap(handler)))
    }

    /// Calls `handler` for every application event (the catch-all listener).
    @discardableResult
    public func onAny(_ handler: @escaping @Sendable (ReceivedEvent) -> Void) async -> ListenerID {
        ListenerID(rawValue: await manager.addListener(namespace, named: nil, Self.unwrap(handler)))
    }

    /// Calls `handler` for connect, disconnect, connect_error and reconnection events.
    @discardableResult
    public func onLifecycle(_ handler: @escaping @Sendable (SocketEvent) -> Void) async -> ListenerID {
        ListenerID(rawValue: await manager.addLifecycleListener(namespace, handler))
    }

    public func off(_ id: ListenerID) async { await manager.removeListener(namespace, id.rawValue) }

    /// Every event of this socket, lifecycle and application alike, in order.
    /// Subscribe before `connect()` to see the first `connect`.
    public func events() async -> AsyncStream<SocketEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: SocketEvent.self)
        let id = await manager.addStreamListener(namespace) { continuation.yield($0) }
        let manager = self.manager
        let namespace = self.namespace
        continuation.onTermination = { _ in
            Task { await manager.removeListener(namespace, id) }
        }
        return stream
    }

    private static func unwrap(_ handler: @escaping @Sendable (ReceivedEvent) -> Void) -> @Sendable (SocketEvent) -> Void {
        { event in
            if case .event(let received) = event { handler(received) }
        }
    }
}
