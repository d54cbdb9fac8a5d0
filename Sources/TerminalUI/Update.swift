import TerminalKeys
public import Chat
public import Foundation

extension UIModel {
    /// The one way the model changes: a message in, effects out. `chat` is the chat client's
    /// state as it is now; an effect that changes it (a selection) is carried out before the
    /// next message, and `sync(with:now:)` follows.
    public mutating func update(_ message: UIMessage, chat: ChatState) -> [Effect] {
        switch message {
        case .resize(let width, let height):
            self.width = max(width, 1)
            self.height = max(height, 1)
            clampScroll(chat)
            keepSelectionVisible(chat)
            return [.redraw]
        case .needsUsername(let reason):
            if case .chat = screen { input.clear() }
            screen = .prompt(waiting: false)
            promptProblem = reason
            showHelp = false
            search = nil
            results = nil
            return []
        case .searchResults(let query, let hits):
            received(hits, for: query)
            return []
        case .reveal(let hit, let query):
            reveal(hit, query: query, chat)
            return []
        case .arrived(let from, let content):
            // On screen: the open conversation, in a window that has focus.
            guard from != chat.selectedUserID || !focused else { return [] }
            if from == chat.selectedUserID { unseen += 1 }  // open, but nobody is looking
            var effects: [Effect] = settings.bell ? [.bell] : []
            if settings.notifications, notified.allow(from, now: now) {
                let name = DisplayText.label(chat.user(from)?.username ?? "?", columns: 32)
                effects.append(.notify(title: "Parley: \(name)", body: DisplayText.label(content, columns: 100)))
            }
            return effects
        case .focus(let focused):
            self.focused = focused
            if focused { unseen = 0 }
            return []
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
        case .paste(let text):
            let normalized = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            if var current = search, results == nil {
                current.query.insert(String(normalized.prefix(MessageSearch.maximumQueryLength)).replacingOccurrences(of: "\n", with: " "))
                current.query.limit(to: MessageSearch.maximumQueryLength)
                search = current
                findMatches(chat, showing: nil)
            } else if case .prompt = screen {
                input.insert(normalized.replacingOccurrences(of: "\n", with: " "))
            } else {
                input.insert(normalized)
            }
            return []
        case .key(let key):
            notice = nil
            return press(key, chat)
        }
    }

    /// A signal ends the program: no key press needed.
    public mutating func quitNow() { quitting = true }

    // MARK: The chat state

    /// Catches up with the chat client's state after it changed (news from the network, or a
    /// selection this model asked for), and with the clock: the only way time reaches the
    /// model, so tests give it theirs. What changed is found against what was seen last.
    public mutating func sync(with chat: ChatState, now: Date) {
        self.now = now
        let before = seen
        seen = ChatFacts(chat)
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
        // New lines below a reader who scrolled up: the view stays on its message.
        if anchor != nil, let id = chat.selectedUserID, id == before.selected, let total = before.selectedTotal,
            let user = chat.user(id), user.messages.count + user.droppedCount > total
        {
            moreBelow = true
        }
        if anchor != nil { clampScroll(chat) }  // with a history cap, its message may have gone
        followSearch(chat, previousTotal: before.selected == seen.selected ? before.selectedTotal : nil)
        keepSelectionVisible(chat)
    }

    // MARK: Keys

