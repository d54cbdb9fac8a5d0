import EngineIOProtocol
import NIOCore
import NIOWebSocket

/// The one reader of a WebSocket session, whether it opened on the WebSocket or was
/// upgraded from long-polling: on the event loop, it reassembles fragmented messages (up to
/// maxHttpBufferSize), decodes Engine.IO packets and hands them to the session at once, and
/// answers the WebSocket's own control frames (ping, close).
///
/// On an upgrade it first runs the probe (engine.io-protocol v4, "Upgrade"): `2probe` is
/// answered with `3probe`, then `5` moves the session onto this connection. Anything else,
/// or nothing within the upgrade timeout, abandons the upgrade (the session stays on
/// polling) and closes this connection.
final class EngineIOFrameHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame

    enum Mode {
        /// Packets go to the session.
        case session(EngineIOSocket)
        /// Upgrading: waiting for `2probe`, then for `5`.
        case probing(EngineIOSocket, probed: Bool = false)
        /// The connection is ending; nothing more is read.
        case done
    }

    private var mode: Mode
    private let sink: ChannelSink
    private let maxSize: Int
    private let halfOpenMaxSize: Int
    /// A fragmented message being put together: its opcode and bytes so far.
    private var partial: (opcode: WebSocketOpcode, bytes: ByteBuffer)?
    /// The upgrade timeout, while probing.
    var upgradeTimer: ServerTimer?
    private var backedUp = false

    init(_ mode: Mode, sink: ChannelSink, maxSize: Int, halfOpenMaxSize: Int) {
        self.mode = mode
        self.sink = sink
        self.maxSize = maxSize
        self.halfOpenMaxSize = halfOpenMaxSize
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        // RFC 6455 §5.1: a client masks every frame, and a server closes on one that is not.
        guard frame.maskKey != nil else { return protocolError("an unmasked frame") }
        switch frame.opcode {
        case .text, .binary:
            guard partial == nil else { return protocolError("a new message inside a fragmented one") }
            if frame.fin {
                deliver(frame.opcode, frame.unmaskedData)
            } else if frame.length > maxSize {
                tooLarge()
            } else {
                partial = (frame.opcode, frame.unmaskedData)
            }
        case .continuation:
            guard var message = partial else { return protocolError("a continuation without a message") }
            var data = frame.unmaskedData
            guard message.bytes.readableBytes + data.readableBytes <= maxSize else { return tooLarge() }
            message.bytes.writeBuffer(&data)
            if frame.fin {
                partial = nil
                deliver(message.opcode, message.bytes)
            } else {
                partial = message
            }
        case .ping:
            guard frame.fin, frame.length <= 125 else { return protocolError("a control frame too long or fragmented") }
            // Pongs count against the backlog like everything else written: a client that
            // pings and never reads is closed once they pile up (`channelWritabilityChanged`).
            context.writeAndFlush(NIOAny(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .pong:
            break  // we send no WebSocket pings: Engine.IO has its own heartbeat
        case .connectionClose:
            var data = frame.unmaskedData
            let code = data.readWebSocketErrorCode()
            endSession(.transportClose)
            sink.peerClosed(code)
        default:
            protocolError("an unknown opcode")
        }
    }

    private func deliver(_ opcode: WebSocketOpcode, _ bytes: ByteBuffer) {
        guard bytes.readableBytes <= maxSize else { return tooLarge() }
        // A session that has joined no namespace only sends its CONNECT: a large message
        // then is refused before it is decoded (`Limits.maxHalfOpenPayloadBytes`).
        if bytes.readableBytes > halfOpenMaxSize, case .session(let socket) = mode, socket.isHalfOpen {
            return fail(.parseError("a message over \(halfOpenMaxSize) bytes before any namespace was joined"), code: .messageTooLarge)
        }
        let packet: EngineIOPacket
        if opcode == .binary {
            packet = .message(.binary(Array(bytes.readableBytesView)))
        } else {
            let decoded = bytes.withUnsafeReadableBytes { raw in
                Result { () throws(EngineIOParseError) in try EngineIOPacket(decodingUTF8: raw.assumingMemoryBound(to: UInt8.self)) }
            }
            switch decoded {
            case .success(let decoded): packet = decoded
            case .failure(let error): return fail(.parseError(error.description), code: .unacceptableData)
            }
        }
        switch mode {
        case .session(let socket):
            // (After the session closes, what still comes is dropped there.)
            socket.received(packet)
        case .probing(let socket, let probed):
            probe(socket, probed: probed, packet)
        case .done:
            break
        }
    }

    /// The upgrade's probe: `2probe` → `3probe`, then `5`.
    private func probe(_ socket: EngineIOSocket, probed: Bool, _ packet: EngineIOPacket) {
        switch (probed, packet) {
        case (false, .ping("probe")):
            if sink.send([EngineIOOutgoing(.pong("probe"))]) { sink.flushWritten() }
            socket.probed()
            mode = .probing(socket, probed: true)
        case (true, .upgrade):
            upgradeTimer?.cancel()
            upgradeTimer = nil
            if socket.completeUpgrade(to: sink) {
                mode = .session(socket)
            } else {
                mode = .done
                sink.sendClose(.normalClosure)
            }
        default:
            abandonUpgrade()
        }
    }

    /// The upgrade did not finish in time.
    func upgradeTimedOut() {
        guard case .probing = mode else { return }
        abandonUpgrade()
    }

    private func abandonUpgrade() {
        guard case .probing(let socket, _) = mode else { return }
        upgradeTimer?.cancel()
        upgradeTimer = nil
        mode = .done
        socket.abortUpgrade()
        sink.sendClose(.policyViolation)
    }

    private func tooLarge() {
        fail(.parseError("a message over \(maxSize) bytes"), code: .messageTooLarge)
    }

    private func protocolError(_ what: String) {
        fail(.parseError("WebSocket: \(what)"), code: .protocolError)
    }

    /// Something that ends the session as the peer's fault, and the connection with a close code.
    private func fail(_ reason: EngineIOCloseReason, code: WebSocketErrorCode) {
        partial = nil
        if case .probing = mode {
            abandonUpgrade()
            return
        }
        endSession(reason)
        sink.sendClose(code)
    }

    /// Closes the session (an upgrade in progress is abandoned instead); once.
    private func endSession(_ reason: EngineIOCloseReason) {
        switch mode {
        case .session(let socket):
            mode = .done
            socket.close(reason: reason)
        case .probing:
            abandonUpgrade()
        case .done:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        endSession(.transportClose)
        context.fireChannelInactive()
    }

    /// Whatever was written (frames from the sink, pongs, a close frame), a client that does
    /// not read is not buffered for without end: once the connection holds more than its
    /// high water mark (`Limits.maxBacklogBytes`, set by the sink), it is closed, and the
    /// session with it.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if !context.channel.isWritable, !backedUp {
            backedUp = true
            endSession(.transportError("more than the backlog limit waiting for a client that does not read"))
            context.close(promise: nil)
        }
        context.fireChannelWritabilityChanged()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        endSession(.transportClose)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // The frame decoder's errors (a frame over the limit, a malformed one): the protocol
        // error handler before us has answered with a close frame, and closes the connection.
        endSession(.parseError("WebSocket: \(error)"))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The server is shutting down gracefully: a connection still probing an upgrade goes
        // (an established session is closed by `EngineIOServer.shutdown`, with its close frame).
        if event is ChannelShouldQuiesceEvent, case .probing = mode {
            abandonUpgrade()
        }
        context.fireUserInboundEventTriggered(event)
    }
}
