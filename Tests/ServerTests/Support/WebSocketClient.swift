import Foundation
import NIOWebSocket
import SocketIOTesting
import Synchronization

/// What a WebSocket delivers to the test: a message, or the end of the connection.
enum WebSocketEvent: Sendable, Equatable, CustomStringConvertible {
    case text(String)
    case binary([UInt8])
    /// The connection is closed (close handshake, end of stream, or a refused opening
    /// handshake); returned by every later `next` too.
    case closed

    var description: String {
        switch self {
        case .text(let text): return "text \(text.debugDescription)"
        case .binary(let bytes): return "binary \(bytes)"
        case .closed: return "closed"
        }
    }
}

/// A minimal RFC 6455 client: opening handshake, masked frames out, unmasked frames in,
/// fragmented messages, pings and the close handshake answered. A reader thread turns
/// frames into `WebSocketEvent`s; writes go through a serial queue in the order made.
final class WebSocketClient: Sendable {
    /// The status of the opening handshake's response: 101 when it was accepted.
    let handshakeStatus: Int
    /// The body of a refused handshake (engine.io's `{"code":…,"message":…}`), else empty.
    let handshakeBody: String
    private let socket: TCPSocket
    private let events = Mailbox<WebSocketEvent>()
    private let writer = DispatchQueue(label: "ServerTests.WebSocketClient.writer")
    private let answerPings: Bool
    private let state = Mutex(State())

    private struct State {
        var closeSent = false
        /// After the test's own `close()`, how long the reader waits for the server's answer.
        var closeDeadline: ContinuousClock.Instant?
        /// The server's close frame: its status code and reason.
        var closeFrame: (code: Int?, reason: String)?
    }

    /// The status code and reason of the server's close frame, once one came.
    var closeFrame: (code: Int?, reason: String)? { state.withLock { $0.closeFrame } }

    private init(socket: TCPSocket, handshakeStatus: Int, handshakeBody: String, answerPings: Bool) {
        self.socket = socket
        self.handshakeStatus = handshakeStatus
        self.handshakeBody = handshakeBody
        self.answerPings = answerPings
    }

    /// Opens a WebSocket on `target` (path and query). A refused handshake is no error:
    /// the client is then already `.closed`, as a browser's WebSocket fires `close`.
    ///
    /// - Parameter answerPings: answer each Engine.IO ping (a text `2`) with a pong (`3`)
    ///   straight from the reader thread. The ping is still delivered.
    static func connect(port: Int, _ target: String, answerPings: Bool = false) async throws -> WebSocketClient {
        var keyBytes = [UInt8](repeating: 0, count: 16)
        for i in keyBytes.indices { keyBytes[i] = UInt8.random(in: 0...255) }
        let key = Data(keyBytes).base64EncodedString()
        let request = """
            GET \(target) HTTP/1.1\r
            Host: 127.0.0.1:\(port)\r
            Upgrade: websocket\r
            Connection: Upgrade\r
            Sec-WebSocket-Key: \(key)\r
            Sec-WebSocket-Version: 13\r
            \r

            """
        let expectedAccept = Data(sha1(Array((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))).base64EncodedString()
        let (socket, status, leftover) = try await onThread { () throws -> (TCPSocket, Int, [UInt8]) in
            let socket = try TCPSocket.connect(port: port)
            do {
                try socket.sendAll(Array(request.utf8))
                var reader = ByteReader(socket)
                let head: (status: Int, headers: [String: String])
                do {
                    head = try reader.readHead()
                } catch SocketError.closed {
                    return (socket, 0, [])  // hung up without an answer
                }
                if head.status == 101 {
                    guard head.headers["sec-websocket-accept"] == expectedAccept else {
                        throw SocketError.system("bad Sec-WebSocket-Accept \(head.headers["sec-websocket-accept"] ?? "none")", 0)
                    }
                    return (socket, head.status, reader.buffer)
                }
                // A refusal: its body says why.
                let length = head.headers["content-length"].flatMap { Int($0) } ?? 0
                return (socket, head.status, (try? reader.readExactly(length)) ?? [])
            } catch {
                socket.close()
                throw error
            }
        }
        let client = WebSocketClient(
            socket: socket, handshakeStatus: status,
            handshakeBody: status == 101 ? "" : String(decoding: leftover, as: UTF8.self), answerPings: answerPings
        )
        if status == 101 {
            // Short reads, so the reader notices a `close()` whose answer never comes.
            socket.setReceiveTimeout(.milliseconds(200))
            Thread { client.readLoop(leftover) }.start()
        } else {
            socket.close()
            client.events.finish(with: .closed)
        }
        return client
    }

    // MARK: Sending

    func send(_ text: String) { sendFrame(opcode: 0x1, payload: Array(text.utf8)) }

    func send(binary bytes: [UInt8]) { sendFrame(opcode: 0x2, payload: bytes) }

    /// A text frame without a mask, which no client may send (RFC 6455 §5.1).
    func sendUnmasked(_ text: String) {
        let payload = Array(text.utf8)
        precondition(payload.count < 126)
        let bytes: [UInt8] = [0x81, UInt8(payload.count)] + payload
        let socket = socket
        writer.async { try? socket.sendAll(bytes) }
    }

    /// Starts the close handshake (code 1000), as `WebSocket.close()` does.
    func close() {
        let first = state.withLock { state -> Bool in
            if state.closeDeadline == nil { state.closeDeadline = .now + .seconds(2) }
            guard !state.closeSent else { return false }
            state.closeSent = true
            return true
        }
        if first { sendFrame(opcode: 0x8, payload: [0x03, 0xE8]) }
    }

    private func sendFrame(opcode: UInt8, payload: [UInt8]) {
        let socket = socket
        let bytes = ClientFrames.frame(opcode: opcode, payload)
        writer.async { try? socket.sendAll(bytes) }
    }

    // MARK: Receiving

    /// The next message, or `.closed`; throws `TestTimeout` when nothing comes in time.
    func next(timeout: Duration = .seconds(5)) async throws -> WebSocketEvent {
        try await events.next(timeout: timeout, "a WebSocket message")
    }

    /// The next message that is not an Engine.IO ping (`2`), or `.closed`.
    func nextSkippingPings(timeout: Duration = .seconds(5)) async throws -> WebSocketEvent {
        while true {
            let event = try await next(timeout: timeout)
            if event != .text("2") { return event }
        }
    }

    /// Waits for the connection to close, passing over any message before it
    /// (the JS suites' `waitFor(socket, "close")`).
    func waitForClose(timeout: Duration = .seconds(5)) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await next(timeout: deadline - .now) != .closed {}
    }

