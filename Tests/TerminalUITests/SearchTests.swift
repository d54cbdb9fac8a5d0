import TerminalKeys
import Chat
import Foundation
import Testing
@testable import TerminalUI

/// bob's conversation: 60 messages, every tenth about coffee (the 9th, 19th, … counting from 0).
private func coffeeChat(width: Int = 80, height: Int = 24) -> Screen {
    let messages = (0..<60).map { n in ("b", n % 10 == 9 ? "message \(n): a CAFÉ and some coffee?" : "message \(n): nothing here") }
    var screen = chatModel(width: width, height: height, messages: messages)
    _ = screen.press(.end)
    return screen
}

/// The cells of `row` that carry `style`, as the text they show.
private func styled(_ grid: CellGrid, _ style: Style) -> [String] {
    (0..<grid.height).compactMap { row in
        let text = (0..<grid.width).filter { grid[row, $0].style == style }.map { grid[row, $0].text }.joined()
        return text.isEmpty ? nil : text
    }
}

@Suite struct SearchTests {
    @Test func ctrlRSearchesTheOpenConversationNewestFirst() {
        var screen = coffeeChat()
        #expect(screen.press(.control("r")) == [])
        #expect(screen.render().line(23) == "search:")
        screen.type("coffee")
        let search = screen.search!
        #expect(search.matches.count == 6)
        #expect(search.current == 5)  // the newest
        let grid = screen.render()
        #expect(grid.line(22).contains("match 6 of 6"))
        #expect(grid.line(23) == "search: coffee")
        #expect(styled(grid, .currentMatch) == ["coffee"])
        // Older, and older: the view follows, the count too.
        _ = screen.press(.control("r"), .up)
        #expect(screen.search!.current == 3)
        #expect(screen.render().line(22).contains("match 4 of 6"))
        #expect(screen.render().text.contains("message 39: a CAFÉ and some coffee?"))
        #expect(screen.scroll > 0)
        _ = screen.press(.control("s"))
        #expect(screen.search!.current == 4)
        // Past the ends: said, not wrapped around.
        _ = screen.press(.down, .down)
        #expect(screen.render().line(22).contains("no newer match"))
    }

    @Test func caseAndAccentsDoNotMatter() {
        var screen = coffeeChat()
        _ = screen.press(.control("r"))
        screen.type("cafe")
        #expect(screen.search!.matches.count == 6)
        #expect(styled(screen.render(), .currentMatch) == ["CAFÉ"])
        _ = screen.press(.backspace, .backspace, .backspace, .backspace)
        screen.type("tea")
        #expect(screen.search!.matches.isEmpty)
        #expect(screen.render().line(22).contains("no match"))
    }

    @Test func escapeGoesBackToWhereTheReaderWasAndEnterStaysAtTheMatch() {
        var screen = coffeeChat()
        _ = screen.press(.pageUp)
        let before = screen.scroll
        _ = screen.press(.control("r"))
        screen.type("message 9:")
        #expect(screen.scroll != before)
        _ = screen.press(.escape)
        #expect(screen.search == nil)
        #expect(screen.scroll == before)
        _ = screen.press(.control("r"))
        screen.type("message 9:")
        let atMatch = screen.scroll
        _ = screen.press(.enter)
        #expect(screen.search == nil)
        #expect(screen.scroll == atMatch)
        #expect(screen.render().text.contains("message 9: a CAFÉ"))
        // The draft in the input was never touched.
        #expect(screen.input.isEmpty)
    }

    /// Esc then "/" typed faster than the escape delay arrive as Alt-/: taken as typed.
    @Test func escapeAndAKeyTogetherAreTakenAsTyped() {
        var screen = coffeeChat()
        _ = screen.press(.control("r"))
        screen.type("coffee")
        _ = screen.press(.alt("/"))
        #expect(screen.search == nil)
        #expect(screen.input.text == "/")
        screen.type("search -a coffee")
        #expect(screen.press(.enter) == [.searchAll(query: "coffee")])
        _ = screen.press(.alt("x"))
        #expect(screen.results == nil)
        #expect(screen.input.text == "x")
    }

