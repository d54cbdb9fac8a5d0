public import EngineIOProtocol
public import NIOCore
import Synchronization

/// Receives what one Engine.IO session delivers, in order, from whichever transport carries it.
public protocol EngineIOSocketDelegate: AnyObject, Sendable {
    func engineIOSocket(_ socket: EngineIOSocket, didReceive message: EngineIOData)
    /// Called once, after the last message.
    func engineIOSocket(_ socket: EngineIOSocket, didCloseWith reason: EngineIOCloseReason)
}

/// A packet encoded once, ready to be queued on any number of sessions (a broadcast encodes
/// its Socket.IO packet once, not once per recipient). One reference: queuing it for ten
/// thousand sockets costs ten thousand retains of one object, not three of each. It holds
/// the packet once, as the WebSocket frame every recipient's connection writes; a polling
/// session reads its text from the frame's payload.
public struct EngineIOOutgoing: Sendable {
    final class Storage: Sendable {
        /// The whole WebSocket frame as a server sends it (header, unmasked payload).
        let webSocketFrame: ByteBuffer
        /// Whether it is a text frame (else binary).
        let isText: Bool

        init(_ packet: EngineIOPacket) {
            switch packet.encoded() {
            case .text(let text):
                webSocketFrame = Self.encodeFrame(opcode: 0x1, text.utf8)
                isText = true
            case .binary(let bytes):
                webSocketFrame = Self.encodeFrame(opcode: 0x2, bytes)
                isText = false
            }
        }

        /// RFC 6455 §5.2: FIN and the opcode, the length in 7, 16 or 64 bits, no mask.
        static func encodeFrame(opcode: UInt8, _ payload: some Collection<UInt8>) -> ByteBuffer {
            let count = payload.count
            var buffer = ByteBuffer()
            buffer.reserveCapacity(count + 10)
            buffer.writeInteger(0x80 | opcode, as: UInt8.self)
            if count < 126 {
                buffer.writeInteger(UInt8(count))
            } else if count <= 0xFFFF {
                buffer.writeInteger(UInt8(126))
                buffer.writeInteger(UInt16(count))
            } else {
                buffer.writeInteger(UInt8(127))
                buffer.writeInteger(UInt64(count))
            }
            buffer.writeBytes(payload)
            return buffer
        }
    }

    let storage: Storage

    public init(_ packet: EngineIOPacket) {
        storage = Storage(packet)
    }

    public static func message(_ data: EngineIOData) -> EngineIOOutgoing { EngineIOOutgoing(.message(data)) }

    /// The encoded WebSocket frame, made once: every recipient's connection writes these bytes.
    public var webSocketFrame: ByteBuffer { storage.webSocketFrame }

    /// The frame's payload alone (the frame's bytes after its header), sharing its storage.
    public var webSocketPayload: ByteBuffer {
        let frame = storage.webSocketFrame
        let lengthByte = frame.getInteger(at: frame.readerIndex + 1, as: UInt8.self) ?? 0
        let header = lengthByte < 126 ? 2 : lengthByte == 126 ? 4 : 10
        return frame.getSlice(at: frame.readerIndex + header, length: frame.readableBytes - header) ?? ByteBuffer()
    }

    /// Whether the WebSocket frame is a text frame (else binary).
    public var isText: Bool { storage.isText }

    /// What a packet waiting in a polling outbox holds, counted against the backlog limit:
    /// its frame, plus what holds it there (its object and the buffer's own: about 160
    /// bytes). Counting the payload alone let a session that never polls hold several times
    /// the limit in small packets.
    var queuedBytes: Int { storage.webSocketFrame.readableBytes + 160 }

    /// This packet's part of a long-polling payload: the text, or a binary message as
    /// `b<base64>`.
    var pollingText: String {
        let payload = webSocketPayload
        if isText { return String(buffer: payload) }
        return EngineIOPayload.encode([.message(.binary(Array(payload.readableBytesView)))])
    }
}

/// Where a WebSocket session's packets go: onto the connection, in the order given.
public protocol EngineIOWebSocketSink: AnyObject, Sendable {
    /// The event loop the connection lives on.
    var eventLoop: any EventLoop { get }
    /// Queues frames on the connection, after those sent before. Never blocks, and calls
    /// nothing back: it is called under the session's lock, which is what keeps every
    /// sender's packets in one order. Returns true when the frames were written at once (a
    /// call on the connection's own loop): the caller then calls `flushWritten()`, on the
    /// loop, once out of its lock.
    func send(_ packets: [EngineIOOutgoing]) -> Bool
    /// For a broadcast, which makes one hop per event loop rather than one per recipient:
    /// queues frames in order as `send` would (under the session's lock) without hopping,
    /// and returns true when the caller's hop must then `drain()` this connection (false
    /// when a drain is already on its way, which will take these too).
    func enqueue(_ packets: [EngineIOOutgoing]) -> Bool
    /// Writes what was queued, and flushes; only on `eventLoop`.
    func drain()
    /// Flushes what `send` wrote at once (or schedules the flush). May call back (a
    /// connection that fails closes), so never under a lock.
    func flushWritten()
    /// Ends the connection once what was sent has gone (a close frame).
    func close()
}

