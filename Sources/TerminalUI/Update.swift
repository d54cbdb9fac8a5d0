import Chat
import Foundation

extension UIModel {
    /// The one way the model changes: a message in, effects out.
    public mutating func update(_ message: UIMessage) -> [Effect] {
        switch message {
        case .resize(let width, let height):
            self.width = max(width, 1)
            self.height = max(height, 1)
            clampScroll()
            keepSelectionVisible()
            return [.redraw]
        case .chat(let new):
            let before = Facts(self)
            chat = new
            return chatChanged(since: before)
        case .event(.select):
            // Selections start here; the client's echo of one must not undo a newer one.
            return []
        case .event(let event):
            let before = Facts(self)
            chat.apply(event)
            return chatChanged(since: before)
        case .needsUsername(let reason):
            if case .chat = screen { input.clear() }
            screen = .prompt(waiting: false)
            promptProblem = reason
            showHelp = false
            return []
        case .arrived(let peerID, let fromSelf):
            guard !fromSelf, peerID != chat.selectedUserID, settings.bell else { return [] }
            return [.bell]
        case .notice(let text):
            notice = DisplayText.inert(text)
            return []
        case .sendFailed(let sent, let reason):
            // Nothing typed is lost: back into an empty input, else one Up away. A text that
            // starts with "/" was typed as "//" (the escape the send took off).
            let text = sent.hasPrefix("/") ? "/" + sent : sent
            if input.isEmpty {
                input = InputLine(text)
                notice = "not sent: \(DisplayText.inert(reason))"
            } else {
                notice = "not sent: \(DisplayText.inert(reason)) (Up brings it back)"
            }
            return []
        case .tick(let date):
            now = date
            return []
        case .paste(let text):
            let normalized = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            if case .prompt = screen {
                input.insert(normalized.replacingOccurrences(of: "\n", with: " "))
            } else {
                input.insert(normalized)
            }
            return []
        case .key(let key):
            notice = nil
            return press(key)
        }
    }

    /// A signal ends the program: no key press needed.
    public mutating func quitNow() { quitting = true }

    // MARK: The network

    /// What the bookkeeping after a chat change compares against. Plain values: keeping the
    /// old state itself would make the next change copy every conversation.
    private struct Facts {
        let connection: ConnectionStatus
        let selected: String?
        /// Messages ever added to the open conversation (kept plus dropped by the cap).
        let selectedTotal: Int?

        init(_ model: UIModel) {
            connection = model.chat.connection
            selected = model.chat.selectedUserID
            selectedTotal = model.chat.selectedUser.map { $0.messages.count + $0.droppedCount }
        }
    }

    private mutating func chatChanged(since before: Facts) -> [Effect] {
        // A countdown to the next attempt, from when it was announced.
        if let delay = chat.connection.nextAttemptIn {
            if chat.connection != before.connection {
                reconnectAt = now.addingTimeInterval(Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18)
            }
        } else {
            reconnectAt = nil
        }
        if case .prompt = screen, chat.selfID != nil {
            // The server accepted the name: on to the chat.
            screen = .chat
            input.clear()
            promptProblem = nil
        }
        // New lines below a reader who scrolled up: keep their view where it is.
        if scroll > 0, let id = chat.selectedUserID, id == before.selected, let total = before.selectedTotal,
            let user = chat.user(id), user.messages.count + user.droppedCount > total
        {
            let newMessages = min(user.messages.count + user.droppedCount - total, user.messages.count)
            let layout = ConversationLayout(model: self)
            var added = 0
            for i in (user.messages.count - newMessages)..<user.messages.count { added += layout.lineCount(of: user, at: i) }
            scroll += added
            moreBelow = true
            clampScroll()  // with a history cap, the oldest lines went as the new ones came
        }
        keepSelectionVisible()
        return []
    }

    // MARK: Keys

