public import NIOCore
import NIOEmbedded
public import NIOWebSocket

/// WebSocket frames for peers that talk to a server or client byte by byte (test clients,
/// the benchmarks' flood peers), encoded and decoded by NIOWebSocket's own frame codec, so
/// that the project has one framer: NIO's (RFC 6455 §5.2: the shortest length encoding, a
/// client's frames masked with a random key, a server's not).
public enum WebSocketFrames {
    /// Encodes frames one after the other, through one encoder.
    public final class Encoder {
        private let channel = EmbeddedChannel(handler: WebSocketFrameEncoder())

        public init() {}

        deinit { _ = try? channel.finish() }

        /// One final frame: masked with a random key as a client sends it, or not as a
        /// server sends it.
        public func encode(_ opcode: WebSocketOpcode, _ payload: some Collection<UInt8>, masked: Bool) -> ByteBuffer {
            var data = channel.allocator.buffer(capacity: payload.count)
            data.writeBytes(payload)
            let frame = WebSocketFrame(fin: true, opcode: opcode, maskKey: masked ? .random() : nil, data: data)
            try! channel.writeOutbound(frame)  // an EmbeddedChannel with one encoder: cannot fail
            var out = channel.allocator.buffer(capacity: payload.count + 14)
            while var part = try! channel.readOutbound(as: ByteBuffer.self) { out.writeBuffer(&part) }
            return out
        }
    }

    /// One final frame, as bytes.
    public static func encode(_ opcode: WebSocketOpcode, _ payload: some Collection<UInt8>, masked: Bool) -> [UInt8] {
        Array(Encoder().encode(opcode, payload, masked: masked).readableBytesView)
    }

    /// Decodes frames from bytes as they arrive (a frame may span several reads).
    public final class Decoder {
        private let channel: EmbeddedChannel

        /// `maxFrameSize`: larger frames are an error, as NIO's decoder makes them.
        public init(maxFrameSize: Int = 1 << 26) {
            channel = EmbeddedChannel(handler: ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize)))
        }

        deinit { _ = try? channel.finish() }

        /// The frames completed by `bytes` (none while one is still coming). Throws for bytes
        /// that are not WebSocket frames.
        public func feed(_ bytes: some Collection<UInt8>) throws -> [WebSocketFrame] {
            var buffer = channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            try channel.writeInbound(buffer)
            var frames: [WebSocketFrame] = []
            while let frame = try channel.readInbound(as: WebSocketFrame.self) { frames.append(frame) }
            return frames
        }
    }
}
