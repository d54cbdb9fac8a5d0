public import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import WSClient

/// The WebSocket transport, on hummingbird-project/swift-websocket (NIO, with TLS).
public struct WebSocketTransportFactory: EngineIOTransportFactory {
    public struct Options: Sendable {
        /// Largest message accepted from the server, in bytes.
        public var maxIncomingMessageSize: Int
        /// Skip certificate verification: only for self-signed test servers.
        public var allowsInsecureTLS: Bool
        /// A PEM file of certificates to trust instead of the system's (a private CA).
        public var trustedCertificatesFile: String?
        /// Extra HTTP headers for the upgrade request.
        public var headers: [(name: String, value: String)]

        public init(
            maxIncomingMessageSize: Int = 16 << 20,
            allowsInsecureTLS: Bool = false,
            trustedCertificatesFile: String? = nil,
            headers: [(name: String, value: String)] = []
        ) {
            self.maxIncomingMessageSize = maxIncomingMessageSize
            self.allowsInsecureTLS = allowsInsecureTLS
            self.trustedCertificatesFile = trustedCertificatesFile
            self.headers = headers
        }
    }

    public var options: Options
    public var logger: Logger

    public init(options: Options = .init(), logger: Logger = .disabled) {
        self.options = options
        self.logger = logger
    }

    public func connect(to endpoint: EngineIOEndpoint) async throws -> any EngineIOTransport {
        var configuration = WebSocketClientConfiguration(
            // Headroom over the message limit, so that an oversize message is reported as
            // such by `messages(maxSize:)` instead of the frame decoder dropping the connection.
            maxFrameSize: min(max(options.maxIncomingMessageSize, 1 << 16) * 4, Int(UInt32.max)),
            closeTimeout: .seconds(2)
        )
        for header in options.headers {
            if let name = HTTPField.Name(header.name) {
                configuration.additionalHeaders.append(HTTPField(name: name, value: header.value))
            }
        }
        let tls = try options.tlsConfiguration(for: endpoint)
        return try await WebSocketTransport.connect(
            url: endpoint.webSocketURL,
            configuration: configuration,
            tls: tls,
            maxMessageSize: options.maxIncomingMessageSize,
            logger: logger
        )
    }
}

import HTTPTypes

extension WebSocketTransportFactory.Options {
    /// The client TLS settings for a `wss://` endpoint (nil for `ws://`): certificates verified
    /// against the system's roots or `trustedCertificatesFile`, unless `allowsInsecureTLS`.
    func tlsConfiguration(for endpoint: EngineIOEndpoint) throws(WebSocketTransportError) -> TLSConfiguration? {
        guard endpoint.scheme.isSecure else { return nil }
        // Both transports send the host as the TLS server name (SNI), which cannot carry an address,
        // and a certificate is checked against a host name.
        guard !endpoint.hostIsIPAddress else { throw .tlsNeedsHostName(endpoint.host) }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let file = trustedCertificatesFile { tls.trustRoots = .file(file) }
        if allowsInsecureTLS { tls.certificateVerification = .none }
        return tls
    }
}

public enum WebSocketTransportError: Error, Sendable, Equatable, CustomStringConvertible {
    case tlsNeedsHostName(String)
    /// The server sent a message larger than `maxIncomingMessageSize`.
    case messageTooLarge(limit: Int)

    public var description: String {
        switch self {
        case .tlsNeedsHostName(let address):
            return "https:// and wss:// need the server's host name, not an IP address (\(address)): TLS names the server by host name"
        case .messageTooLarge(let limit):
            return "the server sent a message larger than \(limit) bytes"
        }
    }
}

/// Bridges swift-websocket's scoped `connect { inbound, outbound, context in }`
/// to a long-lived object: a task runs the scope, forwarding inbound messages
/// to a stream and draining an outbound queue into the socket.
final class WebSocketTransport: EngineIOTransport {
    let inbound: AsyncThrowingStream<[EngineIOPacket], any Error>
    private let outbound: AsyncStream<EngineIOData>.Continuation
    private let task: Mutex<Task<Void, Never>?>

    private init(inbound: AsyncThrowingStream<[EngineIOPacket], any Error>, outbound: AsyncStream<EngineIOData>.Continuation) {
        self.inbound = inbound
        self.outbound = outbound
        self.task = Mutex(nil)
    }

