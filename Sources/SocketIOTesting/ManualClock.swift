import Synchronization

/// A clock that moves only when a test calls `advance(by:)`, so backoff,
/// timeouts and heartbeats are tested without waiting real seconds.
public final class ManualClock: Clock, Sendable {
    public struct Instant: InstantProtocol, CustomStringConvertible {
        public var offset: Duration
        public init(offset: Duration) { self.offset = offset }
        public func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        public func duration(to other: Instant) -> Duration { other.offset - offset }
        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
        public var description: String { "t+\(offset)" }
    }

    private struct Sleeper {
        let deadline: Instant
        var continuation: CheckedContinuation<Void, any Error>?
    }

    private struct State {
        var now = Instant(offset: .zero)
        var sleepers: [Int: Sleeper] = [:]
        var cancelled: Set<Int> = []
        var nextID = 0
        var watchers: [(id: Int, ready: @Sendable ([Duration]) -> Bool, continuation: CheckedContinuation<Void, Never>)] = []

        var pending: [Duration] { sleepers.values.map { now.duration(to: $0.deadline) }.sorted() }

        /// Takes out the watchers the current sleepers satisfy.
        mutating func readyWatchers() -> [CheckedContinuation<Void, Never>] {
            guard !watchers.isEmpty else { return [] }
            let pending = self.pending
            let ready = watchers.filter { $0.ready(pending) }.map(\.continuation)
            watchers.removeAll { $0.ready(pending) }
            return ready
        }
    }

    private let state = Mutex(State())

    public init() {}

    public var now: Instant { state.withLock { $0.now } }
    public var minimumResolution: Duration { .zero }

    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Outcome { case due, cancelled, waiting([CheckedContinuation<Void, Never>]) }
                let outcome: Outcome = state.withLock { state in
                    if state.cancelled.remove(id) != nil { return .cancelled }
                    if deadline <= state.now { return .due }
                    state.sleepers[id] = Sleeper(deadline: deadline, continuation: continuation)
                    return .waiting(state.readyWatchers())
                }
                switch outcome {
                case .due: continuation.resume()
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .waiting(let ready): ready.forEach { $0.resume() }
                }
            }
        } onCancel: {
            let (continuation, ready): (CheckedContinuation<Void, any Error>?, [CheckedContinuation<Void, Never>]) = state.withLock { state in
                guard let sleeper = state.sleepers.removeValue(forKey: id) else {
                    state.cancelled.insert(id)
                    return (nil, [])
                }
                return (sleeper.continuation, state.readyWatchers())
            }
            continuation?.resume(throwing: CancellationError())
            ready.forEach { $0.resume() }
        }
    }

    /// Moves time forward, waking every sleeper whose deadline has come.
    public func advance(by duration: Duration) {
        let (due, ready): ([CheckedContinuation<Void, any Error>], [CheckedContinuation<Void, Never>]) = state.withLock { state in
            state.now = state.now.advanced(by: duration)
            let now = state.now
            let ids = state.sleepers.filter { $0.value.deadline <= now }.keys
            let due = ids.compactMap { state.sleepers.removeValue(forKey: $0)?.continuation }
            return (due, state.readyWatchers())
        }
        due.forEach { $0.resume() }
        ready.forEach { $0.resume() }
    }

    /// How long each current sleeper still has to sleep, shortest first.
    public var pendingSleeps: [Duration] {
        state.withLock { $0.pending }
    }

    /// Waits (for real, up to `timeout`) until at least `count` tasks sleep on this clock.
    public func waitForSleepers(_ count: Int = 1, timeout: Duration = .seconds(10)) async throws {
        try await waitUntilSleeping(timeout: timeout, "\(count) sleepers on the manual clock") { $0.count >= count }
    }

    /// Waits (for real, up to `timeout`) until some task sleeps for exactly `duration` from now.
    public func waitForSleep(of duration: Duration, timeout: Duration = .seconds(10)) async throws {
        try await waitUntilSleeping(timeout: timeout, "a sleep of \(duration) on the manual clock") { $0.contains(duration) }
    }

    /// Waits (for real, up to `timeout`) until nothing sleeps on this clock: timers that were
    /// cancelled leave it when their tasks have run, which on a busy machine is not at once.
    public func waitUntilNoSleepers(timeout: Duration = .seconds(10)) async throws {
        try await waitUntilSleeping(timeout: timeout, "no sleepers on the manual clock") { $0.isEmpty }
    }

    /// Waits until the pending sleeps (time left, shortest first) satisfy `ready`.
    public func waitUntilSleeping(
        timeout: Duration = .seconds(10),
        _ what: String = "sleepers on the manual clock",
        _ ready: @escaping @Sendable ([Duration]) -> Bool
    ) async throws {
        let expired = OneShotFlag()
        let watcher = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            expired.set()
        }
        defer { timer.cancel() }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state in
                if ready(state.pending) { return true }
                state.watchers.append((watcher, ready, continuation))
                return false
            }
            if now { continuation.resume() }
            expired.onSet { [weak self] in self?.releaseWatcher(watcher) }
        }
        let pending = self.pendingSleeps
        if !ready(pending) { throw TimeoutError(what: "\(what) (pending: \(pending))", after: timeout) }
    }

    /// Wakes one waiter whose time ran out (the others keep waiting).
    private func releaseWatcher(_ id: Int) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let index = state.watchers.firstIndex(where: { $0.id == id }) else { return nil }
            return state.watchers.remove(at: index).continuation
        }
        continuation?.resume()
    }
}

/// Set once; runs its callback when set (or at once if already set).
private final class OneShotFlag: Sendable {
    private let state = Mutex<(set: Bool, callback: (@Sendable () -> Void)?)>((false, nil))

    func set() {
        let callback = state.withLock { state -> (@Sendable () -> Void)? in
            state.set = true
            defer { state.callback = nil }
            return state.callback
        }
        callback?()
    }

    func onSet(_ callback: @escaping @Sendable () -> Void) {
        let fire = state.withLock { state -> Bool in
            if state.set { return true }
            state.callback = callback
            return false
        }
        if fire { callback() }
    }
}
