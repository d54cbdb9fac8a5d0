import EngineIOServer
import Logging
import NIOCore
import Synchronization

/// Refusals (a message over the rate limit, a login refused), logged as summaries: a client
/// that is refused a thousand times a second must not write a thousand log lines a second.
/// The first refusal after a quiet spell is logged at once; later ones are counted, and
/// logged once per `interval` as counts by reason with a few of the peers they came from.
final class RefusalLog: Sendable {
    private let logger: Logger
    private let clock: any ServerClock
    private let interval: Duration
    private let state = Mutex(State())

    /// Peers named per reason in a summary.
    static let namedPeers = 3

    struct Tally {
        var count = 0
        var peers: [String] = []
    }

    struct State {
        /// By what was refused and why ("private message: rate limit exceeded").
        var window: [String: Tally] = [:]
        var lastLine: NIODeadline?
        var timer: ServerTimer?
    }

    init(logger: Logger, clock: any ServerClock, interval: Duration = .seconds(10)) {
        self.logger = logger
        self.clock = clock
        self.interval = interval
    }

    /// One refusal of `what` (for `reason`) to `peer` (a user ID or an address; never a
    /// secret, and nothing a peer chose). `loop` runs the summary's timer.
    func record(_ what: String, reason: String, peer: String, on loop: any EventLoop) {
        let now = clock.now
        let interval = TimeAmount(interval)
        enum Action { case logNow, counted, schedule(after: TimeAmount) }
        let action = state.withLock { state -> Action in
            if state.window.isEmpty, state.timer == nil, state.lastLine.map({ now - $0 >= interval }) ?? true {
                state.lastLine = now
                return .logNow
            }
            var tally = state.window["\(what): \(reason)", default: Tally()]
            tally.count += 1
            if tally.peers.count < Self.namedPeers, !tally.peers.contains(peer) { tally.peers.append(peer) }
            state.window["\(what): \(reason)"] = tally
            guard state.timer == nil else { return .counted }
            let due = (state.lastLine ?? now) + interval
            return .schedule(after: max(.zero, due - now))
        }
        switch action {
        case .logNow:
            logger.notice("refused a \(what)", metadata: ["reason": "\(reason)", "peer": "\(peer)"])
        case .counted:
            break
        case .schedule(let delay):
            let timer = clock.schedule(after: .nanoseconds(delay.nanoseconds), on: loop) { [self] in summarize() }
            let stale = state.withLock { state -> Bool in
                guard state.timer == nil else { return true }
                state.timer = timer
                return false
            }
            if stale { timer.cancel() }
        }
    }

    /// Logs what was counted since the last line.
    func summarize() {
        let now = clock.now
        let window = state.withLock { state -> [String: Tally] in
            state.timer?.cancel()
            state.timer = nil
            defer { state.window = [:] }
            if !state.window.isEmpty { state.lastLine = now }
            return state.window
        }
        guard !window.isEmpty else { return }
        let total = window.values.reduce(0) { $0 + $1.count }
        var metadata: Logger.Metadata = [:]
        for (what, tally) in window.sorted(by: { $0.key < $1.key }) {
            var peers = tally.peers.joined(separator: ", ")
            if tally.count > tally.peers.count { peers += ", …" }
            metadata[what] = "\(tally.count) (\(peers))"
        }
        logger.notice("refused \(total) more in the last \(interval)", metadata: metadata)
    }
}
