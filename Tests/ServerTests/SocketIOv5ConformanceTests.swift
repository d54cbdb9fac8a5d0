@testable import EngineIOServer
import JSON
import SocketIOServer
import Testing

/// socket.io-protocol's v5 test suite (docs/socket.io-protocol/v5-test-suite/test-suite.js),
/// one test per `it(…)`, against our Socket.IO server with the suite's settings: path
/// `/socket.io/`, pingInterval 300 ms, pingTimeout 200 ms, connectTimeout 1000 ms, and
/// namespaces `/` and `/custom` that emit `auth`, echo `message` as `message-back` and
/// acknowledge `message-with-ack`.
///
/// As in the Engine.IO suite, the server keeps time with a manual clock: a ping comes when a
/// case moves the clock, and only then (the JS cases rely on finishing before the first
/// ping's timeout, 500 ms, which a busy machine may miss).
extension ServerSuites {
    @Suite("Socket.IO v5 test suite") struct SocketIOv5Conformance: EngineIOTargets {
        let path = "/socket.io/"

        /// The suite's `initSocketIOConnection`: a WebSocket connected to the main
        /// namespace, past its CONNECT answer and its `auth` event.
        func initSocketIOConnection(_ server: RunningServer) async throws -> WebSocketClient {
            let socket = try await server.webSocket(websocket, answerPings: true)
            _ = try handshakeSID(try await socket.next().text)  // Engine.IO handshake
            socket.send("40")
            let handshake = try await socket.nextSkippingPings()  // Socket.IO handshake
            try #require(handshake.text.hasPrefix("40{"), "\(handshake)")
            let auth = try await socket.nextSkippingPings()  // "auth" packet
            try #require(auth == .text(#"42["auth",{}]"#), "\(auth)")
            return socket
        }

        /// Checks a CONNECT answer `40[<namespace>,]{"sid":"…"}`.
        func expectConnectAnswer(_ event: WebSocketEvent, prefix: String) throws {
            let data = event.text
            #expect(data.hasPrefix(prefix))
            let handshake = try JSONValue(parsing: data.dropFirst(prefix.count))
            #expect(sortedKeys(handshake) == ["sid"])
            #expect(handshake["sid"]?.stringValue != nil)
        }

        // MARK: Engine.IO protocol — handshake

