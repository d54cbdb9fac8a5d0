import TerminalKeys
import Chat
import Foundation
@testable import TerminalUI

#if canImport(Glibc)
import Glibc
#endif

/// Widths come from wcwidth, which needs a UTF-8 locale (the program takes the person's).
let utf8Locale: Bool = {
    setlocale(LC_CTYPE, "C.UTF-8") != nil
}()

/// The screen as the terminal app runs it: the model, and the chat state it reads. Here the
/// test holds the state and the clock and plays the chat client: a selection the model asks
/// for is applied to it, network news is applied with `apply(_:)`, and the model catches up
/// as the app's loop makes it.
@dynamicMemberLookup
struct Screen {
    var model: UIModel
    var chat: ChatState
    private(set) var clock = Date(timeIntervalSince1970: 1_700_000_000)

    init(settings: UIModel.Settings, chat: ChatState = ChatState(), hasSession: Bool) {
        model = UIModel(settings: settings, hasSession: hasSession)
        self.chat = chat
        model.sync(with: chat, now: clock)
    }

    /// Time passes.
    mutating func tick(_ date: Date) {
        clock = date
        model.sync(with: chat, now: clock)
    }

    subscript<T>(dynamicMember path: KeyPath<UIModel, T>) -> T { model[keyPath: path] }

    /// Lines below the panel's last row: 0 when it follows the newest message.
    var scroll: Int { model.linesBelowView(chat) }

    subscript<T>(dynamicMember path: WritableKeyPath<UIModel, T>) -> T {
        get { model[keyPath: path] }
        set { model[keyPath: path] = newValue }
    }

    mutating func update(_ message: UIMessage) -> [Effect] {
        model.sync(with: chat, now: clock)
        let effects = model.update(message, chat: chat)
        for case .select(let id) in effects { chat.apply(.select(userID: id)) }
        model.sync(with: chat, now: clock)
        return effects
    }

    /// The chat client applied an event: the screen hears of it as the app's inbox tells it.
    @discardableResult
    mutating func apply(_ event: ChatEvent) -> [Effect] {
        chat.apply(event)
        guard let news = UIMessage.news(of: event, in: chat) else {
            model.sync(with: chat, now: clock)
            return []
        }
        return update(news)
    }

    mutating func type(_ text: String) {
        for character in text { _ = update(.key(.character(character))) }
    }

    mutating func press(_ keys: Key...) -> [Effect] {
        keys.flatMap { update(.key($0)) }
    }

    func render() -> CellGrid { View.render(model, chat) }

    var screenText: String { render().text }
}

/// A logged-in chat with alice (self, "a"), bob ("b") and carol ("c", offline); `select` is a userID.
func chatModel(width: Int = 80, height: Int = 24, select: String? = "b", messages: [(String, String)] = []) -> Screen {
    _ = utf8Locale
    var chat = ChatState()
    chat.apply(.session(userID: "a", username: "alice"))
    chat.apply(.connected(flushed: []))
    chat.apply(.users([
        UserEntry(userID: "a", username: "alice", connected: true),
        UserEntry(userID: "b", username: "bob", connected: true),
        UserEntry(userID: "c", username: "carol", connected: false),
    ]))
    let at = Date(timeIntervalSince1970: 1_700_000_000)
    for (n, (from, content)) in messages.enumerated() {
        if from == "a" {
            chat.apply(.messageSent(SentMessage(id: n, to: "b", content: content, at: at), queued: false))
        } else {
            chat.apply(.messageReceived(PrivateMessage(content: content, from: from, to: "a"), at: at))
        }
    }
    var model = Screen(settings: .init(serverURL: "http://localhost:3000"), chat: chat, hasSession: true)
    _ = model.update(.resize(width: width, height: height))
    if let select {
        _ = model.update(.key(.alt(select == "a" ? "1" : select == "b" ? "2" : "3")))
    }
    return model
}