    @Test func slashSearchTypesTheQueryAndAnotherConversationEndsIt() {
        var screen = coffeeChat()
        screen.type("draft")
        _ = screen.press(.control("u"))
        screen.type("/search some coffee")
        _ = screen.press(.enter)
        #expect(screen.search?.text == "some coffee")
        #expect(screen.search?.matches.count == 6)
        _ = screen.press(.enter)
        _ = screen.press(.control("r"))
        screen.type("x")
        _ = screen.press(.escape)
        // Tab while searching is nothing; a new conversation from elsewhere (a click) ends it.
        _ = screen.press(.control("r"))
        _ = screen.press(.tab)
        #expect(screen.search != nil)
        _ = screen.press(.enter)
        _ = screen.press(.alt("3"))
        #expect(screen.search == nil)
    }

    /// A match cut by the wrapping is marked on both of its lines.
    @Test func aMatchAcrossAWrapIsMarkedOnBothLines() {
        var screen = chatModel(width: 40, height: 12, messages: [("b", "aaaa bbbb cccc dddd eeee needle-in-a-haystack")])
        _ = screen.press(.control("r"))
        screen.type("needle-in-a-haystack")
        let marked = styled(screen.render(), .currentMatch)
        #expect(marked.joined() == "needle-in-a-haystack", "\(screen.screenText)")
        #expect(marked.count == 2)
    }

    @Test func aNewMessageThatMatchesJoinsTheSearch() {
        var screen = coffeeChat()
        _ = screen.press(.control("r"))
        screen.type("coffee")
        _ = screen.press(.up)
        screen.apply(.messageReceived(PrivateMessage(content: "more coffee", from: "b", to: "a"), at: Date()))
        #expect(screen.search!.matches.count == 7)
        #expect(screen.search!.current == 4, "the match shown stays shown")
        screen.apply(.messageReceived(PrivateMessage(content: "tea", from: "b", to: "a"), at: Date()))
        #expect(screen.search!.matches.count == 7)
    }

    /// A query is bounded; what is shown of it is inert.
    @Test func aHostileQueryIsBoundedAndInert() {
        var screen = coffeeChat()
        _ = screen.press(.control("r"))
        _ = screen.update(.paste("\u{1B}[2J"))
        let line = screen.render().line(23)
        #expect(!line.contains("\u{1B}"))
        #expect(line.contains("␛[2J"))
        _ = screen.update(.paste(String(repeating: "x", count: 10_000)))
        #expect(screen.search!.query.characters.count == MessageSearch.maximumQueryLength)
        screen.type("yyy")
        #expect(screen.search!.query.characters.count == MessageSearch.maximumQueryLength)
    }

    @Test func searchingEveryConversationListsTheHitsAndOpensOne() {
        var screen = coffeeChat(width: 100, height: 30)
        _ = screen.press(.alt("1"))
        screen.type("/search -a coffee")
        #expect(screen.press(.enter) == [.searchAll(query: "coffee")])
        #expect(screen.render().text.contains("\"coffee\" in every conversation: searching…"))
        let bob = screen.chat.user("b")!
        let hits = bob.messages.filter { $0.content.contains("coffee") }.reversed().map {
            SearchHit(userID: "b", username: "bob\u{1B}[31m", message: $0, historyID: nil)
        }
        _ = screen.update(.searchResults(query: "coffee", hits: Array(hits)))
        let text = screen.screenText
        #expect(text.contains("\"coffee\" in every conversation: 6"))
        #expect(text.contains("bob␛[31m"))
        #expect(text.contains("message 59: a CAFÉ and some coffee?"))
        // A late answer to another search changes nothing.
        _ = screen.update(.searchResults(query: "tea", hits: []))
        #expect(screen.results?.hits?.count == 6)
        _ = screen.press(.down, .down)
        let effects = screen.press(.enter)
        #expect(effects == [.select(userID: "b"), .reveal(hits[2], query: "coffee")])
        #expect(screen.results == nil)
        _ = screen.update(.reveal(hits[2], query: "coffee"))
        #expect(screen.search?.currentPosition == bob.droppedCount + 39)
        #expect(screen.screenText.contains("message 39: a CAFÉ"))
    }

