import ChatServer
import Foundation
import JSON
public import Logging
import NIOCore
import PostgresNIO
public import SocketIOCluster
import Synchronization

/// Servers of one cluster talking through PostgreSQL as `@socket.io/postgres-adapter` does:
/// `NOTIFY` on the channel `socket.io#<namespace>` with the message's JSON, or, for a message
/// of 8,000 bytes or more or one with bytes, its MessagePack in the table
/// `socket_io_attachments` and a notification that says where (`attachmentId`). A heartbeat
/// when nothing else was said for `heartbeatInterval`; a server not heard for
/// `heartbeatTimeout` is out of the cluster. Old attachments are deleted every
/// `cleanupInterval`.
///
/// What comes through the database is checked as a client's input is: a notification that is
/// not a message is logged (at most once per 10 s) and dropped, an attachment larger than
/// `maximumAttachment` is not read.
public final class PostgresClusterBus: ClusterLink {
    public struct Options: Sendable {
        public var nsp = "/"
        public var channelPrefix = "socket.io"
        public var tableName = "socket_io_attachments"
        public var payloadThreshold = 8_000
        public var heartbeatInterval = Duration.seconds(5)
        public var heartbeatTimeout = Duration.seconds(10)
        public var cleanupInterval = Duration.seconds(30)
        public var maximumAttachment = 16 << 20
        public init() {}
    }

    /// This server's ID in the cluster: 16 hex digits, new at each start.
    public let uid: String
    public let options: Options
    public var channel: String { "\(options.channelPrefix)#\(options.nsp)" }

    private let location: PostgresChatStore.Location
    private let client: PostgresClient
    private let clientRunner: Task<Void, Never>
    private let logger: Logger
    private let onMessage: @Sendable (ClusterMessage) -> Void
    private let onLeave: @Sendable ([String]) -> Void
    private let onJoin: @Sendable (String) -> Void
    private let onListening: @Sendable () -> Void
    private let state = Mutex(State())
    /// Rings when `send` queued something (`State.outbox`), for the one task that publishes.
    private let doorbell: AsyncStream<Void>.Continuation
    private let rings: AsyncStream<Void>

    private struct State {
        var members = Membership<ContinuousClock.Instant>()
        var lastPublished = ContinuousClock.now
        var tasks: [Task<Void, Never>] = []
        var lastComplaint: ContinuousClock.Instant?
        var listening = false
        /// Messages queued by `send` and not published yet, in order, and their bytes.
        var outbox: [ClusterMessage] = []
        var outboxBytes = 0
        var dropped = 0
        var listeningWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// Joins the cluster: listens, says it is there (`initialHeartbeat`), and keeps the
    /// heartbeat, the expiry of silent servers and the cleanup going. `onMessage` hears every
    /// message from another server but heartbeats and closes; `onJoin` each server first
    /// heard (or that says it starts); `onLeave` the servers that left; `onListening` each
    /// time the channel is listened to (at start, and after it was lost).
    public static func start(
        _ location: PostgresChatStore.Location, options: Options = Options(), logger: Logger = Logger(label: "parley.cluster"),
        onMessage: @escaping @Sendable (ClusterMessage) -> Void, onJoin: @escaping @Sendable (String) -> Void = { _ in },
        onLeave: @escaping @Sendable ([String]) -> Void = { _ in }, onListening: @escaping @Sendable () -> Void = {}
    ) async throws -> PostgresClusterBus {
        let bus = PostgresClusterBus(
            location: location, options: options, logger: logger, onMessage: onMessage, onJoin: onJoin, onLeave: onLeave, onListening: onListening
        )
        // Servers starting together would race to create the table (IF NOT EXISTS does not
        // hold against a concurrent CREATE): one at a time, under the schema's advisory lock.
        do {
            try await bus.client.withTransaction(logger: logger) { connection in
                try await connection.query("SELECT pg_advisory_xact_lock(1885434465)", logger: logger)
                try await connection.query(
                    PostgresQuery(
                        unsafeSQL: "CREATE TABLE IF NOT EXISTS \(options.tableName) (id bigserial UNIQUE, created_at timestamptz DEFAULT NOW(), payload bytea)"
                    ),
                    logger: logger
                )
            }
        } catch let error as PostgresTransactionError {
            bus.clientRunner.cancel()
            throw error.closureError ?? error
        }
        bus.startTasks()
        await bus.untilListening()
        try await bus.publish(ClusterMessage(uid: bus.uid, nsp: options.nsp, type: .initialHeartbeat))
        return bus
    }

