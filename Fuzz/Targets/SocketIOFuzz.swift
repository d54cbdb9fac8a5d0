import EngineIOProtocol
import JSON
import SocketIOProtocol

extension Fuzz {
    /// Frames into one `SocketIOPacketDecoder`, in order, as a connection delivers them
    /// (see `frames(in:)` for how the bytes are cut). The decoder returns `nil` exactly while
    /// it waits for attachments; every packet it returns survives `encoded()`: a fresh
    /// decoder turns those frames back into an equal packet, which encodes to the same frames.
    public static func socketioPacket(_ input: UnsafeRawBufferPointer) {
        var decoder = SocketIOPacketDecoder()
        for frame in frames(in: input.bytes) {
            switch Result(catching: { () throws(SocketIOParseError) in try decoder.decode(frame) }) {
            case .success(let packet?):
                require(!decoder.isReconstructing, "a packet came out but the decoder still waits for attachments")
                checkRoundTrip(packet, maxAttachments: decoder.maxAttachments)
            case .success(nil):
                require(decoder.isReconstructing, "no packet came out, but the decoder waits for no attachment")
            case .failure:
                break
            }
        }
    }

    /// The input as frames: each is a header byte (lowest bit set: binary, else text), a
    /// length byte, and that many bytes (fewer at the end of the input). A length byte of 255
    /// is followed by the length in two bytes, big-endian (so 255 255 255: the rest).
    /// Text frames are made valid UTF-8 by repair, as `String(decoding:as:)` does.
    static func frames(in bytes: UnsafeBufferPointer<UInt8>) -> [EngineIOData] {
        var frames: [EngineIOData] = []
        var i = 0
        func nextByte() -> Int {
            guard i < bytes.count else { return 0 }
            defer { i += 1 }
            return Int(bytes[i])
        }
        while i < bytes.count {
            let isBinary = nextByte() & 1 == 1
            var length = nextByte()
            if length == 255 { length = nextByte() << 8 | nextByte() }
            let end = min(bytes.count, i + length)
            let payload = UnsafeBufferPointer(rebasing: bytes[i..<end])
            frames.append(isBinary ? .binary(Array(payload)) : .text(String(decoding: payload, as: UTF8.self)))
            i = end
        }
        return frames
    }

    /// `packet.encoded()`, decoded by a fresh decoder, gives the packet back: as `encoded()`
    /// writes it, BINARY_EVENT/BINARY_ACK exactly when the data holds bytes (a binary packet
    /// whose placeholders named no attachment becomes a plain one) and numbers as the JSON
    /// serializer writes them (`asSerialized`).
    static func checkRoundTrip(_ packet: SocketIOPacket, maxAttachments: Int) {
        let frames = packet.encoded()
        // Each attachment fills one placeholder, so a packet this decoder accepted never
        // encodes to more attachments than it accepts (one attachment named by eleven
        // placeholders did: Fuzz/Regressions/socketioPacket).
        require(frames.count - 1 <= maxAttachments, "\(frames[0]) encodes to \(frames.count - 1) attachments")

        var fresh = SocketIOPacketDecoder(maxAttachments: maxAttachments)
        var decoded: SocketIOPacket?
        for (n, frame) in frames.enumerated() {
            let result: SocketIOPacket?
            do {
                result = try fresh.decode(frame)
            } catch {
                fatalError("fuzz invariant violated: \(packet) encodes to \(frames), frame \(n) does not decode: \(error)")
            }
            if n < frames.count - 1 {
                require(result == nil, "\(packet) encodes to \(frames): a packet came out after frame \(n)")
            } else {
                decoded = result
            }
        }
        guard let decoded else {
            fatalError("fuzz invariant violated: \(packet) encodes to \(frames), which decode to no packet")
        }
        let expected = packet.asEncoded
        require(decoded == expected, "\(packet) encodes to \(frames), which decode to \(decoded)")

        let again = decoded.encoded()
        require(
            again.map(\.exactBytes).elementsEqual(frames.map(\.exactBytes), by: ==),
            "\(packet) re-encodes differently: \(frames) then \(again)"
        )
    }
}

extension SocketIOPacket {
    /// The packet as `encoded()` puts it on the wire: kind by whether the data holds bytes,
    /// numbers as serialized.
    var asEncoded: SocketIOPacket {
        var packet = self
        let hasBinary = data?.containsBinary ?? false
        switch kind {
        case .event, .binaryEvent: packet.kind = hasBinary ? .binaryEvent : .event
        case .ack, .binaryAck: packet.kind = hasBinary ? .binaryAck : .ack
        default: break
        }
        packet.data = data?.asSerialized
        return packet
    }
}