    private func readLoop(_ initial: [UInt8]) {
        // NIOWebSocket's decoder, as every peer of the project decodes frames.
        let decoder = WebSocketFrames.Decoder()
        var incoming = initial
        var message: (opcode: UInt8, payload: [UInt8])?
        // No test lasts this long: a reader never outlives its usefulness by much.
        let lifetime = ContinuousClock.now + .seconds(120)
        reading: while true {
            guard let decoded = try? decoder.feed(incoming) else { break reading }  // not WebSocket: the end
            incoming = []
            for decodedFrame in decoded {
                let frame = (fin: decodedFrame.fin, opcode: UInt8(webSocketOpcode: decodedFrame.opcode), payload: Array(decodedFrame.unmaskedData.readableBytesView))
                switch frame.opcode {
                case 0x0, 0x1, 0x2:
                    if frame.opcode != 0x0 || message == nil {
                        message = (frame.opcode == 0x0 ? 0x1 : frame.opcode, [])
                    }
                    message!.payload += frame.payload
                    guard frame.fin, let (opcode, payload) = message else { continue }
                    message = nil
                    if opcode == 0x1 {
                        let text = String(decoding: payload, as: UTF8.self)
                        if answerPings && text == "2" { send("3") }
                        events.put(.text(text))
                    } else {
                        events.put(.binary(payload))
                    }
                case 0x8:
                    // Answer the server's close (with its status code) unless we began it.
                    let payload = frame.payload
                    let answer = state.withLock { state -> Bool in
                        state.closeFrame = (
                            payload.count >= 2 ? Int(payload[0]) << 8 | Int(payload[1]) : nil,
                            String(decoding: payload.dropFirst(2), as: UTF8.self)
                        )
                        defer { state.closeSent = true }
                        return !state.closeSent
                    }
                    if answer { sendFrame(opcode: 0x8, payload: Array(frame.payload.prefix(2))) }
                    break reading
                case 0x9:
                    sendFrame(opcode: 0xA, payload: frame.payload)
                default:
                    break
                }
            }
            do {
                let bytes = try socket.receive()
                if bytes.isEmpty { break reading }
                incoming = bytes
            } catch SocketError.timeout {
                let deadline = state.withLock { $0.closeDeadline }
                if let deadline, ContinuousClock.now > deadline { break reading }
                if ContinuousClock.now > lifetime { break reading }
            } catch {
                break reading
            }
        }
        events.finish(with: .closed)
        // After any frame still queued (the answer to a close).
        let socket = socket
        writer.async { socket.close() }
    }
}

/// SHA-1 (FIPS 180-4), for `Sec-WebSocket-Accept`.
func sha1(_ message: [UInt8]) -> [UInt8] {
    func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 { (x << n) | (x >> (32 - n)) }
    var h: [UInt32] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0]
    var m = message
    let bitLength = UInt64(message.count) * 8
    m.append(0x80)
    while m.count % 64 != 56 { m.append(0) }
    for shift in stride(from: 56, through: 0, by: -8) { m.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }
    var w = [UInt32](repeating: 0, count: 80)
    for chunk in stride(from: 0, to: m.count, by: 64) {
        for i in 0..<16 {
            let j = chunk + 4 * i
            w[i] = UInt32(m[j]) << 24 | UInt32(m[j + 1]) << 16 | UInt32(m[j + 2]) << 8 | UInt32(m[j + 3])
        }
        for i in 16..<80 { w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1) }
        var (a, b, c, d, e) = (h[0], h[1], h[2], h[3], h[4])
        for i in 0..<80 {
            let f: UInt32
            let k: UInt32
            switch i {
            case 0..<20: (f, k) = ((b & c) | (~b & d), 0x5A82_7999)
            case 20..<40: (f, k) = (b ^ c ^ d, 0x6ED9_EBA1)
            case 40..<60: (f, k) = ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC)
            default: (f, k) = (b ^ c ^ d, 0xCA62_C1D6)
            }
            let t = rotl(a, 5) &+ f &+ e &+ k &+ w[i]
            (e, d, c, b, a) = (d, c, rotl(b, 30), a, t)
        }
        h[0] &+= a
        h[1] &+= b
        h[2] &+= c
        h[3] &+= d
        h[4] &+= e
    }
    return h.flatMap { word in [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: word >> UInt32($0)) } }
}
