public import TerminalKeys
public import Foundation
public import TerminalUI

/// The terminal program's loop: Model → Update → View on one thread, over a `Backend`.
/// Waits for the backend (no timer unless one is due: the rest of a frame interval while
/// news waits to be drawn, a countdown's next second, a held escape sequence), decodes its
/// bytes with `KeyDecoder`, feeds the model, does the effects, and draws.
///
/// `run()` is `start()` then `step()` until the model quits; tests call the steps themselves.
public final class Program {
    /// Where time comes from: the wall clock for the model (timestamps, countdowns), a
    /// monotonic one for pacing frames and escape delays.
    public struct Clock: Sendable {
        public var wall: @Sendable () -> Date
        public var monotonic: @Sendable () -> Duration

        public init(wall: @escaping @Sendable () -> Date, monotonic: @escaping @Sendable () -> Duration) {
            self.wall = wall
            self.monotonic = monotonic
        }

        public static var system: Clock {
            let origin = ContinuousClock.now
            return Clock(wall: { Date() }, monotonic: { ContinuousClock.now - origin })
        }
    }

    /// At most one frame per interval for network news: a busy conversation is drawn 60 times
    /// a second, not once for each of thousands of messages. Keys and resizes draw at once.
    public static let frameInterval = Duration.milliseconds(16)

    private let backend: any Backend
    private let host: any ProgramHost
    private let clock: Clock
    public private(set) var model: UIModel
    public private(set) var exitCode: Int32 = 0
    private var decoder: KeyDecoder
    /// When held input bytes are decided (`KeyDecoder.flush()`).
    private var decoderDeadline: Duration?
    private var grid = CellGrid(width: 0, height: 0)
    private var full = true
    private var pendingFrame = true
    private var urgent = true
    private var lastFrame: Duration = .zero
    private var rang = false
    private var title: String?
    private var pending: [UIMessage]

    /// `escapeDelay`: how long a lone ESC waits for the key it may start (`ESCDELAY`).
    public init(
        backend: any Backend, host: any ProgramHost, settings: UIModel.Settings, clock: Clock = .system,
        escapeDelay: Duration = KeyDecoder.escapeDelay
    ) {
        self.backend = backend
        self.host = host
        self.clock = clock
        decoder = KeyDecoder(escapeDelay: escapeDelay)
        pending = host.take()
        let needsName = pending.contains { if case .needsUsername = $0 { true } else { false } }
        model = UIModel(settings: settings, hasSession: !needsName)
    }

    public var quitting: Bool { model.quitting }

    /// Runs until the person quits or a signal ends it. Restoring the terminal is the caller's.
    public func run() -> Int32 {
        start()
        while !model.quitting { step() }
        return exitCode
    }

    /// The first frame: the backend's size, what the chat side said before the loop began.
    public func start() {
        handle(.resize(width: backend.width, height: backend.height))
        for message in pending { handle(message) }
        pending = []
        drawIfDue()
    }

    /// Waits once for the backend, handles what came, and draws if a frame is due.
    public func step() {
        let events = backend.wait(timeout: timeout())
        let now = clock.monotonic()
        if events.isEmpty {
            pendingFrame = true  // a countdown moves, a frame interval ended
        }
        for event in events {
            switch event {
            case .input(let bytes):
                urgent = true
                pendingFrame = true
                for input in decoder.feed(bytes) { handle(input) }
                decoderDeadline = decoder.pendingTimeout.map { now + $0 }
            case .resize(let width, let height):
                urgent = true
                pendingFrame = true
                handle(.resize(width: width, height: height))
            case .wake:
                // The state changed (the frame catches up with it), and maybe more to hear.
                pendingFrame = true
                for message in host.take() { handle(message) }
            case .terminate(let signal):
                exitCode = 128 + signal
                model.quitNow()
            }
        }
        if let deadline = decoderDeadline, now >= deadline, !events.contains(where: { if case .input = $0 { true } else { false } }) {
            // Nothing more came in time: a lone ESC is Escape, a cut sequence is dropped.
            decoderDeadline = nil
            urgent = true
            pendingFrame = true
            for input in decoder.flush() { handle(input) }
        }
        if !model.quitting { drawIfDue() }
    }

    private func handle(_ input: InputEvent) {
        switch input {
        case .key(let key): handle(UIMessage.key(key))
        case .paste(let text): handle(UIMessage.paste(text))
        case .focus(let focused): handle(UIMessage.focus(focused))
        }
    }

    /// Every message meets the chat state as it is now, read in place, after the model caught
    /// up with it and with the clock.
    private func handle(_ message: UIMessage) {
        let effects = host.read { chat in
            model.sync(with: chat, now: clock.wall())
            return model.update(message, chat: chat)
        }
        for effect in effects {
            switch effect {
            case .bell where !rang:
                // One bell per frame, however many messages came in it.
                backend.bell()
                rang = true
            case .bell: break
            case .notify(let title, let body): backend.notify(title: title, body: body)
            case .redraw: full = true
            case .quit: break
            default: host.perform(effect)
            }
        }
    }

    private func drawIfDue() {
        let now = clock.monotonic()
        guard pendingFrame, urgent || full || now - lastFrame >= Self.frameInterval else {
            urgent = false
            return
        }
        // Only what changed reaches the terminal, and nothing at all when the frame is the same.
        let previous = grid
        let newTitle = host.read { chat in
            model.sync(with: chat, now: clock.wall())
            View.render(model, chat, into: &grid)
            return View.title(model, chat)
        }
        if full || grid != previous { backend.draw(grid, full: full) }
        if newTitle != title, let newTitle {
            backend.setTitle(newTitle)
            title = newTitle
        }
        full = false
        pendingFrame = false
        urgent = false
        lastFrame = now
        rang = false
    }

    /// How long the next wait may last: nil for as long as nothing happens.
    private func timeout() -> Duration? {
        var timeout: Duration?
        let now = clock.monotonic()
        if pendingFrame {
            timeout = max(Self.frameInterval - (now - lastFrame), .milliseconds(1))
        }
        if let change = model.untilCountdownChanges {
            timeout = min(timeout ?? change, change)
        }
        if let deadline = decoderDeadline {
            let left = max(deadline - now, .zero)
            timeout = min(timeout ?? left, left)
        }
        return timeout
    }
}
