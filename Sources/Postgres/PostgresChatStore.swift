public import ChatServer
import ChatSchema
public import Foundation
public import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// Sessions and messages in PostgreSQL (`parley-server --postgres URL`), so that a restart
/// loses neither; the same rules as the SQLite store (`SQLiteChatStore`): written behind the
/// server's memory, one transaction per batch of changes (a statement per run of changes of
/// one kind, not one per change), at most `maxPendingChanges` waiting (past them new messages
/// are kept in memory only, sessions never shed), failures logged at most once per 10 s.
///
/// The schema is versioned (`parley_schema`) and migrated at start, under an advisory lock, so
/// that servers starting together on one database migrate it once. Message texts are kept as
/// their UTF-8 bytes (`bytea`): a text column refuses U+0000, which a client may send, and one
/// such message would have failed the whole batch of everyone's messages with it.
public final class PostgresChatStore: ChatStore {
    /// Where the database is: a `postgres://user:password@host:port/database` URL; the
    /// password may come from `PGPASSWORD` instead. The description leaves the password out.
    public struct Location: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var username: String
        public var password: String?
        public var database: String

        public init(url: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(LocationError) {
            guard let components = URLComponents(string: url), let scheme = components.scheme,
                scheme == "postgres" || scheme == "postgresql"
            else { throw LocationError(description: "expected postgres://user[:password]@host[:port]/database") }
            guard let host = components.host, !host.isEmpty else { throw LocationError(description: "the URL names no host") }
            guard let username = components.user, !username.isEmpty else { throw LocationError(description: "the URL names no user") }
            let port = components.port ?? 5432
            guard (1...65_535).contains(port) else { throw LocationError(description: "the port must be from 1 to 65535") }
            let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
            self.host = host
            self.port = port
            self.username = username
            password = components.password ?? environment["PGPASSWORD"]
            database = path.isEmpty ? username : path
        }

        public var description: String { "postgres://\(username)@\(host):\(port)/\(database)" }

        /// A pool of a few connections to it (run it with `run()`). The pool's own chatter (it
        /// warns when a lease comes a moment before its run loop starts) stays out of the log:
        /// every failure that matters reaches a query, whose error its user logs.
        func pool(logger: Logger, options: (inout PostgresClient.Configuration.Options) -> Void = { _ in }) -> PostgresClient {
            var configuration = PostgresClient.Configuration(host: host, port: port, username: username, password: password, database: database, tls: .disable)
            configuration.options.maximumConnections = 4
            options(&configuration.options)
            var background = logger
            background.logLevel = .error
            return PostgresClient(configuration: configuration, backgroundLogger: background)
        }

        var connection: PostgresConnection.Configuration {
            var configuration = PostgresConnection.Configuration(host: host, port: port, username: username, password: password, database: database, tls: .disable)
            configuration.options.connectTimeout = .seconds(5)
            return configuration
        }
    }

    public struct LocationError: Error, CustomStringConvertible {
        public let description: String
    }

    private let client: PostgresClient
    private let runner: Task<Void, Never>
    private let logger: Logger
    public let location: Location
    /// The changes waiting to be written, in order (the SQLite store's queue).
    private let queue: WriteBehind
    /// Shutting down and the database still out of reach: what waits is given up, and counted.
    private let shutdown = Mutex((givingUp: false, givenUp: 0))
    private let closeTimeout: Duration
    /// How long a write may wait for the database before the log says it cannot be reached.
    private let stallWarning: Duration
    /// How long an acknowledgement waits for its message to be written.
    private let writeWait: Duration

    /// The schema this build writes; older ones are migrated at start.
    public static let schemaVersion = 2
    public static let defaultMaxPendingChanges = 200_000

    /// Connects, migrates the schema, and is ready: a database that cannot be reached or
    /// refuses the login is an error here, with the server's words.
    public static func open(
        _ location: Location, logger: Logger = Logger(label: "parley.store"), maxPendingChanges: Int = PostgresChatStore.defaultMaxPendingChanges,
        closeTimeout: Duration = PostgresChatStore.closeTimeout, stallWarning: Duration = .seconds(5),
        writeWait: Duration = PostgresChatStore.writeWait
    ) async throws -> PostgresChatStore {
        // One connection first, outside the pool (which would retry without end): an address
        // that does not answer or a login refused is an error now, in the server's words.
        let first = try await PostgresConnection.connect(configuration: location.connection, id: 0, logger: logger)
        try await first.close()
        let store = PostgresChatStore(location: location, logger: logger, maxPendingChanges: maxPendingChanges, closeTimeout: closeTimeout, stallWarning: stallWarning, writeWait: writeWait)
        store.queue.writes { [weak store] batch in await store?.write(batch) ?? false }
        do {
            try await store.migrate()
        } catch let error as PostgresTransactionError {
            store.runner.cancel()
            throw error.closureError ?? error
        } catch {
            store.runner.cancel()
            throw error
        }
        return store
    }

