public import EngineIOProtocol
import Synchronization

/// Receives what one Engine.IO session delivers, in order, from whichever transport carries it.
public protocol EngineIOSocketDelegate: AnyObject, Sendable {
    func engineIOSocket(_ socket: EngineIOSocket, didReceive message: EngineIOData)
    /// Called once, after the last message.
    func engineIOSocket(_ socket: EngineIOSocket, didCloseWith reason: EngineIOCloseReason)
}

/// A packet encoded once, ready to be queued on any number of sessions (a broadcast encodes
/// its Socket.IO packet once, not once per recipient).
public struct EngineIOOutgoing: Sendable {
    let packet: EngineIOPacket
    /// The WebSocket frame.
    let frame: EngineIOData

    public init(_ packet: EngineIOPacket) {
        self.packet = packet
        self.frame = packet.encoded()
    }

    public static func message(_ data: EngineIOData) -> EngineIOOutgoing { EngineIOOutgoing(.message(data)) }

    /// This packet's part of a long-polling payload.
    var pollingText: String {
        switch frame {
        case .text(let text): return text
        case .binary: return EngineIOPayload.encode([packet])
        }
    }
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
    let options: EngineIOServerOptions
    private let state: Mutex<State>
    /// Removes this session from the server's table; called once when it closes.
    private let onClose: @Sendable (EngineIOSocket) -> Void

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
        var outbox: [EngineIOOutgoing] = []
        // Long-polling
        var poll: PollWaiter?
        var nextPollGeneration = 0
        /// A GET whose client went away before it began to wait (see `pollAborted`).
        var abortedPoll: Int?
        var postInFlight = false
        // WebSocket: the writer loop waiting for packets.
        var writer: CheckedContinuation<[EngineIOOutgoing]?, Never>?
        var upgrading = false
        /// The upgrade's probe was answered: a GET now ends at once with a `noop`.
        var probed = false
        // Heartbeat
        var awaitingPong = false
        var timer: Task<Void, Never>?
    }

    init(
        id: String,
        request: EngineIOHandshakeRequest,
        options: EngineIOServerOptions,
        onClose: @escaping @Sendable (EngineIOSocket) -> Void
    ) {
        self.id = id
        self.request = request
        self.options = options
        self.onClose = onClose
        self.state = Mutex(State(transport: request.transport))
    }

    /// The transport carrying the session now.
    public var transport: EngineIOServerOptions.Transport { state.withLock { $0.transport } }

    public var isClosed: Bool { state.withLock { $0.closed } }

    func setDelegate(_ delegate: any EngineIOSocketDelegate) {
        state.withLock { $0.delegate = delegate }
    }

    // MARK: Sending

    /// Queues packets for the client; they leave on the current transport in this order.
    /// Ignored once the session is closed.
    public func send(_ packets: some Sequence<EngineIOOutgoing>) {
        let wake: Wake = state.withLock { state in
            guard !state.closed else { return .none }
            state.outbox.append(contentsOf: packets)
            return Self.takeWaiter(&state)
        }
        wake.fire()
    }

    public func send(_ packet: EngineIOOutgoing) {
        send(CollectionOfOne(packet))
    }

    /// A waiting transport to hand the outbox to, taken out of the state under the lock
    /// and resumed after it.
    enum Wake {
        case none
        case poll(CheckedContinuation<PollResult, Never>, String)
        case writer(CheckedContinuation<[EngineIOOutgoing]?, Never>, [EngineIOOutgoing]?)

        func fire() {
            switch self {
            case .none: break
            case .poll(let c, let payload): c.resume(returning: .payload(payload))
            case .writer(let c, let packets): c.resume(returning: packets)
            }
        }
    }

    private static func takeWaiter(_ state: inout State) -> Wake {
        switch state.transport {
        case .polling:
            guard !state.upgrading, let poll = state.poll, !state.outbox.isEmpty else { return .none }
            state.poll = nil
            let payload = encodePayload(state.outbox)
            state.outbox.removeAll(keepingCapacity: true)
            return .poll(poll.continuation, payload)
        case .websocket:
            guard let writer = state.writer, !state.outbox.isEmpty else { return .none }
            state.writer = nil
            let packets = state.outbox
            state.outbox = []
            return .writer(writer, packets)
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

    /// Arms the next ping, pingInterval from now.
    func scheduleHeartbeat() {
        let interval = options.pingInterval
        let task = Task { [weak self] in
            do { try await Task.sleep(for: interval) } catch { return }
            self?.sendPing()
        }
        let stale = state.withLock { state -> Bool in
            guard !state.closed else { return true }
            state.timer = task
            return false
        }
        if stale { task.cancel() }
    }

    private func sendPing() {
        let timeout = options.pingTimeout
        let task = Task { [weak self] in
            do { try await Task.sleep(for: timeout) } catch { return }
            self?.pingTimedOut()
        }
        let proceed = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.awaitingPong = true
            state.timer = task
            return true
        }
        guard proceed else {
            task.cancel()
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
    /// asked to close, a `close` when it broke the rules).
    func close(reason: EngineIOCloseReason, pollAnswer: String?) {
        let (closing, delegate, wake, timer): (Bool, (any EngineIOSocketDelegate)?, Wake, Task<Void, Never>?) = state.withLock { state in
            guard !state.closed else { return (false, nil, .none, nil) }
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
                state.outbox = []
                wake = .poll(poll.continuation, answer)
            } else if let writer = state.writer {
                state.writer = nil
                let rest = state.outbox
                state.outbox = []
                wake = .writer(writer, rest.isEmpty ? nil : rest)
            }
            let delegate = state.delegate
            state.delegate = nil
            return (true, delegate, wake, timer)
        }
        guard closing else { return }
        timer?.cancel()
        wake.fire()
        onClose(self)
        delegate?.engineIOSocket(self, didCloseWith: reason)
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
                    let payload = Self.encodePayload(state.outbox)
                    state.outbox.removeAll(keepingCapacity: true)
                    return .answer(.payload(payload))
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
                close(reason: .transportError, pollAnswer: nil)
            case .aborted:
                continuation.resume(returning: .badRequest("aborted"))
                close(reason: .transportError)
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
        close(reason: .transportError)
    }

    /// Marks a POST as in flight; false when one already is (the session is then closed).
    func beginPost() -> Bool {
        let ok = state.withLock { state -> Bool in
            guard !state.postInFlight else { return false }
            state.postInFlight = true
            return true
        }
        if !ok { close(reason: .transportError, pollAnswer: "1") }
        return ok
    }

    func endPost() {
        state.withLock { $0.postInFlight = false }
    }

    // MARK: Upgrade

    /// A WebSocket asks to take over this polling session; false if it may not.
    func beginUpgrade() -> Bool {
        state.withLock { state in
            guard !state.closed, state.transport == .polling, !state.upgrading else { return false }
            state.upgrading = true
            return true
        }
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
    func completeUpgrade() -> Bool {
        let (ok, waiter): (Bool, CheckedContinuation<PollResult, Never>?) = state.withLock { state in
            guard !state.closed, state.upgrading else { return (false, nil) }
            state.upgrading = false
            state.probed = false
            state.transport = .websocket
            let poll = state.poll
            state.poll = nil
            return (true, poll?.continuation)
        }
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

    // MARK: WebSocket writer

    /// The next packets for the WebSocket, waiting until there are some; nil once closed.
    func nextOutgoing() async -> [EngineIOOutgoing]? {
        await withCheckedContinuation { (continuation: CheckedContinuation<[EngineIOOutgoing]?, Never>) in
            enum Outcome {
                case now([EngineIOOutgoing]?)
                case wait
            }
            let outcome: Outcome = state.withLock { state in
                if !state.outbox.isEmpty {
                    let packets = state.outbox
                    state.outbox = []
                    return .now(packets)
                }
                if state.closed { return .now(nil) }
                state.writer = continuation
                return .wait
            }
            if case .now(let packets) = outcome { continuation.resume(returning: packets) }
        }
    }
}
