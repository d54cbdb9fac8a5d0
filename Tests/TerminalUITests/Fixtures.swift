import Chat
import Foundation
import TerminalUI

#if canImport(Glibc)
import Glibc
#endif

/// Widths come from wcwidth, which needs a UTF-8 locale (the program takes the person's).
let utf8Locale: Bool = {
    setlocale(LC_CTYPE, "C.UTF-8") != nil
}()

/// A logged-in chat with alice (self, "a"), bob ("b") and carol ("c", offline); `select` is a userID.
func chatModel(width: Int = 80, height: Int = 24, select: String? = "b", messages: [(String, String)] = []) -> UIModel {
    _ = utf8Locale
    var chat = ChatState()
    chat.apply(.session(userID: "a", username: "alice"))
    chat.apply(.connected)
    chat.apply(.users([
        UserEntry(userID: "a", username: "alice", connected: true),
        UserEntry(userID: "b", username: "bob", connected: true),
        UserEntry(userID: "c", username: "carol", connected: false),
    ]))
    let at = Date(timeIntervalSince1970: 1_700_000_000)
    for (from, content) in messages {
        if from == "a" {
            chat.apply(.messageSent(content: content, to: "b", at: at, queued: false))
        } else {
            chat.apply(.messageReceived(PrivateMessage(content: content, from: from, to: "a"), at: at))
        }
    }
    var model = UIModel(settings: .init(serverURL: "http://localhost:3000"), chat: chat, hasSession: true)
    _ = model.update(.resize(width: width, height: height))
    if let select {
        _ = model.update(.key(.alt(select == "a" ? "1" : select == "b" ? "2" : "3")))
    }
    return model
}

extension UIModel {
    mutating func type(_ text: String) {
        for character in text { _ = update(.key(.character(character))) }
    }

    mutating func press(_ keys: Key...) -> [Effect] {
        keys.flatMap { update(.key($0)) }
    }

    var screenText: String { View.render(self).text }
}
