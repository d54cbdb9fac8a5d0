import Chat
import Foundation
import Testing
import TerminalKeys
import TerminalRuntime
import TerminalUI

/// Whole screens, compared with the golden files in `Snapshots/`: every character, every
/// style and the cursor, as the program draws them from keys typed as bytes. A change to the
/// screen shows here as a diff to read; `PARLEY_RECORD_SNAPSHOTS=1 swift test --filter
/// SnapshotTests` writes the files again (then read `git diff`). The chat screen is the
/// README's capture, and a test keeps the two the same.
@Suite struct SnapshotTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appending(path: "Snapshots")
    static let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appending(path: "README.md")

    /// 13:35 UTC, the day the fixtures are set.
    static let at = Date(timeIntervalSince1970: 1_764_596_100)

    /// A screen after `keys`, at `width`×`height`, with the chat as `host` has it.
    func screen(_ host: TestHost, width: Int = 80, height: Int = 24, keys: [String] = [], then: (TestHost, MemoryBackend, Program) -> Void = { _, _, _ in }) -> CellGrid {
        _ = utf8Locale
        let clock = TestClock()
        let backend = MemoryBackend(width: width, height: height, clock: clock)
        let settings = UIModel.Settings(serverURL: "http://localhost:3000", timeZone: TimeZone(identifier: "UTC")!)
        let program = Program(backend: backend, host: host, settings: settings, clock: clock.program)
        program.start()
        for key in keys {
            backend.type(key)
            program.step()
        }
        then(host, backend, program)
        return backend.frames.last!
    }

    /// alice, with bob online and his conversation open, carol with one unread message, dave offline.
    static func chat() -> TestHost {
        let host = TestHost.loggedIn()
        host.apply(.userConnected(UserEntry(userID: "c", username: "carol", connected: true)))
        host.apply(.userConnected(UserEntry(userID: "d", username: "dave", connected: true)))
        host.apply(.userDisconnected(userID: "d"))
        for text in ["hi alice! ça va? 你好 😀", "this one is long enough to wrap at the edge of the conversation panel, measured by display width"] {
            host.apply(.messageReceived(PrivateMessage(content: text, from: "b", to: "a"), at: at))
        }
        for (n, text) in ["très bien, merci 🙂", "see you at 5"].enumerated() {
            host.apply(.messageSent(SentMessage(id: n, to: "b", content: text, at: at + 60), queued: false))
        }
        host.apply(.messageReceived(PrivateMessage(content: "are you there?", from: "c", to: "a"), at: at))
        return host
    }

    static func coffee() -> TestHost {
        let host = TestHost.loggedIn()
        let lines = [
            ("b", "coffee at ten?"), ("a", "make it eleven"), ("b", "fine. the café on the corner"), ("a", "the one with the awful COFFEE?"),
            ("b", "the same"), ("a", "see you there"),
        ]
        for (n, (from, text)) in lines.enumerated() {
            if from == "a" {
                host.apply(.messageSent(SentMessage(id: n, to: "b", content: text, at: at + Double(n * 60)), queued: false))
            } else {
                host.apply(.messageReceived(PrivateMessage(content: text, from: from, to: "a"), at: at + Double(n * 60)))
            }
        }
        host.apply(.messageReceived(PrivateMessage(content: "bring coffee for me too", from: "c", to: "a"), at: at + 500))
        return host
    }

    @Test func prompt() throws {
        let host = TestHost()
        host.inbox = [.needsUsername(reason: nil)]
        try check("prompt", screen(host, keys: ["ali"]))
    }

    @Test func promptRefused() throws {
        let host = TestHost()
        host.inbox = [.needsUsername(reason: "invalid username")]
        try check("prompt-refused", screen(host, keys: ["bob\u{7}"]))
    }

    @Test func chat() throws {
        try check("chat", screen(Self.chat(), keys: ["\t", "typing a rep"]))
    }

    @Test func help() throws {
        try check("help", screen(Self.chat(), keys: ["\u{1B}OP"]))
    }

    @Test func search() throws {
        try check("search", screen(Self.coffee(), keys: ["\u{1B}2", "\u{12}", "coffee", "\u{12}"]))
    }

    @Test func searchEveryConversation() throws {
        let grid = screen(Self.coffee(), keys: ["\u{1B}2", "/search -a coffee\r"]) { host, backend, program in
            host.inbox = [.searchResults(query: "coffee", hits: host.chat.search("coffee"))]
            backend.script = [[.wake]]
            program.step()
            program.step()
        }
        try check("search-all", grid)
    }

    @Test func reconnecting() throws {
        let grid = screen(Self.chat(), keys: ["\t"]) { host, backend, program in
            host.apply(.reconnecting(attempt: 3, delay: .seconds(5)))
            backend.script = [[.wake]]
            program.step()
            program.step()
        }
        try check("reconnecting", grid)
    }

    @Test func tooSmall() throws {
        try check("too-small", screen(Self.chat(), width: 36, height: 9))
    }

    /// The README shows the chat snapshot, as it is.
    @Test func theReadmeCaptureIsTheChatSnapshot() throws {
        let readme = try String(contentsOf: Self.readme, encoding: .utf8)
        let text = Self.render(screen(Self.chat(), keys: ["\t", "typing a rep"])).components(separatedBy: "\n── styles")[0]
        let capture = text.split(separator: "\n", omittingEmptySubsequences: false).dropFirst().joined(separator: "\n")
        #expect(readme.contains("```text\n" + capture + "\n```"), "README.md's capture differs from Snapshots/chat.txt")
    }

    // MARK: Golden files

    static let codes: [Style: Character] = [
        .normal: ".", .bold: "B", .dim: "d", .reverse: "R", .online: "o", .offline: "f", .accent: "a", .error: "E",
        .highlight: "h", .match: "m", .currentMatch: "M",
    ]

    /// The size and cursor, the text of every row, then a style code for every cell (trailing
    /// normal cells left out).
    static func render(_ grid: CellGrid) -> String {
        let cursor = grid.cursor.map { "cursor \($0.row),\($0.column)" } ?? "no cursor"
        var out = "\(grid.width)×\(grid.height), \(cursor)\n" + grid.lines.joined(separator: "\n") + "\n── styles\n"
        for row in 0..<grid.height {
            var line = ""
            var column = 0
            while column < grid.width {
                line.append(codes[grid[row, column].style] ?? "?")
                column += 1
            }
            while line.last == "." { line.removeLast() }
            out += line + "\n"
        }
        return out
    }

    func check(_ name: String, _ grid: CellGrid) throws {
        let file = Self.directory.appending(path: name + ".txt")
        let actual = Self.render(grid)
        if ProcessInfo.processInfo.environment["PARLEY_RECORD_SNAPSHOTS"] == "1" {
            try FileManager.default.createDirectory(at: Self.directory, withIntermediateDirectories: true)
            try actual.write(to: file, atomically: true, encoding: .utf8)
            return
        }
        let expected = try String(contentsOf: file, encoding: .utf8)
        if actual != expected {
            let a = actual.components(separatedBy: "\n")
            let e = expected.components(separatedBy: "\n")
            let diff = (0..<max(a.count, e.count)).filter { (a.indices.contains($0) ? a[$0] : nil) != (e.indices.contains($0) ? e[$0] : nil) }
                .prefix(12).map { "line \($0 + 1):\n  expected \(e.indices.contains($0) ? e[$0] : "(none)")\n  actual   \(a.indices.contains($0) ? a[$0] : "(none)")" }
            Issue.record("\(name) differs from Snapshots/\(name).txt:\n\(diff.joined(separator: "\n"))")
        }
    }
}
