import TerminalKeys
import Chat
import Foundation
import Testing
import TerminalRuntime
import TerminalUI

#if canImport(Glibc)
import Glibc
#endif

private let settings = UIModel.Settings(serverURL: "http://localhost:3000", timeZone: TimeZone(identifier: "UTC")!)

/// The event loop over an in-memory backend: keys as bytes, resizes, pastes, signals, news
/// and time, without a terminal.
@Suite struct ProgramTests {
    let clock = TestClock()

    func program(_ host: TestHost, _ backend: MemoryBackend, settings: UIModel.Settings = settings) -> Program {
        _ = utf8Locale
        let program = Program(backend: backend, host: host, settings: settings, clock: clock.program)
        program.start()
        return program
    }

    @Test func theFirstFrameIsThePromptWhenTheChatSideAsksForAName() {
        let host = TestHost()
        host.inbox = [.needsUsername(reason: nil)]
        let backend = MemoryBackend(width: 60, height: 16, clock: clock)
        let program = program(host, backend)
        #expect(backend.frames.count == 1)
        #expect(backend.fullFrames == 1)
        #expect(backend.screen.contains("Choose a username:"))
        // Typed as the terminal sends it: the name, then Enter (CR).
        backend.type("alice\r")
        program.step()
        #expect(host.performed == [.login(username: "alice")])
        #expect(backend.screen.contains("Connecting…"))
    }

    @Test func keysArriveAsBytesAndDrawAtOnce() {
        let host = TestHost.loggedIn()
        let backend = MemoryBackend(clock: clock)
        let program = program(host, backend)
        // Tab opens bob (the first other user), then a message and Enter.
        backend.type("\thello bob\r")
        program.step()
        #expect(host.performed == [.select(userID: "b"), .send(text: "hello bob", to: "b")])
        #expect(backend.frames.count == 2)  // keys draw at once, without waiting for a frame interval
        // An arrow key as its escape sequence: Up brings back what was sent.
        backend.type("\u{1B}[A")
        program.step()
        #expect(backend.frames.last!.line(23).hasPrefix("bob> hello bob"))
    }

    @Test func aResizeRedrawsEveryCellAtTheNewSize() {
        let host = TestHost.loggedIn()
        let backend = MemoryBackend(clock: clock)
        let program = program(host, backend)
        backend.script = [[.resize(width: 100, height: 30)]]
        program.step()
        #expect(backend.frames.last!.width == 100 && backend.frames.last!.height == 30)
        #expect(backend.fullFrames == 2)
        backend.script = [[.resize(width: 20, height: 5)]]
        program.step()
        #expect(backend.screen.contains("Terminal too small"))
    }

    @Test func aBracketedPasteGoesIntoTheInputWithItsLinesAndSendsNothing() {
        let host = TestHost.loggedIn()
        let backend = MemoryBackend(clock: clock)
        let program = program(host, backend)
        backend.type("\t\u{1B}[200~one\r\ntwo\r\u{1B}[201~")
        program.step()
        #expect(host.performed == [.select(userID: "b")])
        #expect(program.model.input.text == "one\ntwo\n")
    }

    @Test(arguments: [SIGTERM, SIGINT, SIGHUP])
    func aSignalEndsTheProgramWithItsExitCode(signal: Int32) {
        let host = TestHost.loggedIn()
        let backend = MemoryBackend(clock: clock)
        backend.type("draft")
        backend.script.append([.terminate(signal: signal)])
        let program = Program(backend: backend, host: host, settings: settings, clock: clock.program)
        #expect(program.run() == 128 + signal)
        #expect(program.quitting)
    }

    @Test func ctrlQQuitsWithZero() {
        let backend = MemoryBackend(clock: clock)
        backend.type("\u{11}")
        let program = Program(backend: backend, host: TestHost.loggedIn(), settings: settings, clock: clock.program)
        #expect(program.run() == 0)
    }

    /// A lone ESC waits for the escape delay (the only timer then), and is Escape once it passes;
    /// ESC and a key together are Alt plus the key.
    @Test func escapeWaitsForTheEscapeDelay() {
        let host = TestHost.loggedIn()
        host.apply(.messageReceived(PrivateMessage(content: "hi", from: "c", to: "a"), at: clock.origin))
        let backend = MemoryBackend(clock: clock)
        let program = program(host, backend)
        // Alt-A in one read: the next unread conversation.
        backend.type("\u{1B}a")
        program.step()
        #expect(host.chat.selectedUserID == "c")
        // ESC, then "?" before the delay passed: Alt-?, which is nothing.
        backend.type("\u{1B}")
        program.step()
        backend.type("?")
        program.step()
        #expect(program.model.showHelp == false)
        backend.type("?")
        program.step()
        #expect(program.model.showHelp)
        backend.type("\u{1B}")
        program.step()
        #expect(program.model.showHelp, "an ESC alone is not decided before its delay")
        program.step()  // nothing came: the wait timed out after the escape delay
        #expect(backend.waits.last! == KeyDecoder.escapeDelay)
        #expect(!program.model.showHelp)
    }