    private init(location: Location, logger: Logger, maxPendingChanges: Int, closeTimeout: Duration, stallWarning: Duration, writeWait: Duration) {
        self.closeTimeout = closeTimeout
        self.writeWait = writeWait
        self.stallWarning = stallWarning
        client = location.pool(logger: logger) { $0.connectTimeout = .seconds(5) }
        runner = Task { [client] in await client.run() }
        self.location = location
        self.logger = logger
        queue = WriteBehind(maxPending: maxPendingChanges, logger: logger, complaint: "the database does not keep up: messages not written")
    }

    private static let migrations: [Int: [PostgresQuery]] = [
        1: [
            """
            CREATE TABLE parley_session (
                seq BIGSERIAL PRIMARY KEY,
                session_id TEXT NOT NULL UNIQUE,
                user_id TEXT NOT NULL,
                username TEXT NOT NULL,
                connected BOOLEAN NOT NULL,
                last_seen BIGINT NOT NULL
            )
            """,
            "CREATE INDEX parley_session_user ON parley_session (user_id)",
            """
            CREATE TABLE parley_message (
                id BIGINT PRIMARY KEY,
                content BYTEA NOT NULL,
                from_user TEXT NOT NULL,
                to_user TEXT NOT NULL
            )
            """,
            "CREATE INDEX parley_message_from ON parley_message (from_user)",
            "CREATE INDEX parley_message_to ON parley_message (to_user)",
        ],
        // Each server of a cluster takes a number at start, for the seqs of its messages.
        2: ["CREATE SEQUENCE parley_node"],
    ]

    /// A number for this server in the cluster, 0–1023, not the same as the last 1,023
    /// servers started on this database.
    public func clusterNode() async throws -> Int {
        for try await number in try await client.query("SELECT nextval('parley_node')", logger: logger).decode(Int64.self) {
            return Int(number % 1_024)
        }
        throw SchemaError(description: "no number from parley_node")
    }

    /// Brings the schema to `schemaVersion`, each step in the transaction that records it.
    /// A database from a newer build is refused rather than written wrong.
    private func migrate() async throws {
        try await client.withTransaction(logger: logger) { connection in
            // One migrating server at a time (the key is "parley" in ASCII).
            try await connection.query("SELECT pg_advisory_xact_lock(1885434465)", logger: logger)
            try await connection.query("CREATE TABLE IF NOT EXISTS parley_schema (version INTEGER NOT NULL)", logger: logger)
            var version = 0
            for try await (found) in try await connection.query("SELECT max(version) FROM parley_schema", logger: logger).decode(Int?.self) {
                version = found ?? 0
            }
            guard version <= Self.schemaVersion else {
                throw SchemaError(description: "the database's schema is version \(version), newer than this server's \(Self.schemaVersion)")
            }
            for step in (version + 1)..<(Self.schemaVersion + 1) {
                for statement in Self.migrations[step] ?? [] { try await connection.query(statement, logger: logger) }
                try await connection.query("INSERT INTO parley_schema (version) VALUES (\(step))", logger: logger)
            }
        }
    }

    public struct SchemaError: Error, CustomStringConvertible {
        public let description: String
    }

    public var isDurable: Bool { true }

    public func load() async throws -> StoredState {
        var state = StoredState()
        let sessions = try await client.query("SELECT session_id, user_id, username, last_seen FROM parley_session ORDER BY seq", logger: logger)
        for try await (sessionID, userID, username, lastSeen) in sessions.decode((String, String, String, Int64).self) {
            // Nobody is connected to a server that just started.
            state.sessions.append(StoredSession(sessionID: sessionID, userID: userID, username: username, connected: false, lastSeen: lastSeen))
        }
        let messages = try await client.query("SELECT id, content, from_user, to_user FROM parley_message ORDER BY id", logger: logger)
        for try await (id, content, from, to) in messages.decode((Int64, ByteBuffer, String, String).self) {
            state.messages.append(MessageLog.Entry(seq: id, message: PrivateMessage(content: String(buffer: content), from: from, to: to)))
        }
        return state
    }

    public func record(_ changes: [StoreChange]) {
        queue.enqueue(changes)
    }

