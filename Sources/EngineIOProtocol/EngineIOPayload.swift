import Foundation

/// The HTTP long-polling body: packets joined by the record separator `\x1e`,
/// binary messages as `b<base64>` (engine.io-protocol v4, "HTTP long-polling").
public enum EngineIOPayload {
    public static let separator: Character = "\u{1e}"

    public static func encode(_ packets: [EngineIOPacket]) -> String {
        packets.map { packet in
            if case .message(.binary(let bytes)) = packet {
                return "b" + Data(bytes).base64EncodedString()
            }
            return packet.encodedText()
        }.joined(separator: String(separator))
    }

    /// Splits a body into its packets. By bytes: the separator is one ASCII byte, so it is
    /// never inside a character's encoding. (Splitting the `String` by `Character` walked
    /// grapheme clusters and compared them after normalisation: a hostile body of one
    /// "character" of 900 KB, a letter and its combining marks, took 50 ms of CPU.)
    public static func decode(_ body: String) throws(EngineIOParseError) -> [EngineIOPacket] {
        var body = body
        return try body.withUTF8 { bytes in Result { () throws(EngineIOParseError) in try decode(utf8: bytes) } }.get()
    }

    /// - Parameter maxPackets: more packets than this is an error, found before they are
    ///   decoded: two bytes make a packet (`6␞`), so a body's byte limit alone lets a peer
    ///   make the reader hold tens of times more memory than the body.
    public static func decode(utf8 bytes: UnsafeBufferPointer<UInt8>, maxPackets: Int = .max) throws(EngineIOParseError) -> [EngineIOPacket] {
        guard !bytes.isEmpty else { throw .empty }
        if maxPackets < .max, bytes.count > maxPackets {
            var separators = 0
            for byte in bytes where byte == 0x1E { separators += 1 }
            if separators >= maxPackets { throw .tooManyPackets(limit: maxPackets) }
        }
        var packets: [EngineIOPacket] = []
        var start = bytes.startIndex
        while true {
            let end = bytes[start...].firstIndex(of: 0x1E) ?? bytes.endIndex
            let part = UnsafeBufferPointer(rebasing: bytes[start..<end])
            if part.first == UInt8(ascii: "b") {
                guard let data = Data(base64Encoded: Data(UnsafeBufferPointer(rebasing: part.dropFirst()))) else { throw .invalidBase64 }
                packets.append(.message(.binary([UInt8](data))))
            } else {
                packets.append(try EngineIOPacket(decodingUTF8: part))
            }
            guard end < bytes.endIndex else { return packets }
            start = end + 1
        }
    }
}
