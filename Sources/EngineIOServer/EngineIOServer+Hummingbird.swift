public import Hummingbird
import HummingbirdCore
public import HummingbirdWebSocket
import EngineIOProtocol
public import NIOCore
import NIOPosix
import NIOWebSocket
import Synchronization
public import Logging
public import ServiceLifecycle

/// A request context that remembers its connection, so that a long poll learns when
/// its client goes away.
public struct EngineIORequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}

/// Answers Engine.IO's long-polling requests (and CORS preflights) on the server's path;
/// everything else is 404.
public struct EngineIOResponder: HTTPResponder {
    public typealias Context = EngineIORequestContext
    let server: EngineIOServer

    public init(server: EngineIOServer) {
        self.server = server
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        let path = request.uri.path
        let options = server.options
        guard path == options.path || path + "/" == options.path else {
            return Response(status: .notFound)
        }
        var headers = HTTPFields()
        if let origin = request.headers[.origin], options.cors.allows(origin) {
            headers[.accessControlAllowOrigin] = origin
            headers[.accessControlAllowCredentials] = "true"
            headers[.vary] = "Origin"
        }
        if request.method == .options {
            headers[.accessControlAllowMethods] = "GET, POST"
            headers[.accessControlAllowHeaders] = request.headers[.accessControlRequestHeaders] ?? "Content-Type"
            headers[.accessControlMaxAge] = "86400"
            return Response(status: .noContent, headers: headers)
        }
        let query = Self.query(request.uri)
        let channel = context.channel
        let limit = options.maxHttpBufferSize
        let answer = await server.handlePolling(
            method: request.method.rawValue,
            query: query,
            request: Self.handshakeRequest(query: query, headers: request.headers, channel: channel, transport: .polling),
            body: {
                let body = request.body
                guard let buffer = try? await body.collect(upTo: limit) else { return nil }
                return Array(buffer.readableBytesView)
            },
            onPollStart: { abort in
                // A long poll whose client disconnects ends the session (engine.io does the same).
                channel.closeFuture.whenComplete { _ in abort() }
                // Hummingbird allows half-closed connections: a client that closes its socket
                // mid-poll only closes the channel's input, which `ClientGoneHandler` reports.
                channel.eventLoop.execute {
                    try? channel.pipeline.syncOperations.handler(type: ClientGoneHandler.self).whenGone(abort)
                }
            }
        )
        headers[.contentType] = answer.contentType
        // Engine.IO payloads must not be cached by anything in between.
        headers[.cacheControl] = "no-store"
        return Response(
            status: HTTPResponse.Status(code: answer.status),
            headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(string: answer.body))
        )
    }

    static func query(_ uri: URI) -> [String: String] {
        var query: [String: String] = [:]
        for (key, value) in uri.queryParameters { query[String(key)] = String(value) }
        return query
    }

    static func handshakeRequest(
        query: [String: String],
        headers: HTTPFields,
        channel: any Channel,
        transport: EngineIOServerOptions.Transport
    ) -> EngineIOHandshakeRequest {
        var flat: [String: String] = [:]
        for field in headers { flat[field.name.canonicalName] = field.value }
        return EngineIOHandshakeRequest(
            query: query,
            headers: flat,
            remoteAddress: channel.remoteAddress?.ipAddress,
            transport: transport
        )
    }
}

/// Reports the end of a connection's input (`ChannelEvent.inputClosed`) to the long poll
/// waiting on it. Hummingbird allows remote half-closure, so a client that goes away in the
/// middle of a poll does not close the channel: without this, the poll would wait on (and
/// the session live on) until the next ping went unanswered.
final class ClientGoneHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private var gone = false
    /// One poll at a time per connection: a new poll replaces the last one's action.
    private var onGone: (@Sendable () -> Void)?

    /// Calls `action` when the client closes its side; at once if it already has. On the event loop.
    func whenGone(_ action: @escaping @Sendable () -> Void) {
        if gone {
            action()
        } else {
            onGone = action
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            gone = true
            let action = onGone
            onGone = nil
            action?()
        }
        context.fireUserInboundEventTriggered(event)
    }
}

