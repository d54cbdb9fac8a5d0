import Foundation
import SocketIOTesting
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Hostile clients for `parley-bench server --attack K`: the attacks of "parley-server under
/// attack", each made over and over by its own thread from its own source address
/// (127.66.0.x, when the server is on loopback), while the benchmark's benign pairs chat.
///
/// They pace themselves (`operationsPerSecond` each): they stand for clients on other
/// machines, and on this one their own CPU is taken from the server's two cores.
final class Attackers: Sendable {
    /// One attack, as a hostile client makes it.
    enum Kind: String, CaseIterable, Sendable {
        /// A polling session that never polls: POSTs of 3,000 CONNECT/DISCONNECT pairs.
        case pollingFlood = "polling_flood"
        /// Sessions opened and left without a CONNECT (half-open), as fast as allowed.
        case halfOpen = "half_open"
        /// Connections that send half a request head and stop (slowloris).
        case slowHeaders = "slow_headers"
        /// A CONNECT with a username of one grapheme and 900 KB.
        case hugeUsername = "huge_username"
        /// Large messages to a user who is offline, as fast as allowed (their history).
        case historyFlood = "history_flood"
        /// WebSocket logins that never read (the backlog of broadcasts).
        case nonReader = "non_reader"
    }

    struct Tally: Sendable {
        var operations = 0
        /// Answers that refused: HTTP 4xx/5xx, CONNECT_ERROR, an error ack.
        var refused = 0
        /// Connections the server closed on us.
        var closedByServer = 0
        var failures = 0
    }

    private let host: String
    private let port: Int
    private let count: Int
    private let kinds: [Kind]
    private let operationsPerSecond: Double
    private let running = Atomic<Bool>(false)
    private let tallies: Mutex<[Kind: Tally]>
    private let finished = Mutex(0)

    init(host: String, port: Int, count: Int, kinds: [Kind] = Kind.allCases, operationsPerSecond: Double) {
        self.host = host
        self.port = port
        self.count = count
        self.kinds = kinds.isEmpty ? Kind.allCases : kinds
        self.operationsPerSecond = operationsPerSecond
        self.tallies = Mutex(Dictionary(uniqueKeysWithValues: Kind.allCases.map { ($0, Tally()) }))
    }

