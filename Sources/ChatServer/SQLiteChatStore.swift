import ChatSchema
import Foundation
import GRDB
public import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Sessions and messages in a SQLite file (`--data PATH`), so that a restart loses neither.
///
/// Written behind the server's memory: `record` queues changes and returns; one writer at a
/// time takes everything queued and writes it in one transaction, on GRDB's own queue (never
/// on an event loop), so a burst of messages costs a few transactions, not one each.
///
/// The file holds session IDs, which are bearer secrets: it is created readable by its
/// owner only, and a file readable by others is tightened.
public final class SQLiteChatStore: ChatStore {
    private let database: DatabaseQueue
    private let logger: Logger
    public let path: String
    private let queue: WriteBehind

    /// - Parameter maxPendingChanges: changes waiting to be written at most; past them new
    ///   messages are shed (kept in memory only), sessions never are.
    public init(path: String, logger: Logger = Logger(label: "parley.store"), maxPendingChanges: Int = SQLiteChatStore.defaultMaxPendingChanges) throws {
        self.path = path
        self.logger = logger
        queue = WriteBehind(maxPending: maxPendingChanges, logger: logger, complaint: "the store does not keep up: messages not written to disk")
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        // Create the file 0600 before SQLite does (it would follow the umask).
        if !FileManager.default.fileExists(atPath: path) {
            let fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw StoreError.cannotCreate(path, String(cString: strerror(errno))) }
            Glibc.close(fd)
        }
        var config = Configuration()
        config.journalMode = .wal
        config.busyMode = .timeout(5)
        config.prepareDatabase { db in
            // WAL with NORMAL: a commit is durable across a crash of the server, and writes
            // do not wait for fsync; a power loss may lose the last moments.
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        database = try DatabaseQueue(path: path, configuration: config)
        for file in [path, path + "-wal", path + "-shm"] where FileManager.default.fileExists(atPath: file) {
            chmod(file, 0o600)
        }
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE session (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        session_id TEXT NOT NULL UNIQUE,
                        user_id TEXT NOT NULL,
                        username TEXT NOT NULL,
                        connected INTEGER NOT NULL
                    );
                    CREATE INDEX session_user ON session(user_id);
                    CREATE TABLE message (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        content TEXT NOT NULL,
                        from_user TEXT NOT NULL,
                        to_user TEXT NOT NULL
                    );
                    CREATE INDEX message_from ON message(from_user);
                    CREATE INDEX message_to ON message(to_user);
                    """
            )
        }
        // When each user was last seen, for the session lifetime: sessions from before it
        // count as seen when the server first runs with it.
        migrator.registerMigration("v2 last_seen") { db in
            try db.execute(sql: "ALTER TABLE session ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0")
            try db.execute(sql: "UPDATE session SET last_seen = CAST(strftime('%s','now') AS INTEGER)")
        }
        try migrator.migrate(database)
        queue.writes { [database, logger, queue] batch in
            do {
                try await database.write { db in try Self.apply(batch, to: db) }
                return true
            } catch {
                if queue.failureIsDue() { logger.error("storage failed", metadata: ["error": "\(error)", "changes": "\(batch.count)"]) }
                return false
            }
        }
    }

    public enum StoreError: Error, CustomStringConvertible {
        case cannotCreate(String, String)
        public var description: String {
            switch self {
            case .cannotCreate(let path, let why): return "cannot create \(path): \(why)"
            }
        }
    }

    public var isDurable: Bool { true }

    public func load() async throws -> StoredState {
        try await database.read { db in
            let sessions = try Row.fetchAll(db, sql: "SELECT * FROM session ORDER BY seq").map { row in
                // Nobody is connected to a server that just started.
                StoredSession(
                    sessionID: row["session_id"], userID: row["user_id"], username: row["username"],
                    connected: false, lastSeen: row["last_seen"]
                )
            }
            let messages = try Row.fetchAll(db, sql: "SELECT id, content, from_user, to_user FROM message ORDER BY id").map { row in
                MessageLog.Entry(seq: row["id"], message: PrivateMessage(content: row["content"], from: row["from_user"], to: row["to_user"]))
            }
            return StoredState(sessions: sessions, messages: messages)
        }
    }

    /// Changes waiting to be written at most (a disk slower than the messages coming in
    /// does not make the queue grow without end).
    public static let defaultMaxPendingChanges = 200_000

    public func record(_ changes: [StoreChange]) {
        queue.enqueue(changes)
    }

    private static func apply(_ batch: [StoreChange], to db: Database) throws {
        let saveSession = try db.cachedStatement(
            sql: """
                INSERT INTO session (session_id, user_id, username, connected, last_seen) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(session_id) DO UPDATE SET user_id = excluded.user_id, username = excluded.username,
                    connected = excluded.connected, last_seen = excluded.last_seen
                """
        )
        let saveMessage = try db.cachedStatement(sql: "INSERT OR REPLACE INTO message (id, content, from_user, to_user) VALUES (?, ?, ?, ?)")
        let dropMessage = try db.cachedStatement(sql: "DELETE FROM message WHERE id = ?")
        for change in batch {
            switch change {
            case .session(let session):
                try saveSession.execute(arguments: [session.sessionID, session.userID, session.username, session.connected, session.lastSeen])
            case .forgetUser(let userID):
                try db.execute(sql: "DELETE FROM session WHERE user_id = ?", arguments: [userID])
                try db.execute(sql: "DELETE FROM message WHERE from_user = ? OR to_user = ?", arguments: [userID, userID])
            case .message(let entry):
                try saveMessage.execute(arguments: [entry.seq, entry.message.content, entry.message.from, entry.message.to])
            case .dropMessages(let seqs):
                for seq in seqs { try dropMessage.execute(arguments: [seq]) }
            }
        }
    }

    var transactions: Int { queue.transactions }

    /// Waits until everything recorded so far is written.
    public func flush() async {
        await queue.flush()
    }

    public func close() async throws {
        await flush()
        // Fold the WAL into the main file, so the data is one file at rest.
        try await database.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
        try database.close()
    }
}