extension EngineIOServer {
    /// The WebSocket side for `HTTPServerBuilder.http1WebSocketUpgrade(shouldUpgrade:)`:
    /// upgrades requests on the server's path with valid Engine.IO parameters.
    public func shouldUpgrade(
        request: HTTPRequest,
        channel: any Channel
    ) -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
        let uri = URI(request.path ?? "/")
        guard uri.path == options.path || uri.path + "/" == options.path else { return .dontUpgrade }
        let query = EngineIOResponder.query(uri)
        let plan = planWebSocket(query: query)
        if case .refuse = plan { return .dontUpgrade }
        let handshake = EngineIOResponder.handshakeRequest(
            query: query,
            headers: request.headerFields,
            channel: channel,
            transport: .websocket
        )
        let maxSize = options.maxHttpBufferSize
        return .upgrade([:]) { [self] inbound, outbound, _ in
            var messages = inbound.messages(maxSize: maxSize).makeAsyncIterator()
            await serveWebSocket(
                plan: plan,
                request: handshake,
                receive: {
                    switch try await messages.next() {
                    case .text(let text)?: return .text(text)
                    case .binary(let buffer)?: return .binary(Array(buffer.readableBytesView))
                    case nil: return nil
                    }
                },
                sink: ChannelSink(channel: channel) {
                    Task { try? await outbound.close(.normalClosure, reason: nil) }
                },
                readOnEventLoop: { socket in
                    // Messages are handled on the event loop that read them, in a channel
                    // handler: no hand-off to the task reading the stream for each one. Control
                    // frames still go to Hummingbird, and the stream still ends with the connection.
                    try? await channel.eventLoop.submit {
                        let decoder = try channel.pipeline.syncOperations.context(
                            handlerType: ByteToMessageHandler<WebSocketFrameDecoder>.self
                        )
                        try channel.pipeline.syncOperations.addHandler(
                            EngineIOFrameHandler(socket: socket, maxSize: maxSize),
                            position: .after(decoder.handler)
                        )
                    }.get()
                }
            )
        }
    }

    /// The WebSocket configuration that matches these options: messages up to
    /// maxHttpBufferSize, no WebSocket-level pings (Engine.IO has its own heartbeat).
    public var webSocketConfiguration: WebSocketServerConfiguration {
        WebSocketServerConfiguration(maxFrameSize: options.maxHttpBufferSize, autoPing: .disabled)
    }
}

extension EngineIOServer {
    /// A Hummingbird application serving this Engine.IO server over HTTP/1.1 with WebSocket
    /// upgrades. `onServerRunning` receives the bound port (useful with port 0).
    public func application(
        host: String,
        port: Int,
        services: [any Service] = [],
        eventLoopGroup: (any EventLoopGroup)? = nil,
        logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        Application(
            responder: EngineIOResponder(server: self),
            server: .http1WebSocketUpgrade(
                configuration: .init(
                    http1: .init(additionalChannelHandlers: [ClientGoneHandler()]),
                    ws: webSocketConfiguration
                )
            ) { [self] request, channel, _ in
                shouldUpgrade(request: request, channel: channel)
            },
            // A burst of logins (a load test, every client reconnecting after a restart)
            // must not overflow the accept queue.
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "parley-server", backlog: 4096),
            services: services,
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            eventLoopGroupProvider: eventLoopGroup.map { .shared($0) } ?? .singleton,
            logger: logger
        )
    }
}

/// A WebSocket session's packets, written straight onto the connection.
///
/// Frames are encoded once per packet (`EngineIOOutgoing.webSocketFrame`) and written as bytes
/// below the pipeline's WebSocket encoder, so a frame costs each recipient one buffer write.
///
/// Order: packets sent from other threads wait in `queue`, in the order they were sent (the
/// caller holds the session's lock), until a hop onto the loop drains it; a broadcast puts
/// its packets into the queues of all its recipients on a loop, then makes one hop for them
/// all. A send on the connection's own loop (a message between two sockets of one loop)
/// drains the queue first and writes at once: no hop, and nothing sent earlier overtaken.
///
/// Flushes: the connections written in a turn of the loop are flushed together right after
/// it (`LoopFlusher`), each at most once per `flushInterval`. So a lone message leaves in the
/// turn that wrote it, and when a login broadcasts `user connected` to every socket, the
/// frames one connection gets leave in one system call.
///
/// Until that flush the frames wait in the sink (`unflushed`), not in the channel: a lone
/// frame as it is, the shared buffer every recipient of the packet writes; several frames
/// copied one after another into one buffer of the sink's own. A burst (a login storm, a
/// client with several messages waiting) then costs the channel one write, not one pass down
/// the pipeline and one pending write per frame.
final class ChannelSink: EngineIOWebSocketSink, @unchecked Sendable {
    private let channel: any Channel
    let eventLoop: any EventLoop
    private let onClose: @Sendable () -> Void
    /// Packets sent from other threads, not written yet, and whether a hop to drain them is
    /// on its way.
    private let queue = Mutex((packets: [EngineIOOutgoing](), hopScheduled: false))
    // Touched on the event loop only:
    private var flushScheduled = false
    private var lastFlush = NIODeadline.uptimeNanoseconds(0)
    /// The context of the WebSocket frame encoder: bytes written there go to the socket.
    private var encoderContext: ChannelHandlerContext?
    private var lookedUp = false
    /// Frames for the encoder's context, not yet written to it (see above), and whether the
    /// buffer is the sink's own (several frames copied into it) or one frame's shared bytes.
    private var unflushed: ByteBuffer?
    private var unflushedIsOwn = false
    private var closedForBackpressure = false

