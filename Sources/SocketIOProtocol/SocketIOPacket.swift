public import EngineIOProtocol
public import JSON

/// A Socket.IO v5 packet (socket.io-protocol v5, "Exchange protocol").
public struct SocketIOPacket: Sendable, Hashable {
    public enum Kind: Int, Sendable, Hashable {
        case connect = 0
        case disconnect = 1
        case event = 2
        case ack = 3
        case connectError = 4
        case binaryEvent = 5
        case binaryAck = 6
    }

    public var kind: Kind
    public var namespace: String
    /// The acknowledgement id of an EVENT that wants an ACK, or of the ACK itself.
    public var id: Int?
    /// The payload, with binary values in place (not as placeholders).
    public var data: JSONValue?

    public init(kind: Kind, namespace: String = "/", id: Int? = nil, data: JSONValue? = nil) {
        self.kind = kind
        self.namespace = namespace
        self.id = id
        self.data = data
    }

    /// An EVENT (or BINARY_EVENT, when an argument holds bytes).
    public static func event(
        _ name: String,
        _ arguments: [JSONValue],
        namespace: String = "/",
        id: Int? = nil
    ) -> SocketIOPacket {
        let data = JSONValue.array([.string(name)] + arguments)
        return SocketIOPacket(kind: data.containsBinary ? .binaryEvent : .event, namespace: namespace, id: id, data: data)
    }

    /// An ACK (or BINARY_ACK, when an argument holds bytes).
    public static func ack(_ arguments: [JSONValue], id: Int, namespace: String = "/") -> SocketIOPacket {
        let data = JSONValue.array(arguments)
        return SocketIOPacket(kind: data.containsBinary ? .binaryAck : .ack, namespace: namespace, id: id, data: data)
    }

    /// For EVENT packets: the event name and its arguments.
    public var event: (name: String, arguments: [JSONValue])? {
        var copy = self
        return copy.takeEvent()
    }

    /// `event`, taking the arguments out of the packet: no copy of the array is made
    /// (the packet is left without its data).
    public mutating func takeEvent() -> (name: String, arguments: [JSONValue])? {
        guard kind == .event || kind == .binaryEvent, case .array(var items)? = data,
            case .string(let name)? = items.first
        else { return nil }
        data = nil  // `items` is now the array's only owner: dropping the name happens in place
        items.removeFirst()
        return (name, items)
    }
}

/// Whether a peer may not send (or we emit) an event of this name: the client's own
/// lifecycle events (socket.io-parser's RESERVED_EVENTS). A switch, not a set: it is
/// checked for every event received, and comparing short strings beats hashing them.
public func isReservedEventName(_ name: String) -> Bool {
    switch name {
    case "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener": return true
    default: return false
    }
}

// MARK: - Encoding

extension SocketIOPacket {
    /// The frames for this packet: the text packet, then one binary frame per
    /// attachment (socket.io-protocol v5, "Packet encoding").
    ///
    /// `<type>[<attachments>-][<namespace>,][<id>][JSON]`, namespace omitted for `/`.
    public func encoded() -> [EngineIOData] {
        var attachments: [[UInt8]] = []
        let payload = data.map { Self.deconstruct($0, into: &attachments) }
        var kind = self.kind
        if !attachments.isEmpty {
            if kind == .event { kind = .binaryEvent }
            if kind == .ack { kind = .binaryAck }
        } else {
            if kind == .binaryEvent { kind = .event }
            if kind == .binaryAck { kind = .ack }
        }
        var out: [UInt8] = []
        out.reserveCapacity(64)
        Self.writeHeader(kind, attachments: attachments.count, namespace: namespace, id: id, to: &out)
        payload?.write(to: &out)
        return [.text(String(decoding: out, as: UTF8.self))] + attachments.map(EngineIOData.binary)
    }

    /// An EVENT whose arguments are serialized already (no binary values): the text frame.
    /// For a large payload assembled from parts serialized once (see `JSONFragment`).
    public static func encodedEvent(
        _ name: String,
        _ arguments: [JSONFragment],
        namespace: String = "/",
        id: Int? = nil
    ) -> EngineIOData {
        var header: [UInt8] = []
        writeHeader(.event, attachments: 0, namespace: namespace, id: id, to: &header)
        header.append(UInt8(ascii: "["))
        JSONValue.string(name).write(to: &header)
        var out = String(decoding: header, as: UTF8.self)
        out.reserveCapacity(arguments.reduce(out.utf8.count + 1) { $0 + $1.byteCount + 1 })
        for argument in arguments {
            out += ","
            out += argument.text
        }
        out += "]"
        return .text(out)
    }

