import EngineIO
import SocketIOTesting
import Synchronization
import Testing

/// A transport whose server side the test plays by hand.
final class MemoryTransport: EngineIOTransport {
    let inbound: AsyncThrowingStream<[EngineIOPacket], any Error>
    private let server: AsyncThrowingStream<[EngineIOPacket], any Error>.Continuation
    private let state = Mutex((sent: [EngineIOData](), closed: false))

    init() {
        (inbound, server) = AsyncThrowingStream.makeStream(of: [EngineIOPacket].self)
    }

    func send(_ frame: EngineIOData) { state.withLock { $0.sent.append(frame) } }
    func close() {
        state.withLock { $0.closed = true }
        server.finish()
    }

    func waitUntilClosed() async {}

    var sent: [EngineIOData] { state.withLock { $0.sent } }
    var isClosed: Bool { state.withLock { $0.closed } }

    func serverSends(_ packet: EngineIOPacket) { server.yield([packet]) }
    func serverSends(batch packets: [EngineIOPacket]) { server.yield(packets) }
    /// A frame as a real transport would hand it on: decoded, or the parse error.
    func serverSendsRaw(_ frame: EngineIOData) {
        do {
            server.yield([try EngineIOPacket(decoding: frame)])
        } catch {
            server.finish(throwing: error)
        }
    }
    func serverEnds(throwing error: (any Error)? = nil) {
        if let error { server.finish(throwing: error) } else { server.finish() }
    }
}

struct Boom: Error {}

@Suite struct EngineIOConnectionTests {
    let handshake = EngineIOHandshake(
        sid: "s1",
        pingInterval: .milliseconds(100),
        pingTimeout: .milliseconds(50),
        maxPayload: 100
    )

    func open(_ transport: MemoryTransport, clock: ManualClock = ManualClock()) async throws -> EngineIOConnection {
        transport.serverSends(.open(handshake))
        return try await EngineIOConnection.open(over: transport, clock: clock)
    }

    @Test func handshakeThenMessagesInOrder() async throws {
        let transport = MemoryTransport()
        let connection = try await open(transport)
        #expect(connection.handshake == handshake)
        transport.serverSends(.message(.text("a")))
        transport.serverSends(.noop)
        transport.serverSends(.message(.binary([9])))
        transport.serverSends(.message(.text("b")))
        transport.serverEnds()
        var events: [EngineIOConnection.Event] = []
        for await event in connection.events { events.append(event) }
        #expect(events == [.message(.text("a")), .message(.binary([9])), .message(.text("b")), .closed(.transportClose)])
    }

    @Test func aBatchIsDeliveredInOrderWithPingsAnsweredAndGarbageStoppingIt() async throws {
        let transport = MemoryTransport()
        let connection = try await open(transport)
        transport.serverSends(batch: [.message(.text("a")), .ping(), .message(.text("b"))])
        transport.serverSendsRaw(.text("4c"))
        transport.serverSends(batch: [.message(.text("d")), .message(.text("e"))])
        transport.serverSendsRaw(.text("9"))
        transport.serverSends(batch: [.message(.text("never"))])
        var events: [EngineIOConnection.Event] = []
        for await event in connection.events { events.append(event) }
        #expect(events.dropLast() == [.message(.text("a")), .message(.text("b")), .message(.text("c")), .message(.text("d")), .message(.text("e"))])
        guard case .closed(.parseError)? = events.last else {
            Issue.record("expected a parse error last, got \(String(describing: events.last))")
            return
        }
        #expect(transport.sent.first == .text("3"))
    }

    @Test func everyPingGetsAPongWithItsPayload() async throws {
        let transport = MemoryTransport()
        let connection = try await open(transport)
        transport.serverSends(.ping())
        transport.serverSends(.ping("probe"))
        transport.serverSends(.message(.text("sync")))
        var iterator = connection.events.makeAsyncIterator()
        #expect(await iterator.next() == .message(.text("sync")))
        #expect(transport.sent == [.text("3"), .text("3probe")])
    }

