import JSON
import ProtocolTestApps
import SocketIOServer
import Testing

/// What the official Socket.IO suite does not try, against the same test app (`parley-server
/// --app socket.io-test`): the server asking for acknowledgements, text and binary, with
/// their timeout and bound; Socket.IO over long-polling; and Socket.IO across an upgrade.
extension ServerSuites {
    @Suite("Socket.IO test app, beyond the suite") struct SocketIOTestAppTests: EngineIOTargets {
        let path = "/socket.io/"

        /// A WebSocket connected to the main namespace, past its CONNECT answer and `auth`.
        func connected(_ server: RunningServer) async throws -> WebSocketClient {
            let socket = try await server.webSocket(websocket, answerPings: true)
            _ = try handshakeSID(try await socket.next().text)
            socket.send("40")
            try #require(try await socket.nextSkippingPings().text.hasPrefix("40{"))
            try #require(try await socket.nextSkippingPings() == .text(#"42["auth",{}]"#))
            return socket
        }

        /// The acknowledgement id of an EVENT `42<id>[…]` or BINARY_EVENT `45<n>-<id>[…]`, and
        /// the packet with the id taken out (so that it can be compared).
        func ackID(_ packet: String) throws -> (id: Int, rest: String) {
            // The header: the type (and for binary, the attachment count and `-`), then the id.
            let head = packet.prefix(while: { $0 != "[" })
            let typeEnd = head.firstIndex(of: "-").map { head.index(after: $0) } ?? head.index(head.startIndex, offsetBy: 2)
            let id = try #require(Int(head[typeEnd...]), "no ack id in \(packet)")
            return (id, String(head[..<typeEnd]) + packet.dropFirst(head.count))
        }

        // MARK: The server asks

        @Test func theServerAsksForAnAcknowledgementAndHearsTheAnswer() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await connected(server)
                socket.send(#"42["ask",1,{"two":[3]}]"#)
                let question = try ackID(try await socket.nextSkippingPings().text)
                #expect(question.rest == #"42["question",1,{"two":[3]}]"#)
                socket.send(#"43\#(question.id)["yes",4]"#)
                #expect(try await socket.nextSkippingPings() == .text(#"42["answer","yes",4]"#))
                socket.close()
            }
        }

        @Test func binaryGoesBothWaysInQuestionAndAnswer() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await connected(server)
                socket.send(#"451-["ask",{"_placeholder":true,"num":0}]"#)
                socket.send(binary: [1, 2, 3])
                let question = try ackID(try await socket.nextSkippingPings().text)
                #expect(question.rest == #"451-["question",{"_placeholder":true,"num":0}]"#)
                #expect(try await socket.nextSkippingPings() == .binary([1, 2, 3]))
                socket.send(#"461-\#(question.id)[{"_placeholder":true,"num":0},"and text"]"#)
                socket.send(binary: [9, 8])
                #expect(try await socket.nextSkippingPings() == .text(#"451-["answer",{"_placeholder":true,"num":0},"and text"]"#))
                #expect(try await socket.nextSkippingPings() == .binary([9, 8]))
                socket.close()
            }
        }