/// One Engine.IO session: an id, a queue of packets for the client, the heartbeat, and
/// whichever transport (long-polling, then perhaps WebSocket) carries it now.
///
/// Thread-safe; every method may be called from any task. Nothing is called back while
/// the internal lock is held.
public final class EngineIOSocket: Sendable {
    /// The session id (`sid`): unguessable, as it is the only credential a polling request has.
    public let id: String
    /// The opening request.
    public let request: EngineIOHandshakeRequest
    /// What the per-address limits count this session under.
    let addressKey: String
    public let options: EngineIOServerOptions
    /// The session's timers run on this loop (the loop of the connection that opened it).
    public let eventLoop: any EventLoop
    public let clock: any ServerClock
    private let state: Mutex<State>
    /// The server's session table, which this session leaves when it closes.
    private let registry: SessionRegistry

    enum PollResult: Sendable {
        case payload(String)
        case badRequest(String)
    }

    struct PollWaiter {
        var generation: Int
        var continuation: CheckedContinuation<PollResult, Never>
    }

    struct State {
        var delegate: (any EngineIOSocketDelegate)?
        var transport: EngineIOServerOptions.Transport
        var closed = false
        /// Joined no namespace (yet, or any more): counted against the half-open limits.
        var halfOpen: Bool
        /// Packets for a polling client (or for the WebSocket an upgrade will bring), and the
        /// bytes they hold, against `Limits.maxBacklogBytes`: changed only by `queue` and
        /// `takeOutbox`, so the count is always the outbox's.
        private(set) var outbox: [EngineIOOutgoing] = []
        private(set) var outboxBytes = 0
        // Long-polling
        var poll: PollWaiter?
        var nextPollGeneration = 0
        /// A GET whose client went away before it began to wait (see `pollAborted`).
        var abortedPoll: Int?
        var postInFlight = false
        // WebSocket: the connection, once the session is on it.
        var sink: (any EngineIOWebSocketSink)?
        var upgrading = false
        /// The upgrade's probe was answered: a GET now ends at once with a `noop`.
        var probed = false
        // Heartbeat
        var awaitingPong = false
        var timer: ServerTimer?

        /// Adds packets to the outbox; false once it holds more than `limit` bytes.
        mutating func queue(_ packets: [EngineIOOutgoing], limit: Int) -> Bool {
            outbox.append(contentsOf: packets)
            for packet in packets { outboxBytes += packet.queuedBytes }
            return outboxBytes <= limit
        }

        /// Empties the outbox: what it held.
        mutating func takeOutbox() -> [EngineIOOutgoing] {
            let packets = outbox
            outbox = []
            outboxBytes = 0
            return packets
        }
    }

    init(
        id: String,
        request: EngineIOHandshakeRequest,
        options: EngineIOServerOptions,
        clock: any ServerClock,
        loop: any EventLoop,
        registry: SessionRegistry
    ) {
        self.id = id
        self.request = request
        self.addressKey = request.addressKey
        self.options = options
        self.clock = clock
        self.eventLoop = loop
        self.registry = registry
        self.state = Mutex(State(transport: request.transport, halfOpen: options.sessionsStartHalfOpen))
    }

    /// The transport carrying the session now.
    public var transport: EngineIOServerOptions.Transport { state.withLock { $0.transport } }

    public var isClosed: Bool { state.withLock { $0.closed } }

    /// Whether the session has joined no namespace (see `setHalfOpen`).
    public var isHalfOpen: Bool { state.withLock { $0.halfOpen } }

    /// The largest body or message the session may send now: a half-open session only
    /// sends its CONNECT (`Limits.maxHalfOpenPayloadBytes`).
    var maxPayloadBytes: Int {
        isHalfOpen ? min(options.limits.maxHalfOpenPayloadBytes, options.maxHttpBufferSize) : options.maxHttpBufferSize
    }

    /// A long-polling GET is waiting for packets.
    var isPolling: Bool { state.withLock { $0.poll != nil } }

    /// A POST is being read.
    var isPosting: Bool { state.withLock { $0.postInFlight } }

