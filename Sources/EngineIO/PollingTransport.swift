public import Logging
import NIOCore
import NIOSSL
import Synchronization
import EngineIOProtocol

/// Opens HTTP long-polling transports (engine.io-protocol v4, "HTTP long-polling"): what a
/// server configured for polling only, or reached through a proxy that refuses WebSocket,
/// still speaks.
public struct PollingTransportFactory: EngineIOTransportFactory {
    /// The same settings as a WebSocket's: the largest response taken, TLS, extra headers.
    public var options: WebSocketTransportFactory.Options
    public var logger: Logger

    public init(options: WebSocketTransportFactory.Options = .init(), logger: Logger = .disabled) {
        self.options = options
        self.logger = logger
    }

    public func connect(to endpoint: EngineIOEndpoint) async throws -> any EngineIOTransport {
        try await open(endpoint)
    }

    /// The transport itself, for the upgrade to WebSocket (which pauses it).
    func open(_ endpoint: EngineIOEndpoint) async throws -> PollingTransport {
        try await PollingTransport.connect(endpoint: endpoint, sslContext: try options.sslContext(for: endpoint), options: options, logger: logger)
    }
}

public enum PollingTransportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The server answered a poll or a post with something other than 200.
    case status(Int, method: String)
    /// The handshake's answer did not start with an open packet.
    case noOpenPacket

    public var description: String {
        switch self {
        case .status(let code, let method): return "the server answered an HTTP long-polling \(method) with status \(code)"
        case .noOpenPacket: return "the server's first HTTP long-polling answer was not an Engine.IO open packet"
        }
    }
}

/// One Engine.IO session over HTTP long-polling, as engine.io-client runs it: one GET at a
/// time waiting for the server's packets, and what is sent queued and posted in batches
/// (one POST at a time, each within the server's `maxPayload`).
///
/// Bounded against a hostile server: an answer is at most `maxIncomingMessageSize` bytes
/// and `maxPacketsPerAnswer` packets, and the next GET waits while `maxUntakenBatches`
/// answers wait for the consumer.
final class PollingTransport: EngineIOTransport {
    let inbound: AsyncThrowingStream<[EngineIOPacket], any Error>
    private let continuation: AsyncThrowingStream<[EngineIOPacket], any Error>.Continuation
    private let endpoint: EngineIOEndpoint
    /// Two connections, as a browser holds them: the long poll never delays a post.
    private let polls: HTTPExchange
    private let posts: HTTPExchange
    private let logger: Logger
    let handshake: EngineIOHandshake

    private struct State {
        var outbox: [EngineIOData] = []
        var posting = false
        /// No more GETs after the one in flight (the upgrade to WebSocket).
        var pausing = false
        var closing = false
        var finished = false
        var requests = 0
        /// Batches handed over and not yet taken, and the poll waiting for fewer.
        var untaken = 0
        var pollWaiting: CheckedContinuation<Void, Never>?
        /// Waiting for the posts to drain (a pause, a close).
        var drained: [CheckedContinuation<Void, Never>] = []
        var polling: Task<Void, Never>?
        var pollDone: [CheckedContinuation<Void, Never>] = []
        var pollStopped = false
        var closed: [CheckedContinuation<Void, Never>] = []
        var isClosed = false

        var isDrained: Bool { !posting }
    }
    private let state = Mutex(State())

    /// How long a close waits for the last posts (the close packet among them) before it
    /// drops the connections anyway: a server that stopped answering cannot hold it open.
    static let closeGrace: Duration = .seconds(2)

    private init(endpoint: EngineIOEndpoint, polls: HTTPExchange, posts: HTTPExchange, handshake: EngineIOHandshake, logger: Logger) {
        (inbound, continuation) = AsyncThrowingStream.makeStream(of: [EngineIOPacket].self)
        self.endpoint = endpoint
        self.polls = polls
        self.posts = posts
        self.handshake = handshake
        self.logger = logger
    }

    /// The handshake GET: its answer (the open packet, and what came with it) is the
    /// first batch of `inbound`; then the long polls begin.
    static func connect(
        endpoint: EngineIOEndpoint, sslContext: NIOSSLContext?, options: WebSocketTransportFactory.Options, logger: Logger
    ) async throws -> PollingTransport {
        let limit = options.maxIncomingMessageSize
        let polls = HTTPExchange(endpoint: endpoint, sslContext: sslContext, headers: options.headers, maxBody: limit)
        let posts = HTTPExchange(endpoint: endpoint, sslContext: sslContext, headers: options.headers, maxBody: 1 << 16)
        let first: [EngineIOPacket]
        do {
            let response = try await polls.send(.GET, target: endpoint.requestTarget(transport: "polling", cacheBuster: 0))
            guard response.status == .ok else { throw PollingTransportError.status(Int(response.status.code), method: "GET") }
            first = try decode(response.body)
        } catch {
            polls.close()
            throw error
        }
        guard case .open(let handshake)? = first.first else {
            polls.close()
            throw PollingTransportError.noOpenPacket
        }
        let transport = PollingTransport(endpoint: endpoint, polls: polls, posts: posts, handshake: handshake, logger: logger)
        transport.deliver(first)
        transport.startPolling()
        return transport
    }

