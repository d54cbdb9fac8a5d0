import EngineIOProtocol
import NIOCore
import NIOPosix
import NIOWebSocket
import Synchronization

/// A WebSocket session's packets, written straight onto the connection.
///
/// Frames are encoded once per packet (`EngineIOOutgoing.webSocketFrame`) and written as bytes
/// below the pipeline's WebSocket encoder, so a frame costs each recipient one buffer write.
///
/// Order: packets sent from other threads wait in `queue`, in the order they were sent (the
/// caller holds the session's lock), until a hop onto the loop drains it; a broadcast puts
/// its packets into the queues of all its recipients on a loop, then makes one hop for them
/// all. A send on the connection's own loop (a message between two sockets of one loop)
/// drains the queue first and writes at once: no hop, and nothing sent earlier overtaken.
///
/// Flushes: the connections written in a turn of the loop are flushed together right after
/// it (`LoopFlusher`), each at most once per `flushInterval`. So a lone message leaves in the
/// turn that wrote it, and when a login broadcasts `user connected` to every socket, the
/// frames one connection gets leave in one system call.
///
/// Until that flush the frames wait in the sink (`unflushed`), not in the channel: a lone
/// frame as it is, the shared buffer every recipient of the packet writes; several frames
/// copied one after another into one buffer of the sink's own. A burst (a login storm, a
/// client with several messages waiting) then costs the channel one write, not one pass down
/// the pipeline and one pending write per frame.
final class ChannelSink: EngineIOWebSocketSink, @unchecked Sendable {
    private let channel: any Channel
    let eventLoop: any EventLoop
    /// Packets sent from other threads, not written yet, and whether a hop to drain them is
    /// on its way.
    private let queue = Mutex((packets: [EngineIOOutgoing](), hopScheduled: false))
    // Touched on the event loop only:
    private var flushScheduled = false
    private var lastFlush = NIODeadline.uptimeNanoseconds(0)
    /// The context of the WebSocket frame encoder: bytes written there go to the socket.
    private var encoderContext: ChannelHandlerContext?
    private var lookedUp = false
    /// Frames for the encoder's context, not yet written to it (see above), and whether the
    /// buffer is the sink's own (several frames copied into it) or one frame's shared bytes.
    private var unflushed: ByteBuffer?
    private var unflushedIsOwn = false
    /// A close frame went out: nothing more is written, and the peer's close frame (or a
    /// timeout) ends the connection.
    private(set) var closeSent = false

    /// At most one flush (one system call) per connection per this long: a lone message
    /// leaves at once; a stream of them (a login storm, a flood) leaves in batches.
    static let flushInterval = TimeAmount.milliseconds(1)

    /// How long the peer has to answer our close frame with its own before the connection
    /// is closed anyway (RFC 6455 §7.1.1: the server closes the TCP connection first).
    static let closeHandshakeTimeout = TimeAmount.seconds(1)

    /// - Parameter highWaterMark: bytes written to the connection and not yet taken by the
    ///   client before it is given up on (`Limits.maxBacklogBytes`; the default, 8 MiB, is
    ///   ample for the largest `users` frame the chat server's defaults allow, 4.4 MB).
    ///   Crossing it makes the channel unwritable, and `EngineIOFrameHandler` closes it.
    init(channel: any Channel, highWaterMark: Int) {
        self.channel = channel
        self.eventLoop = channel.eventLoop
        let mark = ChannelOptions.Types.WriteBufferWaterMark(low: highWaterMark / 4, high: highWaterMark)
        channel.setOption(ChannelOptions.writeBufferWaterMark, value: mark).whenFailure { _ in }
    }

    func send(_ packets: [EngineIOOutgoing]) -> Bool {
        if eventLoop.inEventLoop {
            write(takeQueued())
            write(packets)
            return true
        }
        if enqueue(packets) {
            eventLoop.execute { [self] in drain() }
        }
        return false
    }

    func enqueue(_ packets: [EngineIOOutgoing]) -> Bool {
        queue.withLock { queue in
            queue.packets.append(contentsOf: packets)
            defer { queue.hopScheduled = true }
            return !queue.hopScheduled
        }
    }

    func drain() {
        let packets = takeQueued(byTheHop: true)
        guard !packets.isEmpty else { return }  // a send on the loop took them first
        write(packets)
        flushWritten()
    }

    /// What other threads sent and no hop has written yet (on the loop). `byTheHop`: the
    /// caller is the hop that `enqueue` asked for, so the next enqueue must ask for another.
    private func takeQueued(byTheHop: Bool = false) -> [EngineIOOutgoing] {
        queue.withLock { queue in
            if byTheHop { queue.hopScheduled = false }
            guard !queue.packets.isEmpty else { return [] }
            defer { queue.packets = [] }
            return queue.packets
        }
    }

    func flushWritten() {
        // The frames reach the channel at that flush, which then checks for a backed-up client.
        scheduleFlush()
    }

