public import Foundation
import GRDB
public import Logging
public import PrivateFiles
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A message as the local history keeps it: one side of a conversation with `peer`.
public struct StoredMessage: Sendable, Hashable {
    /// Its place in the history once written (older is smaller); nil for one to append.
    public var id: Int64?
    public var peer: String
    public var fromSelf: Bool
    public var content: String
    public var at: Date

    public init(id: Int64? = nil, peer: String, fromSelf: Bool, content: String, at: Date) {
        self.id = id
        self.peer = peer
        self.fromSelf = fromSelf
        self.content = content
        self.at = at
    }
}

public struct HistoryError: Error, Sendable, CustomStringConvertible {
    public let description: String
}

/// The conversations of every server and every user of ours, kept on disk (`history.sqlite`
/// in `$XDG_DATA_HOME/parley`), so that a restarted client shows them again. What a web
/// client cannot do; what terminal chat clients do.
///
/// The file is opened as the session file is (`PrivateFiles`: never through a link, ours,
/// 0600, in a directory nobody else can write). Written behind the client: `append` queues
/// and returns, and one writer takes everything queued in one transaction, so a flood costs
/// a few transactions, not one per message; past `maxPending` rows waiting, new ones are
/// shed (and said so in the log) rather than held without bound.
public final class HistoryStore: Sendable {
    public let path: String
    private let database: DatabaseQueue
    private let logger: Logger
    private let maxPending: Int
    private let pending = Mutex(Pending())
    /// Where the writing happens: a thread of its own, as SQLite blocks.
    private let writer = DispatchQueue(label: "parley.history")

    private struct Row: Sendable {
        var server: String
        var me: String
        var message: StoredMessage
        var peerName: String
    }

    private struct Pending {
        var rows: [Row] = []
        var writing = false
        var shed = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    public static let defaultMaxPending = 100_000

    /// `$XDG_DATA_HOME/parley`, else `~/.local/share/parley`.
    public static func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let xdg = environment["XDG_DATA_HOME"], !xdg.isEmpty, xdg.hasPrefix("/") { return xdg + "/parley" }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + "/.local/share/parley"
    }

    /// Opens (or creates) the history in `directory`, refusing a directory or file that is
    /// not safely ours (`modes`), and forgets messages older than `retention` (at `now`).
    /// Returns the store and warnings for the person.
    public static func open(
        directory: String, modes: PrivateFiles.Modes = .strict, retention: Duration? = nil, now: Date = Date(),
        maxPending: Int = defaultMaxPending, logger: Logger = .init(label: "parley.history")
    ) throws -> (HistoryStore, warnings: [String]) {
        var warnings: [String]
        do {
            warnings = try PrivateFiles.prepareDirectory(directory, modes: modes)
        } catch {
            throw HistoryError(description: "the history: \(error)")
        }
        let path = directory + "/history.sqlite"
        do {
            // Created 0600 and checked before SQLite opens it by name; SQLite gives its
            // journal files the database file's mode.
            guard let (fd, fileWarnings) = try PrivateFiles.openFile(path, flags: O_RDWR, create: true) else {
                throw HistoryError(description: "the history: \(path) could not be created")
            }
            close(fd)
            warnings += fileWarnings
        } catch let refusal as PrivateFiles.Refusal {
            throw HistoryError(description: "the history: \(refusal)")
        }
        var configuration = Configuration()
        configuration.journalMode = .wal
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
        let database: DatabaseQueue
        do {
            database = try DatabaseQueue(path: path, configuration: configuration)
            var migrator = DatabaseMigrator()
            migrator.registerMigration("v1") { db in
                try db.execute(
                    sql: """
                        CREATE TABLE message (
                            id INTEGER PRIMARY KEY AUTOINCREMENT,
                            server TEXT NOT NULL,
                            me TEXT NOT NULL,
                            peer TEXT NOT NULL,
                            from_self INTEGER NOT NULL,
                            content TEXT NOT NULL,
                            at REAL NOT NULL
                        );
                        CREATE INDEX message_conversation ON message(server, me, peer, id);
                        CREATE TABLE peer (
                            server TEXT NOT NULL,
                            me TEXT NOT NULL,
                            peer TEXT NOT NULL,
                            username TEXT NOT NULL,
                            PRIMARY KEY (server, me, peer)
                        );
                        """
                )
            }
            try migrator.migrate(database)
            if let retention {
                let seconds = Double(retention.components.seconds) + Double(retention.components.attoseconds) / 1e18
                try database.write { db in
                    try db.execute(sql: "DELETE FROM message WHERE at < ?", arguments: [now.timeIntervalSince1970 - seconds])
                    // A peer with nothing left said is forgotten too.
                    try db.execute(sql: "DELETE FROM peer WHERE NOT EXISTS (SELECT 1 FROM message m WHERE m.server = peer.server AND m.me = peer.me AND m.peer = peer.peer)")
                }
            }
        } catch {
            throw HistoryError(description: "the history: \(path): \(error)")
        }
        return (HistoryStore(path: path, database: database, maxPending: maxPending, logger: logger), warnings)
    }

    private init(path: String, database: DatabaseQueue, maxPending: Int, logger: Logger) {
        self.path = path
        self.database = database
        self.maxPending = max(maxPending, 1)
        self.logger = logger
    }

