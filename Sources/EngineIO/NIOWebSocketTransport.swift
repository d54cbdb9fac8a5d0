public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import Synchronization

/// A WebSocket transport written directly on NIO: frames are decoded on the
/// event loop and handed to the consumer one batch per socket read, instead
/// of one cross-thread hand-off per frame. Chosen as the default by the
/// ingest benchmark (README.md, "Performance"); `WebSocketTransportFactory`
/// (on swift-websocket) does the same job and stays selectable.
public struct NIOWebSocketTransportFactory: EngineIOTransportFactory {
    public var options: WebSocketTransportFactory.Options
    public var logger: Logger

    public init(options: WebSocketTransportFactory.Options = .init(), logger: Logger = .disabled) {
        self.options = options
        self.logger = logger
    }

    public func connect(to endpoint: EngineIOEndpoint) async throws -> any EngineIOTransport {
        return try await NIOWebSocketTransport.connect(
            endpoint: endpoint, sslContext: try options.sslContext(for: endpoint), options: options, logger: logger
        )
    }
}

final class NIOWebSocketTransport: EngineIOTransport {
    let inbound: AsyncThrowingStream<[EngineIOPacket], any Error>
    private let channel: any Channel
    let window: InboundWindow

    private init(inbound: AsyncThrowingStream<[EngineIOPacket], any Error>, channel: any Channel, window: InboundWindow) {
        self.inbound = inbound
        self.channel = channel
        self.window = window
    }

    func consumedBatch() {
        if window.consumed() { channel.read() }
    }

    enum Upgrade: Sendable {
        case upgraded
        case refused(HTTPResponseStatus?)
    }

    struct UpgradeRefused: Error, CustomStringConvertible {
        var description: String { "the server did not accept the WebSocket upgrade" }
    }

    static func connect(
        endpoint: EngineIOEndpoint,
        sslContext: NIOSSLContext?,
        options: WebSocketTransportFactory.Options,
        logger: Logger
    ) async throws -> NIOWebSocketTransport {
        let limit = options.maxIncomingMessageSize
        let (inbound, continuation) = AsyncThrowingStream.makeStream(of: [EngineIOPacket].self)
        let window = InboundWindow()
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        let upgraded = eventLoop.makePromise(of: Upgrade.self)

        var headers = HTTPHeaders()
        headers.add(name: "Host", value: endpoint.hostHeader)
        headers.add(name: "Content-Length", value: "0")
        for header in options.headers { headers.add(name: header.name, value: header.value) }
        let request = HTTPRequestHead(version: .http1_1, method: .GET, uri: endpoint.requestTarget(transport: "websocket"), headers: headers)

        let bootstrap = endpoint.bootstrap(on: eventLoop, sslContext: sslContext) { channel in
            let upgrader = NIOTypedWebSocketClientUpgrader<Upgrade>(
                // Headroom over the message limit: an oversize message is reported by FrameReader
                // as such; a frame beyond this is refused by the decoder before it is buffered.
                maxFrameSize: min(max(limit, 1 << 16) * 4, Int(UInt32.max)),
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOWebSocketFrameAggregator(
                                minNonFinalFragmentSize: 0,
                                maxAccumulatedFrameCount: 1 << 16,
                                maxAccumulatedFrameSize: limit
                            )
                        )
                        try channel.pipeline.syncOperations.addHandler(FrameReader(continuation: continuation, limit: limit, window: window))
                        return .upgraded
                    }
                }
            )
            let configuration = NIOTypedHTTPClientUpgradeConfiguration<Upgrade>(
                upgradeRequestHead: request,
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeSucceededFuture(.refused(nil))
                }
            )
            var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: configuration)
            // The server's open packet may come in the same read as its 101: keep those bytes.
            pipeline.leftOverBytesStrategy = .forwardBytes
            let result = try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                configuration: pipeline
            )
            result.cascade(to: upgraded)
        }

        let channel = try await bootstrap.connect(host: endpoint.host, port: endpoint.port).get()
        // A connection that closes before the upgrade fails it rather than leaving it pending.
        channel.closeFuture.whenComplete { _ in upgraded.fail(UpgradeRefused()) }
        do {
            let outcome = try await withTaskCancellationHandler {
                try await upgraded.futureResult.get()
            } onCancel: {
                channel.close(promise: nil)
            }
            guard case .upgraded = outcome else { throw UpgradeRefused() }
        } catch {
            channel.close(promise: nil)
            continuation.finish(throwing: error)
            throw error
        }
        return NIOWebSocketTransport(inbound: inbound, channel: channel, window: window)
    }

    func send(_ frame: EngineIOData) {
        var buffer: ByteBuffer
        let opcode: WebSocketOpcode
        switch frame {
        case .text(let text):
            buffer = channel.allocator.buffer(capacity: text.utf8.count)
            buffer.writeString(text)
            opcode = .text
        case .binary(let bytes):
            buffer = channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            opcode = .binary
        }
        // RFC 6455 §5.3: a client masks every frame; the encoder applies the key.
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: opcode, maskKey: .random(), data: buffer), promise: nil)
    }

    func close() {
        var payload = channel.allocator.buffer(capacity: 2)
        payload.write(webSocketErrorCode: .normalClosure)
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: payload)
        // Everything queued before is written first; then the TCP connection ends.
        channel.writeAndFlush(frame).whenComplete { [channel] _ in channel.close(promise: nil) }
    }

    func waitUntilClosed() async {
        try? await channel.closeFuture.get()
    }
}

