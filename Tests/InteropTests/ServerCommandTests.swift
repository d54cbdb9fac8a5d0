import ArgumentParser
import EngineIOServer
import ProtocolTestApps
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

    @Test func theTestAppsAreConfiguredAsTheirDocumentsSay() throws {
        let engineIO = try ParleyServer.parse(["--app", "engine.io-test"]).engineOptions
        #expect(engineIO.path == "/engine.io/")
        #expect(engineIO.pingInterval == .milliseconds(300) && engineIO.pingTimeout == .milliseconds(200))
        #expect(engineIO.maxHttpBufferSize == 1_000_000 && engineIO.cors == .anyOrigin)
        let socketIO = try ParleyServer.parse(["--app", "socket.io-test"])
        #expect(socketIO.engineOptions.path == "/socket.io/" && socketIO.engine.connectTimeout == .seconds(1))
        // The options still say otherwise where given.
        let changed = try ParleyServer.parse(["--app", "socket.io-test", "--path", "/io", "--ping-interval", "2", "--cors-origin", "https://a.example"])
        #expect(changed.engineOptions.path == "/io/" && changed.engineOptions.pingInterval == .seconds(2))
        #expect(changed.engineOptions.cors == .origins(["https://a.example"]))
        // The chat keeps the libraries' own.
        let chat = try ParleyServer.parse([]).engineOptions
        let library = EngineIOServerOptions()
        #expect(chat.path == library.path && chat.pingInterval == library.pingInterval && chat.cors == library.cors)
    }

    @Test(arguments: [
        ["--app", "engine.io-test", "--data", "x.sqlite"], ["--app", "irc"], ["--path", "socket.io"], ["--path", "/a?b=c"],
        ["--path", "/tab\t"], ["--path", "/\u{1b}[2J"], ["--ping-interval", "1e300"], ["--connect-timeout", "0"],
    ])
    func argumentsThatMakeNoSenseAreRefused(arguments: [String]) {
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
