/// How a cell looks. A backend maps each style to colours when the terminal
/// has them (and `NO_COLOR` is unset), and to plain attributes otherwise, so
/// every style still reads on a monochrome terminal.
public enum Style: UInt8, Sendable, Hashable, CaseIterable {
    case normal
    case bold
    case dim
    /// Selected rows, the status bar.
    case reverse
    case online
    case offline
    /// Own name, sender labels of the peer.
    case accent
    case error
    /// Unread counts, the "new messages" line, "more below".
    case highlight
    /// Where a search's text occurs.
    case match
    /// The occurrence a search shows now.
    case currentMatch
}

/// One column of the screen: the text drawn there (a scalar, plus any
/// combining marks), or nothing when the cell continues a wide character.
public struct Cell: Sendable, Hashable {
    public var text: String
    public var style: Style
    /// 1, or 2 for a wide character (the next cell is its continuation), 0 for a continuation.
    public var width: UInt8

    public static let blank = Cell(text: " ", style: .normal, width: 1)

    public init(text: String, style: Style, width: UInt8) {
        self.text = text
        self.style = style
        self.width = width
    }
}

/// An in-memory screen: the view draws here; the ncurses backend copies the
/// cells that changed to the terminal, and tests read it as plain lines.
public struct CellGrid: Sendable, Hashable {
    public let width: Int
    public let height: Int
    public private(set) var cells: [Cell]
    /// Where the terminal's cursor goes (the input line), or nil to hide it.
    public var cursor: (row: Int, column: Int)? {
        get { cursorRow.map { ($0, cursorColumn) } }
        set {
            cursorRow = newValue?.row
            cursorColumn = newValue?.column ?? 0
        }
    }
    private var cursorRow: Int?
    private var cursorColumn = 0

    public init(width: Int, height: Int) {
        self.width = max(width, 0)
        self.height = max(height, 0)
        cells = Array(repeating: .blank, count: self.width * self.height)
    }

    public subscript(row: Int, column: Int) -> Cell {
        cells[row * width + column]
    }

    /// Blanks a rectangle (clipped to the grid).
    public mutating func fill(row: Int, column: Int, width w: Int, height h: Int, style: Style = .normal) {
        let rows = max(row, 0)..<max(min(row + h, height), max(row, 0))
        let columns = max(column, 0)..<max(min(column + w, width), max(column, 0))
        guard !rows.isEmpty, !columns.isEmpty else { return }
        for r in rows {
            for c in columns {
                cells[r * width + c] = Cell(text: " ", style: style, width: 1)
            }
            splitWideCharacters(row: r, columns: columns)
        }
    }

    /// A wide character cut by an edge of `columns` would leave half a glyph: blank the half outside.
    private mutating func splitWideCharacters(row r: Int, columns: Range<Int>) {
        let first = columns.lowerBound
        if first > 0, cells[r * width + first - 1].width == 2 {
            cells[r * width + first - 1] = Cell(text: " ", style: cells[r * width + first - 1].style, width: 1)
        }
        let end = columns.upperBound
        if end < width, cells[r * width + end].width == 0 {
            cells[r * width + end] = Cell(text: " ", style: cells[r * width + end].style, width: 1)
        }
    }

    /// Writes text (already inert) from a position, clipped at `limit` columns
    /// (and the grid's edge). A wide character that does not fit whole is left
    /// out. Returns the columns used.
    @discardableResult
    public mutating func write(_ text: some StringProtocol, row: Int, column: Int, limit: Int? = nil, style: Style = .normal) -> Int {
        guard row >= 0, row < height, column >= 0 else { return 0 }
        let end = min(column + (limit ?? width), width)
        guard column < end else { return 0 }
        var col = column
        var last: Int?
        for var scalar in text.unicodeScalars {
            var w = 1
            if let drawn = DisplayText.drawnWidth(of: scalar) {
                w = drawn
            } else {
                // Unknown to this C library (a code point newer than it, say): the terminal and
                // ncurses would disagree about its width, so draw the replacement character.
                scalar = "\u{FFFD}"
            }
            if w == 0 {
                // A combining mark joins the character before it.
                if let last { cells[row * width + last].text.unicodeScalars.append(scalar) }
                continue
            }
            guard col + w <= end else { break }
            cells[row * width + col] = Cell(text: String(Character(scalar)), style: style, width: UInt8(w))
            if w == 2 { cells[row * width + col + 1] = Cell(text: "", style: style, width: 0) }
            last = col
            col += w
        }
        if col > column { splitWideCharacters(row: row, columns: column..<col) }
        return col - column
    }

    /// Sets the style of cells already written.
    public mutating func restyle(row: Int, column: Int, width w: Int, style: Style) {
        guard row >= 0, row < height, column + w > max(column, 0), column < width else { return }
        for c in max(column, 0)..<min(column + w, width) { cells[row * width + c].style = style }
    }

    /// The text of one row, trailing spaces removed (for tests and captures).
    public func line(_ row: Int) -> String {
        var out = ""
        for c in 0..<width { out += cells[row * width + c].text }
        while out.last == " " { out.removeLast() }
        return out
    }

    /// Every row, as `line(_:)` gives them.
    public var lines: [String] { (0..<height).map(line) }

    /// The rows joined by line feeds: a plain-text capture of the screen.
    public var text: String { lines.joined(separator: "\n") }

    public static func == (lhs: CellGrid, rhs: CellGrid) -> Bool {
        lhs.width == rhs.width && lhs.height == rhs.height && lhs.cells == rhs.cells
            && lhs.cursorRow == rhs.cursorRow && lhs.cursorColumn == rhs.cursorColumn
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(width)
        hasher.combine(height)
        hasher.combine(cells)
    }
}
