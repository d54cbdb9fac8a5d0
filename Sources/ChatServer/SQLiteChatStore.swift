public import Chat
import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// Sessions and messages in a SQLite file (`--data PATH`), so that a restart loses neither.
///
/// The file holds session IDs, which are bearer secrets: it is created readable by its
/// owner only, and a file readable by others is tightened.
public final class SQLiteChatStore: ChatStore {
    private let queue: DatabaseQueue
    public let path: String

    public init(path: String) throws {
        self.path = path
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
        queue = try DatabaseQueue(path: path, configuration: config)
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
        try migrator.migrate(queue)
        // Nobody is connected to a server that just started.
        try queue.write { db in try db.execute(sql: "UPDATE session SET connected = 0") }
    }

    public enum StoreError: Error, CustomStringConvertible {
        case cannotCreate(String, String)
        public var description: String {
            switch self {
            case .cannotCreate(let path, let why): return "cannot create \(path): \(why)"
            }
        }
    }

    private static func session(_ row: Row) -> StoredSession {
        StoredSession(sessionID: row["session_id"], userID: row["user_id"], username: row["username"], connected: row["connected"])
    }

    public func session(id sessionID: String) throws -> StoredSession? {
        try queue.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM session WHERE session_id = ?", arguments: [sessionID]).map(Self.session)
        }
    }

    public func hasUser(_ userID: String) throws -> Bool {
        try queue.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM session WHERE user_id = ?)", arguments: [userID]) ?? false
        }
    }

    public func save(_ session: StoredSession) throws {
        try queue.write { db in
            try db.execute(
                sql: """
                    INSERT INTO session (session_id, user_id, username, connected) VALUES (?, ?, ?, ?)
                    ON CONFLICT(session_id) DO UPDATE SET user_id = excluded.user_id,
                        username = excluded.username, connected = excluded.connected
                    """,
                arguments: [session.sessionID, session.userID, session.username, session.connected]
            )
        }
    }

    public func allSessions() throws -> [StoredSession] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM session ORDER BY seq").map(Self.session)
        }
    }

    public func save(_ message: PrivateMessage) throws {
        try queue.write { db in
            try db.execute(
                sql: "INSERT INTO message (content, from_user, to_user) VALUES (?, ?, ?)",
                arguments: [message.content, message.from, message.to]
            )
        }
    }

    public func messages(of userID: String) throws -> [PrivateMessage] {
        try queue.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT content, from_user, to_user FROM message WHERE from_user = ? OR to_user = ? ORDER BY id",
                arguments: [userID, userID]
            ).map { PrivateMessage(content: $0["content"], from: $0["from_user"], to: $0["to_user"]) }
        }
    }

    public func close() throws {
        // Fold the WAL into the main file, so the data is one file at rest.
        try queue.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
        try queue.close()
    }
}