    private mutating func press(_ key: Key) -> [Effect] {
        switch key {
        case .control("c"), .control("q"):
            quitting = true
            return [.quit]
        case .control("l"):
            return [.redraw]
        default:
            break
        }
        if isTooSmall { return [] }
        if showHelp {
            showHelp = false
            return []
        }
        if key == .function(1) {
            showHelp = true
            return []
        }
        switch screen {
        case .prompt(let waiting):
            return pressOnPrompt(key, waiting: waiting)
        case .chat:
            return pressOnChat(key)
        }
    }

    private mutating func pressOnPrompt(_ key: Key, waiting: Bool) -> [Effect] {
        if key == .enter {
            guard !waiting else { return [] }
            switch Username.validate(input.text) {
            case .failure(let problem):
                promptProblem = problem.description
                return []
            case .success(let name):
                promptProblem = nil
                screen = .prompt(waiting: true)
                return [.login(username: name)]
            }
        }
        if case .character("?") = key, input.isEmpty {
            showHelp = true
            return []
        }
        edit(key)
        return []
    }

    private mutating func pressOnChat(_ key: Key) -> [Effect] {
        switch key {
        case .tab, .control("n"):
            return selectRelative(+1)
        case .backTab, .control("p"):
            return selectRelative(-1)
        case .alt(let c) where c.wholeNumberValue.map { (1...9).contains($0) } == true:
            let n = c.wholeNumberValue! - 1
            guard n < order.count else { return [] }
            return select(order[n])
        case .alt("a"), .alt("A"):
            return selectNextUnread()
        case .pageUp:
            scroll += max(conversationHeight - 1, 1)
            clampScroll()
            return []
        case .pageDown:
            scroll = max(scroll - max(conversationHeight - 1, 1), 0)
            if scroll == 0 { moreBelow = false }
            return []
        case .end where input.isEmpty || input.cursor == input.characters.count:
            // End on an empty input (or with the cursor already at the end) returns to the newest.
            scroll = 0
            moreBelow = false
            input.moveEnd()
            return []
        case .wheelUp(_, let column) where settings.mouse && column > listWidth:
            scroll += 3
            clampScroll()
            return []
        case .wheelDown(_, let column) where settings.mouse && column > listWidth:
            scroll = max(scroll - 3, 0)
            if scroll == 0 { moreBelow = false }
            return []
        case .wheelUp where settings.mouse:
            return selectRelative(-1)
        case .wheelDown where settings.mouse:
            return selectRelative(+1)
        case .mouseClick(let row, let column) where settings.mouse:
            guard column < listWidth, row >= 1, row < height - 2 else { return [] }
            let index = listOffset + row - 1
            guard index < order.count else { return [] }
            return select(order[index])
        case .up:
            browseHistory(-1)
            return []
        case .down:
            browseHistory(+1)
            return []
        case .character("?") where input.isEmpty:
            showHelp = true
            return []
        case .enter:
            return submit()
        default:
            edit(key)
            return []
        }
    }

    /// Keys that edit the input line, on either screen.
    private mutating func edit(_ key: Key) {
        switch key {
        case .character(let c): input.insert(String(c))
        case .left, .control("b"): input.moveLeft()
        case .right, .control("f"): input.moveRight()
        case .home, .control("a"): input.moveHome()
        case .end, .control("e"): input.moveEnd()
        case .backspace, .control("h"): input.deleteBackward()
        case .delete, .control("d"): input.deleteForward()
        case .control("w"): input.deleteWordBackward()
        case .control("u"): input.deleteToStart()
        case .control("k"): input.deleteToEnd()
        default: break
        }
        historyPosition = nil
    }

