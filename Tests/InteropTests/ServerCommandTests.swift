import ArgumentParser
@testable import parley_server
import Testing

/// What parley-server accepts on its command line: a hostile or careless operator's
/// arguments are refused at start with a reason, not discovered by the clients.
@Suite struct ServerCommandTests {
    @Test func aUsersListThatCouldNotReachEveryClientIsRefusedAtStart() throws {
        // 30,000 users of the longest names and 1 MiB of history: about 11 MB, over the
        // default 8 MiB backlog, so the server refuses to start…
        do {
            _ = try ParleyServer.parse(["--max-users", "30000"])
            Issue.record("accepted a users list larger than the backlog")
        } catch {
            #expect(ParleyServer.message(for: error).contains("lower --max-users or the history, or raise --max-backlog"))
        }
        // …and starts once the backlog can hold it.
        _ = try ParleyServer.parse(["--max-users", "30000", "--max-backlog", "16000000"])
        // Past what a client accepts (16 MiB) no backlog helps.
        #expect(throws: (any Error).self) { try ParleyServer.parse(["--max-users", "60000", "--max-backlog", "100000000"]) }
    }

    @Test(arguments: [
        ["--max-connections", "0"], ["--max-half-open-payload", "10"], ["--session-rate=-1"], ["--login-burst", "0"],
        ["--keep-bytes", "100"], ["--session-lifetime", "0"], ["--request-head-timeout", "0"], ["--threads", "1000"],
    ])
    func limitsThatCannotWorkAreRefused(arguments: [String]) {
        #expect(throws: (any Error).self) { try ParleyServer.parse(arguments) }
    }

    @Test func theDefaultsAreTheLibrariesDefaults() throws {
        let command = try ParleyServer.parse([])
        let chat = command.chatOptions
        #expect(chat.maxUsers == 10_000 && chat.keepPerConversation == 200 && chat.loginHistoryBytes == 1 << 20)
        #expect(chat.sessionLifetime == .seconds(30 * 86_400))
        #expect(command.maxConnections == 20_000 && command.maxBacklog == 8 << 20 && command.requestHeadTimeout == 10)
    }
}