    /// `<type>[<attachments>-][<namespace>,][<id>]`.
    static func writeHeader(_ kind: Kind, attachments: Int, namespace: String, id: Int?, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "0") + UInt8(kind.rawValue))
        if kind == .binaryEvent || kind == .binaryAck {
            out.append(contentsOf: String(attachments).utf8)
            out.append(UInt8(ascii: "-"))
        }
        if namespace != "/" {
            out.append(contentsOf: namespace.utf8)
            out.append(UInt8(ascii: ","))
        }
        if let id { out.append(contentsOf: String(id).utf8) }
    }

    /// Replaces each `binary` with `{"_placeholder":true,"num":N}`, collecting the bytes.
    static func deconstruct(_ value: JSONValue, into attachments: inout [[UInt8]]) -> JSONValue {
        switch value {
        case .binary(let bytes):
            attachments.append(bytes)
            return ["_placeholder": true, "num": .int(attachments.count - 1)]
        case .array(let items):
            guard value.containsBinary else { return value }
            return .array(items.map { deconstruct($0, into: &attachments) })
        case .object(let members):
            guard value.containsBinary else { return value }
            // Sorted, so attachment numbers follow the serializer's key order.
            var result = JSONObject()
            for member in members.sorted(by: { $0.key < $1.key }) {
                result[member.key] = deconstruct(member.value, into: &attachments)
            }
            return .object(result)
        default:
            return value
        }
    }
}

// MARK: - Decoding

/// Why data from the peer is not a valid Socket.IO packet.
public enum SocketIOParseError: Error, Sendable, Equatable, CustomStringConvertible {
    case empty
    case unknownPacketType(String)
    case invalidAttachmentCount
    case tooManyAttachments(Int, limit: Int)
    case invalidAckID
    case invalidJSON(String)
    case invalidPayload(SocketIOPacket.Kind)
    case reservedEventName(String)
    case unexpectedBinary
    case unexpectedText
    case invalidPlaceholder
    case repeatedPlaceholder(Int)
    case attachmentsTooLarge(limit: Int)

    public var description: String {
        switch self {
        case .empty: return "empty Socket.IO packet"
        case .unknownPacketType(let t): return "unknown Socket.IO packet type \(t.debugDescription)"
        case .invalidAttachmentCount: return "invalid attachment count in a binary packet"
        case .tooManyAttachments(let n, let limit): return "\(n) attachments is more than the \(limit) allowed"
        case .invalidAckID: return "invalid acknowledgement id"
        case .invalidJSON(let why): return "invalid payload: \(why)"
        case .invalidPayload(let kind): return "invalid payload for a \(kind) packet"
        case .reservedEventName(let name): return "the event name \(name.debugDescription) is reserved"
        case .unexpectedBinary: return "binary data when no attachment was expected"
        case .unexpectedText: return "a text packet while binary attachments were still expected"
        case .invalidPlaceholder: return "an attachment placeholder that names no attachment"
        case .repeatedPlaceholder(let n): return "attachment \(n) named by more than one placeholder"
        case .attachmentsTooLarge(let limit): return "binary attachments of more than \(limit) bytes in one packet"
        }
    }
}

/// Turns frames into packets. Stateful only for binary packets, whose
/// attachments arrive as the frames after the text packet.
public struct SocketIOPacketDecoder: Sendable {
    /// Most attachments one packet may announce, and most bytes they may hold together (a
    /// bound on what a peer can make us buffer while its packet is incomplete).
    public var maxAttachments: Int
    public var maxAttachmentBytes: Int

    private var pending: (packet: SocketIOPacket, expected: Int, received: [[UInt8]], bytes: Int)?

    public init(maxAttachments: Int = 10, maxAttachmentBytes: Int = .max) {
        self.maxAttachments = maxAttachments
        self.maxAttachmentBytes = maxAttachmentBytes
    }

    /// True while a binary packet waits for its attachments.
    public var isReconstructing: Bool { pending != nil }

    /// Decodes one frame; `nil` while a binary packet still waits for attachments.
    public mutating func decode(_ frame: EngineIOData) throws(SocketIOParseError) -> SocketIOPacket? {
        switch frame {
        case .text(let text):
            guard pending == nil else {
                pending = nil
                throw .unexpectedText
            }
            let (packet, attachments) = try Self.decodeText(text, maxAttachments: maxAttachments)
            if attachments == 0 { return packet }
            pending = (packet, attachments, [], 0)
            return nil
        case .binary(let bytes):
            guard var current = pending else { throw .unexpectedBinary }
            current.bytes += bytes.count
            guard current.bytes <= maxAttachmentBytes else {
                pending = nil
                throw .attachmentsTooLarge(limit: maxAttachmentBytes)
            }
            current.received.append(bytes)
            guard current.received.count == current.expected else {
                pending = current
                return nil
            }
            pending = nil
            var packet = current.packet
            packet.data = try packet.data.map { value throws(SocketIOParseError) in
                try Self.reconstruct(value, attachments: current.received)
            }
            return packet
        }
    }

