import CNcursesw
public import TerminalUI

#if canImport(Glibc)
import Glibc
#endif

/// What the terminal has to say to the program.
public enum TerminalEvent: Sendable {
    case key(Key)
    case paste(String)
    case resize(width: Int, height: Int)
}

/// The ncursesw backend. Owns the terminal between `init` and `restore()`:
/// decodes keys (bracketed paste and mouse included) and copies the cells of
/// a `CellGrid` that changed to the screen, with one `doupdate` per frame.
///
/// All of it runs on one thread: the one that runs `EventLoop`.
public final class Terminal {
    public struct Options: Sendable {
        public var mouse: Bool
        /// False to draw without colour (also when `NO_COLOR` is set or the terminal has none).
        public var colors: Bool
        public init(mouse: Bool = true, colors: Bool = true) {
            self.mouse = mouse
            self.colors = colors
        }
    }

    public enum StartError: Error, CustomStringConvertible {
        case notATerminal
        case cannotInitialize(String)
        public var description: String {
            switch self {
            case .notATerminal: return "standard input and output must be a terminal (or use --headless)"
            case .cannotInitialize(let term): return "cannot use the terminal type \"\(term)\" (check $TERM)"
            }
        }
    }

    private var previous: CellGrid?
    private var attributes: [Style: (attr: attr_t, pair: Int16)] = [:]
    private var pasting: String?
    private var restored = false
    public private(set) var width: Int
    public private(set) var height: Int

    // Codes ncurses returns for the bracketed-paste markers, which it learns with define_key.
    private static let pasteStart: Int32 = 0x7F0
    private static let pasteEnd: Int32 = 0x7F1
    /// A paste larger than this is handed over in parts rather than held without end.
    static let pasteLimit = 16 << 20

    public init(options: Options) throws(StartError) {
        guard isatty(0) == 1, isatty(1) == 1 else { throw .notATerminal }
        // Widths and input decoding follow the person's locale (UTF-8 expected).
        setlocale(LC_ALL, "")
        // Chat text is UTF-8 whatever the environment says: without a UTF-8 locale (LANG unset,
        // as in many containers) wide characters would be measured and drawn wrong.
        if String(cString: nl_langinfo(nl_item(CODESET))) != "UTF-8" {
            _ = setlocale(LC_CTYPE, "C.UTF-8") ?? setlocale(LC_CTYPE, "en_US.UTF-8")
        }
        TerminalRestore.install()
        if getenv("ESCDELAY") == nil { set_escdelay(25) }  // Alt-keys arrive as ESC + key
        // newterm rather than initscr: a bad $TERM is an error to report, not an exit.
        guard newterm(nil, fdopen(1, "w"), fdopen(0, "r")) != nil else {
            TerminalRestore.forget()
            throw .cannotInitialize(getenv("TERM").map { String(cString: $0) } ?? "")
        }
        raw()  // Ctrl-C, Ctrl-Q and Ctrl-S reach us as keys
        noecho()
        nonl()
        keypad(parley_stdscr(), true)
        nodelay(parley_stdscr(), true)  // reads never block: poll() does the waiting
        define_key("\u{1B}[200~", Self.pasteStart)
        define_key("\u{1B}[201~", Self.pasteEnd)
        if options.mouse {
            let mask = parley_button1_pressed() | parley_button1_clicked() | parley_button4_pressed() | parley_button5_pressed()
            mousemask(mask, nil)
            mouseinterval(0)
        }
        let colors = options.colors && getenv("NO_COLOR").map { String(cString: $0).isEmpty } ?? true && has_colors()
        width = Int(parley_cols())
        height = Int(parley_lines())
        setUpStyles(colors: colors)
        TerminalRestore.write("\u{1B}[?2004h")  // bracketed paste on
    }

    deinit { restore() }

    /// Gives the terminal back as it was. Safe to call more than once.
    public func restore() {
        guard !restored else { return }
        restored = true
        mousemask(0, nil)
        endwin()
        TerminalRestore.write("\u{1B}[?2004l")
        TerminalRestore.forget()
    }

    // MARK: Styles