        @Test func anAnswerThatDoesNotComeTimesOutAndALateOneIsIgnored() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await connected(server)
                socket.send(#"42["ask"]"#)
                let question = try ackID(try await socket.nextSkippingPings().text)
                server.clock.advance(by: SocketIOTestApp.askTimeout)
                #expect(try await socket.nextSkippingPings() == .text(#"42["no-answer","timeout"]"#))
                // Too late: nothing comes of it, and the connection goes on.
                socket.send(#"43\#(question.id)["late"]"#)
                socket.send(#"42["message","still here"]"#)
                #expect(try await socket.nextSkippingPings() == .text(#"42["message-back","still here"]"#))
                socket.close()
            }
        }

        /// A client that never answers holds at most `maxPendingAcksPerSocket` of them; past
        /// that the server sends no question and says why at once.
        @Test func aClientThatNeverAnswersHoldsBoundedlyMany() async throws {
            let limits = SocketIOServer.Limits(connectTimeout: .seconds(1), maxPendingAcksPerSocket: 3)
            try await withServer(makeSuiteSocketIOServer(limits: limits)) { server in
                let socket = try await connected(server)
                for _ in 0..<3 {
                    socket.send(#"42["ask"]"#)
                    #expect(try await socket.nextSkippingPings().text.hasSuffix(#"["question"]"#))
                }
                socket.send(#"42["ask"]"#)
                #expect(try await socket.nextSkippingPings() == .text(#"42["no-answer","too many pending acknowledgements"]"#))
                // Answering one makes room for one.
                socket.send(#"431["ok"]"#)
                #expect(try await socket.nextSkippingPings() == .text(#"42["answer","ok"]"#))
                socket.send(#"42["ask"]"#)
                #expect(try await socket.nextSkippingPings().text.hasSuffix(#"["question"]"#))
                socket.close()
            }
        }

        @Test func acknowledgementsNobodyAwaitsAreIgnored() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await connected(server)
                socket.send(#"43999["stray"]"#)  // an id never asked
                socket.send(#"43/custom,1["elsewhere"]"#)  // a namespace it is not in
                socket.send(#"42["message","on"]"#)
                #expect(try await socket.nextSkippingPings() == .text(#"42["message-back","on"]"#))
                socket.close()
            }
        }

        @Test func aSocketThatGoesTellsEveryAwaitedAcknowledgement() async throws {
            let io = makeSuiteSocketIOServer()
            let outcomes = Mailbox<Result<[JSONValue], SocketIOAckFailure>>()
            let sockets = Mailbox<SocketIOServerSocket>()
            io.of("/asking").onConnection { socket in
                sockets.put(socket)
                socket.emit("question", arguments: [], ackTimeout: .seconds(60)) { outcomes.put($0) }
            }
            try await withServer(io) { server in
                let socket = try await server.webSocket(websocket, answerPings: true)
                _ = try await socket.next()
                socket.send("40/asking,")
                #expect(try await socket.nextSkippingPings().text.hasPrefix("40/asking,{"))
                #expect(try await socket.nextSkippingPings().text.hasSuffix(#"["question"]"#))
                socket.send("41/asking,")
                #expect(try await outcomes.next(timeout: .seconds(5), "the outcome") == .failure(.disconnected))
                // Afterwards, an emit that asks fails at once, and sends nothing.
                let gone = try await sockets.next(timeout: .seconds(5), "the server's socket")
                gone.emit("question", arguments: [], ackTimeout: .seconds(60)) { outcomes.put($0) }
                #expect(try await outcomes.next(timeout: .seconds(5), "the outcome") == .failure(.disconnected))
                // What comes next is the answer to the next thing said, not a question.
                socket.send("40")
                #expect(try await socket.nextSkippingPings().text.hasPrefix("40{"))
                socket.close()
            }
        }

        // MARK: Over long-polling

        /// GETs until `count` packets have come (a payload may hold several).
        func poll(_ server: RunningServer, _ sid: String, count: Int) async throws -> [String] {
            var packets: [String] = []
            while packets.count < count {
                let reply = try await server.get(polling(sid))
                try #require(reply.status == 200, "\(reply)")
                packets += reply.text.split(separator: "\u{1e}").map(String.init)
            }
            return packets
        }

        @Test func theSuitesMessagesOverLongPolling() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let sid = try await server.openPollingSession(path: path)
                #expect(try await server.post(polling(sid), body: #"40{"token":"123"}"#).text == "ok")
                let connected = try await poll(server, sid, count: 2)
                #expect(connected.first?.hasPrefix("40{\"sid\":") == true)
                #expect(connected.last == #"42["auth",{"token":"123"}]"#)

                #expect(try await server.post(polling(sid), body: #"42["message",1,"2",{"3":[true]}]"#).text == "ok")
                #expect(try await poll(server, sid, count: 1) == [#"42["message-back",1,"2",{"3":[true]}]"#])

                #expect(try await server.post(polling(sid), body: #"42456["message-with-ack",1,"2"]"#).text == "ok")
                #expect(try await poll(server, sid, count: 1) == [#"43456[1,"2"]"#])

                // Binary attachments travel base64-encoded, `b` first, in the same payload.
                let binary = "451-[\"message\",{\"_placeholder\":true,\"num\":0}]\u{1e}bAQID"
                #expect(try await server.post(polling(sid), body: binary).text == "ok")
                #expect(try await poll(server, sid, count: 2) == [#"451-["message-back",{"_placeholder":true,"num":0}]"#, "bAQID"])

                #expect(try await server.post(polling(sid), body: #"42["ask","q"]"#).text == "ok")
                let question = try ackID(try #require(try await poll(server, sid, count: 1).first))
                #expect(question.rest == #"42["question","q"]"#)
                #expect(try await server.post(polling(sid), body: #"43\#(question.id)["a"]"#).text == "ok")
                #expect(try await poll(server, sid, count: 1) == [#"42["answer","a"]"#])
            }
        }

        @Test func aSocketConnectedOverPollingGoesOnAfterTheUpgrade() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let sid = try await server.openPollingSession(path: path)
                #expect(try await server.post(polling(sid), body: "40").text == "ok")
                #expect(try await poll(server, sid, count: 2).last == #"42["auth",{}]"#)
                let socket = try await server.webSocket(websocket(sid), answerPings: true)
                socket.send("2probe")
                #expect(try await socket.next() == .text("3probe"))
                #expect(try await server.get(polling(sid)).text == "6")
                socket.send("5")
                socket.send(#"42["message","after the upgrade"]"#)
                #expect(try await socket.nextSkippingPings() == .text(#"42["message-back","after the upgrade"]"#))
                socket.send(#"421["message-with-ack","acked"]"#)
                #expect(try await socket.nextSkippingPings() == .text(#"431["acked"]"#))
                socket.close()
            }
        }

        /// The document's `/custom` only says `auth`: nothing answers a message there.
        @Test func theCustomNamespaceOnlySaysAuth() async throws {
            try await withServer(makeSuiteSocketIOServer()) { server in
                let socket = try await connected(server)
                socket.send(#"40/custom,{"token":"abc"}"#)
                #expect(try await socket.nextSkippingPings().text.hasPrefix("40/custom,{"))
                #expect(try await socket.nextSkippingPings() == .text(#"42/custom,["auth",{"token":"abc"}]"#))
                socket.send(#"42/custom,["message","unanswered"]"#)
                socket.send(#"42["message","answered"]"#)
                #expect(try await socket.nextSkippingPings() == .text(#"42["message-back","answered"]"#))
                socket.close()
            }
        }
    }
}
