public import JSON

/// What servers of one cluster say to each other, in the format of socket.io-adapter's
/// `ClusterAdapter` (the one the official Redis, PostgreSQL and MongoDB adapters carry), so
/// that a Node.js socket.io server with `@socket.io/postgres-adapter` could be one of them.
///
/// A message is a JSON object: `uid`, the sending server's ID (16 hex digits, new at each
/// start); `nsp`, the namespace (`"/"`); `type`, a number (`MessageType`); and, for most
/// types, `data`. README's "Many servers, one chat" says it in full.
public struct ClusterMessage: Sendable, Hashable {
    /// socket.io-adapter's `MessageType`, by number.
    public enum MessageType: Int, Sendable, Hashable, CaseIterable {
        case initialHeartbeat = 1
        case heartbeat
        case broadcast
        case socketsJoin
        case socketsLeave
        case disconnectSockets
        case fetchSockets
        case fetchSocketsResponse
        case serverSideEmit
        case serverSideEmitResponse
        case broadcastClientCount
        case broadcastAck
        case adapterClose
    }

    public var uid: String
    public var nsp: String
    public var type: MessageType
    public var data: JSONValue?

    public init(uid: String, nsp: String = "/", type: MessageType, data: JSONValue? = nil) {
        self.uid = uid
        self.nsp = nsp
        self.type = type
        self.data = data
    }

    /// The message as the adapters write it.
    public var json: JSONValue {
        var object: JSONObject = ["uid": .string(uid), "nsp": .string(nsp), "type": .int(type.rawValue)]
        if let data { object["data"] = data }
        return .object(object)
    }

    public struct DecodingError: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// A message from another server: every field checked (a database is shared, and what
    /// comes through it is not trusted more than a client).
    public init(_ value: JSONValue) throws(DecodingError) {
        guard let object = value.objectValue else { throw DecodingError(description: "not an object") }
        guard let uid = object["uid"]?.stringValue, (1...64).contains(uid.utf8.count) else { throw DecodingError(description: "no uid") }
        guard let number = object["type"]?.intValue, let type = MessageType(rawValue: number) else {
            throw DecodingError(description: "no known type")
        }
        // The PostgreSQL adapter's header for a payload in the attachments table has no nsp.
        let nsp = object["nsp"]?.stringValue ?? "/"
        self.init(uid: uid, nsp: nsp, type: type, data: object["data"])
    }

    // MARK: Broadcasts

    /// A broadcast of an event to the sockets of `rooms` (all, when empty) but those in
    /// `except` (socket.io's `BroadcastOptions`; each socket is also in a room named by its ID).
    public static func broadcast(uid: String, nsp: String = "/", event: String, arguments: [JSONValue], rooms: [String], except: [String]) -> ClusterMessage {
        // socket.io-parser's packet object: type 2 is EVENT (5, BINARY_EVENT, when there are bytes).
        let packet: JSONObject = ["type": .int(arguments.contains(where: \.containsBinary) ? 5 : 2), "data": .array([.string(event)] + arguments), "nsp": .string(nsp)]
        let options: JSONObject = ["rooms": .array(rooms.map(JSONValue.string)), "except": .array(except.map(JSONValue.string)), "flags": .object([:])]
        return ClusterMessage(uid: uid, nsp: nsp, type: .broadcast, data: .object(["packet": .object(packet), "opts": .object(options)]))
    }

    /// What a broadcast asks for: the event, its arguments, the rooms and the exceptions.
    public struct Broadcast: Sendable, Hashable {
        public var event: String
        public var arguments: [JSONValue]
        public var rooms: [String]
        public var except: [String]
        /// Only this server's sockets (socket.io's `local` flag): not to be sent on.
        public var local: Bool
        /// Set when the sender waits for acknowledgements (not asked for by Parley).
        public var requestID: String?
    }

    /// The broadcast this message carries, when it is one of an event.
    public var broadcast: Broadcast? {
        guard type == .broadcast, let data = data?.objectValue, let packet = data["packet"]?.objectValue,
            let packetType = packet["type"]?.intValue, packetType == 2 || packetType == 5,
            let items = packet["data"]?.arrayValue, let event = items.first?.stringValue,
            let options = data["opts"]?.objectValue
        else { return nil }
        func strings(_ key: String) -> [String]? {
            guard let value = options[key] else { return [] }
            guard let array = value.arrayValue else { return nil }
            let strings = array.compactMap(\.stringValue)
            return strings.count == array.count ? strings : nil
        }
        guard let rooms = strings("rooms"), let except = strings("except") else { return nil }
        let local = options["flags"]?.objectValue?["local"]?.boolValue ?? false
        return Broadcast(event: event, arguments: Array(items.dropFirst()), rooms: rooms, except: except, local: local, requestID: data["requestId"]?.stringValue)
    }

    // MARK: Server-side emits

    /// `io.serverSideEmit(event, …)`: an event for the other servers themselves.
    public static func serverSideEmit(uid: String, nsp: String = "/", event: String, arguments: [JSONValue]) -> ClusterMessage {
        ClusterMessage(uid: uid, nsp: nsp, type: .serverSideEmit, data: .object(["packet": .array([.string(event)] + arguments)]))
    }

    /// The event and arguments of a server-side emit.
    public var serverSideEmit: (event: String, arguments: [JSONValue])? {
        guard type == .serverSideEmit, let packet = data?.objectValue?["packet"]?.arrayValue, let event = packet.first?.stringValue else { return nil }
        return (event, Array(packet.dropFirst()))
    }
}

/// Where a server's cluster messages go: a bus (PostgreSQL's, in production) that carries
/// them to the other servers, in the order sent. `send` returns at once.
public protocol ClusterLink: Sendable {
    /// This server's ID in the cluster.
    var uid: String { get }
    func send(_ message: ClusterMessage)
}
