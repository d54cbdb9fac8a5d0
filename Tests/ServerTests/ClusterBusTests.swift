import EngineIOServer
import Foundation
import JSON
import SocketIOServer
import Logging
@testable import Postgres
import SocketIOCluster
import SocketIOTesting
import Synchronization
import Testing

/// What the servers of a cluster say to each other (socket.io-adapter's format), and the
/// PostgreSQL bus that carries it, on the tests' own PostgreSQL.
extension ServerSuites {
    @Suite struct ClusterFormatTests {
        /// A broadcast as a Node.js server with @socket.io/postgres-adapter writes it
        /// (`socket.to(room).emit(…)`: the packet object, the rooms, the sender's socket ID
        /// as an exception, flags), read here; and ours reads the same.
        @Test func aBroadcastInTheAdaptersFormat() throws {
            let node = try JSONValue(
                parsing: #"{"type":3,"data":{"packet":{"type":2,"data":["private message",{"content":"hi","from":"u1","to":"u2"}],"nsp":"/"},"opts":{"rooms":["u2","u1"],"except":["Zx9-socketid"],"flags":{}}},"uid":"a1b2c3d4e5f60718","nsp":"/"}"#
            )
            let message = try ClusterMessage(node)
            #expect(message.uid == "a1b2c3d4e5f60718")
            #expect(message.type == .broadcast)
            let broadcast = try #require(message.broadcast)
            #expect(broadcast.event == "private message")
            #expect(broadcast.arguments == [["content": "hi", "from": "u1", "to": "u2"]])
            #expect(broadcast.rooms == ["u2", "u1"])
            #expect(broadcast.except == ["Zx9-socketid"])
            #expect(!broadcast.local)
            let ours = ClusterMessage.broadcast(uid: "a1b2c3d4e5f60718", event: "private message", arguments: broadcast.arguments, rooms: ["u2", "u1"], except: ["Zx9-socketid"])
            #expect(ours.json.objectValue?.dictionary == node.objectValue?.dictionary)
            #expect(try ClusterMessage(try JSONValue(parsing: ours.json.serialized())) == ours)
        }

        @Test func heartbeatsAndServerSideEmits() throws {
            for type in ClusterMessage.MessageType.allCases {
                let text = #"{"uid":"u","nsp":"/","type":\#(type.rawValue)}"#
                #expect(try ClusterMessage(try JSONValue(parsing: text)).type == type)
            }
            let emit = ClusterMessage.serverSideEmit(uid: "x", event: "presence", arguments: [["user": "u1", "sockets": 2]])
            #expect(emit.json.objectValue?["data"] == ["packet": ["presence", ["user": "u1", "sockets": 2]]])
            #expect(emit.serverSideEmit?.event == "presence")
        }

        @Test(arguments: [
            "[]", #"{"uid":"u","type":99}"#, #"{"type":3}"#, #"{"uid":"","type":1}"#, #"{"uid":"u","type":"3"}"#,
            #"{"uid":"\#(String(repeating: "u", count: 65))","type":1}"#,
        ])
        func whatIsNotAMessageIsRefused(_ text: String) throws {
            #expect(throws: ClusterMessage.DecodingError.self) { try ClusterMessage(try JSONValue(parsing: text)) }
        }

