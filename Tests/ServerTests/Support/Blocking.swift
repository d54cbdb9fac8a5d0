import Foundation
import Glibc
import Synchronization

// The clients of these tests use blocking POSIX sockets, always on threads of their own:
// Swift's cooperative pool never waits on the network, and every read has a timeout, so a
// server that does not answer fails a test instead of hanging it.

/// A wait that ran out.
struct TestTimeout: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Runs blocking work on a new thread and awaits its result.
func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        let thread = Thread { continuation.resume(with: Result { try work() }) }
        thread.start()
    }
}

/// Polls a condition until it holds or the time is up; whether it held.
func eventually(within timeout: Duration = .seconds(3), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

/// A queue of values from a producer thread to one async consumer at a time. After
/// `finish(with:)` and once the queue is drained, `next` returns that last value forever.
final class Mailbox<Element: Sendable>: Sendable {
    private struct Waiter {
        var id: Int
        var continuation: CheckedContinuation<Element, any Error>
        var timer: Task<Void, Never>?
    }

    private struct State {
        var items: [Element] = []
        var terminal: Element?
        var waiter: Waiter?
        var nextID = 0
    }

    private let state = Mutex(State())

    init() {}

    func put(_ element: Element) {
        let waiter: Waiter? = state.withLock { state in
            guard state.terminal == nil else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.items.append(element)
            return nil
        }
        waiter?.timer?.cancel()
        waiter?.continuation.resume(returning: element)
    }

    /// No more values: once the queue is empty, `next` returns `element`.
    func finish(with element: Element) {
        let waiter: Waiter? = state.withLock { state in
            guard state.terminal == nil else { return nil }
            state.terminal = element
            let waiter = state.waiter
            state.waiter = nil
            return waiter
        }
        waiter?.timer?.cancel()
        waiter?.continuation.resume(returning: element)
    }

    /// The next value; throws `TestTimeout` when none comes within `timeout`.
    func next(timeout: Duration, _ what: @autoclosure () -> String) async throws -> Element {
        let description = what()
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Element, any Error>) in
            let outcome: MailboxOutcome<Element> = state.withLock { state in
                if !state.items.isEmpty { return .ready(state.items.removeFirst()) }
                if let terminal = state.terminal { return .ready(terminal) }
                if state.waiter != nil { return .busy }
                state.nextID += 1
                state.waiter = Waiter(id: state.nextID, continuation: continuation)
                return .wait(state.nextID)
            }
            switch outcome {
            case .ready(let element):
                continuation.resume(returning: element)
            case .busy:
                continuation.resume(throwing: MailboxBusy())
            case .wait(let id):
                let timer = Task {
                    do { try await Task.sleep(for: timeout) } catch { return }
                    self.expire(id, description)
                }
                let stale = state.withLock { state -> Bool in
                    guard state.waiter?.id == id else { return true }
                    state.waiter?.timer = timer
                    return false
                }
                if stale { timer.cancel() }
            }
        }
    }

    private func expire(_ id: Int, _ what: String) {
        let waiter: Waiter? = state.withLock { state in
            guard let waiter = state.waiter, waiter.id == id else { return nil }
            state.waiter = nil
            return waiter
        }
        waiter?.continuation.resume(throwing: TestTimeout(what: what))
    }

    struct MailboxBusy: Error {}
}

private enum MailboxOutcome<Element> {
    case ready(Element)
    case busy
    case wait(Int)
}

// MARK: - TCP

enum SocketError: Error, CustomStringConvertible {
    case system(String, Int32)
    case timeout
    case closed

    var description: String {
        switch self {
        case .system(let call, let code): return "\(call): \(String(cString: strerror(code)))"
        case .timeout: return "socket read timed out"
        case .closed: return "socket closed"
        }
    }
}

/// A blocking TCP connection to 127.0.0.1. Reads are made by one owning thread; writes,
/// `shutdown` and `close` may come from any thread and are serialised by a lock, so the
/// descriptor is never used after it is closed (and possibly reused by another test).
final class TCPSocket: Sendable {
    private let fd: Int32
    private let closed = Mutex(false)

