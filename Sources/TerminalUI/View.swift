public import Chat
import Foundation

/// The lines of a conversation, computed from the newest message backwards and
/// only as far as the screen needs: drawing costs what is visible, not what is
/// stored.
struct ConversationLayout {
    /// One row of the conversation panel.
    enum Line {
        case label(String, fromSelf: Bool)
        case newMessages
        /// A line of the message at `index` (the part of its inert text it shows).
        case text(time: String?, Substring, fromSelf: Bool, index: Int)
        case queued
    }

    let textWidth: Int
    let unreadMarker: Int?
    let peerName: String
    let timeZone: TimeZone

    static let timeColumn = 6  // "12:34 "

    init(model: UIModel, chat: ChatState) {
        textWidth = max(model.conversationWidth - Self.timeColumn, 4)
        // Relative to what is kept; gone when the marked message itself was dropped.
        let dropped = chat.selectedUser?.droppedCount ?? 0
        unreadMarker = model.unreadMarker.flatMap { $0 >= dropped ? $0 - dropped : nil }
        peerName = DisplayText.inert(chat.selectedUser?.username ?? "")
        timeZone = model.settings.timeZone
    }

    private func startsGroup(_ messages: ChatUser.MessageList, _ i: Int) -> Bool {
        i == messages.startIndex || messages[i - 1].fromSelf != messages[i].fromSelf || unreadMarker == i
    }

    func lineCount(of user: ChatUser, at i: Int) -> Int {
        let message = user.messages[i]
        var count = DisplayText.wrappedLineCount(DisplayText.inert(message.content, multiline: true), toWidth: textWidth)
        if startsGroup(user.messages, i) { count += 1 }
        if unreadMarker == i { count += 1 }
        if message.delivery == .queued { count += 1 }
        return count
    }

    /// Lines from the newest message back, stopping once `limit` are counted.
    func lineCount(of user: ChatUser, upTo limit: Int) -> Int {
        var total = 0
        var i = user.messages.endIndex
        while i > user.messages.startIndex, total < limit {
            i -= 1
            total += lineCount(of: user, at: i)
        }
        return total
    }

    func lines(of user: ChatUser, at i: Int) -> [Line] {
        let message = user.messages[i]
        var lines: [Line] = []
        if unreadMarker == i { lines.append(.newMessages) }
        if startsGroup(user.messages, i) {
            lines.append(.label(message.fromSelf ? "(yourself)" : peerName, fromSelf: message.fromSelf))
        }
        let wrapped = DisplayText.wrapped(DisplayText.inert(message.content, multiline: true), toWidth: textWidth)
        for (n, part) in wrapped.enumerated() {
            lines.append(.text(time: n == 0 ? Self.clock(message.at, in: timeZone) : nil, part, fromSelf: message.fromSelf, index: i))
        }
        if message.delivery == .queued { lines.append(.queued) }
        return lines
    }

    /// A place in the conversation: line `line` of the message at `index`.
    struct Place: Equatable {
        var index: Int
        var line: Int
    }

    /// The rows to show, oldest first: `rows` lines from the anchor's line down, or the newest
    /// `rows` lines when following (or when the anchor no longer fills the panel). Costs what
    /// is shown, wherever the anchor is.
    func visibleLines(of user: ChatUser, rows: Int, from anchor: ScrollAnchor?) -> [Line] {
        if let place = anchor.flatMap({ place(of: $0, in: user) }) {
            var window: [Line] = []
            var i = place.index
            var skip = place.line
            while i < user.messages.endIndex, window.count < rows {
                let message = lines(of: user, at: i)
                window.append(contentsOf: message.dropFirst(skip).prefix(rows - window.count))
                skip = 0
                i += 1
            }
            if window.count == rows { return window }
        }
        var reversed: [Line] = []
        var i = user.messages.endIndex
        while i > user.messages.startIndex, reversed.count < rows {
            i -= 1
            reversed.append(contentsOf: lines(of: user, at: i).reversed())
        }
        return reversed.prefix(rows).reversed()
    }

