@testable import EngineIO
import JSON
import Testing

@Suite struct EngineIOPacketTests {
    @Test(arguments: [
        (EngineIOPacket.close, "1"),
        (.ping(), "2"),
        (.ping("probe"), "2probe"),
        (.pong(), "3"),
        (.pong("probe"), "3probe"),
        (.message(.text("hello")), "4hello"),
        (.message(.text("héllo 中文 😀")), "4héllo 中文 😀"),
        (.upgrade, "5"),
        (.noop, "6"),
    ])
    func textPacketsRoundTrip(packet: EngineIOPacket, wire: String) throws {
        #expect(packet.encoded() == .text(wire))
        #expect(try EngineIOPacket(decoding: .text(wire)) == packet)
    }

    @Test func binaryMessagesAreRawFrames() throws {
        // engine.io-protocol v4, "WebSocket": binary payloads are sent as is.
        let packet = EngineIOPacket.message(.binary([1, 2, 3, 4]))
        #expect(packet.encoded() == .binary([1, 2, 3, 4]))
        #expect(try EngineIOPacket(decoding: .binary([1, 2, 3, 4])) == packet)
    }

    @Test func openPacketFromTheSpec() throws {
        let wire = #"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}"#
        guard case .open(let handshake) = try EngineIOPacket(decoding: .text(wire)) else {
            Issue.record("not an open packet")
            return
        }
        #expect(handshake.sid == "lv_VI97HAXpY6yYWAAAC")
        #expect(handshake.upgrades == ["websocket"])
        #expect(handshake.pingInterval == .milliseconds(25000))
        #expect(handshake.pingTimeout == .milliseconds(5000))
        #expect(handshake.maxPayload == 1_000_000)
        // And back: a server encodes the same fields.
        #expect(try EngineIOPacket(decoding: EngineIOPacket.open(handshake).encoded()) == .open(handshake))
    }

