import Foundation
@testable import EngineIOServer
import JSON
import NIOCore
import SocketIOServer
import Testing

/// The attacks of "parley-server under attack", as a hostile client makes them, at the
/// Engine.IO and Socket.IO layers: each is refused with an answer the client can read, or
/// bounded. The chat application's own limits are in `ChatAttackTests`.
extension ServerSuites {
    @Suite("Attacks on the transport") struct TransportAttackTests: EngineIOTargets {
        let path = "/engine.io/"

        /// engine.io's error body of a refusal: its code and message.
        func refusal(_ body: String) throws -> (code: Int, message: String) {
            let value = try JSONValue(parsing: body)
            return (try #require(value["code"]?.intValue), try #require(value["message"]?.stringValue))
        }

        @Test("a polling session that never polls is closed once its outbox passes the backlog limit")
        func aPollingSessionThatNeverPollsIsBounded() async throws {
            var limits = EngineIOServerOptions.Limits()
            limits.maxBacklogBytes = 64 << 10
            try await withServer(makeEchoEngine(limits: limits)) { server in
                let sid = try await server.openPollingSession(path: path)
                // 40 KB echoed (53 KB counted: 1,001 bytes and 320 of overhead each): kept.
                let chunk = "4" + String(repeating: "a", count: 999)
                let payload = Array(repeating: chunk, count: 40).joined(separator: "\u{1e}")
                #expect(try await server.post(polling(sid), body: payload).status == 200)
                #expect(!server.sessionIsGone(sid))
                // 40 KB more: past 64 KB waiting, the session ends.
                _ = try await server.post(polling(sid), body: payload)
                #expect(await eventually { server.sessionIsGone(sid) })
                #expect(try await server.get(polling(sid)).status == 400)
            }
        }

        @Test("half-open sessions from one address are capped, with a 429 the client can read, on both transports")
        func halfOpenSessionsPerAddress() async throws {
            var limits = EngineIOServerOptions.Limits.unlimitedAddresses
            limits.maxHalfOpenSessionsPerAddress = 3
            // Sessions of this echo server stay half-open: it never admits them.
            try await withServer(makeEchoEngine(limits: limits, sessionsStartHalfOpen: true)) { server in
                for _ in 0..<3 { _ = try await server.openPollingSession(path: path) }
                let refused = try await server.get(polling)
                #expect(refused.status == 429)
                #expect(refused[header: "Retry-After"] != nil)
                let (code, message) = try refusal(refused.text)
                #expect(code == 4)
                #expect(message.contains("waiting to connect"), "\(message)")

                let socket = try await server.webSocket(websocket)
                #expect(socket.handshakeStatus == 429)
                #expect(try refusal(socket.handshakeBody).message.contains("waiting to connect"))
                #expect(server.engine.sessionCount == 3)
                #expect(server.engine.halfOpenSessionCount == 3)
            }
        }

        @Test("half-open sessions are capped in total, with a 503")
        func halfOpenSessionsInTotal() async throws {
            var limits = EngineIOServerOptions.Limits.unlimitedAddresses
            limits.maxHalfOpenSessions = 2
            try await withServer(makeEchoEngine(limits: limits, sessionsStartHalfOpen: true)) { server in
                for _ in 0..<2 { _ = try await server.openPollingSession(path: path) }
                let refused = try await server.get(polling)
                #expect(refused.status == 503)
                #expect(try refusal(refused.text).message.hasPrefix("Server busy"))
            }
        }

        @Test("new sessions from one address are rate-limited: a burst, then one per interval, with Retry-After")
        func newSessionsPerAddressAreRateLimited() async throws {
            var limits = EngineIOServerOptions.Limits.unlimitedAddresses
            limits.newSessionsPerSecondPerAddress = 0.5
            limits.newSessionBurstPerAddress = 3
            try await withServer(makeEchoEngine(limits: limits)) { server in
                for _ in 0..<3 { _ = try await server.openPollingSession(path: path) }
                let refused = try await server.get(polling)
                #expect(refused.status == 429)
                #expect(refused[header: "Retry-After"] == "2")
                #expect(try refusal(refused.text).message.contains("too fast"))
                server.clock.advance(by: .milliseconds(1999))
                #expect(try await server.get(polling).status == 429)
                server.clock.advance(by: .milliseconds(1))
                #expect(try await server.get(polling).status == 200)
                #expect(try await server.get(polling).status == 429)
            }
        }

        /// The two session caps: from one address (429) and in total (503).
        enum SessionCap: String, Sendable, CaseIterable {
            case perAddress, total
        }

        @Test("sessions are capped per address (429) and in total (503), with Retry-After, on both transports", arguments: SessionCap.allCases)
        func sessionsAreCapped(_ cap: SessionCap) async throws {
            var limits = EngineIOServerOptions.Limits.unlimitedAddresses
            let (status, message): (Int, String)
            switch cap {
            case .perAddress:
                limits.maxSessionsPerAddress = 2
                (status, message) = (429, "Too many requests: too many sessions from this address")
            case .total:
                limits.maxSessions = 2
                (status, message) = (503, "Server busy: too many sessions")
            }
            try await withServer(makeEchoEngine(limits: limits)) { server in
                let first = try await server.openPollingSession(path: path)
                _ = try await server.openPollingSession(path: path)
                let refused = try await server.get(polling)
                #expect(refused.status == status)
                #expect(refused[header: "Retry-After"] == "5")
                #expect(try refusal(refused.text).message == message)
                let upgrade = try await server.webSocket(websocket)
                #expect(upgrade.handshakeStatus == status)
                #expect(try refusal(upgrade.handshakeBody).message == message)
                // A session that ends frees its place.
                #expect(try await server.post(polling(first), body: "1").status == 200)
                #expect(await eventually { server.sessionIsGone(first) })
                #expect(try await server.get(polling).status == 200)
            }
        }

        @Test("TCP connections from one address and in total are capped, with an answer before the close")
        func connectionsAreCapped() async throws {
            /// With `held` connections open, what one more is answered.
            func oneMore(_ limits: EngineIOServerOptions.Limits, held count: Int) async throws -> HTTPReply {
                var reply: HTTPReply?
                try await withServer(makeEchoEngine(limits: limits)) { server in
                    let port = server.port
                    let held = try await onThread { try (0..<count).map { _ in try TCPSocket.connect(port: port) } }
                    defer { held.forEach { $0.close() } }
                    #expect(await eventually { server.engine.connectionCount == count })
                    reply = try await onThread {
                        let socket = try TCPSocket.connect(port: port)
                        defer { socket.close() }
                        socket.setReceiveTimeout(.seconds(5))
                        var reader = ByteReader(socket)
                        return try HTTPClient.readResponse(&reader)
                    }
                }
                return try #require(reply)
            }
            var perAddress = EngineIOServerOptions.Limits.unlimitedAddresses
            perAddress.maxConnectionsPerAddress = 2
            let fromOneAddress = try await oneMore(perAddress, held: 2)
            #expect(fromOneAddress.status == 429)
            #expect(try refusal(fromOneAddress.text).message.contains("too many connections from this address"))
            var total = EngineIOServerOptions.Limits.unlimitedAddresses
            total.maxConnections = 1
            #expect(try await oneMore(total, held: 1).status == 503)
        }

        @Test("refused connections that never close wait for their client together at most so many: the rest close at once")
        func refusedConnectionsLingerInBoundedNumbers() async throws {
            var limits = EngineIOServerOptions.Limits.unlimitedAddresses
            limits.maxConnections = 1
            try await withServer(makeEchoEngine(limits: limits)) { server in
                let port = server.port
                let count = RefusingHandler.maxLingering + 64
                // One connection takes the only place; then many more are refused, each
                // read to its answer and then held open, never closed by the client.
                let held = try await onThread { try TCPSocket.connect(port: port) }
                defer { held.close() }
                #expect(await eventually { server.engine.connectionCount == 1 })
                let refused = try await onThread {
                    try (0..<count).map { _ in
                        let socket = try TCPSocket.connect(port: port)
                        socket.setReceiveTimeout(.seconds(5))
                        var reader = ByteReader(socket)
                        let reply = try HTTPClient.readResponse(&reader)
                        return (socket, reply.status)
                    }
                }
                defer { refused.forEach { $0.0.close() } }
                #expect(refused.allSatisfy { $0.1 == 503 }, "every refusal is an answer")
                // Answered within the linger time: without the bound all would linger still.
                #expect(RefusingHandler.lingeringCount <= RefusingHandler.maxLingering)
            }
        }

        @Test("a request head that stops half way is answered 408 and closed, once the head timeout passes")
        func aHalfSentHeadIsTimedOut() async throws {
            try await withServer(makeEchoEngine()) { server in
                let port = server.port
                let socket = try await onThread {
                    let socket = try TCPSocket.connect(port: port)
                    socket.setReceiveTimeout(.seconds(5))
                    try socket.sendAll(Array("GET \(polling) HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".utf8))
                    return socket
                }
                defer { socket.close() }
                #expect(await eventually { server.engine.connectionCount == 1 })
                server.clock.advance(by: .milliseconds(9_999))
                #expect(server.engine.connectionCount == 1)
                server.clock.advance(by: .milliseconds(1))
                let reply = try await onThread {
                    var reader = ByteReader(socket)
                    return try HTTPClient.readResponse(&reader)
                }
                #expect(reply.status == 408)
                #expect(await eventually { server.engine.connectionCount == 0 })
            }
        }

        @Test("a kept-alive connection that sends nothing more is closed after the head timeout")
        func anIdleKeptAliveConnectionIsClosed() async throws {
            try await withServer(makeEchoEngine()) { server in
                let port = server.port
                let polling = self.polling
                let socket = try await onThread {
                    let socket = try TCPSocket.connect(port: port)
                    socket.setReceiveTimeout(.seconds(5))
                    try socket.sendAll(Array("GET \(polling) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
                    var reader = ByteReader(socket)
                    #expect(try HTTPClient.readResponse(&reader).status == 200)
                    return socket
                }
                defer { socket.close() }
                #expect(server.engine.connectionCount == 1)
                server.clock.advance(by: .seconds(10))
                #expect(await eventually { server.engine.connectionCount == 0 })
                // Closed without a word: a 408 here could be taken for the answer to a next request.
                let rest = try await onThread {
                    var reader = ByteReader(socket)
                    return try reader.readToEnd()
                }
                #expect(rest.isEmpty)
            }
        }

        @Test("a request body that stalls is answered 408, the connection closed and the session ended")
        func aStalledBodyIsTimedOut() async throws {
            let closeReasons = CloseReasons()
            try await withServer(makeEchoEngine(closeReasons: closeReasons)) { server in
                let sid = try await server.openPollingSession(path: path)
                let post = try await server.start("POST", polling(sid), contentLength: 100, bodyPrefix: "4hello")
                #expect(await eventually { server.engine.session(id: sid)?.isPosting == true })
                server.clock.advance(by: .seconds(15))
                let reply = try await post.response()
                #expect(reply.status == 408)
                #expect(await eventually { server.sessionIsGone(sid) })
                #expect(closeReasons[sid]?.name == "transport error")
            }
        }

        @Test("a request answered before its body came gets no second answer when the body stalls")
        func anAnsweredRequestIsNotAnsweredAgain() async throws {
            try await withServer(makeEchoEngine()) { server in
                let port = server.port
                let polling = self.polling
                let socket = try await onThread {
                    let socket = try TCPSocket.connect(port: port)
                    socket.setReceiveTimeout(.seconds(5))
                    // A POST handshake is refused at its head; its body never comes.
                    try socket.sendAll(Array("POST \(polling) HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789".utf8))
                    return socket
                }
                defer { socket.close() }
                let first = try await onThread {
                    var reader = ByteReader(socket)
                    return (try HTTPClient.readResponse(&reader), reader.buffer)
                }
                #expect(first.0.status == 400)
                server.clock.advance(by: .seconds(15))
                let rest = try await onThread {
                    var reader = ByteReader(socket)
                    reader.buffer = first.1
                    return try reader.readToEnd()
                }
                #expect(rest.isEmpty, "\(String(decoding: rest, as: UTF8.self))")
            }
        }

        @Test("an upgrade asked on a kept-alive connection is redirected only on the server's path")
        func upgradeRedirectsStayOnThePath() async throws {
            try await withServer(makeEchoEngine()) { server in
                let port = server.port
                let polling = self.polling
                let replies = try await onThread {
                    let socket = try TCPSocket.connect(port: port)
                    defer { socket.close() }
                    socket.setReceiveTimeout(.seconds(5))
                    var reader = ByteReader(socket)
                    try socket.sendAll(Array("GET \(polling) HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
                    let first = try HTTPClient.readResponse(&reader)
                    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                    try socket.sendAll(Array("GET //evil.example/x HTTP/1.1\r\nHost: x\r\n\(upgrade)\r\n".utf8))
                    let elsewhere = try HTTPClient.readResponse(&reader)
                    return (first, elsewhere)
                }
                #expect(replies.0.status == 200)
                #expect(replies.1.status == 404)
                #expect(replies.1[header: "Location"] == nil)
            }
        }

        @Test("a refused WebSocket upgrade says why, in engine.io's error body")
        func aRefusedUpgradeSaysWhy() async throws {
            try await withServer(makeEchoEngine()) { server in
                let socket = try await server.webSocket("\(websocket)&sid=no-such-session")
                #expect(socket.handshakeStatus == 400)
                let (code, message) = try refusal(socket.handshakeBody)
                #expect(code == 1)
                #expect(message == "Session ID unknown")
                let versionless = try await server.webSocket("\(path)?transport=websocket")
                #expect(try refusal(versionless.handshakeBody).code == 5)
            }
        }

        @Test("an upgrade that never sends its probe is abandoned after the upgrade timeout; the session stays on polling")
        func anUpgradeThatStallsIsAbandoned() async throws {
            // A heartbeat farther away than the upgrade timeout.
            try await withServer(makeEchoEngine(pingInterval: .seconds(60), pingTimeout: .seconds(60))) { server in
                let sid = try await server.openPollingSession(path: path)
                let socket = try await server.webSocket("\(websocket)&sid=\(sid)")
                #expect(socket.handshakeStatus == 101)
                server.clock.advance(by: .seconds(10))
                try await socket.waitForClose()
                #expect(!server.sessionIsGone(sid))
                #expect(server.engine.session(id: sid)?.transport == .polling)
                // The session still works on polling, and can try again.
                #expect(try await server.post(polling(sid), body: "4still here").status == 200)
                #expect(try await server.get(polling(sid)).text == "4still here")
            }
        }

        @Test("WebSocket handshakes whose client leaves at once leave no session behind")
        func hitAndRunHandshakesLeaveNothing() async throws {
            try await withServer(makeEchoEngine(limits: .unlimitedAddresses)) { server in
                let port = server.port
                let websocket = self.websocket
                for _ in 0..<20 {
                    try await onThread {
                        let socket = try TCPSocket.connect(port: port)
                        let request = "GET \(websocket) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                        try socket.sendAll(Array(request.utf8))
                        socket.close()
                    }
                }
                #expect(await eventually { server.engine.connectionCount == 0 })
                #expect(await eventually { server.engine.sessionCount == 0 && server.engine.halfOpenSessionCount == 0 })
            }
        }

        @Test("an unmasked WebSocket frame from a client is a protocol error (RFC 6455 §5.1)")
        func anUnmaskedFrameIsRefused() async throws {
            let closeReasons = CloseReasons()
            try await withServer(makeEchoEngine(closeReasons: closeReasons)) { server in
                let socket = try await server.webSocket(websocket)
                let sid = try handshakeSID(try await socket.next().text)
                socket.sendUnmasked("4hello")
                try await socket.waitForClose()
                #expect(await eventually { server.sessionIsGone(sid) })
                #expect(closeReasons[sid]?.name == "parse error")
            }
        }
    }

    @Suite("Attacks on Socket.IO") struct SocketIOAttackTests: EngineIOTargets {
        let path = "/socket.io/"

        @Test("before it joins a namespace a client may send its CONNECT, not a megabyte: 413, on both transports")
        func aHalfOpenSessionSendsSmallPayloadsOnly() async throws {
            let io = makeSuiteSocketIOServer()
            try await withServer(io) { server in
                let large = #"40{"token":""# + String(repeating: "x", count: 20_000) + #""}"#
                let sid = try await server.openPollingSession(path: path)
                #expect(try await server.post(polling(sid), body: large).status == 413)
                #expect(await eventually { server.sessionIsGone(sid) })

                let socket = try await server.webSocket(websocket)
                let wsid = try handshakeSID(try await socket.next().text)
                socket.send(large)
                try await socket.waitForClose()
                #expect(server.sessionIsGone(wsid))

                // Once connected, the same size is an ordinary message.
                let joined = try await server.openPollingSession(path: path)
                #expect(try await server.post(polling(joined), body: "40").status == 200)
                #expect(try await server.get(polling(joined)).text.hasPrefix("40{"))
                let message = #"42["message",""# + String(repeating: "x", count: 20_000) + #""]"#
                #expect(try await server.post(polling(joined), body: message).status == 200)
                #expect(!server.sessionIsGone(joined))
            }
        }

        @Test("an incomplete binary packet may hold a message's worth of attachments, not ten")
        func anIncompleteBinaryPacketIsBounded() async throws {
            let io = makeSuiteSocketIOServer()
            try await withServer(io) { server in
                let socket = try await server.webSocket(websocket, answerPings: true)
                let sid = try handshakeSID(try await socket.next().text)
                socket.send("40")
                #expect(try await socket.nextSkippingPings().text.hasPrefix("40{"))
                let placeholders = (0..<10).map { #"{"_placeholder":true,"num":\#($0)}"# }.joined(separator: ",")
                socket.send("4510-[\"message\",\(placeholders)]")
                // Two of ten attachments, 1.2 MB: past the 1 MB one message may be.
                socket.send(binary: [UInt8](repeating: 1, count: 600_000))
                socket.send(binary: [UInt8](repeating: 2, count: 600_000))
                try await socket.waitForClose()
                #expect(server.sessionIsGone(sid))
            }
        }

        @Test("a disconnect handler added after the connection closed, while the connection handlers ran, still runs")
        func aDisconnectHandlerAddedTooLateStillRuns() async throws {
            let io = SocketIOServer(engineOptions: EngineIOServerOptions(path: "/socket.io/"), clock: ManualServerClock(), logger: quietLogger)
            let reasons = Mailbox<String>()
            // The connection goes between two connection handlers (a client that leaves as it
            // logs in): what the second sets up must still be taken down.
            io.main.onConnection { socket in socket.disconnect(closeConnection: true) }
            io.main.onConnection { socket in socket.onDisconnect { _, reason in reasons.put(reason) } }
            try await withServer(io) { server in
                let socket = try await server.webSocket(websocket)
                _ = try handshakeSID(try await socket.next().text)
                socket.send("40")
                #expect(try await reasons.next(timeout: .seconds(5), "the late disconnect handler") == "server namespace disconnect")
            }
        }

        @Test("a CONNECT to a namespace the client is in already is a protocol error: the connection ends")
        func aSecondConnectEndsTheConnection() async throws {
            let io = makeSuiteSocketIOServer()
            try await withServer(io) { server in
                let socket = try await server.webSocket(websocket)
                _ = try handshakeSID(try await socket.next().text)
                socket.send("40")
                #expect(try await socket.next().text.hasPrefix("40{"))
                socket.send("40")
                try await socket.waitForClose()
                #expect(await eventually { io.main.socketCount == 0 })
            }
        }

        @Test("CONNECT attempts are rate-limited per connection: past the burst, CONNECT_ERROR says so")
        func connectAttemptsAreRateLimited() async throws {
            let io = makeSuiteSocketIOServer(limits: .init(connectTimeout: .seconds(1), connectAttemptsPerSecond: 10, connectAttemptBurst: 3))
            try await withServer(io) { server in
                let sid = try await server.openPollingSession(path: path)
                // Connect, leave, connect, … with no GET in between: three are served.
                let pairs = Array(repeating: "40\u{1e}41", count: 5).joined(separator: "\u{1e}")
                #expect(try await server.post(polling(sid), body: pairs).status == 200)
                let answers = try await server.get(polling(sid)).text.split(separator: "\u{1e}").map(String.init)
                #expect(answers.filter { $0.hasPrefix("40{") }.count == 3)
                #expect(answers.filter { $0 == #"44{"message":"too many connection attempts"}"# }.count == 2)
                // A tenth of a second (before any ping): one attempt more.
                server.clock.advance(by: .milliseconds(100))
                #expect(try await server.post(polling(sid), body: "40").status == 200)
                #expect(try await server.get(polling(sid)).text.hasPrefix("40{"))
            }
        }

        @Test("a client that goes on CONNECTing after its refusals is disconnected")
        func connectAttemptsPastTheRefusalsEndTheConnection() async throws {
            let io = makeSuiteSocketIOServer(limits: .init(connectTimeout: .seconds(1), connectAttemptsPerSecond: 1, connectAttemptBurst: 3))
            try await withServer(io) { server in
                let socket = try await server.webSocket(websocket)
                let sid = try handshakeSID(try await socket.next().text)
                // Three served (to a namespace that does not exist), three refused for coming
                // too fast, and the seventh in a row without waiting ends the connection.
                for _ in 0..<7 { socket.send("40/no-such,") }
                var answers: [String] = []
                while case .text(let text) = try await socket.next() { answers.append(text) }
                #expect(answers == Array(repeating: #"44/no-such,{"message":"Invalid namespace"}"#, count: 3)
                    + Array(repeating: #"44/no-such,{"message":"too many connection attempts"}"#, count: 4))
                #expect(server.sessionIsGone(sid))
            }
        }

        @Test("a refused CONNECT does not stop the connect timeout: the connection ends")
        func aRefusedConnectDoesNotKeepTheConnection() async throws {
            let io = makeSuiteSocketIOServer()
            try await withServer(io) { server in
                let socket = try await server.webSocket(websocket, answerPings: true)
                let sid = try handshakeSID(try await socket.next().text)
                socket.send("40/no-such-namespace,")
                #expect(try await socket.next() == .text(#"44/no-such-namespace,{"message":"Invalid namespace"}"#))
                server.clock.advance(by: .milliseconds(1000))
                try await socket.waitForClose()
                #expect(server.sessionIsGone(sid))
            }
        }

        @Test("leaving the last namespace starts the connect timeout again, and the session counts as half-open")
        func leavingTheLastNamespaceStartsTheTimeoutAgain() async throws {
            let io = makeSuiteSocketIOServer()
            try await withServer(io) { server in
                let socket = try await server.webSocket(websocket, answerPings: true)
                let sid = try handshakeSID(try await socket.next().text)
                #expect(server.engine.halfOpenSessionCount == 1)
                socket.send("40")
                #expect(try await socket.next().text.hasPrefix("40{"))
                #expect(server.engine.halfOpenSessionCount == 0)
                // Joined: the connect timeout no longer applies.
                server.clock.advance(by: .milliseconds(1000))
                #expect(!server.sessionIsGone(sid))
                socket.send("41")
                #expect(await eventually { server.engine.halfOpenSessionCount == 1 })
                server.clock.advance(by: .milliseconds(1000))
                try await socket.waitForClose()
                #expect(server.engine.halfOpenSessionCount == 0)
            }
        }
    }
}

@Suite struct AddressKeyTests {
    @Test(arguments: [
        ("127.0.0.1", "127.0.0.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::9", "2001:db8:1:2::/64"),
        ("2001:0db8:0001:0002:ffff::1", "2001:db8:1:2::/64"),
        ("::1", "0:0:0:0::/64"),
        ("::ffff:10.0.0.7", "10.0.0.7"),
        ("not an address", "not an address"),
    ])
    func addressesCountAsTheirHost(address: String, key: String) {
        #expect(AddressKey.of(address) == key)
    }
}

@Suite struct TokenBucketTests {
    @Test func aBurstThenTheRate() {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var bucket = TokenBucket(rate: 2, burst: 3, now: start)
        #expect((0..<4).map { _ in bucket.take(now: start) } == [true, true, true, false])
        #expect(bucket.wait(now: start) == .milliseconds(500))
        var taken = bucket.take(now: start + .milliseconds(499))
        #expect(!taken)
        taken = bucket.take(now: start + .milliseconds(500))
        #expect(taken)
        #expect(!bucket.isFull(now: start + .milliseconds(500)))
        #expect(bucket.isFull(now: start + .seconds(2)))
        // Time that goes backwards (two readings out of order) gives nothing back.
        taken = bucket.take(now: start)
        #expect(!taken)
    }

    @Test func aTinyRateWaitsLongButDoesNotOverflow() {
        let now = NIODeadline.now()
        var bucket = TokenBucket(rate: 1e-12, burst: 1, now: now)
        _ = bucket.take(now: now)
        #expect(bucket.wait(now: now) == .seconds(365 * 86_400))
    }

    @Test func anInfiniteRateNeverRefuses() {
        let now = NIODeadline.now()
        var bucket = TokenBucket(rate: .infinity, burst: 1, now: now)
        #expect((0..<1000).allSatisfy { _ in bucket.take(now: now) })
    }
}