        @Test("Engine.IO handshake, HTTP long-polling: should successfully open a session")
        func handshakePollingOpensASession() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let response = try await server.get(polling)
                #expect(response.status == 200)
                let content = response.text
                #expect(content.hasPrefix("0"))
                let value = try JSONValue(parsing: content.dropFirst())
                #expect(sortedKeys(value) == ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"])
                #expect(value["sid"]?.stringValue != nil)
                #expect(value["upgrades"] == ["websocket"])
                #expect(value["pingInterval"] == 300)
                #expect(value["pingTimeout"] == 200)
                #expect(value["maxPayload"] == 1_000_000)
            }
        }

        @Test("Engine.IO handshake, HTTP long-polling: should fail with an invalid 'EIO' query parameter")
        func handshakePollingInvalidEIO() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let response = try await server.get("\(path)?transport=polling")
                #expect(response.status == 400)
                let response2 = try await server.get("\(path)?EIO=abc&transport=polling")
                #expect(response2.status == 400)
            }
        }

        @Test("Engine.IO handshake, HTTP long-polling: should fail with an invalid 'transport' query parameter")
        func handshakePollingInvalidTransport() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let response = try await server.get("\(path)?EIO=4")
                #expect(response.status == 400)
                let response2 = try await server.get("\(path)?EIO=4&transport=abc")
                #expect(response2.status == 400)
            }
        }

        @Test("Engine.IO handshake, HTTP long-polling: should fail with an invalid request method")
        func handshakePollingInvalidMethod() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let response = try await server.request("POST", polling)
                #expect(response.status == 400)
                let response2 = try await server.request("PUT", polling)
                #expect(response2.status == 400)
            }
        }

        @Test("Engine.IO handshake, WebSocket: should successfully open a session")
        func handshakeWebSocketOpensASession() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await server.webSocket(websocket)
                let data = try await socket.next().text
                #expect(data.hasPrefix("0"))
                let value = try JSONValue(parsing: data.dropFirst())
                #expect(sortedKeys(value) == ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"])
                #expect(value["sid"]?.stringValue != nil)
                #expect(value["upgrades"] == [])
                #expect(value["pingInterval"] == 300)
                #expect(value["pingTimeout"] == 200)
                #expect(value["maxPayload"] == 1_000_000)
                socket.close()
            }
        }

        @Test("Engine.IO handshake, WebSocket: should fail with an invalid 'EIO' query parameter")
        func handshakeWebSocketInvalidEIO() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await server.webSocket("\(path)?transport=websocket")
                try await socket.waitForClose()
                #expect(socket.handshakeStatus == 400)
                let socket2 = try await server.webSocket("\(path)?EIO=abc&transport=websocket")
                try await socket2.waitForClose()
                #expect(socket2.handshakeStatus == 400)
            }
        }

        @Test("Engine.IO handshake, WebSocket: should fail with an invalid 'transport' query parameter")
        func handshakeWebSocketInvalidTransport() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await server.webSocket("\(path)?EIO=4")
                try await socket.waitForClose()
                #expect(socket.handshakeStatus == 400)
                let socket2 = try await server.webSocket("\(path)?EIO=4&transport=abc")
                try await socket2.waitForClose()
                #expect(socket2.handshakeStatus == 400)
            }
        }

        // MARK: Engine.IO protocol — heartbeat

        @Test("Engine.IO heartbeat, HTTP long-polling: should send ping/pong packets")
        func heartbeatPollingPingPong() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let sid = try await server.openPollingSession(path: path)
                for _ in 0..<3 {
                    server.clock.advance(by: .milliseconds(300))
                    let pollResponse = try await server.get(polling(sid))
                    #expect(pollResponse.status == 200)
                    #expect(pollResponse.text == "2")
                    let pushResponse = try await server.post(polling(sid), body: "3")
                    #expect(pushResponse.status == 200)
                }
            }
        }

        @Test("Engine.IO heartbeat, HTTP long-polling: should close the session upon ping timeout")
        func heartbeatPollingPingTimeout() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let sid = try await server.openPollingSession(path: path)
                // PING_INTERVAL: the ping comes; PING_TIMEOUT with no pong: the session ends.
                server.clock.advance(by: .milliseconds(300))
                #expect(try await server.get(polling(sid)).text == "2")
                server.clock.advance(by: .milliseconds(200))
                #expect(await eventually { server.sessionIsGone(sid) })
                let pollResponse = try await server.get(polling(sid))
                #expect(pollResponse.status == 400)
            }
        }

        @Test("Engine.IO heartbeat, WebSocket: should send ping/pong packets")
        func heartbeatWebSocketPingPong() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await server.webSocket(websocket)
                let sid = try handshakeSID(try await socket.next().text)
                for _ in 0..<3 {
                    server.clock.advance(by: .milliseconds(300))
                    #expect(try await socket.next() == .text("2"))
                    socket.send("3")
                    // The pong arms the next ping, which the next advance brings.
                    #expect(await eventually { server.engine.session(id: sid)?.awaitsPong == false })
                }
                socket.close()
            }
        }

        @Test("Engine.IO heartbeat, WebSocket: should close the session upon ping timeout")
        func heartbeatWebSocketPingTimeout() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await server.webSocket(websocket)
                _ = try await socket.next()  // handshake
                server.clock.advance(by: .milliseconds(300))
                #expect(try await socket.next() == .text("2"))
                server.clock.advance(by: .milliseconds(200))
                try await socket.waitForClose()
            }
        }

        // MARK: Engine.IO protocol — close

        @Test("Engine.IO close, HTTP long-polling: should forcefully close the session")
        func closePollingForcefully() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let sid = try await server.openPollingSession(path: path)
                let poll = try await server.start("GET", polling(sid))
                // The suite sends both at once; the GET must be waiting when the close comes.
                #expect(await eventually { server.isPolling(sid) })
                let push = try await server.post(polling(sid), body: "1")
                #expect(push.status == 200)
                let pollResponse = try await poll.response()
                #expect(pollResponse.status == 200)
                #expect(pollResponse.text == "6")
                let pollResponse2 = try await server.get(polling(sid))
                #expect(pollResponse2.status == 400)
            }
        }

        @Test("Engine.IO close, WebSocket: should forcefully close the session")
        func closeWebSocketForcefully() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await server.webSocket(websocket)
                _ = try await socket.next()  // handshake
                socket.send("1")
                try await socket.waitForClose()
            }
        }

        // MARK: Engine.IO protocol — upgrade

        @Test("Engine.IO upgrade: should successfully upgrade from HTTP long-polling to WebSocket")
        func upgradeFromPollingToWebSocket() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let sid = try await server.openPollingSession(path: path)
                let socket = try await server.webSocket(websocket(sid), answerPings: true)
                #expect(socket.handshakeStatus == 101)
                socket.send("2probe")  // send probe
                #expect(try await socket.next() == .text("3probe"))
                socket.send("5")  // complete upgrade
                #expect(await eventually { server.engine.session(id: sid)?.transport == .websocket })
                socket.close()
            }
        }

        @Test("Engine.IO upgrade: should ignore HTTP requests with same sid after upgrade")
        func upgradeIgnoresHTTPRequestsAfterUpgrade() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let sid = try await server.openPollingSession(path: path)
                let socket = try await server.webSocket(websocket(sid), answerPings: true)
                #expect(socket.handshakeStatus == 101)
                socket.send("2probe")
                socket.send("5")
                // The GET must come after the server has read the `5`.
                #expect(await eventually { server.engine.session(id: sid)?.transport == .websocket })
                let pollResponse = try await server.get(polling(sid))
                #expect(pollResponse.status == 400)
                socket.close()
            }
        }

        @Test("Engine.IO upgrade: should ignore WebSocket connection with same sid after upgrade")
        func upgradeIgnoresWebSocketAfterUpgrade() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let sid = try await server.openPollingSession(path: path)
                let socket = try await server.webSocket(websocket(sid), answerPings: true)
                #expect(socket.handshakeStatus == 101)
                socket.send("2probe")
                socket.send("5")
                // As the suite does, without waiting for the `5` to be read: the second
                // WebSocket finds the session upgrading or upgraded. Either way, as engine.io
                // does, its handshake completes and it is closed (ours says why, with 1008).
                let socket2 = try await server.webSocket(websocket(sid))
                #expect(socket2.handshakeStatus == 101)
                try await socket2.waitForClose()
                #expect(socket2.closeFrame?.code == 1008)
                #expect(["session already on a WebSocket", "session already upgrading"].contains(socket2.closeFrame?.reason))
                socket.close()
            }
        }

        // MARK: Socket.IO protocol — connect

        @Test("Socket.IO connect: should allow connection to the main namespace")
        func connectMainNamespace() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await server.webSocket(websocket, answerPings: true)
                _ = try await socket.next()  // Engine.IO handshake
                socket.send("40")
                try expectConnectAnswer(try await socket.nextSkippingPings(), prefix: "40")
                #expect(try await socket.nextSkippingPings() == .text(#"42["auth",{}]"#))
                socket.close()
            }
        }

        @Test("Socket.IO connect: should allow connection to the main namespace with a payload")
        func connectMainNamespaceWithPayload() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await server.webSocket(websocket, answerPings: true)
                _ = try await socket.next()  // Engine.IO handshake
                socket.send(#"40{"token":"123"}"#)
                try expectConnectAnswer(try await socket.nextSkippingPings(), prefix: "40")
                #expect(try await socket.nextSkippingPings() == .text(#"42["auth",{"token":"123"}]"#))
                socket.close()
            }
        }

        @Test("Socket.IO connect: should allow connection to a custom namespace")
        func connectCustomNamespace() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await server.webSocket(websocket, answerPings: true)
                _ = try await socket.next()  // Engine.IO handshake
                socket.send("40/custom,")
                try expectConnectAnswer(try await socket.nextSkippingPings(), prefix: "40/custom,")
                #expect(try await socket.nextSkippingPings() == .text(#"42/custom,["auth",{}]"#))
                socket.close()
            }
        }

        @Test("Socket.IO connect: should allow connection to a custom namespace with a payload")
        func connectCustomNamespaceWithPayload() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await server.webSocket(websocket, answerPings: true)
                _ = try await socket.next()  // Engine.IO handshake
                socket.send(#"40/custom,{"token":"abc"}"#)
                try expectConnectAnswer(try await socket.nextSkippingPings(), prefix: "40/custom,")
                #expect(try await socket.nextSkippingPings() == .text(#"42/custom,["auth",{"token":"abc"}]"#))
                socket.close()
            }
        }

        @Test("Socket.IO connect: should disallow connection to an unknown namespace")
        func connectUnknownNamespace() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await server.webSocket(websocket, answerPings: true)
                _ = try await socket.next()  // Engine.IO handshake
                socket.send("40/random")
                #expect(try await socket.nextSkippingPings() == .text(#"44/random,{"message":"Invalid namespace"}"#))
                socket.close()
            }
        }

        @Test("Socket.IO connect: should disallow connection with an invalid handshake")
        func connectInvalidHandshake() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await server.webSocket(websocket, answerPings: true)
                _ = try await socket.next()  // Engine.IO handshake
                socket.send("4abc")
                try await socket.waitForClose()
            }
        }

        @Test("Socket.IO connect: should close the connection if no handshake is received")
        func connectTimeoutWithoutHandshake() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                // Answering pings, so that it is connectTimeout (1 s) that closes the
                // connection, not the ping timeout.
                let socket = try await server.webSocket(websocket, answerPings: true)
                let sid = try handshakeSID(try await socket.next().text)
                server.clock.advance(by: .milliseconds(999))
                #expect(!server.sessionIsGone(sid))
                server.clock.advance(by: .milliseconds(1))
                try await socket.waitForClose()
            }
        }

        // MARK: Socket.IO protocol — disconnect

        @Test("Socket.IO disconnect: should disconnect from the main namespace")
        func disconnectMainNamespace() async throws {
            let io = makeSuiteSocketIOServer()
            try await withServer(io) { server in
                let socket = try await initSocketIOConnection(server)
                socket.send("41")
                #expect(await eventually { io.main.socketCount == 0 })
                server.clock.advance(by: .milliseconds(300))
                #expect(try await socket.next() == .text("2"))
                socket.close()
            }
        }

        @Test("Socket.IO disconnect: should connect then disconnect from a custom namespace")
        func disconnectCustomNamespace() async throws {
            let io = makeSuiteSocketIOServer()
            try await withServer(io) { server in
                let socket = try await initSocketIOConnection(server)
                server.clock.advance(by: .milliseconds(300))
                #expect(try await socket.next() == .text("2"))  // ping
                socket.send("40/custom")
                try expectConnectAnswer(try await socket.nextSkippingPings(), prefix: "40/custom,")  // Socket.IO handshake
                #expect(try await socket.nextSkippingPings() == .text(#"42/custom,["auth",{}]"#))  // auth packet
                socket.send("41/custom")
                socket.send(#"42["message","message to main namespace"]"#)
                #expect(try await socket.nextSkippingPings() == .text(#"42["message-back","message to main namespace"]"#))
                #expect(await eventually { io.of("/custom").socketCount == 0 })
                socket.close()
            }
        }

        // MARK: Socket.IO protocol — message

        @Test("Socket.IO message: should send a plain-text packet")
        func messagePlainText() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await initSocketIOConnection(server)
                socket.send(#"42["message",1,"2",{"3":[true]}]"#)
                #expect(try await socket.nextSkippingPings() == .text(#"42["message-back",1,"2",{"3":[true]}]"#))
                socket.close()
            }
        }

        @Test("Socket.IO message: should send a packet with binary attachments")
        func messageBinaryAttachments() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await initSocketIOConnection(server)
                socket.send(#"452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
                socket.send(binary: [1, 2, 3])
                socket.send(binary: [4, 5, 6])
                #expect(
                    try await socket.nextSkippingPings()
                        == .text(#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
                )
                #expect(try await socket.nextSkippingPings() == .binary([1, 2, 3]))
                #expect(try await socket.nextSkippingPings() == .binary([4, 5, 6]))
                socket.close()
            }
        }

        @Test("Socket.IO message: should send a plain-text packet with an ack")
        func messagePlainTextWithAck() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await initSocketIOConnection(server)
                socket.send(#"42456["message-with-ack",1,"2",{"3":[false]}]"#)
                #expect(try await socket.nextSkippingPings() == .text(#"43456[1,"2",{"3":[false]}]"#))
                socket.close()
            }
        }

        @Test("Socket.IO message: should send a packet with binary attachments and an ack")
        func messageBinaryAttachmentsWithAck() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await initSocketIOConnection(server)
                socket.send(#"452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
                socket.send(binary: [1, 2, 3])
                socket.send(binary: [4, 5, 6])
                #expect(
                    try await socket.nextSkippingPings()
                        == .text(#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
                )
                #expect(try await socket.nextSkippingPings() == .binary([1, 2, 3]))
                #expect(try await socket.nextSkippingPings() == .binary([4, 5, 6]))
                socket.close()
            }
        }

        @Test("Socket.IO message: should close the connection upon invalid format (unknown packet type)")
        func messageInvalidFormatUnknownPacketType() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await initSocketIOConnection(server)
                socket.send("4abc")
                try await socket.waitForClose()
            }
        }

        @Test("Socket.IO message: should close the connection upon invalid format (invalid payload format)")
        func messageInvalidFormatPayload() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await initSocketIOConnection(server)
                socket.send("42{}")
                try await socket.waitForClose()
            }
        }

        @Test("Socket.IO message: should close the connection upon invalid format (invalid ack id)")
        func messageInvalidFormatAckID() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await initSocketIOConnection(server)
                socket.send(#"42abc["message-with-ack",1,"2",{"3":[false]}]"#)
                try await socket.waitForClose()
            }
        }
    }
}