    /// News from the network is drawn at most once per frame interval, however much comes.
    @Test func networkNewsIsPacedToTheFrameInterval() {
        let host = TestHost.loggedIn()
        let backend = MemoryBackend(clock: clock)
        let program = program(host, backend)
        backend.type("\t")
        program.step()
        let before = backend.frames.count
        for n in 0..<50 {
            host.apply(.messageReceived(PrivateMessage(content: "message \(n)", from: "b", to: "a"), at: clock.origin))
            backend.script.append([.wake])
        }
        for _ in 0..<50 { program.step() }
        // No time has passed since the key's frame: the news waits for the frame interval.
        #expect(backend.frames.count == before)
        program.step()  // the wait times out at the end of the frame interval
        #expect(backend.frames.count == before + 1)
        #expect(backend.screen.contains("message 49"))
        #expect(backend.waits.last! != nil && backend.waits.last!! <= Program.frameInterval)
        // Idle: no timer at all.
        program.step()
        #expect(backend.waits.last! == nil)
    }

    /// One bell per frame, for messages to a conversation that is not open.
    @Test func oneBellPerFrame() {
        let host = TestHost.loggedIn()
        let backend = MemoryBackend(clock: clock)
        let program = program(host, backend)
        host.apply(.messageReceived(PrivateMessage(content: "1", from: "c", to: "a"), at: clock.origin))
        host.apply(.messageReceived(PrivateMessage(content: "2", from: "c", to: "a"), at: clock.origin))
        backend.script = [[.wake]]
        program.step()
        #expect(backend.bells == 1)
    }

    /// The title shows the unread count and who is logged in; it is set when it changes only.
    @Test func theTitleFollowsTheUnreadCount() {
        let host = TestHost.loggedIn()
        let backend = MemoryBackend(clock: clock)
        let program = program(host, backend)
        #expect(backend.titles == ["Parley — alice"])
        host.apply(.messageReceived(PrivateMessage(content: "1", from: "c", to: "a"), at: clock.origin))
        host.apply(.messageReceived(PrivateMessage(content: "2", from: "b", to: "a"), at: clock.origin))
        backend.script = [[.wake]]
        program.step()
        program.step()
        #expect(backend.titles == ["Parley — alice", "(2) Parley — alice"])
        backend.type("\u{1B}a")  // Alt-A opens one of them
        program.step()
        #expect(backend.titles.last == "(1) Parley — alice")
        backend.type("x")
        program.step()
        #expect(backend.titles.count == 3)
    }

    @Test func noTitleWhenTurnedOff() {
        var quiet = settings
        quiet.title = false
        let backend = MemoryBackend(clock: clock)
        _ = program(TestHost.loggedIn(), backend, settings: quiet)
        #expect(backend.titles == [])
    }

    /// Opt-in notifications reach the backend for a conversation not on screen, with the
    /// sender's name and text made inert, and no more often than the limit; a window without
    /// focus has nothing on screen.
    @Test func notificationsAreInertAndRateLimited() {
        var notifying = settings
        notifying.notifications = true
        let host = TestHost.loggedIn()
        host.apply(.userConnected(UserEntry(userID: "e", username: "e\u{1B}]2;pwned\u{07}", connected: true)))
        let backend = MemoryBackend(clock: clock)
        let program = program(host, backend, settings: notifying)
        backend.type("\t")  // bob is open
        program.step()
        host.apply(.messageReceived(PrivateMessage(content: "on screen", from: "b", to: "a"), at: clock.origin))
        host.apply(.messageReceived(PrivateMessage(content: "evil\u{1B}\\\u{9C}text", from: "e", to: "a"), at: clock.origin))
        host.apply(.messageReceived(PrivateMessage(content: "too soon", from: "c", to: "a"), at: clock.origin))
        backend.script = [[.wake]]
        program.step()
        #expect(backend.notifications.count == 1)
        let note = backend.notifications[0]
        #expect(note.title == "Parley: e␛]2;pwned␇")
        #expect(note.body == "evil␛\\\u{FFFD}text")
        #expect(!(note.title + note.body).unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) })
        // Focus lost: the open conversation is not on screen any more.
        clock.advance(.seconds(4))
        backend.type("\u{1B}[O")
        program.step()
        host.apply(.messageReceived(PrivateMessage(content: "while away", from: "b", to: "a"), at: clock.origin))
        backend.script = [[.wake]]
        program.step()
        #expect(backend.notifications.map(\.body) == ["evil␛\\\u{FFFD}text", "while away"])
        // The same conversation within 20 s: no second notification.
        clock.advance(.seconds(4))
        host.apply(.messageReceived(PrivateMessage(content: "again", from: "b", to: "a"), at: clock.origin))
        backend.script = [[.wake]]
        program.step()
        #expect(backend.notifications.count == 2)
    }

