import Foundation
@testable import EngineIOServer
import JSON
import Testing

/// Our own cases, beyond the conformance suites: the size limit on both transports, one
/// POST at a time, CORS, and session ids.
extension ServerSuites {
    @Suite("Server limits") struct ServerLimitsTests: EngineIOTargets {
        let path = "/engine.io/"

        /// An echo server whose heartbeat stays out of the way, with a small size limit.
        func makeServer(cors: EngineIOServerOptions.CORS = .disabled) -> EngineIOServer {
            makeEchoEngine(pingInterval: .seconds(10), pingTimeout: .seconds(5), maxHttpBufferSize: 2000, cors: cors)
        }

        @Test("a POST body over maxHttpBufferSize gets 413 and ends the session")
        func postOverTheLimit() async throws {
            try await withServer(makeServer()) { server in
                let sid = try await server.openPollingSession(path: path)
                let small = try await server.post(polling(sid), body: "4" + String(repeating: "a", count: 1500))
                #expect(small.status == 200)
                let echoed = try await server.get(polling(sid))
                #expect(echoed.text.count == 1501)

                let large = try await server.post(polling(sid), body: "4" + String(repeating: "a", count: 2500))
                #expect(large.status == 413)
                #expect(await eventually { server.sessionIsGone(sid) })
                let pollResponse = try await server.get(polling(sid))
                #expect(pollResponse.status == 400)
            }
        }

        @Test("a WebSocket message over maxHttpBufferSize closes the connection")
        func webSocketMessageOverTheLimit() async throws {
            try await withServer(makeServer()) { server in
                let socket = try await server.webSocket(websocket)
                let sid = try handshakeSID(try await socket.next().text)
                let small = "4" + String(repeating: "a", count: 1500)
                socket.send(small)
                #expect(try await socket.next() == .text(small))

                socket.send("4" + String(repeating: "a", count: 2500))
                try await socket.waitForClose()
                #expect(await eventually { server.sessionIsGone(sid) })
            }
        }

        @Test("frames of every length form (7-bit, 16-bit, 64-bit) and binary frames echo intact")
        func framesOfEveryLengthForm() async throws {
            let engine = makeEchoEngine(pingInterval: .seconds(10), pingTimeout: .seconds(5))
            try await withServer(engine) { server in
                let socket = try await server.webSocket(websocket)
                _ = try handshakeSID(try await socket.next().text)
                for count in [0, 124, 125, 126, 65_534, 65_535, 65_536, 300_000] {
                    let text = "4" + String(repeating: "é", count: count / 2) + String(repeating: "a", count: count % 2)
                    socket.send(text)
                    #expect(try await socket.next() == .text(text), "\(count)")
                }
                let bytes = (0..<70_000).map { UInt8(truncatingIfNeeded: $0) }
                socket.send(binary: bytes)
                #expect(try await socket.next() == .binary(bytes))
            }
        }

        @Test("a WebSocket client that stops reading is disconnected, not buffered for without end")
        func aClientThatDoesNotReadIsDisconnected() async throws {
            // A heartbeat far away: only the backpressure limit may end this session.
            let engine = makeEchoEngine(pingInterval: .seconds(60), pingTimeout: .seconds(30))
            try await withServer(engine) { server in
                let port = server.port
                // A raw connection that never reads after the handshake (the test WebSocket
                // client reads everything on a thread of its own).
                let socket = try await onThread { try TCPSocket.connect(port: port) }
                defer { socket.close() }
                let request = "GET \(websocket) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                    + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                let status = try await onThread {
                    try socket.sendAll(Array(request.utf8))
                    var reader = ByteReader(socket)
                    return try reader.readHead().status
                }
                #expect(status == 101)
                #expect(await eventually { engine.sessionCount == 1 })
                // 30 MB of messages to echo, masked with a zero key: far past the 4 MB the
                // server keeps for a connection plus what the kernel's buffers hold.
                let payload = [UInt8]("4".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: 99_999)
                var frame: [UInt8] = [0x81, 0x80 | 127]
                frame += withUnsafeBytes(of: UInt64(payload.count).bigEndian, Array.init)
                frame += [0, 0, 0, 0] + payload
                let message = frame
                Thread.detachNewThread {
                    for _ in 0..<300 { if (try? socket.sendAll(message)) == nil { break } }
                }
                #expect(await eventually(within: .seconds(20)) { engine.sessionCount == 0 })
            }
        }