    private init(
        location: PostgresChatStore.Location, options: Options, logger: Logger,
        onMessage: @escaping @Sendable (ClusterMessage) -> Void, onJoin: @escaping @Sendable (String) -> Void,
        onLeave: @escaping @Sendable ([String]) -> Void, onListening: @escaping @Sendable () -> Void
    ) {
        uid = (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        self.options = options
        self.location = location
        self.logger = logger
        self.onMessage = onMessage
        self.onJoin = onJoin
        self.onLeave = onLeave
        self.onListening = onListening
        (rings, doorbell) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        client = location.pool(logger: logger)
        clientRunner = Task { [client] in await client.run() }
    }

    /// The other servers heard from, sorted.
    public var servers: [String] { state.withLock { $0.members.servers } }

    // MARK: Publishing

    /// Messages waiting to be published at most (a database that does not keep up, or is
    /// gone): past them new ones are dropped, and the log says how many.
    public static let maximumUnsent = 100_000

    /// Queues a message for the other servers; they get what is sent in the order sent.
    public func send(_ message: ClusterMessage) {
        let (accepted, report) = state.withLock { state -> (Bool, Int?) in
            let bytes = Self.estimate(message)
            guard state.outbox.count < Self.maximumUnsent, state.outboxBytes + bytes <= Self.maximumUnsentBytes else {
                state.dropped += 1
                guard WriteBehind.isDue(&state.lastComplaint) else { return (false, nil) }
                defer { state.dropped = 0 }
                return (false, state.dropped)
            }
            state.outbox.append(message)
            state.outboxBytes += bytes
            return (true, nil)
        }
        if let report { logger.error("the cluster's database does not keep up: messages to the other servers dropped", metadata: ["messages": "\(report)"]) }
        if accepted { doorbell.yield() }
    }

    /// Bytes of messages waiting to be published at most (their texts, counted as sent).
    public static let maximumUnsentBytes = 64 << 20

    /// What a message will weigh: its text's bytes, escapes counted at their worst.
    static func estimate(_ message: ClusterMessage) -> Int {
        func size(_ value: JSONValue?) -> Int {
            switch value {
            case .none, .null, .bool, .int, .double: return 8
            case .string(let text): return text.utf8.count * 6 + 2
            case .binary(let bytes): return bytes.count + 8
            case .array(let items): return items.reduce(2) { $0 + size($1) + 1 }
            case .object(let object): return object.reduce(2) { $0 + $1.key.utf8.count * 6 + size($1.value) + 4 }
            }
        }
        return 64 + size(message.data)
    }

    /// Most notifications sent in one statement.
    static let batch = 256

    /// Publishes what is queued, in order: the notifications of many messages in one statement
    /// (one round trip and one transaction, which PostgreSQL delivers in order), a message
    /// that needs an attachment on its own.
    private func drain() async {
        for await _ in rings {
            while true {
                let messages = state.withLock { state -> [ClusterMessage] in
                    let taken = Array(state.outbox.prefix(Self.batch))
                    state.outbox.removeFirst(taken.count)
                    state.outboxBytes -= taken.reduce(0) { $0 + Self.estimate($1) }
                    return taken
                }
                if messages.isEmpty { break }
                var payloads: [String] = []
                for message in messages {
                    let (_, text, attached) = payload(of: message)
                    if attached {
                        await flush(&payloads)
                        do { try await publish(message) } catch { complain("a cluster message could not be sent", error: error) }
                    } else {
                        payloads.append(text)
                    }
                }
                await flush(&payloads)
            }
        }
    }

    /// The message as sent (this bus's uid and namespace), its JSON, and whether it must go as
    /// an attachment instead: 8,000 bytes or more, or bytes JSON cannot carry.
    private func payload(of message: ClusterMessage) -> (message: ClusterMessage, text: String, attached: Bool) {
        var message = message
        message.uid = uid
        message.nsp = options.nsp
        let text = message.json.serialized()
        let withBytes = [.broadcast, .broadcastAck, .serverSideEmit, .serverSideEmitResponse].contains(message.type) && (message.data?.containsBinary ?? false)
        return (message, text, withBytes || text.utf8.count >= options.payloadThreshold)
    }

    /// Sends the payloads gathered so far, in one statement.
    private func flush(_ payloads: inout [String]) async {
        guard !payloads.isEmpty else { return }
        defer { payloads = [] }
        state.withLock { $0.lastPublished = ContinuousClock.now }
        // While the database cannot be reached, the batch is tried again (what comes meanwhile
        // waits behind it, within the bounds); for at most 30 s, then it is given up.
        var delay = Duration.milliseconds(250)
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            do {
                try await client.query(
                    "SELECT pg_notify(\(channel), payload) FROM unnest(\(payloads)::text[]) WITH ORDINALITY AS sent(payload, n) ORDER BY n",
                    logger: logger
                )
                return
            } catch {
                guard PostgresChatStore.isTransient(error), ContinuousClock.now + delay < deadline, !Task.isCancelled else {
                    complain("cluster messages could not be sent: dropped", error: error)
                    return
                }
                complain("cluster messages could not be sent yet: trying again", error: error)
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(4))
            }
        }
    }

