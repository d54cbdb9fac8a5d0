public import Logging
import DequeModule
import Foundation
import Synchronization

/// Which transports to open, in order, and whether HTTP long-polling moves to WebSocket:
/// socket.io-client's `transports`, `tryAllTransports` and `upgrade` in one value.
///
/// `.auto` (the default) tries WebSocket first, as Parley always did, so a normal server
/// costs nothing more; when that fails (a server configured for polling only, a proxy that
/// refuses the upgrade) it opens HTTP long-polling, and moves to WebSocket when the server
/// offers it and the probe gets through.
public struct EngineIOTransports: EngineIOTransportFactory {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case websocket, polling
    }

    /// `--transport`: the choices a person makes.
    public enum Mode: String, Sendable, Hashable, CaseIterable {
        /// WebSocket, else polling with the upgrade.
        case auto
        /// WebSocket only.
        case websocket
        /// HTTP long-polling only, never upgraded.
        case polling
    }

    /// Tried in this order; the first that opens is used, for this attempt.
    public var order: [Kind]
    /// Whether a polling session moves to WebSocket when the handshake offers it.
    public var upgrade: Bool
    public var webSocket: any EngineIOTransportFactory
    public var polling: PollingTransportFactory
    /// How long the upgrade waits for the WebSocket and the server's answer to its probe
    /// before it keeps polling.
    public var probeTimeout: Duration
    /// How long a WebSocket may take to open when another transport follows it in `order`: a
    /// proxy that takes the upgrade request and never answers must not use up the attempt.
    public var fallbackAfter: Duration
    public var logger: Logger

    public init(
        order: [Kind],
        upgrade: Bool,
        webSocket: any EngineIOTransportFactory,
        polling: PollingTransportFactory,
        probeTimeout: Duration = .seconds(10),
        fallbackAfter: Duration = .seconds(8),
        logger: Logger = .disabled
    ) {
        self.order = order.isEmpty ? [.websocket] : order
        self.upgrade = upgrade
        self.webSocket = webSocket
        self.polling = polling
        self.probeTimeout = probeTimeout
        self.fallbackAfter = fallbackAfter
        self.logger = logger
    }

    /// A mode with Parley's transports (NIO's WebSocket, HTTP long-polling) sharing `options`.
    public init(_ mode: Mode = .auto, options: WebSocketTransportFactory.Options = .init(), logger: Logger = .disabled) {
        let webSocket = NIOWebSocketTransportFactory(options: options, logger: logger)
        let polling = PollingTransportFactory(options: options, logger: logger)
        switch mode {
        case .auto: self.init(order: [.websocket, .polling], upgrade: true, webSocket: webSocket, polling: polling, logger: logger)
        case .websocket: self.init(order: [.websocket], upgrade: false, webSocket: webSocket, polling: polling, logger: logger)
        case .polling: self.init(order: [.polling], upgrade: false, webSocket: webSocket, polling: polling, logger: logger)
        }
    }

    public func connect(to endpoint: EngineIOEndpoint) async throws -> any EngineIOTransport {
        var failure: (any Error)?
        for (n, kind) in order.enumerated() {
            do {
                switch kind {
                case .websocket:
                    return try await connectWebSocket(endpoint, deadline: n < order.count - 1 ? fallbackAfter : nil)
                case .polling:
                    let transport = try await polling.open(endpoint)
                    guard upgrade, transport.handshake.upgrades.contains("websocket") else { return transport }
                    return UpgradingTransport(
                        polling: transport, webSocket: webSocket, endpoint: endpoint, probeTimeout: probeTimeout, logger: logger
                    )
                }
            } catch {
                try Task.checkCancellation()
                logger.info("could not open the \(kind.rawValue) transport", metadata: ["error": "\(error)"])
                failure = error
            }
        }
        throw failure ?? EngineIOError.closed
    }

    struct WebSocketTimeout: Error, CustomStringConvertible {
        let after: Duration
        var description: String { "the WebSocket did not open within \(after)" }
    }

    /// The WebSocket, or a `WebSocketTimeout` after `deadline` (the attempt is then cancelled).
    private func connectWebSocket(_ endpoint: EngineIOEndpoint, deadline: Duration?) async throws -> any EngineIOTransport {
        guard let deadline else { return try await webSocket.connect(to: endpoint) }
        let webSocket = self.webSocket
        return try await withThrowingTaskGroup(of: (any EngineIOTransport)?.self) { group in
            group.addTask { try await webSocket.connect(to: endpoint) }
            group.addTask {
                try await Task.sleep(for: deadline)
                return nil
            }
            let first = try await group.next()
            group.cancelAll()
            // A WebSocket that opened just as time ran out is not left open.
            while let late = try? await group.next() { late?.close() }
            guard let transport = first ?? nil else { throw WebSocketTimeout(after: deadline) }
            return transport
        }
    }
}