    /// While a reconnection is pending, the program wakes each second to move the countdown.
    @Test func theCountdownWakesTheProgramEachSecond() {
        let host = TestHost.loggedIn()
        let backend = MemoryBackend(clock: clock)
        let program = program(host, backend)
        host.apply(.reconnecting(attempt: 2, delay: .seconds(3)))
        backend.script = [[.wake]]
        program.step()
        program.step()
        #expect(backend.frames.last!.line(22).contains("reconnecting in 3 s, attempt 2"), "\(backend.screen)")
        program.step()
        // The wait ends just after the number changes, a second after it was first shown.
        #expect(backend.waits.last! == .milliseconds(1001))
        #expect(backend.frames.last!.line(22).contains("reconnecting in 2 s, attempt 2"), "\(backend.screen)")
        program.step()
        program.step()
        #expect(backend.frames.last!.line(22).contains("reconnecting, attempt 2"), "\(backend.screen)")
        // Nothing counts down any more: no timer.
        program.step()
        #expect(backend.waits.last! == nil)
    }

    /// A paste that pauses mid-way (a slow link) is still one paste: its rest is not keys, and
    /// its line feeds send nothing.
    @Test func aPasteThatPausesIsStillOnePaste() {
        let host = TestHost.loggedIn()
        let backend = MemoryBackend(clock: clock)
        let program = program(host, backend)
        backend.type("\t\u{1B}[200~first line\nsecond")
        backend.type("\nthird\u{1B}[201~", after: .milliseconds(1_600))
        program.step()
        program.step()
        program.step()
        #expect(host.performed == [.select(userID: "b")])
        #expect(program.model.input.text == "first line\nsecond\nthird")
    }

    /// A message to the open conversation while the window has no focus is unread to the
    /// reader: the title counts it until the focus comes back.
    @Test func theTitleCountsWhatCameWhileTheWindowWasAway() {
        let host = TestHost.loggedIn()
        let backend = MemoryBackend(clock: clock)
        let program = program(host, backend)
        backend.type("\t\u{1B}[O")
        program.step()
        host.apply(.messageReceived(PrivateMessage(content: "are you there?", from: "b", to: "a"), at: clock.origin))
        backend.script = [[.wake]]
        program.step()
        program.step()
        #expect(backend.titles.last == "(1) Parley — alice")
        #expect(backend.bells == 1)
        backend.type("\u{1B}[I")
        program.step()
        #expect(backend.titles.last == "Parley — alice")
    }

    /// What a peer can put in a notification is bounded, however it is made of characters that
    /// take no column (zero-width spaces, combining marks), and so is a server's name for us in
    /// the title.
    @Test func notificationsAndTheTitleAreBoundedWhateverTheyAreMadeOf() {
        var notifying = settings
        notifying.notifications = true
        let host = TestHost()
        let invisible = String(repeating: "\u{200B}", count: 30_000) + String(repeating: "\u{0301}", count: 1_000)
        host.apply(.session(userID: "a", username: "alice" + invisible + "x"))
        host.apply(.connected(flushed: []))
        host.apply(.userConnected(UserEntry(userID: "e", username: "eve" + invisible, connected: true)))
        let backend = MemoryBackend(clock: clock)
        let program = program(host, backend, settings: notifying)
        host.apply(.messageReceived(PrivateMessage(content: "x" + invisible + "; tail", from: "e", to: "a"), at: clock.origin))
        backend.script = [[.wake]]
        program.step()
        #expect(backend.notifications.count == 1)
        let note = backend.notifications[0]
        #expect(note.title.unicodeScalars.count <= "Parley: ".count + 128)
        #expect(note.body.unicodeScalars.count <= 128)
        #expect(!note.title.contains("\u{200B}") && !note.body.contains("\u{200B}"))
        #expect(backend.titles.allSatisfy { $0.unicodeScalars.count <= "(1) Parley — ".count + 128 })
    }
}