    /// Queues a message of the conversation of `me` (a userID) on `server` with its peer,
    /// whose name is remembered too. Returns at once.
    public func append(server: String, me: String, _ message: StoredMessage, peerName: String) {
        let start = pending.withLock { pending -> Bool in
            guard pending.rows.count < maxPending else {
                pending.shed += 1
                return false
            }
            pending.rows.append(Row(server: server, me: me, message: message, peerName: peerName))
            guard !pending.writing else { return false }
            pending.writing = true
            return true
        }
        if start { writer.async { self.writeAll() } }
    }

    /// Writes everything queued, a transaction at a time, until nothing is.
    private func writeAll() {
        while true {
            let (rows, shed) = pending.withLock { pending -> ([Row], Int) in
                defer {
                    pending.rows = []
                    pending.shed = 0
                }
                return (pending.rows, pending.shed)
            }
            if shed > 0 { logger.warning("history: \(shed) messages not kept (the disk did not keep up)") }
            if !rows.isEmpty {
                do {
                    try database.write { db in
                        let insert = try db.makeStatement(
                            sql: "INSERT INTO message (server, me, peer, from_self, content, at) VALUES (?, ?, ?, ?, ?, ?)"
                        )
                        let name = try db.makeStatement(
                            sql: "INSERT INTO peer (server, me, peer, username) VALUES (?, ?, ?, ?) "
                                + "ON CONFLICT(server, me, peer) DO UPDATE SET username = excluded.username"
                        )
                        // Each peer's name once per transaction (its last), not once per message.
                        var names: [[String]: String] = [:]
                        for row in rows {
                            try insert.execute(arguments: [
                                row.server, row.me, row.message.peer, row.message.fromSelf, row.message.content,
                                row.message.at.timeIntervalSince1970,
                            ])
                            names[[row.server, row.me, row.message.peer]] = row.peerName
                        }
                        for (key, username) in names {
                            try name.execute(arguments: [key[0], key[1], key[2], username])
                        }
                    }
                } catch {
                    logger.error("history: \(rows.count) messages not written: \(error)")
                }
            }
            let waiters = pending.withLock { pending -> [CheckedContinuation<Void, Never>]? in
                guard pending.rows.isEmpty else { return nil }
                pending.writing = false
                defer { pending.waiters = [] }
                return pending.waiters
            }
            if let waiters {
                waiters.forEach { $0.resume() }
                return
            }
        }
    }

    /// Returns once everything queued so far is written.
    public func flush() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let idle = pending.withLock { pending -> Bool in
                if !pending.writing { return true }
                pending.waiters.append(done)
                return false
            }
            if idle { done.resume() }
        }
    }

    /// The peers `me` has conversations with on `server`, and their names as last seen.
    public func peers(server: String, me: String) throws -> [(userID: String, username: String)] {
        try database.read { db in
            try Row_.fetchAll(db, sql: "SELECT peer, username FROM peer WHERE server = ? AND me = ? ORDER BY peer", arguments: [server, me])
                .map { ($0[0], $0[1]) }
        }
    }

    /// The newest `limit` messages of a conversation (before the one with id `before`, when
    /// given), oldest first.
    public func lastMessages(server: String, me: String, peer: String, before: Int64? = nil, limit: Int) throws -> [StoredMessage] {
        try database.read { db in
            try Row_.fetchAll(
                db,
                sql: "SELECT id, from_self, content, at FROM message WHERE server = ? AND me = ? AND peer = ? AND id < ? "
                    + "ORDER BY id DESC LIMIT ?",
                arguments: [server, me, peer, before ?? Int64.max, limit]
            ).reversed().map { row in
                StoredMessage(id: row[0], peer: peer, fromSelf: row[1], content: row[2], at: Date(timeIntervalSince1970: row[3]))
            }
        }
    }

    /// What `me` said and heard on `server` whose content `matches`, newest first, at most
    /// `limit`, each with its peer's name as last seen. The whole history is read (one pass, in
    /// the database's own thread of work), never held: only the hits are.
    public func search(server: String, me: String, limit: Int, matching: @escaping @Sendable (String) -> Bool) throws -> [(message: StoredMessage, username: String)] {
        try database.read { db in
            let function = DatabaseFunction("parley_matches", argumentCount: 1, pure: true) { values in
                String.fromDatabaseValue(values[0]).map(matching) ?? false
            }
            db.add(function: function)
            defer { db.remove(function: function) }
            return try Row_.fetchAll(
                db,
                sql: "SELECT m.id, m.peer, m.from_self, m.content, m.at, COALESCE(p.username, m.peer) FROM message m "
                    + "LEFT JOIN peer p ON p.server = m.server AND p.me = m.me AND p.peer = m.peer "
                    + "WHERE m.server = ? AND m.me = ? AND parley_matches(m.content) ORDER BY m.id DESC LIMIT ?",
                arguments: [server, me, limit]
            ).map { row in
                (StoredMessage(id: row[0], peer: row[1], fromSelf: row[2], content: row[3], at: Date(timeIntervalSince1970: row[4])), row[5])
            }
        }
    }

    /// Forgets what `me` said and heard on `server`.
    public func delete(server: String, me: String) throws {
        try database.write { db in
            try db.execute(sql: "DELETE FROM message WHERE server = ? AND me = ?", arguments: [server, me])
            try db.execute(sql: "DELETE FROM peer WHERE server = ? AND me = ?", arguments: [server, me])
        }
    }
}

private typealias Row_ = GRDB.Row