    /// A ping went out and its pong has not come.
    var awaitsPong: Bool { state.withLock { $0.awaitingPong } }

    func setDelegate(_ delegate: any EngineIOSocketDelegate) {
        state.withLock { $0.delegate = delegate }
    }

    /// Whether the session has joined no namespace: the application says so when its client
    /// joins its first one (false) and when it leaves its last one (true). Half-open sessions
    /// are counted against `Limits.maxHalfOpenSessions`.
    public func setHalfOpen(_ halfOpen: Bool) {
        let changed = state.withLock { state -> Bool in
            guard !state.closed, state.halfOpen != halfOpen else { return false }
            state.halfOpen = halfOpen
            return true
        }
        if changed { registry.setHalfOpen(self, halfOpen) }
    }

    // MARK: Sending

    /// Queues packets for the client; they leave on the current transport in this order.
    /// Ignored once the session is closed.
    public func send(_ packets: [EngineIOOutgoing]) {
        let wake: Wake = state.withLock { state in
            guard !state.closed else { return .none }
            if let sink = state.sink, state.transport == .websocket {
                return sink.send(packets) ? .flush(sink) : .none
            }
            guard state.queue(packets, limit: options.limits.maxBacklogBytes) else { return .overflow }
            return Self.takeWaiter(&state)
        }
        if case .overflow = wake {
            // A client that does not poll is not buffered for without end (as a WebSocket
            // client that does not read is not).
            close(reason: .transportError("more than \(options.limits.maxBacklogBytes) bytes waiting for a client that does not poll"))
            return
        }
        wake.fire()
    }

    public func send(_ packet: EngineIOOutgoing) {
        send([packet])
    }

    /// The same packets to many sessions (a broadcast). Sessions on a WebSocket of another
    /// event loop are written with one hop per loop rather than one per session; those of
    /// this loop at once; the rest queue as usual.
    public static func send(_ packets: [EngineIOOutgoing], to sockets: [EngineIOSocket]) {
        var byLoop: [ObjectIdentifier: (loop: any EventLoop, sinks: [any EngineIOWebSocketSink])] = [:]
        for socket in sockets {
            enum Route {
                /// Not on a WebSocket: the session's own queue.
                case queue
                /// Queued behind a hop already on its way.
                case sent
                /// Written at once: to be flushed.
                case written(any EngineIOWebSocketSink)
                case hop(any EngineIOWebSocketSink)
            }
            let route: Route = socket.state.withLock { state in
                guard !state.closed, state.transport == .websocket, let sink = state.sink else { return .queue }
                if sink.eventLoop.inEventLoop {
                    return sink.send(packets) ? .written(sink) : .sent
                }
                return sink.enqueue(packets) ? .hop(sink) : .sent
            }
            switch route {
            case .queue: socket.send(packets)
            case .sent: break
            case .written(let sink): sink.flushWritten()
            case .hop(let sink): byLoop[ObjectIdentifier(sink.eventLoop), default: (sink.eventLoop, [])].sinks.append(sink)
            }
        }
        for (_, group) in byLoop {
            let sinks = group.sinks
            group.loop.execute {
                for sink in sinks { sink.drain() }
            }
        }
    }

    /// A waiting transport to hand the outbox to, taken out of the state under the lock
    /// and resumed after it.
    enum Wake {
        case none
        case poll(CheckedContinuation<PollResult, Never>, String)
        /// Frames written at once onto a WebSocket, to flush.
        case flush(any EngineIOWebSocketSink)
        /// The outbox is over its limit: the session is to close.
        case overflow

        var isPoll: Bool {
            if case .poll = self { return true }
            return false
        }

        func fire() {
            switch self {
            case .none, .overflow: break
            case .poll(let c, let payload): c.resume(returning: .payload(payload))
            case .flush(let sink): sink.flushWritten()
            }
        }
    }

    private static func takeWaiter(_ state: inout State) -> Wake {
        switch state.transport {
        case .polling:
            guard !state.upgrading, let poll = state.poll, !state.outbox.isEmpty else { return .none }
            state.poll = nil
            return .poll(poll.continuation, encodePayload(state.takeOutbox()))
        case .websocket:
            return .none
        }
    }

    static func encodePayload(_ packets: [EngineIOOutgoing]) -> String {
        if packets.count == 1 { return packets[0].pollingText }
        var body = ""
        for (i, packet) in packets.enumerated() {
            if i > 0 { body.unicodeScalars.append("\u{1e}") }
            body += packet.pollingText
        }
        return body
    }

    // MARK: Receiving

