@testable import EngineIO
import SocketIOTesting
import Testing

/// A flooding server must not make the client buffer without bound: past a few
/// batches the NIO transport stops reading, and resumes when the consumer catches up.
@Suite(.timeLimit(.minutes(1))) struct BackpressureTests {
    @Test func theWindowHoldsReadsPastHighWaterAndReleasesThemAtLowWater() {
        let window = InboundWindow()
        for _ in 0..<InboundWindow.highWater - 1 { window.delivered() }
        #expect(window.mayRead())
        window.delivered()
        #expect(!window.mayRead())
        #expect(window.isHoldingRead)
        // Taking batches down to low water: only the last one releases the held read, once.
        var releases = 0
        for _ in 0..<(InboundWindow.highWater - InboundWindow.lowWater) where window.consumed() { releases += 1 }
        #expect(releases == 1)
        #expect(!window.isHoldingRead)
        #expect(!window.consumed())
        #expect(window.mayRead())
    }

    @Test func aReadHeldJustAsTheConsumerDrainedIsTakenBackByTheReader() {
        let window = InboundWindow()
        for _ in 0..<InboundWindow.highWater { window.delivered() }
        // The consumer drains everything while no read is held: nothing for it to release.
        for _ in 0..<InboundWindow.highWater { #expect(!window.consumed()) }
        #expect(window.mayRead())
    }

    @Test func aFloodIsHeldAtTheSocketAndArrivesWhole() async throws {
        let server = try await FakeSocketIOServer.start()
        let transport = try await NIOWebSocketTransportFactory().connect(to: EngineIOEndpoint(url: server.url))
        let nio = try #require(transport as? NIOWebSocketTransport)
        let connection = try await server.nextConnection()
        let count = 20_000
        let padding = String(repeating: "x", count: 300)
        for i in 0..<count { connection.sendRaw(.text("4\(i) \(padding)")) }

        // Nobody consumes yet: the reader stops at high water instead of buffering the flood.
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(20)
        while !nio.window.isHoldingRead, clock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(nio.window.isHoldingRead)
        #expect(nio.window.waitingBatches <= InboundWindow.highWater)

        var expected = 0
        var open = true
        for try await batch in transport.inbound {
            transport.consumedBatch()
            for packet in batch {
                if open {
                    // The fake server's open packet comes first.
                    open = false
                    if case .open = packet { continue }
                }
                guard case .message(.text(let text)) = packet, text.hasPrefix("\(expected) ") else {
                    Issue.record("frame \(expected) out of order: \(packet)")
                    return
                }
                expected += 1
            }
            if expected == count { break }
        }
        #expect(expected == count)
        transport.close()
        await server.stop()
    }
}

/// The NIO transport decodes Engine.IO packets on its event loop: a frame that is not a
/// packet ends its stream with the parse error, after the packets before it and before
/// anything after it, however the frames were split into reads.
@Suite(.timeLimit(.minutes(1))) struct NIOTransportDecodingTests {
    @Test(arguments: [EngineIOData.text("9 not engine.io"), .text("")])
    func garbageEndsTheStreamAfterWhatCameBeforeIt(garbage: EngineIOData) async throws {
        let server = try await FakeSocketIOServer.start()
        let transport = try await NIOWebSocketTransportFactory().connect(to: EngineIOEndpoint(url: server.url))
        let connection = try await server.nextConnection()
        connection.sendRaw(.text("4before"))
        connection.sendRaw(.text("2"))
        connection.sendRaw(garbage)
        connection.sendRaw(.text("4after"))
        var packets: [EngineIOPacket] = []
        var failure: (any Error)?
        do {
            for try await batch in transport.inbound {
                transport.consumedBatch()
                packets += batch
            }
        } catch {
            failure = error
        }
        // The fake server's open packet comes first.
        guard case .open? = packets.first else {
            Issue.record("expected the open packet first, got \(packets)")
            return
        }
        #expect(packets.dropFirst() == [.message(.text("before")), .ping()])
        #expect(failure is EngineIOParseError)
        #expect(!packets.contains(.message(.text("after"))))
        transport.close()
        await server.stop()
    }
}