    @Test func silenceBeyondIntervalPlusTimeoutIsAPingTimeout() async throws {
        let clock = ManualClock()
        let transport = MemoryTransport()
        let connection = try await open(transport, clock: clock)
        try await clock.waitForSleepers(1)
        #expect(clock.pendingSleeps == [.milliseconds(150)])
        clock.advance(by: .milliseconds(149))
        #expect(!transport.isClosed)
        clock.advance(by: .milliseconds(1))
        var iterator = connection.events.makeAsyncIterator()
        #expect(await iterator.next() == .closed(.pingTimeout))
        #expect(transport.isClosed)
    }

    @Test func aPingRestartsTheWatchdog() async throws {
        let clock = ManualClock()
        let transport = MemoryTransport()
        let connection = try await open(transport, clock: clock)
        try await clock.waitForSleepers(1)
        clock.advance(by: .milliseconds(120))
        transport.serverSends(.ping())
        transport.serverSends(.message(.text("after ping")))
        var iterator = connection.events.makeAsyncIterator()
        #expect(await iterator.next() == .message(.text("after ping")))
        // The new timer runs the full 150 ms from the ping.
        try await clock.waitForSleepers(1)
        #expect(clock.pendingSleeps == [.milliseconds(150)])
        clock.advance(by: .milliseconds(149))
        #expect(!transport.isClosed)
        clock.advance(by: .milliseconds(1))
        #expect(await iterator.next() == .closed(.pingTimeout))
    }

    @Test func oversizeMessagesAreRefusedAndNotSent() async throws {
        let transport = MemoryTransport()
        let connection = try await open(transport)
        try connection.send(.text(String(repeating: "x", count: 99)))  // 99 + type byte = 100
        #expect(throws: EngineIOError.payloadTooLarge(size: 101, limit: 100)) {
            try connection.send(.text(String(repeating: "x", count: 100)))
        }
        #expect(throws: EngineIOError.payloadTooLarge(size: 101, limit: 100)) {
            try connection.send(.binary([UInt8](repeating: 0, count: 101)))
        }
        #expect(transport.sent == [.text("4" + String(repeating: "x", count: 99))])
    }

    @Test func garbageClosesWithAParseError() async throws {
        let transport = MemoryTransport()
        let connection = try await open(transport)
        transport.serverSendsRaw(.text("9garbage"))
        var iterator = connection.events.makeAsyncIterator()
        guard case .closed(.parseError(let why))? = await iterator.next() else {
            Issue.record("expected a parse error")
            return
        }
        #expect(why.contains("unknown Engine.IO packet type"))
        #expect(await iterator.next() == nil)
        #expect(throws: EngineIOError.closed) { try connection.send(.text("late")) }
    }

    @Test func handshakeMustComeFirst() async {
        let transport = MemoryTransport()
        transport.serverSends(.message(.text("hi")))
        await #expect(throws: EngineIOError.self) {
            _ = try await EngineIOConnection.open(over: transport, clock: ManualClock())
        }
        #expect(transport.isClosed)
    }

    @Test func aClosedOrFailedTransportBeforeTheHandshakeIsAnError() async {
        let transport = MemoryTransport()
        transport.serverEnds(throwing: Boom())
        await #expect(throws: EngineIOError.self) {
            _ = try await EngineIOConnection.open(over: transport, clock: ManualClock())
        }
    }

    @Test func closePacketAndTransportErrors() async throws {
        let transport = MemoryTransport()
        let connection = try await open(transport)
        transport.serverSends(.close)
        var iterator = connection.events.makeAsyncIterator()
        #expect(await iterator.next() == .closed(.transportClose))

        let failing = MemoryTransport()
        let second = try await open(failing)
        failing.serverEnds(throwing: Boom())
        var events = second.events.makeAsyncIterator()
        guard case .closed(.transportError)? = await events.next() else {
            Issue.record("expected a transport error")
            return
        }
    }

    @Test func closingSendsACloseAndEndsTheEvents() async throws {
        let transport = MemoryTransport()
        let connection = try await open(transport)
        connection.close()
        var iterator = connection.events.makeAsyncIterator()
        #expect(await iterator.next() == .closed(.forcedClose))
        #expect(transport.sent == [.text("1")])
        #expect(transport.isClosed)
    }
}
