import EngineIOProtocol
import JSON

extension Fuzz {
    /// One WebSocket frame. The three decoding entry points agree (the byte decoder repairs
    /// invalid UTF-8 as `String(decoding:as:)` does, so it must give what decoding the
    /// repaired string gives); a decoded packet re-encodes to a frame that decodes to an
    /// equal packet, and re-encodes to the same bytes. The bytes as a binary frame are a
    /// binary message. The bytes as a handshake's JSON text: a handshake that decodes
    /// survives its own JSON form.
    public static func engineioPacket(_ input: UnsafeRawBufferPointer) {
        let bytes = input.bytes
        let fromBytes = Result { () throws(EngineIOParseError) in try EngineIOPacket(decodingUTF8: bytes) }
        let text = String(decoding: bytes, as: UTF8.self)
        let fromText = Result { () throws(EngineIOParseError) in try EngineIOPacket(decodingText: text) }
        let fromFrame = Result { () throws(EngineIOParseError) in try EngineIOPacket(decoding: .text(text)) }
        require(fromBytes == fromText, "decodingUTF8 and decodingText disagree: \(fromBytes) vs \(fromText)")
        require(fromFrame == fromText, "decoding(.text) and decodingText disagree: \(fromFrame) vs \(fromText)")
        if case .success(let packet) = fromBytes { checkRoundTrip(packet) }

        let binary = Array(bytes)
        let fromBinary = Result { () throws(EngineIOParseError) in try EngineIOPacket(decoding: .binary(binary)) }
        require(fromBinary == .success(.message(.binary(binary))), "a binary frame is not a binary message: \(fromBinary)")
        checkRoundTrip(.message(.binary(binary)))

        if case .success(let handshake) = Result(catching: { () throws(EngineIOParseError) in try EngineIOHandshake(decoding: text) }) {
            let json = handshake.json.serialized()
            let again = Result { () throws(EngineIOParseError) in try EngineIOHandshake(decoding: json) }
            require(again == .success(handshake), "handshake \(handshake) → \(json.debugDescription) → \(again)")
        }
    }

    /// A polling body. A decoded list of packets encodes to a body that decodes to an equal
    /// list, and encodes again to the same bytes.
    public static func engineioPayload(_ input: UnsafeRawBufferPointer) {
        // As the server reads a POST body (EngineIOServer: String(decoding:as:)).
        let body = String(decoding: input.bytes, as: UTF8.self)
        guard case .success(let packets) = Result(catching: { () throws(EngineIOParseError) in try EngineIOPayload.decode(body) })
        else { return }
        for packet in packets { checkRoundTrip(packet) }
        let encoded = EngineIOPayload.encode(packets)
        let again = Result { () throws(EngineIOParseError) in try EngineIOPayload.decode(encoded) }
        require(
            again == .success(packets),
            "payload \(body.debugDescription) decoded to \(packets), re-encoded as \(encoded.debugDescription), decodes to \(again)"
        )
        if case .success(let decodedAgain) = again {
            let reencoded = EngineIOPayload.encode(decodedAgain)
            require(
                reencoded.bytes == encoded.bytes,
                "payload re-encoding differs: \(encoded.debugDescription) then \(reencoded.debugDescription)"
            )
        }
    }

    /// encode → decode gives an equal packet; encoding that gives the same frame, byte for byte.
    static func checkRoundTrip(_ packet: EngineIOPacket) {
        let frame = packet.encoded()
        let decoded: EngineIOPacket
        do {
            decoded = try EngineIOPacket(decoding: frame)
        } catch {
            fatalError("fuzz invariant violated: \(packet) encodes to \(frame), which does not decode: \(error)")
        }
        require(decoded == packet, "\(packet) encodes to \(frame), which decodes to \(decoded)")
        require(decoded.encoded().exactBytes == frame.exactBytes, "\(packet) re-encodes differently: \(frame) then \(decoded.encoded())")
    }
}

extension EngineIOData {
    /// The frame's bytes with its kind, for exact comparison (`==` compares text as `String`).
    var exactBytes: (isText: Bool, bytes: [UInt8]) {
        switch self {
        case .text(let text): return (true, text.bytes)
        case .binary(let bytes): return (false, bytes)
        }
    }
}
