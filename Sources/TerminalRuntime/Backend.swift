import TerminalKeys
public import Chat
public import TerminalUI

/// What a backend has to tell the program.
public enum BackendEvent: Sendable, Hashable {
    /// Bytes the terminal sent (keys, pastes, mouse and focus reports), for `KeyDecoder`.
    case input([UInt8])
    /// The terminal's new size (SIGWINCH).
    case resize(width: Int, height: Int)
    /// The chat side has news: `ProgramHost.take()` has it.
    case wake
    /// SIGINT, SIGTERM or SIGHUP, or the terminal is gone: time to restore it and go.
    case terminate(signal: Int32)
}

/// A terminal, as the program sees it: events in, frames out. ncursesw in production
/// (`Terminal`), an in-memory one in the tests, so the event loop, resize, paste and signal
/// paths run without a terminal.
public protocol Backend: AnyObject {
    var width: Int { get }
    var height: Int { get }
    /// Blocks until something happens, or `timeout` passes (then returns nothing). Nil: no timeout.
    func wait(timeout: Duration?) -> [BackendEvent]
    /// Shows the frame: only what changed since the last one, or every cell with `full`.
    func draw(_ grid: CellGrid, full: Bool)
    func bell()
    /// The window's title (OSC 2). The backend gives the old one back when it restores the terminal.
    func setTitle(_ title: String)
    /// A desktop notification (OSC 777 or OSC 9): both strings are inert already.
    func notify(title: String, body: String)
}

/// What the program needs from the chat side: the state to read, news to hear, effects to do.
public protocol ProgramHost: AnyObject {
    /// Reads the chat state where it is (under its owner's lock): the program keeps no copy.
    func read<T>(_ body: (ChatState) throws -> T) rethrows -> T
    /// What the screen must hear since the last call.
    func take() -> [UIMessage]
    /// Carries out an effect that reaches past the screen: a login, a send, a selection, a
    /// logout, older messages, a search of the history. A selection is made before this returns.
    func perform(_ effect: Effect)
}