        /// A broadcast with something wrong in it is not one (and nothing is sent on).
        @Test func aBroadcastWithoutItsPartsIsNone() throws {
            let texts = [
                #"{"uid":"u","type":3,"data":{"packet":{"type":2,"data":[]},"opts":{}}}"#,
                #"{"uid":"u","type":3,"data":{"packet":{"type":2,"data":[7]},"opts":{}}}"#,
                #"{"uid":"u","type":3,"data":{"packet":{"type":2,"data":["e"]},"opts":{"rooms":[1]}}}"#,
                #"{"uid":"u","type":3,"data":{"packet":{"type":1,"data":["e"]},"opts":{}}}"#,
            ]
            for text in texts { #expect(try ClusterMessage(try JSONValue(parsing: text)).broadcast == nil, "\(text)") }
        }

        /// MessagePack as @msgpack/msgpack writes it (known bytes), and back, every form.
        @Test func messagePackBytes() throws {
            let value: JSONValue = ["a": 1, "b": [true, .null, -1, 300, -200, 70_000, 5_000_000_000, 1.5, "é"], "c": .binary([1, 2, 3])]
            let bytes = MessagePack.encode(value)
            #expect(bytes.prefix(4) == [0x83, 0xA1, 0x61, 0x01])
            #expect(try MessagePack.decode(bytes) == value)
            #expect(MessagePack.encode(.string(String(repeating: "x", count: 40))).prefix(2) == [0xD9, 40])
            #expect(MessagePack.encode(.int(-33)) == [0xD0, 0xDF])
            #expect(MessagePack.encode(.double(2.0)) == [0x02])
            let long: JSONValue = .array((0..<70_000).map { .int($0 % 100) })
            #expect(try MessagePack.decode(MessagePack.encode(long)) == long)
        }

        /// What another writer of the database could hand over: each refused, none trusted.
        @Test(arguments: [
            [0xDD, 0xFF, 0xFF, 0xFF, 0xFF],  // an array of 4 billion items in 5 bytes
            [0xDB, 0x00, 0x10, 0x00, 0x00, 0x41],  // a string longer than what is left
            [0x81, 0x01, 0x02],  // a map key that is not a string
            [0xA2, 0xFF, 0xFE],  // a string that is not UTF-8
            [0xC1],  // never used
            [0x01, 0x02],  // a byte after the value
        ] as [[UInt8]])
        func hostileMessagePackIsRefused(_ bytes: [UInt8]) {
            #expect(throws: MessagePack.DecodingError.self) { try MessagePack.decode(bytes) }
        }

        @Test func nestingIsBounded() {
            let deep = [UInt8](repeating: 0x91, count: 10_000) + [0xC0]
            #expect(throws: MessagePack.DecodingError.self) { try MessagePack.decode(deep) }
        }

        @Test func membershipComesAndGoes() {
            var members = Membership<Int>()
            let first = members.heard("a", at: 1)
            let again = members.heard("a", at: 5)
            let second = members.heard("b", at: 2)
            #expect(first && !again && second)
            let expired = members.expire(before: 3)
            #expect(expired == ["b"])
            #expect(members.servers == ["a"])
            let closed = members.closed("a")
            let closedAgain = members.closed("a")
            #expect(closed && !closedAgain)
            for n in 0..<5_000 { members.heard("x\(n)", at: 10) }
            #expect(members.servers.count == Membership<Int>.maximumServers)
        }
    }

    @Suite struct ClusterBusTests {
        final class Heard: Sendable {
            let messages = Mutex<[ClusterMessage]>([])
            let left = Mutex<[String]>([])
        }

        static let quick: PostgresClusterBus.Options = {
            var options = PostgresClusterBus.Options()
            options.heartbeatInterval = .milliseconds(100)
            options.heartbeatTimeout = .milliseconds(500)
            return options
        }()

        func bus(_ url: String, _ heard: Heard, log: CapturedLog? = nil) async throws -> PostgresClusterBus {
            try await PostgresClusterBus.start(
                try PostgresChatStore.Location(url: url), options: Self.quick, logger: log?.logger ?? quietLogger,
                onMessage: { message in heard.messages.withLock { $0.append(message) } },
                onLeave: { gone in heard.left.withLock { $0 += gone } }
            )
        }

