/// The text being typed, with a cursor: a line editor as a plain value.
/// Positions count characters (grapheme clusters), so the cursor never stops
/// inside an accented letter or an emoji.
public struct InputLine: Sendable, Hashable {
    public private(set) var characters: [Character] = []
    /// 0...characters.count
    public private(set) var cursor = 0

    public init(_ text: String = "") {
        characters = Array(text)
        cursor = characters.count
    }

    public var text: String { String(characters) }
    public var isEmpty: Bool { characters.isEmpty }

    public mutating func insert(_ text: String) {
        let new = Array(text)
        characters.insert(contentsOf: new, at: cursor)
        cursor += new.count
    }

    public mutating func moveLeft() { cursor = max(cursor - 1, 0) }
    public mutating func moveRight() { cursor = min(cursor + 1, characters.count) }
    public mutating func moveHome() { cursor = 0 }
    public mutating func moveEnd() { cursor = characters.count }

    public mutating func deleteBackward() {
        guard cursor > 0 else { return }
        characters.remove(at: cursor - 1)
        cursor -= 1
    }

    public mutating func deleteForward() {
        guard cursor < characters.count else { return }
        characters.remove(at: cursor)
    }

    /// Ctrl-W: the word before the cursor, and the spaces after it.
    public mutating func deleteWordBackward() {
        var start = cursor
        while start > 0, characters[start - 1].isWhitespace { start -= 1 }
        while start > 0, !characters[start - 1].isWhitespace { start -= 1 }
        characters.removeSubrange(start..<cursor)
        cursor = start
    }

    /// Ctrl-U.
    public mutating func deleteToStart() {
        characters.removeSubrange(0..<cursor)
        cursor = 0
    }

    /// Ctrl-K.
    public mutating func deleteToEnd() {
        characters.removeSubrange(cursor...)
    }

    /// At most `count` characters: what is past them goes.
    public mutating func limit(to count: Int) {
        guard characters.count > count else { return }
        characters.removeLast(characters.count - count)
        cursor = min(cursor, count)
    }

    public mutating func clear() {
        characters = []
        cursor = 0
    }

    /// What to draw in `columns` columns: a window on the text that keeps the
    /// cursor visible, line feeds shown as "↵", and the cursor's column in it.
    /// Costs what is shown, not the length of the text (a large paste stays fast).
    public func visible(columns: Int) -> (text: String, cursorColumn: Int) {
        guard columns > 1 else { return ("", 0) }
        func shown(_ c: Character) -> String { c == "\n" || c == "\r\n" ? "↵" : DisplayText.inert(String(c)) }
        // Back from the cursor as far as the text fits, one column kept for the cursor itself.
        var start = cursor
        var widthToCursor = 0
        while start > 0 {
            let w = DisplayText.width(of: shown(characters[start - 1]))
            if widthToCursor + w + 1 > columns { break }
            widthToCursor += w
            start -= 1
        }
        var text = ""
        var used = 0
        var index = start
        while index < characters.count {
            let piece = shown(characters[index])
            let w = DisplayText.width(of: piece)
            if used + w > columns { break }
            text += piece
            used += w
            index += 1
        }
        return (text, widthToCursor)
    }
}
