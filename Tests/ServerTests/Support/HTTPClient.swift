import Foundation
import Synchronization

/// An HTTP/1.1 response as the test client read it.
struct HTTPReply: Sendable, CustomStringConvertible {
    var status: Int
    /// Header fields, names lower-cased (repeated fields joined with ", ").
    var headers: [String: String]
    var body: [UInt8]

    var text: String { String(decoding: body, as: UTF8.self) }

    subscript(header name: String) -> String? { headers[name.lowercased()] }

    var description: String { "HTTP \(status) \(text.debugDescription)" }
}

/// A minimal HTTP/1.1 client: one request per connection (`Connection: close`), on a
/// thread of its own.
enum HTTPClient {
    static func request(
        _ method: String = "GET",
        port: Int,
        _ target: String,
        headers: [(String, String)] = [],
        body: String? = nil,
        timeout: Duration = .seconds(5)
    ) async throws -> HTTPReply {
        let head = requestHead(method, port: port, target, headers: headers, contentLength: body.map { $0.utf8.count })
        let bytes = Array(head.utf8) + Array((body ?? "").utf8)
        return try await onThread {
            let socket = try TCPSocket.connect(port: port)
            defer { socket.close() }
            socket.setReceiveTimeout(timeout)
            try socket.sendAll(bytes)
            var reader = ByteReader(socket)
            return try readResponse(&reader)
        }
    }

    /// Starts a request and returns while it is in flight: the head and `bodyPrefix` are
    /// sent (`contentLength` may promise more), and the response is read in the background.
    static func start(
        _ method: String = "GET",
        port: Int,
        _ target: String,
        headers: [(String, String)] = [],
        contentLength: Int? = nil,
        bodyPrefix: String = "",
        timeout: Duration = .seconds(5)
    ) async throws -> InFlightRequest {
        let head = requestHead(method, port: port, target, headers: headers, contentLength: contentLength)
        let bytes = Array(head.utf8) + Array(bodyPrefix.utf8)
        let socket = try await onThread {
            let socket = try TCPSocket.connect(port: port)
            socket.setReceiveTimeout(timeout)
            do {
                try socket.sendAll(bytes)
            } catch {
                socket.close()
                throw error
            }
            return socket
        }
        let request = InFlightRequest(socket: socket)
        Thread {
            var reader = ByteReader(socket)
            request.result.put(Result { try readResponse(&reader) })
            socket.close()
        }.start()
        return request
    }

    /// Sends each of `requests` (raw bytes, as they are) on one connection and reads a
    /// response to each before the next is sent; then, with `thenEnd`, reads on to the end of
    /// the stream and returns what came before it (a server that keeps the connection open
    /// makes that fail, with a timeout).
    static func exchange(
        port: Int,
        _ requests: [String],
        responses: Int? = nil,
        thenEnd: Bool,
        timeout: Duration = .seconds(5)
    ) async throws -> (replies: [HTTPReply], rest: [UInt8]) {
        try await onThread {
            let socket = try TCPSocket.connect(port: port)
            defer { socket.close() }
            socket.setReceiveTimeout(timeout)
            var reader = ByteReader(socket)
            var replies: [HTTPReply] = []
            for request in requests {
                try socket.sendAll(Array(request.utf8))
                if responses == nil { replies.append(try readResponse(&reader)) }
            }
            for _ in 0..<(responses ?? 0) { replies.append(try readResponse(&reader)) }
            return (replies, thenEnd ? try reader.readToEnd() : [])
        }
    }

    static func requestHead(
        _ method: String,
        port: Int,
        _ target: String,
        headers: [(String, String)],
        contentLength: Int?
    ) -> String {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let contentLength {
            head += "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: \(contentLength)\r\n"
        } else if method == "POST" || method == "PUT" {
            head += "Content-Length: 0\r\n"
        }
        return head + "\r\n"
    }

    static func readResponse(_ reader: inout ByteReader) throws -> HTTPReply {
        let (status, headers) = try reader.readHead()
        var body: [UInt8] = []
        if status == 204 || status == 304 || (100..<200).contains(status) {
            // No body.
        } else if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            while true {
                let sizeLine = try reader.readLine()
                let size = Int(sizeLine.split(separator: ";")[0].trimmingCharacters(in: .whitespaces), radix: 16) ?? 0
                if size == 0 {
                    // Trailers, up to the blank line.
                    while try !reader.readLine().isEmpty {}
                    break
                }
                body += try reader.readExactly(size)
                _ = try reader.readExactly(2)
            }
        } else if let length = headers["content-length"].flatMap({ Int($0) }) {
            body = try reader.readExactly(length)
        } else {
            body = try reader.readToEnd()
        }
        return HTTPReply(status: status, headers: headers, body: body)
    }
}

/// A request started with `HTTPClient.start`.
final class InFlightRequest: Sendable {
    private let socket: TCPSocket
    fileprivate let result = Mailbox<Result<HTTPReply, any Error>>()

    fileprivate init(socket: TCPSocket) { self.socket = socket }

    /// Sends more of the body.
    func send(_ text: String) async throws {
        let socket = socket
        try await onThread { try socket.sendAll(Array(text.utf8)) }
    }

    /// Gives up on the request as a browser's `AbortController` does: the connection is
    /// closed under the server's feet.
    func abort() {
        socket.shutdown()
    }

    /// The response, once it is read.
    func response(timeout: Duration = .seconds(5)) async throws -> HTTPReply {
        try await result.next(timeout: timeout, "an HTTP response").get()
    }
}