    @Test func escapeClosesTheListAndAnEmptyQueryExplains() {
        var screen = coffeeChat()
        screen.type("/search -a")
        #expect(screen.press(.enter) == [])
        #expect(screen.notice?.contains("/search -a TEXT") == true)
        screen.type("/search -a x")
        _ = screen.press(.enter)
        _ = screen.update(.searchResults(query: "x", hits: []))
        #expect(screen.screenText.contains("no message matches"))
        _ = screen.press(.escape)
        #expect(screen.results == nil)
    }

    /// A hit that is no longer in memory (dropped by --history-limit) is said to be gone.
    @Test func aHitNoLongerInMemoryIsSaid() {
        var screen = coffeeChat()
        let gone = SearchHit(userID: "b", username: "bob", message: ChatMessage(content: "old", fromSelf: false, delivery: .received, at: Date(timeIntervalSince1970: 0)))
        _ = screen.update(.reveal(gone, query: "old"))
        #expect(screen.search == nil)
        #expect(screen.notice?.contains("no longer in memory") == true)
    }

    /// The conversation replaced under a search (a server's own history after a reconnection):
    /// the matches are the new conversation's, never positions of messages that are gone.
    @Test func aConversationReplacedUnderASearchIsSearchedAgain() {
        var screen = coffeeChat()
        _ = screen.press(.control("r"))
        screen.type("coffee")
        #expect(screen.search!.matches.count == 6)
        screen.apply(.users([UserEntry(userID: "b", username: "bob", connected: true, messages: [])]))
        #expect(screen.search!.matches.isEmpty)
        #expect(screen.render().line(22).contains("no match"))
        screen.apply(.users([UserEntry(userID: "b", username: "bob", connected: true, messages: [
            PrivateMessage(content: "coffee, from the server", from: "b", to: "a"),
        ])]))
        #expect(screen.search!.matches.count == 1)
        #expect(screen.render().text.contains("coffee, from the server"))
    }

    /// Older messages loaded above a search (scrolling to the top with a history) are searched.
    @Test func olderMessagesLoadedAboveASearchAreSearched() {
        var screen = coffeeChat()
        _ = screen.press(.control("r"))
        screen.type("coffee")
        let shown = screen.search!.currentPosition
        let older = (0..<5).map { ChatMessage(content: $0 == 2 ? "old coffee" : "old tea", fromSelf: false, delivery: .received, at: Date(timeIntervalSince1970: 0)) }
        screen.apply(.restoredOlder(userID: "b", messages: older))
        #expect(screen.search!.matches.count == 7)
        #expect(screen.search!.currentPosition == shown, "the match shown stays shown")
        _ = screen.press(.home)
        for _ in 0..<6 { _ = screen.press(.control("r")) }
        #expect(screen.render().text.contains("old coffee"))
    }

    /// A hit from the local history opens the conversation where a server's copy of it is: the
    /// same text from the same side, the nearest in time (the copy carries the time it came).
    @Test func aHitOpensOnTheServersCopyOfItsMessage() {
        var screen = coffeeChat()
        let said = ChatMessage(content: "message 29: a CAFÉ and some coffee?", fromSelf: false, delivery: .received, at: Date(timeIntervalSince1970: 5))
        _ = screen.update(.reveal(SearchHit(userID: "b", username: "bob", message: said, historyID: 12), query: "coffee"))
        #expect(screen.search?.currentPosition == screen.chat.user("b")!.droppedCount + 29)
    }
}
