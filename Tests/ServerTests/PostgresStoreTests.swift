import ChatSchema
@testable import ChatServer
import Foundation
import JSON
import Logging
import PostgresNIO
import SocketIOTesting
@testable import Postgres
import Testing

/// The chat server's store on PostgreSQL, against a private PostgreSQL the tests start
/// (`PrivatePostgres`): each test in a database of its own.
extension ServerSuites {
    @Suite struct PostgresStoreTests {
        func open(_ url: String, environment: [String: String] = [:], maxPendingChanges: Int = PostgresChatStore.defaultMaxPendingChanges) async throws -> PostgresChatStore {
            try await PostgresChatStore.open(try PostgresChatStore.Location(url: url, environment: environment), logger: quietLogger, maxPendingChanges: maxPendingChanges)
        }

        @Test func sessionsAndMessagesOutliveTheStoreInOrder() async throws {
            let url = try await PrivatePostgres.shared().database()
            let store = try await open(url)
            let alice = StoredSession(sessionID: "s1", userID: "u1", username: "alice", connected: true, lastSeen: 100)
            let bob = StoredSession(sessionID: "s2", userID: "u2", username: "bob", connected: true, lastSeen: 200)
            let carol = StoredSession(sessionID: "s3", userID: "u3", username: "carol", connected: false, lastSeen: 300)
            store.record([.session(alice), .session(bob), .session(carol)])
            store.record([
                .message(.init(seq: 1, message: PrivateMessage(content: "hi 👋 'quoted' $1 \\ \u{0}?", from: "u1", to: "u2"))),
                .message(.init(seq: 2, message: PrivateMessage(content: "dropped", from: "u1", to: "u2"))),
                .message(.init(seq: 3, message: PrivateMessage(content: "yo", from: "u2", to: "u1"))),
                .message(.init(seq: 4, message: PrivateMessage(content: "carol's", from: "u3", to: "u1"))),
                .dropMessages([2]),
                // Saved again in the same batch, twice: the last one counts, the order stays.
                .session(StoredSession(sessionID: "s1", userID: "u1", username: "alice", connected: false, lastSeen: 140)),
                .session(StoredSession(sessionID: "s1", userID: "u1", username: "alice", connected: false, lastSeen: 150)),
                .forgetUser(userID: "u3"),
            ])
            try await store.close()

            let reopened = try await open(url)
            let state = try await reopened.load()
            #expect(state.sessions.map(\.username) == ["alice", "bob"])
            #expect(state.sessions.map(\.lastSeen) == [150, 200])
            #expect(state.sessions.allSatisfy { !$0.connected }, "nobody is connected to a server that just started")
            #expect(state.messages.map(\.seq) == [1, 3])
            // Kept as it came, U+0000 included (a text column would refuse it, and the batch with it).
            #expect(state.messages.first?.message.content == "hi 👋 'quoted' $1 \\ \u{0}?")
            try await reopened.close()
        }

        /// A burst of changes is written in a few transactions, one statement per run of
        /// changes of a kind, not one per change.
        @Test func aBurstIsWrittenInFewTransactions() async throws {
            let store = try await open(try await PrivatePostgres.shared().database())
            for n in 1...5_000 {
                store.record([.message(.init(seq: Int64(n), message: PrivateMessage(content: "m\(n)", from: "u1", to: "u2")))])
            }
            await store.flush()
            #expect(store.transactions < 50, "\(store.transactions) transactions")
            #expect(try await store.load().messages.count == 5_000)
            try await store.close()
        }