    /// Where an anchor is among the messages kept (the first line when its message was dropped).
    func place(of anchor: ScrollAnchor, in user: ChatUser) -> Place? {
        guard !user.messages.isEmpty else { return nil }
        let index = anchor.position - user.droppedCount
        if index < 0 { return Place(index: 0, line: 0) }
        guard index < user.messages.count else { return nil }
        return Place(index: index, line: min(max(anchor.line, 0), lineCount(of: user, at: index) - 1))
    }

    /// The top row when the panel shows the newest `rows` lines; nil when they all fit.
    func bottomTop(of user: ChatUser, rows: Int) -> Place? {
        var total = 0
        var i = user.messages.endIndex
        while i > user.messages.startIndex {
            i -= 1
            total += lineCount(of: user, at: i)
            if total > rows { return Place(index: i, line: total - rows) }
        }
        return nil
    }

    /// `count` lines up from `place`; `reachedTop` when the first line came before that.
    func up(from place: Place, by count: Int, in user: ChatUser) -> (place: Place, reachedTop: Bool) {
        var place = place
        var left = count
        while left > 0 {
            if place.line > 0 {
                let step = min(place.line, left)
                place.line -= step
                left -= step
            } else if place.index > 0 {
                place.index -= 1
                place.line = lineCount(of: user, at: place.index)
            } else {
                return (place, true)
            }
        }
        return (place, false)
    }

    /// `count` lines down from `place` (no further than the last line).
    func down(from place: Place, by count: Int, in user: ChatUser) -> Place {
        var place = place
        place.line += count
        while place.index < user.messages.count - 1, place.line >= lineCount(of: user, at: place.index) {
            place.line -= lineCount(of: user, at: place.index)
            place.index += 1
        }
        return place
    }

    /// Lines from `place` to the end, counting no further than `limit`.
    func lines(from place: Place, in user: ChatUser, upTo limit: Int) -> Int {
        var total = lineCount(of: user, at: place.index) - place.line
        var i = place.index + 1
        while i < user.messages.endIndex, total < limit {
            total += lineCount(of: user, at: i)
            i += 1
        }
        return total
    }

    /// The time of day in `timeZone`, as HH:MM.
    static func clock(_ date: Date, in timeZone: TimeZone) -> String {
        let local = date.timeIntervalSince1970 + Double(timeZone.secondsFromGMT(for: date))
        let minutes = (Int((local / 60).rounded(.down)) % 1440 + 1440) % 1440
        let h = minutes / 60
        let m = minutes % 60
        return (h < 10 ? "0" : "") + String(h) + ":" + (m < 10 ? "0" : "") + String(m)
    }
}

extension ChatUser {
    typealias MessageList = Deque<ChatMessage>
}

import DequeModule

/// Draws the screen into a grid. A pure function of the model (what only the screen knows)
/// and the chat state (the client's, read where it is): the same code feeds the terminal and
/// the tests.
public enum View {
    public static func render(_ model: UIModel, _ chat: ChatState) -> CellGrid {
        var grid = CellGrid(width: model.width, height: model.height)
        render(model, chat, into: &grid)
        return grid
    }

    public static func render(_ model: UIModel, _ chat: ChatState, into grid: inout CellGrid) {
        if grid.width != model.width || grid.height != model.height {
            grid = CellGrid(width: model.width, height: model.height)
        } else {
            grid.fill(row: 0, column: 0, width: grid.width, height: grid.height)
        }
        grid.cursor = nil
        if model.isTooSmall {
            tooSmall(model, &grid)
            return
        }
        switch model.screen {
        case .prompt(let waiting): prompt(model, chat, waiting: waiting, &grid)
        case .chat: chatScreen(model, chat, &grid)
        }
        if let results = model.results, case .chat = model.screen { searchResults(model, results, &grid) }
        if model.showHelp { help(model, &grid) }
    }

    // MARK: Screens

    static func tooSmall(_ model: UIModel, _ grid: inout CellGrid) {
        let lines = [
            model.width >= 18 ? "Terminal too small" : "Too small",
            "\(model.width)×\(model.height), needs \(UIModel.minimumWidth)×\(UIModel.minimumHeight)",
            "Ctrl-Q quits",
        ]
        let top = max((model.height - lines.count) / 2, 0)
        for (n, line) in lines.enumerated() {
            centre(line, row: top + n, in: &grid, style: n == 0 ? .bold : .normal)
        }
    }