        @Test("a WebSocket client that pings and never reads is disconnected: pongs count against the backlog")
        func aPingFloodThatIsNeverReadIsDisconnected() async throws {
            var limits = EngineIOServerOptions.Limits()
            limits.maxBacklogBytes = 64 << 10
            let engine = makeEchoEngine(limits: limits)
            try await withServer(engine) { server in
                let port = server.port
                let websocket = self.websocket
                let socket = try await onThread { try TCPSocket.connect(port: port, receiveBuffer: 4096) }
                defer { socket.close() }
                let status = try await onThread {
                    try socket.sendAll(Array(("GET \(websocket) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                        + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8))
                    var reader = ByteReader(socket)
                    return try reader.readHead().status
                }
                #expect(status == 101)
                #expect(await eventually { engine.sessionCount == 1 })
                // Pings of 125 bytes (masked, zero key), 20 MB of them: each is answered with a
                // pong the client never reads.
                let ping: [UInt8] = [0x89, 0x80 | 125, 0, 0, 0, 0] + [UInt8](repeating: 0x70, count: 125)
                let burst = Array([[UInt8]](repeating: ping, count: 1000).joined())
                Thread.detachNewThread {
                    for _ in 0..<160 { if (try? socket.sendAll(burst)) == nil { break } }
                }
                #expect(await eventually(within: .seconds(20)) { engine.sessionCount == 0 })
            }
        }

        @Test("a second POST while one is in flight is refused, and ends the session")
        func overlappingPosts() async throws {
            try await withServer(makeServer()) { server in
                let sid = try await server.openPollingSession(path: path)
                // The first POST promises 6 bytes and sends 3: it stays in flight.
                let first = try await server.start("POST", polling(sid), contentLength: 6, bodyPrefix: "4he")
                #expect(await eventually { server.engine.session(id: sid)?.isPosting == true })
                let second = try await server.post(polling(sid), body: "4x")
                #expect(second.status == 400)
                let error = try JSONValue(parsing: second.text)
                #expect(error["code"] == 3)  // Bad request (not 1, unknown session)
                #expect(await eventually { server.sessionIsGone(sid) })
                first.abort()
                let pollResponse = try await server.get(polling(sid))
                #expect(pollResponse.status == 400)
            }
        }

        @Test("CORS: an allowed origin gets Access-Control-Allow-Origin, and its preflight 204")
        func corsAllowedOrigin() async throws {
            try await withServer(makeServer(cors: .origins(["http://example.com"]))) { server in
                let handshake = try await server.get(polling, headers: [("Origin", "http://example.com")])
                #expect(handshake.status == 200)
                #expect(handshake[header: "Access-Control-Allow-Origin"] == "http://example.com")
                #expect(handshake[header: "Access-Control-Allow-Credentials"] == "true")

                let preflight = try await server.request(
                    "OPTIONS",
                    polling,
                    headers: [
                        ("Origin", "http://example.com"),
                        ("Access-Control-Request-Method", "POST"),
                        ("Access-Control-Request-Headers", "content-type"),
                    ]
                )
                #expect(preflight.status == 204)
                #expect(preflight[header: "Access-Control-Allow-Origin"] == "http://example.com")
                let methods = preflight[header: "Access-Control-Allow-Methods"] ?? ""
                #expect(methods.contains("GET") && methods.contains("POST"))
                #expect(preflight[header: "Access-Control-Allow-Headers"]?.lowercased().contains("content-type") == true)
            }
        }

        @Test("CORS: another origin gets no CORS header")
        func corsOtherOrigin() async throws {
            try await withServer(makeServer(cors: .origins(["http://example.com"]))) { server in
                let handshake = try await server.get(polling, headers: [("Origin", "http://evil.example")])
                #expect(handshake.status == 200)
                #expect(handshake[header: "Access-Control-Allow-Origin"] == nil)

                let preflight = try await server.request(
                    "OPTIONS",
                    polling,
                    headers: [("Origin", "http://evil.example"), ("Access-Control-Request-Method", "POST")]
                )
                #expect(preflight[header: "Access-Control-Allow-Origin"] == nil)
                #expect(preflight[header: "Access-Control-Allow-Credentials"] == nil)

                let noOrigin = try await server.get(polling)
                #expect(noOrigin[header: "Access-Control-Allow-Origin"] == nil)
            }
        }

        @Test("session ids are distinct and at least 20 characters")
        func sessionIDs() async throws {
            try await withServer(makeEchoEngine(limits: .unlimitedAddresses)) { server in
                var sids: [String] = []
                for _ in 0..<40 { sids.append(try await server.openPollingSession(path: path)) }
                for _ in 0..<10 {
                    let socket = try await server.webSocket(websocket)
                    sids.append(try handshakeSID(try await socket.next().text))
                    socket.close()
                }
                #expect(Set(sids).count == sids.count)
                let urlSafe = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
                for sid in sids {
                    #expect(sid.count >= 20, "\(sid)")
                    #expect(sid.allSatisfy(urlSafe.contains), "\(sid)")
                }
            }
        }
    }
}
