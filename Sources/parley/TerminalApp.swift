import Chat
import ChatClient
import Foundation
import Synchronization
import Terminal
import TerminalUI

/// Carries news from the chat client (its observer, called under its lock) to the terminal
/// thread: what the screen must hear of queues here, and the wake pipe gets one byte when the
/// queue goes from empty to not empty. The chat itself stays in the client: the terminal
/// thread reads it there.
final class UIInbox: Sendable {
    private struct Pending {
        var messages: [UIMessage] = []
        var waiting = false
    }

    let pipe = WakePipe()
    private let pending = Mutex(Pending())

    /// The chat client's observer: only enqueues.
    func observe(_ event: ChatEvent, in chat: ChatState) {
        // nil: only the state changed, and the screen catches up with it when it wakes.
        post(UIMessage.news(of: event, in: chat))
    }

    /// A message for the model (or nil: only "the chat state changed").
    func post(_ message: UIMessage?) {
        let wake = pending.withLock { state in
            if let message { state.messages.append(message) }
            defer { state.waiting = true }
            return !state.waiting
        }
        if wake { pipe.wake() }
    }

    func take() -> [UIMessage] {
        pending.withLock { state in
            defer { state = Pending() }
            return state.messages
        }
    }
}

/// The terminal front end: Model → Update → View on one thread, blocking in
/// poll() between events; the chat client's work runs on its own executor,
/// and what the model asks for is done in order by one task.
final class TerminalApp: Sendable {
    enum Action: Sendable {
        case login(String)
        case send(String, to: String)
        case logout(deleteHistory: Bool)
        case loadOlder(String)
    }

    private let client: ChatClient
    private let inbox: UIInbox
    private let settings: UIModel.Settings
    private let colors: Bool
    private let actions: AsyncStream<Action>.Continuation
    private let worker: Task<Void, Never>

    init(client: ChatClient, inbox: UIInbox, settings: UIModel.Settings, colors: Bool) {
        self.client = client
        self.inbox = inbox
        self.settings = settings
        self.colors = colors
        let (stream, continuation) = AsyncStream.makeStream(of: Action.self)
        actions = continuation
        worker = Task { [client, inbox] in
            for await action in stream {
                switch action {
                case .login(let name):
                    do {
                        try await client.login(username: name)
                    } catch let problem as Username.Problem {
                        inbox.post(.needsUsername(reason: problem.description))
                    } catch {
                        inbox.post(.needsUsername(reason: "\(error)"))
                    }
                case .send(let text, let to):
                    do {
                        try await client.send(text, to: to)
                    } catch {
                        inbox.post(.sendFailed(text: text, reason: "\(error)"))
                    }
                case .logout(let deleteHistory):
                    await client.logout(deleteHistory: deleteHistory)
                case .loadOlder(let peer):
                    client.loadOlder(of: peer)
                }
            }
        }
    }

    /// Runs until the person quits or a signal ends it; the terminal is restored before it returns.
    func run() async throws -> Int32 {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int32, any Error>) in
            // A thread of its own: poll() blocks, and ncurses wants one thread.
            let thread = Thread { [self] in
                do {
                    continuation.resume(returning: try loop())
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.name = "parley-terminal"
            thread.start()
        }
    }

    static let frameInterval = Duration.milliseconds(16)

    private func loop() throws -> Int32 {
        let terminal = try Terminal(options: .init(mouse: settings.mouse, colors: colors))
        defer { terminal.restore() }
        let events = EventLoop(terminal: terminal, network: inbox.pipe)
        let pending = inbox.take()
        let needsName = pending.contains { if case .needsUsername = $0 { true } else { false } }
        var model = UIModel(settings: settings, hasSession: !needsName)
        var grid = CellGrid(width: 0, height: 0)
        var full = true
        var exitCode: Int32 = 0
        var pendingFrame = true
        var urgent = true
        var lastFrame = ContinuousClock.now
        var rang = false

        // Every message meets the chat state as it is now, read in place under the client's
        // lock, after the model caught up with it and with the clock.
        func handle(_ message: UIMessage) {
            let effects = client.read { chat in
                model.sync(with: chat, now: Date())
                return model.update(message, chat: chat)
            }
            for effect in effects {
                switch effect {
                case .login(let name): actions.yield(.login(name))
                case .send(let text, let to): actions.yield(.send(text, to: to))
                case .select(let id): client.select(id)  // at once: the next key sees it
                case .logout(let deleteHistory): actions.yield(.logout(deleteHistory: deleteHistory))
                case .loadOlder(let id): actions.yield(.loadOlder(id))
                case .bell where !rang:
                    // One bell per frame, however many messages came in it.
                    terminal.bell()
                    rang = true
                case .bell: break
                case .redraw: full = true
                case .quit: break
                }
            }
        }

        handle(.resize(width: terminal.width, height: terminal.height))
        for message in pending { handle(message) }
        while !model.quitting {
            // Draw now after a key or a resize (typing must feel immediate), but at most one frame
            // per frameInterval for network news: a busy conversation is shown at 60 frames a
            // second, not redrawn for every one of thousands of messages.
            let now = ContinuousClock.now
            if pendingFrame, urgent || full || now - lastFrame >= Self.frameInterval {
                // Only what changed reaches the terminal, and nothing at all when the frame is the same.
                let previous = grid
                client.read { chat in
                    model.sync(with: chat, now: Date())
                    View.render(model, chat, into: &grid)
                }
                if full || grid != previous { terminal.draw(grid, full: full) }
                full = false
                pendingFrame = false
                lastFrame = now
                rang = false
            }
            urgent = false

            // Timers only when needed: the rest of a frame interval while news waits to be drawn,
            // and the next whole second while a countdown is on screen.
            var timeout: Int32?
            if pendingFrame {
                let left = Self.frameInterval - (ContinuousClock.now - lastFrame)
                timeout = max(Int32(left.components.attoseconds / 1_000_000_000_000_000) + 1, 1)
            }
            if model.reconnectCountdown != nil {
                let fraction = Date().timeIntervalSince1970.truncatingRemainder(dividingBy: 1)
                let second = Int32(((1 - fraction) * 1000).rounded(.up)) + 5
                timeout = min(timeout ?? second, second)
            }
            for wake in events.next(timeout: timeout) {
                switch wake {
                case .terminal(let terminalEvents):
                    urgent = true
                    pendingFrame = true
                    for event in terminalEvents {
                        switch event {
                        case .key(let key): handle(.key(key))
                        case .paste(let text): handle(.paste(text))
                        case .resize(let width, let height): handle(.resize(width: width, height: height))
                        }
                    }
                case .network:
                    // The state changed (the frame catches up with it), and maybe more to hear.
                    pendingFrame = true
                    for message in inbox.take() { handle(message) }
                case .timer:
                    pendingFrame = true  // the frame's catching up moves the countdown
                case .terminate(let signal):
                    exitCode = 128 + signal
                    model.quitNow()
                }
            }
        }
        actions.finish()
        return exitCode
    }

    /// Waits until what the person sent has been handed over (or the connection is gone).
    func finish() async {
        await worker.value
    }
}