        @Test func serversFindEachOtherBroadcastAndLeave() async throws {
            let url = try await PrivatePostgres.shared().database()
            let (heardA, heardB) = (Heard(), Heard())
            let a = try await bus(url, heardA)
            let b = try await bus(url, heardB)
            #expect(await eventually(within: .seconds(10)) { a.servers == [b.uid] && b.servers == [a.uid] })

            // A broadcast from a reaches b, not a itself.
            try await a.publish(.broadcast(uid: a.uid, event: "private message", arguments: [["content": "hi"]], rooms: ["u2"], except: []))
            #expect(await eventually(within: .seconds(10)) { heardB.messages.withLock { $0.contains { $0.broadcast?.event == "private message" } } })
            // Past the notification's limit, and with bytes: through the attachments table.
            let long = String(repeating: "long text ", count: 3_000)
            try await a.publish(.broadcast(uid: a.uid, event: "big", arguments: [.string(long), .binary([0, 1, 2, 255])], rooms: [], except: []))
            #expect(await eventually(within: .seconds(10)) {
                heardB.messages.withLock { $0.contains { $0.broadcast?.arguments == [.string(long), .binary([0, 1, 2, 255])] } }
            })
            #expect(heardA.messages.withLock { $0.isEmpty }, "a server does not hear itself")

            // A server that says it leaves is out at once.
            await a.close()
            #expect(await eventually(within: .seconds(10)) { heardB.left.withLock { $0 } == [a.uid] && b.servers.isEmpty })
            await b.close()
        }

        /// A server that dies (no ADAPTER_CLOSE, no heartbeat) is out after the timeout.
        @Test func aSilentServerIsOutAfterTheHeartbeatTimeout() async throws {
            let url = try await PrivatePostgres.shared().database()
            let (heardA, heardB) = (Heard(), Heard())
            let a = try await bus(url, heardA)
            let b = try await bus(url, heardB)
            #expect(await eventually(within: .seconds(10)) { b.servers == [a.uid] })
            await a.stop()
            #expect(await eventually(within: .seconds(10)) { heardB.left.withLock { $0 } == [a.uid] })
            #expect(b.servers.isEmpty)
            await b.close()
        }

