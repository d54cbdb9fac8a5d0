import TerminalKeys
import CNcursesw
import Foundation
public import TerminalRuntime
public import TerminalUI

#if canImport(Glibc)
import Glibc
#endif

/// The ncursesw backend. Owns the terminal between `init` and `restore()`: copies the cells
/// of a `CellGrid` that changed to the screen, with one `doupdate` per frame, and waits in
/// `poll()` on the terminal, the chat side's wake pipe and the signals. Input is handed over
/// as bytes (the program's `KeyDecoder` reads them): ncurses draws, and decodes nothing.
///
/// All of it runs on one thread: the one that runs the `Program`.
public final class Terminal: Backend {
    /// How a desktop notification is written: OSC 777 (foot, WezTerm, VTE, Ghostty, kitty) or
    /// OSC 9 (iTerm2, WezTerm, Ghostty, Windows Terminal).
    public enum NotificationStyle: String, Sendable, CaseIterable {
        case osc777, osc9

        /// iTerm2 speaks OSC 9 only; the others that notify take OSC 777.
        public static func forTerminal(_ environment: [String: String]) -> NotificationStyle {
            environment["TERM_PROGRAM"] == "iTerm.app" ? .osc9 : .osc777
        }
    }

    public struct Options: Sendable {
        public var mouse: Bool
        /// False to draw without colour (also when `NO_COLOR` is set or the terminal has none).
        public var colors: Bool
        public var notifications: NotificationStyle
        /// Inside tmux: escape sequences for the outer terminal go through tmux's passthrough.
        public var tmux: Bool
        public init(mouse: Bool = true, colors: Bool = true, notifications: NotificationStyle = .osc777, tmux: Bool = false) {
            self.mouse = mouse
            self.colors = colors
            self.notifications = notifications
            self.tmux = tmux
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

    private let options: Options
    private var previous: CellGrid?
    private var attributes: [Style: (attr: attr_t, pair: Int16)] = [:]
    private var restored = false
    private let wake: WakePipe
    private let signals = WakePipe()
    static let handledSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGWINCH]
    public private(set) var width: Int
    public private(set) var height: Int

    /// Takes the terminal over. `wake` is the pipe the chat side writes to when it has news.
    public init(options: Options, wake: WakePipe) throws(StartError) {
        guard isatty(0) == 1, isatty(1) == 1 else { throw .notATerminal }
        self.options = options
        self.wake = wake
        // Widths follow the person's locale (UTF-8 expected).
        setlocale(LC_ALL, "")
        // Chat text is UTF-8 whatever the environment says: without a UTF-8 locale (LANG unset,
        // as in many containers) wide characters would be measured and drawn wrong.
        if String(cString: nl_langinfo(nl_item(CODESET))) != "UTF-8" {
            _ = setlocale(LC_CTYPE, "C.UTF-8") ?? setlocale(LC_CTYPE, "en_US.UTF-8")
        }
        TerminalRestore.install()
        // newterm rather than initscr: a bad $TERM is an error to report, not an exit.
        guard newterm(nil, fdopen(1, "w"), fdopen(0, "r")) != nil else {
            TerminalRestore.forget()
            throw .cannotInitialize(getenv("TERM").map { String(cString: $0) } ?? "")
        }
        raw()  // Ctrl-C, Ctrl-Q and Ctrl-S reach us as keys
        noecho()
        nonl()
        // ncurses would cut a frame short on pending input, and finish it only at the next
        // refresh: a frame here is drawn whole (the program draws again only when it changes).
        typeahead(-1)
        let colors = options.colors && getenv("NO_COLOR").map { String(cString: $0).isEmpty } ?? true && has_colors()
        width = Int(parley_cols())
        height = Int(parley_lines())
        setUpStyles(colors: colors)
        // The old title goes on the terminal's title stack; bracketed paste and focus reports
        // on; the mouse as SGR reports (X10 where a terminal lacks them: the decoder reads both).
        var modes = "\u{1B}[22;0t\u{1B}[?2004h\u{1B}[?1004h"
        if options.mouse { modes += "\u{1B}[?1000h\u{1B}[?1006h" }
        TerminalRestore.write(modes)
        SignalPipe.install(signals, signals: Self.handledSignals)
    }

    deinit { restore() }

