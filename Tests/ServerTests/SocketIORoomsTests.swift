import EngineIOServer
import JSON
import SocketIOServer
import Synchronization
import Testing

extension ServerSuites {
    /// Rooms and broadcasts, as socket.io has them (`to`, `except`, `socket.to`,
    /// `socket.broadcast`, `sockets(in:)`): who a broadcast reaches, each socket once.
    @Suite("Socket.IO rooms and broadcasts") struct SocketIORooms {
        /// The sockets of the test server by the name their CONNECT payload gave,
        /// `{"name": …, "rooms": […]}`; each has joined its rooms before it is listed.
        final class Registry: Sendable {
            private let sockets = Mutex<[String: SocketIOServerSocket]>([:])
            func add(_ name: String, _ socket: SocketIOServerSocket) { sockets.withLock { $0[name] = socket } }
            var count: Int { sockets.withLock { $0.count } }
            subscript(name: String) -> SocketIOServerSocket { sockets.withLock { $0[name]! } }
            func names(of found: [SocketIOServerSocket]) -> [String] {
                sockets.withLock { table in
                    found.map { socket in table.first { $0.value === socket }?.key ?? "?" }.sorted()
                }
            }
        }

        func makeServer(_ registry: Registry) -> SocketIOServer {
            // Forty clients from one address, at once: more than a real address opens.
            let io = SocketIOServer(
                engineOptions: EngineIOServerOptions(path: "/socket.io/", limits: .unlimitedAddresses),
                clock: ManualServerClock(),
                logger: quietLogger
            )
            io.main.onConnection { socket in
                for room in socket.auth["rooms"]?.arrayValue ?? [] { socket.join(room.stringValue ?? "") }
                registry.add(socket.auth["name"]?.stringValue ?? "", socket)
            }
            return io
        }

        func connect(_ server: RunningServer, _ name: String, rooms: [String]) async throws -> WebSocketClient {
            let client = try await server.webSocket("/socket.io/?EIO=4&transport=websocket", answerPings: true)
            _ = try handshakeSID(try await client.next().text)
            let auth = JSONValue.object(["name": .string(name), "rooms": .array(rooms.map { .string($0) })])
            client.send("40" + auth.serialized())
            let answer = try await client.nextSkippingPings()
            try #require(answer.text.hasPrefix("40{"), "\(answer)")
            return client
        }

        @Test("a broadcast reaches the members of its rooms, minus its exceptions, each once")
        func whoIsReached() async throws {
            let registry = Registry()
            try await withServer(makeServer(registry)) { server in
                let clients = [
                    try await connect(server, "a", rooms: ["r1"]),
                    try await connect(server, "b", rooms: ["r1", "r2"]),
                    try await connect(server, "c", rooms: ["r2"]),
                    try await connect(server, "d", rooms: []),
                ]
                #expect(await eventually { registry.count == 4 })
                let main = registry["a"].namespace
                func names(_ broadcast: SocketIOBroadcast) -> [String] { registry.names(of: broadcast.sockets) }

                #expect(names(main.to("r1")) == ["a", "b"])
                #expect(names(main.to("r1", "r2")) == ["a", "b", "c"], "b is in both rooms and counted once")
                #expect(names(main.to("r1", "r1")) == ["a", "b"])
                #expect(names(main.to("r1").to("r2")) == ["a", "b", "c"])
                #expect(names(main.to("r1", "r2").except("r2")) == ["a"])
                #expect(names(main.except("r1")) == ["c", "d"], "no room: every socket but the excepted")
                #expect(names(main.to("nobody")) == [])
                #expect(names(main.to("nobody", "r2")) == ["b", "c"])
                #expect(names(main.to(registry["d"].id)) == ["d"], "each socket is in a room of its own ID")
                #expect(names(registry["a"].to("r1", "r2")) == ["b", "c"], "socket.to leaves the sender out")
                #expect(names(registry["b"].to("r1", "r2")) == ["a", "c"])
                #expect(names(registry["b"].broadcast) == ["a", "c", "d"])
                #expect(names(registry["b"].broadcast.except("r1")) == ["c", "d"])
                #expect(names(main.to("r1", "r2").excluding(registry["c"]).excluding(registry["a"])) == ["b"])
                #expect(registry.names(of: main.sockets(in: "r2")) == ["b", "c"])
                #expect(main.sockets(in: "nobody").isEmpty)

                // Leaving a room, and disconnecting, take the socket out of its rooms.
                registry["b"].leave("r1")
                #expect(names(main.to("r1")) == ["a"])
                #expect(names(main.to("r1", "r2")) == ["a", "b", "c"])
                clients[2].send("41")
                #expect(await eventually { registry.names(of: main.sockets(in: "r2")) == ["b"] })

                // What is sent: one frame to each socket reached, none to the others. A
                // broadcast to everyone after it shows, on each connection, what came first.
                main.to("r1", "r2").emit("news", "x")
                main.emit("end")
                for (client, name) in [(clients[0], "a"), (clients[1], "b"), (clients[3], "d")] {
                    var received: [String] = []
                    while received.last != #"42["end"]"# {
                        received.append(try await client.nextSkippingPings().text)
                    }
                    let expected = name == "d" ? [#"42["end"]"#] : [#"42["news","x"]"#, #"42["end"]"#]
                    #expect(received == expected, "\(name)")
                }
            }
        }