    /// Bytes written to a connection and not yet taken by the client before it is given up
    /// on. Ample for a `users` list of 10,000 users (about 1 MB).
    static let highWaterMark = 4 << 20

    /// At most one flush (one system call) per connection per this long: a lone message
    /// leaves at once; a stream of them (a login storm, a flood) leaves in batches.
    static let flushInterval = TimeAmount.milliseconds(1)

    init(channel: any Channel, onClose: @escaping @Sendable () -> Void) {
        self.channel = channel
        self.eventLoop = channel.eventLoop
        self.onClose = onClose
        let mark = ChannelOptions.Types.WriteBufferWaterMark(low: Self.highWaterMark / 4, high: Self.highWaterMark)
        channel.setOption(ChannelOptions.writeBufferWaterMark, value: mark).whenFailure { _ in }
    }

    func send(_ packets: [EngineIOOutgoing]) -> Bool {
        if eventLoop.inEventLoop {
            write(takeQueued())
            write(packets)
            return true
        }
        if enqueue(packets) {
            eventLoop.execute { [self] in drain() }
        }
        return false
    }

    func enqueue(_ packets: [EngineIOOutgoing]) -> Bool {
        queue.withLock { queue in
            queue.packets.append(contentsOf: packets)
            defer { queue.hopScheduled = true }
            return !queue.hopScheduled
        }
    }

    func drain() {
        let packets = takeQueued(byTheHop: true)
        guard !packets.isEmpty else { return }  // a send on the loop took them first
        write(packets)
        flushWritten()
    }

    /// What other threads sent and no hop has written yet (on the loop). `byTheHop`: the
    /// caller is the hop that `enqueue` asked for, so the next enqueue must ask for another.
    private func takeQueued(byTheHop: Bool = false) -> [EngineIOOutgoing] {
        queue.withLock { queue in
            if byTheHop { queue.hopScheduled = false }
            guard !queue.packets.isEmpty else { return [] }
            defer { queue.packets = [] }
            return queue.packets
        }
    }

    func flushWritten() {
        // The frames reach the channel at that flush, which then checks for a backed-up client.
        scheduleFlush()
    }

    /// Into the frames waiting for the next flush (or, with no encoder found, into the
    /// channel's buffer): no system call. (Crossing the channel's high water mark fires
    /// `channelWritabilityChanged` down the pipeline, which no handler of ours acts on.)
    private func write(_ packets: [EngineIOOutgoing]) {
        guard !packets.isEmpty else { return }
        if !lookedUp {
            lookedUp = true
            encoderContext = try? channel.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
        }
        if encoderContext != nil {
            for packet in packets { hold(packet.webSocketFrame) }
        } else {
            // No encoder where one was expected: hand frames to the pipeline instead.
            for packet in packets {
                let frame = WebSocketFrame(fin: true, opcode: packet.isText ? .text : .binary, data: packet.webSocketPayload)
                channel.write(frame, promise: nil)
            }
        }
    }

    /// Adds a frame to the ones waiting for the next flush.
    private func hold(_ frame: ByteBuffer) {
        guard var batch = unflushed else {
            unflushed = frame
            unflushedIsOwn = false
            return
        }
        unflushed = nil  // so that `batch` is the only reference and grows in place
        if !unflushedIsOwn {
            var own = channel.allocator.buffer(capacity: max(batch.readableBytes + frame.readableBytes, 512))
            own.writeImmutableBuffer(batch)
            batch = own
            unflushedIsOwn = true
        }
        batch.writeImmutableBuffer(frame)
        unflushed = batch
    }

    /// Hands the waiting frames to the channel (no system call yet).
    private func writeUnflushed() {
        guard let batch = unflushed, let encoderContext else { return }
        unflushed = nil
        encoderContext.write(NIOAny(batch), promise: nil)
    }

