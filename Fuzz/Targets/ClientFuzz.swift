import Chat
import EngineIOProtocol
import Foundation
import JSON
import SocketIOProtocol

extension Fuzz {
    /// A hostile server, as the client reads it: WebSocket messages (cut from the bytes as
    /// `frames(in:)` cuts them) through the Engine.IO packet decoder, one Socket.IO decoder,
    /// the chat schema's payload decoding (`ServerEvent.decode`, as `ChatClient` decodes), into the
    /// `ChatState` reducer; plus the person's own selections between them. After every
    /// change the state must hold together: the order is the users, sorted, with yourself
    /// first; the counts kept (online, positions, lookalikes) are what recounting gives; no
    /// conversation holds more than the history limit. (The WebSocket framing itself is
    /// NIO's, fuzzed by NIO.)
    public static func client(_ input: UnsafeRawBufferPointer) {
        var state = ChatState(historyLimit: 8)
        var decoder = SocketIOPacketDecoder(maxAttachmentBytes: 1 << 16)
        let at = Date(timeIntervalSince1970: 1_700_000_000)
        for (n, frame) in frames(in: input.bytes).enumerated() {
            let packet: EngineIOPacket
            do {
                packet = try EngineIOPacket(decoding: frame)
            } catch {
                continue
            }
            switch packet {
            case .message(let data):
                guard case .success(let socketIO?) = Result(catching: { () throws(SocketIOParseError) in try decoder.decode(data) }) else {
                    continue
                }
                for event in chatEvents(socketIO, at: at) {
                    state.apply(event)
                    checkState(state)
                }
            case .close:
                state.apply(.offline(reason: "closed"))
                checkState(state)
            default:
                break
            }
            // The person looks at someone now and then: unread counts and selection move.
            if n % 3 == 2 {
                let target = state.order.isEmpty ? nil : state.order[n % state.order.count]
                state.apply(.select(userID: target))
                checkState(state)
            }
        }
    }

    /// What the chat client makes of a Socket.IO packet: its lifecycle as `ChatClient` reports
    /// it, and its events through the one mapping the client uses (`ServerEvent.decode`).
    static func chatEvents(_ packet: SocketIOPacket, at: Date) -> [ChatEvent] {
        switch packet.kind {
        case .connect: return [.connected(flushed: [])]
        case .disconnect: return [.offline(reason: "server disconnect")]
        case .connectError:
            let reason = packet.data?["message"]?.stringValue ?? "refused"
            if LoginRefusal.forgetsSession(reason) { return [.offline(reason: reason), .loggedOut(reason: reason)] }
            return [.refused(reason: reason, attempt: 1, retryIn: .seconds(2))]
        case .ack, .binaryAck: return []
        case .event, .binaryEvent:
            guard let (name, arguments) = packet.event else { return [] }
            switch ServerEvent.decode(name: name, arguments: arguments, at: at).event {
            case .session(let session)?: return [.session(userID: session.userID, username: "me")]
            case .chat(let event)?: return [event]
            case nil: return []
            }
        }
    }

    /// Everything the reducer keeps incrementally, recounted.
    static func checkState(_ state: ChatState) {
        let users = state.users
        require(users.count == state.order.count, "the order has \(state.order.count) entries for \(users.count) users")
        require(Set(users.map(\.id)).count == users.count, "a user is in the order twice")
        for (n, user) in users.enumerated() {
            require(state.order[n] == user.id, "order[\(n)] is not the user walked to")
            require(state.position(of: user.id) == n, "position of \(user.id) is \(state.position(of: user.id) ?? -1), not \(n)")
            require(user.messages.count <= 8, "\(user.messages.count) messages kept past the limit of 8")
            require(user.unreadCount >= 0 && user.queuedCount >= 0, "negative counts for \(user.id)")
            require(user.isSelf == (user.id == state.selfID), "\(user.id) isSelf \(user.isSelf), selfID \(state.selfID ?? "nil")")
        }
        for (a, b) in zip(users, users.dropFirst()) {
            let keyA = UserOrder.Key(isSelf: a.isSelf, username: a.username, userID: a.id)
            let keyB = UserOrder.Key(isSelf: b.isSelf, username: b.username, userID: b.id)
            require(keyA < keyB, "\(a.id) and \(b.id) are out of order")
        }
        require(state.onlineCount == users.filter(\.isConnected).count, "online count \(state.onlineCount) is not \(users.filter(\.isConnected).count)")
        var skeletons: [String: Int] = [:]
        for user in users { skeletons[Username.skeleton(user.username), default: 0] += 1 }
        for user in users {
            let expected = skeletons[Username.skeleton(user.username), default: 0] > 1
            require(state.hasLookalike(user.id) == expected, "\(user.id) lookalike \(!expected), recounted \(expected)")
        }
    }
}
