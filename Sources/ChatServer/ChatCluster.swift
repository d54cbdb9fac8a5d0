import ChatSchema
import JSON
import Logging
import NIOCore
public import SocketIOCluster
import SocketIOServer
import Synchronization

/// Several servers on one database, acting as one (issue "Many servers, one chat"). Each
/// keeps its users and messages in memory as alone; what the others must know goes to them
/// as server-side emits over the cluster's bus (`SocketIOServer.serverSideEmit`), and
/// broadcasts to clients (`private message`, `user connected`, `user disconnected`) reach the
/// sockets of every server as Socket.IO broadcasts do in a cluster:
///
/// - `parley:session` — a user was created here: the others add them (they could log in there).
/// - `parley:presence` — a user's first socket here came, or their last one here left. A user
///   is online while any server has a socket of theirs; `user connected` goes out once when
///   the first appears cluster-wide, `user disconnected` once when the last leaves.
/// - `parley:online` — the users online here, to a server that just joined.
/// - A message stored here reaches the others as the `private message` broadcast that
///   delivers it: they keep it too, for the histories they hand out at login (the database
///   keeps it once, under this server's seq).
///
/// A server that leaves without a word (no heartbeat for the bus's timeout) has its users
/// marked offline by the others, who tell their own clients.
///
/// What comes from another server is checked as a client's input is: IDs of the right form,
/// names by the username rule, texts within the size limit, lists within `maxUsers`.
struct ClusterState: Sendable {
    /// This server's number in the cluster (0–1023), in the seqs of its messages.
    var node: Int64
    /// For each user online on another server: those servers' uids.
    var remoteOnline: [String: Set<String>] = [:]
    /// For each other server: its users online.
    var onlineOn: [String: Set<String>] = [:]
    /// The other servers the bus has heard (`serverJoined`), and not seen leave: what comes
    /// from any other uid is not taken.
    var servers: Set<String> = []
    /// Malformed messages from other servers since the last log line, and when that was.
    var malformed = 0
    var lastComplaint: NIODeadline?
}

extension ChatApplication {
    static let sessionEvent = "parley:session"
    static let presenceEvent = "parley:presence"
    static let onlineEvent = "parley:online"

    /// Joins the cluster the Socket.IO server is in (`SocketIOServer.join(cluster:)`):
    /// `node` (0–1023) tells this server's messages apart from the others' in the database;
    /// `lookUp` reads a user's session from the database (a user another server made is
    /// announced by ID only: the session ID, a secret, never goes over the bus).
    public func joinCluster(node: Int, lookUp: @escaping @Sendable (_ userID: String) async -> StoredSession?) {
        cluster.withLock { $0 = ClusterState(node: Int64(node & 0x3FF)) }
        sessionLookUp.withLock { $0 = lookUp }
        socketIO.onServerSideEmit { [self] event, arguments, from in
            receive(event, arguments.first, from: from)
        }
        // A message sent on another server reaches every server as the broadcast that
        // delivers it: each keeps it for the histories it hands out.
        socketIO.onClusterBroadcast { [self] event, arguments, from in
            guard event == ChatEventName.privateMessage else { return }
            keep(arguments, from: from)
        }
    }

    /// What the chat takes from the other servers' broadcasts: a `private message`, with its
    /// arguments as the protocol has them, to exactly the rooms of its recipient and sender
    /// (a writer of the database cannot make the servers tell their clients anything else).
    public static func delivers(_ broadcast: ClusterMessage.Broadcast) -> Bool {
        guard broadcast.event == ChatEventName.privateMessage, broadcast.requestID == nil,
            case .success(let message) = ServerPayload.privateMessage(broadcast.arguments)
        else { return false }
        return Set(broadcast.rooms) == Set([message.to, message.from])
    }

    /// Sessions read from the database: the users this server did not hear of (created by
    /// another server while it was starting, or while its channel was down) are added.
    /// `catchingUp`: the whole table was read (at start, or after the channel came back):
    /// the log says how many users were new.
    public func adopt(_ sessions: [StoredSession], catchingUp: Bool = false) {
        let (added, online) = records.withLock { records in
            var added = 0
            var online: [StoredSession] = []
            for session in sessions where !records.directory.contains(session.userID) && records.directory.count < options.maxUsers {
                // Online already, when another server said so before this one knew the user.
                var session = session
                session.connected = cluster.withLock { !($0?.remoteOnline[session.userID]?.isEmpty ?? true) }
                records.directory.add(session)
                added += 1
                if session.connected { online.append(session) }
            }
            return (added, online)
        }
        // This server's clients hear of them as of any user who comes.
        for session in online { tellClients(session.userID, cameAs: session.username) }
        if catchingUp, added > 0 { logger.notice("users of the other servers caught up from the database", metadata: ["users": "\(added)"]) }
    }