    private mutating func submit() -> [Effect] {
        let text = input.text
        guard !text.isBlank else { return [] }
        if text.hasPrefix("/"), !text.hasPrefix("//") {
            let command = text.split(separator: " ", maxSplits: 1).first.map(String.init) ?? text
            switch command {
            case "/quit":
                quitting = true
                return [.quit]
            case "/logout":
                input.clear()
                return [.logout]
            case "/help":
                input.clear()
                showHelp = true
                return []
            default:
                notice = "unknown command \(DisplayText.inert(command)) (/help lists them; // sends a leading /)"
                return []
            }
        }
        guard let to = chat.selectedUserID else {
            notice = "choose a conversation first: Tab, or Alt-1…9"
            return []
        }
        let content = text.hasPrefix("//") ? String(text.dropFirst()) : text
        sentHistory[to, default: []].append(text)
        input.clear()
        historyPosition = nil
        draft = nil
        scroll = 0
        moreBelow = false
        return [.send(text: content, to: to)]
    }

    /// Up/Down through what was sent in this conversation; past the newest, the draft comes back.
    private mutating func browseHistory(_ step: Int) {
        guard let id = chat.selectedUserID, let history = sentHistory[id], !history.isEmpty else { return }
        var position = historyPosition ?? history.count
        if historyPosition == nil {
            guard step < 0 else { return }
            draft = input.text
        }
        position = min(max(position + step, 0), history.count)
        if position == history.count {
            input = InputLine(draft ?? "")
            historyPosition = nil
            draft = nil
        } else {
            input = InputLine(history[position])
            historyPosition = position
        }
    }

    // MARK: Selection

    private mutating func selectRelative(_ step: Int) -> [Effect] {
        guard !order.isEmpty else { return [] }
        let current = chat.selectedUserID.flatMap { chat.position(of: $0) }
        let next: Int
        if let current {
            next = (current + step + order.count) % order.count
        } else {
            next = step > 0 ? 0 : order.count - 1
        }
        return select(order[next])
    }

    private mutating func selectNextUnread() -> [Effect] {
        guard !order.isEmpty else { return [] }
        let start = chat.selectedUserID.flatMap { chat.position(of: $0) } ?? -1
        // One walk of the order (O(n)), not a lookup per position (O(n log n)).
        let ids = Array(order)
        for step in 1...ids.count {
            let id = ids[(start + step + ids.count) % ids.count]
            if let user = chat.user(id), user.unreadCount > 0, id != chat.selectedUserID { return select(id) }
        }
        notice = "no unread messages"
        return []
    }

    mutating func select(_ id: String) -> [Effect] {
        guard id != chat.selectedUserID else { return [] }
        if let user = chat.user(id), user.unreadCount > 0 {
            // Before the oldest unread message: own messages in between are not counted.
            var remaining = user.unreadCount
            var index = user.messages.endIndex
            while remaining > 0, index > user.messages.startIndex {
                index -= 1
                if !user.messages[index].fromSelf { remaining -= 1 }
            }
            unreadMarker = user.droppedCount + index
        } else {
            unreadMarker = nil
        }
        chat.apply(.select(userID: id))
        scroll = 0
        moreBelow = false
        historyPosition = nil
        draft = nil
        keepSelectionVisible()
        return [.select(userID: id)]
    }

    // MARK: Layout bookkeeping

    /// Rows of the user list below its title.
    var listRows: Int { max(height - 3, 0) }

    private mutating func keepSelectionVisible() {
        let rows = listRows
        guard rows > 0 else { return }
        if let id = chat.selectedUserID, let index = chat.position(of: id) {
            if index < listOffset { listOffset = index }
            if index >= listOffset + rows { listOffset = index - rows + 1 }
        }
        listOffset = max(min(listOffset, order.count - rows), 0)
    }

    /// No further up than the first line of the conversation.
    private mutating func clampScroll() {
        guard scroll > 0 else { return }
        guard let user = chat.selectedUser else {
            scroll = 0
            return
        }
        let layout = ConversationLayout(model: self)
        let available = layout.lineCount(of: user, upTo: scroll + conversationHeight)
        scroll = max(min(scroll, available - conversationHeight), 0)
        if scroll == 0 { moreBelow = false }
    }
}
