import Synchronization

/// What a test waited for did not happen in time.
public struct TimeoutError: Error, CustomStringConvertible, Sendable {
    public let what: String
    public let after: Duration
    public init(what: String, after: Duration) {
        self.what = what
        self.after = after
    }
    public var description: String { "timed out after \(after) waiting for \(what)" }
}

/// The queue was finished (the connection or server closed) while waiting.
public struct QueueFinishedError: Error, CustomStringConvertible, Sendable {
    public let what: String
    public var description: String { "closed while waiting for \(what)" }
}

/// An unbounded FIFO that producers on any thread push into and one consumer
/// awaits, with a timeout, so a test that waits for something that never
/// comes fails instead of hanging.
public final class AsyncQueue<Element: Sendable>: Sendable {
    private enum Outcome {
        case element(Element)
        case finished
        case wait
    }

    private struct State {
        var buffer: [Element] = []
        var head = 0
        var waiter: (id: Int, continuation: CheckedContinuation<Element, any Error>, timer: Task<Void, Never>)?
        var nextWaiterID = 0
        var finished = false
    }

    private let state = Mutex(State())
    private let what: String

    public init(what: String) { self.what = what }

    public func push(_ element: Element) {
        let waiter: CheckedContinuation<Element, any Error>? = state.withLock { state in
            guard !state.finished else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                waiter.timer.cancel()
                return waiter.continuation
            }
            state.buffer.append(element)
            return nil
        }
        waiter?.resume(returning: element)
    }

    /// No more elements; a waiting consumer gets `QueueFinishedError` once the buffer is empty.
    public func finish() {
        let waiter: CheckedContinuation<Element, any Error>? = state.withLock { state in
            state.finished = true
            defer { state.waiter = nil }
            state.waiter?.timer.cancel()
            return state.waiter?.continuation
        }
        waiter?.resume(throwing: QueueFinishedError(what: what))
    }

    public var isFinished: Bool { state.withLock { $0.finished } }

    private func expire(waiter id: Int, after timeout: Duration) {
        let waiter: CheckedContinuation<Element, any Error>? = state.withLock { state in
            guard let waiter = state.waiter, waiter.id == id else { return nil }
            state.waiter = nil
            return waiter.continuation
        }
        waiter?.resume(throwing: TimeoutError(what: what, after: timeout))
    }

    public func next(timeout: Duration) async throws -> Element {
        let id = state.withLock { state in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        return try await withCheckedThrowingContinuation { continuation in
            let outcome: Outcome = state.withLock { state in
                if state.head < state.buffer.count {
                    let element = state.buffer[state.head]
                    state.head += 1
                    if state.head == state.buffer.count {
                        state.buffer.removeAll(keepingCapacity: true)
                        state.head = 0
                    }
                    return .element(element)
                }
                if state.finished { return .finished }
                let timer = Task { [weak self] in
                    do { try await Task.sleep(for: timeout) } catch { return }
                    self?.expire(waiter: id, after: timeout)
                }
                state.waiter = (id, continuation, timer)
                return .wait
            }
            switch outcome {
            case .element(let element): continuation.resume(returning: element)
            case .finished: continuation.resume(throwing: QueueFinishedError(what: what))
            case .wait: break
            }
        }
    }
}
