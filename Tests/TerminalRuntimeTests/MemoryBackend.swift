import TerminalKeys
import Chat
import Foundation
import Synchronization
import TerminalRuntime
import TerminalUI

#if canImport(Glibc)
import Glibc
#endif

/// Time as the test says: both clocks move only when the backend's wait times out.
final class TestClock: Sendable {
    private let elapsed = Mutex(Duration.zero)
    let origin = Date(timeIntervalSince1970: 1_700_000_000)

    var program: Program.Clock {
        Program.Clock(wall: { [self] in origin.addingTimeInterval(seconds) }, monotonic: { [self] in elapsed.withLock { $0 } })
    }

    var seconds: Double {
        let d = elapsed.withLock { $0 }
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    func advance(_ duration: Duration) { elapsed.withLock { $0 += duration } }
}

/// A terminal in memory: the test queues what the terminal would say, and reads what the
/// program drew, rang, titled and notified.
final class MemoryBackend: Backend {
    var width: Int
    var height: Int
    let clock: TestClock
    /// What the next waits return, one batch each.
    var script: [[BackendEvent]] {
        get { steps.map(\.events) }
        set { steps = newValue.map { Step(delay: .zero, events: $0) } }
    }
    /// The batches, each after a delay (a pause of the person, or of a slow link).
    private var steps: [Step] = []
    private struct Step {
        var delay: Duration
        var events: [BackendEvent]
    }
    private(set) var frames: [CellGrid] = []
    private(set) var fullFrames = 0
    private(set) var bells = 0
    private(set) var titles: [String] = []
    private(set) var notifications: [(title: String, body: String)] = []
    /// The timeouts the program waited with, in order.
    private(set) var waits: [Duration?] = []

    init(width: Int = 80, height: Int = 24, clock: TestClock) {
        self.width = width
        self.height = height
        self.clock = clock
    }

    func wait(timeout: Duration?) -> [BackendEvent] {
        waits.append(timeout)
        if let next = steps.first {
            if let timeout, timeout < next.delay {
                // The timeout passes first.
                clock.advance(timeout)
                steps[0].delay -= timeout
                return []
            }
            clock.advance(next.delay)
            steps.removeFirst()
            return next.events
        }
        // Nothing more to say: the timeout passes (a program that asked for none would block).
        if let timeout { clock.advance(timeout) }
        return []
    }

    func draw(_ grid: CellGrid, full: Bool) {
        frames.append(grid)
        if full { fullFrames += 1 }
    }

    func bell() { bells += 1 }
    func setTitle(_ title: String) { titles.append(title) }
    func notify(title: String, body: String) { notifications.append((title, body)) }

    var screen: String { frames.last?.text ?? "" }

    func type(_ text: String, after delay: Duration = .zero) { steps.append(Step(delay: delay, events: [.input(Array(text.utf8))])) }
}

/// The chat side, played by the test: it holds the state, hears effects, and has news.
final class TestHost: ProgramHost {
    var chat = ChatState()
    var inbox: [UIMessage] = []
    private(set) var performed: [Effect] = []

    func read<T>(_ body: (ChatState) throws -> T) rethrows -> T { try body(chat) }

    func take() -> [UIMessage] {
        defer { inbox = [] }
        return inbox
    }

    func perform(_ effect: Effect) {
        performed.append(effect)
        if case .select(let id) = effect { chat.apply(.select(userID: id)) }
    }

    /// The chat client applied an event: the state changes, and the news waits for a wake.
    func apply(_ event: ChatEvent) {
        chat.apply(event)
        if let news = UIMessage.news(of: event, in: chat) { inbox.append(news) }
    }

    /// Logged in as alice, with bob online and carol offline.
    static func loggedIn() -> TestHost {
        let host = TestHost()
        host.apply(.session(userID: "a", username: "alice"))
        host.apply(.connected(flushed: []))
        host.apply(.users([
            UserEntry(userID: "a", username: "alice", connected: true),
            UserEntry(userID: "b", username: "bob", connected: true),
            UserEntry(userID: "c", username: "carol", connected: false),
        ]))
        return host
    }
}

/// Widths come from wcwidth, which needs a UTF-8 locale (the program takes the person's).
let utf8Locale: Bool = {
    setlocale(LC_CTYPE, "C.UTF-8") != nil
}()
