/// WebSocket frames as a client sends them (RFC 6455 §5.2: masked, with the shortest length
/// encoding), for test and benchmark clients that talk to a server byte by byte.
public enum ClientFrames {
    public static func text(_ text: String) -> [UInt8] { frame(opcode: 0x1, Array(text.utf8)) }

    /// A close frame with status 1000 (normal closure).
    public static func close() -> [UInt8] { frame(opcode: 0x8, [0x03, 0xE8]) }

    /// One final frame of `opcode` carrying `payload`, masked with a random key.
    public static func frame(opcode: UInt8, _ payload: [UInt8]) -> [UInt8] {
        var frame: [UInt8] = [0x80 | opcode]
        let count = payload.count
        if count < 126 {
            frame.append(0x80 | UInt8(count))
        } else if count <= 0xFFFF {
            frame += [0x80 | 126, UInt8(count >> 8), UInt8(count & 0xFF)]
        } else {
            frame.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { frame.append(UInt8((count >> shift) & 0xFF)) }
        }
        let mask = (0..<4).map { _ in UInt8.random(in: 0...255) }
        frame += mask
        for (i, byte) in payload.enumerated() { frame.append(byte ^ mask[i & 3]) }
        return frame
    }
}
