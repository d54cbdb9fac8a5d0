import TerminalKeys
public import Chat

/// Searching the open conversation (Ctrl-R, `/search TEXT`): the query as typed, the messages
/// that match it, the one shown, and where the view was before (Esc goes back there).
public struct ConversationSearch: Sendable, Hashable {
    public internal(set) var query = InputLine()
    /// The matching messages, oldest first, as positions (`droppedCount + index`: they stay
    /// on their messages when older ones are dropped).
    public internal(set) var matches: [Int] = []
    /// Index into `matches` of the match shown; nil when there is none.
    public internal(set) var current: Int?
    let userID: String
    let anchor: ScrollAnchor?
    let moreBelow: Bool
    /// The query `matches` were found for, and the conversation's `droppedCount` then.
    var searched = ""
    var scannedDropped = 0

    /// The query as matched.
    public var text: String { MessageSearch.normalized(query.text) }

    /// Whether the message at `position` matches (binary search: `matches` is sorted).
    public func isMatch(_ position: Int) -> Bool {
        var low = 0
        var high = matches.count
        while low < high {
            let mid = (low + high) / 2
            if matches[mid] < position { low = mid + 1 } else { high = mid }
        }
        return low < matches.count && matches[low] == position
    }

    public var currentPosition: Int? { current.map { matches[$0] } }
}

/// A search across every conversation (`/search -a TEXT`): the hits, newest first, in a list
/// that opens a conversation at the one chosen.
public struct SearchResults: Sendable, Hashable {
    public let query: String
    /// Nil while the search runs.
    public internal(set) var hits: [SearchHit]?
    public internal(set) var selected = 0
    /// First hit shown.
    public internal(set) var offset = 0
}

extension UIModel {
    // MARK: The open conversation

    /// Opens the search of the open conversation, with `query` typed already.
    mutating func startSearch(_ query: String, _ chat: ChatState) {
        guard let user = chat.selectedUser else {
            notice = "choose a conversation first: Tab, or Alt-1…9"
            return
        }
        search = ConversationSearch(query: InputLine(query), userID: user.id, anchor: anchor, moreBelow: moreBelow)
        findMatches(chat, showing: nil)
    }

    /// Keys while searching the open conversation.
    mutating func pressWhileSearching(_ key: Key, _ chat: ChatState) -> [Effect] {
        guard var current = search else { return [] }
        switch key {
        case .escape:
            // Back to where the reader was.
            anchor = current.anchor
            moreBelow = current.moreBelow
            search = nil
            clampScroll(chat)
        case .enter:
            search = nil  // the view stays at the match
        case .control("r"), .up:
            step(-1, chat)
        case .control("s"), .down:
            step(+1, chat)
        case .pageUp, .pageDown, .end, .wheelUp, .wheelDown:
            search = nil
            let effects = pressOnChat(key, chat)
            search = current
            return effects
        case .alt(let c):
            // Esc then a key, typed faster than the escape delay (or pasted by a script): they
            // came as Alt plus the key, which means nothing here. Take them as they were typed.
            return pressWhileSearching(.escape, chat) + pressOnChat(.character(c), chat)
        default:
            guard Self.edit(&current.query, key) else { return [] }
            current.query.limit(to: MessageSearch.maximumQueryLength)
            search = current
            findMatches(chat, showing: nil)
        }
        return []
    }

    /// The matches of the query in the open conversation; the view goes to the one at
    /// `position`, else to the newest. A query that extends the last one (typing on) only
    /// narrows its matches down: what did not match before cannot match now.
    mutating func findMatches(_ chat: ChatState, showing position: Int?) {
        guard var current = search, let user = chat.user(current.userID) else { return }
        let query = current.text
        let matcher = MessageSearch.Matcher(query)
        if !current.searched.isEmpty, query.hasPrefix(current.searched), current.scannedDropped == user.droppedCount {
            current.matches.removeAll { position in
                let index = position - user.droppedCount
                return index < 0 || index >= user.messages.count || !matcher.matches(user.messages[index].content)
            }
        } else {
            current.matches = []
            if !query.isEmpty {
                for (index, message) in user.messages.enumerated() where matcher.matches(message.content) {
                    current.matches.append(user.droppedCount + index)
                }
            }
        }
        current.searched = query
        current.scannedDropped = user.droppedCount
        current.current = current.matches.isEmpty ? nil : position.flatMap { current.matches.firstIndex(of: $0) } ?? current.matches.count - 1
        search = current
        revealCurrentMatch(chat)
    }

    /// Older (-1) or newer (+1) match.
    private mutating func step(_ direction: Int, _ chat: ChatState) {
        guard var current = search, let index = current.current else { return }
        let next = index + direction
        guard current.matches.indices.contains(next) else {
            notice = direction < 0 ? "no older match" : "no newer match"
            return
        }
        current.current = next
        search = current
        revealCurrentMatch(chat)
    }

