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
    /// How long the upgrade waits for the server's answer to its probe before it keeps polling.
    public var probeTimeout: Duration
    public var logger: Logger

    public init(
        order: [Kind],
        upgrade: Bool,
        webSocket: any EngineIOTransportFactory,
        polling: PollingTransportFactory,
        probeTimeout: Duration = .seconds(10),
        logger: Logger = .disabled
    ) {
        self.order = order.isEmpty ? [.websocket] : order
        self.upgrade = upgrade
        self.webSocket = webSocket
        self.polling = polling
        self.probeTimeout = probeTimeout
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
        for kind in order {
            do {
                switch kind {
                case .websocket:
                    return try await webSocket.connect(to: endpoint)
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
}

/// HTTP long-polling that moves to WebSocket (engine.io-protocol v4, "Upgrade"), as
/// engine.io-client does it: the session goes on polling while a WebSocket with its `sid`
/// sends the `2probe` ping; on the `3probe` pong, polling pauses (the GET in flight comes
/// back, the posts drain, and what is sent meanwhile is held), the `5` upgrade packet goes
/// over the WebSocket, and everything after it (the held frames first) goes that way. A
/// probe that fails leaves the session on polling. The layers above see one transport.
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
        var pollingEnded: CheckedContinuation<Void, Never>?
        var pollingDone = false
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
        Task { await upgrade(webSocket: webSocket, endpoint: probing, timeout: probeTimeout) }
    }

    private func deliver(_ batch: [EngineIOPacket], from source: any EngineIOTransport) {
        state.withLock { $0.sources.append(source) }
        continuation.yield(batch)
    }

    func consumedBatch() {
        state.withLock { $0.sources.popFirst() }?.consumedBatch()
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
            return (false, nil)
        }
        if upgrading { waiter?.resume() } else { continuation.finish() }
    }

    private func upgrade(webSocket factory: any EngineIOTransportFactory, endpoint: EngineIOEndpoint, timeout: Duration) async {
        let webSocket: any EngineIOTransport
        do {
            webSocket = try await factory.connect(to: endpoint)
        } catch {
            logger.info("staying on HTTP long-polling: the WebSocket did not open", metadata: ["error": "\(error)"])
            return
        }
        let proceed = state.withLock { state -> Bool in
            guard case .polling = state.route else { return false }
            state.probe = webSocket
            return true
        }
        guard proceed else {
            webSocket.close()
            return
        }
        // No answer within the timeout: the WebSocket is closed, which ends the wait below.
        let timer = Task {
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled { webSocket.close() }
        }
        var frames = webSocket.inbound.makeAsyncIterator()
        webSocket.send(.text("2probe"))
        let answer = try? await frames.next()
        timer.cancel()
        guard let answer, answer.first == .pong("probe") else {
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
        await polling.pause()
        await withCheckedContinuation { (ended: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                if state.pollingDone { return true }
                state.pollingEnded = ended
                return false
            }
            if done { ended.resume() }
        }
        let switched = state.withLock { state -> Bool in
            guard case .holding(let held) = state.route else { return false }
            state.probe = nil
            state.upgraded = webSocket
            state.route = .webSocket(webSocket)
            webSocket.send(.text("5"))
            for frame in held { webSocket.send(frame) }
            return true
        }
        guard switched else {
            webSocket.close()
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
        let (webSocket, probe) = state.withLock { state -> ((any EngineIOTransport)?, (any EngineIOTransport)?) in
            defer {
                state.route = .closed
                state.probe = nil
            }
            if case .webSocket(let webSocket) = state.route { return (webSocket, state.probe) }
            return (nil, state.probe)
        }
        polling.close()
        probe?.close()
        webSocket?.close()
        // Polling ended without the upgrade's pause: nothing more will come.
        continuation.finish()
    }

    func waitUntilClosed() async {
        await polling.waitUntilClosed()
        await state.withLock { $0.upgraded }?.waitUntilClosed()
    }
}
