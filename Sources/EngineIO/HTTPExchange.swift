import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// One HTTP/1.1 connection for one request at a time, kept alive between requests and
/// opened again when the server closed it: what HTTP long-polling needs (one of these for
/// the GETs, one for the POSTs, as a browser holds two connections). A response's body is
/// capped: a server's answer is bounded like a WebSocket message.
final class HTTPExchange: Sendable {
    struct Response: Sendable {
        var status: HTTPResponseStatus
        var body: ByteBuffer
    }

    enum Failure: Error, Sendable, CustomStringConvertible {
        case closed
        case bodyTooLarge(limit: Int)
        case connectionLost
        /// The connection ended before any of the answer came.
        case notAnswered

        var description: String {
            switch self {
            case .closed: return "the HTTP connection is closed"
            case .bodyTooLarge(let limit): return "the server's HTTP response is larger than \(limit) bytes"
            case .connectionLost: return "the server closed the HTTP connection in the middle of its answer"
            case .notAnswered: return "the server closed the HTTP connection before answering"
            }
        }
    }

    private let endpoint: EngineIOEndpoint
    private let sslContext: NIOSSLContext?
    private let headers: [(name: String, value: String)]
    private let maxBody: Int
    private struct State {
        var channel: (any Channel)?
        var closed = false
    }
    private let state = Mutex(State())

    init(endpoint: EngineIOEndpoint, sslContext: NIOSSLContext?, headers: [(name: String, value: String)], maxBody: Int) {
        self.endpoint = endpoint
        self.sslContext = sslContext
        self.headers = headers
        self.maxBody = maxBody
    }

    /// Sends one request and waits for its whole response. Not concurrently with another on
    /// the same exchange. Cancelling the caller closes the connection (a long poll ends so).
    /// A kept-alive connection the server closed meanwhile (for idleness, say) is found out
    /// when the request fails before any answer: then it goes once more, on a new connection,
    /// as browsers do.
    func send(_ method: HTTPMethod, target: String, body: String? = nil) async throws -> Response {
        let (channel, reused) = try await openChannel()
        do {
            return try await send(method, target: target, body: body, on: channel)
        } catch let error where reused && Self.isStaleConnection(error) {
            let (fresh, _) = try await openChannel()
            return try await send(method, target: target, body: body, on: fresh)
        }
    }

    private static func isStaleConnection(_ error: any Error) -> Bool {
        if case Failure.notAnswered? = error as? Failure { return true }
        if case ChannelError.ioOnClosedChannel? = error as? ChannelError { return true }
        return false
    }

    private func send(_ method: HTTPMethod, target: String, body: String?, on channel: any Channel) async throws -> Response {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: target)
        head.headers.add(name: "Host", value: endpoint.hostHeader)
        for header in headers { head.headers.add(name: header.name, value: header.value) }
        var buffer: ByteBuffer?
        if let body {
            head.headers.add(name: "Content-Type", value: "text/plain; charset=UTF-8")
            head.headers.add(name: "Content-Length", value: String(body.utf8.count))
            buffer = channel.allocator.buffer(string: body)
        } else if method == .POST {
            head.headers.add(name: "Content-Length", value: "0")
        }
        let promise = channel.eventLoop.makePromise(of: Response.self)
        // A connection the server closed just now fails the write: the request fails with it.
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { promise.fail($0) }
        channel.writeAndFlush(Request(head: head, body: buffer, promise: promise), promise: written)
        return try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    /// Closes the connection; a request waiting on it fails.
    func close() {
        let channel = state.withLock { state -> (any Channel)? in
            state.closed = true
            defer { state.channel = nil }
            return state.channel
        }
        channel?.close(promise: nil)
    }

    /// The kept-alive connection (reused: true), or a new one.
    private func openChannel() async throws -> (any Channel, reused: Bool) {
        let existing = try state.withLock { state -> (any Channel)? in
            guard !state.closed else { throw Failure.closed }
            return state.channel
        }
        if let existing, existing.isActive { return (existing, true) }
        let maxBody = self.maxBody
        let channel = try await endpoint.bootstrap(on: MultiThreadedEventLoopGroup.singleton.next(), sslContext: sslContext) { channel in
            try channel.pipeline.syncOperations.addHTTPClientHandlers()
            try channel.pipeline.syncOperations.addHandler(Requester(maxBody: maxBody))
        }
        .connect(host: endpoint.host, port: endpoint.port).get()
        let closedMeanwhile = state.withLock { state -> Bool in
            guard !state.closed else { return true }
            state.channel = channel
            return false
        }
        if closedMeanwhile {
            channel.close(promise: nil)
            throw Failure.closed
        }
        return (channel, false)
    }
}

/// A request and where its response goes.
private struct Request: Sendable {
    var head: HTTPRequestHead
    var body: ByteBuffer?
    var promise: EventLoopPromise<HTTPExchange.Response>
}

/// On the event loop: writes a request, collects its response (up to `maxBody` bytes of
/// body), fails the request if the connection ends first, and closes a connection the
/// server asked to close.
private final class Requester: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Request
    typealias OutboundOut = HTTPClientRequestPart

    private let maxBody: Int
    private var pending: EventLoopPromise<HTTPExchange.Response>?
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()
    private var failed = false

    init(maxBody: Int) { self.maxBody = maxBody }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        guard pending == nil else {
            request.promise.fail(HTTPExchange.Failure.closed)
            return
        }
        pending = request.promise
        head = nil
        body.clear()
        failed = false
        context.write(wrapOutboundOut(.head(request.head)), promise: nil)
        if let buffer = request.body { context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        switch unwrapInboundIn(data) {
        case .head(let response):
            head = response
        case .body(var part):
            guard body.readableBytes + part.readableBytes <= maxBody else {
                fail(context, HTTPExchange.Failure.bodyTooLarge(limit: maxBody))
                return
            }
            body.writeBuffer(&part)
        case .end:
            guard let head, let promise = pending else { return }
            pending = nil
            // A connection the server ends is closed before the caller hears of the answer:
            // its next request must not find it still open and be written into it.
            if !head.isKeepAlive { context.close(promise: nil) }
            promise.succeed(HTTPExchange.Response(status: head.status, body: body))
            body = ByteBuffer()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context, error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Nothing of the answer yet: the request may be sent again on a new connection.
        pending?.fail(head == nil ? HTTPExchange.Failure.notAnswered : HTTPExchange.Failure.connectionLost)
        pending = nil
        context.fireChannelInactive()
    }

    private func fail(_ context: ChannelHandlerContext, _ error: any Error) {
        failed = true
        pending?.fail(error)
        pending = nil
        context.close(promise: nil)
    }
}


extension EngineIOEndpoint {
    /// A TCP connection to this endpoint, TLS first for `wss`/`https`, then what `pipeline`
    /// adds: how every transport of Parley's connects.
    func bootstrap(
        on eventLoop: any EventLoop, sslContext: NIOSSLContext?, pipeline: @escaping @Sendable (any Channel) throws -> Void
    ) -> ClientBootstrap {
        let host = self.host
        return ClientBootstrap(group: eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(20))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: host))
                    }
                    try pipeline(channel)
                }
            }
    }
}

extension WebSocketTransportFactory.Options {
    /// The TLS context for this endpoint: nil for `ws`/`http`.
    func sslContext(for endpoint: EngineIOEndpoint) throws -> NIOSSLContext? {
        try tlsConfiguration(for: endpoint).map { try NIOSSLContext(configuration: $0) }
    }
}
