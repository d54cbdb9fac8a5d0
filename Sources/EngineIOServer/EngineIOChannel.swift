public import HummingbirdCore
import HTTPTypes
public import Logging
public import NIOCore
import NIOHTTP1
public import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
import Synchronization

/// One accepted TCP connection, set up for Engine.IO: the connection limits, a deadline for
/// the first request head, then either HTTP (long-polling, answered by Hummingbird's
/// responder) or a WebSocket read by `EngineIOFrameHandler`, the one reader of every
/// WebSocket session, opened on it or upgraded from polling.
///
/// Nothing here waits on a task: WebSocket frames are read and answered on the event loop.
public struct EngineIOChannel: ServerChildChannel, HTTPChannelHandler {
    public let responder: HTTPChannelHandler.Responder
    let server: EngineIOServer

    init(server: EngineIOServer, responder: @escaping HTTPChannelHandler.Responder) {
        self.server = server
        self.responder = Self.redirectingUpgrades(responder, server: server)
    }

    /// NIO reads a WebSocket upgrade only as a connection's first request. A client that
    /// reuses a kept-alive polling connection for its upgrade (aiohttp does) is sent to the
    /// same URL on a new connection: a redirect, and this one closes (as Hummingbird does).
    static func redirectingUpgrades(_ responder: @escaping HTTPChannelHandler.Responder, server: EngineIOServer) -> HTTPChannelHandler.Responder {
        struct RedirectedUpgrade: Error {}
        return { request, writer, channel in
            // Only to the server's own path (the redirect names the path it was asked for).
            guard request.headers[.upgrade]?.lowercased() == "websocket", server.matches(path: request.uri.path) else {
                return try await responder(request, writer, channel)
            }
            var target = request.uri.path
            if let query = request.uri.query { target += "?" + query }
            try await writer.writeResponse(HTTPResponse(status: .temporaryRedirect, headerFields: [.connection: "close", .location: target]))
            throw RedirectedUpgrade()
        }
    }

    public struct Value: ServerChildChannelValue {
        public let channel: any Channel
        public let kind: EventLoopFuture<Kind>
    }

    public enum Kind: Sendable {
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// A WebSocket session, run by its channel handlers; nothing left to do here.
        case webSocket
        /// Refused (an answer was written) or closed before a request came.
        case closed
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let server = self.server
            let address = channel.remoteAddress?.ipAddress.map(AddressKey.of) ?? ""
            if let refusal = server.connections.admit(address) {
                try channel.pipeline.syncOperations.addHandler(RefusingHandler(refusal))
                return Value(channel: channel, kind: channel.eventLoop.makeSucceededFuture(.closed))
            }
            channel.closeFuture.whenComplete { _ in server.connections.release(address) }

            // A connection must deliver a complete first request head in time (then the HTTP
            // side keeps the deadlines, or the WebSocket session its heartbeat).
            let limits = server.options.limits
            // Set when the head has come (and decided what this connection is): a timer that
            // fires anyway (a cancel can come too late) then does nothing.
            let headCame = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            let firstHead = server.clock.schedule(after: limits.requestHeadTimeout, on: channel.eventLoop) {
                guard !headCame.value else { return }
                Self.writeRaw(.error(.badRequest, status: 408, message: "Request timeout: no request head in time"), on: channel)
            }
            let headIsHere: @Sendable () -> Void = {
                headCame.value = true
                firstHead.cancel()
            }
            // What `shouldUpgrade` decided, for the pipeline handler that follows it. A plan the
            // connection closes before (the client went away with the 101 on its way) is undone:
            // the session it opened is closed, the upgrade it began abandoned.
            let plan = NIOLoopBoundBox<EngineIOServer.WebSocketPlan?>(nil, eventLoop: channel.eventLoop)
            let upgradeTimer = NIOLoopBoundBox<ServerTimer?>(nil, eventLoop: channel.eventLoop)
            channel.closeFuture.whenComplete { _ in
                switch plan.value {
                case .open(let socket)?: socket.close(reason: .transportError("the connection closed during the WebSocket handshake"))
                case .upgrade(let socket)?: socket.abortUpgrade()
                case .refuse?, .dismiss?, nil: break
                }
                plan.value = nil
            }

