public import NIOCore
import Synchronization

/// Where the server's timers and rate limits get their time: the heartbeat, the connect,
/// upgrade and request timeouts, and every token bucket. Production uses the event loops'
/// own timers (`EventLoopClock`); tests inject a clock that moves only when told to, so they
/// wait for conditions, never for real time.
public protocol ServerClock: Sendable {
    /// Now, on a monotonic clock.
    var now: NIODeadline { get }
    /// Runs `work` on `loop` once `delay` has passed, unless cancelled first.
    func schedule(after delay: Duration, on loop: any EventLoop, _ work: @escaping @Sendable () -> Void) -> ServerTimer
}

/// A scheduled piece of work, which may be cancelled (cancelling twice, or after it ran,
/// does nothing).
public struct ServerTimer: Sendable {
    private let cancelAction: @Sendable () -> Void

    public init(cancel: @escaping @Sendable () -> Void) {
        self.cancelAction = cancel
    }

    public func cancel() { cancelAction() }
}

/// The real clock: `NIODeadline.now()` and the event loop's own scheduled tasks (no thread
/// or task per timer).
public struct EventLoopClock: ServerClock {
    public init() {}

    public var now: NIODeadline { .now() }

    public func schedule(after delay: Duration, on loop: any EventLoop, _ work: @escaping @Sendable () -> Void) -> ServerTimer {
        let task = loop.scheduleTask(in: TimeAmount(delay)) { work() }
        return ServerTimer { task.cancel() }
    }
}

extension ServerClock where Self == EventLoopClock {
    public static var system: EventLoopClock { EventLoopClock() }
}

/// A token bucket (a rate and a burst) as a plain value: the caller keeps it (under its own
/// lock) and passes the time in.
public struct TokenBucket: Sendable, Equatable {
    public let rate: Double
    public let burst: Double
    private var tokens: Double
    private var last: NIODeadline

    /// Full at `now`.
    public init(rate: Double, burst: Double, now: NIODeadline) {
        self.rate = rate
        self.burst = max(1, burst)
        self.tokens = self.burst
        self.last = now
    }

    /// Takes a token if there is one.
    public mutating func take(now: NIODeadline) -> Bool {
        refill(now: now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// Takes a token from `bucket`, starting a full one (`rate`, `burst`) when there is none
    /// yet: the one way a limit kept per user or per address is charged.
    public static func take(from bucket: inout TokenBucket?, rate: Double, burst: Double, now: NIODeadline) -> Bool {
        var current = bucket ?? TokenBucket(rate: rate, burst: burst, now: now)
        defer { bucket = current }
        return current.take(now: now)
    }

    /// Whether it has refilled completely by `now` (then it may be forgotten: a new full
    /// bucket is the same).
    public func isFull(now: NIODeadline) -> Bool {
        var copy = self
        copy.refill(now: now)
        return copy.tokens >= burst
    }

    /// How long until a token will be there (zero when there is one now).
    public func wait(now: NIODeadline) -> Duration {
        var copy = self
        copy.refill(now: now)
        guard copy.tokens < 1, rate > 0 else { return .zero }
        // At most a year: a rate small enough would make the wait overflow Int64.
        return .nanoseconds(Int64(min(((1 - copy.tokens) / rate * 1e9).rounded(.up), 365 * 86_400 * 1e9)))
    }

    private mutating func refill(now: NIODeadline) {
        guard rate.isFinite else {
            tokens = burst
            return
        }
        // Readings may come out of order (two threads): time never runs backwards here.
        guard now > last else { return }
        let elapsed = Double(now.uptimeNanoseconds - last.uptimeNanoseconds) / 1e9
        tokens = min(burst, tokens + elapsed * rate)
        last = now
    }
}

/// The key the per-address limits count a peer under: the IPv4 address, or the /64 prefix of
/// an IPv6 one (a host usually has a whole /64, so counting single IPv6 addresses would let
/// one host count as 2⁶⁴ peers). IPv4-mapped IPv6 addresses count as their IPv4 address.
public enum AddressKey {
    public static func of(_ address: String) -> String {
        guard address.contains(":") else { return address }
        if let mapped = address.lowercased().split(separator: ":").last, mapped.contains(".") {
            return String(mapped)
        }
        let groups = expand(address)
        guard groups.count == 8 else { return address }
        return groups[0..<4].joined(separator: ":") + "::/64"
    }

    /// The eight groups of an IPv6 address, `::` expanded and leading zeros dropped.
    static func expand(_ address: String) -> [String] {
        let lower = address.lowercased()
        func groups(_ part: Substring) -> [String] {
            part.isEmpty ? [] : part.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        }
        var all: [String]
        if let gap = lower.firstRange(of: "::") {
            let head = groups(lower[..<gap.lowerBound])
            let rest = lower[gap.upperBound...]
            guard !rest.contains("::") else { return [] }
            let tail = groups(rest)
            guard head.count + tail.count < 8 else { return [] }
            all = head + Array(repeating: "0", count: 8 - head.count - tail.count) + tail
        } else {
            all = groups(lower[...])
        }
        return all.map { group in
            let trimmed = group.drop { $0 == "0" }
            return trimmed.isEmpty ? "0" : String(trimmed)
        }
    }
}