/// HTTP long-polling that moves to WebSocket (engine.io-protocol v4, "Upgrade"), as
/// engine.io-client does it: the session goes on polling while a WebSocket with its `sid`
/// sends the `2probe` ping; on the `3probe` pong, polling pauses (the GET in flight comes
/// back, the POST in flight ends, and what is sent meanwhile is held), the `5` upgrade packet
/// goes over the WebSocket, and everything after it (what polling had not posted, then the
/// held frames) goes that way. A probe that fails or takes longer than `probeTimeout`
/// (connecting included) leaves the session on polling. The layers above see one transport.
final class UpgradingTransport: EngineIOTransport {
    let inbound: AsyncThrowingStream<[EngineIOPacket], any Error>
    private let continuation: AsyncThrowingStream<[EngineIOPacket], any Error>.Continuation
    private let polling: PollingTransport
    private let logger: Logger

    private enum Route {
        case polling
        /// Pausing polling for the upgrade: frames wait here.
        case holding([EngineIOData])
        case webSocket(any EngineIOTransport)
        case closed
    }

    private struct State {
        var route = Route.polling
        /// The transport each delivered batch came from, oldest first: its consumer's
        /// `consumedBatch` goes back to the one that delivered it.
        var sources = Deque<any EngineIOTransport>()
        /// A WebSocket being probed, closed with everything else.
        var probe: (any EngineIOTransport)?
        /// The WebSocket once upgraded (kept after a close, to wait for it).
        var upgraded: (any EngineIOTransport)?
        var upgrading: Task<Void, Never>?
        var pollingEnded: CheckedContinuation<Void, Never>?
        var pollingDone = false
        /// Closed while holding: the upgrade completes, sends what was held, then closes.
        var closeRequested = false
    }
    private let state = Mutex(State())

    init(
        polling: PollingTransport, webSocket: any EngineIOTransportFactory, endpoint: EngineIOEndpoint,
        probeTimeout: Duration, logger: Logger
    ) {
        (inbound, continuation) = AsyncThrowingStream.makeStream(of: [EngineIOPacket].self)
        self.polling = polling
        self.logger = logger
        Task { await forwardPolling() }
        var probing = endpoint
        probing.query.append(URLQueryItem(name: "sid", value: polling.handshake.sid))
        let task = Task { await upgrade(webSocket: webSocket, endpoint: probing, timeout: probeTimeout) }
        state.withLock { $0.upgrading = task }
    }

    private func deliver(_ batch: [EngineIOPacket], from source: any EngineIOTransport) {
        state.withLock { $0.sources.append(source) }
        continuation.yield(batch)
    }

    func consumedBatch() {
        state.withLock { $0.sources.popFirst() }?.consumedBatch()
    }

    func wireSize(of message: EngineIOData) -> Int {
        // Until the upgrade is done, a message may still go by post.
        state.withLock { $0.upgraded }?.wireSize(of: message) ?? polling.wireSize(of: message)
    }

