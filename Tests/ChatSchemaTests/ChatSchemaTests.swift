import ChatSchema
import Foundation
import JSON
import Testing

@Suite struct UsernameTests {
    @Test(arguments: [
        "alice", "  bob  ", "zoë", "中文名", "a b c", String(repeating: "x", count: 32), "😀😀😀",
        // 32 characters of 4 bytes each: exactly 128 bytes.
        String(repeating: "𝒳", count: 32),
    ])
    func goodNames(name: String) throws {
        #expect(try Username.validate(name).get() == name.trimmingCharacters(in: .whitespaces))
    }

    @Test(arguments: [
        ("", Username.Problem.tooShort), ("ab", .tooShort), ("   ab  ", .tooShort), ("     ", .tooShort),
        (String(repeating: "x", count: 33), .tooLong), ("bad\u{1B}[31m", .forbiddenCharacter),
        ("tab\there", .forbiddenCharacter), ("rtl\u{202E}lo", .forbiddenCharacter), ("nl\nx", .forbiddenCharacter),
        ("c1\u{9B}31m", .forbiddenCharacter),
        // Invisible: zero-width space, LRM, word joiner, BOM (all Cf).
        ("bo\u{200B}b", .forbiddenCharacter), ("bob\u{200E}", .forbiddenCharacter), ("b\u{2060}ob", .forbiddenCharacter),
        ("\u{FEFF}bob", .forbiddenCharacter),
        // Line and paragraph separators (Zl, Zp), private use (Co), unassigned (Cn).
        ("bob\u{2028}x", .forbiddenCharacter), ("bob\u{2029}x", .forbiddenCharacter), ("bob\u{E000}", .forbiddenCharacter),
        ("bob\u{0378}", .forbiddenCharacter),
        // 33 characters of 4 bytes: too many bytes before too many characters.
        (String(repeating: "𝒳", count: 33), .tooManyBytes),
        // The attack of the issue: one grapheme of 900 KB ("a" and 450,000 combining marks).
        ("a" + String(repeating: "\u{301}", count: 450_000), .tooManyBytes),
        ("abc" + String(repeating: "\u{301}", count: 100), .tooManyBytes),
    ])
    func badNames(name: String, problem: Username.Problem) {
        #expect(throws: problem) { try Username.validate(name).get() }
    }

    @Test func aHugeNameCostsOnePassOverItsBytes() {
        // 64 MB of spaces around a good name: refused by its size before it is trimmed.
        let padding = String(repeating: " ", count: 32 << 20)
        #expect(throws: Username.Problem.tooManyBytes) { try Username.validate(padding + "bob" + padding).get() }
    }

    @Test func problemsReadAsSentences() {
        #expect(Username.Problem.tooShort.description == "a username needs at least 3 characters")
        #expect(Username.Problem.tooManyBytes.description.contains("128 bytes"))
    }
}

@Suite struct SchemaEncodingTests {
    @Test func theSessionIDNeverAppearsInDescriptions() {
        let secret = "5f3c0ffee5f3c0ffee5f3c0ffee5f3c0"
        let session = SessionPayload(sessionID: secret, userID: "u1")
        var dumped = ""
        dump(session, to: &dumped)
        for text in ["\(session)", String(reflecting: session), dumped, "\([session])", "\(Optional(session) as Any)"] {
            #expect(!text.contains(secret), "leaked in: \(text)")
            #expect(text.contains("u1"))
        }
        // The wire shape still carries it, to its owner.
        #expect(session.json["sessionID"]?.stringValue == secret)
    }

    @Test func everyShapeDecodesAsItWasEncoded() throws {
        let message = PrivateMessage(content: "hé \"there\"\n", from: "a1", to: "b2")
        #expect(try ServerPayload.privateMessage([message.json]).get() == message)

        let entry = UserEntry(userID: "u1", username: "alice", connected: true, messages: [message])
        let (entries, problems) = ServerPayload.users([.array([entry.json])])
        #expect(entries == [entry] && problems.isEmpty)
        #expect(try ServerPayload.userConnected([UserEntry(userID: "u", username: "n", connected: true).json]).get().messages == nil)

        let session = SessionPayload(sessionID: "s", userID: "u")
        let decoded = try ServerPayload.session([session.json]).get()
        #expect(decoded.sessionID == "s" && decoded.userID == "u")

        let outgoing = OutgoingMessage(content: "hi", to: "b2")
        #expect(try ClientPayload.privateMessage([outgoing.json]).get() == outgoing)
    }

    @Test func theServerRefusesMalformedSendsAndSaysWhy() {
        func why(_ arguments: [JSONValue]) -> String? {
            if case .failure(let problem) = ClientPayload.privateMessage(arguments) { return problem.why }
            return nil
        }
        #expect(why([]) == "the message is not an object")
        #expect(why(["text"]) == "the message is not an object")
        #expect(why([["content": 1, "to": "b"]]) == "content is not a string")
        #expect(why([["content": "x", "to": ["b"]]]) == "to is not a string")
        #expect(why([["content": "", "to": "b"]]) == "content is empty")
        #expect(why([["content": "x", "to": "b", "from": "forged"]]) == nil)
    }

    @Test func theUsersEntryKeysAreTheGuides() {
        let entry = UserEntry(userID: "u", username: "n", connected: false, messages: [])
        #expect(JSONFragment(entry.json).text == #"{"connected":false,"messages":[],"userID":"u","username":"n"}"#)
        #expect(JSONFragment.array([JSONFragment(1), JSONFragment("x")]).text == #"[1,"x"]"#)
        #expect(JSONFragment.array([JSONFragment]()).text == "[]")
    }
}

@Suite struct ServerPayloadTests {
    @Test func usersSkipsBadEntriesAndSaysWhy() {
        let (entries, problems) = ServerPayload.users([[
            ["userID": "a", "username": "alice", "connected": true],
            ["userID": 5, "username": "x", "connected": true],
            ["userID": "b", "connected": true],
            ["userID": "c", "username": "carol", "connected": "yes"],
            "garbage",
            ["userID": "d", "username": "dan", "connected": false, "messages": [
                ["content": "hi", "from": "d", "to": "a"], ["content": 1, "from": "d", "to": "a"],
            ]],
        ]])
        #expect(entries.map(\.userID) == ["a", "d"])
        #expect(entries[1].messages == [PrivateMessage(content: "hi", from: "d", to: "a")])
        #expect(problems.count == 4)
        #expect(problems[0].description.contains("entry 1"))
        #expect(ServerPayload.users(["nope"]).problems.count == 1)
        #expect(ServerPayload.users([]).entries.isEmpty)
    }

    @Test func sessionAndMessages() throws {
        let session = try ServerPayload.session([["sessionID": "s", "userID": "u"]]).get()
        #expect(session.sessionID == "s" && session.userID == "u")
        #expect(throws: PayloadProblem.self) { try ServerPayload.session([["sessionID": "s"]]).get() }
        #expect(try ServerPayload.privateMessage([["content": "x", "from": "a", "to": "b"]]).get()
            == PrivateMessage(content: "x", from: "a", to: "b"))
        #expect(throws: PayloadProblem.self) { try ServerPayload.privateMessage([["content": ["x"], "from": "a", "to": "b"]]).get() }
        #expect(throws: PayloadProblem.self) { try ServerPayload.privateMessage([]).get() }
        #expect(try ServerPayload.userDisconnected(["u"]).get() == "u")
        #expect(throws: PayloadProblem.self) { try ServerPayload.userDisconnected([["userID": "u"]]).get() }
        #expect(try ServerPayload.userConnected([["userID": "u", "username": "n"]]).get().connected)
    }
}