    static func prompt(_ model: UIModel, _ chat: ChatState, waiting: Bool, _ grid: inout CellGrid) {
        let boxWidth = min(model.width - 4, 60)
        let left = (model.width - boxWidth) / 2
        let top = max((model.height - 9) / 2, 0)
        centre("Parley", row: top, in: &grid, style: .bold)
        centre(DisplayText.truncated(DisplayText.inert(model.settings.serverURL), toWidth: boxWidth), row: top + 1, in: &grid, style: .dim)
        // Until Enter, nothing is being connected (a logout or a refusal left the socket offline):
        // the refusal's reason is under the field.
        if waiting {
            centre(connectionText(model, chat), row: top + 2, in: &grid, style: style(of: chat.connection))
        } else {
            centre("not connected", row: top + 2, in: &grid, style: .highlight)
        }
        grid.write("Choose a username:", row: top + 4, column: left, limit: boxWidth, style: .normal)
        let fieldWidth = boxWidth - 2
        grid.write("> ", row: top + 5, column: left, style: .accent)
        let (text, cursor) = model.input.visible(columns: fieldWidth)
        grid.write(text, row: top + 5, column: left + 2, limit: fieldWidth)
        grid.cursor = (top + 5, left + 2 + cursor)
        if let problem = model.promptProblem {
            grid.write(DisplayText.truncated(DisplayText.inert(problem), toWidth: boxWidth), row: top + 6, column: left, style: .error)
        } else {
            grid.write(waiting ? "Connecting…" : "Enter connects · 3–32 characters · F1 help", row: top + 6, column: left, limit: boxWidth, style: .dim)
        }
    }

    static func chatScreen(_ model: UIModel, _ chat: ChatState, _ grid: inout CellGrid) {
        userList(model, chat, &grid)
        let separator = model.listWidth
        for row in 0..<(model.height - 2) { grid.write("│", row: row, column: separator, style: .dim) }
        conversation(model, chat, &grid)
        statusBar(model, chat, &grid)
        inputLine(model, chat, &grid)
    }

    // MARK: Parts

    static func userList(_ model: UIModel, _ chat: ChatState, _ grid: inout CellGrid) {
        let width = model.listWidth
        // Only what is on screen is looked at: the counts are kept by the chat state.
        // Who is online is the server's word: unknown while we are not connected to it.
        let online = chat.presenceKnown ? String(chat.onlineCount) : "?"
        grid.write(DisplayText.truncated(" Users \(online)/\(chat.order.count)", toWidth: width), row: 0, column: 0, style: .bold)
        let rows = model.listRows
        for n in 0..<rows {
            let index = model.listOffset + n
            guard index < chat.order.count, let user = chat.user(chat.order[index]) else { break }
            let row = n + 1
            let selected = user.id == chat.selectedUserID
            let base: Style = selected ? .reverse : .normal
            if selected { grid.fill(row: row, column: 0, width: width, height: 1, style: .reverse) }
            // Glyph and colour, so it reads without colour too.
            let presence = presence(of: user, chat)
            grid.write(presence.glyph, row: row, column: 0, style: selected ? .reverse : presence.style)
            let unread = user.unreadCount > 0 ? " \(user.unreadCount > 999 ? "999+" : String(user.unreadCount))" : ""
            let tag = tag(model, chat, userID: user.id)
            let name = DisplayText.inert(user.username) + tag
            let room = width - 3 - DisplayText.width(of: unread)
            // The name comes first: the "(yourself)" mark shortens before the name is cut much.
            let suffix = user.isSelf
                ? [" (yourself)", " (you)", ""].first { room - DisplayText.width(of: $0) >= min(DisplayText.width(of: name), 8) } ?? ""
                : ""
            let nameRoom = room - DisplayText.width(of: suffix)
            var col = 2
            // A lookalike's tag is never what is cut: the name shortens before it.
            let shown = tag.isEmpty
                ? DisplayText.truncated(name, toWidth: max(nameRoom, 1))
                : DisplayText.truncated(DisplayText.inert(user.username), toWidth: max(nameRoom - DisplayText.width(of: tag), 1)) + tag
            col += grid.write(shown, row: row, column: col, limit: width - col, style: selected ? .reverse : (user.isSelf ? .accent : .normal))
            col += grid.write(suffix, row: row, column: col, limit: width - col, style: selected ? .reverse : .dim)
            if !unread.isEmpty {
                let w = DisplayText.width(of: unread)
                grid.write(unread, row: row, column: width - 1 - w, limit: w, style: selected ? base : .highlight)
            }
        }
    }