    /// A client that does not read is not buffered for without end: past the channel's
    /// high water mark (set when the sink is made) the connection is closed, and with it
    /// the session ("transport close"), as when the client goes away.
    private func closeIfBackedUp() {
        if !channel.isWritable, !closedForBackpressure {
            closedForBackpressure = true
            channel.close(promise: nil)
        }
    }

    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        let due = lastFlush + Self.flushInterval
        if NIODeadline.now() >= due {
            LoopFlusher.current(on: eventLoop).add(self)
        } else {
            eventLoop.scheduleTask(deadline: due) { [self] in flush() }
        }
    }

    fileprivate func flush() {
        flushScheduled = false
        lastFlush = NIODeadline.now()
        writeUnflushed()
        // From where the frames were written: the handlers above the encoder (Hummingbird's
        // stream writer) have nothing of ours to pass on, and flush what they write themselves.
        if let encoderContext { encoderContext.flush() } else { channel.flush() }
        closeIfBackedUp()
    }

    func close() {
        // What was sent before the close goes first (the close frame follows it).
        eventLoop.execute { [self] in
            write(takeQueued())
            writeUnflushed()
            channel.flush()
        }
        onClose()
    }
}

/// Flushes the connections of one event loop that were written in a turn of it, once, after
/// that turn: one task per turn for all of them, not one per connection, and each connection
/// flushed once however many frames it got in the turn. One per event-loop thread, in
/// thread-local storage: it lives and dies with its thread, and only that thread touches it.
final class LoopFlusher: @unchecked Sendable {
    private static let perThread = ThreadSpecificVariable<LoopFlusher>()

    /// The flusher of `loop`, on that loop's thread.
    static func current(on loop: any EventLoop) -> LoopFlusher {
        loop.assertInEventLoop()
        if let flusher = perThread.currentValue { return flusher }
        let flusher = LoopFlusher(loop)
        perThread.currentValue = flusher
        return flusher
    }

    private let loop: any EventLoop
    private var pending: [ChannelSink] = []
    private var spare: [ChannelSink] = []
    private var scheduled = false

    private init(_ loop: any EventLoop) { self.loop = loop }

    func add(_ sink: ChannelSink) {
        pending.append(sink)
        guard !scheduled else { return }
        scheduled = true
        loop.execute { [self] in run() }
    }

    private func run() {
        scheduled = false
        swap(&pending, &spare)
        for sink in spare { sink.flush() }
        spare.removeAll(keepingCapacity: true)
    }
}

/// Reads a WebSocket session's data frames on the event loop: reassembles fragmented
/// messages (up to maxHttpBufferSize), decodes Engine.IO packets and hands them to the
/// session at once. Ping, pong and close frames go on to Hummingbird.
final class EngineIOFrameHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame

    private let socket: EngineIOSocket
    private let maxSize: Int
    /// A fragmented message being put together: its opcode and bytes so far.
    private var partial: (opcode: WebSocketOpcode, bytes: ByteBuffer)?

    init(socket: EngineIOSocket, maxSize: Int) {
        self.socket = socket
        self.maxSize = maxSize
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            guard partial == nil else { return fail() }  // a new message inside a fragmented one
            if frame.fin {
                deliver(frame.opcode, frame.unmaskedData)
            } else {
                partial = (frame.opcode, frame.unmaskedData)
                if frame.length > maxSize { fail() }
            }
        case .continuation:
            guard var message = partial else { return fail() }
            var data = frame.unmaskedData
            guard message.bytes.readableBytes + data.readableBytes <= maxSize else { return fail() }
            message.bytes.writeBuffer(&data)
            if frame.fin {
                partial = nil
                deliver(message.opcode, message.bytes)
            } else {
                partial = message
            }
        default:
            context.fireChannelRead(data)
        }
    }

    private func deliver(_ opcode: WebSocketOpcode, _ bytes: ByteBuffer) {
        guard bytes.readableBytes <= maxSize else { return fail() }
        if opcode == .binary {
            socket.received(.message(.binary(Array(bytes.readableBytesView))))
            return
        }
        do {
            socket.received(try bytes.withUnsafeReadableBytes { raw in
                try EngineIOPacket(decodingUTF8: raw.assumingMemoryBound(to: UInt8.self))
            })
        } catch {
            socket.close(reason: .parseError)
        }
    }

    /// Too large, or fragments out of order: the session ends (and with it the connection).
    private func fail() {
        partial = nil
        socket.close(reason: .parseError)
    }
}