        /// Past its bound, what waits sheds messages, never sessions, and says so in the log. The
        /// database is held up by another session's lock on the messages' table.
        @Test func aStoreThatDoesNotKeepUpShedsMessagesNotSessions() async throws {
            let url = try await PrivatePostgres.shared().database()
            let log = CapturedLog()
            let store = try await PostgresChatStore.open(try PostgresChatStore.Location(url: url), logger: log.logger, maxPendingChanges: 4)
            let location = try PostgresChatStore.Location(url: url)
            let locker = try await PostgresConnection.connect(configuration: location.connection, id: 1, logger: quietLogger)
            try await locker.query("BEGIN", logger: quietLogger)
            try await locker.query("LOCK TABLE parley_message IN ACCESS EXCLUSIVE MODE", logger: quietLogger)
            for n in 1...50 {
                store.record([.message(.init(seq: Int64(n), message: PrivateMessage(content: "m\(n)", from: "u1", to: "u2")))])
            }
            store.record([.session(StoredSession(sessionID: "late", userID: "u9", username: "late", connected: true, lastSeen: 1))])
            #expect(!log.lines(containing: "the database does not keep up").isEmpty)
            try await locker.query("COMMIT", logger: quietLogger)
            try await locker.close()
            await store.flush()
            let state = try await store.load()
            #expect(state.sessions.map(\.userID) == ["u9"])
            // The batch the writer took before the lock held it, and what waited: at most 4 each.
            #expect(state.messages.count <= 8, "not all 50")
            try await store.close()
        }

