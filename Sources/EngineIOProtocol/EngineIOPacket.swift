import JSON

/// One unit of data on the wire: a text or a binary WebSocket frame, or the
/// payload of an Engine.IO `message` packet (which has the same two forms).
public enum EngineIOData: Sendable, Hashable {
    case text(String)
    case binary([UInt8])

    /// Size in bytes as the server counts it against `maxPayload`.
    public var byteCount: Int {
        switch self {
        case .text(let s): return s.utf8.count
        case .binary(let b): return b.count
        }
    }
}

/// An Engine.IO v4 packet (engine.io-protocol v4, "Protocol" section).
public enum EngineIOPacket: Sendable, Hashable {
    case open(EngineIOHandshake)
    case close
    /// `ping`, with an optional payload (`probe` during an upgrade).
    case ping(String = "")
    case pong(String = "")
    case message(EngineIOData)
    case upgrade
    case noop

    /// The packet type digit.
    public var typeCode: Character {
        switch self {
        case .open: return "0"
        case .close: return "1"
        case .ping: return "2"
        case .pong: return "3"
        case .message: return "4"
        case .upgrade: return "5"
        case .noop: return "6"
        }
    }
}

/// Why bytes from the peer are not an Engine.IO packet.
public enum EngineIOParseError: Error, Sendable, Equatable, CustomStringConvertible {
    case empty
    case unknownPacketType(String)
    case invalidHandshake(String)
    case invalidBase64
    case binaryPayloadInPacketOtherThanMessage
    /// A polling payload of more packets than the reader takes at once.
    case tooManyPackets(limit: Int)

    public var description: String {
        switch self {
        case .empty: return "empty Engine.IO packet"
        case .unknownPacketType(let t): return "unknown Engine.IO packet type \(t.debugDescription)"
        case .invalidHandshake(let why): return "invalid Engine.IO handshake: \(why)"
        case .invalidBase64: return "invalid base64 in an Engine.IO payload"
        case .binaryPayloadInPacketOtherThanMessage: return "binary data in an Engine.IO packet other than message"
        case .tooManyPackets(let limit): return "an Engine.IO payload of more than \(limit) packets"
        }
    }
}

extension EngineIOPacket {
    /// The WebSocket form: `<type>[<data>]` in a text frame; a binary message
    /// is sent as the raw bytes in a binary frame (engine.io-protocol v4, "WebSocket").
    public func encoded() -> EngineIOData {
        switch self {
        case .message(.binary(let bytes)): return .binary(bytes)
        default: return .text(encodedText())
        }
    }

    /// The text form of a packet whose payload is text.
    /// A binary message has no text form here; see `EngineIOPayload` for polling's `b<base64>`.
    public func encodedText() -> String {
        switch self {
        case .open(let handshake): return "0" + handshake.json.serialized()
        case .close: return "1"
        case .ping(let data): return "2" + data
        case .pong(let data): return "3" + data
        case .message(.text(let text)): return "4" + text
        case .message(.binary): preconditionFailure("binary message has no text form")
        case .upgrade: return "5"
        case .noop: return "6"
        }
    }

    /// Decodes one WebSocket frame. A binary frame is always a binary message.
    public init(decoding frame: EngineIOData) throws(EngineIOParseError) {
        switch frame {
        case .binary(let bytes): self = .message(.binary(bytes))
        case .text(let text): self = try EngineIOPacket(decodingText: text)
        }
    }

    /// Decodes `<type>[<data>]`.
    public init(decodingText text: String) throws(EngineIOParseError) {
        var text = text
        let result = text.withUTF8 { bytes in Result { () throws(EngineIOParseError) in try EngineIOPacket(decodingUTF8: bytes) } }
        self = try result.get()
    }

    /// Decodes `<type>[<data>]` from the UTF-8 bytes of a text frame, as they come off the
    /// socket: the data is made a `String` once, without a copy of the whole frame first.
    /// Bytes that are not valid UTF-8 are repaired (U+FFFD), as `String(decoding:as:)` does.
    public init(decodingUTF8 bytes: UnsafeBufferPointer<UInt8>) throws(EngineIOParseError) {
        guard let first = bytes.first else { throw .empty }
        // By bytes, not Characters: a combining mark after the type digit belongs to the data.
        // The type byte is ASCII, so one byte in is a scalar boundary.
        func rest() -> String { String(decoding: UnsafeBufferPointer(rebasing: bytes[1...]), as: UTF8.self) }
        switch first {
        case UInt8(ascii: "0"): self = .open(try EngineIOHandshake(decoding: rest()))
        case UInt8(ascii: "1"): self = .close
        case UInt8(ascii: "2"): self = .ping(rest())
        case UInt8(ascii: "3"): self = .pong(rest())
        case UInt8(ascii: "4"): self = .message(.text(rest()))
        case UInt8(ascii: "5"): self = .upgrade
        case UInt8(ascii: "6"): self = .noop
        default:
            let text = String(decoding: bytes, as: UTF8.self)
            throw .unknownPacketType(String(text.unicodeScalars.prefix(1)))
        }
    }
}
