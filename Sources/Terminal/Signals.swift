#if canImport(Glibc)
import Glibc
#endif

/// The terminal settings from before the program took over, and the bytes that
/// undo what it turned on, kept where a signal handler can reach them: on a
/// crash the terminal is put back with async-signal-safe calls only
/// (`tcsetattr`, `write`), then the signal goes on to the previous handler.
enum TerminalRestore {
    nonisolated(unsafe) static var saved = termios()
    nonisolated(unsafe) static var active = false
    nonisolated(unsafe) static var previous: [Int32: sigaction] = [:]

    /// Leave bracketed paste, mouse and focus reporting and the alternate screen; show the
    /// cursor; reset colours; give the window its old title back (the title stack).
    static let reset: StaticString =
        "\u{1B}[?2004l\u{1B}[?1004l\u{1B}[?1006l\u{1B}[?1002l\u{1B}[?1000l\u{1B}[0m\u{1B}[?25h\u{1B}[?1049l\u{1B}[23;0t"

    static let crashSignals: [Int32] = [SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGABRT, SIGFPE, SIGQUIT]

    static func install() {
        tcgetattr(0, &saved)
        active = true
        // A stack of its own for the handler, so a stack overflow still restores the terminal.
        let size = 64 * 1024
        var stack = stack_t()
        stack.ss_sp = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        stack.ss_size = size
        stack.ss_flags = 0
        sigaltstack(&stack, nil)
        for signal in crashSignals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signal in
                TerminalRestore.emergency()
                // On to what was there before (the Swift runtime's backtracer, or the default).
                if var old = TerminalRestore.previous[signal] {
                    sigaction(signal, &old, nil)
                } else {
                    Glibc.signal(signal, SIG_DFL)
                }
                raise(signal)
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_ONSTACK
            var old = sigaction()
            sigaction(signal, &action, &old)
            previous[signal] = old
        }
    }

    /// The crash path: settings back, modes off. Async-signal-safe.
    static func emergency() {
        guard active else { return }
        active = false
        tcsetattr(0, TCSANOW, &saved)
        reset.withUTF8Buffer { _ = Glibc.write(1, $0.baseAddress, $0.count) }
    }

    /// After a normal restore: the crash handlers have nothing left to do.
    static func forget() {
        active = false
        for (signal, var old) in previous { sigaction(signal, &old, nil) }
        previous = [:]
    }

    static func write(_ text: String) {
        var text = text
        text.withUTF8 { _ = Glibc.write(1, $0.baseAddress, $0.count) }
    }
}

/// A pipe another thread writes to when it has news; the event loop polls its
/// read end. Writes coalesce: one byte until the loop drains it.
public final class WakePipe: Sendable {
    let readEnd: Int32
    let writeEnd: Int32

    public init() {
        var fds: [Int32] = [0, 0]
        pipe(&fds)
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        readEnd = fds[0]
        writeEnd = fds[1]
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    /// From any thread (and from signal handlers).
    public func wake() {
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }

    func drain() -> [UInt8] {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let n = read(readEnd, &buffer, buffer.count)
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        return bytes
    }
}

/// Signals the loop turns into events: the handlers only write the signal's
/// number to a pipe (WeeChat's rule: a handler sets a flag, nothing more).
enum SignalPipe {
    nonisolated(unsafe) static var writeEnd: Int32 = -1

    static func install(_ pipe: WakePipe, signals: [Int32]) {
        writeEnd = pipe.writeEnd
        for signal in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signal in
                var byte = UInt8(truncatingIfNeeded: signal)
                let saved = errno
                _ = write(SignalPipe.writeEnd, &byte, 1)
                errno = saved
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(signal, &action, nil)
        }
    }

    static func uninstall(signals: [Int32]) {
        for signal in signals { Glibc.signal(signal, SIG_DFL) }
        writeEnd = -1
    }
}
