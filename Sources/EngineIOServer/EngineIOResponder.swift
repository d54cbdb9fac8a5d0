public import Hummingbird
import HummingbirdCore
import EngineIOProtocol
public import NIOCore
import NIOPosix
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
        let options = server.options
        guard server.matches(path: request.uri.path) else {
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
        let answer = await server.handlePolling(
            method: request.method.rawValue,
            query: query,
            request: Self.handshakeRequest(
                query: query, headers: request.headers.lazy.map { ($0.name.canonicalName, $0.value) }, channel: channel, transport: .polling
            ),
            loop: channel.eventLoop,
            body: { limit in
                do {
                    return .complete(Array(try await request.body.collect(upTo: limit).readableBytesView))
                } catch is NIOTooManyBytesError {
                    return .tooLarge
                } catch {
                    return .failed
                }
            },
            onPollStart: { abort in
                // A long poll whose client disconnects ends the session (engine.io does the
                // same): the connection's one `ClientGoneHandler` holds the latest poll's abort
                // (a callback per GET on the channel's close would pile up on a kept-alive one).
                channel.eventLoop.execute {
                    try? channel.pipeline.syncOperations.handler(type: ClientGoneHandler.self).whenGone(abort)
                }
            }
        )
        headers[.contentType] = answer.contentType
        if let retryAfter = answer.retryAfter { headers[.retryAfter] = String(retryAfter) }
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

    /// What the engine is told of a request, polling or WebSocket: `headers` with lower-case
    /// names (of a repeated header, the last).
    static func handshakeRequest(
        query: [String: String],
        headers: some Sequence<(String, String)>,
        channel: any Channel,
        transport: EngineIOServerOptions.Transport
    ) -> EngineIOHandshakeRequest {
        var flat: [String: String] = [:]
        for (name, value) in headers { flat[name] = value }
        return EngineIOHandshakeRequest(
            query: query,
            headers: flat,
            remoteAddress: channel.remoteAddress?.ipAddress,
            transport: transport
        )
    }
}

extension EngineIOServer {
    /// A Hummingbird application serving this Engine.IO server over HTTP/1.1, with
    /// WebSocket upgrades read on the event loop (`EngineIOChannel`). `onServerRunning`
    /// receives the bound port (useful with port 0).
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
            server: HTTPServerBuilder { [self] responder in EngineIOChannel(server: self, responder: responder) },
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
