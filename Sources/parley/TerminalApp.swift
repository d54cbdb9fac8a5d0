import Chat
import ChatClient
import Foundation
import Synchronization
import Terminal
import TerminalKeys
import TerminalRuntime
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

/// The terminal front end: a `Program` over the ncursesw backend, on a thread of its own
/// (poll() blocks, and ncurses wants one thread), reading the chat client's state in place.
/// What the model asks of the network is done in order by one task.
final class TerminalApp: Sendable {
    enum Action: Sendable {
        case login(String)
        case send(String, to: String)
        case logout(deleteHistory: Bool)
        case loadOlder(String)
        case searchAll(String)
        case reveal(SearchHit, query: String)
    }

    private let client: ChatClient
    private let inbox: UIInbox
    private let settings: UIModel.Settings
    private let options: Terminal.Options
    private let actions: AsyncStream<Action>.Continuation
    private let worker: Task<Void, Never>

    init(client: ChatClient, inbox: UIInbox, settings: UIModel.Settings, options: Terminal.Options) {
        self.client = client
        self.inbox = inbox
        self.settings = settings
        self.options = options
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
                case .searchAll(let query):
                    inbox.post(.searchResults(query: query, hits: await client.search(query)))
                case .reveal(let hit, let query):
                    if let id = hit.historyID { client.loadOlder(of: hit.userID, through: id) }
                    inbox.post(.reveal(hit, query: query))
                }
            }
        }
    }

    /// Runs until the person quits or a signal ends it; the terminal is restored before it returns.
    func run() async throws -> Int32 {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int32, any Error>) in
            let thread = Thread { [self] in
                do {
                    let terminal = try Terminal(options: options, wake: inbox.pipe)
                    defer { terminal.restore() }
                    let program = Program(backend: terminal, host: Host(app: self), settings: settings, escapeDelay: KeyDecoder.escapeDelay(ProcessInfo.processInfo.environment))
                    continuation.resume(returning: program.run())
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.name = "parley-terminal"
            thread.start()
        }
    }

    /// The chat side, as the program sees it.
    private final class Host: ProgramHost {
        let app: TerminalApp
        init(app: TerminalApp) { self.app = app }

        func read<T>(_ body: (ChatState) throws -> T) rethrows -> T { try app.client.read(body) }

        func take() -> [UIMessage] { app.inbox.take() }

        func perform(_ effect: Effect) {
            switch effect {
            case .login(let name): app.actions.yield(.login(name))
            case .send(let text, let to): app.actions.yield(.send(text, to: to))
            case .select(let id): app.client.select(id)  // at once: the next key sees it
            case .logout(let deleteHistory): app.actions.yield(.logout(deleteHistory: deleteHistory))
            case .loadOlder(let id): app.actions.yield(.loadOlder(id))
            case .searchAll(let query): app.actions.yield(.searchAll(query))
            case .reveal(let hit, let query): app.actions.yield(.reveal(hit, query: query))
            case .quit, .bell, .redraw, .notify: break  // the program's own
            }
        }
    }

    /// Waits until what the person sent has been handed over (or the connection is gone).
    func finish() async {
        actions.finish()
        await worker.value
    }
}