    /// A user's session, as kept now (nil when there is none, or the database cannot be read).
    public func loadSession(userID: String) async -> StoredSession? {
        do {
            let rows = try await client.query(
                "SELECT session_id, user_id, username, last_seen FROM parley_session WHERE user_id = \(userID) ORDER BY seq DESC LIMIT 1",
                logger: logger
            )
            for try await (sessionID, userID, username, lastSeen) in rows.decode((String, String, String, Int64).self) {
                return StoredSession(sessionID: sessionID, userID: userID, username: username, connected: false, lastSeen: lastSeen)
            }
        } catch {
            logger.warning("a session could not be read", metadata: ["error": "\(String(reflecting: error))"])
        }
        return nil
    }

    /// The sessions kept now (for a server of a cluster catching up with what it did not
    /// hear), oldest first.
    public func loadSessions() async throws -> [StoredSession] {
        var sessions: [StoredSession] = []
        let rows = try await client.query("SELECT session_id, user_id, username, last_seen FROM parley_session ORDER BY seq", logger: logger)
        for try await (sessionID, userID, username, lastSeen) in rows.decode((String, String, String, Int64).self) {
            sessions.append(StoredSession(sessionID: sessionID, userID: userID, username: username, connected: false, lastSeen: lastSeen))
        }
        return sessions
    }

    /// How long an acknowledgement waits, by default, for its message to be written.
    public static let writeWait = Duration.seconds(10)

    public func recordAwaitingWrite(_ changes: [StoreChange]) -> (@Sendable () async -> Bool)? {
        guard let number = queue.enqueue(changes) else { return { false } }
        return { [queue, writeWait] in await queue.waitUntilWritten(number, within: writeWait) }
    }

