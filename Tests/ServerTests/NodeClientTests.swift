import EngineIOProtocol
@testable import EngineIOServer
import NIOCore
import Testing

/// What a Node.js client (node-fetch on a keep-alive agent, ws) runs into, found by running
/// the official engine.io and socket.io suites against parley-server: a connection that
/// closes without saying so, a second WebSocket refused where engine.io completes and closes
/// it, and a poll that loses the race with its own client's close on a multi-threaded server.
extension ServerSuites {
    @Suite("A Node client's view") struct NodeClientTests: EngineIOTargets {
        let path = "/engine.io/"

        // MARK: Connection: close

        /// node-fetch sends `Connection: close`; HTTP/1.0 closes unless it asks to keep alive.
        /// The answer says `Connection: close`, and the connection ends after it.
        @Test(arguments: ["HTTP/1.1\r\nConnection: close", "HTTP/1.1\r\nConnection: Keep-Alive, CLOSE", "HTTP/1.0"])
        func aRequestThatDoesNotKeepTheConnectionIsToldItCloses(_ versionAndHeader: String) async throws {
            try await withServer(makeEchoEngine()) { server in
                let request = "GET \(polling) \(versionAndHeader)\r\nHost: 127.0.0.1\r\n\r\n"
                let (replies, rest) = try await HTTPClient.exchange(port: server.port, [request], thenEnd: true)
                #expect(replies.first?.status == 200)
                #expect(replies.first?[header: "connection"] == "close")
                #expect(rest.isEmpty)  // the end of the stream, with nothing after the answer
            }
        }

        @Test func requestsThatKeepTheConnectionShareIt() async throws {
            try await withServer(makeEchoEngine()) { server in
                let request = "GET \(polling) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                let (replies, _) = try await HTTPClient.exchange(port: server.port, [request, request], thenEnd: false)
                #expect(replies.map(\.status) == [200, 200])
                #expect(replies.allSatisfy { $0[header: "connection"]?.lowercased() != "close" })
                #expect(server.engine.sessionCount == 2)
            }
        }

        // MARK: The poll a client sent just before it closed

        /// The suite's "forcefully closes the session" sends its GET and its POST `1` at once.
        /// Node reads them in the order they were sent; on several threads the POST may be
        /// read first. The GET that comes just after is answered as it would have been (a
        /// `noop`), once; the next is the unknown-session error.
        @Test func aPollThatComesJustAfterItsClientClosedTheSessionGetsANoopOnce() async throws {
            try await withServer(makeEchoEngine()) { server in
                let sid = try await server.openPollingSession(path: path)
                #expect(try await server.post(polling(sid), body: "1").text == "ok")
                #expect(server.sessionIsGone(sid))
                let late = try await server.get(polling(sid))
                #expect(late.status == 200 && late.text == "6")
                #expect(try await server.get(polling(sid)).status == 400)
            }
        }

        @Test func aPollAfterTheGraceGetsTheUnknownSessionError() async throws {
            try await withServer(makeEchoEngine()) { server in
                let sid = try await server.openPollingSession(path: path)
                #expect(try await server.post(polling(sid), body: "1").text == "ok")
                server.clock.advance(by: .seconds(1))
                let late = try await server.get(polling(sid))
                #expect(late.status == 400)
                #expect(late.text == #"{"code":1,"message":"Session ID unknown"}"#)
            }
        }

        @Test func aSessionClosedForBreakingTheRulesHasNoGrace() async throws {
            try await withServer(makeEchoEngine()) { server in
                let sid = try await server.openPollingSession(path: path)
                #expect(try await server.post(polling(sid), body: "abc").status == 400)
                #expect(try await server.get(polling(sid)).status == 400)
            }
        }

        /// An attacker who opens and closes sessions without end makes the server remember
        /// at most `maxClosedByClient` of them, each for the grace only.
        @Test func closedSessionsAreRememberedBoundedAndBriefly() {
            let clock = ManualServerClock()
            let registry = SessionRegistry(limits: EngineIOServerOptions.Limits(), clock: clock)
            let limit = SessionRegistry.maxClosedByClient
            for n in 0..<limit + 100 { registry.rememberClosedByClient("sid\(n)") }
            #expect(registry.closedByClientCount == limit)
            #expect(!registry.closedByClientPoll("sid\(limit + 50)"))  // not remembered: the table was full
            #expect(registry.closedByClientPoll("sid7"))
            #expect(!registry.closedByClientPoll("sid7"))  // once
            // Past the grace, a poll finds nothing, and the next close to remember, with the
            // table full, sweeps it.
            registry.rememberClosedByClient("again")
            #expect(registry.closedByClientCount == limit)
            clock.advance(by: .seconds(1))
            #expect(!registry.closedByClientPoll("sid8"))
            registry.rememberClosedByClient("new")
            registry.rememberClosedByClient("newer")
            #expect(registry.closedByClientCount == 2)
            #expect(registry.closedByClientPoll("new"))
        }

        // MARK: A second WebSocket for a session

        @Test func aWebSocketForASessionOnAWebSocketAlreadyIsOpenedThenClosedWithTheReason() async throws {
            try await withServer(makeEchoEngine()) { server in
                let first = try await server.webSocket(websocket, answerPings: true)
                let sid = try handshakeSID(try await first.next().text)
                let second = try await server.webSocket(websocket(sid))
                #expect(second.handshakeStatus == 101)
                try await second.waitForClose()
                #expect(second.closeFrame?.code == 1008)
                #expect(second.closeFrame?.reason == "session already on a WebSocket")
                // The session goes on, on its own WebSocket.
                first.send("4still here")
                #expect(try await first.nextSkippingPings() == .text("4still here"))
                first.close()
            }
        }

        @Test func aWebSocketForASessionThatIsUpgradingIsOpenedThenClosed() async throws {
            try await withServer(makeEchoEngine()) { server in
                let sid = try await server.openPollingSession(path: path)
                let upgrading = try await server.webSocket(websocket(sid), answerPings: true)
                upgrading.send("2probe")
                #expect(try await upgrading.next() == .text("3probe"))
                let second = try await server.webSocket(websocket(sid))
                #expect(second.handshakeStatus == 101)
                try await second.waitForClose()
                #expect(second.closeFrame?.code == 1008)
                #expect(second.closeFrame?.reason == "session already upgrading")
                // The upgrade under way completes.
                upgrading.send("5")
                upgrading.send("4hello")
                #expect(try await upgrading.nextSkippingPings() == .text("4hello"))
                upgrading.close()
            }
        }

        @Test func aWebSocketForAnUnknownSessionIsRefusedWithTheReason() async throws {
            try await withServer(makeEchoEngine()) { server in
                let socket = try await server.webSocket(websocket("nosuchsession"))
                #expect(socket.handshakeStatus == 400)
                #expect(socket.handshakeBody == #"{"code":1,"message":"Session ID unknown"}"#)
            }
        }
    }
}
