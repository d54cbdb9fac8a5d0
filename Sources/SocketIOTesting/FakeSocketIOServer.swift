public import EngineIO
public import JSON
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
public import SocketIO
import Synchronization

/// A scriptable Socket.IO server for tests: listens on 127.0.0.1 (an
/// ephemeral port unless told otherwise) and lets a test play the server's
/// side packet by packet — accept or refuse a CONNECT, emit events, await the
/// client's events, inject garbage, go silent, drop the TCP connection, stop
/// and restart on the same port.
public final class FakeSocketIOServer: Sendable {
    public struct Options: Sendable {
        public var pingInterval: Duration
        public var pingTimeout: Duration
        public var maxPayload: Int
        /// Send pings every `pingInterval` (the Engine.IO v4 heartbeat).
        public var sendsPings: Bool
        /// Send the open packet on connection; false to test a server that never answers.
        public var sendsHandshake: Bool
        /// Send exactly this text as the open packet (e.g. a socket.io 3.x handshake).
        public var openPacket: String?
        /// Serve TLS (`wss://`) with this PEM certificate chain and private key.
        public var tls: (certificateFile: String, privateKeyFile: String)?

        public init(
            pingInterval: Duration = .seconds(25),
            pingTimeout: Duration = .seconds(20),
            maxPayload: Int = 1_000_000,
            sendsPings: Bool = true,
            sendsHandshake: Bool = true,
            openPacket: String? = nil,
            tls: (certificateFile: String, privateKeyFile: String)? = nil
        ) {
            self.tls = tls
            self.pingInterval = pingInterval
            self.pingTimeout = pingTimeout
            self.maxPayload = maxPayload
            self.sendsPings = sendsPings
            self.sendsHandshake = sendsHandshake
            self.openPacket = openPacket
        }
    }

    private struct State {
        var options: Options
        var port: Int
        var listener: (any Channel)?
        var connections: [FakeConnection] = []
    }

    private let state: Mutex<State>
    private let incoming = AsyncQueue<FakeConnection>(what: "a client connection")

    private init(options: Options, port: Int) {
        state = Mutex(State(options: options, port: port))
    }

    /// Starts listening on 127.0.0.1; `port` 0 picks a free one.
    public static func start(options: Options = .init(), port: Int = 0) async throws -> FakeSocketIOServer {
        let server = FakeSocketIOServer(options: options, port: port)
        try await server.bind()
        return server
    }

    public var port: Int { state.withLock { $0.port } }
    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS (a certificate names a host), as a client is given it.
    public var url: String { options.tls == nil ? "http://127.0.0.1:\(port)" : "https://localhost:\(port)" }

    public var options: Options {
        get { state.withLock { $0.options } }
    }

    /// Changes the settings used for connections made from now on.
    public func setOptions(_ options: Options) { state.withLock { $0.options = options } }

    /// Every connection accepted so far.
    public var connections: [FakeConnection] { state.withLock { $0.connections } }

    /// Waits for the next client to complete the WebSocket upgrade.
    public func nextConnection(timeout: Duration = .seconds(10)) async throws -> FakeConnection {
        try await incoming.next(timeout: timeout)
    }

    /// Closes the listener and every connection (without close frames, like a crash).
    public func stop() async {
        let (listener, connections) = state.withLock { state in
            defer {
                state.listener = nil
                state.connections = []
            }
            return (state.listener, state.connections)
        }
        for connection in connections { connection.drop() }
        try? await listener?.close()
    }

    /// Listens again on the same port after `stop()`.
    public func restart() async throws {
        try await bind()
    }

    private func bind() async throws {
        let port = self.port
        let tlsContext: NIOSSLContext? = try options.tls.map { tls in
            let configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(tls.certificateFile).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: tls.privateKeyFile, format: .pem))
            )
            return try NIOSSLContext(configuration: configuration)
        }
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                let upgrader = NIOWebSocketServerUpgrader(
                    maxFrameSize: 64 << 20,
                    shouldUpgrade: { channel, head in
                        channel.eventLoop.makeSucceededFuture(HTTPHeaders())
                    },
                    upgradePipelineHandler: { [self] channel, head in
                        channel.eventLoop.makeCompletedFuture {
                            try self.accept(channel, uri: head.uri)
                        }
                    }
                )
                return channel.eventLoop.makeCompletedFuture {
                    if let tlsContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tlsContext))
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in })
                    )
                }
            }
        let channel = try await bootstrap.bind(host: "127.0.0.1", port: port).get()
        let boundPort = channel.localAddress?.port ?? port
        state.withLock { state in
            state.listener = channel
            state.port = boundPort
        }
    }

    /// Runs on the event loop right after the upgrade: sets up the Engine.IO session.
    private func accept(_ channel: any Channel, uri: String) throws {
        let options = self.options
        let connection = FakeConnection(channel: channel, requestURI: uri, options: options)
        try channel.pipeline.syncOperations.addHandler(
            NIOWebSocketFrameAggregator(
                minNonFinalFragmentSize: 0,
                maxAccumulatedFrameCount: 4096,
                maxAccumulatedFrameSize: 64 << 20
            )
        )
        try channel.pipeline.syncOperations.addHandler(FakeWebSocketHandler(connection: connection))
        state.withLock { $0.connections.append(connection) }
        connection.start()
        incoming.push(connection)
    }
}

