import TerminalKeys
import Chat
import Foundation
import Testing
@testable import TerminalUI

/// Every key binding, on the model alone.
@Suite struct UpdateTests {
    @Test func tabAndCtrlNCycleForwardShiftTabAndCtrlPBackward() {
        var model = chatModel(select: nil)
        // The first Tab opens the first other user, not yourself (alice, "a").
        #expect(model.press(.tab) == [.select(userID: "b")])
        #expect(model.press(.control("n")) == [.select(userID: "c")])
        #expect(model.press(.tab) == [.select(userID: "a")])  // wraps
        #expect(model.press(.backTab) == [.select(userID: "c")])
        #expect(model.press(.control("p")) == [.select(userID: "b")])
        #expect(model.chat.selectedUserID == "b")
    }

    /// From no selection, the first Tab goes where there is something to read.
    @Test func theFirstTabOpensTheFirstConversationWithUnreadMessages() {
        var model = chatModel(select: nil, messages: [("c", "psst")])
        #expect(model.press(.tab) == [.select(userID: "c")])
        var alone = Screen(settings: .init(serverURL: "x"), chat: {
            var chat = ChatState()
            chat.apply(.session(userID: "a", username: "alice"))
            return chat
        }(), hasSession: true)
        _ = alone.update(.resize(width: 80, height: 24))
        #expect(alone.press(.tab) == [.select(userID: "a")])  // nobody else: yourself
    }

    @Test func altDigitsJumpAndAltAFindsTheNextUnread() {
        var model = chatModel(select: nil, messages: [("c", "psst")])
        #expect(model.press(.alt("3")) == [.select(userID: "c")])
        #expect(model.press(.alt("9")) == [])  // no ninth user
        #expect(model.press(.alt("1")) == [.select(userID: "a")])
        model.apply(.messageReceived(PrivateMessage(content: "hey", from: "b", to: "a"), at: Date()))
        #expect(model.press(.alt("a")) == [.select(userID: "b")])
        #expect(model.press(.alt("a")) == [])
        #expect(model.notice == "no unread messages")
    }

    @Test func selectingClearsUnreadAndPlacesTheNewMessagesMarker() {
        let model = chatModel(messages: [("a", "old"), ("b", "new 1"), ("b", "new 2")])
        #expect(model.unreadMarker == 1)
        #expect(model.chat.user("b")?.unreadCount == 0)
    }

    @Test func enterSendsToTheSelectedConversationAndClearsTheInput() {
        var model = chatModel()
        model.type("hello")
        #expect(model.press(.enter) == [.send(text: "hello", to: "b")])
        #expect(model.input.isEmpty)
        model.type("   ")
        #expect(model.press(.enter) == [])  // blank: nothing sent
    }

    @Test func withoutASelectionEnterExplains() {
        var model = chatModel(select: nil)
        model.type("hello")
        #expect(model.press(.enter) == [])
        #expect(model.notice?.contains("choose a conversation") == true)
        #expect(model.input.text == "hello")  // nothing lost
    }

    @Test func commands() {
        var model = chatModel()
        model.type("/help")
        #expect(model.press(.enter) == [])
        #expect(model.showHelp)
        _ = model.press(.character("x"))  // any key closes help
        #expect(!model.showHelp)
        model.type("/logout")
        #expect(model.press(.enter) == [.logout(deleteHistory: false)])  // no history kept: nothing to ask
        model.type("/nope")
        #expect(model.press(.enter) == [])
        #expect(model.notice?.contains("unknown command /nope") == true)
        model = chatModel()
        model.type("//slash")
        #expect(model.press(.enter) == [.send(text: "/slash", to: "b")])
        model.type("/quit")
        #expect(model.press(.enter) == [.quit])
        #expect(model.quitting)
    }

    /// With conversations kept on disk, /logout asks whether they go too; the next key answers
    /// (y, n or Enter), and anything else keeps the session.
    @Test func logoutAsksAboutTheKeptConversations() {
        var model = chatModel()
        model = Screen(settings: .init(serverURL: "x", history: true), chat: model.chat, hasSession: true)
        _ = model.update(.resize(width: 100, height: 24))
        model.type("/logout")
        #expect(model.press(.enter) == [])
        #expect(model.screenText.contains("also delete this account's kept conversations? y/n"))
        #expect(model.press(.character("y")) == [.logout(deleteHistory: true)])
        model.type("/logout")
        _ = model.press(.enter)
        #expect(model.press(.enter) == [.logout(deleteHistory: false)])
        model.type("/logout")
        _ = model.press(.enter)
        #expect(model.press(.escape) == [])
        #expect(model.notice == "still logged in")
        #expect(model.press(.character("y")) == [])  // the question is over: a y is just a y
        #expect(model.input.text == "y")
    }