    /// Gives the terminal back as it was (its modes, its title). Safe to call more than once.
    public func restore() {
        guard !restored else { return }
        restored = true
        SignalPipe.uninstall(signals: Self.handledSignals)
        endwin()
        TerminalRestore.write("\u{1B}[?2004l\u{1B}[?1004l\u{1B}[?1006l\u{1B}[?1000l\u{1B}[23;0t")
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
                .match: (reverse, 5), .currentMatch: (reverse | bold, 3),
            ]
        } else {
            // Monochrome: every style still differs from its neighbours by attribute.
            attributes = [
                .normal: (0, 0), .bold: (bold, 0), .dim: (dim, 0), .reverse: (reverse, 0),
                .online: (bold, 0), .offline: (dim, 0), .accent: (bold, 0), .error: (bold | underline, 0),
                .highlight: (bold | underline, 0), .match: (underline, 0), .currentMatch: (reverse | underline, 0),
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

    /// OSC 2. The text is inert already; it cannot end the sequence early.
    public func setTitle(_ title: String) {
        TerminalRestore.write("\u{1B}]2;\(title)\u{1B}\\")
    }

    /// OSC 777 ("notify", a title and a body, separated by ";": none inside the title) or
    /// OSC 9 (one text, which must not start with a digit: "4;" is a progress report to some).
    public func notify(title: String, body: String) {
        let sequence: String
        switch options.notifications {
        case .osc777: sequence = "\u{1B}]777;notify;\(title.replacingOccurrences(of: ";", with: ","));\(body)\u{1B}\\"
        case .osc9: sequence = "\u{1B}]9;\(title): \(body)\u{1B}\\"
        }
        // tmux keeps what it does not know to itself unless it is passed through (and then
        // only with `allow-passthrough on`): every ESC doubled, inside DCS tmux; … ST.
        TerminalRestore.write(options.tmux ? "\u{1B}Ptmux;" + sequence.replacingOccurrences(of: "\u{1B}", with: "\u{1B}\u{1B}") + "\u{1B}\\" : sequence)
    }

    // MARK: Input

    /// Blocks in `poll()` on the terminal, the wake pipe and the signals, for at most
    /// `timeout`; an idle client makes no system calls at all.
    public func wait(timeout: Duration?) -> [BackendEvent] {
        var fds = [
            pollfd(fd: 0, events: Int16(POLLIN), revents: 0),
            pollfd(fd: wake.readEnd, events: Int16(POLLIN), revents: 0),
            pollfd(fd: signals.readEnd, events: Int16(POLLIN), revents: 0),
        ]
        let milliseconds = timeout.map { Int32(clamping: ($0.components.seconds * 1000) + ($0.components.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000) }
        let ready = poll(&fds, nfds_t(fds.count), milliseconds ?? -1)
        if ready < 0 {
            // EINTR: a signal, whose byte is in its pipe. Anything else would repeat at once: leave.
            return errno == EINTR ? [] : [.terminate(signal: SIGHUP)]
        }
        if ready == 0 { return [] }
        var events: [BackendEvent] = []
        if fds[2].revents != 0 {
            for byte in signals.drain() {
                let signal = Int32(byte)
                events.append(signal == SIGWINCH ? resized() : .terminate(signal: signal))
            }
        }
        if fds[0].revents & Int16(POLLIN) != 0 {
            // One read: poll said it will not block (the descriptor stays blocking, as the
            // shell that shares it expects). More waiting is the next poll's.
            var buffer = [UInt8](repeating: 0, count: 65_536)
            let n = read(0, &buffer, buffer.count)
            if n > 0 {
                events.append(.input(Array(buffer[0..<n])))
            } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                events.append(.terminate(signal: SIGHUP))  // the terminal is gone
            }
        } else if fds[0].revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 {
            // The terminal is gone (the window closed), whether or not a SIGHUP comes: leave
            // rather than poll a dead descriptor again and again.
            events.append(.terminate(signal: SIGHUP))
        }
        if fds[1].revents != 0 {
            _ = wake.drain()
            events.append(.wake)
        }
        return events
    }

    /// The terminal's new size, after SIGWINCH; the next frame is a full repaint.
    private func resized() -> BackendEvent {
        var size = winsize()
        if ioctl(1, UInt(TIOCGWINSZ), &size) == 0, size.ws_row > 0, size.ws_col > 0 {
            resizeterm(Int32(size.ws_row), Int32(size.ws_col))
        }
        width = Int(parley_cols())
        height = Int(parley_lines())
        previous = nil
        return .resize(width: width, height: height)
    }
}