/// A client's CONNECT request as the server saw it.
public struct ConnectRequest: Sendable {
    public let namespace: String
    public let auth: JSONValue?
}

/// An event the client emitted.
public struct ClientEvent: Sendable {
    public let namespace: String
    public let name: String
    public let arguments: [JSONValue]
    /// Set when the client wants an acknowledgement.
    public let ackID: Int?
}

/// The server side of one client connection.
public final class FakeConnection: Sendable {
    /// The request line's target, e.g. `/socket.io/?EIO=4&transport=websocket`.
    public let requestURI: String
    /// The Engine.IO session id sent in the handshake.
    public let engineSID: String

    private let channel: any Channel
    private let options: FakeSocketIOServer.Options
    private let packets = AsyncQueue<SocketIOPacket>(what: "a packet from the client")
    private let closed = AsyncQueue<Void>(what: "the connection to close")
    private let pongs = AsyncQueue<Void>(what: "a pong")
    private let heartbeat = Mutex<RepeatedTask?>(nil)
    private let counters = Mutex((pongs: 0, invalidFrames: 0))

    init(channel: any Channel, requestURI: String, options: FakeSocketIOServer.Options) {
        self.channel = channel
        self.requestURI = requestURI
        self.options = options
        self.engineSID = FakeConnection.randomID()
    }

    /// The query items of the upgrade request.
    public var query: [String: String] {
        guard let q = requestURI.split(separator: "?", maxSplits: 1).dropFirst().first else { return [:] }
        var items: [String: String] = [:]
        for pair in q.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            items[parts[0].removingPercentEncoding ?? parts[0]] = parts.count > 1 ? (parts[1].removingPercentEncoding ?? parts[1]) : ""
        }
        return items
    }

    /// Pongs received so far.
    public var pongCount: Int { counters.withLock { $0.pongs } }
    /// Frames from the client that were not valid Engine.IO / Socket.IO.
    public var invalidFrameCount: Int { counters.withLock { $0.invalidFrames } }

    func start() {
        if options.sendsHandshake {
            if let raw = options.openPacket {
                sendRaw(.text(raw))
            } else {
                let handshake = EngineIOHandshake(
                    sid: engineSID,
                    upgrades: [],
                    pingInterval: options.pingInterval,
                    pingTimeout: options.pingTimeout,
                    maxPayload: options.maxPayload
                )
                send(engine: .open(handshake))
            }
        }
        if options.sendsPings {
            let interval = TimeAmount.nanoseconds(Int64(options.pingInterval / .nanoseconds(1)))
            let task = channel.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in
                self?.send(engine: .ping())
            }
            heartbeat.withLock { $0 = task }
        }
    }

    // MARK: Reading what the client sent

    /// The next Socket.IO packet from the client.
    public func nextPacket(timeout: Duration = .seconds(10)) async throws -> SocketIOPacket {
        try await packets.next(timeout: timeout)
    }

    /// Waits for a CONNECT and returns its namespace and `auth` payload.
    public func expectConnect(timeout: Duration = .seconds(10)) async throws -> ConnectRequest {
        let packet = try await nextPacket(timeout: timeout)
        guard packet.kind == .connect else { throw UnexpectedPacket(expected: "CONNECT", got: packet) }
        return ConnectRequest(namespace: packet.namespace, auth: packet.data)
    }

    /// Waits for the next EVENT (skipping nothing: any other packet is an error).
    public func nextEvent(timeout: Duration = .seconds(10)) async throws -> ClientEvent {
        let packet = try await nextPacket(timeout: timeout)
        guard let (name, arguments) = packet.event else { throw UnexpectedPacket(expected: "EVENT", got: packet) }
        return ClientEvent(namespace: packet.namespace, name: name, arguments: arguments, ackID: packet.id)
    }

    /// Waits until the client (or this side) closes the connection.
    public func waitUntilClosed(timeout: Duration = .seconds(10)) async throws {
        do {
            try await closed.next(timeout: timeout)
        } catch is QueueFinishedError {
            return
        }
    }

    public var isClosed: Bool { closed.isFinished }

    /// Waits for the client's next pong.
    public func waitForPong(timeout: Duration = .seconds(10)) async throws {
        try await pongs.next(timeout: timeout)
    }

    // MARK: Playing the server

    /// Accepts the CONNECT: replies `0[/nsp,]{"sid":…}`.
    public func accept(namespace: String = "/", sid: String? = nil) {
        send(SocketIOPacket(kind: .connect, namespace: namespace, data: ["sid": .string(sid ?? Self.randomID())]))
    }

    /// Refuses the CONNECT with CONNECT_ERROR `{message, data?}`.
    public func reject(namespace: String = "/", message: String, data: JSONValue? = nil) {
        var payload: JSONObject = ["message": .string(message)]
        if let data { payload["data"] = data }
        send(SocketIOPacket(kind: .connectError, namespace: namespace, data: .object(payload)))
    }

    public func emit(_ event: String, _ arguments: JSONValue..., namespace: String = "/", ackID: Int? = nil) {
        send(.event(event, arguments, namespace: namespace, id: ackID))
    }

    public func ack(_ id: Int, _ arguments: JSONValue..., namespace: String = "/") {
        send(.ack(arguments, id: id, namespace: namespace))
    }

    /// Sends a Socket.IO DISCONNECT for the namespace ("io server disconnect").
    public func disconnect(namespace: String = "/") {
        send(SocketIOPacket(kind: .disconnect, namespace: namespace))
    }

    public func send(_ packet: SocketIOPacket) {
        for frame in packet.encoded() {
            switch frame {
            case .text(let text): sendRaw(.text("4" + text))
            case .binary: sendRaw(frame)
            }
        }
    }

    public func send(engine packet: EngineIOPacket) {
        sendRaw(packet.encoded())
    }

    /// Writes a frame exactly as given: for injecting garbage.
    public func sendRaw(_ frame: EngineIOData) {
        var buffer = channel.allocator.buffer(capacity: frame.byteCount)
        let opcode: WebSocketOpcode
        switch frame {
        case .text(let text):
            buffer.writeString(text)
            opcode = .text
        case .binary(let bytes):
            buffer.writeBytes(bytes)
            opcode = .binary
        }
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: opcode, data: buffer), promise: nil)
    }

    /// Stops the heartbeat: the server goes silent, as a dead peer would.
    public func stopPinging() {
        heartbeat.withLock { task in
            task?.cancel()
            task = nil
        }
    }

    /// Closes the TCP connection at once, with no close frame.
    public func drop() {
        stopPinging()
        channel.close(promise: nil)
    }

    /// Sends an Engine.IO close packet and a WebSocket close frame.
    public func close() {
        send(engine: .close)
        var buffer = channel.allocator.buffer(capacity: 2)
        buffer.write(webSocketErrorCode: .normalClosure)
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, data: buffer)).whenComplete { [channel] _ in
            channel.close(promise: nil)
        }
    }

    // MARK: Called by the channel handler

    func received(_ packet: SocketIOPacket) { packets.push(packet) }
    func receivedPong() {
        counters.withLock { $0.pongs += 1 }
        pongs.push(())
    }
    func receivedInvalidFrame() { counters.withLock { $0.invalidFrames += 1 } }

    func channelClosed() {
        stopPinging()
        packets.finish()
        pongs.finish()
        closed.finish()
    }

    static func randomID() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        return String((0..<20).map { _ in alphabet.randomElement()! })
    }
}