        /// What a Node.js server with the official adapter would send, written into the channel
        /// by hand, is understood; what is not a message is logged and dropped.
        @Test func notificationsFromElsewhere() async throws {
            let postgres = try await PrivatePostgres.shared()
            let url = try await postgres.database()
            let database = String(url.split(separator: "/").last!)
            let heard = Heard()
            let log = CapturedLog()
            let b = try await bus(url, heard, log: log)
            let node = #"{"type":3,"data":{"packet":{"type":2,"data":["user connected",{"userID":"n1","username":"nora"}],"nsp":"/"},"opts":{"rooms":[],"except":[],"flags":{}}},"uid":"0123456789abcdef","nsp":"/"}"#
            try await postgres.psql("SELECT pg_notify('socket.io#/', '\(node)')", database: database)
            #expect(await eventually(within: .seconds(10)) { heard.messages.withLock { $0.contains { $0.broadcast?.event == "user connected" } } })
            #expect(b.servers == ["0123456789abcdef"])
            try await postgres.psql("SELECT pg_notify('socket.io#/', 'not json')", database: database)
            try await postgres.psql(#"SELECT pg_notify('socket.io#/', '{"uid":"x","type":3,"attachmentId":"999999"}')"#, database: database)
            #expect(await eventually(within: .seconds(10)) { !log.lines(containing: "not understood").isEmpty })
            await b.close()
        }

        /// Two Socket.IO servers on one database: a broadcast on one reaches the sockets of
        /// the other that it names, and no others; a socket's own broadcast does not come back
        /// to it; a server-side emit reaches the other server.
        @Test func broadcastsReachTheSocketsOfTheOtherServer() async throws {
            let url = try await PrivatePostgres.shared().database()
            let location = try PostgresChatStore.Location(url: url)
            func makeServer() -> SocketIOServer {
                let io = SocketIOServer(
                    engineOptions: EngineIOServerOptions(path: "/socket.io/", limits: .unlimitedAddresses), clock: ManualServerClock(), logger: quietLogger
                )
                io.main.onConnection { socket in
                    for room in socket.auth["rooms"]?.arrayValue ?? [] { socket.join(room.stringValue ?? "") }
                    if socket.auth["name"]?.stringValue == "alice" {
                        socket.on("shout") { socket, arguments, _ in socket.broadcast.emit("shouted", arguments: arguments) }
                    }
                }
                return io
            }
            let (ioA, ioB) = (makeServer(), makeServer())
            let emitted = Mutex<[String]>([])
            ioB.onServerSideEmit { event, _, _ in emitted.withLock { $0.append(event) } }
            let busA = try await PostgresClusterBus.start(location, options: Self.quick, logger: quietLogger, onMessage: { ioA.receive($0) })
            let busB = try await PostgresClusterBus.start(location, options: Self.quick, logger: quietLogger, onMessage: { ioB.receive($0) })
            ioA.join(cluster: busA)
            ioB.join(cluster: busB)
            #expect(await eventually(within: .seconds(10)) { busA.servers == [busB.uid] && busB.servers == [busA.uid] })

            func connect(_ server: RunningServer, _ name: String, rooms: [String]) async throws -> WebSocketClient {
                let client = try await server.webSocket("/socket.io/?EIO=4&transport=websocket", answerPings: true)
                _ = try handshakeSID(try await client.next().text)
                client.send("40" + JSONValue.object(["name": .string(name), "rooms": .array(rooms.map { .string($0) })]).serialized())
                let answer = try await client.nextSkippingPings()
                try #require(answer.text.hasPrefix("40{"), "\(answer)")
                return client
            }
            try await withServer(ioA) { a in
                try await withServer(ioB) { b in
                    let alice = try await connect(a, "alice", rooms: ["r1"])
                    let bob = try await connect(b, "bob", rooms: ["r1"])
                    let carol = try await connect(b, "carol", rooms: ["r2"])
                    #expect(await eventually { ioB.main.socketCount == 2 && ioA.main.socketCount == 1 })

                    ioA.main.to("r1").emit("hello", ["from": "a"])
                    #expect(try await alice.nextSkippingPings().text == #"42["hello",{"from":"a"}]"#)
                    #expect(try await bob.nextSkippingPings(timeout: .seconds(10)).text == #"42["hello",{"from":"a"}]"#)
                    // carol is not in r1: the next thing she gets is the broadcast to everyone but r1.
                    ioB.main.except("r1").emit("not r1")
                    #expect(try await carol.nextSkippingPings().text == #"42["not r1"]"#)

                    // alice's own broadcast reaches everyone else, on both servers, not her.
                    alice.send(#"42["shout","hi all"]"#)
                    #expect(try await bob.nextSkippingPings(timeout: .seconds(10)).text == #"42["shouted","hi all"]"#)
                    #expect(try await carol.nextSkippingPings(timeout: .seconds(10)).text == #"42["shouted","hi all"]"#)
                    ioA.main.emit("marker")
                    #expect(try await alice.nextSkippingPings().text == #"42["marker"]"#, "alice did not hear her own shout")
                    #expect(try await bob.nextSkippingPings(timeout: .seconds(10)).text == #"42["marker"]"#)
                    #expect(try await carol.nextSkippingPings(timeout: .seconds(10)).text == #"42["marker"]"#)

                    // Each socket is in a room named by its ID, on every server (socket.io's `to(socket.id)`).
                    let carolID = try #require(ioB.main.sockets.first { $0.auth["name"]?.stringValue == "carol" }?.id)
                    ioA.main.to(carolID).emit("just you")
                    #expect(try await carol.nextSkippingPings(timeout: .seconds(10)).text == #"42["just you"]"#)
                    ioA.main.except(carolID).emit("everyone else")
                    #expect(try await bob.nextSkippingPings(timeout: .seconds(10)).text == #"42["everyone else"]"#)
                    ioA.main.to("r2").emit("after")
                    #expect(try await carol.nextSkippingPings(timeout: .seconds(10)).text == #"42["after"]"#, "carol was left out")

                    ioA.serverSideEmit("presence", [["user": "u1"]])
                    #expect(await eventually(within: .seconds(10)) { emitted.withLock { $0 } == ["presence"] })
                }
            }
            await busA.close()
            await busB.close()
        }
    }
}