    /// Scrolling up to the first message shown asks for older kept ones, when there is a history.
    @Test func scrollingToTheTopAsksForOlderKeptMessages() {
        let plain = chatModel(height: 12, messages: (1...30).map { ("b", "m\($0)") })
        var model = plain
        #expect(model.press(.pageUp, .pageUp, .pageUp) == [])  // no history kept: nothing to ask
        model = Screen(settings: .init(serverURL: "x", history: true), chat: plain.chat, hasSession: true)
        _ = model.update(.resize(width: 80, height: 12))
        #expect(model.press(.pageUp) == [])  // not at the top yet
        #expect(model.press(.pageUp, .pageUp, .pageUp, .pageUp).contains(.loadOlder(userID: "b")))
    }

    @Test func ctrlCCtrlQQuitAndCtrlLRedraws() {
        var model = chatModel()
        #expect(model.press(.control("l")) == [.redraw])
        #expect(model.press(.control("c")) == [.quit])
        model = chatModel()
        #expect(model.press(.control("q")) == [.quit])
    }

    @Test func helpOpensWithF1OrQuestionMarkOnAnEmptyInput() {
        var model = chatModel()
        _ = model.press(.character("?"))
        #expect(model.showHelp)
        _ = model.press(.escape)
        model.type("why")
        _ = model.press(.character("?"))
        #expect(!model.showHelp)
        #expect(model.input.text == "why?")
        _ = model.press(.function(1))
        #expect(model.showHelp)
    }

    @Test func lineEditingKeys() {
        var model = chatModel()
        model.type("hello world")
        _ = model.press(.control("w"))
        #expect(model.input.text == "hello ")
        _ = model.press(.control("a"))
        _ = model.press(.control("f"), .delete)
        #expect(model.input.text == "hllo ")
        _ = model.press(.control("e"), .backspace)
        #expect(model.input.text == "hllo")
        _ = model.press(.home, .right, .right)
        model.type("X")
        #expect(model.input.text == "hlXlo")
        _ = model.press(.left, .control("k"))
        #expect(model.input.text == "hl")
        _ = model.press(.end)
        model.type("中😀")
        _ = model.press(.control("b"), .control("u"))
        #expect(model.input.text == "😀")
    }

    @Test func upAndDownBrowseWhatWasSentHereAndRestoreTheDraft() {
        var model = chatModel()
        for text in ["first", "second"] {
            model.type(text)
            _ = model.press(.enter)
        }
        model.type("draft")
        _ = model.press(.up)
        #expect(model.input.text == "second")
        _ = model.press(.up, .up)
        #expect(model.input.text == "first")
        _ = model.press(.down)
        #expect(model.input.text == "second")
        _ = model.press(.down)
        #expect(model.input.text == "draft")
        // Another conversation has its own history.
        _ = model.press(.tab)
        model.input = InputLine()
        _ = model.press(.up)
        #expect(model.input.text == "")
    }

    @Test func aPasteGoesIntoTheInputWithItsLinesAndSendsNothing() {
        var model = chatModel()
        #expect(model.update(.paste("line one\r\nline two\rthree")) == [])
        #expect(model.input.text == "line one\nline two\nthree")
        #expect(model.press(.enter) == [.send(text: "line one\nline two\nthree", to: "b")])
    }

    @Test func pageKeysEndAndTheWheelScroll() {
        var model = chatModel(height: 12, messages: (1...50).map { ("b", "m\($0)") })
        _ = model.press(.pageUp)
        #expect(model.scroll == model.conversationHeight - 1)
        _ = model.press(.pageDown)
        #expect(model.scroll == 0)
        _ = model.update(.key(.wheelUp(row: 3, column: 60)))
        #expect(model.scroll == 3)
        _ = model.update(.key(.wheelDown(row: 3, column: 60)))
        #expect(model.scroll == 0)
        _ = model.press(.pageUp, .pageUp)
        _ = model.press(.end)
        #expect(model.scroll == 0)
    }

    @Test func clickingANameSelectsIt() {
        var model = chatModel(select: nil)
        // Row 1 is the first user (alice), row 3 is carol.
        #expect(model.update(.key(.mouseClick(row: 3, column: 4))) == [.select(userID: "c")])
        #expect(model.update(.key(.mouseClick(row: 8, column: 4))) == [])  // below the list
        #expect(model.update(.key(.mouseClick(row: 2, column: 60))) == [])  // not in the list
    }

    @Test func theMouseCanBeTurnedOff() {
        var chat = chatModel().chat
        chat.apply(.select(userID: nil))
        var model = Screen(settings: .init(serverURL: "x", mouse: false), chat: chat, hasSession: true)
        _ = model.update(.resize(width: 80, height: 24))
        #expect(model.update(.key(.mouseClick(row: 3, column: 4))) == [])
    }

    @Test func theBellRingsForAnotherConversationOnly() {
        var model = chatModel()
        #expect(model.apply(.messageReceived(PrivateMessage(content: "psst", from: "c", to: "a"), at: Date())) == [.bell])
        #expect(model.apply(.messageReceived(PrivateMessage(content: "hi", from: "b", to: "a"), at: Date())) == [])
        // Our own message from another client of ours: no bell.
        #expect(model.apply(.messageReceived(PrivateMessage(content: "me", from: "a", to: "c"), at: Date())) == [])
        var quiet = Screen(settings: .init(serverURL: "x", bell: false), chat: model.chat, hasSession: true)
        #expect(quiet.update(.arrived(from: "c", content: "psst")) == [])
    }

