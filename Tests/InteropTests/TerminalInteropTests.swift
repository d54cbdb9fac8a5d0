import Foundation
import JSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The full-screen interface end to end: `parley` (no `--headless`) in tmux
/// panes of 100×30, typed at with `send-keys`, read with `capture-pane`,
/// against the python-socketio server.
@Suite(.timeLimit(.minutes(2)), .enabled(if: Tmux.isAvailable, "tmux is not installed (`make deps` installs it)"))
struct TerminalInteropTests {
    @Test(arguments: ServerKind.allCases) func logInChatInEveryScriptQuitAndComeBackAsTheSameUser(_ kind: ServerKind) async throws {
        try await withTerminalTest(kind) { tmux, server, scratch in
            // 1. No session: the username prompt, a name refused inline, then the chat.
            let aliceDirectory = scratch + "/alice"
            let alice = try await tmux.newSession("alice", command: parleyCommand(server: server, configDirectory: aliceDirectory, scratch: scratch))
            try await alice.waitFor("username prompt") { $0.contains("Choose a username:") }
            try await alice.type("al")
            try await alice.send(keys: "Enter")
            try await alice.waitFor("inline error for a short name") { $0.contains("a username needs at least 3 characters") }
            try await alice.type("ice")
            try await alice.send(keys: "Enter")
            let aliceChat = try await alice.waitFor("chat screen as alice") {
                $0.contains("connected as alice") && $0.userList.contains { $0.contains("alice (yourself)") }
            }
            #expect(!aliceChat.contains("Choose a username:"))

            // 2. Bob arrives: alice lists him online.
            let bobDirectory = scratch + "/bob"
            let bob = try await tmux.newSession("bob", command: parleyCommand(server: server, configDirectory: bobDirectory, scratch: scratch))
            try await bob.waitFor("username prompt") { $0.contains("Choose a username:") }
            try await bob.type("bob")
            try await bob.send(keys: "Enter")
            try await bob.waitFor("chat screen as bob, alice online") {
                $0.contains("connected as bob") && $0.lists("bob (yourself)", online: true) && $0.lists("alice", online: true)
            }
            try await alice.waitFor("bob online in the user list") { $0.lists("bob", online: true) }

            // 3. Each opens the other's conversation, and they talk in four scripts.
            try await openConversation("bob", in: alice)
            try await openConversation("alice", in: bob)
            let texts = ["hello bob", "ça va, élève?", "你好世界", "😀👍"]
            for (n, text) in texts.enumerated() {
                let (from, to) = n % 2 == 0 ? (alice, bob) : (bob, alice)
                try await from.type(text)
                try await from.send(keys: "Enter")
                try await to.waitFor("\"\(text)\" received") { $0.shows(text) }
                // The sender's own copy, in the conversation (not just still in the input line).
                try await from.waitFor("\"\(text)\" sent") { $0.shows(text) && !($0.lines.last ?? "").contains(text) }
            }
            for session in [alice, bob] {
                let screen = Screen(try await session.capture())
                for text in texts { #expect(screen.shows(text), "\(session.name) lost \"\(text)\":\n\(screen.framed)") }
            }

            // 4. Ctrl-Q: bob exits 0 and the terminal is as it was; alice sees him go.
            let before = try storedSession(in: bobDirectory)
            #expect(before.username == "bob")
            try await bob.send(keys: "C-q")
            try await expectExited(bob, code: 0)
            try await alice.waitFor("bob offline in the user list") { $0.lists("bob", online: false) }

            // Back with the same config dir: no prompt, the same user, and alice sees him again.
            let bobAgain = try await tmux.newSession("bob-again", command: parleyCommand(server: server, configDirectory: bobDirectory, scratch: scratch))
            var prompted = false
            let back = try await bobAgain.waitFor("chat screen as bob again") { screen in
                if screen.contains("Choose a username:") { prompted = true }
                return screen.contains("connected as bob")
            }
            #expect(!prompted, "the stored session was not used: the username prompt showed")
            #expect(back.lists("bob (yourself)", online: true))
            let after = try storedSession(in: bobDirectory)
            #expect(after.userID == before.userID)
            #expect(after.username == "bob")
            let attributes = try FileManager.default.attributesOfItem(atPath: bobDirectory + "/sessions.json")
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
            try await alice.waitFor("bob online again in the user list") { $0.lists("bob", online: true) }
            try await bobAgain.waitFor("alice online in the user list") { $0.lists("alice", online: true) }
        }
    }

    @Test(arguments: ServerKind.allCases) func controlCharactersFromTheNetworkAreInertAndSIGTERMRestoresTheTerminal(_ kind: ServerKind) async throws {
        try await withTerminalTest(kind) { tmux, server, scratch in
            let alice = try await tmux.newSession("alice", command: parleyCommand(server: server, configDirectory: scratch + "/alice", scratch: scratch))
            try await alice.waitFor("username prompt") { $0.contains("Choose a username:") }
            try await alice.type("alice")
            try await alice.send(keys: "Enter")
            try await alice.waitFor("chat screen as alice") { $0.contains("connected as alice") }

            // 5. A headless client sends escape sequences and a bidi override as a message.
            let mallory = try HeadlessProcess(url: server.url, configDirectory: scratch + "/mallory", username: "mallory")
            try await mallory.next("session")
            try await alice.waitFor("mallory online in the user list") { $0.lists("mallory", online: true) }
            let hostile = "\u{1B}[2J\u{1B}[31mRED \u{202E}abc"
            mallory.send(["send": ["to": "alice", "content": .string(hostile)]])
            let sent = try await mallory.next("message")
            #expect(sent["sent"] == true)
            // Not open yet: an unread count, and nothing else on the screen moved.
            let unread = try await alice.waitFor("an unread count for mallory") { screen in
                screen.userList.contains { $0.hasPrefix("● mallory") && $0.hasSuffix(" 1") }
            }
            #expect(unread.contains("connected as alice"))
            #expect(unread.lists("alice (yourself)", online: true))
            // The window's title counts it (OSC 2, which tmux keeps as the pane's title).
            try await alice.waitFor(format: "#{pane_title}", "the unread count in the title") { $0 == "(1) Parley — alice" }
            try await openConversation("mallory", in: alice)
            let shown = try await alice.waitFor("the message, made inert") { $0.shows("␛[2J␛[31mRED abc") }
            try await alice.waitFor(format: "#{pane_title}", "the title without unread messages") { $0 == "Parley — alice" }
            // Searching finds it by its inert text; Esc goes back.
            try await alice.send(keys: "C-r")
            try await alice.type("red")
            try await alice.waitFor("one match") { $0.contains("match 1 of 1") && $0.lines.last == "search: red" }
            try await alice.send(keys: "Escape")
            try await alice.waitFor("the search closed") { $0.contains("connected as alice") && !$0.contains("search:") }
            #expect(!shown.contains("\u{202E}"))
            #expect(!shown.contains("\u{1B}"))
            // Not cleared: the list, the separator and the status bar are all still there.
            #expect(shown.lists("alice (yourself)", online: true))
            #expect(shown.contains("connected as alice"))
            #expect(shown.lines.count == 30)
            let styled = try await alice.captureWithAttributes()
            #expect(!styled.contains("\u{1B}[31mRED"), "the message's colour escape reached the terminal")

            // 6. SIGTERM: parley restores the terminal and exits 128 + 15.
            let pid = try await parleyPID(in: alice)
            #expect(kill(pid, SIGTERM) == 0)
            try await expectExited(alice, code: 143)
            // Mallory sees alice leave (the socket was closed, not dropped on the floor).
            try await mallory.next("user_disconnected")
            mallory.send(["quit": true])
            #expect(await mallory.waitForExit() == 0)
        }
    }
}

extension TerminalInteropTests {
    /// A pane resized right after parley starts (as `make demo` splits its window) must keep
    /// taking keys: ncurses' KEY_RESIZE once sent the key reader round in circles.
    @Test func keysStillWorkAfterThePaneIsResizedAtStart() async throws {
        try await withTerminalTest(.parley) { tmux, server, scratch in
            let carol = try await tmux.newSession("carol", command: parleyCommand(server: server, configDirectory: scratch + "/carol", scratch: scratch))
            try await carol.waitFor("username prompt") { $0.contains("Choose a username:") }
            _ = try await tmux.run(["split-window", "-t", "carol:", "-h", "sleep 600"])
            _ = try await tmux.run(["select-pane", "-t", "carol:0.0"])
            try await carol.type("carol")
            try await carol.send(keys: "Enter")
            try await carol.waitFor("chat screen as carol in the narrower pane") { $0.contains("connected as carol") }
            try await carol.send(keys: "Tab")
            try await carol.waitFor("Tab opens carol's own conversation") { $0.header.hasPrefix("● carol") }
        }
    }
}

// MARK: Helpers

/// Runs `body` with a fresh tmux server, interop server and scratch directory,
/// and takes all three down afterwards, whether `body` returned or threw.
private func withTerminalTest(_ kind: ServerKind, _ body: (Tmux, InteropServer, String) async throws -> Void) async throws {
    let scratch = scratchDirectory()
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    let server = try await InteropServer.start(kind)
    let tmux = Tmux()
    do {
        try await body(tmux, server, scratch)
    } catch {
        await tmux.kill()
        await server.stop()
        try? FileManager.default.removeItem(atPath: scratch)
        throw error
    }
    await tmux.kill()
    await server.stop()
    try? FileManager.default.removeItem(atPath: scratch)
}

/// The pane's command line: parley, then the exit code and the terminal modes as the shell sees them.
private func parleyCommand(server: InteropServer, configDirectory: String, scratch: String) -> String {
    parleyCommand(url: server.url, configDirectory: configDirectory, scratch: scratch)
}

func parleyCommand(url: String, configDirectory: String, scratch: String) -> String {
    let parley = HeadlessProcess.executable.path
    let modes = "stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(isig|icanon|icrnl|opost|echo)' | tr '\\n' ' '"
    return "env TERM=xterm-256color LC_ALL=C.UTF-8 XDG_STATE_HOME=\(shellQuoted(scratch + "/state")) XDG_DATA_HOME=\(shellQuoted(scratch + "/data")) "
        + "\(shellQuoted(parley)) --url \(shellQuoted(url)) --config-dir \(shellQuoted(configDirectory)) --no-bell; "
        + "status=$?; modes=$(\(modes)); echo \"PARLEY-EXITED $status tty: $modes\"; sleep 600"
}

private func shellQuoted(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// Tab until the conversation header names `name` (the list order: self first, then by username).
private func openConversation(_ name: String, in session: TmuxSession, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    func names(_ header: String) -> Bool { header.hasPrefix("● \(name) ") || header.hasPrefix("○ \(name) ") }
    var header = Screen(try await session.capture()).header
    for _ in 0..<8 {
        if names(header) { return }
        let previous = header
        try await session.send(keys: "Tab")
        header = try await session.waitFor("a new conversation after Tab", sourceLocation: sourceLocation) { $0.header != previous }.header
    }
    let screen = Screen(try await session.capture())
    try #require(names(screen.header), "Tab never opened \(name)'s conversation:\n\(screen.framed)", sourceLocation: sourceLocation)
}

/// Parley has exited with `code`, and the terminal it leaves is usable: the main
/// screen back, the cursor shown, no mouse, keypad or bracketed-paste mode left on,
/// and the line discipline cooked again.
private func expectExited(_ session: TmuxSession, code: Int32, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let screen = try await session.waitFor("exit line from the shell", sourceLocation: sourceLocation) { $0.exitLine != nil }
    let line = screen.exitLine ?? ""
    #expect(line.hasPrefix("PARLEY-EXITED \(code) "), "exit line: \(line)", sourceLocation: sourceLocation)
    // Off the alternate screen: none of the chat is left, only the shell's line.
    #expect(!screen.contains("│") && !screen.contains("Users "), "the chat is still on screen:\n\(screen.framed)", sourceLocation: sourceLocation)
    #expect(screen.lines.filter { !$0.isEmpty } == [line], "more than the exit line on screen:\n\(screen.framed)", sourceLocation: sourceLocation)
    let modes = Set((line.components(separatedBy: "tty:").last ?? "").split(separator: " ").map(String.init))
    #expect(modes == ["isig", "icanon", "icrnl", "opost", "echo"], "terminal modes after exit: \(line)", sourceLocation: sourceLocation)
    let flags = try await session.format(
        "alternate=#{alternate_on} cursor=#{cursor_flag} keypad=#{keypad_flag} keypad_cursor=#{keypad_cursor_flag} "
            + "mouse=#{mouse_standard_flag}#{mouse_button_flag}#{mouse_any_flag}#{mouse_sgr_flag}"
    )
    #expect(flags == "alternate=0 cursor=1 keypad=0 keypad_cursor=0 mouse=0000", sourceLocation: sourceLocation)
    // A paste now arrives plain (no bracketed-paste markers) and the terminal echoes it.
    try await session.paste("pasted-after-exit")
    let pasted = try await session.waitFor("the paste echoed", sourceLocation: sourceLocation) { $0.contains("pasted-after-exit") }
    #expect(!pasted.contains("200~"), "bracketed paste left on:\n\(pasted.framed)", sourceLocation: sourceLocation)
}

/// The parley process in a pane: the child of the pane's shell (found in /proc,
/// and checked to be the parley binary).
private func parleyPID(in session: TmuxSession) async throws -> pid_t {
    let shell = try await session.panePID()
    let parley = HeadlessProcess.executable.path
    var found: [pid_t] = []
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = pid_t(entry),
            let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { continue }
        // "pid (comm) state ppid …": the comm may hold spaces, so fields after the last ")".
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 1, pid_t(fields[1]) == shell else { continue }
        let commandLine = (FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data())
            .split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        if commandLine.first == parley { found.append(pid) }
    }
    return try #require(found.count == 1 ? found.first : nil, "parley is not the one child of the pane's shell \(shell): \(found)")
}

/// The session stored for the only server in a config directory.
private func storedSession(in directory: String) throws -> (userID: String, username: String) {
    let data = try #require(FileManager.default.contents(atPath: directory + "/sessions.json"))
    let json = try JSONValue(parsingUTF8: Array(data))
    #expect(json["version"] == 1)
    let servers = try #require(json["servers"]?.objectValue)
    #expect(servers.count == 1)
    let session = try #require(servers.values.first)
    #expect(session["sessionID"]?.stringValue?.isEmpty == false)
    return (try #require(session["userID"]?.stringValue), try #require(session["username"]?.stringValue))
}
