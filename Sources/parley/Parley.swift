import ArgumentParser
import Chat
import ChatClient
import EngineIO
import Foundation
import InertLog
import PrivateFiles
import Headless
import History
import Logging
import SocketIO
import Terminal
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

@main
struct Parley: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley",
        abstract: "A terminal chat client for Socket.IO private-messaging servers.",
        discussion: """
            Your session is kept in sessions.json in the config directory ($XDG_CONFIG_HOME/parley, \
            or ~/.config/parley), one per server, so a restart keeps your identity. Two config \
            directories are two users.

            --headless reads commands from standard input, one JSON object per line:
              {"send":{"to":"<username or userID>","content":"…"}}   {"logout":true}   {"quit":true}
            and writes every change to standard output, one JSON object per line, its kind in "event": \
            status, session, users, user_connected, user_disconnected, message, warning, error. \
            At the end of input, queued messages are flushed (waiting up to 10 s for the connection), \
            then parley exits 0; 1 if messages could not be sent, 2 if the login failed.
            """
    )

    @Flag(help: "Run without the terminal UI: JSON lines on standard input and output.")
    var headless = false

    @Option(help: "The server: http(s):// or ws(s)://.")
    var url = "http://localhost:3000"

    @Option(
        help: ArgumentHelp(
            "auto: WebSocket, else HTTP long-polling upgraded to WebSocket when the server allows; websocket or polling: that one only.",
            valueName: "auto|websocket|polling"
        )
    )
    var transport = EngineIOTransports.Mode.auto.rawValue

    @Option(help: "The username for a first login (without a stored session).")
    var username: String?

    @Option(name: .customLong("config-dir"), help: ArgumentHelp("Where the session file lives.", valueName: "dir"))
    var configDirectory: String?

    @Option(name: .customLong("log-file"), help: ArgumentHelp("Where logs go ($XDG_STATE_HOME/parley/parley.log).", valueName: "path"))
    var logFile: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Option(name: .customLong("history-limit"), help: ArgumentHelp("Most messages kept per conversation in memory (default: all).", valueName: "n"))
    var historyLimit: Int?

    @Option(name: .customLong("history-dir"), help: ArgumentHelp("Where conversations are kept across restarts ($XDG_DATA_HOME/parley).", valueName: "dir"))
    var historyDirectory: String?

    @Flag(name: .customLong("no-history"), help: "Keep no conversation on disk: a restart starts with none.")
    var noHistory = false

    @Option(name: .customLong("history-days"), help: ArgumentHelp("Forget kept messages older than this many days, at start (default: keep all).", valueName: "n"))
    var historyDays: Int?

    @Option(name: .customLong("ca-file"), help: ArgumentHelp("PEM certificates to trust for wss:// (a private CA).", valueName: "path"))
    var caFile: String?

    @Flag(name: .customLong("insecure-tls"), help: "Do not verify the server's certificate (self-signed test servers only).")
    var insecureTLS = false

    @Flag(name: .customLong("no-bell"), help: "No bell when a message arrives in a conversation that is not open.")
    var noBell = false

    @Flag(name: .customLong("no-title"), help: "Leave the terminal's title alone (it shows the unread count).")
    var noTitle = false

    @Flag(
        name: .customLong("notify"),
        help: "Desktop notifications (OSC 777 or OSC 9) for messages to a conversation not on screen; at most one every 3 s."
    )
    var notify = false

    @Option(
        name: .customLong("notify-style"),
        help: ArgumentHelp("osc777 (foot, WezTerm, VTE, kitty) or osc9 (iTerm2); default: osc9 in iTerm2, else osc777.", valueName: "style")
    )
    var notifyStyle: String?

    @Flag(name: .customLong("no-mouse"), help: "Leave the mouse to the terminal (no clicking names, no wheel scrolling).")
    var noMouse = false

    @Flag(
        name: .customLong("no-strict-modes"),
        help: "Use a config or log directory that is another user's or that others can write (warned, not refused), as ssh's StrictModes no."
    )
    var noStrictModes = false

    @Flag(name: .customLong("no-color"), help: "Draw without colour (also when NO_COLOR is set).")
    var noColor = false

    func validate() throws {
        do {
            _ = try EngineIOEndpoint(url: url)
        } catch {
            throw ValidationError("--url: \(error)")
        }
        if EngineIOTransports.Mode(rawValue: transport) == nil {
            throw ValidationError("--transport must be auto, websocket or polling")
        }
        if let username, case .failure(let problem) = Username.validate(username) {
            throw ValidationError("--username: \(problem)")
        }
        if let historyDays, !(1...36_500).contains(historyDays) {
            throw ValidationError("--history-days must be from 1 to 36500")
        }
        if let historyLimit, historyLimit < 1 {
            throw ValidationError("--history-limit must be at least 1")
        }
        if let notifyStyle, Terminal.NotificationStyle(rawValue: notifyStyle) == nil {
            throw ValidationError("--notify-style must be osc777 or osc9")
        }
        if Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        if let caFile, !FileManager.default.isReadableFile(atPath: caFile) {
            throw ValidationError("--ca-file: cannot read \(caFile)")
        }
    }

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)  // a closed standard output is an error to handle, not a crash
        let logPath = logFile ?? defaultLogFile()
        let modes: PrivateFiles.Modes = noStrictModes ? .relaxed : .strict
        let sink: FileLogHandler.Sink
        do {
            sink = try FileLogHandler.Sink(path: logPath, modes: modes)
        } catch {
            throw fail("cannot write the log file: \(error) (choose another with --log-file)")
        }
        // Before the screen is taken: a file or directory that was open to others, tightened.
        for warning in sink.warnings { FileHandle.standardError.write(Data("parley: \(warning)\n".utf8)) }
        let level = Logger.Level(rawValue: logLevel) ?? .info
        // Log lines quote what servers and peers sent: made inert before they reach the file.
        LoggingSystem.bootstrap { label in InertLogHandler(inner: FileLogHandler(label: label, sink: sink, logLevel: level)) }
        let logger = Logger(label: "parley")

        var socket = SocketManager.Configuration(logger: Logger(label: "parley.socketio"))
        socket.transport = EngineIOTransports(
            EngineIOTransports.Mode(rawValue: transport) ?? .auto,
            options: .init(allowsInsecureTLS: insecureTLS, trustedCertificatesFile: caFile),
            logger: Logger(label: "parley.transport")
        )
        var history: HistoryStore?
        if !noHistory {
            do {
                let (store, warnings) = try HistoryStore.open(
                    directory: historyDirectory ?? HistoryStore.defaultDirectory(), modes: modes,
                    retention: historyDays.map { .seconds($0 * 86_400) }
                )
                for warning in warnings { FileHandle.standardError.write(Data("parley: \(warning)\n".utf8)) }
                history = store
            } catch {
                throw fail("\(error) (choose another with --history-dir, or run with --no-history)")
            }
        }
        let frontEnd: FrontEnd = headless ? .headless(HeadlessProjection()) : .terminal(UIInbox())
        let client: ChatClient
        do {
            client = try await ChatClient(options: .init(
                url: url, configDirectory: configDirectory, fileModes: modes, historyLimit: historyLimit,
                observer: frontEnd.observer, history: history,
                socket: socket, logger: logger
            ))
        } catch {
            throw fail("\(error)")
        }
        let projection: HeadlessProjection
        switch frontEnd {
        case .terminal(let inbox): throw ExitCode(try await runTerminal(client: client, inbox: inbox, logger: logger))
        case .headless(let headless): projection = headless
        }
        logger.info("headless start", metadata: ["server": "\(client.server)"])
        let output = StandardOutput()
        let code = await HeadlessRunner(client: client, projection: projection, username: username) { output.write($0) }
            .run(lines: standardInputLines())
        logger.info("headless exit", metadata: ["code": "\(code)"])
        throw ExitCode(code)
    }

    /// The full-screen interface; returns the exit code.
    private func runTerminal(client: ChatClient, inbox: UIInbox, logger: Logger) async throws -> Int32 {
        guard isatty(0) == 1, isatty(1) == 1 else {
            throw fail("standard input and output must be a terminal (or use --headless)")
        }
        logger.info("terminal start", metadata: ["server": "\(client.server)"])
        do {
            try await client.start(username: username)
        } catch {
            inbox.post(.needsUsername(reason: error.description))
        }
        let environment = ProcessInfo.processInfo.environment
        let app = TerminalApp(
            client: client, inbox: inbox,
            settings: .init(serverURL: url, bell: !noBell, mouse: !noMouse, history: !noHistory, title: !noTitle, notifications: notify),
            options: .init(
                mouse: !noMouse, colors: !noColor,
                notifications: notifyStyle.flatMap(Terminal.NotificationStyle.init(rawValue:)) ?? .forTerminal(environment),
                tmux: environment["TMUX"] != nil
            )
        )
        let code: Int32
        do {
            code = try await app.run()
        } catch {
            await client.close()
            throw fail("\(error)")
        }
        await app.finish()
        // Give what was typed a moment to reach the server before leaving.
        if client.isConnected, client.hasQueuedMessages { _ = await client.waitUntilQueueFlushed(timeout: .seconds(2)) }
        await client.close()
        logger.info("terminal exit", metadata: ["code": "\(code)"])
        return code
    }

    /// Prints `message` to standard error and makes the exit code 2.
    private func fail(_ message: String) -> ExitCode {
        FileHandle.standardError.write(Data("parley: \(message)\n".utf8))
        return ExitCode(2)
    }
}

/// Whole lines to standard output, flushed one by one, from any thread.
final class StandardOutput: Sendable {
    private let lock = Mutex(())

    func write(_ line: String) {
        lock.withLock { _ in
            var bytes = Array(line.utf8)
            bytes.append(0x0A)
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeBufferPointer { Glibc.write(1, $0.baseAddress! + offset, $0.count - offset) }
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { return }  // standard output closed: nothing more to say
                offset += n
            }
        }
    }
}

/// The one projection of the client's state a run shows it through.
enum FrontEnd {
    case terminal(UIInbox)
    case headless(HeadlessProjection)

    var observer: ChatClient.Observer {
        switch self {
        case .terminal(let inbox): return inbox.observe
        case .headless(let projection): return projection.observe
        }
    }
}