    /// A server joined: it is told who is online here.
    public func serverJoined(_ uid: String) {
        guard cluster.withLock({ state in
            guard state != nil else { return false }
            state!.servers.insert(uid)
            return true
        }) else { return }
        let online = records.withLock { records in
            records.directory.users.values.filter { $0.sockets > 0 }.map { JSONValue.string($0.session.userID) }
        }
        socketIO.serverSideEmit(Self.onlineEvent, [["users": .array(online)]])
    }

    /// Servers left (said so, or went silent): their users are offline unless online
    /// elsewhere; this server's clients are told.
    public func serversLeft(_ uids: [String]) {
        let gone = cluster.withLock { state -> [String] in
            guard state != nil else { return [] }
            var offline: [String] = []
            for uid in uids {
                state!.servers.remove(uid)
                for userID in state!.onlineOn.removeValue(forKey: uid) ?? [] {
                    state!.remoteOnline[userID]?.remove(uid)
                    if state!.remoteOnline[userID]?.isEmpty == true {
                        state!.remoteOnline.removeValue(forKey: userID)
                        offline.append(userID)
                    }
                }
            }
            return offline
        }
        let wall = wallNow
        let told = records.withLock { records in
            gone.filter { userID in
                records.directory.update(userID) { user -> Bool in
                    guard user.sockets == 0 else { return false }
                    user.setConnected(false, at: wall)
                    return true
                } ?? false
            }
        }
        for userID in told { tellClients(userID, cameAs: nil) }
    }

    // MARK: Telling the others

    /// A user created here.
    /// By ID only, once its session is in the database (where the others read it).
    func announce(_ session: StoredSession, written: (@Sendable () async -> Bool)?) {
        guard cluster.withLock({ $0 != nil }) else { return }
        let userID = session.userID
        Task { [socketIO] in
            if let written { _ = await written() }
            socketIO.serverSideEmit(Self.sessionEvent, [["userID": .string(userID)]])
        }
    }

    /// A user's first socket here came (`online`) or their last one left: the others are
    /// told; whether the user's presence changed cluster-wide (always, alone).
    func localPresenceChanged(_ userID: String, online: Bool) -> Bool {
        guard let elsewhere = cluster.withLock({ $0.map { !($0.remoteOnline[userID]?.isEmpty ?? true) } }) else { return true }
        socketIO.serverSideEmit(Self.presenceEvent, [["userID": .string(userID), "online": .bool(online)]])
        return !elsewhere
    }

    /// Whether another server has a socket of the user.
    func isOnlineElsewhere(_ userID: String) -> Bool {
        cluster.withLock { !($0?.remoteOnline[userID]?.isEmpty ?? true) }
    }

    /// The seq floor of a message made here now: milliseconds since 2020 above this server's
    /// number and 12 bits of count, so that the servers' seqs never meet and stay in the
    /// order of time; 0 alone.
    func clusterSeq() -> Int64 {
        guard let node = cluster.withLock({ $0?.node }) else { return 0 }
        let milliseconds = wallStartMilliseconds - 1_577_836_800_000 + (clock.now - wallStart.at).nanoseconds / 1_000_000
        return max(milliseconds, 0) << 22 | node << 12
    }

    // MARK: Hearing the others

    private func receive(_ event: String, _ payload: JSONValue?, from uid: String) {
        guard cluster.withLock({ $0?.servers.contains(uid) ?? false }) else { return refuse(event, from: uid) }
        guard let object = payload?.objectValue else { return refuse(event, from: uid) }
        switch event {
        case Self.sessionEvent:
            guard let userID = object["userID"]?.stringValue, Self.isHex(userID, length: 16) else { return refuse(event, from: uid) }
            guard !records.withLock({ $0.directory.contains(userID) }), let lookUp = sessionLookUp.withLock({ $0 }) else { return }
            Task {
                guard let session = await lookUp(userID) else { return }
                adopt([session])
            }
        case Self.presenceEvent:
            guard let userID = object["userID"]?.stringValue, Self.isHex(userID, length: 16), let online = object["online"]?.boolValue
            else { return refuse(event, from: uid) }
            setRemote([userID], online: online, on: uid, replacing: false)
        case Self.onlineEvent:
            guard let users = object["users"]?.arrayValue, users.count <= options.maxUsers else { return refuse(event, from: uid) }
            setRemote(users.compactMap(\.stringValue).filter { Self.isHex($0, length: 16) }, online: true, on: uid, replacing: true)
        default:
            break
        }
    }