    /// Scrolls so that the current match sits in the middle of the conversation panel.
    private mutating func revealCurrentMatch(_ chat: ChatState) {
        guard let position = search?.currentPosition, let user = chat.selectedUser, user.id == search?.userID else { return }
        let index = position - user.droppedCount
        guard user.messages.indices.contains(index) else { return }
        let layout = ConversationLayout(model: self, chat: chat)
        let height = layout.lineCount(of: user, at: index)
        let top = layout.up(from: .init(index: index, line: 0), by: max((conversationHeight - height) / 2, 0), in: user).place
        anchor = ScrollAnchor(position: user.droppedCount + top.index, line: top.line)
        moreBelow = false
        clampScroll(chat)
    }

    /// The open conversation changed while searching it: new messages that match join in,
    /// positions of messages gone (dropped by the cap, or replaced by a server's history)
    /// leave, and older messages loaded above are searched too. Costs what changed.
    mutating func followSearch(_ chat: ChatState, previousTotal: Int?) {
        guard var current = search else { return }
        guard let user = chat.user(current.userID), user.id == chat.selectedUserID else {
            search = nil  // another conversation: the search was this one's
            return
        }
        guard let previousTotal else { return }
        let total = user.messages.count + user.droppedCount
        guard total != previousTotal || user.droppedCount != current.scannedDropped else { return }
        let shown = current.currentPosition
        let matcher = MessageSearch.Matcher(current.text)
        func scan(_ positions: Range<Int>) -> [Int] {
            guard !current.text.isEmpty, !positions.isEmpty else { return [] }
            return positions.filter { matcher.matches(user.messages[$0 - user.droppedCount].content) }
        }
        let older = user.droppedCount < current.scannedDropped ? scan(user.droppedCount..<min(current.scannedDropped, total)) : []
        current.matches.removeAll { $0 < user.droppedCount || $0 >= total }
        let newer = scan(max(previousTotal, user.droppedCount, (current.matches.last ?? -1) + 1)..<total)
        current.matches = older + current.matches + newer
        current.scannedDropped = user.droppedCount
        current.current = shown.flatMap { current.matches.firstIndex(of: $0) } ?? (current.matches.isEmpty ? nil : current.matches.count - 1)
        search = current
    }

    // MARK: Every conversation

    mutating func startSearchAll(_ query: String) -> [Effect] {
        let query = MessageSearch.normalized(query)
        guard !query.isEmpty else {
            notice = "/search -a TEXT searches every conversation"
            return []
        }
        results = SearchResults(query: query)
        return [.searchAll(query: query)]
    }

    /// Keys while the list of hits is open.
    mutating func pressInResults(_ key: Key, _ chat: ChatState) -> [Effect] {
        guard var current = results else { return [] }
        let count = current.hits?.count ?? 0
        let page = max(resultRows - 1, 1)
        switch key {
        case .escape:
            results = nil
            return []
        case .alt(let c):
            // Esc then a key, faster than the escape delay: as they were typed.
            results = nil
            return pressOnChat(.character(c), chat)
        case .up, .control("p"), .wheelUp: current.selected -= 1
        case .down, .control("n"), .wheelDown: current.selected += 1
        case .pageUp: current.selected -= page
        case .pageDown: current.selected += page
        case .home: current.selected = 0
        case .end: current.selected = count - 1
        case .enter:
            guard let hits = current.hits, hits.indices.contains(current.selected) else { return [] }
            let hit = hits[current.selected]
            results = nil
            var effects: [Effect] = []
            if chat.selectedUserID != hit.userID { effects = select(hit.userID, chat) }
            return effects + [.reveal(hit, query: current.query)]
        default:
            return []
        }
        current.selected = max(min(current.selected, count - 1), 0)
        if current.selected < current.offset { current.offset = current.selected }
        if current.selected >= current.offset + resultRows { current.offset = current.selected - resultRows + 1 }
        results = current
        return []
    }

    /// The hits came.
    mutating func received(_ hits: [SearchHit], for query: String) {
        guard var current = results, current.query == query, current.hits == nil else { return }  // closed, or another search
        current.hits = hits
        results = current
    }

    /// A hit's conversation is open (and loaded back to it): the search of it starts at the hit,
    /// found as the same text from the same side, the nearest in time (a server's copy of a
    /// conversation carries the time it came).
    mutating func reveal(_ hit: SearchHit, query: String, _ chat: ChatState) {
        var best: (index: Int, distance: Double)?
        if let user = chat.selectedUser, user.id == hit.userID {
            for (index, message) in user.messages.enumerated()
            where message.content == hit.message.content && message.fromSelf == hit.message.fromSelf {
                let distance = abs(message.at.timeIntervalSince(hit.message.at))
                if best == nil || distance < best!.distance { best = (index, distance) }
            }
        }
        guard let user = chat.selectedUser, let index = best?.index else {
            notice = "that message is no longer in memory (see --history-limit)"
            return
        }
        search = ConversationSearch(query: InputLine(query), userID: user.id, anchor: anchor, moreBelow: moreBelow)
        findMatches(chat, showing: user.droppedCount + index)
    }

    /// Rows of hits the list shows.
    var resultRows: Int { max(height - 8, 1) }
}