    /// Into the frames waiting for the next flush (or, with no encoder found, into the
    /// channel's buffer): no system call. (They count against the high water mark once they
    /// reach the channel, at that flush: crossing it fires `channelWritabilityChanged`, on
    /// which `EngineIOFrameHandler` closes the connection.)
    private func write(_ packets: [EngineIOOutgoing]) {
        guard !packets.isEmpty, !closeSent else { return }
        if !lookedUp {
            lookedUp = true
            encoderContext = try? channel.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
        }
        if encoderContext != nil {
            for packet in packets { hold(packet.webSocketFrame) }
        } else {
            // No encoder where one was expected: hand frames to the pipeline instead.
            for packet in packets {
                let frame = WebSocketFrame(fin: true, opcode: packet.isText ? .text : .binary, data: packet.webSocketPayload)
                channel.write(frame, promise: nil)
            }
        }
    }

    /// Adds a frame to the ones waiting for the next flush.
    private func hold(_ frame: ByteBuffer) {
        guard var batch = unflushed else {
            unflushed = frame
            unflushedIsOwn = false
            return
        }
        unflushed = nil  // so that `batch` is the only reference and grows in place
        if !unflushedIsOwn {
            var own = channel.allocator.buffer(capacity: max(batch.readableBytes + frame.readableBytes, 512))
            own.writeImmutableBuffer(batch)
            batch = own
            unflushedIsOwn = true
        }
        batch.writeImmutableBuffer(frame)
        unflushed = batch
    }

    /// Hands the waiting frames to the channel (no system call yet).
    private func writeUnflushed() {
        guard let batch = unflushed, let encoderContext else { return }
        unflushed = nil
        encoderContext.write(NIOAny(batch), promise: nil)
    }

    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        let due = lastFlush + Self.flushInterval
        if NIODeadline.now() >= due {
            LoopFlusher.current(on: eventLoop).add(self)
        } else {
            eventLoop.scheduleTask(deadline: due) { [self] in flush() }
        }
    }

    fileprivate func flush() {
        flushScheduled = false
        lastFlush = NIODeadline.now()
        writeUnflushed()
        // From where the frames were written: the handlers above the encoder have nothing
        // waiting to pass on.
        if let encoderContext { encoderContext.flush() } else { channel.flush() }
    }

    func close() {
        // What was sent before the close goes first (the close frame follows it).
        eventLoop.execute { [self] in sendClose(.normalClosure) }
    }

    /// Writes what waits, then a close frame with `code` (and `reason`, at most 123 bytes),
    /// and closes the connection once the peer answers (`peerClosed`) or after
    /// `closeHandshakeTimeout`. On the event loop.
    func sendClose(_ code: WebSocketErrorCode, reason: String = "") {
        guard !closeSent else { return }
        write(takeQueued())
        writeUnflushed()
        closeSent = true
        let reason = reason.utf8.prefix(123)  // RFC 6455 §5.5: a control frame's payload is at most 125 bytes
        var data = channel.allocator.buffer(capacity: 2 + reason.count)
        data.write(webSocketErrorCode: code)
        data.writeBytes(reason)
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, data: data), promise: nil)
        let channel = self.channel
        eventLoop.scheduleTask(in: Self.closeHandshakeTimeout) { channel.close(promise: nil) }
    }

    /// The peer's close frame: the handshake is complete (ours went first) or is answered
    /// now, and the connection ends. On the event loop.
    func peerClosed(_ code: WebSocketErrorCode?) {
        if !closeSent { sendClose(code ?? .normalClosure) }
        channel.close(promise: nil)
    }
}


/// Flushes the connections of one event loop that were written in a turn of it, once, after
/// that turn: one task per turn for all of them, not one per connection, and each connection
/// flushed once however many frames it got in the turn. One per event-loop thread, in
/// thread-local storage: it lives and dies with its thread, and only that thread touches it.
final class LoopFlusher: @unchecked Sendable {
    private static let perThread = ThreadSpecificVariable<LoopFlusher>()

    /// The flusher of `loop`, on that loop's thread.
    static func current(on loop: any EventLoop) -> LoopFlusher {
        loop.assertInEventLoop()
        if let flusher = perThread.currentValue { return flusher }
        let flusher = LoopFlusher(loop)
        perThread.currentValue = flusher
        return flusher
    }

    private let loop: any EventLoop
    private var pending: [ChannelSink] = []
    private var spare: [ChannelSink] = []
    private var scheduled = false

    private init(_ loop: any EventLoop) { self.loop = loop }

    func add(_ sink: ChannelSink) {
        pending.append(sink)
        guard !scheduled else { return }
        scheduled = true
        loop.execute { [self] in run() }
    }

    private func run() {
        scheduled = false
        swap(&pending, &spare)
        for sink in spare { sink.flush() }
        spare.removeAll(keepingCapacity: true)
    }
}
