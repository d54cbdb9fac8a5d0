import Chat
import NIOCore
import Synchronization

// The load generator's client side: a minimal WebSocket client written directly
// on NIO (one ChannelHandler per connection, no HTTP or frame handlers in the
// pipeline), speaking just enough Engine.IO v4 / Socket.IO v5 to log in and
// exchange `private message` events. Everything a connection does happens in
// its handler on its event loop; what the run measures lives in one
// `LoopState` per event loop, so nothing on the hot path takes a lock.

/// What every client reads: the phase of the run (one relaxed atomic load per
/// delivery) and the fixed parameters of the load.
final class LoadControl: Sendable {
    enum Phase: Int {
        /// Connecting and settling: no private messages are sent.
        case idle = 0
        /// Traffic flows, nothing is recorded yet.
        case warmup
        /// Traffic flows; deliveries and their latencies are recorded.
        case measuring
        /// No new messages; the run is over.
        case stopped
    }

    private let rawPhase = Atomic<Int>(Phase.idle.rawValue)
    /// Closed loop: every delivery is answered with a new message to the sender.
    let closedLoop: Bool
    /// Bytes of `content` in each message (a 20-digit timestamp, then padding).
    let contentSize: Int
    /// The handshake of a connection that has not completed by then fails.
    let connectDeadline: NIODeadline
    /// The HTTP upgrade request, but for the `Sec-WebSocket-Key` line and the final CRLF.
    let requestHead: [UInt8]

    init(closedLoop: Bool, contentSize: Int, connectDeadline: NIODeadline, requestHead: String) {
        self.closedLoop = closedLoop
        self.contentSize = contentSize
        self.connectDeadline = connectDeadline
        self.requestHead = Array(requestHead.utf8)
    }

    var phase: Phase { Phase(rawValue: rawPhase.load(ordering: .relaxed)) ?? .stopped }
    func set(_ phase: Phase) { rawPhase.store(phase.rawValue, ordering: .sequentiallyConsistent) }
}

/// A client that completed the Socket.IO CONNECT and received its `session`.
struct ReadyClient: Sendable {
    let index: Int
    /// The `userID` as it appeared between the quotes of the JSON string (still escaped).
    let userID: [UInt8]
    let channel: any Channel
    let handler: NIOLoopBound<LoadClientHandler>
}

/// Why a handshake or a connection failed.
struct LoadClientError: Error, CustomStringConvertible {
    let description: String
    /// The overall connection deadline passed (not a failure of the server as such).
    var isTimeout = false
}

/// Counters, latencies and the open-loop sender of one event loop. Only touched on that loop.
final class LoadLoopState {
    let eventLoop: any EventLoop
    /// Text frames received (all kinds): the settle phase waits until this stops moving.
    var frames = 0
    /// Private messages received inside the measurement window.
    var delivered = 0
    /// Private messages sent inside the measurement window.
    var sent = 0
    /// Private messages sent and received over the whole run: after the run, the difference
    /// is what the server dropped (a rate limit, say).
    var sentTotal = 0
    var receivedTotal = 0
    var histogram = LatencyHistogram()
    /// Connections lost or frames not understood after the handshake.
    var problems = 0
    var firstProblem: String?
    /// Every client of this loop that completed its handshake.
    var clients: [LoadClientHandler] = []
    /// Clients of this loop with a peer: the ones that send.
    var senders: [LoadClientHandler] = []
    var random: SplitMix64

    // Open loop: message k of this loop is due at start + k · interval, sent by senders[k % count].
    private var openLoopStart: UInt64 = 0
    private var openLoopInterval: Double = 0
    private var openLoopCount: UInt64 = 0
    private var openLoopTick: UInt64 = 1_000_000
    private var nextSender = 0

    init(eventLoop: any EventLoop, seed: UInt64) {
        self.eventLoop = eventLoop
        self.random = SplitMix64(seed: seed)
    }

    func problem(_ text: String) {
        problems += 1
        if firstProblem == nil { firstProblem = text }
    }

