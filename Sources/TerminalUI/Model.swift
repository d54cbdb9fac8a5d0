public import Chat
public import Foundation
public import TerminalKeys

/// Everything that can change what the person sees. Key presses, pastes,
/// resizes and the network all arrive as one of these.
public enum UIMessage: Sendable {
    case key(Key)
    /// A bracketed paste: goes into the input as it is, nothing sent.
    case paste(String)
    case resize(width: Int, height: Int)
    /// No usable session: ask for a username (with the server's reason after a refusal).
    case needsUsername(reason: String?)
    /// A peer's message arrived (for the bell and the desktop notification).
    case arrived(from: String, content: String)
    /// The terminal window gained or lost focus: a conversation is on screen only while it has it.
    case focus(Bool)
    /// Something the person should read (a warning).
    case notice(String)
    /// The hits of a search across every conversation.
    case searchResults(query: String, hits: [SearchHit])
    /// A hit's conversation is open and loaded back to it.
    case reveal(SearchHit, query: String)
    /// A message was refused (too long for the server, say): say why, and give the text back.
    case sendFailed(text: String, reason: String)
}

extension UIMessage {
    /// What the screen must be told of an event the chat client applied, beyond the change to
    /// its state (which the screen reads there): nil for nothing more.
    public static func news(of event: ChatEvent, in chat: ChatState) -> UIMessage? {
        switch event {
        case .loggedOut(let reason): return .needsUsername(reason: reason)
        case .messageReceived(let message, _) where message.from != chat.selfID:
            return .arrived(from: message.from, content: message.content)
        case .warning(let text): return .notice(text)
        default: return nil
        }
    }
}

/// What the program must do for the model: the side effects run outside and
/// come back as messages.
public enum Effect: Sendable, Hashable {
    case login(username: String)
    case send(text: String, to: String)
    case select(userID: String?)
    /// Forget the session; with `deleteHistory`, this account's local history too.
    case logout(deleteHistory: Bool)
    /// Scrolling up reached the oldest message shown: bring older kept ones, if any.
    case loadOlder(userID: String)
    /// Search every conversation, the local history included; the hits come back as `.searchResults`.
    case searchAll(query: String)
    /// Open a hit: load its conversation back to it, then say `.reveal`.
    case reveal(SearchHit, query: String)
    case quit
    case bell
    /// A desktop notification; both strings are inert.
    case notify(title: String, body: String)
    /// Repaint every cell (Ctrl-L, after a resize).
    case redraw
}

/// What only the screen knows, as a value: the input, the scroll position, the "new
/// messages" marker, the help overlay. The chat itself is the chat client's state, which the
/// model reads (under the client's lock) and never keeps: `update(_:chat:)` and
/// `View.render` take it as an argument, and `sync(with:now:)` catches up with its changes
/// and with the clock.
public struct UIModel: Sendable {
    public enum Screen: Sendable, Hashable {
        /// Asking for a username; `waiting` once Enter was pressed and the server has not answered.
        case prompt(waiting: Bool)
        case chat
    }

    public struct Settings: Sendable, Hashable {
        public var serverURL: String
        public var bell: Bool
        public var mouse: Bool
        /// Conversations are kept on disk (`/logout` then asks whether to delete them).
        public var history: Bool
        /// The unread count in the terminal's title.
        public var title: Bool
        /// Desktop notifications for messages to a conversation not on screen (opt-in).
        public var notifications: Bool
        /// Where the message times are told (the person's own zone in the program).
        public var timeZone: TimeZone
        public init(
            serverURL: String, bell: Bool = true, mouse: Bool = true, history: Bool = false, title: Bool = true,
            notifications: Bool = false, timeZone: TimeZone = .current
        ) {
            self.serverURL = serverURL
            self.bell = bell
            self.mouse = mouse
            self.history = history
            self.title = title
            self.notifications = notifications
            self.timeZone = timeZone
        }
    }

