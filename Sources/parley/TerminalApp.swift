import Chat
import ChatClient
import Foundation
import Synchronization
import Terminal
import TerminalUI

/// Carries news from the network side (the chat client's observer, on its
/// executor) to the terminal thread: messages queue here, and the wake pipe
/// gets one byte when the queue goes from empty to not empty.
final class UIInbox: Sendable {
    private struct Pending {
        var messages: [UIMessage] = []
        var waiting = false
    }

    let pipe = WakePipe()
    private let pending = Mutex(Pending())

    /// The chat client's observer.
    func observe(_ update: ChatUpdate) {
        switch update {
        case .needsUsername(let reason): post(.needsUsername(reason: reason))
        case .message(let record) where !record.fromSelf: post(.arrived(peerID: record.from, fromSelf: false))
        case .warning(let text): post(.notice(text))
        default: break  // the state's own events carry the rest
        }
    }

    /// The chat client's state observer: the model keeps its own copy of the state.
    func apply(_ event: ChatEvent) { post(.event(event)) }

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
        case logout
    }

    private let client: ChatClient
    private let inbox: UIInbox
    private let settings: UIModel.Settings
    private let colors: Bool
    private let historyLimit: Int?
    private let actions: AsyncStream<Action>.Continuation
    private let worker: Task<Void, Never>

    init(client: ChatClient, inbox: UIInbox, settings: UIModel.Settings, colors: Bool, historyLimit: Int?) {
        self.historyLimit = historyLimit
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
                case .logout:
                    await client.logout()
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
        // The model's own copy of the chat state, built from every event the client applied
        // (all of them are in the inbox, from the client's creation on).
        var model = UIModel(settings: settings, chat: ChatState(historyLimit: historyLimit), hasSession: !needsName)
        var effects = model.update(.resize(width: terminal.width, height: terminal.height))
        for message in pending { effects += model.update(message) }
        var grid = CellGrid(width: 0, height: 0)
        var full = true
        var exitCode: Int32 = 0
        var pendingFrame = true
        var urgent = true
        var lastFrame = ContinuousClock.now

        while true {
            var rang = false
            for effect in effects {
                switch effect {
                case .login(let name): actions.yield(.login(name))
                case .send(let text, let to): actions.yield(.send(text, to: to))
                case .select(let id):
                    client.select(id)
                case .logout: actions.yield(.logout)
                case .bell where !rang:
                    // One bell per frame, however many messages came in it.
                    terminal.bell()
                    rang = true
                case .bell: break
                case .redraw: full = true
                case .quit: break
                }
            }
            effects = []
            if model.quitting { break }
            // Draw now after a key or a resize (typing must feel immediate), but at most one frame
            // per frameInterval for network news: a busy conversation is shown at 60 frames a
            // second, not redrawn for every one of thousands of messages.
            let now = ContinuousClock.now
            if pendingFrame, urgent || full || now - lastFrame >= Self.frameInterval {
                // Only what changed reaches the terminal, and nothing at all when the frame is the same.
                let previous = grid
                View.render(model, into: &grid)
                if full || grid != previous { terminal.draw(grid, full: full) }
                full = false
                pendingFrame = false
                lastFrame = now
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
                        case .key(let key): effects += model.update(.key(key))
                        case .paste(let text): effects += model.update(.paste(text))
                        case .resize(let width, let height): effects += model.update(.resize(width: width, height: height))
                        }
                    }
                case .network:
                    pendingFrame = true
                    effects += model.update(.tick(Date()))
                    for message in inbox.take() { effects += model.update(message) }
                case .timer:
                    pendingFrame = true
                    effects += model.update(.tick(Date()))
                case .terminate(let signal):
                    exitCode = 128 + signal
                    effects.append(.quit)
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