    /// Answers handed over and not yet taken before the next GET waits: the next poll is on
    /// its way while the last answer is read, and at most this many are held.
    static let maxUntakenBatches = 2

    /// Most packets taken from one answer: what a server queued for a client that was away
    /// a while fits, and a body of `6␞6␞…` cannot become millions of packets.
    static let maxPacketsPerAnswer = 65_536

    private static func decode(_ body: ByteBuffer) throws(EngineIOParseError) -> [EngineIOPacket] {
        try body.withUnsafeReadableBytes { raw in
            Result { () throws(EngineIOParseError) in
                try EngineIOPayload.decode(utf8: raw.assumingMemoryBound(to: UInt8.self), maxPackets: maxPacketsPerAnswer)
            }
        }.get()
    }

    // MARK: Receiving

    private func deliver(_ packets: [EngineIOPacket]) {
        state.withLock { $0.untaken += 1 }
        continuation.yield(packets)
    }

    func consumedBatch() {
        let waiting = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.untaken -= 1
            guard state.untaken < Self.maxUntakenBatches else { return nil }
            defer { state.pollWaiting = nil }
            return state.pollWaiting
        }
        waiting?.resume()
    }

    private func startPolling() {
        let task = Task { [self] in
            await pollLoop()
            let waiters = state.withLock { state in
                state.pollStopped = true
                defer { state.pollDone = [] }
                return state.pollDone
            }
            waiters.forEach { $0.resume() }
        }
        state.withLock { $0.polling = task }
    }

    private func pollLoop() async {
        while true {
            // The next GET while fewer than `maxUntakenBatches` answers wait to be taken: a
            // server cannot make us hold more.
            await withCheckedContinuation { (waiting: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state -> Bool in
                    if state.untaken < Self.maxUntakenBatches || state.closing || state.pausing { return true }
                    state.pollWaiting = waiting
                    return false
                }
                if ready { waiting.resume() }
            }
            guard let number = state.withLock({ state -> Int? in
                guard !state.closing, !state.pausing else { return nil }
                state.requests += 1
                return state.requests
            }) else { return }
            let packets: [EngineIOPacket]
            do {
                let response = try await polls.send(.GET, target: endpoint.requestTarget(transport: "polling", sid: handshake.sid, cacheBuster: number))
                guard response.status == .ok else { throw PollingTransportError.status(Int(response.status.code), method: "GET") }
                // python-engineio answers the GET of a session it aborted with nothing: the end.
                guard response.body.readableBytes > 0 else {
                    continuation.finish()
                    return
                }
                packets = try Self.decode(response.body)
            } catch {
                if !state.withLock({ $0.closing }) { fail(error) }
                return
            }
            deliver(packets)
            // The server ended the session: no GET after its close packet.
            if packets.contains(.close) { return }
        }
    }

    // MARK: Sending

    func send(_ frame: EngineIOData) {
        let start = state.withLock { state -> Bool in
            guard !state.isClosed else { return false }
            state.outbox.append(frame)
            guard !state.posting else { return false }
            state.posting = true
            return true
        }
        if start { Task { await postLoop() } }
    }

    /// Posts what is queued, a payload of at most `maxPayload` bytes at a time, until the
    /// queue is empty; then wakes whoever waits for the posts to drain.
    private func postLoop() async {
        while true {
            let batch = state.withLock { state -> [EngineIOData] in
                let batch = Self.take(from: &state.outbox, within: handshake.maxPayload)
                if batch.isEmpty { state.posting = false }
                return batch
            }
            guard !batch.isEmpty else { break }
            do {
                let response = try await posts.send(.POST, target: endpoint.requestTarget(transport: "polling", sid: handshake.sid, cacheBuster: nextRequest()), body: Self.payload(batch))
                guard response.status == .ok else { throw PollingTransportError.status(Int(response.status.code), method: "POST") }
            } catch {
                state.withLock {
                    $0.outbox = []
                    $0.posting = false
                }
                if !state.withLock({ $0.closing }) { fail(error) }
                break
            }
        }
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.posting else { return [] }
            defer { state.drained = [] }
            return state.drained
        }
        waiters.forEach { $0.resume() }
    }

    private func nextRequest() -> Int {
        state.withLock { state in
            state.requests += 1
            return state.requests
        }
    }

    /// A message packet's bytes in a payload: `4` and the text, or `b` and the base64.
    func wireSize(of message: EngineIOData) -> Int { Self.payloadSize(of: EngineIOPacket.message(message).encoded()) }

    /// A frame's bytes in a payload (a binary frame is a binary message, as `b` and base64).
    static func payloadSize(of frame: EngineIOData) -> Int {
        switch frame {
        case .text(let text): return text.utf8.count
        case .binary(let bytes): return 1 + (bytes.count + 2) / 3 * 4
        }
    }

    /// The frames at the front of `outbox` whose payload fits `limit` bytes (at least one).
    static func take(from outbox: inout [EngineIOData], within limit: Int) -> [EngineIOData] {
        var size = 0
        var count = 0
        for frame in outbox {
            let length = payloadSize(of: frame)
            if count > 0, size + 1 + length > limit { break }
            size += (count > 0 ? 1 : 0) + length
            count += 1
        }
        defer { outbox.removeFirst(count) }
        return Array(outbox.prefix(count))
    }

    /// Encoded packets joined by the record separator; binary as `b` and base64.
    static func payload(_ frames: [EngineIOData]) -> String {
        frames.map { frame in
            switch frame {
            case .text(let text): return text
            case .binary(let bytes): return "b" + Data(bytes).base64EncodedString()
            }
        }.joined(separator: String(EngineIOPayload.separator))
    }

    // MARK: Ending

    /// Stops polling after the GET in flight (its batch is delivered) and waits for the POST
    /// in flight, then ends `inbound` cleanly: the session goes on over WebSocket. Returns
    /// what was queued and not yet posted, to go over the WebSocket first (as engine.io-client
    /// does: a long queue posted a payload at a time could outlast the server's upgrade timeout).
    func pause() async -> [EngineIOData] {
        // A poll waiting for the consumer stops now: there is no GET in flight to wait for.
        let (waiting, unposted) = state.withLock { state -> (CheckedContinuation<Void, Never>?, [EngineIOData]) in
            state.pausing = true
            defer {
                state.pollWaiting = nil
                state.outbox = []
            }
            return (state.pollWaiting, state.outbox)
        }
        waiting?.resume()
        await waitForPollToStop()
        await waitForPostsToDrain()
        polls.close()
        posts.close()
        continuation.finish()
        return unposted
    }

    private func waitForPollToStop() async {
        await wait(until: \.pollStopped, in: \.pollDone)
    }

    private func waitForPostsToDrain() async {
        await wait(until: \.isDrained, in: \.drained)
    }

    /// Returns once `condition` holds: at once, or when whoever makes it true resumes the
    /// waiters in `waiters`.
    private func wait(until condition: KeyPath<State, Bool>, in waiters: WritableKeyPath<State, [CheckedContinuation<Void, Never>]>) async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let already = state.withLock { state -> Bool in
                if state[keyPath: condition] { return true }
                state[keyPath: waiters].append(done)
                return false
            }
            if already { done.resume() }
        }
    }

    /// Stops polling at once; what was queued (a close packet, say) is posted first, for at
    /// most `closeGrace`.
    func close() {
        let (polling, waiting) = state.withLock { state -> (Task<Void, Never>?, CheckedContinuation<Void, Never>?) in
            guard !state.closing else { return (nil, nil) }
            state.closing = true
            defer { state.pollWaiting = nil }
            return (state.polling, state.pollWaiting)
        }
        waiting?.resume()
        polling?.cancel()
        polls.close()
        Task { [self] in
            let grace = Task {
                try? await Task.sleep(for: Self.closeGrace)
                posts.close()
            }
            await waitForPostsToDrain()
            grace.cancel()
            posts.close()
            finishClosing()
        }
    }

    private func fail(_ error: any Error) {
        logger.debug("HTTP long-polling failed: \(error)")
        continuation.finish(throwing: error)
        close()
    }

    private func finishClosing() {
        continuation.finish()
        let waiters = state.withLock { state in
            state.isClosed = true
            defer { state.closed = [] }
            return state.closed
        }
        waiters.forEach { $0.resume() }
    }

    func waitUntilClosed() async {
        await wait(until: \.isClosed, in: \.closed)
    }
}

import Foundation