    static func conversation(_ model: UIModel, _ chat: ChatState, _ grid: inout CellGrid) {
        let left = model.listWidth + 2
        let width = model.width - left
        guard let user = chat.selectedUser else {
            grid.write("No conversation selected", row: 0, column: left, limit: width, style: .bold)
            let hints = [
                "Tab / Shift-Tab or Ctrl-N / Ctrl-P: next / previous",
                "Alt-1…9: jump to a user · Alt-A: next unread",
                "Click a name · F1 or ? for every key",
            ]
            for (n, hint) in hints.enumerated() { grid.write(hint, row: 2 + n, column: left, limit: width, style: .dim) }
            return
        }
        // Header: status and name.
        var col = left
        let presence = presence(of: user, chat)
        col += grid.write(presence.glyph + " ", row: 0, column: col, style: presence.style)
        let tag = tag(model, chat, userID: user.id) + (user.isSelf ? " (yourself)" : "")
        let state = "  " + presence.word
        let room = max(width - 2 - state.count, 1)
        let name = DisplayText.truncated(DisplayText.inert(user.username), toWidth: max(room - DisplayText.width(of: tag), 1)) + tag
        col += grid.write(DisplayText.truncated(name, toWidth: room), row: 0, column: col, style: .bold)
        grid.write(state, row: 0, column: col, limit: model.width - col, style: .dim)

        let rows = model.conversationHeight
        let layout = ConversationLayout(model: model, chat: chat)
        let lines = layout.visibleLines(of: user, rows: rows, from: model.anchor)
        let top = 1 + rows - lines.count  // short conversations sit at the bottom, next to the input
        // Where the search's text is in each message on screen: found once per message, however
        // many lines it wraps to.
        let matcher = model.search.map { MessageSearch.Matcher($0.text) }
        var found: [Int: [Range<String.Index>]] = [:]
        for (n, line) in lines.enumerated() {
            let row = top + n
            switch line {
            case .label(let label, let fromSelf):
                grid.write(label, row: row, column: left, limit: width, style: fromSelf ? .bold : .accent)
            case .newMessages:
                let text = "── new messages "
                let w = grid.write(text, row: row, column: left, limit: width, style: .highlight)
                grid.write(String(repeating: "─", count: max(width - w - 1, 0)), row: row, column: left + w, limit: width - w, style: .highlight)
            case .text(let time, let text, _, let index):
                if let time { grid.write(time, row: row, column: left, style: .dim) }
                let column = left + ConversationLayout.timeColumn
                grid.write(text, row: row, column: column, limit: width - ConversationLayout.timeColumn)
                if let search = model.search, let matcher, search.isMatch(user.droppedCount + index) {
                    let style: Style = search.currentPosition == user.droppedCount + index ? .currentMatch : .match
                    if found[index] == nil { found[index] = matcher.ranges(in: String(text.base)) }
                    highlight(found[index]!, in: text, row: row, column: column, style: style, &grid)
                }
            case .queued:
                grid.write("⧗ queued: sent when the connection is back", row: row, column: left + ConversationLayout.timeColumn, limit: width - ConversationLayout.timeColumn, style: .dim)
            }
        }
        if model.anchor != nil {
            let full = model.moreBelow ? " ▼ new messages below · End " : " ▼ more below · End "
            let text = DisplayText.width(of: full) <= width ? full : (model.moreBelow ? " ▼ new below " : " ▼ more ")
            let w = min(DisplayText.width(of: text), width)
            let column = max(model.width - w, left)
            grid.fill(row: rows, column: column, width: w, height: 1)
            grid.write(text, row: rows, column: column, limit: width, style: .highlight)
        }
    }