    /// One packet from the client, on any transport.
    func received(_ packet: EngineIOPacket) {
        switch packet {
        case .message(let data):
            guard let delegate = state.withLock({ $0.closed ? nil : $0.delegate }) else { return }
            delegate.engineIOSocket(self, didReceive: data)
        case .pong:
            let restart = state.withLock { state -> Bool in
                guard state.awaitingPong, !state.closed else { return false }
                state.awaitingPong = false
                state.timer?.cancel()
                state.timer = nil
                return true
            }
            if restart { scheduleHeartbeat() }
        case .close:
            close(reason: .transportClose)
        case .ping, .upgrade, .noop, .open:
            // v4 clients never ping (the server does); the rest mean nothing from a client here.
            break
        }
    }

    // MARK: Heartbeat

    /// Arms the next ping, pingInterval from now. The timers hold the socket strongly (a weak
    /// reference would make every retain of it slow); closing the session cancels them.
    func scheduleHeartbeat() {
        let timer = clock.schedule(after: options.pingInterval, on: eventLoop) { self.sendPing() }
        let stale = state.withLock { state -> Bool in
            guard !state.closed else { return true }
            state.timer = timer
            return false
        }
        if stale { timer.cancel() }
    }

    private func sendPing() {
        let timer = clock.schedule(after: options.pingTimeout, on: eventLoop) { self.pingTimedOut() }
        let proceed = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.awaitingPong = true
            state.timer = timer
            return true
        }
        guard proceed else {
            timer.cancel()
            return
        }
        send(EngineIOOutgoing(.ping()))
    }

    private func pingTimedOut() {
        guard state.withLock({ $0.awaitingPong && !$0.closed }) else { return }
        close(reason: .pingTimeout)
    }

    // MARK: Closing

    /// Ends the session: packets still queued go out first on a WebSocket (the close frame
    /// follows them); a waiting poll gets them and a `close` packet.
    public func close(reason: EngineIOCloseReason = .forcedClose) {
        close(reason: reason, pollAnswer: nil)
    }

    /// `pollAnswer` replaces what a waiting GET receives (a `noop` when the client itself
    /// asked to close, a `close` when it broke the rules). Returns whether a GET was waiting.
    @discardableResult
    func close(reason: EngineIOCloseReason, pollAnswer: String?) -> Bool {
        let (closing, delegate, wake, timer, sink): (Bool, (any EngineIOSocketDelegate)?, Wake, ServerTimer?, (any EngineIOWebSocketSink)?) = state.withLock { state in
            guard !state.closed else { return (false, nil, Wake.none, nil, nil) }
            state.closed = true
            let timer = state.timer
            state.timer = nil
            var wake = Wake.none
            if let poll = state.poll {
                state.poll = nil
                let answer: String
                if let pollAnswer {
                    answer = pollAnswer
                } else {
                    answer = Self.encodePayload(state.outbox + [EngineIOOutgoing(.close)])
                }
                wake = .poll(poll.continuation, answer)
            }
            _ = state.takeOutbox()
            let sink = state.sink
            state.sink = nil
            let delegate = state.delegate
            state.delegate = nil
            return (true, delegate, wake, timer, sink)
        }
        guard closing else { return false }
        timer?.cancel()
        let pollWaited = wake.isPoll
        wake.fire()
        sink?.close()
        registry.remove(self)
        delegate?.engineIOSocket(self, didCloseWith: reason)
        return pollWaited
    }

    // MARK: Long-polling

    /// Starts a GET: the number that identifies it to `pollAborted`.
    func beginPoll() -> Int {
        state.withLock { state in
            state.nextPollGeneration += 1
            return state.nextPollGeneration
        }
    }

    /// A GET: the queued packets, or a wait until there are some.
    func poll(generation: Int) async -> PollResult {
        enum Outcome {
            case answer(PollResult)
            case duplicate(CheckedContinuation<PollResult, Never>)
            case aborted
            case wait
        }
        return await withCheckedContinuation { (continuation: CheckedContinuation<PollResult, Never>) in
            let outcome: Outcome = state.withLock { state in
                if state.closed { return .answer(.badRequest("Session ID unknown")) }
                if state.abortedPoll == generation {
                    state.abortedPoll = nil
                    return .aborted
                }
                if state.transport != .polling {
                    return .answer(.badRequest("Bad request: the session is on another transport"))
                }
                if let other = state.poll {
                    state.poll = nil
                    return .duplicate(other.continuation)
                }
                // Mid-upgrade, after the probe: the client is to stop polling. engine.io
                // answers its GET with a `noop` (within 100 ms) so that it may send `5`.
                if state.upgrading && state.probed { return .answer(.payload("6")) }
                if !state.outbox.isEmpty && !state.upgrading {
                    return .answer(.payload(Self.encodePayload(state.takeOutbox())))
                }
                state.poll = PollWaiter(generation: generation, continuation: continuation)
                return .wait
            }
            switch outcome {
            case .answer(let result):
                continuation.resume(returning: result)
            case .duplicate(let first):
                // At most one GET at a time: the first gets a close packet, the session ends.
                first.resume(returning: .payload("1"))
                continuation.resume(returning: .badRequest("Bad request: overlapping poll requests"))
                close(reason: .transportError("overlapping poll requests"), pollAnswer: nil)
            case .aborted:
                continuation.resume(returning: .badRequest("aborted"))
                close(reason: .transportError("the poll request was aborted"))
            case .wait:
                break
            }
        }
    }

    /// The client went away while its GET was waiting: the session is over. When that GET
    /// is the latest and not waiting yet, it is remembered, and ends the session when it
    /// would begin to wait (for a GET already answered, that never happens).
    func pollAborted(generation: Int) {
        let waiter: CheckedContinuation<PollResult, Never>? = state.withLock { state in
            guard let poll = state.poll, poll.generation == generation else {
                if state.poll == nil && generation == state.nextPollGeneration { state.abortedPoll = generation }
                return nil
            }
            state.poll = nil
            return poll.continuation
        }
        guard let waiter else { return }
        waiter.resume(returning: .badRequest("aborted"))
        close(reason: .transportError("the poll request was aborted"))
    }

    /// Marks a POST as in flight; false when one already is (the session is then closed).
    func beginPost() -> Bool {
        let ok = state.withLock { state -> Bool in
            guard !state.postInFlight else { return false }
            state.postInFlight = true
            return true
        }
        if !ok { close(reason: .transportError("overlapping POST requests"), pollAnswer: "1") }
        return ok
    }

    func endPost() {
        state.withLock { $0.postInFlight = false }
    }

    // MARK: Upgrade

    /// A WebSocket asks to take over this polling session; false if it may not.
    /// Starts an upgrade, or says why this session cannot take one.
    func beginUpgrade() -> UpgradeRefusal? {
        state.withLock { state in
            if state.closed { return .closed }
            if state.transport == .websocket { return .onWebSocket }
            if state.upgrading { return .upgrading }
            state.upgrading = true
            return nil
        }
    }

    enum UpgradeRefusal {
        /// The session has ended (and is about to be forgotten).
        case closed
        /// It is on a WebSocket already: upgraded, or opened there.
        case onWebSocket
        /// Another WebSocket is probing or completing an upgrade of it.
        case upgrading
    }

    /// The probe succeeded: a waiting GET ends with a `noop` so the client can pause polling.
    func probed() {
        let waiter: CheckedContinuation<PollResult, Never>? = state.withLock { state in
            state.probed = true
            let poll = state.poll
            state.poll = nil
            return poll?.continuation
        }
        waiter?.resume(returning: .payload("6"))
    }

    /// The client sent `5`: from now on everything goes over the WebSocket.
    func completeUpgrade(to sink: any EngineIOWebSocketSink) -> Bool {
        let (ok, waiter, written): (Bool, CheckedContinuation<PollResult, Never>?, Bool) = state.withLock { state in
            guard !state.closed, state.upgrading else { return (false, nil, false) }
            state.upgrading = false
            let written = Self.attach(sink, &state)
            state.probed = false
            state.transport = .websocket
            let poll = state.poll
            state.poll = nil
            return (true, poll?.continuation, written)
        }
        if written { sink.flushWritten() }
        waiter?.resume(returning: .payload("6"))
        return ok
    }

    /// The upgrade failed or timed out: the session stays on polling.
    func abortUpgrade() {
        let wake: Wake = state.withLock { state in
            guard state.upgrading else { return .none }
            state.upgrading = false
            state.probed = false
            return Self.takeWaiter(&state)
        }
        wake.fire()
    }

    // MARK: WebSocket

    /// Puts a session that opened on a WebSocket onto its connection.
    func attach(_ sink: any EngineIOWebSocketSink) {
        let written = state.withLock { state in
            guard !state.closed else { return false }
            return Self.attach(sink, &state)
        }
        if written { sink.flushWritten() }
    }

    /// What waited in the queue goes first, under the lock, so no sender overtakes it.
    /// Returns whether frames were written at once (see `EngineIOWebSocketSink.send`).
    private static func attach(_ sink: any EngineIOWebSocketSink, _ state: inout State) -> Bool {
        state.sink = sink
        let waiting = state.takeOutbox()
        guard !waiting.isEmpty else { return false }
        return sink.send(waiting)
    }
}
