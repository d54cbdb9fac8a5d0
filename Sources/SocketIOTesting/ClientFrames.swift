import NIOWebSocket

/// WebSocket frames as a client sends them (masked), for test and benchmark clients that talk
/// to a server byte by byte: NIOWebSocket's encoding, through `WebSocketFrames`.
public enum ClientFrames {
    public static func text(_ text: String) -> [UInt8] { frame(opcode: 0x1, Array(text.utf8)) }

    /// A close frame with status 1000 (normal closure).
    public static func close() -> [UInt8] { frame(opcode: 0x8, [0x03, 0xE8]) }

    /// One final frame of `opcode` carrying `payload`, masked with a random key.
    public static func frame(opcode: UInt8, _ payload: [UInt8]) -> [UInt8] {
        WebSocketFrames.encode(WebSocketOpcode(encodedWebSocketOpcode: opcode)!, payload, masked: true)
    }
}
