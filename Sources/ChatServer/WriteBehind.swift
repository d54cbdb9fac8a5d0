public import Logging
import Synchronization

/// What every durable store does with the changes it is handed: a queue written behind the
/// server's memory. `enqueue` returns at once; one writer at a time takes everything queued
/// and hands it to the store's `write` as one batch, so a burst of messages costs a few
/// transactions, not one each. At most `maxPending` changes wait: past them new messages are
/// shed (kept in memory only, and the log says how many, at most once per 10 s), sessions and
/// forgotten users never are.
///
/// Each accepted change is numbered in the order recorded, and a batch `write` reports
/// written or given up settles its numbers: `waitUntilWritten` says when a change is written.
public final class WriteBehind: Sendable {
    private struct State {
        var changes: [StoreChange] = []
        var writing = false
        /// Messages not written because the queue was full, since the last log line.
        var shed = 0
        var lastComplaint: ContinuousClock.Instant?
        /// Batches written so far (for tests: a burst of changes takes few).
        var transactions = 0
        /// Callers of `flush`, resumed when nothing is left to write.
        var flushWaiters: [CheckedContinuation<Void, Never>] = []
        /// Changes accepted so far, and written (or given up) so far.
        var accepted: Int64 = 0
        var settled: Int64 = 0
        /// Who waits for which change, and the changes given up (a waiter may register after
        /// its batch settled: the last 1,024 failed ranges are kept for it; failures are rare,
        /// and a waiter of an older one is long past its wait).
        var writeWaiters: [Int: (number: Int64, continuation: CheckedContinuation<Bool, Never>)] = [:]
        var nextWaiter = 0
        var failed: [ClosedRange<Int64>] = []
        var lastFailure: ContinuousClock.Instant?
    }

    private let state = Mutex(State())
    private let maxPending: Int
    private let logger: Logger
    private let complaint: Logger.Message
    /// Writes one batch; whether it was written (false: given up). Set once, by `writes(with:)`.
    private let writer = Mutex<(@Sendable ([StoreChange]) async -> Bool)?>(nil)

    /// `complaint`: the log line when messages are shed.
    public init(maxPending: Int, logger: Logger, complaint: Logger.Message) {
        self.maxPending = maxPending
        self.logger = logger
        self.complaint = complaint
    }

    /// How the store writes a batch (set once it exists: the writer is usually its own method).
    public func writes(with write: @escaping @Sendable ([StoreChange]) async -> Bool) {
        writer.withLock { $0 = write }
    }

    /// Whether a failure to write may be logged now (at most once per 10 s).
    public func failureIsDue() -> Bool {
        state.withLock { Self.isDue(&$0.lastFailure) }
    }

    /// Changes waiting now.
    public var waiting: Int { state.withLock { $0.changes.count } }

    /// Batches written so far.
    public var transactions: Int { state.withLock { $0.transactions } }

    /// Queues what fits, and starts the writer when it is idle; the number of the last change
    /// when all of them were accepted.
    @discardableResult
    public func enqueue(_ changes: [StoreChange]) -> Int64? {
        guard !changes.isEmpty else { return nil }
        let (start, shed, number) = state.withLock { state -> (Bool, Int?, Int64?) in
            var shed: Int?
            var number: Int64?
            if state.changes.count >= maxPending {
                let kept = changes.filter { if case .session = $0 { true } else if case .forgetUser = $0 { true } else { false } }
                state.shed += changes.count - kept.count
                state.changes.append(contentsOf: kept)
                state.accepted += Int64(kept.count)
                if kept.count == changes.count { number = state.accepted }
                if state.shed > 0, Self.isDue(&state.lastComplaint) {
                    shed = state.shed
                    state.shed = 0
                }
            } else {
                state.changes.append(contentsOf: changes)
                state.accepted += Int64(changes.count)
                number = state.accepted
            }
            defer { state.writing = true }
            return (!state.writing, shed, number)
        }
        if let shed { logger.error(complaint, metadata: ["messages": "\(shed)"]) }
        if start { Task { await self.writeAll() } }
        return number
    }

    /// Writes batches until nothing is queued; one writer at a time.
    private func writeAll() async {
        while true {
            let batch = state.withLock { state -> [StoreChange] in
                defer { state.changes.removeAll(keepingCapacity: true) }
                return state.changes
            }
            if batch.isEmpty {
                let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>]? in
                    // Something may have come in since the batch was taken.
                    guard state.changes.isEmpty else { return nil }
                    state.writing = false
                    defer { state.flushWaiters = [] }
                    return state.flushWaiters
                }
                guard let waiters else { continue }
                for waiter in waiters { waiter.resume() }
                return
            }
            let write = writer.withLock { $0 }
            settle(batch.count, written: await write?(batch) ?? false)
        }
    }

    /// A batch of `count` changes was written (or given up: `written` false).
    private func settle(_ count: Int, written: Bool) {
        let ready = state.withLock { state -> [(CheckedContinuation<Bool, Never>, Bool)] in
            if written { state.transactions += 1 }
            let range = (state.settled + 1)...(state.settled + Int64(count))
            state.settled += Int64(count)
            if !written { state.failed.append(range) }
            if state.failed.count > 1_024 { state.failed.removeFirst(state.failed.count - 1_024) }
            var ready: [(CheckedContinuation<Bool, Never>, Bool)] = []
            for (id, waiter) in state.writeWaiters where waiter.number <= state.settled {
                ready.append((waiter.continuation, !state.failed.contains { $0.contains(waiter.number) }))
                state.writeWaiters.removeValue(forKey: id)
            }
            return ready
        }
        for (continuation, answer) in ready { continuation.resume(returning: answer) }
    }

    /// Whether change `number` was written, within `limit`.
    public func waitUntilWritten(_ number: Int64, within limit: Duration) async -> Bool {
        let id = state.withLock { state -> Int in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        let timer = Task {
            try? await Task.sleep(for: limit)
            guard !Task.isCancelled else { return }
            state.withLock { $0.writeWaiters.removeValue(forKey: id) }?.continuation.resume(returning: false)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let answer = state.withLock { state -> Bool? in
                if number <= state.settled { return !state.failed.contains { $0.contains(number) } }
                state.writeWaiters[id] = (number, continuation)
                return nil
            }
            if let answer { continuation.resume(returning: answer) }
        }
    }

    /// Waits until everything queued so far is written (or given up).
    public func flush() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                guard state.writing || !state.changes.isEmpty else { return true }
                state.flushWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Whether a log line last written at `last` may be written again now (one per 10 s,
    /// however often the trouble comes); if so, now is the new `last`.
    public static func isDue(_ last: inout ContinuousClock.Instant?) -> Bool {
        let now = ContinuousClock.now
        guard last.map({ now - $0 >= .seconds(10) }) ?? true else { return false }
        last = now
        return true
    }
}
