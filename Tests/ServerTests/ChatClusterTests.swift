import ChatServer
import Foundation
import JSON
import PostgresNIO
import Synchronization
import Logging
@testable import Postgres
import SocketIO
import SocketIOCluster
import SocketIOTesting
import Testing

/// Two parley chat servers on one PostgreSQL database, acting as one (issue "Many servers,
/// one chat"): in-process, each with its own store and bus, on the tests' own PostgreSQL.
extension ServerSuites {
    @Suite(.timeLimit(.minutes(2))) struct ChatClusterTests {
        struct Node {
            let server: ChatServerHarness
            let bus: PostgresClusterBus
        }

        /// `beforeBus`: what happens after the chat server read the database and before its bus listens.
        func start(_ location: PostgresChatStore.Location, beforeBus: () async throws -> Void = {}) async throws -> Node {
            let store = try await PostgresChatStore.open(location, logger: quietLogger)
            let server = try await ChatServerHarness.start(store: store)
            try await beforeBus()
            let node = try await store.clusterNode()
            server.chat.joinCluster(node: node) { await store.loadSession(userID: $0) }
            let bus = try await PostgresClusterBus.start(
                location, options: ClusterBusTests.quick, logger: quietLogger,
                onMessage: { server.socketIO.receive($0) }, onJoin: { server.chat.serverJoined($0) }, onLeave: { server.chat.serversLeft($0) },
                onListening: { Task { server.chat.adopt((try? await store.loadSessions()) ?? []) } }
            )
            server.socketIO.join(cluster: bus, delivering: ChatApplication.delivers)
            return Node(server: server, bus: bus)
        }

        @Test func clientsOnTwoServersChatAsOnOne() async throws {
            let location = try PostgresChatStore.Location(url: try await PrivatePostgres.shared().database())
            let a = try await start(location)
            let b = try await start(location)
            #expect(await eventually(within: .seconds(10)) { a.bus.servers == [b.bus.uid] && b.bus.servers == [a.bus.uid] })

            // What goes over the bus, as anyone who may LISTEN on the database hears it.
            let heard = Mutex<[String]>([])
            let listener = try await PostgresConnection.connect(configuration: location.connection, id: 9, logger: quietLogger)
            let listening = Task {
                try? await listener.listen(on: "socket.io#/") { notifications in
                    for try await notification in notifications { heard.withLock { $0.append(notification.payload) } }
                }
            }
            // alice on A; B learns of her, and bob on B sees her online.
            let alice = try await a.server.login(["username": "alice"])
            #expect(await eventually(within: .seconds(10)) { b.server.chat.userCount == 1 })
            let bob = try await b.server.login(["username": "bob"])
            let bobsList = try #require(try await bob.events.event(named: "users").arguments.first?.arrayValue)
            #expect(bobsList.contains { $0["userID"] == .string(alice.userID) && $0["connected"] == true }, "\(bobsList)")
            // alice hears bob come, once, though he is on the other server.
            let came = try await alice.events.event(named: "user connected")
            #expect(came.arguments.first?["userID"] == .string(bob.userID))

            // Both ways, across the servers.
            _ = try await alice.socket.emitWithAck("private message", ["content": "hi bob", "to": .string(bob.userID)])
            let toBob = try await bob.events.event(named: "private message")
            #expect(toBob.arguments.first == ["content": "hi bob", "from": .string(alice.userID), "to": .string(bob.userID)])
            _ = try await bob.socket.emitWithAck("private message", ["content": "hi alice", "to": .string(alice.userID)])
            let toAlice = try await alice.events.event(named: "private message")
            #expect(toAlice.arguments.first?["content"] == "hi alice")

            // bob leaves: alice hears it once; a message to him waits for him, on either server.
            await bob.socket.disconnect()
            let left = try await alice.events.event(named: "user disconnected")
            #expect(left.arguments.first == .string(bob.userID))
            _ = try await alice.socket.emitWithAck("private message", ["content": "see this later", "to": .string(bob.userID)])
            // B keeps it once the bus brings it (milliseconds: a login on B before then would
            // not have it in its history yet; README says so).
            #expect(await eventually(within: .seconds(10)) { b.server.chat.messageCount == 3 })
            for node in [b, a] {
                // Each server has it for the history it hands out (B heard it from A).
                let back = try await node.server.login(["sessionID": .string(bob.sessionID)])
                #expect(back.userID == bob.userID)
                let users = try #require(try await back.events.event(named: "users").arguments.first?.arrayValue)
                let entry = try #require(users.first { $0["userID"] == .string(alice.userID) })
                let texts = entry["messages"]?.arrayValue?.compactMap { $0["content"]?.stringValue } ?? []
                #expect(texts == ["hi bob", "hi alice", "see this later"], "on \(node.bus.uid)")
                await back.socket.disconnect()
            }
            await alice.socket.disconnect()
            // The session IDs, bearer secrets, never went over the bus.
            let payloads = heard.withLock { $0 }
            #expect(payloads.contains { $0.contains(alice.userID) })
            #expect(!payloads.contains { $0.contains(alice.sessionID) || $0.contains(bob.sessionID) })
            listening.cancel()
            try? await listener.close()
            for node in [a, b] {
                await node.bus.close()
                await node.server.stop()
            }
        }

        /// A server that dies (no word, no heartbeat): its users are offline for the others
        /// within the heartbeat timeout, and their clients are told.
        @Test func theUsersOfADeadServerGoOffline() async throws {
            let location = try PostgresChatStore.Location(url: try await PrivatePostgres.shared().database())
            let a = try await start(location)
            let b = try await start(location)
            #expect(await eventually(within: .seconds(10)) { b.bus.servers == [a.bus.uid] })
            let alice = try await a.server.login(["username": "alice"])
            #expect(await eventually(within: .seconds(10)) { b.server.chat.userCount == 1 })
            let bob = try await b.server.login(["username": "bob"])
            let list = try #require(try await bob.events.event(named: "users").arguments.first?.arrayValue)
            #expect(list.contains { $0["userID"] == .string(alice.userID) && $0["connected"] == true })
            await a.bus.stop()  // dies: no adapter close
            let gone = try await bob.events.event(named: "user disconnected", timeout: .seconds(10))
            #expect(gone.arguments.first == .string(alice.userID))
            await alice.socket.disconnect()
            await bob.socket.disconnect()
            await a.server.stop()
            await b.bus.close()
            await b.server.stop()
        }

        /// A user whose last sockets on two servers close at the same moment: each server
        /// thought the other still had one, and nobody said `user disconnected` (the review's
        /// finding). Each server now tells its own clients when presence changes as it sees it.
        @Test func lastSocketsLeavingTwoServersAtOnceAreSaidOnce() async throws {
            let location = try PostgresChatStore.Location(url: try await PrivatePostgres.shared().database())
            let a = try await start(location)
            let b = try await start(location)
            #expect(await eventually(within: .seconds(10)) { a.bus.servers == [b.bus.uid] && b.bus.servers == [a.bus.uid] })
            let alice = try await a.server.login(["username": "alice"])
            #expect(await eventually(within: .seconds(10)) { b.server.chat.userCount == 1 })
            let aliceOnB = try await b.server.login(["sessionID": .string(alice.sessionID)])
            let bob = try await b.server.login(["username": "bob"])
            #expect(await eventually(within: .seconds(10)) { a.server.chat.userCount == 2 })
            let carol = try await a.server.login(["username": "carol"])
            async let closeA: Void = alice.socket.disconnect()
            async let closeB: Void = aliceOnB.socket.disconnect()
            _ = await (closeA, closeB)
            for watcher in [bob, carol] {
                let gone = try await watcher.events.event(named: "user disconnected", timeout: .seconds(10))
                #expect(gone.arguments.first == .string(alice.userID))
            }
            for client in [bob, carol] { await client.socket.disconnect() }
            for node in [a, b] {
                await node.bus.close()
                await node.server.stop()
            }
        }

        /// What another writer of the database broadcasts reaches no client unless it is a
        /// `private message` as the chat sends one: not an event of its choosing, not a message
        /// to everyone; presence for users nobody knows, from a server nobody heard, is not kept.
        @Test func forgedBroadcastsAndPresenceAreNotTaken() async throws {
            let postgres = try await PrivatePostgres.shared()
            let url = try await postgres.database()
            let name = String(url.split(separator: "/").last!)
            let location = try PostgresChatStore.Location(url: url)
            let a = try await start(location)
            let alice = try await a.server.login(["username": "alice"])
            func notify(_ message: String) async throws {
                try await postgres.psql("SELECT pg_notify('socket.io#/', '\(message)')", database: name)
            }
            let forger = "0123456789abcdef"
            try await notify(#"{"uid":"\#(forger)","nsp":"/","type":1}"#)
            try await notify(#"{"uid":"\#(forger)","nsp":"/","type":3,"data":{"packet":{"type":2,"data":["session",{"sessionID":"attacker","userID":"\#(alice.userID)"}],"nsp":"/"},"opts":{"rooms":[],"except":[],"flags":{}}}}"#)
            try await notify(#"{"uid":"\#(forger)","nsp":"/","type":3,"data":{"packet":{"type":2,"data":["private message",{"content":"to all","from":"ffffffffffffffff","to":"\#(alice.userID)"}],"nsp":"/"},"opts":{"rooms":[],"except":[],"flags":{}}}}"#)
            try await notify(#"{"uid":"ghost","nsp":"/","type":9,"data":{"packet":["parley:presence",{"userID":"eeeeeeeeeeeeeeee","online":true}]}}"#)
            // A marker that does arrive: what came before it did not.
            try await notify(#"{"uid":"\#(forger)","nsp":"/","type":3,"data":{"packet":{"type":2,"data":["private message",{"content":"marker","from":"\#(alice.userID)","to":"\#(alice.userID)"}],"nsp":"/"},"opts":{"rooms":["\#(alice.userID)"],"except":[],"flags":{}}}}"#)
            let next = try await alice.events.next { if case .event(let event) = $0 { event.name != "users" && event.name != "session" } else { false } }
            guard case .event(let event) = next else { throw CancellationError() }
            #expect(event.name == "private message" && event.arguments.first?["content"] == "marker", "\(event)")
            await alice.socket.disconnect()
            await a.bus.close()
            await a.server.stop()
        }

        /// A user made on A while B was starting (after B read the database, before its bus
        /// listened) is not lost to B: B catches up from the database once it listens.
        @Test func aUserMadeWhileAServerStartsIsKnownToIt() async throws {
            let location = try PostgresChatStore.Location(url: try await PrivatePostgres.shared().database())
            let a = try await start(location)
            var carol: (socket: Socket, events: SocketEventRecorder, userID: String, sessionID: String)?
            let b = try await start(location) {
                carol = try await a.server.login(["username": "carol"])
                await (a.server.store as! PostgresChatStore).flush()
            }
            #expect(await eventually(within: .seconds(10)) { b.server.chat.userCount == 1 })
            let back = try await b.server.login(["sessionID": .string(carol!.sessionID)])
            #expect(back.userID == carol!.userID)
            for client in [back, carol!] { await client.socket.disconnect() }
            for node in [a, b] {
                await node.bus.close()
                await node.server.stop()
            }
        }
    }
}
