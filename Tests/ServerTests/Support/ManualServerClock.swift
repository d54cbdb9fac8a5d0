import EngineIOServer
import NIOCore
import Synchronization

/// A server clock that moves only when a test says so: heartbeats, timeouts and rate limits
/// are tested by advancing it, never by waiting for real time. A timer's work runs on its
/// event loop, as with the real clock; a test waits for its effect.
final class ManualServerClock: ServerClock {
    private struct Timer {
        let id: Int
        let deadline: UInt64
        let loop: any EventLoop
        let work: @Sendable () -> Void
    }

    private struct State {
        var offset: UInt64 = 0
        var timers: [Int: Timer] = [:]
        var nextID = 0
    }

    /// Starts at the machine's uptime, so readings look like real ones.
    private let base = NIODeadline.now().uptimeNanoseconds
    private let state = Mutex(State())

    var now: NIODeadline { .uptimeNanoseconds(base + state.withLock { $0.offset }) }

    func schedule(after delay: Duration, on loop: any EventLoop, _ work: @escaping @Sendable () -> Void) -> ServerTimer {
        let nanoseconds = UInt64(max(0, TimeAmount(delay).nanoseconds))
        let id = state.withLock { state in
            state.nextID += 1
            state.timers[state.nextID] = Timer(id: state.nextID, deadline: state.offset + nanoseconds, loop: loop, work: work)
            return state.nextID
        }
        return ServerTimer { [weak self] in _ = self?.state.withLock { $0.timers.removeValue(forKey: id) } }
    }

    /// Moves time on by `duration`, running every timer that comes due (in deadline order) on
    /// its loop. Timers they schedule count from the new time.
    func advance(by duration: Duration) {
        let due = state.withLock { state -> [Timer] in
            state.offset += UInt64(max(0, TimeAmount(duration).nanoseconds))
            let due = state.timers.values.filter { $0.deadline <= state.offset }.sorted { ($0.deadline, $0.id) < ($1.deadline, $1.id) }
            for timer in due { state.timers.removeValue(forKey: timer.id) }
            return due
        }
        for timer in due { timer.loop.execute(timer.work) }
    }

    /// Timers waiting, for tests that check nothing is left armed.
    var pendingTimers: Int { state.withLock { $0.timers.count } }
}