    func send(_ frame: EngineIOData) {
        outbound.yield(frame)
    }

    func close() {
        // Ending the outbound queue ends the scope (after writing what was queued), which sends the close frame.
        outbound.finish()
    }

    func waitUntilClosed() async {
        await task.withLock { $0 }?.value
    }

    static func connect(
        url: String,
        configuration: WebSocketClientConfiguration,
        tls: TLSConfiguration?,
        maxMessageSize: Int,
        logger: Logger
    ) async throws -> WebSocketTransport {
        let (inboundStream, inboundContinuation) = AsyncThrowingStream.makeStream(of: [EngineIOPacket].self)
        let (outboundStream, outboundContinuation) = AsyncStream.makeStream(of: EngineIOData.self)
        let transport = WebSocketTransport(inbound: inboundStream, outbound: outboundContinuation)
        let opened = OneShot<Void>()

        let task = Task {
            do {
                try await WebSocketClient.connect(
                    url: url,
                    configuration: configuration,
                    tlsConfiguration: tls,
                    logger: logger
                ) { inbound, writer, _ in
                    opened.resolve(.success(()))
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            for await frame in outboundStream {
                                switch frame {
                                case .text(let text): try await writer.write(.text(text))
                                case .binary(let bytes): try await writer.write(.binary(ByteBuffer(bytes: bytes)))
                                }
                            }
                        }
                        group.addTask {
                            for try await message in inbound.messages(maxSize: maxMessageSize) {
                                // messages(maxSize:) bounds fragmented messages only; bound single frames too.
                                guard message.byteCount <= maxMessageSize else {
                                    throw WebSocketTransportError.messageTooLarge(limit: maxMessageSize)
                                }
                                switch message {
                                case .text(let text): inboundContinuation.yield([try EngineIOPacket(decodingText: text)])
                                case .binary(var buffer):
                                    inboundContinuation.yield([.message(.binary(buffer.readBytes(length: buffer.readableBytes) ?? []))])
                                }
                            }
                        }
                        // Whichever side ends first (peer closed, or close() called) ends the connection.
                        try await group.next()
                        group.cancelAll()
                    }
                }
                inboundContinuation.finish()
            } catch let error as WebSocketTransportError {
                inboundContinuation.finish(throwing: error)
            } catch let error as EngineIOParseError {
                inboundContinuation.finish(throwing: error)
            } catch let error as WebSocketClientError where error == .serverSentMessageTooLarge {
                inboundContinuation.finish(throwing: WebSocketTransportError.messageTooLarge(limit: maxMessageSize))
            } catch {
                opened.resolve(.failure(error))
                inboundContinuation.finish(throwing: error)
            }
            outboundContinuation.finish()
        }
        transport.task.withLock { $0 = task }
        do {
            try await withTaskCancellationHandler {
                try await opened.value
            } onCancel: {
                task.cancel()
            }
        } catch {
            task.cancel()
            throw error
        }
        return transport
    }

    deinit {
        outbound.finish()
    }
}

extension WebSocketMessage {
    var byteCount: Int {
        switch self {
        case .text(let text): return text.utf8.count
        case .binary(let buffer): return buffer.readableBytes
        }
    }
}

/// A value delivered once, awaited by one task.
final class OneShot<Value: Sendable>: Sendable {
    private enum State {
        case waiting(CheckedContinuation<Value, any Error>?)
        case resolved(Result<Value, any Error>)
    }
    private let state = Mutex<State>(.waiting(nil))

    /// The first call wins; later calls are ignored.
    func resolve(_ result: Result<Value, any Error>) {
        let waiter: CheckedContinuation<Value, any Error>? = state.withLock { state in
            guard case .waiting(let waiter) = state else { return nil }
            state = .resolved(result)
            return waiter
        }
        waiter?.resume(with: result)
    }

    var value: Value {
        get async throws {
            try await withCheckedThrowingContinuation { continuation in
                let ready: Result<Value, any Error>? = state.withLock { state in
                    switch state {
                    case .waiting:
                        state = .waiting(continuation)
                        return nil
                    case .resolved(let result):
                        return result
                    }
                }
                if let ready { continuation.resume(with: ready) }
            }
        }
    }
}