            let upgrader = NIOTypedWebSocketServerUpgrader<Kind>(
                maxFrameSize: server.options.maxHttpBufferSize,
                shouldUpgrade: { channel, head in
                    let decided = Self.planWebSocket(server: server, head: head, channel: channel)
                    if case .refuse(let answer) = decided {
                        headIsHere()
                        Self.writeRaw(answer, on: channel)
                        return channel.eventLoop.makeSucceededFuture(nil)
                    }
                    plan.value = decided
                    if case .upgrade(let socket) = decided {
                        // The upgrade timeout runs from now, before the 101 leaves: a client
                        // that opens the WebSocket and says nothing does not hold it.
                        upgradeTimer.value = server.clock.schedule(after: server.options.upgradeTimeout, on: channel.eventLoop) {
                            if let handler = try? channel.pipeline.syncOperations.handler(type: EngineIOFrameHandler.self) {
                                handler.upgradeTimedOut()
                            } else if case .upgrade? = plan.value {
                                plan.value = nil
                                socket.abortUpgrade()
                                channel.close(promise: nil)
                            }
                        }
                    }
                    return channel.eventLoop.makeSucceededFuture(HTTPHeaders())
                },
                upgradePipelineHandler: { channel, _ in
                    headIsHere()
                    return channel.eventLoop.makeCompletedFuture {
                        guard let decided = plan.value else { return .closed }
                        plan.value = nil
                        try Self.startWebSocket(decided, server: server, channel: channel, upgradeTimer: upgradeTimer.value)
                        return .webSocket
                    }
                }
            )
            let configuration = NIOTypedHTTPServerUpgradeConfiguration<Kind>(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    headIsHere()
                    return channel.eventLoop.makeCompletedFuture {
                        guard channel.isActive else { return .closed }
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(ConnectionCloseHandler())
                        try sync.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try sync.addHandler(HTTPDeadlineHandler(limits: limits, clock: server.clock))
                        try sync.addHandler(ClientGoneHandler())
                        try sync.addHandler(HTTPConnectionStateHandler(idleTimeout: nil, logger: logger))
                        return .http(
                            try NIOAsyncChannel(wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        )
                    }
                }
            )
            var pipeline = NIOUpgradableHTTPServerPipelineConfiguration<Kind>(upgradeConfiguration: configuration)
            pipeline.enablePipelining = false  // HTTP is pipelined by NIOAsyncChannel
            pipeline.enableErrorHandling = true  // a request that is not HTTP gets a 400, and the connection ends
            pipeline.enableResponseHeaderValidation = false  // Swift HTTP Types validate them
            let kind = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: pipeline)
            return Value(channel: channel, kind: kind)
        }
    }

    public func handle(value: Value, logger: Logger) async {
        switch try? await value.kind.get() {
        case .http(let http)?:
            await handleHTTP(asyncChannel: http, logger: logger)
        case .webSocket?, .closed?, nil:
            // A WebSocket runs in its handlers until either side closes it; a refused or
            // broken connection is closed already (or closes itself).
            return
        }
    }

    // MARK: WebSocket

    static func planWebSocket(server: EngineIOServer, head: HTTPRequestHead, channel: any Channel) -> EngineIOServer.WebSocketPlan {
        let uri = URI(head.uri)
        guard server.matches(path: uri.path) else { return .refuse(.error(.badRequest, status: 404, message: "Not found")) }
        let query = EngineIOResponder.query(uri)
        return server.planWebSocket(
            query: query,
            request: EngineIOResponder.handshakeRequest(
                query: query, headers: head.headers.lazy.map { ($0.name.lowercased(), $0.value) }, channel: channel, transport: .websocket
            ),
            loop: channel.eventLoop
        )
    }

    /// On the event loop, right after the upgrade: the reader goes in before any frame can
    /// be read, so every frame of the session reaches it.
    static func startWebSocket(
        _ plan: EngineIOServer.WebSocketPlan, server: EngineIOServer, channel: any Channel, upgradeTimer: ServerTimer?
    ) throws {
        let sink = ChannelSink(channel: channel, highWaterMark: server.options.limits.maxBacklogBytes)
        let maxSize = server.options.maxHttpBufferSize
        let halfOpenMaxSize = server.options.limits.maxHalfOpenPayloadBytes
        switch plan {
        case .refuse:
            channel.close(promise: nil)
        case .dismiss(let reason):
            // Nothing of the session is read here: the handler only completes the close handshake.
            try channel.pipeline.syncOperations.addHandler(EngineIOFrameHandler(.done, sink: sink, maxSize: maxSize, halfOpenMaxSize: halfOpenMaxSize))
            sink.sendClose(.policyViolation, reason: reason)
        case .open(let socket):
            try channel.pipeline.syncOperations.addHandler(
                EngineIOFrameHandler(.session(socket), sink: sink, maxSize: maxSize, halfOpenMaxSize: halfOpenMaxSize)
            )
            server.startWebSocketSession(socket, sink: sink)
        case .upgrade(let socket):
            let handler = EngineIOFrameHandler(.probing(socket), sink: sink, maxSize: maxSize, halfOpenMaxSize: halfOpenMaxSize)
            handler.upgradeTimer = upgradeTimer
            try channel.pipeline.syncOperations.addHandler(handler)
        }
    }

    /// Writes a whole HTTP response straight onto the socket (below every HTTP handler) and
    /// closes the connection: for a refused connection or upgrade, and a request head that
    /// did not come in time.
    static func writeRaw(_ answer: EngineIOServer.HTTPAnswer, on channel: any Channel) {
        // Below the HTTP encoder: the bytes go to the socket as they are. (Without one, the
        // connection is something else by now, and is only closed.)
        guard let encoder = try? channel.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self) else {
            channel.close(promise: nil)
            return
        }
        encoder.writeAndFlush(NIOAny(ByteBuffer(string: answer.rawResponse)), promise: nil)
        closeAfterAnswer(channel)
    }

    /// How long a refused client has to read its answer before the connection is closed.
    static let lingerAfterAnswer = TimeAmount.seconds(2)

    /// Ends a connection after its answer: our side first (a FIN after the answer, so the
    /// client reads it whole even if it sent more that we never read: a full close with
    /// unread data resets the connection, and the client would see no answer), then the
    /// whole connection, once the client closes too or `lingerAfterAnswer` has passed.
    static func closeAfterAnswer(_ channel: any Channel) {
        channel.close(mode: .output, promise: nil)
        channel.eventLoop.scheduleTask(in: lingerAfterAnswer) { channel.close(promise: nil) }
    }
}