    /// Sends a message to the other servers (its `uid` and `nsp` are this bus's).
    public func publish(_ message: ClusterMessage) async throws {
        let (message, text, attached) = payload(of: message)
        state.withLock { $0.lastPublished = ContinuousClock.now }
        if attached {
            // Too large for a notification, or bytes JSON cannot carry: the attachments table.
            var id: Int64 = 0
            let rows = try await client.query(
                PostgresQuery(unsafeSQL: "INSERT INTO \(options.tableName) (payload) VALUES ($1) RETURNING id", binds: Self.binds(ByteBuffer(bytes: MessagePack.encode(message.json)))),
                logger: logger
            )
            for try await found in rows.decode(Int64.self) { id = found }
            // node-postgres hands a bigint over as a string: so does the header.
            let header: JSONValue = ["uid": .string(uid), "nsp": .string(options.nsp), "type": .int(message.type.rawValue), "attachmentId": .string(String(id))]
            try await notify(header.serialized())
        } else {
            try await notify(text)
        }
    }

    private func notify(_ payload: String) async throws {
        try await client.query("SELECT pg_notify(\(channel), \(payload))", logger: logger)
    }

    private static func binds(_ buffer: ByteBuffer) -> PostgresBindings {
        var bindings = PostgresBindings()
        bindings.append(buffer, context: .default)
        return bindings
    }

    // MARK: Listening

    private func startTasks() {
        let listener = Task { await self.listen() }
        let heartbeat = Task { await self.beat() }
        let cleanup = Task { await self.clean() }
        let sender = Task { await self.drain() }
        state.withLock { $0.tasks = [listener, heartbeat, cleanup, sender] }
    }

    private func untilListening() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                if state.listening { return true }
                state.listeningWaiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// One connection of its own listens; when it goes, another is made after 1–3 s.
    private func listen() async {
        while !Task.isCancelled {
            do {
                let connection = try await PostgresConnection.connect(configuration: location.connection, id: 1, logger: logger)
                defer { Task { try? await connection.close() } }
                try await connection.listen(on: channel) { notifications in
                    let (waiters, again) = state.withLock { state in
                        defer {
                            state.listening = true
                            state.listeningWaiters = []
                        }
                        return (state.listeningWaiters, state.listening)
                    }
                    for waiter in waiters { waiter.resume() }
                    // Listening (first, or again): what was said before is not heard; the
                    // application catches up from the database.
                    onListening()
                    if again {
                        // What was said while this server was not listening is lost (NOTIFY keeps
                        // nothing): it says it is here again, and every server answers as to a
                        // newcomer (who is online there), as this one does to them.
                        logger.notice("the cluster's channel is back: asking the others to say again who is online")
                        try? await publish(ClusterMessage(uid: uid, type: .initialHeartbeat))
                        let known = state.withLock { state in
                            defer { state.members = Membership() }
                            return state.members.servers
                        }
                        for server in known { onJoin(server) }
                    }
                    for try await notification in notifications {
                        await receive(notification.payload)
                    }
                }
            } catch {
                if Task.isCancelled { return }
                complain("the cluster's channel was lost: listening again", error: error)
            }
            try? await Task.sleep(for: .milliseconds(Int.random(in: 1_000...3_000)))
        }
    }

