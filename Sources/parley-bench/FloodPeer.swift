import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import SocketIOTesting

/// A Socket.IO server that does one thing fast: after the client's CONNECT it
/// sends `session`, `users`, then N `private message` events for the client,
/// pre-encoded into one buffer of WebSocket frames and written as fast as the
/// socket takes them, so the peer is not what is measured.
final class FloodPeer: Sendable {
    let port: Int
    private let channel: any Channel

    private static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    static let selfID = "bench-self"
    static let peerID = "bench-peer"

    private init(port: Int, channel: any Channel) {
        self.port = port
        self.channel = channel
    }

    static func start(count: Int) async throws -> FloodPeer {
        try await start(flood: encodeFlood(count: count))
    }

    /// A peer that sends `flood` (WebSocket frames, after the CONNECT reply's) to each client.
    static func start(flood: ByteBuffer) async throws -> FloodPeer {
        // Its own thread, so the peer never shares an event loop with the client it floods.
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let upgrader = NIOWebSocketServerUpgrader(
                    maxFrameSize: 1 << 20,
                    shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(HTTPHeaders()) },
                    upgradePipelineHandler: { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(FloodHandler(flood: flood))
                        }
                    }
                )
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in })
                    )
                }
            }
        let channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        return FloodPeer(port: channel.localAddress?.port ?? 0, channel: channel)
    }

    func stop() async { try? await channel.close() }

    /// The frames after the CONNECT reply, as raw WebSocket bytes (server frames are unmasked).
    static func encodeFlood(count: Int) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count * 96 + 1024)
        let encoder = WebSocketFrames.Encoder()
        func frame(_ text: String) { writeFrame(text, into: &buffer, using: encoder) }
        frame(#"40{"sid":"bench"}"#)
        frame(#"42["session",{"sessionID":"bench-session","userID":"\#(selfID)"}]"#)
        frame(#"42["users",[{"userID":"\#(selfID)","username":"bench","connected":true},{"userID":"\#(peerID)","username":"peer","connected":true}]]"#)
        for i in 0..<count {
            frame(#"42["private message",{"content":"message number \#(i) of the flood","from":"\#(peerID)","to":"\#(selfID)"}]"#)
        }
        return buffer
    }

    /// One server-to-client text frame (unmasked), as raw bytes: NIOWebSocket's encoding.
    static func writeFrame(_ text: String, into buffer: inout ByteBuffer, using encoder: WebSocketFrames.Encoder) {
        var frame = encoder.encode(.text, text.utf8, masked: false)
        buffer.writeBuffer(&frame)
    }
}

/// Sends the open packet, then the whole flood when the CONNECT arrives.
private final class FloodHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let flood: ByteBuffer
    private var sent = false

    init(flood: ByteBuffer) { self.flood = flood }

    func handlerAdded(context: ChannelHandlerContext) {
        var open = context.channel.allocator.buffer(capacity: 128)
        open.writeString(#"0{"sid":"flood","upgrades":[],"pingInterval":300000,"pingTimeout":200000,"maxPayload":1000000}"#)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: open)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard frame.opcode == .text, !sent else {
            if frame.opcode == .connectionClose { context.close(promise: nil) }
            return
        }
        var payload = frame.unmaskedData
        guard payload.readString(length: payload.readableBytes)?.hasPrefix("40") == true else { return }
        sent = true
        // Below the frame encoder: the bytes are already WebSocket frames.
        if let encoder = try? context.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self) {
            encoder.writeAndFlush(NIOAny(IOData.byteBuffer(flood)), promise: nil)
        }
    }
}