extension EngineIOServer {
    /// Whether a request path is the server's (with or without its final slash).
    func matches(path: String) -> Bool {
        path == options.path || path + "/" == options.path
    }
}

// MARK: - Connection limits

/// Answers a refused connection as soon as it is active, then closes it.
final class RefusingHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    private let answer: EngineIOServer.HTTPAnswer

    init(_ answer: EngineIOServer.HTTPAnswer) {
        self.answer = answer
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { refuse(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        refuse(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}  // nothing it says matters now

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The client closed its side: nothing more to wait for.
        if let event = event as? ChannelEvent, event == .inputClosed { context.close(promise: nil) }
    }

    /// Refused connections waiting for their client to read the answer: they are counted
    /// nowhere else, so past this many a refusal closes at once instead.
    static let maxLingering = 256
    private static let lingering = Atomic(0)
    /// Refused connections lingering now, in the whole process.
    static var lingeringCount: Int { lingering.load(ordering: .relaxed) }

    private func refuse(_ context: ChannelHandlerContext) {
        context.writeAndFlush(NIOAny(ByteBuffer(string: answer.rawResponse)), promise: nil)
        guard Self.lingering.add(1, ordering: .relaxed).newValue <= Self.maxLingering else {
            Self.lingering.subtract(1, ordering: .relaxed)
            context.close(promise: nil)
            return
        }
        context.channel.closeFuture.whenComplete { _ in Self.lingering.subtract(1, ordering: .relaxed) }
        EngineIOChannel.closeAfterAnswer(context.channel)
    }
}

/// Open TCP connections, in total and per address (`Limits.maxConnections…`).
final class ConnectionLimiter: Sendable {
    private let limits: EngineIOServerOptions.Limits
    private let state = Mutex((total: 0, byAddress: [String: Int]()))

    init(limits: EngineIOServerOptions.Limits) {
        self.limits = limits
    }

    var count: Int { state.withLock { $0.total } }

    /// Counts a new connection, or says why it is refused.
    func admit(_ address: String) -> EngineIOServer.HTTPAnswer? {
        let limits = self.limits
        return state.withLock { state in
            guard state.total < limits.maxConnections else {
                return .error(.forbidden, status: 503, message: "Server busy: too many connections", retryAfter: 5)
            }
            let mine = state.byAddress[address, default: 0]
            guard mine < limits.maxConnectionsPerAddress else {
                return .error(.forbidden, status: 429, message: "Too many requests: too many connections from this address", retryAfter: 5)
            }
            state.total += 1
            state.byAddress[address] = mine + 1
            return nil
        }
    }

    func release(_ address: String) {
        state.withLock { state in
            state.total -= 1
            let left = state.byAddress[address, default: 1] - 1
            state.byAddress[address] = left > 0 ? left : nil
        }
    }
}

// MARK: - Connection persistence

/// HTTP/1.1's connection persistence (RFC 9112 §9.3 and §9.6): a request that does not keep
/// the connection (`Connection: close`, in any case and among any other tokens, or HTTP/1.0
/// without `keep-alive`) is answered with `Connection: close`, and the connection ends after
/// that answer. Without the header, a client that pools connections (Node's keep-alive agent)
/// would send its next request on a connection that is closing, and see "socket hang up".
/// (A client may send nothing after such a request, §9.6; what one sends anyway is a parse
/// error to the HTTP decoder, which answers it with a 400 and closes.)
final class ConnectionCloseHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Request heads read and response heads written, so far (counts, not a queue: a client
    /// that pipelines requests makes this hold nothing more).
    private var requests = 0
    private var responses = 0
    /// The number of the request after which the connection ends, once one has said so.
    private var lastRequest: Int?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if case .head(let head) = part {
            requests += 1
            if lastRequest == nil, !head.isKeepAlive { lastRequest = requests }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head):
            responses += 1
            guard responses == lastRequest else { break }
            head.headers.replaceOrAdd(name: "connection", value: "close")
            context.write(wrapOutboundOut(.head(head)), promise: promise)
            return
        case .end where responses == lastRequest:
            context.writeAndFlush(data, promise: promise)
            EngineIOChannel.closeAfterAnswer(context.channel)
            return
        case .body, .end:
            break
        }
        context.write(data, promise: promise)
    }
}