    /// Marks, in one line of a message, where the search's text occurs in the whole message
    /// (`ranges`, in `text.base`): one that the wrapping cut is marked on both lines.
    static func highlight(_ ranges: [Range<String.Index>], in text: Substring, row: Int, column: Int, style: Style, _ grid: inout CellGrid) {
        // The first that reaches into this line, by binary search (a long message may hold
        // thousands), then the ones that start in it.
        var low = 0
        var high = ranges.count
        while low < high {
            let mid = (low + high) / 2
            if ranges[mid].upperBound <= text.startIndex { low = mid + 1 } else { high = mid }
        }
        for range in ranges[low...] {
            guard range.lowerBound < text.endIndex else { break }
            let start = max(range.lowerBound, text.startIndex)
            let end = min(range.upperBound, text.endIndex)
            let offset = DisplayText.width(of: text.base[text.startIndex..<start])
            grid.restyle(row: row, column: column + offset, width: DisplayText.width(of: text.base[start..<end]), style: style)
        }
    }

    static func statusBar(_ model: UIModel, _ chat: ChatState, _ grid: inout CellGrid) {
        let row = model.height - 2
        grid.fill(row: row, column: 0, width: model.width, height: 1, style: .reverse)
        var hint = "F1 help · Tab next · Ctrl-Q quit"
        var status = model.notice ?? connectionText(model, chat)
        if let search = model.search {
            hint = "Ctrl-R older · Ctrl-S newer · Enter stays · Esc back"
            if model.notice == nil {
                status = search.text.isEmpty ? "search this conversation"
                    : search.matches.isEmpty ? "no match" : "match \((search.current ?? 0) + 1) of \(search.matches.count)"
            }
        }
        let hintWidth = DisplayText.width(of: hint)
        let room = model.width - 2
        let showHint = DisplayText.width(of: status) + hintWidth + 3 <= room
        grid.write(DisplayText.truncated(status, toWidth: showHint ? room - hintWidth - 3 : room), row: row, column: 1, style: .reverse)
        if showHint { grid.write(hint, row: row, column: model.width - 1 - hintWidth, style: .reverse) }
    }

    static func inputLine(_ model: UIModel, _ chat: ChatState, _ grid: inout CellGrid) {
        let row = model.height - 1
        var prompt = chat.selectedUser.map { "\(DisplayText.truncated(DisplayText.inert($0.username), toWidth: 12))> " } ?? "> "
        var line = model.input
        if let search = model.search {
            prompt = "search: "
            line = search.query
        }
        let w = grid.write(prompt, row: row, column: 0, style: .accent)
        let (text, cursor) = line.visible(columns: model.width - w - 1)
        grid.write(text, row: row, column: w)
        grid.cursor = (row, w + cursor)
    }

    static func help(_ model: UIModel, _ grid: inout CellGrid) {
        let lines = [
            ("Tab / Shift-Tab, Ctrl-N / Ctrl-P", "next / previous conversation"),
            ("Alt-1 … Alt-9", "jump to the n-th user"),
            ("Alt-A", "next conversation with unread messages"),
            ("PgUp / PgDn, wheel", "scroll the conversation"),
            ("End", "back to the newest message"),
            ("Enter", "send (// sends a leading /)"),
            ("Ctrl-R, /search TEXT", "search this conversation"),
            ("/search -a TEXT", "search them all, the history too"),
            ("Up / Down", "messages you sent here"),
            ("Left / Right, Home / End", "move; also Ctrl-B/F/A/E"),
            ("Backspace / Delete", "delete a character"),
            ("Ctrl-W / Ctrl-U / Ctrl-K", "delete word / to start / to end"),
            ("Paste", "goes into the input, lines kept"),
            ("Click a name", "open that conversation"),
            ("/logout", "forget this session, new username"),
            ("/quit, Ctrl-Q, Ctrl-C", "quit"),
            ("Ctrl-L", "redraw the screen"),
            ("F1, ?, /help", "this help; any key closes it"),
        ]
        let keyWidth = 34
        let boxWidth = min(model.width - 2, keyWidth + 44)
        let boxHeight = min(model.height - 2, lines.count + 4)
        let left = (model.width - boxWidth) / 2
        let top = (model.height - boxHeight) / 2
        frame(row: top, column: left, width: boxWidth, height: boxHeight, &grid)
        grid.write(" Keys ", row: top, column: left + 2, style: .bold)
        let inner = boxWidth - 4
        for (n, (key, action)) in lines.prefix(boxHeight - 4).enumerated() {
            let row = top + 2 + n
            let kw = min(keyWidth, inner / 2)
            grid.write(DisplayText.truncated(key, toWidth: kw - 1), row: row, column: left + 2, style: .accent)
            grid.write(DisplayText.truncated(action, toWidth: inner - kw), row: row, column: left + 2 + kw)
        }
    }