    private mutating func press(_ key: Key, _ chat: ChatState) -> [Effect] {
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
        if confirmingLogout {
            confirmingLogout = false
            switch key {
            case .character("y"), .character("Y"): return [.logout(deleteHistory: true)]
            case .character("n"), .character("N"), .enter: return [.logout(deleteHistory: false)]
            default:
                notice = "still logged in"
                return []
            }
        }
        if showHelp {
            showHelp = false
            return []
        }
        if results != nil, case .chat = screen { return pressInResults(key, chat) }
        if search != nil, case .chat = screen { return pressWhileSearching(key, chat) }
        if key == .function(1) {
            showHelp = true
            return []
        }
        switch screen {
        case .prompt(let waiting):
            return pressOnPrompt(key, waiting: waiting)
        case .chat:
            return pressOnChat(key, chat)
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

    mutating func pressOnChat(_ key: Key, _ chat: ChatState) -> [Effect] {
        switch key {
        case .control("r"):
            startSearch("", chat)
            return []
        case .tab, .control("n"):
            return selectRelative(+1, chat)
        case .backTab, .control("p"):
            return selectRelative(-1, chat)
        case .alt(let c) where c.wholeNumberValue.map { (1...9).contains($0) } == true:
            let n = c.wholeNumberValue! - 1
            guard n < chat.order.count else { return [] }
            return select(chat.order[n], chat)
        case .alt("a"), .alt("A"):
            return selectNextUnread(chat)
        case .pageUp:
            return scrollUp(by: max(conversationHeight - 1, 1), chat)
        case .pageDown:
            scrollDown(by: max(conversationHeight - 1, 1), chat)
            return []
        case .end where input.isEmpty || input.cursor == input.characters.count:
            // End on an empty input (or with the cursor already at the end) returns to the newest.
            followNewest()
            input.moveEnd()
            return []
        case .wheelUp(_, let column) where settings.mouse && column > listWidth:
            return scrollUp(by: 3, chat)
        case .wheelDown(_, let column) where settings.mouse && column > listWidth:
            scrollDown(by: 3, chat)
            return []
        case .wheelUp where settings.mouse:
            return selectRelative(-1, chat)
        case .wheelDown where settings.mouse:
            return selectRelative(+1, chat)
        case .mouseClick(let row, let column) where settings.mouse:
            guard column < listWidth, row >= 1, row < height - 2 else { return [] }
            let index = listOffset + row - 1
            guard index < chat.order.count else { return [] }
            return select(chat.order[index], chat)
        case .up:
            browseHistory(-1, chat)
            return []
        case .down:
            browseHistory(+1, chat)
            return []
        case .character("?") where input.isEmpty:
            showHelp = true
            return []
        case .enter:
            return submit(chat)
        default:
            edit(key)
            return []
        }
    }

    /// Keys that edit the input line, on either screen.
    private mutating func edit(_ key: Key) {
        Self.edit(&input, key)
        historyPosition = nil
    }

    /// Keys that edit a line (the input, a search query); false for any other key.
    @discardableResult
    static func edit(_ line: inout InputLine, _ key: Key) -> Bool {
        switch key {
        case .character(let c): line.insert(String(c))
        case .left, .control("b"): line.moveLeft()
        case .right, .control("f"): line.moveRight()
        case .home, .control("a"): line.moveHome()
        case .end, .control("e"): line.moveEnd()
        case .backspace, .control("h"): line.deleteBackward()
        case .delete, .control("d"): line.deleteForward()
        case .control("w"): line.deleteWordBackward()
        case .control("u"): line.deleteToStart()
        case .control("k"): line.deleteToEnd()
        default: return false
        }
        return true
    }

    private mutating func submit(_ chat: ChatState) -> [Effect] {
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
                guard settings.history else { return [.logout(deleteHistory: false)] }
                confirmingLogout = true
                notice = "Log out: also delete this account's kept conversations? y/n (Esc: stay)"
                return []
            case "/help":
                input.clear()
                showHelp = true
                return []
            case "/search":
                input.clear()
                let rest = text.dropFirst(command.count).drop { $0 == " " }
                if rest == "-a" || rest.hasPrefix("-a ") { return startSearchAll(String(rest.dropFirst(2))) }
                startSearch(MessageSearch.normalized(String(rest)), chat)
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
        followNewest()
        return [.send(text: content, to: to)]
    }

    /// Up/Down through what was sent in this conversation; past the newest, the draft comes back.
    private mutating func browseHistory(_ step: Int, _ chat: ChatState) {
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

    private mutating func selectRelative(_ step: Int, _ chat: ChatState) -> [Effect] {
        guard !chat.order.isEmpty else { return [] }
        guard let current = chat.selectedUserID.flatMap({ chat.position(of: $0) }) else {
            // From no selection, a first Tab opens someone to talk to, not yourself: the first
            // with unread messages, else the first other user.
            guard step > 0 else { return select(chat.order[chat.order.count - 1], chat) }
            let ids = Array(chat.order)
            let first = ids.first { chat.user($0).map { $0.unreadCount > 0 } == true } ?? ids.first { $0 != chat.selfID } ?? ids[0]
            return select(first, chat)
        }
        return select(chat.order[(current + step + chat.order.count) % chat.order.count], chat)
    }

    private mutating func selectNextUnread(_ chat: ChatState) -> [Effect] {
        guard !chat.order.isEmpty else { return [] }
        let start = chat.selectedUserID.flatMap { chat.position(of: $0) } ?? -1
        // One walk of the order (O(n)), not a lookup per position (O(n log n)).
        let ids = Array(chat.order)
        for step in 1...ids.count {
            let id = ids[(start + step + ids.count) % ids.count]
            if let user = chat.user(id), user.unreadCount > 0, id != chat.selectedUserID { return select(id, chat) }
        }
        notice = "no unread messages"
        return []
    }

    mutating func select(_ id: String, _ chat: ChatState) -> [Effect] {
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
        followNewest()
        historyPosition = nil
        draft = nil
        // The client makes the selection; `sync(with:now:)` then keeps it in view.
        return [.select(userID: id)]
    }

    // MARK: Layout bookkeeping

    /// Rows of the user list below its title.
    var listRows: Int { max(height - 3, 0) }

    private mutating func keepSelectionVisible(_ chat: ChatState) {
        let rows = listRows
        guard rows > 0 else { return }
        if let id = chat.selectedUserID, let index = chat.position(of: id) {
            if index < listOffset { listOffset = index }
            if index >= listOffset + rows { listOffset = index - rows + 1 }
        }
        listOffset = max(min(listOffset, chat.order.count - rows), 0)
    }

    /// Back to the newest message.
    mutating func followNewest() {
        anchor = nil
        moreBelow = false
    }

    /// Up by `lines`, no further than the first line kept; reaching it asks for older kept
    /// messages (which go above, leaving the view where it is).
    mutating func scrollUp(by lines: Int, _ chat: ChatState) -> [Effect] {
        guard let user = chat.selectedUser else { return [] }
        let layout = ConversationLayout(model: self, chat: chat)
        var reachedTop = true
        if let start = anchor.flatMap({ layout.place(of: $0, in: user) }) ?? layout.bottomTop(of: user, rows: conversationHeight) {
            let moved = layout.up(from: start, by: lines, in: user)
            anchor = ScrollAnchor(position: user.droppedCount + moved.place.index, line: moved.place.line)
            reachedTop = moved.reachedTop
            clampScroll(chat)
        }
        guard reachedTop, settings.history else { return [] }
        return [.loadOlder(userID: user.id)]
    }

    /// Down by `lines`; at the newest, the panel follows it again.
    mutating func scrollDown(by lines: Int, _ chat: ChatState) {
        guard let user = chat.selectedUser, let place = anchor.flatMap({ ConversationLayout(model: self, chat: chat).place(of: $0, in: user) })
        else {
            followNewest()
            return
        }
        let moved = ConversationLayout(model: self, chat: chat).down(from: place, by: lines, in: user)
        anchor = ScrollAnchor(position: user.droppedCount + moved.index, line: moved.line)
        clampScroll(chat)
    }

    /// The anchor on a line that is kept, and no lower than a full panel above the end (from
    /// there on, the panel follows the newest message). Costs a panel's lines.
    mutating func clampScroll(_ chat: ChatState) {
        guard let current = anchor else { return }
        let layout = ConversationLayout(model: self, chat: chat)
        guard let user = chat.selectedUser, let place = layout.place(of: current, in: user),
            layout.lines(from: place, in: user, upTo: conversationHeight + 1) > conversationHeight
        else {
            followNewest()
            return
        }
        anchor = ScrollAnchor(position: user.droppedCount + place.index, line: place.line)
    }

    /// Lines below the panel's last row (0 when it shows the newest). Reads the whole
    /// conversation below the anchor: for tests, not for drawing.
    func linesBelowView(_ chat: ChatState) -> Int {
        guard let current = anchor, let user = chat.selectedUser else { return 0 }
        let layout = ConversationLayout(model: self, chat: chat)
        guard let place = layout.place(of: current, in: user) else { return 0 }
        return max(layout.lines(from: place, in: user, upTo: .max) - conversationHeight, 0)
    }
}