    /// Writes one batch. While the database cannot be reached (restarting, the network gone)
    /// the batch waits and is tried again, backing off from 250 ms to 8 s, and what comes in
    /// meanwhile waits behind it (within `maxPendingChanges`): nothing is dropped for a
    /// database that comes back. A batch the database refuses for what it holds is dropped
    /// with a log line, rather than block every later change.
    private func write(_ batch: [StoreChange]) async -> Bool {
        var delay = Duration.milliseconds(250)
        var failures = 0
        // The pool waits for a database that does not answer (it reconnects with its own
        // backoff) rather than fail: a write that takes that long is said in the log, then
        // every 10 s while it goes on.
        let stalled = Flag()
        let watchdog = Task { [self] in
            var wait = stallWarning
            while true {
                try? await Task.sleep(for: wait)
                guard !Task.isCancelled else { return }
                stalled.set()
                let waiting = queue.waiting
                logger.error("the database cannot be reached: changes wait for it", metadata: ["changes": "\(batch.count + waiting)"])
                wait = .seconds(10)
            }
        }
        defer { watchdog.cancel() }
        while true {
            do {
                try await client.withTransaction(logger: logger) { connection in
                    for run in Self.runs(of: batch) { try await run.write(on: connection, logger: self.logger) }
                }
                if failures > 0 || stalled.isSet {
                    logger.notice("the database is back: written", metadata: ["changes": "\(batch.count)", "tries": "\(failures + 1)"])
                }
                return true
            } catch {
                failures += 1
                let givingUp = shutdown.withLock { state in
                    // Shutting down with the database gone: `close` counts what is given up.
                    if state.givingUp { state.givenUp += batch.count }
                    return state.givingUp
                }
                if givingUp { return false }
                let transient = Self.isTransient(error)
                let waiting = queue.waiting
                if queue.failureIsDue() {
                    logger.error(
                        transient ? "the database cannot be reached: trying again" : "the database refused a batch: dropped",
                        metadata: ["error": "\(String(reflecting: error))", "changes": "\(batch.count)", "waiting": "\(waiting)"]
                    )
                }
                guard transient else { return false }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(8))
            }
        }
    }

    private final class Flag: Sendable {
        private let value = Mutex(false)
        func set() { value.withLock { $0 = true } }
        var isSet: Bool { value.withLock { $0 } }
    }

    /// Whether an error says the database is out of reach for now, rather than that it refused
    /// what was written: a connection that failed or closed, or PostgreSQL's classes 08
    /// (connection), 53 (resources), 57 (shutting down, starting up) and 40 (a transaction
    /// to run again).
    static func isTransient(_ error: any Error) -> Bool {
        if let failed = error as? PostgresTransactionError {
            return [failed.beginError, failed.closureError, failed.commitError].contains { $0.map(isTransient) ?? false }
        }
        guard let error = error as? PSQLError else { return false }
        guard error.code == .server else {
            return [.connectionError, .serverClosedConnection, .uncleanShutdown, .clientClosedConnection, .poolClosed].contains(error.code)
        }
        let state = error.serverInfo?[.sqlState] ?? ""
        return ["08", "53", "57", "40"].contains { state.hasPrefix($0) }
    }

    /// Consecutive changes of one kind, written with one statement (arrays bound as parameters).
    enum Run {
        case sessions([StoredSession])
        case messages([MessageLog.Entry])
        case drop([Int64])
        case forget([String])

        func write(on connection: PostgresConnection, logger: Logger) async throws {
            switch self {
            case .sessions(let sessions):
                // One row per session ID, the last change of it (one statement cannot change a row twice).
                var latest: [String: Int] = [:]
                for (i, session) in sessions.enumerated() { latest[session.sessionID] = i }
                let rows = sessions.indices.filter { latest[sessions[$0].sessionID] == $0 }.map { sessions[$0] }
                try await connection.query(
                    """
                    INSERT INTO parley_session (session_id, user_id, username, connected, last_seen)
                    SELECT * FROM unnest(\(rows.map(\.sessionID))::text[], \(rows.map(\.userID))::text[], \(rows.map(\.username))::text[],
                        \(rows.map(\.connected))::boolean[], \(rows.map(\.lastSeen))::bigint[])
                    ON CONFLICT (session_id) DO UPDATE SET user_id = excluded.user_id, username = excluded.username,
                        connected = excluded.connected, last_seen = excluded.last_seen
                    """,
                    logger: logger
                )
            case .messages(let entries):
                try await connection.query(
                    """
                    INSERT INTO parley_message (id, content, from_user, to_user)
                    SELECT * FROM unnest(\(entries.map(\.seq))::bigint[], \(entries.map { ByteBuffer(string: $0.message.content) })::bytea[],
                        \(entries.map(\.message.from))::text[], \(entries.map(\.message.to))::text[])
                    ON CONFLICT (id) DO UPDATE SET content = excluded.content, from_user = excluded.from_user, to_user = excluded.to_user
                    """,
                    logger: logger
                )
            case .drop(let ids):
                try await connection.query("DELETE FROM parley_message WHERE id = ANY(\(ids)::bigint[])", logger: logger)
            case .forget(let userIDs):
                try await connection.query("DELETE FROM parley_session WHERE user_id = ANY(\(userIDs)::text[])", logger: logger)
                try await connection.query(
                    "DELETE FROM parley_message WHERE from_user = ANY(\(userIDs)::text[]) OR to_user = ANY(\(userIDs)::text[])", logger: logger
                )
            }
        }
    }

    /// The batch as runs, in order: what was recorded first is written first.
    static func runs(of batch: [StoreChange]) -> [Run] {
        var runs: [Run] = []
        var sessions: [StoredSession] = []
        var messages: [MessageLog.Entry] = []
        var drops: [Int64] = []
        var forgets: [String] = []
        /// Ends the run in progress (at most one of the four is not empty).
        func end() {
            if !sessions.isEmpty { runs.append(.sessions(sessions)) }
            if !messages.isEmpty { runs.append(.messages(messages)) }
            if !drops.isEmpty { runs.append(.drop(drops)) }
            if !forgets.isEmpty { runs.append(.forget(forgets)) }
            sessions = []
            messages = []
            drops = []
            forgets = []
        }
        for change in batch {
            switch change {
            case .session(let session):
                if sessions.isEmpty { end() }
                sessions.append(session)
            case .message(let entry):
                if messages.isEmpty { end() }
                messages.append(entry)
            case .dropMessages(let ids):
                if drops.isEmpty { end() }
                drops.append(contentsOf: ids)
            case .forgetUser(let userID):
                if forgets.isEmpty { end() }
                forgets.append(userID)
            }
        }
        end()
        return runs
    }

    var transactions: Int { queue.transactions }

    /// Waits until everything recorded so far is written.
    public func flush() async {
        await queue.flush()
    }

    /// How long a shutdown waits, by default, for an unreachable database before it gives up
    /// what waits.
    public static let closeTimeout = Duration.seconds(10)

    /// Writes what waits, then disconnects. A database still out of reach after
    /// `closeTimeout` costs what waits (logged with its count), not a shutdown that never ends.
    public func close() async throws {
        let deadline = Task {
            try? await Task.sleep(for: self.closeTimeout)
            guard !Task.isCancelled else { return }
            self.shutdown.withLock { $0.givingUp = true }
            self.runner.cancel()  // the pool closes: every try fails at once
        }
        await flush()
        deadline.cancel()
        runner.cancel()
        await runner.value
        let lost = shutdown.withLock { $0.givenUp }
        if lost > 0 {
            logger.error("the database could not be reached before the shutdown: changes not written", metadata: ["changes": "\(lost)"])
        }
    }
}
