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

    public static func decode(_ body: String) throws(EngineIOParseError) -> [EngineIOPacket] {
        guard !body.isEmpty else { throw .empty }
        var packets: [EngineIOPacket] = []
        for part in body.split(separator: separator, omittingEmptySubsequences: false) {
            if part.first == "b" {
                guard let data = Data(base64Encoded: String(part.dropFirst())) else { throw .invalidBase64 }
                packets.append(.message(.binary([UInt8](data))))
            } else {
                packets.append(try EngineIOPacket(decodingText: String(part)))
            }
        }
        return packets
    }
}