    /// Polling's batches, until its stream ends: paused for the upgrade, closed, or failed.
    private func forwardPolling() async {
        do {
            for try await batch in polling.inbound { deliver(batch, from: polling) }
        } catch {
            continuation.finish(throwing: error)
        }
        let (upgrading, waiter) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
            state.pollingDone = true
            defer { state.pollingEnded = nil }
            if case .holding = state.route { return (true, state.pollingEnded) }
            return (false, state.pollingEnded)
        }
        // Whoever waits for polling's end hears of it, whatever happened meanwhile.
        waiter?.resume()
        if !upgrading { continuation.finish() }
    }

    /// The probe timed out (connecting included): give it up, still polling.
    private func abandonProbe() {
        let (probe, task) = state.withLock { state -> ((any EngineIOTransport)?, Task<Void, Never>?) in
            guard case .polling = state.route else { return (nil, nil) }
            defer { state.probe = nil }
            return (state.probe, state.upgrading)
        }
        task?.cancel()
        probe?.close()
    }

    private func upgrade(webSocket factory: any EngineIOTransportFactory, endpoint: EngineIOEndpoint, timeout: Duration) async {
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled { self?.abandonProbe() }
        }
        let webSocket: any EngineIOTransport
        do {
            webSocket = try await factory.connect(to: endpoint)
        } catch {
            timer.cancel()
            logger.info("staying on HTTP long-polling: the WebSocket did not open", metadata: ["error": "\(error)"])
            return
        }
        let proceed = state.withLock { state -> Bool in
            guard case .polling = state.route, !Task.isCancelled else { return false }
            state.probe = webSocket
            return true
        }
        guard proceed else {
            timer.cancel()
            webSocket.close()
            return
        }
        var frames = webSocket.inbound.makeAsyncIterator()
        webSocket.send(.text("2probe"))
        let answer = try? await frames.next()
        timer.cancel()
        guard let answer, answer.first == .pong("probe"), !Task.isCancelled else {
            logger.info("staying on HTTP long-polling: the server did not answer the WebSocket probe")
            state.withLock { $0.probe = nil }
            webSocket.close()
            return
        }
        webSocket.consumedBatch()
        // Pause polling: from now on what is sent waits, until the upgrade packet is out.
        let paused = state.withLock { state -> Bool in
            guard case .polling = state.route else { return false }
            state.route = .holding([])
            return true
        }
        guard paused else {
            webSocket.close()
            return
        }
        let unposted = await polling.pause()
        await withCheckedContinuation { (ended: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                if state.pollingDone { return true }
                state.pollingEnded = ended
                return false
            }
            if done { ended.resume() }
        }
        let (switched, closing) = state.withLock { state -> (Bool, Bool) in
            guard case .holding(let held) = state.route else { return (false, false) }
            state.probe = nil
            state.upgraded = webSocket
            webSocket.send(.text("5"))
            for frame in unposted + held { webSocket.send(frame) }
            state.route = state.closeRequested ? .closed : .webSocket(webSocket)
            return (true, state.closeRequested)
        }
        guard switched else {
            webSocket.close()
            return
        }
        if closing {
            // Closed while holding: what was held went out; now the end.
            webSocket.close()
            polling.close()
            continuation.finish()
            return
        }
        logger.debug("upgraded from HTTP long-polling to WebSocket")
        if answer.count > 1 { deliver(Array(answer.dropFirst()), from: webSocket) }
        do {
            while let batch = try await frames.next() { deliver(batch, from: webSocket) }
            continuation.finish()
        } catch {
            continuation.finish(throwing: error)
        }
    }

    func send(_ frame: EngineIOData) {
        state.withLock { state in
            switch state.route {
            case .polling: polling.send(frame)
            case .holding(var held):
                state.route = .closed  // so that the array is uniquely referenced
                held.append(frame)
                state.route = .holding(held)
            case .webSocket(let webSocket): webSocket.send(frame)
            case .closed: break
            }
        }
    }

    func close() {
        enum Plan {
            case done
            /// Mid-upgrade: it completes and closes, or is given up after the grace.
            case afterUpgrade
            case now(webSocket: (any EngineIOTransport)?, probe: (any EngineIOTransport)?, upgrading: Task<Void, Never>?)
        }
        let plan = state.withLock { state -> Plan in
            switch state.route {
            case .closed:
                return .done
            case .holding:
                state.closeRequested = true
                return .afterUpgrade
            case .webSocket(let webSocket):
                state.route = .closed
                return .now(webSocket: webSocket, probe: nil, upgrading: nil)
            case .polling:
                state.route = .closed
                defer { state.probe = nil }
                return .now(webSocket: nil, probe: state.probe, upgrading: state.upgrading)
            }
        }
        switch plan {
        case .done:
            return
        case .afterUpgrade:
            Task { [self] in
                try? await Task.sleep(for: PollingTransport.closeGrace)
                let stuck = state.withLock { state -> (any EngineIOTransport)? in
                    guard case .holding = state.route else { return nil }
                    state.route = .closed
                    defer { state.probe = nil }
                    return state.probe
                }
                guard let stuck else { return }
                // The server never let the upgrade finish: drop everything.
                polling.close()
                stuck.close()
                continuation.finish()
            }
        case .now(let webSocket, let probe, let upgrading):
            upgrading?.cancel()
            polling.close()
            probe?.close()
            webSocket?.close()
            continuation.finish()
        }
    }

    func waitUntilClosed() async {
        await state.withLock { $0.upgrading }?.value
        await polling.waitUntilClosed()
        await state.withLock { $0.upgraded }?.waitUntilClosed()
    }
}
