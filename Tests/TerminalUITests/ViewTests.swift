import TerminalKeys
import Chat
import Foundation
import Testing
@testable import TerminalUI

@Suite struct ViewTests {
    @Test(arguments: [(40, 10), (80, 24), (132, 50), (57, 13)])
    func theChatScreenLaysOutAtEverySize(width: Int, height: Int) {
        let model = chatModel(width: width, height: height, messages: [("b", "hi alice")])
        let grid = model.render()
        #expect(grid.width == width && grid.height == height)
        let lines = grid.lines
        #expect(lines[0].hasPrefix(" Users 2/3"))
        #expect(lines[1].contains("● a"))
        #expect(lines[2].contains("● bob"))
        #expect(lines[3].contains("○ carol"))
        // The separator runs down to the status bar; the header names the peer.
        for row in 0..<(height - 2) { #expect(grid[row, model.listWidth].text == "│", "row \(row)") }
        #expect(lines[0].contains("● bob  online"))
        #expect(lines[height - 2].contains("connected as alice"))
        #expect(lines[height - 1].hasPrefix("bob>"))
        #expect(grid.cursor?.row == height - 1)
        // Nothing is drawn past the right edge: each row is exactly the grid's width in columns.
        for row in 0..<height {
            let columns = (0..<width).reduce(0) { $0 + Int(grid[row, $1].width) }
            #expect(columns == width, "row \(row)")
        }
    }

    /// An impostor whose name differs from bob's only by what does not show (a zero-width
    /// space), not a neighbour in the list (the capital sorts elsewhere): both carry their
    /// ID tags, in the list and in the header, and a plain name does not.
    @Test func lookalikeNamesCarryTheirIDTagsWhereverTheyAre() {
        var chat = chatModel(width: 100, height: 20).chat
        chat.apply(.userConnected(UserEntry(userID: "evil9", username: "BO\u{200B}B", connected: true)))
        var model = Screen(settings: .init(serverURL: "http://localhost:3000"), chat: chat, hasSession: true)
        _ = model.update(.resize(width: 100, height: 20))
        _ = model.update(.key(.alt("3")))
        let lines = model.render().lines
        #expect(lines.contains { $0.contains("● bob #b ") || $0.contains("● bob #b│") }, "\(lines.joined(separator: "\n"))")
        #expect(lines.contains { $0.contains("● BO\u{200B}B #evil9") }, "\(lines.joined(separator: "\n"))")
        #expect(!lines.contains { $0.contains("carol #") })
    }

    /// An impostor with a long name cannot push its tag out of a narrow list: the name is cut.
    @Test func aLongLookalikeNameIsCutBeforeItsTag() {
        var chat = chatModel(width: 60, height: 20).chat
        let long = "bob" + String(repeating: "\u{200B}", count: 3)
        chat.apply(.userConnected(UserEntry(userID: "evil99", username: long, connected: true)))
        chat.apply(.userConnected(UserEntry(userID: "long77", username: "bob" + String(repeating: "x", count: 40), connected: true)))
        chat.apply(.userConnected(UserEntry(userID: "long78", username: "BOB" + String(repeating: "x", count: 40), connected: true)))
        var model = Screen(settings: .init(serverURL: "http://localhost:3000"), chat: chat, hasSession: true)
        _ = model.update(.resize(width: 60, height: 20))
        let lines = model.render().lines
        #expect(lines.contains { $0.contains("… #long77") || $0.contains("…#long77") }, "\(lines.joined(separator: "\n"))")
        #expect(lines.contains { $0.contains(" #long78") }, "\(lines.joined(separator: "\n"))")
        #expect(lines.contains { $0.contains(" #evil99") })
    }

    @Test func senderLabelsOnlyWhenTheSenderChanges() {
        let model = chatModel(messages: [("b", "one"), ("b", "two"), ("a", "three"), ("a", "four"), ("b", "five")])
        let lines = model.screenText.split(separator: "\n").map { String($0.drop { $0 != "│" }.dropFirst()) }
        let body = lines.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        // Opened with bob's 3 messages unread: the marker stands before the first of them.
        let expected = ["── new messages", "bob", "one", "two", "(yourself)", "three", "four", "bob", "five"]
        var position = 0
        for line in body where position < expected.count && line.contains(expected[position]) { position += 1 }
        #expect(position == expected.count, "\(body)")
        #expect(body.filter { $0 == "bob" }.count == 2)
        // A local time before each message.
        #expect(body.contains { $0.range(of: #"^\d\d:\d\d one$"#, options: .regularExpression) != nil })
    }

    @Test func longMessagesWrapByDisplayWidth() {
        let wide = String(repeating: "中", count: 60)
        let model = chatModel(width: 60, height: 20, messages: [("b", wide)])
        let grid = model.render()
        let rows = grid.lines.filter { $0.contains("中") }
        #expect(rows.count > 1)
        let left = model.listWidth + 2 + 6
        for row in 0..<grid.height where grid.line(row).contains("中") {
            // Every wide character sits whole inside the panel.
            var column = left
            while column < grid.width {
                let cell = grid[row, column]
                if cell.width == 2 { #expect(column + 1 < grid.width) }
                column += max(Int(cell.width), 1)
            }
        }
        let total = rows.joined().filter { $0 == "中" }.count
        #expect(total == 60)
    }

    @Test func longNamesAreTruncatedWithAnEllipsis() {
        var chat = chatModel().chat
        chat.apply(.userConnected(UserEntry(userID: "d", username: "bartholomew-the-magnificent", connected: true)))
        var model = Screen(settings: .init(serverURL: "x"), chat: chat, hasSession: true)
        _ = model.update(.resize(width: 60, height: 20))
        let row = model.screenText.split(separator: "\n").first { $0.contains("barth") }.map(String.init) ?? ""
        #expect(row.contains("…"))
        #expect(DisplayText.width(of: row.prefix { $0 != "│" }) <= model.listWidth)
    }

    @Test func unreadCountsShowInTheList() {
        let model = chatModel(select: nil, messages: [("b", "1"), ("b", "2"), ("c", "x")])
        let lines = model.screenText.split(separator: "\n")
        #expect(lines.contains { $0.contains("● bob") && $0.contains(" 2") })
        #expect(lines.contains { $0.contains("○ carol") && $0.contains(" 1") })
        #expect(model.screenText.contains("No conversation selected"))
    }

    @Test func queuedMessagesAreMarked() {
        var model = chatModel()
        model.apply(.reconnecting(attempt: 1, delay: .seconds(2)))
        model.apply(.messageSent(SentMessage(id: 0, to: "b", content: "wait for me", at: Date()), queued: true))
        #expect(model.screenText.contains("wait for me"))
        #expect(model.screenText.contains("⧗ queued"))
    }

    @Test func theStatusBarInEachConnectionState() {
        var model = chatModel(width: 100)
        func status(_ model: Screen) -> String { model.render().line(model.height - 2) }
        #expect(status(model).contains("connected as alice"))
        #expect(status(model).contains("F1 help"))
        model.tick(Date(timeIntervalSince1970: 1000))
        model.apply(.reconnecting(attempt: 3, delay: .seconds(4)))
        #expect(status(model).contains("reconnecting in 4 s, attempt 3"))
        model.tick(Date(timeIntervalSince1970: 1002.5))
        #expect(status(model).contains("reconnecting in 2 s, attempt 3"))
        model.apply(.offline(reason: "server \u{1B}[2Jgone"))
        #expect(status(model).contains("offline: server ␛[2Jgone"))
        model.apply(.connecting)
        #expect(status(model).contains("connecting…"))
    }

    /// While we are not connected, nobody's presence is known: dimmed circles, "?" online,
    /// until the server's list says it again.
    @Test func whileOfflinePresenceIsUnknownUntilTheServersList() {
        var model = chatModel(width: 100)
        model.apply(.reconnecting(attempt: 1, delay: .seconds(1)))
        var lines = model.render().lines
        #expect(lines[0].hasPrefix(" Users ?/3"))
        #expect(lines.contains { $0.hasPrefix("◌ bob") } && lines.contains { $0.hasPrefix("◌ carol") })
        #expect(lines.contains { $0.hasPrefix("○ alice") })  // yourself: offline, and known
        #expect(lines[0].contains("◌ bob  unknown"))
        model.apply(.connected(flushed: []))
        #expect(model.render().lines[0].hasPrefix(" Users ?/3"))  // connected, not yet told
        model.apply(.users([
            UserEntry(userID: "a", username: "alice", connected: true),
            UserEntry(userID: "b", username: "bob", connected: false),
            UserEntry(userID: "c", username: "carol", connected: true),
        ]))
        lines = model.render().lines
        #expect(lines[0].hasPrefix(" Users 2/3"))
        #expect(lines.contains { $0.hasPrefix("○ bob") } && lines.contains { $0.hasPrefix("● carol") })
        #expect(lines[0].contains("○ bob  offline"))
    }

    @Test func theHelpOverlayListsTheKeys() {
        var model = chatModel()
        _ = model.press(.function(1))
        let text = model.screenText
        for key in ["Tab / Shift-Tab", "Alt-1 … Alt-9", "Alt-A", "PgUp / PgDn", "Ctrl-W", "/logout", "Ctrl-L", "Ctrl-Q"] {
            #expect(text.contains(key), "\(key)")
        }
    }

    @Test(arguments: [(39, 24), (80, 9), (10, 3)])
    func aTooSmallTerminalSaysSo(width: Int, height: Int) {
        let model = chatModel(width: width, height: height)
        let text = model.screenText
        if height >= 2 { #expect(text.contains("small")) }
        #expect(!text.contains("Users"))
    }

    @Test func thePromptShowsServerStateAndProblems() {
        _ = utf8Locale
        var model = Screen(settings: .init(serverURL: "http://chat.example:3000"), hasSession: false)
        _ = model.update(.resize(width: 80, height: 24))
        #expect(model.screenText.contains("Choose a username:"))
        #expect(model.screenText.contains("http://chat.example:3000"))
        model.type("al")
        _ = model.press(.enter)
        #expect(model.screenText.contains("at least 3 characters"))
        _ = model.update(.needsUsername(reason: "invalid username"))
        #expect(model.screenText.contains("invalid username"))
    }

    @Test func escapeSequencesFromTheNetworkAreDrawnInert() {
        var chat = chatModel().chat
        chat.apply(.userConnected(UserEntry(userID: "e", username: "\u{1B}[2Jevil\u{202E}", connected: true)))
        chat.apply(.messageReceived(PrivateMessage(content: "\u{1B}]0;title\u{07}\u{1B}[31mred", from: "e", to: "a"), at: Date()))
        var model = Screen(settings: .init(serverURL: "x"), chat: chat, hasSession: true)
        _ = model.update(.resize(width: 80, height: 24))
        _ = model.press(.alt("2"))  // order: alice, then "\e[2Jevil" sorts before bob
        let grid = model.render()
        #expect(grid.text.contains("␛[2Jevil"))
        #expect(grid.text.contains("␛]0;title␇␛[31mred"))
        #expect(!grid.cells.contains { $0.text.unicodeScalars.contains { $0.value < 0x20 || $0 == "\u{202E}" } })
    }

    @Test func scrollingUpShowsOlderLinesAndAMoreBelowMarker() {
        let messages = (1...100).map { ("b", "message \($0)") }
        var model = chatModel(width: 80, height: 20, messages: messages)
        _ = model.press(.end)
        #expect(model.screenText.contains("message 100"))
        _ = model.press(.pageUp)
        #expect(!model.screenText.contains("message 100"))
        #expect(model.screenText.contains("more below"))
        // New messages do not move a reader who scrolled up.
        let before = model.render().lines.dropLast(2)
        model.apply(.messageReceived(PrivateMessage(content: "late news", from: "b", to: "a"), at: Date()))
        #expect(Array(model.render().lines.dropLast(3)) == Array(before.dropLast(1)))
        #expect(model.screenText.contains("new messages below"))
        _ = model.press(.end)
        #expect(model.screenText.contains("late news"))
        // PgUp stops at the first message.
        for _ in 0..<50 { _ = model.press(.pageUp) }
        #expect(model.screenText.contains("message 1\n") || model.screenText.contains("message 1 "))
    }
}

@Suite struct ReviewFindingsTests {
    @Test func withAHistoryCapTheMarkerStaysOnItsMessageAndScrollingHolds() {
        _ = utf8Locale
        var chat = ChatState(historyLimit: 30)
        chat.apply(.session(userID: "a", username: "alice"))
        chat.apply(.connected(flushed: []))
        chat.apply(.users([UserEntry(userID: "a", username: "alice", connected: true), UserEntry(userID: "b", username: "bob", connected: true)]))
        for n in 1...30 { chat.apply(.messageReceived(PrivateMessage(content: "m\(n)", from: "b", to: "a"), at: Date())) }
        var model = Screen(settings: .init(serverURL: "x"), chat: chat, hasSession: true)
        _ = model.update(.resize(width: 80, height: 12))
        _ = model.press(.alt("2"))
        // All 30 unread: the marker is before m1. Scroll up a little, then more arrive.
        _ = model.update(.key(.wheelUp(row: 3, column: 60)))
        let before = model.render().lines.dropLast(3)
        for n in 31...33 { model.apply(.messageReceived(PrivateMessage(content: "m\(n)", from: "b", to: "a"), at: Date())) }
        #expect(model.moreBelow)
        #expect(Array(model.render().lines.dropLast(3).dropFirst()) == Array(before.dropFirst()))
        // m1…m3 were dropped by the cap, and the marker with m1: no line points at m4 instead.
        _ = model.press(.end)
        for _ in 0..<20 { _ = model.press(.pageUp) }
        #expect(!model.screenText.contains("new messages"))
        #expect(model.screenText.contains("m4"))
    }

    @Test func blankingHalfAWideCharacterBlanksTheOtherHalf() {
        _ = utf8Locale
        var grid = CellGrid(width: 10, height: 1)
        grid.write("中文中文中", row: 0, column: 0)
        grid.fill(row: 0, column: 3, width: 4, height: 1)
        #expect(grid.line(0) == "中      中")  // 文 at 2–3 and 文 at 6–7 were cut: both gone whole
        let columns = (0..<10).reduce(0) { $0 + Int(grid[0, $1].width) }
        #expect(columns == 10)
        // Out-of-range rectangles are ignored, not a crash.
        grid.fill(row: 5, column: 0, width: 3, height: 1)
        grid.fill(row: 0, column: 20, width: 3, height: 1)
        grid.restyle(row: 0, column: 20, width: 3, style: .bold)
    }

    @Test func codePointsTheLibraryCannotDrawBecomeTheReplacementCharacter() {
        _ = utf8Locale
        var grid = CellGrid(width: 10, height: 1)
        grid.write("a\u{378}\u{301}b", row: 0, column: 0)  // U+0378 is unassigned
        #expect(grid.line(0) == "a\u{FFFD}\u{301}b")
    }

    @Test func theMoreBelowLabelStaysInTheConversationPanel() {
        var model = chatModel(width: 40, height: 12, messages: (1...40).map { ("b", "m\($0)") })
        _ = model.press(.end, .pageUp)
        let grid = model.render()
        let row = model.conversationHeight
        #expect(grid[row, model.listWidth].text == "│")
        #expect(grid.line(row).contains("▼"))
    }

    @Test func aRefusedSlashMessageComesBackWithItsEscape() {
        var model = chatModel()
        model.type("//etc/hosts")
        #expect(model.press(.enter) == [.send(text: "/etc/hosts", to: "b")])
        _ = model.update(.sendFailed(text: "/etc/hosts", reason: "offline"))
        #expect(model.input.text == "//etc/hosts")
    }
}

@Suite struct NamesakeTests {
    @Test func usersWithTheSameNameAreToldApartByTheirUserID() {
        var chat = chatModel().chat
        chat.apply(.userConnected(UserEntry(userID: "b2f0", username: "bob", connected: true)))
        chat.apply(.userConnected(UserEntry(userID: "a9c1", username: "alice", connected: true)))
        var model = Screen(settings: .init(serverURL: "x"), chat: chat, hasSession: true)
        _ = model.update(.resize(width: 80, height: 24))
        let list = model.screenText.split(separator: "\n").map { String($0.prefix { $0 != "│" }) }
        #expect(list.contains { $0.contains("bob #b2f0") })
        #expect(list.contains { $0.contains("bob #b") && !$0.contains("b2f0") })
        #expect(list.contains { $0.contains("alice #a") && $0.contains("(you") })
        #expect(list.contains { $0.contains("alice #a9c1") })
        #expect(!list.contains { $0.contains("carol #") })
    }
}