    @Test func olderServersOmitFieldsAndGetDefaults() throws {
        let handshake = try EngineIOHandshake(decoding: #"{"sid":"abc"}"#)
        #expect(handshake.pingInterval == .seconds(25))
        #expect(handshake.pingTimeout == .seconds(20))
        #expect(handshake.maxPayload == 1_000_000)
        #expect(handshake.upgrades.isEmpty)
        // socket.io 3.x: pingTimeout 5000 and no maxPayload.
        let v3 = try EngineIOHandshake(decoding: #"{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":5000}"#)
        #expect(v3.pingTimeout == .seconds(5))
        #expect(v3.maxPayload == 1_000_000)
    }

    @Test(arguments: [
        "", "not json", "[]", "{}", #"{"sid":""}"#, #"{"sid":5}"#, #"{"sid":"a","pingInterval":"fast"}"#,
        #"{"sid":"a","pingInterval":-1}"#, #"{"sid":"a","maxPayload":0}"#, #"{"sid":"a","pingTimeout":1e300}"#,
    ])
    func invalidHandshakesAreRefused(json: String) {
        #expect(throws: EngineIOParseError.self) { try EngineIOHandshake(decoding: json) }
    }

    @Test(arguments: ["", "7", "9hello", "x", "😀"])
    func unknownOrEmptyPacketsAreErrors(wire: String) {
        #expect(throws: EngineIOParseError.self) { try EngineIOPacket(decoding: .text(wire)) }
    }
}

@Suite struct EngineIOPayloadTests {
    @Test func specExampleWithSeparators() throws {
        let packets: [EngineIOPacket] = [.message(.text("hello")), .ping(), .message(.text("world"))]
        #expect(EngineIOPayload.encode(packets) == "4hello\u{1e}2\u{1e}4world")
        #expect(try EngineIOPayload.decode("4hello\u{1e}2\u{1e}4world") == packets)
    }

    @Test func specExampleWithBinaryAsBase64() throws {
        let packets: [EngineIOPacket] = [.message(.text("hello")), .message(.binary([1, 2, 3, 4]))]
        #expect(EngineIOPayload.encode(packets) == "4hello\u{1e}bAQIDBA==")
        #expect(try EngineIOPayload.decode("4hello\u{1e}bAQIDBA==") == packets)
    }

    @Test func singlePacketAndSampleSession() throws {
        #expect(try EngineIOPayload.decode(#"42["hello"]"# + "\u{1e}" + #"42["world"]"#)
            == [.message(.text(#"2["hello"]"#)), .message(.text(#"2["world"]"#))])
        #expect(try EngineIOPayload.decode("6") == [.noop])
    }

    @Test(arguments: ["", "4a\u{1e}", "b!!!", "4a\u{1e}\u{1e}2", "8"])
    func malformedPayloadsAreErrors(body: String) {
        #expect(throws: EngineIOParseError.self) { try EngineIOPayload.decode(body) }
    }

    /// Two bytes make a packet (`6␞`): a body's size alone does not bound what decoding it
    /// holds. Past `maxPackets` it is refused before anything is decoded.
    @Test func aPayloadOfTooManyPacketsIsRefused() throws {
        let body = Array(repeating: "6", count: 1_001).joined(separator: "\u{1e}")
        var bytes = Array(body.utf8)
        let decoded = { (limit: Int) in
            bytes.withUnsafeMutableBufferPointer { buffer in
                Result { () throws(EngineIOParseError) in try EngineIOPayload.decode(utf8: UnsafeBufferPointer(buffer), maxPackets: limit) }
            }
        }
        #expect(throws: EngineIOParseError.tooManyPackets(limit: 1_000)) { try decoded(1_000).get() }
        #expect(try decoded(1_001).get().count == 1_001)
    }
}

@Suite struct EngineIOEndpointTests {
    @Test(arguments: [
        ("http://localhost:3000", "ws://localhost:3000/socket.io/?EIO=4&transport=websocket"),
        ("https://chat.example.org", "wss://chat.example.org:443/socket.io/?EIO=4&transport=websocket"),
        ("ws://127.0.0.1:8080/ignored", "ws://127.0.0.1:8080/socket.io/?EIO=4&transport=websocket"),
        ("WSS://h:9", "wss://h:9/socket.io/?EIO=4&transport=websocket"),
    ])
    func schemesMapToWebSocket(url: String, expected: String) throws {
        #expect(try EngineIOEndpoint(url: url).webSocketURL == expected)
    }

    /// `+` is sent as `%2B` (servers read a bare `+` as a space), an IPv6 address loses its
    /// URL brackets for connecting and keeps them in the URL and the `Host` header.
    @Test func queryValuesAndIPv6HostsAreEncodedAsServersReadThem() throws {
        let endpoint = try EngineIOEndpoint(url: "http://[::1]:3000", query: [.init(name: "token", value: "a+b/c=")])
        #expect(endpoint.host == "::1")
        #expect(endpoint.webSocketURL == "ws://[::1]:3000/socket.io/?EIO=4&transport=websocket&token=a%2Bb%2Fc%3D")
        #expect(endpoint.requestTarget(transport: "polling", sid: "x+y", cacheBuster: 35)
            == "/socket.io/?EIO=4&transport=polling&t=z&sid=x%2By&token=a%2Bb%2Fc%3D")
        #expect(endpoint.hostHeader == "[::1]:3000")
    }

    @Test func customPathAndQuery() throws {
        let endpoint = try EngineIOEndpoint(
            url: "http://h:1",
            path: "chat/io",
            query: [.init(name: "token", value: "a b&c")]
        )
        #expect(endpoint.webSocketURL == "ws://h:1/chat/io/?EIO=4&transport=websocket&token=a%20b%26c")
    }

    @Test(arguments: [
        ("http://127.0.0.1:1", true), ("http://[::1]:1", true), ("http://localhost:1", false),
        ("https://chat.example.org", false), ("http://10.0.0.5", true),
    ])
    func ipAddressHostsAreRecognised(url: String, isAddress: Bool) throws {
        #expect(try EngineIOEndpoint(url: url).hostIsIPAddress == isAddress)
    }

    @Test func badURLsSayWhatIsWrong() {
        #expect(throws: EngineIOEndpointError.unsupportedScheme("ftp")) { try EngineIOEndpoint(url: "ftp://h") }
        #expect(throws: EngineIOEndpointError.self) { try EngineIOEndpoint(url: "localhost:3000") }
        #expect(throws: EngineIOEndpointError.missingHost("http://")) { try EngineIOEndpoint(url: "http://") }
        #expect(throws: EngineIOEndpointError.self) { try EngineIOEndpoint(url: "http://h:99999") }
    }
}

@Suite struct EngineIOPacketEdgeTests {
    @Test func aCombiningMarkAfterTheTypeStaysInTheData() throws {
        // "4" + U+0301 is one Character; the type must still be read as one byte.
        #expect(try EngineIOPacket(decoding: .text("4\u{301}x")) == .message(.text("\u{301}x")))
    }
}