    private init(fd: Int32) { self.fd = fd }

    /// - Parameter receiveBuffer: the kernel's receive buffer for it (SO_RCVBUF), when a
    ///   test needs the server's writes to back up soon.
    static func connect(port: Int, receiveBuffer: Int32? = nil) throws -> TCPSocket {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError.system("socket", errno) }
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            let code = errno
            Glibc.close(fd)
            throw SocketError.system("connect", code)
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let socket = TCPSocket(fd: fd)
        socket.setTimeout(SO_SNDTIMEO, .seconds(5))
        socket.setTimeout(SO_RCVTIMEO, .seconds(5))
        return socket
    }

    /// How long one `receive` waits before it throws `SocketError.timeout`.
    func setReceiveTimeout(_ duration: Duration) { setTimeout(SO_RCVTIMEO, duration) }

    private func setTimeout(_ option: Int32, _ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, option, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Up to `max` bytes; empty at the end of the stream.
    func receive(max: Int = 65536) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: max)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, max, 0) }
            if n >= 0 { return Array(buffer.prefix(n)) }
            let code = errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { throw SocketError.timeout }
            throw SocketError.system("recv", code)
        }
    }

    func sendAll(_ bytes: [UInt8]) throws {
        try closed.withLock { closed in
            guard !closed else { throw SocketError.closed }
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeBytes {
                    send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                }
                if n < 0 {
                    let code = errno
                    if code == EINTR { continue }
                    throw SocketError.system("send", code)
                }
                offset += n
            }
        }
    }

    /// Ends both directions (a FIN to the peer) and wakes a blocked reader; the
    /// descriptor stays open until `close`.
    func shutdown() {
        closed.withLock { closed in
            if !closed { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    func close() {
        closed.withLock { closed in
            guard !closed else { return }
            closed = true
            Glibc.close(fd)
        }
    }
}

/// Buffered reading of an HTTP/1.1 response from a socket.
struct ByteReader {
    let socket: TCPSocket
    var buffer: [UInt8] = []

    init(_ socket: TCPSocket) { self.socket = socket }

    /// Reads more; false at the end of the stream.
    mutating func fill() throws -> Bool {
        let bytes = try socket.receive()
        if bytes.isEmpty { return false }
        buffer += bytes
        return true
    }

    /// The status line and header fields (names lower-cased), up to the blank line.
    mutating func readHead() throws -> (status: Int, headers: [String: String]) {
        while true {
            if let end = buffer.firstRange(of: [13, 10, 13, 10]) {
                let head = String(decoding: buffer[..<end.lowerBound], as: UTF8.self)
                buffer.removeFirst(end.upperBound)
                var lines = head.components(separatedBy: "\r\n")
                let statusLine = lines.removeFirst().split(separator: " ")
                guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
                    throw SocketError.system("bad status line: \(head)", 0)
                }
                var headers: [String: String] = [:]
                for line in lines {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    let name = line[..<colon].lowercased()
                    let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                    headers[name] = headers[name].map { $0 + ", " + value } ?? value
                }
                return (status, headers)
            }
            guard try fill() else { throw SocketError.closed }
        }
    }

    mutating func readExactly(_ count: Int) throws -> [UInt8] {
        while buffer.count < count {
            guard try fill() else { throw SocketError.closed }
        }
        let bytes = Array(buffer.prefix(count))
        buffer.removeFirst(count)
        return bytes
    }

    mutating func readLine() throws -> String {
        while true {
            if let end = buffer.firstRange(of: [13, 10]) {
                let line = String(decoding: buffer[..<end.lowerBound], as: UTF8.self)
                buffer.removeFirst(end.upperBound)
                return line
            }
            guard try fill() else { throw SocketError.closed }
        }
    }

    mutating func readToEnd() throws -> [UInt8] {
        while try fill() {}
        defer { buffer = [] }
        return buffer
    }
}