    private func setUpStyles(colors: Bool) {
        let bold = attr_t(parley_a_bold())
        let dim = attr_t(parley_a_dim())
        let reverse = attr_t(parley_a_reverse())
        let underline = attr_t(parley_a_underline())
        if colors {
            start_color()
            use_default_colors()
            init_pair(1, Int16(COLOR_GREEN), -1)
            init_pair(2, Int16(COLOR_WHITE), -1)
            init_pair(3, Int16(COLOR_CYAN), -1)
            init_pair(4, Int16(COLOR_RED), -1)
            init_pair(5, Int16(COLOR_YELLOW), -1)
            attributes = [
                .normal: (0, 0), .bold: (bold, 0), .dim: (dim, 0), .reverse: (reverse, 0),
                .online: (bold, 1), .offline: (dim, 2), .accent: (bold, 3), .error: (bold, 4), .highlight: (bold, 5),
            ]
        } else {
            // Monochrome: every style still differs from its neighbours by attribute.
            attributes = [
                .normal: (0, 0), .bold: (bold, 0), .dim: (dim, 0), .reverse: (reverse, 0),
                .online: (bold, 0), .offline: (dim, 0), .accent: (bold, 0), .error: (bold | underline, 0),
                .highlight: (bold | underline, 0),
            ]
        }
    }

    // MARK: Output

    /// Copies what changed since the last frame to the screen: one `doupdate`.
    /// `full` repaints everything (Ctrl-L, or after a resize).
    public func draw(_ grid: CellGrid, full: Bool = false) {
        let screen = parley_stdscr()
        let repaint = full || previous == nil || previous!.width != grid.width || previous!.height != grid.height
        if repaint {
            werase(screen)
            clearok(screen, true)
        }
        var cell = cchar_t()
        var text = [wchar_t](repeating: 0, count: 8)
        for row in 0..<min(grid.height, height) {
            var column = 0
            while column < min(grid.width, width) {
                let current = grid[row, column]
                defer { column += max(Int(current.width), 1) }
                if current.width == 0 { continue }
                if !repaint, let previous, previous[row, column] == current { continue }
                // Never write the terminal's last cell: that scrolls some terminals.
                if row == height - 1, column + Int(current.width) >= width { continue }
                var n = 0
                for scalar in current.text.unicodeScalars where n < text.count - 1 {
                    text[n] = wchar_t(bitPattern: scalar.value)
                    n += 1
                }
                text[n] = 0
                let style = attributes[current.style] ?? (0, 0)
                var result = text.withUnsafeBufferPointer { parley_setcchar_text(&cell, $0.baseAddress, style.attr, style.pair) }
                if result == ERR {
                    // Never draw a stale cell: a character ncurses refuses becomes U+FFFD.
                    text[0] = 0xFFFD
                    text[1] = 0
                    result = text.withUnsafeBufferPointer { parley_setcchar_text(&cell, $0.baseAddress, style.attr, style.pair) }
                }
                if result != ERR { mvwadd_wch(screen, Int32(row), Int32(column), &cell) }
            }
        }
        if let cursor = grid.cursor {
            curs_set(1)
            wmove(screen, Int32(cursor.row), Int32(min(cursor.column, width - 1)))
        } else {
            curs_set(0)
        }
        wnoutrefresh(screen)
        doupdate()
        previous = grid
    }

    public func bell() { beep() }

    // MARK: Input

    /// The terminal's new size, after SIGWINCH.
    public func resized() -> TerminalEvent {
        var size = winsize()
        if ioctl(1, UInt(TIOCGWINSZ), &size) == 0, size.ws_row > 0, size.ws_col > 0 {
            resizeterm(Int32(size.ws_row), Int32(size.ws_col))
        }
        return currentSize()
    }

    /// The size ncurses works with now, as a resize event; the next frame is a full repaint.
    private func currentSize() -> TerminalEvent {
        width = Int(parley_cols())
        height = Int(parley_lines())
        previous = nil
        return .resize(width: width, height: height)
    }