    /// One notification: a message, or where its attachment is.
    func receive(_ payload: String) async {
        do {
            let value = try JSONValue(parsing: payload)
            var message = try ClusterMessage(value)
            guard message.uid != uid else { return }  // our own
            if let attachment = value.objectValue?["attachmentId"] {
                guard let id = attachment.stringValue.flatMap({ Int64($0) }) ?? attachment.intValue.map(Int64.init) else {
                    throw ClusterMessage.DecodingError(description: "an attachmentId that is no number")
                }
                let attached = try await fetchAttachment(id)
                guard attached.uid == message.uid, attached.type == message.type else {
                    throw ClusterMessage.DecodingError(description: "an attachment that is not what its notification says")
                }
                message = attached
            }
            handle(message)
        } catch {
            complain("a cluster message was not understood: dropped", error: error)
        }
    }

    private func fetchAttachment(_ id: Int64) async throws -> ClusterMessage {
        let rows = try await client.query(
            PostgresQuery(
                unsafeSQL: "SELECT payload, octet_length(payload) FROM \(options.tableName) WHERE id = $1 AND octet_length(payload) <= $2",
                binds: {
                    var bindings = PostgresBindings()
                    bindings.append(id, context: .default)
                    bindings.append(Int64(options.maximumAttachment), context: .default)
                    return bindings
                }()
            ),
            logger: logger
        )
        for try await (payload, _) in rows.decode((ByteBuffer, Int32).self) {
            return try ClusterMessage(try MessagePack.decode(Array(buffer: payload)))
        }
        throw ClusterMessage.DecodingError(description: "no attachment \(id) (or one over \(options.maximumAttachment) bytes)")
    }

    private func handle(_ message: ClusterMessage) {
        guard message.nsp == options.nsp else { return }
        let joined = state.withLock { $0.members.heard(message.uid, at: ContinuousClock.now) }
        // A server that says it starts (or listens again) is new, whether heard before or not.
        if (joined || message.type == .initialHeartbeat), message.type != .adapterClose { onJoin(message.uid) }
        switch message.type {
        case .initialHeartbeat:
            // A server just came: it learns of this one.
            Task { try? await self.publish(ClusterMessage(uid: self.uid, type: .heartbeat)) }
        case .heartbeat:
            break
        case .adapterClose:
            let left = state.withLock { $0.members.closed(message.uid) }
            if left { onLeave([message.uid]) }
        default:
            onMessage(message)
        }
    }

    /// A heartbeat when nothing else was said for an interval; servers silent for the timeout leave.
    private func beat() async {
        let tick = min(options.heartbeatInterval, .seconds(1))
        while !Task.isCancelled {
            try? await Task.sleep(for: tick)
            if Task.isCancelled { return }
            let now = ContinuousClock.now
            let (due, gone) = state.withLock { state in
                (now - state.lastPublished >= options.heartbeatInterval, state.members.expire(before: now - options.heartbeatTimeout))
            }
            if due { try? await publish(ClusterMessage(uid: uid, type: .heartbeat)) }
            if !gone.isEmpty {
                logger.notice(
                    "servers left the cluster without a word (no heartbeat)",
                    metadata: ["count": "\(gone.count)", "servers": "\(gone.prefix(10).joined(separator: ","))\(gone.count > 10 ? ",…" : "")"]
                )
                onLeave(gone)
            }
        }
    }

    private func clean() async {
        let milliseconds = Int(options.cleanupInterval.components.seconds * 1_000 + options.cleanupInterval.components.attoseconds / 1_000_000_000_000_000)
        while !Task.isCancelled {
            try? await Task.sleep(for: options.cleanupInterval)
            if Task.isCancelled { return }
            do {
                try await client.query(
                    PostgresQuery(unsafeSQL: "DELETE FROM \(options.tableName) WHERE created_at < now() - interval '\(milliseconds) milliseconds'"),
                    logger: logger
                )
            } catch {
                complain("old cluster attachments could not be deleted", error: error)
            }
        }
    }

    private func complain(_ what: Logger.Message, error: any Error) {
        if state.withLock({ WriteBehind.isDue(&$0.lastComplaint) }) { logger.warning(what, metadata: ["error": "\(String(reflecting: error))"]) }
    }

    // MARK: Leaving

    /// Says it leaves (`adapterClose`), then stops listening and disconnects.
    public func close() async {
        try? await publish(ClusterMessage(uid: uid, type: .adapterClose))
        await stop()
    }

    /// Stops without a word, as a server that dies (for tests of the expiry).
    func stop() async {
        doorbell.finish()
        let tasks = state.withLock { $0.tasks }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
        clientRunner.cancel()
        await clientRunner.value
    }
}
