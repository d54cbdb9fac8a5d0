import EngineIO
import EngineIOServer
import SocketIO
import SocketIOTesting
import Testing

/// Parley's client transports (`EngineIOTransports`) against Parley's server, which speaks
/// both: HTTP long-polling, the upgrade to WebSocket, and the fall back to polling when
/// WebSocket is refused. The server is the echo app of the Engine.IO suite, on a manual clock;
/// the client's clock does not move either, so neither side times out unless a test says so.
extension ServerSuites {
    @Suite("Client transports") struct ClientTransportTests {
        func endpoint(_ server: RunningServer) throws -> EngineIOEndpoint {
            try EngineIOEndpoint(url: "http://127.0.0.1:\(server.port)", path: "/engine.io/")
        }

        func open(_ transports: EngineIOTransports, _ server: RunningServer) async throws -> EngineIOConnection {
            let transport = try await transports.connect(to: try endpoint(server))
            return try await EngineIOConnection.open(over: transport, clock: ManualClock())
        }

        /// The server pings (its clock moves) and the session outlives its ping timeout: the
        /// client answers as it reads, so its pong goes out after "read the ping" and before
        /// "after the pong", and once that one is echoed the pong has arrived.
        func expectThePingAnswered(
            _ server: RunningServer, _ connection: EngineIOConnection, _ events: inout EngineIOConnection.Events.AsyncIterator
        ) async throws {
            server.clock.advance(by: .milliseconds(300))
            try connection.send(.text("read the ping"))
            #expect(await events.next() == .message(.text("read the ping")))
            try connection.send(.text("after the pong"))
            #expect(await events.next() == .message(.text("after the pong")))
            server.clock.advance(by: .milliseconds(250))
            #expect(server.engine.session(id: connection.handshake.sid) != nil, "the session timed out: the pong did not arrive")
        }

        @Test func pollingCarriesTextAndBinaryBothWaysAndAnswersThePings() async throws {
            try await withServer(makeEchoEngine()) { server in
                let connection = try await open(EngineIOTransports(.polling), server)
                let sid = connection.handshake.sid
                #expect(server.engine.session(id: sid)?.transport == .polling)
                var events = connection.events.makeAsyncIterator()
                try connection.send(.text("héllo 😀"))
                try connection.send(.binary([0, 1, 0x1E, 255]))
                #expect(await events.next() == .message(.text("héllo 😀")))
                #expect(await events.next() == .message(.binary([0, 1, 0x1E, 255])))

                // The server pings in the GET it holds; the pong comes back by post.
                try await expectThePingAnswered(server, connection, &events)
                #expect(server.engine.session(id: sid)?.transport == .polling)

                connection.close()
                await connection.waitUntilClosed()
                #expect(await eventually { server.sessionIsGone(sid) })
            }
        }