    /// Starts `count` attackers, the kinds in turn.
    func start() {
        running.store(true, ordering: .relaxed)
        for index in 0..<count {
            let kind = kinds[index % kinds.count]
            let thread = Thread { [self] in
                attack(kind, index: index)
                finished.withLock { $0 += 1 }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Stops them; waits (at most 10 s) for every thread to end; what they did.
    func stop() async -> [Kind: Tally] {
        running.store(false, ordering: .relaxed)
        let deadline = ContinuousClock.now + .seconds(10)
        while finished.withLock({ $0 }) < count, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        return tallies.withLock { $0 }
    }

    private var isRunning: Bool { running.load(ordering: .relaxed) }

    private func record(_ kind: Kind, _ change: (inout Tally) -> Void) {
        tallies.withLock { change(&$0[kind, default: Tally()]) }
    }

    /// Where attacker `index` connects from: its own loopback address.
    private func source(_ index: Int) -> String? {
        host.hasPrefix("127.") ? "127.66.\(index / 250).\(1 + index % 250)" : nil
    }

    private func pace() {
        guard operationsPerSecond > 0 else { return }
        usleep(useconds_t(1e6 / operationsPerSecond))
    }

    // MARK: The attacks

    /// The payloads the attacks send again and again, made once.
    private static let hugeConnect = #"40{"username":"a"# + String(repeating: "\u{301}", count: 450_000) + #""}"#
    private static let largeContent = String(repeating: "x", count: 99_000)

    private func attack(_ kind: Kind, index: Int) {
        var held: [RawConnection] = []
        var sid: String?
        var attackerSession: (socket: RawConnection, victim: String)?
        while isRunning {
            switch kind {
            case .pollingFlood:
                do {
                    if sid == nil { sid = try handshake(index) }
                    guard let session = sid else { break }
                    let pairs = (0..<3_000).map { #"40{"username":"flood\#(index)x\#($0)"}\#u{1e}41"# }.joined(separator: "\u{1e}")
                    let reply = try request(index, "POST", "/socket.io/?EIO=4&transport=polling&sid=\(session)", body: pairs)
                    record(kind) { $0.operations += 1 }
                    if reply.status != 200 {
                        record(kind) { $0.refused += 1 }
                        sid = nil
                    }
                } catch {
                    record(kind) { $0.failures += 1 }
                    sid = nil
                }
            case .halfOpen:
                do {
                    let reply = try request(index, "GET", "/socket.io/?EIO=4&transport=polling")
                    record(kind) { $0.operations += 1 }
                    if reply.status != 200 { record(kind) { $0.refused += 1 } }
                } catch {
                    record(kind) { $0.failures += 1 }
                }
            case .slowHeaders:
                // Up to 64 connections each with half a head; the server closes them (408).
                forgetClosed(&held, kind)
                if held.count < 64, let connection = try? RawConnection(host: host, port: port, source: source(index)) {
                    if (try? connection.send(Array("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8))) != nil {
                        held.append(connection)
                        record(kind) { $0.operations += 1 }
                    }
                }
            case .hugeUsername:
                do {
                    guard let session = try handshake(index) else {
                        record(kind) { $0.refused += 1 }
                        break
                    }
                    let reply = try request(index, "POST", "/socket.io/?EIO=4&transport=polling&sid=\(session)", body: Self.hugeConnect)
                    record(kind) { $0.operations += 1 }
                    if reply.status != 200 {
                        record(kind) { $0.refused += 1 }
                    } else {
                        let answer = try request(index, "GET", "/socket.io/?EIO=4&transport=polling&sid=\(session)")
                        if answer.text.contains("44{") { record(kind) { $0.refused += 1 } }
                    }
                    _ = try? request(index, "POST", "/socket.io/?EIO=4&transport=polling&sid=\(session)", body: "1")
                } catch {
                    record(kind) { $0.failures += 1 }
                }
            case .historyFlood:
                do {
                    if attackerSession == nil {
                        // A victim who logs in once and leaves, then a sender on a WebSocket.
                        let victim = try login(index, username: "victim\(index)")
                        try victim.socket.send(ClientFrames.close())
                        victim.socket.close()
                        let sender = try login(index, username: "mallory\(index)")
                        attackerSession = (sender.socket, victim.userID)
                    }
                    guard let session = attackerSession else { break }
                    try session.socket.send(ClientFrames.text(#"421["private message",{"content":"\#(Self.largeContent)","to":"\#(session.victim)"}]"#))
                    record(kind) { $0.operations += 1 }
                    if let answers = try? session.socket.receiveAvailable(), answers.contains("rate limit exceeded") {
                        record(kind) { $0.refused += 1 }
                    }
                } catch {
                    record(kind) { $0.closedByServer += 1 }
                    attackerSession?.socket.close()
                    attackerSession = nil
                }
            case .nonReader:
                forgetClosed(&held, kind)
                if held.count < 16, let user = try? login(index, username: "reader\(index)x\(held.count)", readSession: false) {
                    held.append(user.socket)
                    record(kind) { $0.operations += 1 }
                } else if held.count < 16 {
                    record(kind) { $0.refused += 1 }
                }
            }
            pace()
        }
        for connection in held { connection.close() }
        attackerSession?.socket.close()
    }

    /// A new user logs in over WebSocket and receives its session: the server still serves.
    static func probeLogin(host: String, port: Int) throws -> Bool {
        let probe = Attackers(host: host, port: port, count: 0, operationsPerSecond: 0)
        let user = try probe.login(10_000, username: "probe\(Int.random(in: 1000...9999))")
        user.socket.close()
        return !user.userID.isEmpty
    }

    // MARK: Steps

    /// Drops (and counts) the held connections the server has closed.
    private func forgetClosed(_ held: inout [RawConnection], _ kind: Kind) {
        held.removeAll { connection in
            let closed = connection.isClosedByPeer()
            if closed {
                record(kind) { $0.closedByServer += 1 }
                connection.close()
            }
            return closed
        }
    }

    private func request(_ index: Int, _ method: String, _ target: String, body: String? = nil) throws -> RawReply {
        let connection = try RawConnection(host: host, port: port, source: source(index))
        defer { connection.close() }
        var head = "\(method) \(target) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\n"
        if let body { head += "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: \(body.utf8.count)\r\n" }
        try connection.send(Array((head + "\r\n" + (body ?? "")).utf8))
        return try connection.readReply()
    }

    private func handshake(_ index: Int) throws -> String? {
        let reply = try request(index, "GET", "/socket.io/?EIO=4&transport=polling")
        guard reply.status == 200 else { return nil }
        return Self.stringField("sid", in: reply.text)
    }

    /// The value of the first `"key":"…"` in text (IDs: no escapes inside).
    private static func stringField(_ key: String, in text: String) -> String? {
        guard let start = text.range(of: "\"\(key)\":\""), let end = text[start.upperBound...].firstIndex(of: "\"") else { return nil }
        return String(text[start.upperBound..<end])
    }

    /// A WebSocket login: the connection, and (when read) its user ID.
    func login(_ index: Int, username: String, readSession: Bool = true) throws -> (socket: RawConnection, userID: String) {
        let connection = try RawConnection(host: host, port: port, source: source(index))
        let head = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: \(host):\(port)\r\nUpgrade: websocket\r\n"
            + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        try connection.send(Array(head.utf8))
        let status = try connection.readHead()
        guard status == 101 else {
            connection.close()
            throw AttackError.refused(status)
        }
        try connection.send(ClientFrames.text(#"40{"username":"\#(username)"}"#))
        guard readSession else { return (connection, "") }
        var seen = ""
        let deadline = ContinuousClock.now + .seconds(5)
        while !seen.contains(#""session""#) || !seen.contains(#""userID":""#), ContinuousClock.now < deadline {
            seen += try connection.receiveAvailable(wait: true)
            if seen.contains("44{") {
                connection.close()
                throw AttackError.refused(0)
            }
        }
        guard let userID = Self.stringField("userID", in: seen) else {
            connection.close()
            throw AttackError.refused(0)
        }
        return (connection, userID)
    }
}

enum AttackError: Error {
    case refused(Int)
    case closed
    case system(String)
}

/// An HTTP reply, as much as the attackers need.
struct RawReply {
    var status: Int
    var text: String
}

/// A blocking TCP connection from a chosen source address, with a receive timeout.
final class RawConnection: @unchecked Sendable {
    private let fd: Int32
    private var buffer: [UInt8] = []

    init(host: String, port: Int, source: String?) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw AttackError.system("socket: \(errno)") }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            inet_pton(AF_INET, source, &local.sin_addr)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else {
                Glibc.close(fd)
                throw AttackError.system("bind \(source): \(errno)")
            }
        }
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &remote.sin_addr)
        let connected = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            Glibc.close(fd)
            throw AttackError.system("connect: \(errno)")
        }
    }

    func close() { Glibc.close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw AttackError.closed }
            offset += sent
        }
    }

    private func fill(wait: Bool = true) throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let flags = wait ? Int32(0) : Int32(MSG_DONTWAIT)
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, flags) }
        if count == 0 { throw AttackError.closed }
        if count < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK { return false }
            throw AttackError.closed
        }
        buffer += chunk[..<count]
        return true
    }

    /// Whether the server has closed the connection (without waiting).
    func isClosedByPeer() -> Bool {
        do {
            _ = try fill(wait: false)
            buffer.removeAll()
            return false
        } catch {
            return true
        }
    }

    /// What has arrived (at least one read when `wait`), as text.
    func receiveAvailable(wait: Bool = false) throws -> String {
        _ = try fill(wait: wait)
        defer { buffer.removeAll() }
        return String(decoding: buffer, as: UTF8.self)
    }

    func readHead() throws -> Int {
        while buffer.firstRange(of: [13, 10, 13, 10]) == nil {
            guard try fill() else { throw AttackError.closed }
        }
        let end = buffer.firstRange(of: [13, 10, 13, 10])!
        let head = String(decoding: buffer[..<end.lowerBound], as: UTF8.self)
        buffer.removeFirst(end.upperBound)
        return Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    func readReply() throws -> RawReply {
        let status = try readHead()
        while (try? fill()) == true {}
        return RawReply(status: status, text: String(decoding: buffer, as: UTF8.self))
    }
}