/// Backpressure between the event loop and the consumer: batches handed over
/// but not yet taken. Past `highWater` the reader stops reading the socket (the
/// server's writes then wait in TCP); the consumer resumes it at `lowWater`. So
/// a flooding server costs the client a bounded amount of memory.
final class InboundWindow: Sendable {
    static let highWater = 16
    static let lowWater = 4

    private let waiting = Atomic(0)
    /// A read is being held back; whoever clears this flag issues it.
    private let paused = Atomic(false)

    /// Batches handed over and not yet taken.
    var waitingBatches: Int { waiting.load(ordering: .relaxed) }
    /// A read is held back until the consumer catches up.
    var isHoldingRead: Bool { paused.load(ordering: .relaxed) }

    /// The reader handed over a batch.
    func delivered() { waiting.add(1, ordering: .relaxed) }

    /// The event loop wants to read: true to go ahead, false when the read is now held.
    func mayRead() -> Bool {
        guard waiting.load(ordering: .acquiring) >= Self.highWater else { return true }
        paused.store(true, ordering: .sequentiallyConsistent)
        // The consumer may have drained everything between the check and the store:
        // then take the held read back here rather than wait for a wake-up that never comes.
        if waiting.load(ordering: .sequentiallyConsistent) <= Self.lowWater {
            return paused.compareExchange(expected: true, desired: false, ordering: .sequentiallyConsistent).exchanged
        }
        return false
    }

    /// The consumer took a batch: true when it must issue the held read.
    func consumed() -> Bool {
        let now = waiting.subtract(1, ordering: .sequentiallyConsistent).newValue
        guard now <= Self.lowWater, paused.load(ordering: .sequentiallyConsistent) else { return false }
        return paused.compareExchange(expected: true, desired: false, ordering: .sequentiallyConsistent).exchanged
    }
}

/// On the event loop: turns WebSocket frames into Engine.IO data, answers
/// control frames, and hands over one batch per read, holding reads back
/// while the consumer is behind (`InboundWindow`).
private final class FrameReader: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let continuation: AsyncThrowingStream<[EngineIOPacket], any Error>.Continuation
    private let limit: Int
    let window: InboundWindow
    private var batch: [EngineIOPacket] = []
    private var failed = false

    init(continuation: AsyncThrowingStream<[EngineIOPacket], any Error>.Continuation, limit: Int, window: InboundWindow) {
        self.continuation = continuation
        self.limit = limit
        self.window = window
    }

    func read(context: ChannelHandlerContext) {
        if window.mayRead() { context.read() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            var payload = frame.unmaskedData
            guard payload.readableBytes <= limit else {
                fail(context, WebSocketTransportError.messageTooLarge(limit: limit))
                return
            }
            if frame.opcode == .text {
                do {
                    batch.append(try payload.withUnsafeReadableBytes { raw in
                        try EngineIOPacket(decodingUTF8: raw.assumingMemoryBound(to: UInt8.self))
                    })
                } catch {
                    fail(context, error)
                }
            } else {
                batch.append(.message(.binary(payload.readBytes(length: payload.readableBytes) ?? [])))
            }
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            deliver()
            var reply = context.channel.allocator.buffer(capacity: 2)
            reply.write(webSocketErrorCode: .normalClosure)
            let close = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: reply)
            context.writeAndFlush(wrapOutboundOut(close)).whenComplete { [channel = context.channel] _ in
                channel.close(promise: nil)
            }
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        deliver()
        context.fireChannelReadComplete()
    }

    private func deliver() {
        guard !batch.isEmpty else { return }
        window.delivered()
        continuation.yield(batch)
        batch = []
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case NIOWebSocketError.invalidFrameLength, NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge:
            fail(context, WebSocketTransportError.messageTooLarge(limit: limit))
        default:
            fail(context, error)
        }
    }

    private func fail(_ context: ChannelHandlerContext, _ error: any Error) {
        guard !failed else { return }
        failed = true
        deliver()
        continuation.finish(throwing: error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        deliver()
        continuation.finish()
        context.fireChannelInactive()
    }
}