        /// A burst larger than the server's maxPayload goes out in several posts, each within
        /// it: one post of everything would be refused (413) and end the session.
        @Test func aBurstIsPostedInPiecesWithinTheServersMaxPayload() async throws {
            try await withServer(makeEchoEngine(maxHttpBufferSize: 200)) { server in
                let connection = try await open(EngineIOTransports(.polling), server)
                #expect(connection.handshake.maxPayload == 200)
                let texts = (0..<40).map { "message \($0) " + String(repeating: "x", count: 20) }
                for text in texts { try connection.send(.text(text)) }
                var events = connection.events.makeAsyncIterator()
                for text in texts { #expect(await events.next() == .message(.text(text))) }
                connection.close()
            }
        }

        @Test func pollingUpgradesToWebSocketAndNothingIsLostOnTheWay() async throws {
            try await withServer(makeEchoEngine()) { server in
                let transports = EngineIOTransports(
                    order: [.polling], upgrade: true, webSocket: NIOWebSocketTransportFactory(), polling: PollingTransportFactory()
                )
                let connection = try await open(transports, server)
                let sid = connection.handshake.sid
                var events = connection.events.makeAsyncIterator()
                // Messages sent before, during and after the upgrade all come back, in order.
                var sent: [String] = []
                for n in 0..<50 {
                    sent.append("m\(n)")
                    try connection.send(.text("m\(n)"))
                    if n == 25 { #expect(await eventually { server.engine.session(id: sid)?.transport == .websocket }) }
                }
                for text in sent { #expect(await events.next() == .message(.text(text))) }
                #expect(server.engine.session(id: sid)?.transport == .websocket)
                // The heartbeat goes on over the WebSocket.
                try await expectThePingAnswered(server, connection, &events)
                connection.close()
                await connection.waitUntilClosed()
            }
        }

        /// A server (or a proxy) that refuses WebSocket: `auto` falls back to polling, and the
        /// upgrade it then tries fails too, which leaves the session on polling, working.
        @Test func autoFallsBackToPollingWhenWebSocketIsRefused() async throws {
            try await withServer(makeEchoEngine(transports: [.polling])) { server in
                let connection = try await open(EngineIOTransports(.auto), server)
                let sid = connection.handshake.sid
                #expect(server.engine.session(id: sid)?.transport == .polling)
                var events = connection.events.makeAsyncIterator()
                try connection.send(.text("still here"))
                #expect(await events.next() == .message(.text("still here")))
                connection.close()
            }
            // And a WebSocket-only setting does not fall back.
            try await withServer(makeEchoEngine(transports: [.polling])) { server in
                await #expect(throws: (any Error).self) { _ = try await open(EngineIOTransports(.websocket), server) }
            }
        }

        /// A server (or a proxy) that ends the connection after every answer: each request
        /// goes on a new connection, and none is written into one that is closing.
        @Test func pollingSurvivesAServerThatClosesEveryConnection() async throws {
            try await withServer(makeEchoEngine()) { server in
                // Asked for: parley-server then answers `Connection: close` and closes.
                let transports = EngineIOTransports(.polling, options: .init(headers: [(name: "Connection", value: "close")]))
                let connection = try await open(transports, server)
                var events = connection.events.makeAsyncIterator()
                for n in 0..<100 {
                    try connection.send(.text("m\(n)"))
                    #expect(await events.next() == .message(.text("m\(n)")))
                }
                connection.close()
            }
        }

        /// Over polling a binary message goes as base64, a third larger: `send` counts it so,
        /// and refuses what the server would refuse (which would end the session).
        @Test func aBinaryMessageIsMeasuredAsPollingSendsIt() async throws {
            try await withServer(makeEchoEngine(maxHttpBufferSize: 1_000)) { server in
                let connection = try await open(EngineIOTransports(.polling), server)
                #expect(throws: EngineIOError.payloadTooLarge(size: 1_201, limit: 1_000)) { try connection.send(.binary(Array(repeating: 7, count: 900))) }
                try connection.send(.binary(Array(repeating: 7, count: 700)))
                var events = connection.events.makeAsyncIterator()
                #expect(await events.next() == .message(.binary(Array(repeating: 7, count: 700))))
                connection.close()
            }
        }

        /// Socket.IO over polling: a binary attachment that fits `maxPayload` raw but not as
        /// base64 is refused by `emit` (it was reported `.sent` and dropped).
        @Test func anAttachmentTooLargeAsBase64IsRefusedByEmit() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                var configuration = SocketManager.Configuration(transport: EngineIOTransports(.polling), clock: ManualClock())
                configuration.reconnection = ReconnectPolicy(isEnabled: false)
                let manager = try SocketManager(url: "http://127.0.0.1:\(server.port)", configuration: configuration)
                let socket = try await manager.socket()
                let events = await socket.events()
                await socket.connect()
                for await event in events {
                    if case .connect = event { break }
                }
                await #expect(throws: SocketIO.SocketError.payloadTooLarge(size: 1_066_669, limit: 1_000_000)) {
                    _ = try await socket.emit("message", .binary(Array(repeating: 1, count: 800_000)))
                }
                #expect(try await socket.emit("message", .binary(Array(repeating: 1, count: 700_000))) == .sent)
                await manager.close()
            }
        }

        /// A WebSocket that never opens (a proxy that takes the upgrade request and never
        /// answers) does not use up the attempt: after `fallbackAfter`, polling.
        @Test func aWebSocketThatHangsFallsBackToPollingInTime() async throws {
            struct Hanging: EngineIOTransportFactory {
                func connect(to endpoint: EngineIOEndpoint) async throws -> any EngineIOTransport {
                    try await Task.sleep(for: .seconds(3_600))
                    throw CancellationError()
                }
            }
            try await withServer(makeEchoEngine()) { server in
                let transports = EngineIOTransports(
                    order: [.websocket, .polling], upgrade: false, webSocket: Hanging(), polling: PollingTransportFactory(),
                    fallbackAfter: .milliseconds(100)
                )
                let connection = try await open(transports, server)
                #expect(server.engine.session(id: connection.handshake.sid)?.transport == .polling)
                connection.close()
            }
        }

        /// A hostile server that answers a poll with more than the client takes: the
        /// transport ends with a clear error instead of buffering it.
        @Test func aPollAnswerLargerThanTheLimitEndsTheConnection() async throws {
            try await withServer(makeEchoEngine()) { server in
                let transports = EngineIOTransports(.polling, options: .init(maxIncomingMessageSize: 1_000))
                let connection = try await open(transports, server)
                var events = connection.events.makeAsyncIterator()
                try connection.send(.text(String(repeating: "a", count: 500)))
                #expect(await events.next() == .message(.text(String(repeating: "a", count: 500))))
                try connection.send(.text(String(repeating: "b", count: 5_000)))
                guard case .closed(let reason)? = await events.next() else {
                    Issue.record("the oversize answer was taken")
                    return
                }
                #expect("\(reason)".contains("larger than 1000 bytes"), "\(reason)")
            }
        }
    }
}