        @Test("what a socket is sent right before it is disconnected with its connection arrives, in order, before the close")
        func sentBeforeDisconnect() async throws {
            let registry = Registry()
            try await withServer(makeServer(registry)) { server in
                // Five times over: whether the close comes before the next flush is timing.
                for round in 0..<5 {
                    let client = try await connect(server, "s\(round)", rooms: [])
                    #expect(await eventually { registry.count == round + 1 })
                    let socket = registry["s\(round)"]
                    // Sent one by one from outside the connection's event loop: the first is
                    // flushed at once, the ones right after it wait for the next flush (at most
                    // one a millisecond per connection), which the close must not leave behind.
                    for i in 0..<50 { socket.emit("last", .int(i)) }
                    socket.disconnect(closeConnection: true)
                    var received: [String] = []
                    while case .text(let text) = try await client.nextSkippingPings() { received.append(text) }
                    #expect(received == (0..<50).map { #"42["last",\#($0)]"# } + ["41"], "round \(round)")
                }
            }
        }

        @Test("a broadcast to several large rooms still reaches each member once")
        func manyMembers() async throws {
            let registry = Registry()
            try await withServer(makeServer(registry)) { server in
                var clients: [WebSocketClient] = []
                for i in 0..<40 {
                    let rooms = i < 30 ? ["big1", "big2"] : ["big2", "big3"]
                    clients.append(try await connect(server, "s\(i)", rooms: rooms))
                }
                #expect(await eventually { registry.count == 40 })
                let main = registry["s0"].namespace
                let all = (0..<40).map { "s\($0)" }.sorted()
                #expect(registry.names(of: main.to("big1", "big2", "big3").sockets) == all)
                #expect(registry.names(of: main.to("big3", "big1").sockets) == all)
                #expect(
                    registry.names(of: main.to("big1", "big2").except("big3").sockets)
                        == (0..<30).map { "s\($0)" }.sorted()
                )
                #expect(
                    registry.names(of: registry["s0"].to("big1", "big2", "big3").sockets)
                        == all.filter { $0 != "s0" }
                )

                // Many rooms named (each socket's own, and one twice), many sockets left out.
                var everyone = main.to("big3")
                for i in 0..<40 { everyone = everyone.to(registry["s\(i)"].id, "big3") }
                #expect(registry.names(of: everyone.sockets) == all)
                var most = main.to("big2")
                for i in 0..<10 { most = most.excluding(registry["s\(i)"]).excluding(registry["s\(i)"]) }
                #expect(registry.names(of: most.sockets) == (10..<40).map { "s\($0)" }.sorted())
                #expect(registry.names(of: most.except("big1").sockets) == (30..<40).map { "s\($0)" }.sorted())
                _ = clients
            }
        }
    }
}
