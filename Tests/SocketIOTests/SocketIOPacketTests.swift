import EngineIO
import JSON
import SocketIO
import Testing

/// The examples of socket.io-protocol v5, "Packet encoding".
@Suite struct SocketIOPacketEncodingTests {
    @Test(arguments: [
        (SocketIOPacket(kind: .connect), "0"),
        (SocketIOPacket(kind: .connect, namespace: "/admin", data: ["sid": "oSO0OpakMV_3jnilAAAA"]),
         #"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#),
        (SocketIOPacket(kind: .connectError, data: ["message": "Not authorized"]), #"4{"message":"Not authorized"}"#),
        (SocketIOPacket.event("foo", []), #"2["foo"]"#),
        (SocketIOPacket.event("bar", [], namespace: "/admin"), #"2/admin,["bar"]"#),
        (SocketIOPacket.event("foo", [], id: 12), #"212["foo"]"#),
        (SocketIOPacket.ack(["bar"], id: 13, namespace: "/admin"), #"3/admin,13["bar"]"#),
        (SocketIOPacket(kind: .disconnect), "1"),
        (SocketIOPacket(kind: .disconnect, namespace: "/admin"), "1/admin,"),
    ])
    func specExamples(packet: SocketIOPacket, wire: String) throws {
        #expect(packet.encoded() == [.text(wire)])
        var decoder = SocketIOPacketDecoder()
        #expect(try decoder.decode(.text(wire)) == packet)
    }

    @Test func binaryEventWithOneAttachment() throws {
        let packet = SocketIOPacket.event("baz", [.binary([1, 2, 3, 4])])
        #expect(packet.kind == .binaryEvent)
        let frames = packet.encoded()
        #expect(frames == [.text(#"51-["baz",{"_placeholder":true,"num":0}]"#), .binary([1, 2, 3, 4])])
        var decoder = SocketIOPacketDecoder()
        #expect(try decoder.decode(frames[0]) == nil)
        #expect(decoder.isReconstructing)
        #expect(try decoder.decode(frames[1]) == packet)
        #expect(!decoder.isReconstructing)
    }

    @Test func binaryEventWithTwoAttachmentsInANamespace() throws {
        let packet = SocketIOPacket.event("baz", [.binary([1, 2]), .binary([3, 4])], namespace: "/admin")
        let frames = packet.encoded()
        #expect(frames == [
            .text(#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#),
            .binary([1, 2]), .binary([3, 4]),
        ])
        var decoder = SocketIOPacketDecoder()
        #expect(try decoder.decode(frames[0]) == nil)
        #expect(try decoder.decode(frames[1]) == nil)
        #expect(try decoder.decode(frames[2]) == packet)
    }

    @Test func binaryAckAndNestedBinary() throws {
        let ack = SocketIOPacket.ack(["bar", .binary([1, 2, 3, 4])], id: 15)
        #expect(ack.encoded() == [.text(#"61-15["bar",{"_placeholder":true,"num":0}]"#), .binary([1, 2, 3, 4])])
        let nested = SocketIOPacket.event("file", [["name": "a.bin", "data": .binary([7])]])
        let frames = nested.encoded()
        var decoder = SocketIOPacketDecoder()
        _ = try decoder.decode(frames[0])
        #expect(try decoder.decode(frames[1]) == nested)
    }

    @Test func sampleSessionBinaryAckFromTheServer() throws {
        var decoder = SocketIOPacketDecoder()
        #expect(try decoder.decode(.text(#"61-/admin,1[{"_placeholder":true,"num":0}]"#)) == nil)
        let packet = try decoder.decode(.binary([0xAB]))
        #expect(packet == SocketIOPacket(kind: .binaryAck, namespace: "/admin", id: 1, data: [.binary([0xAB])]))
    }

    @Test func unicodeSurvives() throws {
        let packet = SocketIOPacket.event("private message", [["content": "héllo 中文 😀 \u{202E}", "to": "u"]])
        var decoder = SocketIOPacketDecoder()
        #expect(try decoder.decode(packet.encoded()[0]) == packet)
    }
}

@Suite struct SocketIOPacketValidationTests {
    @Test(arguments: [
        ("", SocketIOParseError.empty),
        ("7", .unknownPacketType("7")),
        ("x", .unknownPacketType("x")),
        ("0[]", .invalidPayload(.connect)),
        ("0\"a\"", .invalidPayload(.connect)),
        ("1{}", .invalidPayload(.disconnect)),
        ("2", .invalidPayload(.event)),
        ("2{}", .invalidPayload(.event)),
        ("2[]", .invalidPayload(.event)),
        ("2[1]", .invalidPayload(.event)),
        ("2[\"connect\"]", .reservedEventName("connect")),
        ("2[\"disconnect\",1]", .reservedEventName("disconnect")),
        ("3[]", .invalidPayload(.ack)),
        ("31{}", .invalidPayload(.ack)),
        ("4", .invalidPayload(.connectError)),
        ("4[1]", .invalidPayload(.connectError)),
        ("5[\"a\"]", .invalidAttachmentCount),
        ("5x-[\"a\"]", .invalidAttachmentCount),
        ("511-[\"a\"]", .tooManyAttachments(11, limit: 10)),
        ("59999999-[\"a\"]", .invalidAttachmentCount),
        ("21234567890123456[\"a\"]", .invalidAckID),
    ])
    func malformedPacketsAreTypedErrors(wire: String, expected: SocketIOParseError) {
        var decoder = SocketIOPacketDecoder()
        #expect(throws: expected) { try decoder.decode(.text(wire)) }
    }

    @Test(arguments: ["2[\"a\"", "2{\"a\":}", "2[\"a\"]]", "0{\"sid\":\"x\"} trailing"])
    func badJSONIsAnError(wire: String) {
        var decoder = SocketIOPacketDecoder()
        #expect {
            try decoder.decode(.text(wire))
        } throws: { error in
            if case .invalidJSON = error as? SocketIOParseError { return true }
            return false
        }
    }

    @Test func connectErrorMayBeAString() throws {
        var decoder = SocketIOPacketDecoder()
        #expect(try decoder.decode(.text("4\"not authorized\"")) == SocketIOPacket(kind: .connectError, data: "not authorized"))
    }

    @Test func binaryOutOfPlaceIsAnError() throws {
        var decoder = SocketIOPacketDecoder()
        #expect(throws: SocketIOParseError.unexpectedBinary) { try decoder.decode(.binary([1])) }
        _ = try decoder.decode(.text(#"51-["a",{"_placeholder":true,"num":0}]"#))
        #expect(throws: SocketIOParseError.unexpectedText) { try decoder.decode(.text(#"2["b"]"#)) }
        // After an error the decoder starts clean.
        #expect(try decoder.decode(.text(#"2["c"]"#)) == .event("c", []))
    }

    @Test func placeholderThatNamesNoAttachment() throws {
        var decoder = SocketIOPacketDecoder()
        _ = try decoder.decode(.text(#"51-["a",{"_placeholder":true,"num":3}]"#))
        #expect(throws: SocketIOParseError.invalidPlaceholder) { try decoder.decode(.binary([1])) }
    }
}

@Suite struct ReconnectPolicyTests {
    let policy = ReconnectPolicy.socketIODefault

    @Test func withoutJitterTheDelayDoublesUpToTheCap() {
        let exact = ReconnectPolicy(jitter: 0)
        #expect((1...6).map { exact.delay(forAttempt: $0, random: 0.5) }
            == [.seconds(1), .seconds(2), .seconds(4), .seconds(5), .seconds(5), .seconds(5)])
        #expect(exact.delay(forAttempt: 10_000, random: 0.5) == .seconds(5))
    }

    @Test func jitterStaysWithinFiftyPercentAndUnderTheCap() {
        for attempt in 1...8 {
            let base = min(1000.0 * pow(2, Double(attempt - 1)), 5000)
            for step in 0..<1000 {
                let random = Double(step) / 1000
                let ms = Double(policy.delay(forAttempt: attempt, random: random) / .milliseconds(1))
                #expect(ms >= (base * 0.5).rounded(.down) && ms <= min(base * 1.5, 5000), "attempt \(attempt) random \(random)")
            }
        }
    }

    @Test func jitterGoesBothWays() {
        // socket.io-client: floor(random·10) even → shorter, odd → longer.
        #expect(policy.delay(forAttempt: 1, random: 0.05) == .milliseconds(975))
        #expect(policy.delay(forAttempt: 1, random: 0.15) == .milliseconds(1075))
        #expect(policy.delay(forAttempt: 1, random: 0.999) == .milliseconds(1499))
        #expect(policy.delay(forAttempt: 1, random: 0.0) == .milliseconds(1000))
    }

    @Test func attemptLimits() {
        #expect(policy.allowsAttempt(1_000_000))
        let limited = ReconnectPolicy(maxAttempts: 3)
        #expect(limited.allowsAttempt(3))
        #expect(!limited.allowsAttempt(4))
        #expect(!ReconnectPolicy(isEnabled: false).allowsAttempt(1))
    }
}

import Foundation

@Suite struct TakeEventTests {
    @Test func takingTheEventGivesTheArgumentsAndLeavesThePacketEmpty() throws {
        var packet = SocketIOPacket(kind: .event, namespace: "/", data: ["private message", ["to": "u"], 2])
        let taken = packet.takeEvent()
        let event = try #require(taken)
        #expect(event.name == "private message")
        #expect(event.arguments == [["to": "u"], 2])
        #expect(packet.data == nil)
        let again = packet.takeEvent()
        #expect(again == nil)
        var ack = SocketIOPacket(kind: .ack, namespace: "/", id: 1, data: ["x"])
        let none = ack.takeEvent()
        #expect(none == nil)
        #expect(ack.data == ["x"])
    }

    @Test func reservedNamesAreTheReferenceParsersList() {
        for name in ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"] {
            #expect(isReservedEventName(name))
        }
        #expect(!isReservedEventName("private message"))
        #expect(!isReservedEventName("Connect"))
    }
}
