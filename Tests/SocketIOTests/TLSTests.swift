import EngineIO
import Foundation
import SocketIO
import SocketIOTesting
import Testing

/// Both WebSocket transports, for the tests that exercise the transport itself.
enum TransportKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case nio, swiftWebSocket
    var description: String { rawValue }

    func factory(_ options: WebSocketTransportFactory.Options) -> any EngineIOTransportFactory {
        switch self {
        case .nio: NIOWebSocketTransportFactory(options: options)
        case .swiftWebSocket: WebSocketTransportFactory(options: options)
        }
    }
}

/// `wss://`: certificates are verified unless the caller explicitly opts out.
@Suite(.timeLimit(.minutes(1))) struct TLSTests {
    static let certificate = Bundle.module.path(forResource: "test-cert", ofType: "pem")!
    static let key = Bundle.module.path(forResource: "test-key", ofType: "pem")!

    func connect(_ options: WebSocketTransportFactory.Options, _ kind: TransportKind) async throws -> (FakeSocketIOServer, Socket, SocketEventRecorder) {
        let server = try await FakeSocketIOServer.start(options: .init(tls: (Self.certificate, Self.key)))
        #expect(server.url.hasPrefix("https://"))
        let manager = try SocketManager(
            url: server.url,
            configuration: .init(
                reconnection: ReconnectPolicy(isEnabled: false),
                transport: kind.factory(options)
            )
        )
        let socket = try await manager.socket(auth: { ["username": "tls"] })
        let events = await SocketEventRecorder(socket)
        await socket.connect()
        return (server, socket, events)
    }

    @Test(arguments: TransportKind.allCases)
    func aSelfSignedCertificateIsRefusedByDefault(kind: TransportKind) async throws {
        let (server, socket, events) = try await connect(.init(), kind)
        let event = try await events.next()
        guard case .connectError(let error) = event else { throw Unexpected(event) }
        #expect(error.source == .transport)
        #expect(!(await socket.isConnected))
        await server.stop()
    }

    @Test(arguments: TransportKind.allCases)
    func theExplicitOptOutAcceptsIt(kind: TransportKind) async throws {
        let (server, socket, events) = try await connect(.init(allowsInsecureTLS: true), kind)
        let connection = try await server.nextConnection()
        _ = try await connection.expectConnect()
        connection.accept()
        try await events.connected()
        try await socket.emit("over tls", "é中😀")
        #expect(try await connection.nextEvent().arguments == ["é中😀"])
        await socket.disconnect()
        await server.stop()
    }

    @Test(arguments: TransportKind.allCases)
    func anIPAddressWithTLSIsAClearError(kind: TransportKind) async throws {
        let manager = try SocketManager(
            url: "https://127.0.0.1:1",
            configuration: .init(reconnection: .init(isEnabled: false), transport: kind.factory(.init()))
        )
        let socket = try await manager.socket()
        let events = await SocketEventRecorder(socket)
        await socket.connect()
        let event = try await events.next()
        guard case .connectError(let error) = event else { throw Unexpected(event) }
        #expect(error.message.contains("need the server's host name"))
    }

    @Test(arguments: TransportKind.allCases)
    func aTrustedPrivateCAIsVerifiedAndAccepted(kind: TransportKind) async throws {
        let (server, socket, events) = try await connect(.init(trustedCertificatesFile: Self.certificate), kind)
        let connection = try await server.nextConnection()
        _ = try await connection.expectConnect()
        connection.accept()
        try await events.connected()
        await socket.disconnect()
        await server.stop()
    }
}
