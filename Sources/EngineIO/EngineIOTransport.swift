/// A connected, message-oriented transport under Engine.IO: WebSocket in
/// production, an in-memory pair in tests.
public protocol EngineIOTransport: Sendable {
    /// Packets from the server, in order, in batches (a transport hands over what one
    /// read of the socket brought, so a flood costs one hand-off per read, not per frame).
    /// As in engine.io-client, the transport decodes its frames into packets, on its own
    /// thread: the consumer gets them ready to use. Finishes when the peer closes the
    /// connection; throws when the connection fails, or `EngineIOParseError` after the
    /// packets before a frame that is not an Engine.IO packet.
    var inbound: AsyncThrowingStream<[EngineIOPacket], any Error> { get }
    /// Called by the one consumer of `inbound` each time it takes a batch, so a transport
    /// that stops reading the socket while too much waits (backpressure) can resume.
    func consumedBatch()
    /// Queues a frame for sending. Frames go out in the order they were queued.
    func send(_ frame: EngineIOData)
    /// Closes the connection (politely when possible). `inbound` then finishes.
    func close()
    /// Returns once the connection is fully closed: every frame queued before `close()` was written.
    func waitUntilClosed() async
    /// The bytes a message packet takes as this transport sends it, as a server counts them
    /// against `maxPayload` (over HTTP long-polling a binary message goes as base64).
    func wireSize(of message: EngineIOData) -> Int
}

extension EngineIOTransport {
    public func consumedBatch() {}
    public func wireSize(of message: EngineIOData) -> Int { message.packetSize }
}

/// Opens transports to an endpoint; injectable so the layers above can be
/// tested without sockets.
public protocol EngineIOTransportFactory: Sendable {
    func connect(to endpoint: EngineIOEndpoint) async throws -> any EngineIOTransport
}