    /// The hits of a search across every conversation, in a box over the chat.
    static func searchResults(_ model: UIModel, _ results: SearchResults, _ grid: inout CellGrid) {
        let boxWidth = min(model.width - 2, 100)
        let boxHeight = min(model.height - 2, max(min(results.hits?.count ?? 1, model.resultRows), 1) + 4)
        let left = (model.width - boxWidth) / 2
        let top = (model.height - boxHeight) / 2
        frame(row: top, column: left, width: boxWidth, height: boxHeight, &grid)
        let inner = boxWidth - 4
        let query = DisplayText.inert(results.query)
        let count = results.hits.map { $0.count == MessageSearch.maximumHits ? "the newest \($0.count)" : "\($0.count)" } ?? "searching…"
        let title = DisplayText.truncated(" \"\(query)\" in every conversation: \(count) ", toWidth: inner)
        grid.write(title, row: top, column: left + 2, style: .bold)
        grid.write(
            DisplayText.truncated("Up/Down choose · Enter opens the conversation there · Esc closes", toWidth: inner),
            row: top + boxHeight - 2, column: left + 2, style: .dim
        )
        guard let hits = results.hits else { return }
        if hits.isEmpty { grid.write("no message matches", row: top + 1, column: left + 2, limit: inner, style: .dim) }
        let nameWidth = min(16, inner / 4)
        let timeWidth = 12  // "11-30 14:02 "
        for n in 0..<min(boxHeight - 4, hits.count - results.offset) {
            let index = results.offset + n
            let hit = hits[index]
            let row = top + 1 + n
            let selected = index == results.selected
            if selected { grid.fill(row: row, column: left + 1, width: boxWidth - 2, height: 1, style: .reverse) }
            var col = left + 2
            let name = DisplayText.truncated(DisplayText.inert(hit.message.fromSelf ? "→ " + hit.username : hit.username), toWidth: nameWidth - 1)
            grid.write(name, row: row, column: col, style: selected ? .reverse : .accent)
            col += nameWidth
            grid.write(dayAndTime(hit.message.at, in: model.settings.timeZone), row: row, column: col, style: selected ? .reverse : .dim)
            col += timeWidth
            let snippet = Self.snippet(of: hit.message.content, around: results.query, width: inner - nameWidth - timeWidth)
            grid.write(snippet, row: row, column: col, limit: left + boxWidth - 2 - col, style: selected ? .reverse : .normal)
            if !selected { highlight(MessageSearch.ranges(of: results.query, in: snippet), in: snippet[...], row: row, column: col, style: .match, &grid) }
        }
    }

    /// One line of a message around the first match: inert, line feeds as spaces.
    static func snippet(of content: String, around query: String, width: Int) -> String {
        let text = DisplayText.inert(content.replacingOccurrences(of: "\n", with: " "))
        guard let range = MessageSearch.Matcher(query).ranges(in: text, limit: 1).first,
            DisplayText.width(of: text[..<range.upperBound]) > width
        else { return DisplayText.truncated(text, toWidth: width) }
        // The match is further than the line goes: from a little before it, read in its place.
        var start = range.lowerBound
        var before = 0
        while start > text.startIndex, before < width / 3 {
            start = text.index(before: start)
            before += DisplayText.width(of: text[start...start])
        }
        let shown = start == text.startIndex ? text : "…" + text[start...]
        return DisplayText.truncated(shown, toWidth: width)
    }