public struct UnexpectedPacket: Error, CustomStringConvertible {
    public let expected: String
    public let got: SocketIOPacket
    public var description: String { "expected \(expected), got \(got)" }
}

/// Decodes the client's frames for one connection (event-loop confined).
private final class FakeWebSocketHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let connection: FakeConnection
    private var decoder = SocketIOPacketDecoder()

    init(connection: FakeConnection) { self.connection = connection }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        var payload = frame.unmaskedData
        switch frame.opcode {
        case .text:
            let text = payload.readString(length: payload.readableBytes) ?? ""
            handle(.text(text))
        case .binary:
            handle(.binary(payload.readBytes(length: payload.readableBytes) ?? []))
        case .connectionClose:
            var reply = context.channel.allocator.buffer(capacity: 2)
            reply.write(webSocketErrorCode: .normalClosure)
            let close = WebSocketFrame(fin: true, opcode: .connectionClose, data: reply)
            context.writeAndFlush(wrapOutboundOut(close)).whenComplete { [channel = context.channel] _ in
                channel.close(promise: nil)
            }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: payload)), promise: nil)
        default:
            break
        }
    }

    private func handle(_ frame: EngineIOData) {
        if case .binary = frame, decoder.isReconstructing {
            decodeSocketIO(frame)
            return
        }
        do {
            switch try EngineIOPacket(decoding: frame) {
            case .pong: connection.receivedPong()
            case .message(let data): decodeSocketIO(data)
            case .close: connection.drop()
            default: break
            }
        } catch {
            connection.receivedInvalidFrame()
        }
    }

    private func decodeSocketIO(_ data: EngineIOData) {
        do {
            if let packet = try decoder.decode(data) { connection.received(packet) }
        } catch {
            connection.receivedInvalidFrame()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.channelClosed()
        context.fireChannelInactive()
    }
}

import Foundation