    /// Everything the terminal has sent so far (never blocks).
    public func readEvents() -> [TerminalEvent] {
        var events: [TerminalEvent] = []
        var wch: wint_t = 0
        while true {
            let result = wget_wch(parley_stdscr(), &wch)
            if result == ERR { break }
            let code = Int32(bitPattern: wch)
            if result == KEY_CODE_YES {
                if code == Self.pasteStart {
                    pasting = ""
                } else if code == Self.pasteEnd {
                    if let text = pasting { events.append(.paste(text)) }
                    pasting = nil
                } else if code == parley_key_resize() {
                    // ncurses has resized itself already (its own SIGWINCH handling, or our
                    // resizeterm queued this). Calling resizeterm again here would queue
                    // another KEY_RESIZE whenever ncurses' idea of the size lags the tty's:
                    // the loop never ends (seen in a tmux pane split right after start).
                    events.append(currentSize())
                } else if code == parley_key_mouse() {
                    if let key = mouse() { events.append(.key(key)) }
                } else if let key = Self.functionKey(code) {
                    if pasting != nil {
                        if key == .enter { pasting! += "\n" }
                    } else {
                        events.append(.key(key))
                    }
                }
                continue
            }
            guard let scalar = Unicode.Scalar(UInt32(wch)) else { continue }
            if pasting != nil {
                pasting!.unicodeScalars.append(scalar == "\r" ? "\n" : scalar)
                // The end marker may arrive split (a slow link): then ncurses hands it over as
                // plain characters. Never stay in paste mode (where Ctrl-Q is text) past it.
                if scalar == "~", pasting!.hasSuffix("\u{1B}[201~") {
                    events.append(.paste(String(pasting!.dropLast(6))))
                    pasting = nil
                } else if pasting!.utf8.count > Self.pasteLimit {
                    events.append(.paste(pasting!))
                    pasting = nil
                }
                continue
            }
            if scalar == "\u{1B}" {
                // ESC then a printable character at once: Alt plus it. Anything else after ESC
                // goes back to be read as itself; ESC alone is Escape.
                var next: wint_t = 0
                let result = wget_wch(parley_stdscr(), &next)
                if result == OK, next == 0x5B {  // "["
                    // A sequence ncurses did not recognise (or one split by a slow link):
                    // read it whole; a paste marker starts paste mode, anything else is dropped
                    // rather than typed as "[1;5D".
                    if readSequence() == "200~" { pasting = "" }
                    continue
                }
                if result == OK, let following = Unicode.Scalar(UInt32(next)), following.value >= 0x20, following.value != 0x7F {
                    events.append(.key(.alt(Character(following))))
                    continue
                }
                if result == KEY_CODE_YES {
                    ungetch(Int32(bitPattern: next))
                } else if result == OK {
                    unget_wch(wchar_t(bitPattern: next))
                }
                events.append(.key(.escape))
                continue
            }
            if let key = Self.key(for: scalar) { events.append(.key(key)) }
        }
        return events
    }

    /// The rest of a control sequence after "ESC [": parameters up to the final byte.
    private func readSequence() -> String {
        var sequence = ""
        var wch: wint_t = 0
        while sequence.utf8.count < 32, wget_wch(parley_stdscr(), &wch) == OK, let scalar = Unicode.Scalar(UInt32(wch)) {
            sequence.unicodeScalars.append(scalar)
            if (0x40...0x7E).contains(scalar.value) { break }
        }
        return sequence
    }

    /// Nil for the control characters no binding uses (Ctrl-@, Ctrl-\ ] ^ _): they are not text.
    static func key(for scalar: Unicode.Scalar) -> Key? {
        switch scalar.value {
        case 0x09: return .tab
        case 0x0D, 0x0A: return .enter
        case 0x7F, 0x08: return .backspace
        case 0x01...0x1A: return .control(Character(Unicode.Scalar(scalar.value + 0x60)!))
        case 0x00...0x1F, 0x80...0x9F: return nil
        default: return .character(Character(scalar))
        }
    }

    static func functionKey(_ code: Int32) -> Key? {
        switch code {
        case KEY_UP: return .up
        case KEY_DOWN: return .down
        case KEY_LEFT: return .left
        case KEY_RIGHT: return .right
        case KEY_HOME: return .home
        case KEY_END: return .end
        case KEY_PPAGE: return .pageUp
        case KEY_NPAGE: return .pageDown
        case KEY_BACKSPACE: return .backspace
        case KEY_DC: return .delete
        case KEY_BTAB: return .backTab
        case KEY_ENTER: return .enter
        default:
            for n in 1...12 where code == parley_key_f(Int32(n)) { return .function(n) }
            return nil
        }
    }

    private func mouse() -> Key? {
        var event = MEVENT()
        guard getmouse(&event) == OK else { return nil }
        let row = Int(event.y)
        let column = Int(event.x)
        if event.bstate & parley_button4_pressed() != 0 { return .wheelUp(row: row, column: column) }
        if event.bstate & parley_button5_pressed() != 0 { return .wheelDown(row: row, column: column) }
        if event.bstate & (parley_button1_pressed() | parley_button1_clicked()) != 0 {
            return .mouseClick(row: row, column: column)
        }
        return nil
    }
}