// MARK: - HTTP deadlines

/// Keeps the deadlines of an HTTP connection: each request head must be complete within
/// `requestHeadTimeout` of the connection's last response (the keep-alive idle time), and
/// its body within `requestBodyTimeout` of its head. A request the server is answering (a
/// long poll waiting for packets) has no deadline: the heartbeat bounds it. A head that
/// stalls closes the connection; a body that stalls gets a 408 and then the close.
final class HTTPDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let limits: EngineIOServerOptions.Limits
    private let clock: any ServerClock
    private var timer: ServerTimer?
    /// How many times a timer was armed: the one due is acted on only if it is the last.
    private var armed = 0
    /// Requests read and not yet answered.
    private var unanswered = 0
    private var readingBody = false
    private var answering = false
    /// The request being read was answered already (refused before its body came).
    private var answeredWhileReading = false

    init(limits: EngineIOServerOptions.Limits, clock: any ServerClock) {
        self.limits = limits
        self.clock = clock
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        disarm()
    }

    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            unanswered += 1
            readingBody = true
            answeredWhileReading = false
            arm(context, after: limits.requestBodyTimeout, bodyStalled: true)
        case .body:
            break
        case .end:
            readingBody = false
            disarm()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head:
            answering = true
        case .body:
            break
        case .end:
            answering = false
            if readingBody { answeredWhileReading = true }
            unanswered = max(0, unanswered - 1)
            if unanswered == 0 && !readingBody { arm(context, after: limits.requestHeadTimeout, bodyStalled: false) }
        }
        context.write(data, promise: promise)
    }

    private func arm(_ context: ChannelHandlerContext, after delay: Duration, bodyStalled: Bool) {
        timer?.cancel()
        armed += 1
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let generation = armed
        timer = clock.schedule(after: delay, on: context.eventLoop) {
            let (handler, context) = loopBound.value
            // A timer replaced or cancelled as it came due does nothing.
            guard handler.armed == generation, handler.timer != nil else { return }
            handler.expired(context, bodyStalled: bodyStalled)
        }
    }

    private func disarm() {
        timer?.cancel()
        timer = nil
    }

    private func expired(_ context: ChannelHandlerContext, bodyStalled: Bool) {
        timer = nil
        guard context.channel.isActive else { return }
        if bodyStalled && !answering && !answeredWhileReading {
            // The client is waiting for an answer to the request it is sending: tell it.
            let head = HTTPResponse(status: .requestTimeout, headerFields: [.connection: "close", .contentLength: "0"])
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        // An idle keep-alive connection, or a head that stalled, just closes: a 408 there
        // could be read as the answer to the client's next request.
        context.close(promise: nil)
    }
}

/// Reports the end of a connection (its input closed, `ChannelEvent.inputClosed`, or the
/// whole channel) to the long poll waiting on it. Half-closed connections are allowed, so a
/// client that goes away in the middle of a poll may only close its side: without this, the
/// poll would wait on (and the session live on) until the next ping went unanswered.
final class ClientGoneHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private var gone = false
    /// One poll at a time per connection: a new poll replaces the last one's action.
    private var onGone: (@Sendable () -> Void)?

    /// Calls `action` when the client goes; at once if it has. On the event loop.
    func whenGone(_ action: @escaping @Sendable () -> Void) {
        if gone {
            action()
        } else {
            onGone = action
        }
    }

    private func clientWent() {
        gone = true
        let action = onGone
        onGone = nil
        action?()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { clientWent() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        clientWent()
        context.fireChannelInactive()
    }
}
