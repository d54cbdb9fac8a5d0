import Foundation
import JSON
import SocketIOTesting
import Testing

/// A server's CONNECT_ERROR as `parley` shows it (PROTOCOL.md): "invalid username" forgets
/// the session and asks for a name; any other reason keeps the session, says why, and logs in
/// again after a backoff. Played by the fake server, so that the refusal comes when the test
/// says; `parley` runs as a process, headless and in tmux.
@Suite(.timeLimit(.minutes(2))) struct RefusalInteropTests {
    /// Plays a part II server's accepted login.
    func serve(_ connection: FakeConnection, userID: String, sessionID: String, username: String) {
        connection.accept()
        connection.emit("session", ["sessionID": .string(sessionID), "userID": .string(userID)])
        connection.emit("users", [["userID": .string(userID), "username": .string(username), "connected": true]])
    }

    @Test func headlessKeepsItsSessionThroughARefusalThatMayPassAndForgetsItOnInvalidUsername() async throws {
        let server = try await FakeSocketIOServer.start()
        let directory = scratchDirectory()
        // A first login, accepted: the session is stored.
        let first = try HeadlessProcess(url: server.url, configDirectory: directory, username: "alice")
        let login = try await server.nextConnection()
        #expect(try await login.expectConnect().auth == ["username": "alice"])
        serve(login, userID: "u1", sessionID: "s-secret-1", username: "alice")
        _ = try await first.next("session")
        first.closeInput()
        #expect(await first.waitForExit() == 0)
        #expect(try storedSessionID(in: directory) == "s-secret-1")

        // Busy: refused, said so with the reason and the wait, the session kept; then taken.
        let second = try HeadlessProcess(url: server.url, configDirectory: directory)
        let busy = try await server.nextConnection()
        #expect(try await busy.expectConnect().auth?["sessionID"] == "s-secret-1")
        busy.reject(message: "server full: no new users for now")
        let refused = try await second.next("status") { $0["state"] == "refused" }
        #expect(refused["reason"] == "server full: no new users for now" && refused["attempt"] == 1)
        #expect((refused["delay_ms"]?.intValue ?? 0) >= 1000)
        #expect(try storedSessionID(in: directory) == "s-secret-1")
        #expect(!second.output.contains { $0.contains("needs_username") })
        let again = try await server.nextConnection(timeout: .seconds(10))
        #expect(try await again.expectConnect().auth?["sessionID"] == "s-secret-1")
        serve(again, userID: "u1", sessionID: "s-secret-1", username: "alice")
        #expect(try await second.next("session")["userID"] == "u1")
        second.closeInput()
        #expect(await second.waitForExit() == 0)

        // "invalid username": the session is of no use, forgotten, and a name is asked for.
        let third = try HeadlessProcess(url: server.url, configDirectory: directory)
        let invalid = try await server.nextConnection()
        _ = try await invalid.expectConnect()
        invalid.reject(message: "invalid username")
        let asked = try await third.next("status") { $0["state"] == "needs_username" }
        #expect(asked["reason"] == "invalid username")
        let file = try #require(FileManager.default.contents(atPath: directory + "/sessions.json"))
        #expect(try JSONValue(parsingUTF8: Array(file))["servers"]?.objectValue?.isEmpty == true)
        third.closeInput()
        _ = await third.waitForExit()
        await server.stop()
    }

    @Test(.enabled(if: Tmux.isAvailable, "tmux is not installed (`make deps` installs it)"))
    func theTerminalShowsARefusalTriesAgainAndAsksForANameOnlyForInvalidUsername() async throws {
        let server = try await FakeSocketIOServer.start()
        let scratch = scratchDirectory()
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let tmux = Tmux()
        do {
            let alice = try await tmux.newSession(
                "alice", command: parleyCommand(url: server.url, configDirectory: scratch + "/alice", scratch: scratch)
            )
            try await alice.waitFor("username prompt") { $0.contains("Choose a username:") }
            try await alice.type("alice")
            try await alice.send(keys: "Enter")

            // Refused for now: the server's words and the countdown, still at the prompt's name.
            let first = try await server.nextConnection()
            #expect(try await first.expectConnect().auth == ["username": "alice"])
            first.reject(message: "too many new users from this address; try again later")
            try await alice.waitFor("the refusal and the countdown") {
                $0.contains("refused: too many new users from this address; try again later; trying again in")
            }
            // The reason stays on screen through the next try, until the server answers it.
            let second = try await server.nextConnection()
            #expect(try await second.expectConnect().auth == ["username": "alice"])
            try await alice.waitFor("the reason while trying again") {
                $0.contains("refused: too many new users from this address; try again later; trying again")
                    && !$0.contains("trying again in")
            }
            // Taken this time: the chat.
            serve(second, userID: "u1", sessionID: "s-secret-2", username: "alice")
            try await alice.waitFor("the chat as alice") { $0.contains("connected as alice") }

            // The server restarts and no longer knows the name: "invalid username" is the one
            // refusal that asks for a name again.
            second.drop()
            let third = try await server.nextConnection()
            #expect(try await third.expectConnect().auth?["sessionID"] == "s-secret-2")
            third.reject(message: "invalid username")
            try await alice.waitFor("the prompt again, with the reason") { $0.contains("Choose a username:") && $0.contains("invalid username") }
        } catch {
            await tmux.kill()
            await server.stop()
            throw error
        }
        await tmux.kill()
        await server.stop()
        try? FileManager.default.removeItem(atPath: scratch)
    }
}