    public let settings: Settings
    public internal(set) var screen: Screen
    public internal(set) var width = 80
    public internal(set) var height = 24
    public internal(set) var input = InputLine()
    /// Under the username field: why the last name was refused.
    public internal(set) var promptProblem: String?
    public internal(set) var showHelp = false
    /// Where the reader scrolled to: the line at the top of the conversation panel. Nil
    /// follows the newest message. Held on a message, not as a count of lines from the end, so
    /// that drawing, scrolling and new messages cost what is on screen, however far up it is.
    public internal(set) var anchor: ScrollAnchor?
    /// New messages arrived below while scrolled up.
    public internal(set) var moreBelow = false
    /// The first message that was unread when the conversation was opened, as
    /// `droppedCount + index` (so it stays on that message when older ones are dropped).
    public internal(set) var unreadMarker: Int?
    /// A one-line message in the status bar until the next key press.
    public internal(set) var notice: String?
    /// Own messages sent per conversation, for Up/Down.
    public internal(set) var sentHistory: [String: [String]] = [:]
    /// Position in `sentHistory` while browsing it, and the draft it replaced.
    var historyPosition: Int?
    var draft: String?
    /// First row of the user list on screen.
    public internal(set) var listOffset = 0
    /// When the current reconnection attempt starts (for the countdown).
    public internal(set) var reconnectAt: Date?
    public internal(set) var now = Date()
    public internal(set) var quitting = false
    /// `/logout` asked whether to delete the local history too; the next key answers.
    public internal(set) var confirmingLogout = false
    /// Searching the open conversation (Ctrl-R, `/search`).
    public internal(set) var search: ConversationSearch?
    /// The list of hits of a search across every conversation (`/search -a`).
    public internal(set) var results: SearchResults?
    /// Whether the terminal window has focus (as far as it reports: true until it says not).
    public internal(set) var focused = true
    /// Messages to the open conversation while the window had no focus: unread to the reader,
    /// though not to the chat state (the title counts them until the focus comes back).
    public internal(set) var unseen = 0
    /// When desktop notifications last went out, in all and per conversation (the rate limit).
    var notified = NotificationLimiter()
    /// What `sync(with:now:)` last saw of the chat: plain values (keeping the state itself would
    /// make the client's next change copy it).
    var seen = ChatFacts()

    public init(settings: Settings, hasSession: Bool) {
        self.settings = settings
        self.screen = hasSession ? .chat : .prompt(waiting: false)
    }

    /// The smallest terminal the layout works in.
    public static let minimumWidth = 40
    public static let minimumHeight = 10

    public var isTooSmall: Bool { width < Self.minimumWidth || height < Self.minimumHeight }

    /// Columns of the user list (the separator is drawn after it).
    public var listWidth: Int { min(max(width / 4, 14), 28) }
    /// Rows of the conversation between its header and the status bar.
    public var conversationHeight: Int { max(height - 3, 0) }
    /// Columns the conversation's text wraps at.
    public var conversationWidth: Int { max(width - listWidth - 1 - 2, 10) }

    /// How long until the countdown shows another number (nil without a countdown): the one
    /// timer an idle screen needs.
    public var untilCountdownChanges: Duration? {
        guard let reconnectAt else { return nil }
        let left = reconnectAt.timeIntervalSince(now)
        guard left > 0 else { return nil }
        let fraction = left - left.rounded(.down)
        return .milliseconds(Int(((fraction == 0 ? 1 : fraction) * 1000).rounded(.up)) + 1)
    }

    /// Seconds left before the next reconnection attempt, when one is pending.
    public var reconnectCountdown: Int? {
        guard let reconnectAt else { return nil }  // set by `sync(with:now:)` while an attempt is pending
        return max(Int((reconnectAt.timeIntervalSince(now)).rounded(.up)), 0)
    }
}

/// The top row of the conversation panel when it does not follow the newest message: line
/// `line` of the message at `position` (`droppedCount + index`: it stays on its message when
/// older ones are dropped).
public struct ScrollAnchor: Sendable, Hashable {
    public var position: Int
    public var line: Int
}

/// At most one desktop notification every `gap`, and one per conversation every
/// `conversationGap`: a busy or hostile peer cannot flood the desktop. Only the conversations
/// notified within the last `conversationGap` are remembered, so what it keeps is bounded by
/// the rate itself.
struct NotificationLimiter: Sendable {
    static let gap: TimeInterval = 3
    static let conversationGap: TimeInterval = 20
    private(set) var last: Date?
    private(set) var lastBy: [String: Date] = [:]

    /// Whether a message from `userID` may be notified now; if so, it counts as notified.
    mutating func allow(_ userID: String, now: Date) -> Bool {
        if let last, now.timeIntervalSince(last) < Self.gap, now >= last { return false }
        if let previous = lastBy[userID], now.timeIntervalSince(previous) < Self.conversationGap, now >= previous { return false }
        lastBy = lastBy.filter { now.timeIntervalSince($0.value) < Self.conversationGap && now >= $0.value }
        last = now
        lastBy[userID] = now
        return true
    }
}

/// The few facts of the chat state that the screen's own bookkeeping follows.
struct ChatFacts: Equatable {
    var connection: ConnectionStatus?
    var selected: String?
    /// Messages ever added to the open conversation (kept plus dropped by the cap).
    var selectedTotal: Int?

    init() {}

    init(_ chat: ChatState) {
        connection = chat.connection
        selected = chat.selectedUserID
        selectedTotal = chat.selectedUser.map { $0.messages.count + $0.droppedCount }
    }
}
