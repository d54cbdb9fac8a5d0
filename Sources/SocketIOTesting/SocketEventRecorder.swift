public import SocketIO

/// Records everything a socket reports, so a test can wait for the event it
/// expects (with a timeout) instead of sleeping.
public final class SocketEventRecorder: Sendable {
    private let queue = AsyncQueue<SocketEvent>(what: "a socket event")
    private let task: Task<Void, Never>

    /// Subscribe before `connect()` to see the first `connect`.
    public init(_ socket: Socket) async {
        let stream = await socket.events()
        let queue = self.queue
        task = Task {
            for await event in stream { queue.push(event) }
        }
    }

    deinit { task.cancel() }

    /// The next event, whatever it is.
    public func next(timeout: Duration = .seconds(10)) async throws -> SocketEvent {
        try await queue.next(timeout: timeout)
    }

    /// Skips events until one matches; returns it.
    public func next(
        timeout: Duration = .seconds(10),
        where matches: (SocketEvent) -> Bool
    ) async throws -> SocketEvent {
        let deadline = ContinuousClock.now + timeout
        while true {
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else { throw TimeoutError(what: "a matching socket event", after: timeout) }
            let event = try await queue.next(timeout: remaining)
            if matches(event) { return event }
        }
    }

    /// Waits for `connect`.
    public func connected(timeout: Duration = .seconds(10)) async throws {
        _ = try await next(timeout: timeout) { if case .connect = $0 { return true } else { return false } }
    }

    /// Waits for `disconnect` and returns its reason.
    public func disconnected(timeout: Duration = .seconds(10)) async throws -> DisconnectReason {
        let event = try await next(timeout: timeout) { if case .disconnect = $0 { return true } else { return false } }
        guard case .disconnect(let reason) = event else { fatalError("unreachable") }
        return reason
    }

    /// Waits for an application event with this name and returns it.
    public func event(named name: String, timeout: Duration = .seconds(10)) async throws -> ReceivedEvent {
        let event = try await next(timeout: timeout) {
            if case .event(let received) = $0 { return received.name == name } else { return false }
        }
        guard case .event(let received) = event else { fatalError("unreachable") }
        return received
    }
}
