/// Which other servers are in the cluster, as socket.io-adapter's `ClusterAdapterWithHeartbeat`
/// counts them: a server is in from the first message it sends, and out when it says it
/// closes (`adapterClose`) or when nothing came from it for `timeout` (it died, or lost the
/// database). A plain value: time comes in as an argument.
public struct Membership<Instant: Comparable & Sendable>: Sendable {
    /// The last message from each server.
    public private(set) var lastHeard: [String: Instant] = [:]
    /// At most this many servers are tracked: a database open to a writer that invents uids
    /// does not make this grow without end.
    public static var maximumServers: Int { 1_024 }

    public init() {}

    /// A message came from `uid`; whether it is new to the cluster (first heard).
    @discardableResult
    public mutating func heard(_ uid: String, at now: Instant) -> Bool {
        let new = lastHeard[uid] == nil
        guard !new || lastHeard.count < Self.maximumServers else { return false }
        lastHeard[uid] = now
        return new
    }

    /// `uid` said it closes; whether it was in.
    @discardableResult
    public mutating func closed(_ uid: String) -> Bool {
        lastHeard.removeValue(forKey: uid) != nil
    }

    /// The servers last heard before `deadline`, now out, sorted.
    public mutating func expire(before deadline: Instant) -> [String] {
        let gone = lastHeard.filter { $0.value < deadline }.keys.sorted()
        for uid in gone { lastHeard.removeValue(forKey: uid) }
        return gone
    }

    public var servers: [String] { lastHeard.keys.sorted() }
}
