/// When to try again after a lost connection: exponential backoff with
/// jitter, as socket.io-client v4 (its `Backoff`) computes it.
public struct ReconnectPolicy: Sendable, Hashable {
    /// Whether to reconnect automatically at all.
    public var isEnabled: Bool
    /// Attempts before giving up; nil for unlimited.
    public var maxAttempts: Int?
    public var initialDelay: Duration
    public var maxDelay: Duration
    /// Randomisation, 0…1: the delay varies by ± this fraction.
    public var jitter: Double
    public var factor: Double

    /// socket.io-client v4 defaults: unlimited attempts, 1 s doubling to 5 s, ±50 %.
    public static let socketIODefault = ReconnectPolicy()

    public init(
        isEnabled: Bool = true,
        maxAttempts: Int? = nil,
        initialDelay: Duration = .seconds(1),
        maxDelay: Duration = .seconds(5),
        jitter: Double = 0.5,
        factor: Double = 2
    ) {
        self.isEnabled = isEnabled
        self.maxAttempts = maxAttempts
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.jitter = min(max(jitter, 0), 1)
        self.factor = factor
    }

    /// The wait before reconnection attempt `attempt` (1 for the first).
    ///
    /// base = initialDelay · factor^(attempt-1); the jitter moves it down or up by
    /// up to `jitter` · base (`random` in 0..<1 picks how far and which way);
    /// the result is capped at `maxDelay`.
    public func delay(forAttempt attempt: Int, random: Double) -> Duration {
        let initialMs = Double(initialDelay / .milliseconds(1))
        let maxMs = Double(maxDelay / .milliseconds(1))
        let exponent = Double(max(attempt - 1, 0))
        var ms = initialMs * pow(factor, min(exponent, 64))
        if jitter > 0 {
            let deviation = (random * jitter * ms).rounded(.down)
            // socket.io-client: the tenth digit of the same random number picks the direction.
            ms = Int((random * 10).rounded(.down)) & 1 == 0 ? ms - deviation : ms + deviation
        }
        ms = min(max(ms, 0), maxMs)
        return .milliseconds(Int(ms))
    }

    /// Whether another attempt is allowed after `attempt` failed ones.
    public func allowsAttempt(_ attempt: Int) -> Bool {
        guard isEnabled else { return false }
        guard let maxAttempts else { return true }
        return attempt <= maxAttempts
    }
}

import Foundation