    /// Decodes the text form, returning the packet (placeholders still in place)
    /// and how many attachments follow.
    static func decodeText(_ text: String, maxAttachments: Int) throws(SocketIOParseError) -> (SocketIOPacket, Int) {
        var text = text
        let result = text.withUTF8 { bytes in
            Result { () throws(SocketIOParseError) -> (SocketIOPacket, Int) in
                try decodeText(bytes, maxAttachments: maxAttachments)
            }
        }
        return try result.get()
    }

    static func decodeText(
        _ bytes: UnsafeBufferPointer<UInt8>,
        maxAttachments: Int
    ) throws(SocketIOParseError) -> (SocketIOPacket, Int) {
        guard let first = bytes.first else { throw .empty }
        guard first >= UInt8(ascii: "0"), let kind = SocketIOPacket.Kind(rawValue: Int(first) - 48) else {
            throw .unknownPacketType(String(decoding: [first], as: UTF8.self))
        }
        var i = 1
        func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

        var attachments = 0
        if kind == .binaryEvent || kind == .binaryAck {
            let start = i
            while i < bytes.count, bytes[i] != UInt8(ascii: "-") {
                guard isDigit(bytes[i]), i - start < 6 else { throw .invalidAttachmentCount }
                i += 1
            }
            guard i < bytes.count, i > start else { throw .invalidAttachmentCount }
            attachments = Int(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self))!
            guard attachments <= maxAttachments else { throw .tooManyAttachments(attachments, limit: maxAttachments) }
            i += 1  // '-'
        }

        var namespace = "/"
        if i < bytes.count, bytes[i] == UInt8(ascii: "/") {
            let start = i
            while i < bytes.count, bytes[i] != UInt8(ascii: ",") { i += 1 }
            namespace = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
            if i < bytes.count { i += 1 }  // ','
        }

        var id: Int?
        if i < bytes.count, isDigit(bytes[i]) {
            let start = i
            while i < bytes.count, isDigit(bytes[i]) { i += 1 }
            guard i - start <= 15 else { throw .invalidAckID }
            id = Int(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self))
        }

        var data: JSONValue?
        if i < bytes.count {
            do {
                data = try JSONValue(parsingUTF8: UnsafeBufferPointer(rebasing: bytes[i...]))
            } catch {
                throw .invalidJSON(error.description)
            }
        }

        let packet = SocketIOPacket(kind: kind, namespace: namespace, id: id, data: data)
        try validate(packet)
        return (packet, attachments)
    }

    /// The payload rules of the reference parser (socket.io-parser `isPayloadValid`).
    static func validate(_ packet: SocketIOPacket) throws(SocketIOParseError) {
        switch packet.kind {
        case .connect:
            guard packet.data == nil || packet.data?.objectValue != nil else { throw .invalidPayload(.connect) }
        case .disconnect:
            guard packet.data == nil else { throw .invalidPayload(.disconnect) }
        case .connectError:
            switch packet.data {
            case .string?, .object?: break
            default: throw .invalidPayload(.connectError)
            }
        case .event, .binaryEvent:
            guard case .array(let items)? = packet.data, case .string(let name)? = items.first else {
                throw .invalidPayload(packet.kind)
            }
            guard !isReservedEventName(name) else { throw .reservedEventName(name) }
        case .ack, .binaryAck:
            guard packet.id != nil, packet.data?.arrayValue != nil else { throw .invalidPayload(packet.kind) }
        }
    }

    /// Puts attachments back where their placeholders stand.
    /// Puts the attachments in place of their placeholders. Each attachment fills one
    /// placeholder: a packet whose placeholders name one attachment several times would
    /// decode into more bytes than it carried, and re-encode into more attachments than a
    /// decoder allows (found by the fuzzer: one attachment, eleven placeholders).
    static func reconstruct(_ value: JSONValue, attachments: [[UInt8]]) throws(SocketIOParseError) -> JSONValue {
        var used = [Bool](repeating: false, count: attachments.count)
        return try reconstruct(value, attachments: attachments, used: &used)
    }

    private static func reconstruct(_ value: JSONValue, attachments: [[UInt8]], used: inout [Bool]) throws(SocketIOParseError) -> JSONValue {
        switch value {
        case .object(let members):
            if members["_placeholder"] == .bool(true) {
                guard let n = members["num"]?.intValue, attachments.indices.contains(n) else {
                    throw .invalidPlaceholder
                }
                guard !used[n] else { throw .repeatedPlaceholder(n) }
                used[n] = true
                return .binary(attachments[n])
            }
            var result = JSONObject()
            for (key, member) in members { result[key] = try reconstruct(member, attachments: attachments, used: &used) }
            return .object(result)
        case .array(let items):
            var result: [JSONValue] = []
            result.reserveCapacity(items.count)
            for item in items { result.append(try reconstruct(item, attachments: attachments, used: &used)) }
            return .array(result)
        default:
            return value
        }
    }
}