    /// A message another server stored (the arguments of its `private message` broadcast):
    /// kept here for the histories this server hands out, under a seq of its own (the
    /// database has it once, under the sender's server's).
    private func keep(_ arguments: [JSONValue], from uid: String) {
        guard case .success(let message) = ServerPayload.privateMessage(arguments), message.content.utf8.count <= options.maxMessageBytes
        else { return refuse(ChatEventName.privateMessage, from: uid) }
        guard records.withLock({ $0.directory.contains(message.from) && $0.directory.contains(message.to) }) else { return }
        let minimumSeq = clusterSeq()
        _ = log.withLock { $0.append(message, reportingDrops: false, minimumSeq: minimumSeq) }
    }

    /// Users online (or not) on server `uid`; with `replacing`, the whole list of that
    /// server's. The directory follows the users whose presence changed cluster-wide.
    private func setRemote(_ userIDs: [String], online: Bool, on uid: String, replacing: Bool) {
        var changed: [(String, Bool)] = []
        cluster.withLock { state in
            guard state != nil else { return }
            if replacing {
                for userID in state!.onlineOn[uid] ?? [] where !userIDs.contains(userID) {
                    state!.remoteOnline[userID]?.remove(uid)
                    if state!.remoteOnline[userID]?.isEmpty == true {
                        state!.remoteOnline.removeValue(forKey: userID)
                        changed.append((userID, false))
                    }
                }
                state!.onlineOn[uid] = []
            }
            for userID in userIDs {
                let before = !(state!.remoteOnline[userID]?.isEmpty ?? true)
                // A server says at most `maxUsers` users are online on it (a user this server
                // does not know yet, announced a moment later, counts: bounded all the same).
                if online, state!.onlineOn[uid, default: []].count >= options.maxUsers, state!.onlineOn[uid]?.contains(userID) != true { continue }
                if online {
                    state!.remoteOnline[userID, default: []].insert(uid)
                    state!.onlineOn[uid, default: []].insert(userID)
                } else {
                    state!.remoteOnline[userID]?.remove(uid)
                    state!.onlineOn[uid]?.remove(userID)
                    if state!.remoteOnline[userID]?.isEmpty == true { state!.remoteOnline.removeValue(forKey: userID) }
                }
                let after = !(state!.remoteOnline[userID]?.isEmpty ?? true)
                if before != after { changed.append((userID, after)) }
            }
        }
        guard !changed.isEmpty else { return }
        let wall = wallNow
        let told = records.withLock { records in
            changed.compactMap { userID, online -> (String, String, Bool)? in
                // Sockets here keep a user online whatever the others say.
                records.directory.update(userID) { user -> (String, String, Bool)? in
                    guard user.sockets == 0 else { return nil }
                    user.setConnected(online, at: wall)
                    return (userID, user.session.username, online)
                } ?? nil
            }
        }
        // This server's clients hear of a change as this server sees it (the others tell theirs).
        for (userID, username, online) in told { tellClients(userID, cameAs: online ? username : nil) }
    }

    /// This server's clients hear that a user came under `username` (`user connected`), or,
    /// with nil, left.
    private func tellClients(_ userID: String, cameAs username: String?) {
        if let username {
            socketIO.main.except().emitHere(
                ChatEventName.userConnected, arguments: [UserEntry(userID: userID, username: username, connected: true, messages: []).json]
            )
        } else {
            socketIO.main.except().emitHere(ChatEventName.userDisconnected, arguments: [.string(userID)])
        }
    }

    /// A malformed message from another server: counted, and logged at most once per 10 s.
    private func refuse(_ event: String, from uid: String) {
        let now = clock.now
        let count = cluster.withLock { state -> Int? in
            guard state != nil else { return nil }
            state!.malformed += 1
            guard state!.lastComplaint.map({ now - $0 >= .seconds(10) }) ?? true else { return nil }
            state!.lastComplaint = now
            defer { state!.malformed = 0 }
            return state!.malformed
        }
        if let count { logger.warning("malformed messages from another server of the cluster: dropped", metadata: ["last": "\(event)", "server": "\(uid)", "count": "\(count)"]) }
    }

    static func isHex(_ text: String, length: Int) -> Bool {
        text.utf8.count == length && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}