    struct Snapshot: Sendable {
        var frames: Int
        var delivered: Int
        var sent: Int
        var histogram: LatencyHistogram
        var problems: Int
        var firstProblem: String?
    }

    /// What the coordinator polls while the run goes on (no histogram copy).
    struct Health: Sendable {
        var frames: Int
        var sentTotal: Int
        var receivedTotal: Int
        var problems: Int
        var firstProblem: String?
    }

    var health: Health {
        Health(frames: frames, sentTotal: sentTotal, receivedTotal: receivedTotal, problems: problems, firstProblem: firstProblem)
    }

    var snapshot: Snapshot {
        Snapshot(
            frames: frames, delivered: delivered, sent: sent, histogram: histogram,
            problems: problems, firstProblem: firstProblem
        )
    }

    /// Closed loop: every sender puts `window` messages in flight to its peer.
    func startClosedLoop(window: Int) {
        let now = NIODeadline.now().uptimeNanoseconds
        for sender in senders {
            for _ in 0..<window { sender.sendMessage(timestamp: now, flush: false) }
            sender.flushIfNeeded()
        }
    }

    /// Open loop: `rate` messages per second from this loop's senders, round robin. Each
    /// message carries the time it was due (not the time the timer fired), so a late timer
    /// shows as latency instead of silently lowering the load.
    func startOpenLoop(rate: Double, tick: UInt64) {
        guard !senders.isEmpty, rate > 0 else { return }
        openLoopInterval = 1e9 / rate
        openLoopTick = tick
        openLoopStart = NIODeadline.now().uptimeNanoseconds
        openLoopCount = 0
        self.tick()
    }

    private func tick() {
        let control = senders[0].control
        switch control.phase {
        case .warmup, .measuring: break
        case .idle, .stopped: return
        }
        let now = NIODeadline.now().uptimeNanoseconds
        var due = openLoopStart + UInt64(Double(openLoopCount) * openLoopInterval)
        while due <= now {
            senders[nextSender].sendMessage(timestamp: due, flush: true)
            nextSender += 1
            if nextSender == senders.count { nextSender = 0 }
            openLoopCount += 1
            due = openLoopStart + UInt64(Double(openLoopCount) * openLoopInterval)
        }
        // Once a tick at most: the messages due in between go out together.
        let next = max(due, now + openLoopTick)
        eventLoop.assumeIsolated().scheduleTask(deadline: NIODeadline.uptimeNanoseconds(next)) { [self] in
            self.tick()
        }
    }
}