        @Test func theSchemaIsVersionedAndMigratedOnceBySeveralServersAtOnce() async throws {
            let postgres = try await PrivatePostgres.shared()
            let url = try await postgres.database()
            // Three servers start together on one new database.
            let stores = try await withThrowingTaskGroup(of: PostgresChatStore.self) { group in
                for _ in 0..<3 { group.addTask { try await open(url) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(stores.count == 3)
            for store in stores { try await store.close() }
            // A database written by a newer build is refused, not written wrong.
            try await postgres.psql("INSERT INTO parley_schema (version) VALUES (99)", database: String(url.split(separator: "/").last!))
            await #expect(throws: PostgresChatStore.SchemaError.self) { try await open(url) }
        }

        /// The password from the URL or from PGPASSWORD; a wrong one is refused with the
        /// server's reason, and no description of the location carries it.
        @Test func thePasswordComesFromTheURLOrPGPASSWORD() async throws {
            let postgres = try await PrivatePostgres.shared()
            let url = try await postgres.database()
            let database = String(url.split(separator: "/").last!)
            let bare = postgres.url(database, password: false)
            let store = try await open(bare, environment: ["PGPASSWORD": PrivatePostgres.password])
            try await store.close()
            let location = try PostgresChatStore.Location(url: url)
            #expect(!"\(location)".contains(PrivatePostgres.password))
            await #expect(throws: (any Error).self) { try await open(bare, environment: ["PGPASSWORD": "wrong"]) }
            for nonsense in ["http://x/y", "postgres:///db", "postgres://@host/db", "postgres://u@host:99999/db"] {
                #expect(throws: PostgresChatStore.LocationError.self) { try PostgresChatStore.Location(url: nonsense) }
            }
        }

        /// The whole server on PostgreSQL: a message to someone offline waits through a
        /// restart, with the same identity.
        @Test func aMessageToSomeoneOfflineOutlivesARestart() async throws {
            let url = try await PrivatePostgres.shared().database()
            var server = try await ChatServerHarness.start(store: try await open(url))
            let alice = try await server.login(["username": "alice"])
            let bob = try await server.login(["username": "bob"])
            await bob.socket.disconnect()
            _ = try await alice.events.event(named: "user disconnected")
            _ = try await alice.socket.emitWithAck("private message", ["content": "see this later", "to": .string(bob.userID)])
            await alice.socket.disconnect()
            await server.stop()

            server = try await ChatServerHarness.start(store: try await open(url))
            let back = try await server.login(["sessionID": .string(bob.sessionID)])
            #expect(back.userID == bob.userID)
            let users = try #require(try await back.events.event(named: "users").arguments.first?.arrayValue)
            let aliceEntry = try #require(users.first { $0["userID"] == .string(alice.userID) })
            #expect(aliceEntry["messages"] == [["content": "see this later", "from": .string(alice.userID), "to": .string(bob.userID)]])
            await back.socket.disconnect()
            await server.stop()
        }

        /// PostgreSQL restarting: what is recorded meanwhile waits, is tried again with backoff,
        /// and is written once it is back; the log says it could not be reached, then that it
        /// is back. Nothing is lost.
        @Test func aDatabaseThatRestartsLosesNothing() async throws {
            let postgres = try await PrivatePostgres.start()
            let url = try await postgres.database()
            let log = CapturedLog()
            let store = try await PostgresChatStore.open(try PostgresChatStore.Location(url: url), logger: log.logger, stallWarning: .milliseconds(200))
            store.record([.message(.init(seq: 1, message: PrivateMessage(content: "before", from: "u1", to: "u2")))])
            await store.flush()
            try await postgres.stop()
            for n in 2...100 {
                store.record([.message(.init(seq: Int64(n), message: PrivateMessage(content: "while away \(n)", from: "u1", to: "u2")))])
            }
            store.record([.session(StoredSession(sessionID: "s", userID: "u1", username: "alice", connected: true, lastSeen: 1))])
            #expect(await eventually(within: .seconds(20)) { !log.lines(containing: "cannot be reached").isEmpty })
            try await postgres.restart()
            await store.flush()
            #expect(!log.lines(containing: "the database is back").isEmpty)
            let state = try await store.load()
            #expect(state.messages.map(\.seq) == Array(1...100))
            #expect(state.sessions.map(\.userID) == ["u1"])
            try await store.close()
            try await postgres.stop()
        }

        /// A shutdown while the database is out of reach does not wait for ever: after the
        /// close timeout, what waits is given up, and the log counts it.
        @Test func aShutdownWithTheDatabaseGoneEnds() async throws {
            let postgres = try await PrivatePostgres.start()
            let log = CapturedLog()
            let store = try await PostgresChatStore.open(
                try PostgresChatStore.Location(url: try await postgres.database()), logger: log.logger, closeTimeout: .milliseconds(300)
            )
            try await postgres.stop()
            store.record([.message(.init(seq: 1, message: PrivateMessage(content: "lost", from: "u1", to: "u2")))])
            try await store.close()
            #expect(!log.lines(containing: "could not be reached before the shutdown").isEmpty)
        }

        /// A change's wait ends when its batch is written: true; a change shed, or given up at
        /// a shutdown with the database gone: false.
        @Test func aWriteCanBeAwaited() async throws {
            let postgres = try await PrivatePostgres.start()
            let store = try await PostgresChatStore.open(try PostgresChatStore.Location(url: try await postgres.database()), logger: quietLogger, closeTimeout: .milliseconds(300))
            let written = try #require(store.recordAwaitingWrite([.message(.init(seq: 1, message: PrivateMessage(content: "a", from: "u1", to: "u2")))]))
            #expect(await written())
            try await postgres.stop()
            let lost = try #require(store.recordAwaitingWrite([.message(.init(seq: 2, message: PrivateMessage(content: "b", from: "u1", to: "u2")))]))
            async let answer = lost()
            try await store.close()  // gives up after its timeout
            #expect(await answer == false)
        }

        /// The server's acknowledgement of a message means it is in the database: with the
        /// database gone, the sender is told it was not stored (and who is online still got it).
        @Test func anAcknowledgementMeansStored() async throws {
            let postgres = try await PrivatePostgres.start()
            let url = try await postgres.database()
            let store = try await PostgresChatStore.open(
                try PostgresChatStore.Location(url: url), logger: quietLogger, closeTimeout: .milliseconds(300), writeWait: .milliseconds(500)
            )
            let server = try await ChatServerHarness.start(store: store)
            let alice = try await server.login(["username": "alice"])
            let bob = try await server.login(["username": "bob"])
            let stored = try await alice.socket.emitWithAck("private message", ["content": "kept", "to": .string(bob.userID)])
            #expect(stored.first?["ok"] == true)
            let check = try await PostgresChatStore.open(try PostgresChatStore.Location(url: url), logger: quietLogger)
            #expect(try await check.load().messages.map(\.message.content) == ["kept"])
            try await check.close()
            try await postgres.stop()
            let answer = try await alice.socket.emitWithAck("private message", ["content": "not kept", "to": .string(bob.userID)], timeout: .seconds(30))
            #expect(answer.first?["error"]?.stringValue?.contains("not confirmed stored") == true, "\(answer)")
            #expect(try await bob.events.event(named: "private message").arguments.first?["content"] == "kept")
            #expect(try await bob.events.event(named: "private message").arguments.first?["content"] == "not kept")
            await server.stop()
        }
    }
}