    /// "MM-DD HH:MM" in `timeZone`.
    static func dayAndTime(_ date: Date, in timeZone: TimeZone) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let day = calendar.dateComponents([.month, .day], from: date)
        let two = { (n: Int) in (n < 10 ? "0" : "") + String(n) }
        return two(day.month ?? 0) + "-" + two(day.day ?? 0) + " " + ConversationLayout.clock(date, in: timeZone)
    }

    /// A box drawn over what is there.
    static func frame(row top: Int, column left: Int, width: Int, height: Int, _ grid: inout CellGrid) {
        grid.fill(row: top, column: left, width: width, height: height)
        grid.write("┌" + String(repeating: "─", count: width - 2) + "┐", row: top, column: left, style: .dim)
        for r in (top + 1)..<(top + height - 1) {
            grid.write("│", row: r, column: left, style: .dim)
            grid.write("│", row: r, column: left + width - 1, style: .dim)
        }
        grid.write("└" + String(repeating: "─", count: width - 2) + "┘", row: top + height - 1, column: left, style: .dim)
    }

    // MARK: Helpers

    /// Usernames are not unique (a server that forgot its sessions brings old and new "bob"):
    /// when another user's name looks the same (the same skeleton: it differs only by
    /// invisible characters, Unicode form or case, `ChatState.hasLookalike`), " #" and the
    /// start of the userID tell them apart, wherever they are in the list.
    static func tag(_ model: UIModel, _ chat: ChatState, userID: String) -> String {
        guard chat.hasLookalike(userID) else { return "" }
        // Six characters of the ID: an impostor would need millions of logins to match them.
        return " #" + DisplayText.inert(String(userID.prefix(6)))
    }

    /// How a user's presence is shown: `●` online, `○` offline, and a dimmed `◌` for a peer
    /// while it is not the server's word (`ChatState.presenceKnown`); yourself is always known.
    static func presence(of user: ChatUser, _ chat: ChatState) -> (glyph: String, word: String, style: Style) {
        guard chat.presenceKnown || user.isSelf else { return ("◌", "unknown", .offline) }
        return user.isConnected ? ("●", "online", .online) : ("○", "offline", .offline)
    }

    /// The window's title: the unread count first (what a taskbar or a tab shows), then the
    /// program and who is logged in. Nil when the title is turned off.
    public static func title(_ model: UIModel, _ chat: ChatState) -> String? {
        guard model.settings.title else { return nil }
        let count = chat.totalUnread + model.unseen
        let unread = count > 0 ? "(\(count > 999 ? "999+" : String(count))) " : ""
        let name = chat.selfUsername.map { " — " + DisplayText.label($0, columns: 32) } ?? ""
        return unread + "Parley" + name
    }

    static func connectionText(_ model: UIModel, _ chat: ChatState) -> String {
        switch chat.connection {
        case .connecting:
            return "connecting…"
        case .connected:
            let name = chat.selfUsername.map { DisplayText.inert($0) } ?? "?"
            return "connected as \(name)"
        case .reconnecting(let attempt, _):
            if let seconds = model.reconnectCountdown, seconds > 0 {
                return "reconnecting in \(seconds) s, attempt \(attempt)"
            }
            return "reconnecting, attempt \(attempt)"
        case .refused(let reason, _, _):
            // The server's own words, then when we try again.
            let again = model.reconnectCountdown.map { $0 > 0 ? "; trying again in \($0) s" : "; trying again" } ?? ""
            return "refused: \(DisplayText.inert(reason))\(again)"
        case .offline(let reason):
            return "offline: \(DisplayText.inert(reason))"
        }
    }

    static func style(of status: ConnectionStatus) -> Style {
        switch status {
        case .connected: return .online
        case .connecting, .reconnecting: return .highlight
        case .refused, .offline: return .error
        }
    }

    static func centre(_ text: String, row: Int, in grid: inout CellGrid, style: Style) {
        let text = DisplayText.truncated(text, toWidth: grid.width)
        let column = max((grid.width - DisplayText.width(of: text)) / 2, 0)
        grid.write(text, row: row, column: column, style: style)
    }
}