/// One benchmark client: WebSocket upgrade, Engine.IO open and heartbeat, Socket.IO CONNECT,
/// then private messages to its peer.
final class LoadClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Stage {
        /// Waiting for the HTTP 101 response.
        case upgrading
        /// Waiting for the Engine.IO open packet.
        case opening
        /// CONNECT sent; waiting for its acknowledgement and the `session` event.
        case connecting
        /// Logged in.
        case ready
        /// Our WebSocket close frame is sent.
        case closing
        case closed
    }

    /// Frames above this are refused (a `users` list of 100,000 users is about 8 MB).
    static let maxFrameSize = 1 << 26

    let index: Int
    let control: LoadControl
    private let loop: LoadLoopState
    private var stage = Stage.upgrading
    private var ready: EventLoopPromise<ReadyClient>?
    private var context: ChannelHandlerContext?
    private var deadlineTask: Scheduled<Void>?

    private var connectAcknowledged = false
    private var userID: [UInt8]?
    /// Bytes of a frame that is not complete yet.
    private var pending: ByteBuffer?
    /// A fragmented message being reassembled (servers rarely fragment).
    private var fragments: ByteBuffer?
    /// After the timestamp of each message: padding, then `","to":"<peer>"}]`.
    private var messageSuffix: [UInt8] = []
    private var needsFlush = false

    init(index: Int, loop: LoadLoopState, control: LoadControl, ready: EventLoopPromise<ReadyClient>) {
        self.index = index
        self.loop = loop
        self.control = control
        self.ready = ready
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        // The handshake must be over by the overall deadline.
        deadlineTask = context.eventLoop.assumeIsolated().scheduleTask(deadline: control.connectDeadline) { [self] in
            self.fail(LoadClientError(description: "timed out \(self.stageName)", isTimeout: true))
        }
        var key = [UInt8](repeating: 0, count: 16)
        for i in 0..<16 { key[i] = UInt8(truncatingIfNeeded: loop.random.next()) }
        var request = context.channel.allocator.buffer(capacity: control.requestHead.count + 64)
        request.writeBytes(control.requestHead)
        request.writeString("Sec-WebSocket-Key: ")
        request.writeBytes(Base64.encode(key))
        request.writeString("\r\n\r\n")
        context.writeAndFlush(wrapOutboundOut(request), promise: nil)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadlineTask?.cancel()
        switch stage {
        case .ready:
            loop.problem("the server closed a connection (client \(index))")
        case .upgrading, .opening, .connecting:
            failHandshake(LoadClientError(description: "the server closed the connection during the handshake (\(stageName))"))
        case .closing, .closed:
            break
        }
        stage = .closed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(LoadClientError(description: "\(error)"))
    }

    private var stageName: String {
        switch stage {
        case .upgrading: "waiting for the WebSocket upgrade"
        case .opening: "waiting for the Engine.IO open packet"
        case .connecting: "waiting for the Socket.IO CONNECT reply and the session event"
        case .ready: "logged in"
        case .closing: "closing"
        case .closed: "closed"
        }
    }

    /// A handshake failure fails the handshake; a failure after it is a problem of the run.
    private func fail(_ error: LoadClientError) {
        switch stage {
        case .upgrading, .opening, .connecting: failHandshake(error)
        case .ready: loop.problem(error.description)
        case .closing, .closed: break
        }
        stage = .closed
        context?.close(promise: nil)
    }

    private func failHandshake(_ error: LoadClientError) {
        deadlineTask?.cancel()
        ready?.fail(error)
        ready = nil
    }

    // MARK: Reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if pending != nil {
            pending!.writeBuffer(&buffer)
            var bytes = pending!
            pending = nil
            process(&bytes)
            keep(&bytes)
        } else {
            process(&buffer)
            keep(&buffer)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded()
        context.fireChannelReadComplete()
    }

    /// Keeps the bytes of an incomplete frame, in a buffer of their own (a slice would pin
    /// the whole receive buffer, per connection).
    private func keep(_ buffer: inout ByteBuffer) {
        guard buffer.readableBytes > 0, stage != .closed, let context else { return }
        var copy = context.channel.allocator.buffer(capacity: max(buffer.readableBytes, neededBytes))
        copy.writeBuffer(&buffer)
        pending = copy
    }

    /// How many bytes the incomplete frame at the front needs in all, when known.
    private var neededBytes = 0

    private func process(_ buffer: inout ByteBuffer) {
        if stage == .upgrading {
            guard readUpgradeResponse(&buffer) else { return }
        }
        while stage != .closed {
            guard let frame = nextFrameHeader(buffer) else { return }
            if frame.masked {
                fail(LoadClientError(description: "the server sent a masked frame (RFC 6455 forbids it)"))
                return
            }
            if frame.length > Self.maxFrameSize {
                fail(LoadClientError(description: "the server sent a frame of \(frame.length) bytes (limit \(Self.maxFrameSize))"))
                return
            }
            let total = frame.headerLength + frame.length
            guard buffer.readableBytes >= total else {
                neededBytes = total
                return
            }
            neededBytes = 0
            let payloadStart = buffer.readerIndex + frame.headerLength
            switch frame.opcode {
            case 0x1 where frame.fin:  // a whole text message: the common case, read in place
                buffer.withUnsafeReadableBytes { bytes in
                    text(UnsafeRawBufferPointer(rebasing: bytes[frame.headerLength..<total]))
                }
            case 0x1, 0x2:  // the first fragment of a message
                fragments = buffer.getSlice(at: payloadStart, length: frame.length)
                if frame.fin { fragments = nil }  // a whole binary message: not part of this protocol's flow
            case 0x0:
                guard var message = fragments else {
                    fail(LoadClientError(description: "the server sent a continuation frame outside a message"))
                    return
                }
                var piece = buffer.getSlice(at: payloadStart, length: frame.length)!
                message.writeBuffer(&piece)
                if frame.fin {
                    fragments = nil
                    message.withUnsafeReadableBytes { text($0) }
                } else {
                    fragments = message
                }
            case 0x8:
                closeReceived()
            case 0x9:
                let payload = buffer.getSlice(at: payloadStart, length: frame.length) ?? ByteBuffer()
                writeFrame(opcode: 0xA, payload: payload.readableBytesView, flush: true)
            case 0xA:
                break
            default:
                fail(LoadClientError(description: "the server sent a frame with the unknown opcode \(frame.opcode)"))
                return
            }
            buffer.moveReaderIndex(forwardBy: total)
        }
    }

    private struct FrameHeader {
        var fin: Bool
        var opcode: UInt8
        var masked: Bool
        var headerLength: Int
        var length: Int
    }

    private func nextFrameHeader(_ buffer: ByteBuffer) -> FrameHeader? {
        let start = buffer.readerIndex
        guard buffer.readableBytes >= 2,
            let first = buffer.getInteger(at: start, as: UInt8.self),
            let second = buffer.getInteger(at: start + 1, as: UInt8.self)
        else { return nil }
        var header = FrameHeader(fin: first & 0x80 != 0, opcode: first & 0x0F, masked: second & 0x80 != 0, headerLength: 2, length: Int(second & 0x7F))
        if header.length == 126 {
            guard let length = buffer.getInteger(at: start + 2, as: UInt16.self) else { return nil }
            header.length = Int(length)
            header.headerLength = 4
        } else if header.length == 127 {
            guard let length = buffer.getInteger(at: start + 2, as: UInt64.self) else { return nil }
            header.length = length > UInt64(Int.max / 2) ? Int.max / 2 : Int(length)
            header.headerLength = 10
        }
        if header.masked { header.headerLength += 4 }
        return header
    }

    /// The HTTP response to the upgrade request: true once it is read and is a 101.
    private func readUpgradeResponse(_ buffer: inout ByteBuffer) -> Bool {
        let end: Int? = buffer.withUnsafeReadableBytes { bytes in
            guard bytes.count >= 4 else { return nil }
            for i in 3..<bytes.count where bytes[i] == 0x0A && bytes[i - 1] == 0x0D && bytes[i - 2] == 0x0A && bytes[i - 3] == 0x0D {
                return i + 1
            }
            return nil
        }
        guard let end else {
            if buffer.readableBytes > 16_384 {
                fail(LoadClientError(description: "the server's answer to the WebSocket upgrade is not HTTP"))
            }
            return false
        }
        let head = buffer.readString(length: end) ?? ""
        let statusLine = head.prefix { !$0.isNewline }
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1] == "101" else {
            fail(LoadClientError(description: "the server answered \"\(statusLine)\" to the WebSocket upgrade (is it a Socket.IO v4 server with the websocket transport?)"))
            return false
        }
        stage = .opening
        return true
    }

    // MARK: Engine.IO and Socket.IO

    private static let privateMessagePrefix = Array(#"42["private message""#.utf8)
    private static let sessionPrefix = Array(#"42["session""#.utf8)
    private static let contentKey = Array(#""content""#.utf8)
    private static let userIDKey = Array(#""userID""#.utf8)

    /// One Engine.IO packet. Everything but pings, the handshake and private messages is
    /// skipped after a look at its first bytes: the login storm (a `user connected` to
    /// everyone per login, a full `users` list per newcomer) is quadratic in the clients.
    private func text(_ packet: UnsafeRawBufferPointer) {
        loop.frames += 1
        guard let type = packet.first else { return }
        switch type {
        case UInt8(ascii: "4"):
            guard packet.count >= 2 else { return }
            switch packet[1] {
            case UInt8(ascii: "2"):
                if packet.starts(with: Self.privateMessagePrefix) {
                    privateMessage(packet)
                } else if stage == .connecting, packet.starts(with: Self.sessionPrefix) {
                    session(packet)
                }
            case UInt8(ascii: "0"):
                if stage == .connecting {
                    connectAcknowledged = true
                    completeHandshakeIfDone()
                }
            case UInt8(ascii: "4"):
                fail(LoadClientError(description: "the server refused the Socket.IO CONNECT: \(snippet(packet))"))
            case UInt8(ascii: "1"):
                fail(LoadClientError(description: "the server disconnected the Socket.IO socket"))
            default:
                break
            }
        case UInt8(ascii: "2"):
            // Ping: answer pong with the same data ("2" → "3", "2probe" → "3probe").
            var pong = Array(packet)
            pong[0] = UInt8(ascii: "3")
            writeFrame(opcode: 0x1, payload: pong, flush: true)
        case UInt8(ascii: "0"):
            guard stage == .opening else { return }
            stage = .connecting
            writeFrame(opcode: 0x1, payload: Array(#"40{"username":"bench\#(index)"}"#.utf8), flush: true)
        case UInt8(ascii: "1"):
            fail(LoadClientError(description: "the server closed the Engine.IO session"))
        default:
            break
        }
    }

    /// `42["session",{"sessionID":…,"userID":…}]`: remember the user ID.
    private func session(_ packet: UnsafeRawBufferPointer) {
        guard let id = stringValue(of: Self.userIDKey, in: packet, from: Self.sessionPrefix.count) else {
            fail(LoadClientError(description: "a session event without a userID: \(snippet(packet))"))
            return
        }
        userID = Array(id)
        completeHandshakeIfDone()
    }

    private func completeHandshakeIfDone() {
        guard connectAcknowledged, let userID, let context else { return }
        stage = .ready
        deadlineTask?.cancel()
        deadlineTask = nil
        loop.clients.append(self)
        ready?.succeed(ReadyClient(index: index, userID: userID, channel: context.channel, handler: NIOLoopBound(self, eventLoop: context.eventLoop)))
        ready = nil
    }

    /// `42["private message",{"content":"<20-digit send time>…","from":…,"to":…}]`.
    private func privateMessage(_ packet: UnsafeRawBufferPointer) {
        guard stage == .ready else { return }
        guard let content = stringValue(of: Self.contentKey, in: packet, from: Self.privateMessagePrefix.count),
            content.count >= 20
        else {
            loop.problem("a private message not sent by this benchmark: \(snippet(packet))")
            return
        }
        var sentAt: UInt64 = 0
        for byte in content.prefix(20) {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else {
                loop.problem("a private message not sent by this benchmark: \(snippet(packet))")
                return
            }
            sentAt = sentAt &* 10 &+ UInt64(byte - UInt8(ascii: "0"))
        }
        loop.receivedTotal += 1
        let phase = control.phase
        guard phase == .warmup || phase == .measuring else { return }
        let now = NIODeadline.now().uptimeNanoseconds
        if phase == .measuring {
            loop.delivered += 1
            loop.histogram.record(now >= sentAt ? now - sentAt : 0)
        }
        if control.closedLoop { sendMessage(timestamp: now, flush: false) }
    }

    /// The raw bytes of the JSON string value of the first `key` after `offset` (escapes kept).
    private func stringValue(of key: [UInt8], in packet: UnsafeRawBufferPointer, from offset: Int) -> UnsafeRawBufferPointer.SubSequence? {
        let count = packet.count
        var i = offset
        let first = key[0]
        search: while i + key.count <= count {
            if packet[i] != first { i += 1; continue }
            for j in 1..<key.count where packet[i + j] != key[j] {
                i += 1
                continue search
            }
            i += key.count
            // Optional whitespace, the colon, optional whitespace, the opening quote.
            while i < count, packet[i] == 0x20 || packet[i] == 0x3A || packet[i] == 0x09 || packet[i] == 0x0A || packet[i] == 0x0D { i += 1 }
            guard i < count, packet[i] == UInt8(ascii: "\"") else { return nil }
            let start = i + 1
            var end = start
            while end < count, packet[end] != UInt8(ascii: "\"") {
                end += packet[end] == UInt8(ascii: "\\") ? 2 : 1
            }
            guard end < count else { return nil }
            return packet[start..<end]
        }
        return nil
    }

    private func snippet(_ packet: UnsafeRawBufferPointer) -> String {
        let text = String(decoding: packet.prefix(160), as: UTF8.self)
        return packet.count > 160 ? text + "…" : text
    }

    // MARK: Writing

    /// Gives this client its peer; it sends nothing until the run's traffic starts.
    func setPeer(_ peerID: [UInt8]) {
        let padding = max(0, control.contentSize - 20)
        messageSuffix = [UInt8](repeating: UInt8(ascii: "x"), count: padding) + Array(#"","to":""#.utf8) + peerID + Array(#""}]"#.utf8)
    }

    private static let messagePrefix = Array(#"42["private message",{"content":""#.utf8)

    /// `42["private message",{"content":"<timestamp><padding>","to":"<peer>"}]`.
    func sendMessage(timestamp: UInt64, flush: Bool) {
        guard stage == .ready, !messageSuffix.isEmpty, let context else { return }
        let length = Self.messagePrefix.count + 20 + messageSuffix.count
        var buffer = frameBuffer(opcode: 0x1, length: length, allocator: context.channel.allocator)
        let payloadStart = buffer.writerIndex
        buffer.writeBytes(Self.messagePrefix)
        var digits = timestamp
        let at = buffer.writerIndex
        buffer.writeRepeatingByte(UInt8(ascii: "0"), count: 20)
        var position = at + 19
        while digits > 0 {
            buffer.setInteger(UInt8(ascii: "0") + UInt8(digits % 10), at: position)
            digits /= 10
            position -= 1
        }
        buffer.writeBytes(messageSuffix)
        mask(&buffer, from: payloadStart)
        if control.phase == .measuring { loop.sent += 1 }
        loop.sentTotal += 1
        context.write(wrapOutboundOut(buffer), promise: nil)
        if flush { context.flush() } else { needsFlush = true }
    }

    func flushIfNeeded() {
        guard needsFlush, let context else { return }
        needsFlush = false
        context.flush()
    }

    /// Starts the WebSocket closing handshake; the server answers with its close frame.
    func sendClose() {
        guard stage == .ready || stage == .connecting || stage == .opening else { return }
        stage = .closing
        writeFrame(opcode: 0x8, payload: [0x03, 0xE8], flush: true)  // 1000, normal closure
    }

    private func closeReceived() {
        if stage != .closing {
            // The server initiates: answer, then end the connection.
            if stage == .ready { loop.problem("the server closed the WebSocket of client \(index)") }
            writeFrame(opcode: 0x8, payload: [0x03, 0xE8], flush: true)
            if stage != .ready { failHandshake(LoadClientError(description: "the server closed the WebSocket during the handshake (\(stageName))")) }
        }
        stage = .closed
        context?.close(promise: nil)
    }

    private func writeFrame(opcode: UInt8, payload: some Collection<UInt8>, flush: Bool) {
        guard let context else { return }
        var buffer = frameBuffer(opcode: opcode, length: payload.count, allocator: context.channel.allocator)
        let payloadStart = buffer.writerIndex
        buffer.writeBytes(payload)
        mask(&buffer, from: payloadStart)
        context.write(wrapOutboundOut(buffer), promise: nil)
        if flush {
            needsFlush = false
            context.flush()
        } else {
            needsFlush = true
        }
    }

    /// A buffer holding the header of a final, masked frame, ready for `length` payload bytes.
    private func frameBuffer(opcode: UInt8, length: Int, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: length + 14)
        buffer.writeInteger(0x80 | opcode)
        if length < 126 {
            buffer.writeInteger(UInt8(0x80 | length))
        } else if length <= 0xFFFF {
            buffer.writeInteger(UInt8(0x80 | 126))
            buffer.writeInteger(UInt16(length))
        } else {
            buffer.writeInteger(UInt8(0x80 | 127))
            buffer.writeInteger(UInt64(length))
        }
        buffer.writeInteger(UInt32(truncatingIfNeeded: loop.random.next()))
        return buffer
    }

    /// RFC 6455 §5.3: XOR the payload with the 4-byte key written just before it.
    private func mask(_ buffer: inout ByteBuffer, from payloadStart: Int) {
        let keyStart = payloadStart - 4 - buffer.readerIndex
        let start = payloadStart - buffer.readerIndex
        buffer.withUnsafeMutableReadableBytes { bytes in
            let key = (bytes[keyStart], bytes[keyStart + 1], bytes[keyStart + 2], bytes[keyStart + 3])
            var i = start
            var k = 0
            while i < bytes.count {
                switch k {
                case 0: bytes[i] ^= key.0
                case 1: bytes[i] ^= key.1
                case 2: bytes[i] ^= key.2
                default: bytes[i] ^= key.3
                }
                k = (k + 1) & 3
                i += 1
            }
        }
    }
}

/// Delivery latencies in nanoseconds: exact below 2,048 ns, then 1,024 buckets per power
/// of two (0.1 % resolution), so a run of any length takes the same 220 KB.
struct LatencyHistogram: Sendable {
    static let bucketCount = 2048 + 53 * 1024
    private(set) var counts = [UInt32](repeating: 0, count: bucketCount)
    private(set) var total = 0
    private(set) var maximum: UInt64 = 0

    static func index(of value: UInt64) -> Int {
        guard value >= 2048 else { return Int(value) }
        let shift = (63 - value.leadingZeroBitCount) - 10
        let top = Int(value >> UInt64(shift))
        return min(bucketCount - 1, 2048 + (shift - 1) * 1024 + (top - 1024))
    }

    /// The middle of bucket `index`.
    static func value(at index: Int) -> UInt64 {
        guard index >= 2048 else { return UInt64(index) }
        let k = index - 2048
        let shift = k / 1024 + 1
        let top = UInt64(k % 1024 + 1024)
        return (top << UInt64(shift)) + (UInt64(1) << UInt64(shift)) / 2
    }

    mutating func record(_ nanoseconds: UInt64) {
        counts[Self.index(of: nanoseconds)] &+= 1
        total += 1
        if nanoseconds > maximum { maximum = nanoseconds }
    }

    mutating func merge(_ other: LatencyHistogram) {
        for i in 0..<counts.count where other.counts[i] != 0 { counts[i] &+= other.counts[i] }
        total += other.total
        maximum = max(maximum, other.maximum)
    }

    /// The latency below which a fraction `q` of the samples lie, in nanoseconds.
    func percentile(_ q: Double) -> UInt64 {
        guard total > 0 else { return 0 }
        let rank = max(1, Int((q * Double(total)).rounded(.up)))
        var seen = 0
        for (i, count) in counts.enumerated() where count != 0 {
            seen += Int(count)
            if seen >= rank { return min(Self.value(at: i), maximum) }
        }
        return maximum
    }
}

enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let b0 = UInt32(bytes[i])
            let b1 = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0
            let b2 = i + 2 < bytes.count ? UInt32(bytes[i + 2]) : 0
            let n = b0 << 16 | b1 << 8 | b2
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(i + 1 < bytes.count ? alphabet[Int(n >> 6 & 63)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? alphabet[Int(n & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return out
    }
}