    @Test func thePromptValidatesThenLogsInAndTheSessionOpensTheChat() {
        _ = utf8Locale
        var model = Screen(settings: .init(serverURL: "x"), hasSession: false)
        _ = model.update(.resize(width: 80, height: 24))
        model.type("x\u{7}y")
        #expect(model.press(.enter) == [])
        #expect(model.promptProblem?.contains("control, invisible") == true)
        _ = model.press(.control("u"))
        model.type(String(repeating: "n", count: 33))
        #expect(model.press(.enter) == [])
        #expect(model.promptProblem?.contains("at most 32") == true)
        _ = model.press(.control("u"))
        model.type("  dave ")
        #expect(model.press(.enter) == [.login(username: "dave")])
        #expect(model.screen == .prompt(waiting: true))
        model.apply(.connecting)
        model.apply(.session(userID: "d", username: "dave"))
        #expect(model.screen == .chat)
        // A refusal brings the prompt back with the reason.
        model.apply(.offline(reason: "invalid username"))
        model.apply(.loggedOut(reason: "invalid username"))
        #expect(model.screen == .prompt(waiting: false))
        #expect(model.promptProblem == "invalid username")
        #expect(model.screenText.contains("not connected"))
    }

    @Test func aTooSmallTerminalOnlyQuitsOrRedraws() {
        var model = chatModel(width: 30, height: 8)
        #expect(model.press(.tab) == [])
        model.type("x")
        #expect(model.input.isEmpty)
        #expect(model.press(.control("q")) == [.quit])
    }
}

@Suite struct ChatEventTests {
    @Test func theScreenIsAProjectionOfTheClientsStateAndSelectsThroughIt() {
        _ = utf8Locale
        var model = Screen(settings: .init(serverURL: "x"), hasSession: false)
        _ = model.update(.resize(width: 80, height: 24))
        let events: [ChatEvent] = [
            .connecting, .connected(flushed: []), .session(userID: "a", username: "alice"),
            .users([
                UserEntry(userID: "a", username: "alice", connected: true),
                UserEntry(userID: "b", username: "bob", connected: true),
                UserEntry(userID: "c", username: "carol", connected: true),
            ]),
            .messageReceived(PrivateMessage(content: "hi", from: "b", to: "a"), at: Date()),
        ]
        for event in events { model.apply(event) }
        #expect(model.screen == .chat)  // the session opened the chat
        // The unread count, as the state keeps it.
        #expect(model.render().lines.contains { $0.hasPrefix("● bob") && $0.prefix { $0 != "│" }.hasSuffix("1 ") })
        // A selection is the client's to make: the model asks, and reads the result.
        #expect(model.model.update(.key(.alt("2")), chat: model.chat) == [.select(userID: "b")])
        #expect(model.chat.selectedUserID == nil)
        #expect(model.press(.alt("2")) == [.select(userID: "b")])
        #expect(model.press(.alt("3")) == [.select(userID: "c")])
        #expect(model.chat.selectedUserID == "c")
        #expect(model.screenText.contains("carol  online"))
        model.apply(.loggedOut(reason: nil))
        #expect(model.screen == .prompt(waiting: false))
    }

    @Test func onlyWhatTheStateDoesNotSayIsNews() {
        var chat = ChatState()
        chat.apply(.session(userID: "a", username: "alice"))
        let fromPeer = ChatEvent.messageReceived(PrivateMessage(content: "x", from: "b", to: "a"), at: Date())
        let fromUs = ChatEvent.messageReceived(PrivateMessage(content: "x", from: "a", to: "b"), at: Date())
        #expect(UIMessage.news(of: fromPeer, in: chat).map { if case .arrived(from: "b", content: "x") = $0 { true } else { false } } == true)
        #expect(UIMessage.news(of: fromUs, in: chat) == nil)
        #expect(UIMessage.news(of: .warning("w"), in: chat).map { if case .notice("w") = $0 { true } else { false } } == true)
        #expect(UIMessage.news(of: .loggedOut(reason: "r"), in: chat).map { if case .needsUsername("r") = $0 { true } else { false } } == true)
        #expect(UIMessage.news(of: .users([]), in: chat) == nil)
        #expect(UIMessage.news(of: .select(userID: "b"), in: chat) == nil)
    }
}

@Suite struct SendFailureTests {
    @Test func aRefusedMessageComesBackIntoTheInput() {
        var model = chatModel()
        model.type("far too long")
        #expect(model.press(.enter) == [.send(text: "far too long", to: "b")])
        _ = model.update(.sendFailed(text: "far too long", reason: "message too long: 2000000 bytes, the server accepts 1000000"))
        #expect(model.input.text == "far too long")
        #expect(model.notice?.hasPrefix("not sent: message too long") == true)
        // Typing already started: the text stays one Up away instead of being overwritten.
        model.input = InputLine("next")
        _ = model.update(.sendFailed(text: "far too long", reason: "x"))
        #expect(model.input.text == "next")
        #expect(model.notice?.contains("Up brings it back") == true)
        _ = model.press(.up)
        #expect(model.input.text == "far too long")
    }
}
