import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import SocketIOTesting
import Foundation

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

    /// A peer that sends the same flood over HTTP long-polling (and refuses WebSocket), at
    /// most `packetsPerAnswer` packets in the answer to one GET.
    static func startPolling(count: Int, packetsPerAnswer: Int) async throws -> FloodPeer {
        let flood = PollingFlood(chunks: encodePollingFlood(count: count, packetsPerAnswer: packetsPerAnswer))
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(PollingFloodHandler(flood: flood))
                }
            }
        let channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        return FloodPeer(port: channel.localAddress?.port ?? 0, channel: channel)
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

    /// The flood's Engine.IO packets: the CONNECT reply, session, users, then the messages.
    static func floodPackets(count: Int) -> [String] {
        [
            #"40{"sid":"bench"}"#,
            #"42["session",{"sessionID":"bench-session","userID":"\#(selfID)"}]"#,
            #"42["users",[{"userID":"\#(selfID)","username":"bench","connected":true},{"userID":"\#(peerID)","username":"peer","connected":true}]]"#,
        ] + (0..<count).map { i in
            #"42["private message",{"content":"message number \#(i) of the flood","from":"\#(peerID)","to":"\#(selfID)"}]"#
        }
    }

    /// The frames after the CONNECT reply, as raw WebSocket bytes (server frames are unmasked).
    static func encodeFlood(count: Int) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count * 96 + 1024)
        let encoder = WebSocketFrames.Encoder()
        for packet in floodPackets(count: count) { writeFrame(packet, into: &buffer, using: encoder) }
        return buffer
    }

    /// The same packets as HTTP long-polling answers: joined by the record separator, at most
    /// `packetsPerAnswer` packets and a mebibyte each (as a server sends what it has queued).
    static func encodePollingFlood(count: Int, packetsPerAnswer: Int, chunkBytes: Int = 1 << 20) -> [ByteBuffer] {
        var chunks: [ByteBuffer] = []
        var chunk = ByteBufferAllocator().buffer(capacity: 1024)
        var packets = 0
        for packet in floodPackets(count: count) {
            if chunk.readableBytes > 0, packets == packetsPerAnswer || chunk.readableBytes + 1 + packet.utf8.count > chunkBytes {
                chunks.append(chunk)
                chunk = ByteBufferAllocator().buffer(capacity: 1024)
                packets = 0
            }
            packets += 1
            if chunk.readableBytes > 0 { chunk.writeInteger(UInt8(0x1E)) }
            chunk.writeString(packet)
        }
        chunks.append(chunk)
        return chunks
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

/// The polling flood's sessions. Every connection of the peer is on its one event loop, and
/// only that loop touches this.
private final class PollingFlood: @unchecked Sendable {
    struct Session {
        var next = 0
        var connected = false
        /// A GET that came before the CONNECT: answered when it comes.
        var waiting: (any Channel)?
    }

    let chunks: [ByteBuffer]
    var sessions: [String: Session] = [:]
    var opened = 0

    init(chunks: [ByteBuffer]) { self.chunks = chunks }
}

/// HTTP long-polling for the flood: the handshake, "ok" to every post, and after the
/// CONNECT each GET gets the next chunk; once the flood is out, a GET waits for the end.
private final class PollingFloodHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let flood: PollingFlood
    private var head: HTTPRequestHead?
    private var body = ""

    init(flood: PollingFlood) { self.flood = flood }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            head = request
            body = ""
        case .body(var part):
            body += part.readString(length: part.readableBytes) ?? ""
        case .end:
            guard let head else { return }
            self.head = nil
            handle(head, channel: context.channel)
        }
    }

    private func handle(_ head: HTTPRequestHead, channel: any Channel) {
        let query = URLComponents(string: head.uri)?.queryItems ?? []
        guard query.contains(URLQueryItem(name: "transport", value: "polling")) else {
            Self.respond(channel, status: .badRequest, #"{"code":0,"message":"Transport unknown"}"#)
            return
        }
        guard let sid = query.first(where: { $0.name == "sid" })?.value else {
            flood.opened += 1
            let sid = "flood\(flood.opened)"
            flood.sessions[sid] = PollingFlood.Session()
            Self.respond(channel, #"0{"sid":"\#(sid)","upgrades":[],"pingInterval":300000,"pingTimeout":200000,"maxPayload":1000000}"#)
            return
        }
        guard flood.sessions[sid] != nil else {
            Self.respond(channel, status: .badRequest, #"{"code":1,"message":"Session ID unknown"}"#)
            return
        }
        if head.method == .POST {
            Self.respond(channel, "ok")
            // The client's close packet: a GET it left waiting is answered, as a server does.
            if body.split(separator: "\u{1E}").contains("1") {
                if let waiting = flood.sessions.removeValue(forKey: sid)?.waiting { Self.respond(waiting, "6") }
                return
            }
            if body.hasPrefix("40") || body.contains("\u{1E}40") {
                flood.sessions[sid]!.connected = true
                if let waiting = flood.sessions[sid]!.waiting {
                    flood.sessions[sid]!.waiting = nil
                    poll(sid, channel: waiting)
                }
            }
        } else {
            poll(sid, channel: channel)
        }
    }

    private func poll(_ sid: String, channel: any Channel) {
        let session = flood.sessions[sid]!
        guard session.connected, session.next < flood.chunks.count else {
            flood.sessions[sid]!.waiting = channel
            return
        }
        flood.sessions[sid]!.next += 1
        Self.respond(channel, body: flood.chunks[session.next])
    }

    private static func respond(_ channel: any Channel, status: HTTPResponseStatus = .ok, _ text: String) {
        respond(channel, status: status, body: channel.allocator.buffer(string: text))
    }

    private static func respond(_ channel: any Channel, status: HTTPResponseStatus = .ok, body: ByteBuffer) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=UTF-8")
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers)), promise: nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(body)), promise: nil)
        channel.writeAndFlush(HTTPServerResponsePart.end(nil), promise: nil)
    }
}
