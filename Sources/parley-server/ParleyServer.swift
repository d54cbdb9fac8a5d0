import ArgumentParser
import ChatServer
import EngineIOServer
import Foundation
import Hummingbird
import InertLog
import Logging
import NIOCore
import NIOPosix
import Postgres
import ProtocolTestApps
import ServiceLifecycle
import SocketIOServer

#if canImport(Glibc)
import Glibc
#endif

@main
struct ParleyServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley-server",
        abstract: "The private-messaging Socket.IO server (WebSocket and HTTP long-polling).",
        discussion: """
            Speaks the protocol of the Socket.IO guide "Private messaging", part II, with part III's \
            message store: a message to a user who is offline is kept and shown when they come back. \
            Sessions and messages live in memory unless --data names a SQLite file or --postgres a PostgreSQL database. Prints \
            "LISTENING <port>" on standard output once it accepts connections; logs go to standard error. \
            Everything a client can make it hold is bounded per connection, per address (an IPv4 address \
            or an IPv6 /64), per user and in total by the limits below, whose defaults suit a server on the \
            open Internet; every refusal is an answer the client can read (HTTP 429 or 503 with \
            Retry-After, CONNECT_ERROR, an error ack, a closed session), and refusals are logged as summaries.

            --app engine.io-test and --app socket.io-test run instead the test applications of the \
            Engine.IO v4 and Socket.IO v5 protocol documents, configured as those documents say \
            (pingInterval 0.3 s, pingTimeout 0.2 s, maxPayload 1000000, connectTimeout 1 s, CORS for \
            any origin; the options below still override), for the official protocol test suites \
            (README, "Conformance").
            """
    )

    /// What the server runs.
    enum App: String, ExpressibleByArgument, CaseIterable {
        /// The private-messaging application (PROTOCOL.md).
        case chat
        case engineIOTest = "engine.io-test"
        case socketIOTest = "socket.io-test"

        var testApp: ProtocolTestApp? {
            switch self {
            case .chat: return nil
            case .engineIOTest: return .engineIO
            case .socketIOTest: return .socketIO
            }
        }
    }

    /// The libraries' own defaults: the options below start from them, so `--help` and the
    /// servers that tests and benchmarks build from the same structs cannot disagree.
    private enum Defaults {
        static let engine = EngineIOServerOptions()
        static let limits = EngineIOServerOptions.Limits()
        static let socketIO = SocketIOServer.Limits()
        static let chat = ChatApplication.Options()
    }

    @Option(help: ArgumentHelp("What to serve: chat, or a protocol document's test app (engine.io-test, socket.io-test).", valueName: "app"))
    var app = App.chat

    @Option(help: ArgumentHelp("The Engine.IO request path (default: /socket.io/; /engine.io/ for --app engine.io-test).", valueName: "path"))
    var path: String?

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one).")
    var port = 3000

    @Option(help: ArgumentHelp("Keep sessions and messages in this SQLite file.", valueName: "path"))
    var data: String?

    @Option(
        help: ArgumentHelp(
            "Keep sessions and messages in PostgreSQL: postgres://user[:password]@host[:port]/database (the password may come from PGPASSWORD).",
            valueName: "url"
        )
    )
    var postgres: String?

    // The engine's timing and size: the defaults depend on --app (`Engine`).

    @Option(help: ArgumentHelp("Seconds between the server's pings (default: \(Engine.chat.pingInterval.inSeconds); 0.3 for the test apps).", valueName: "seconds"))
    var pingInterval: Double?

    @Option(help: ArgumentHelp("Seconds to wait for a pong before closing (default: \(Engine.chat.pingTimeout.inSeconds); 0.2 for the test apps).", valueName: "seconds"))
    var pingTimeout: Double?

    @Option(help: ArgumentHelp("Largest HTTP body or WebSocket message, in bytes (default: \(Engine.chat.maxHttpBufferSize)).", valueName: "bytes"))
    var maxHttpBufferSize: Int?

    @Option(
        help: ArgumentHelp(
            "Seconds a connection may stay without a namespace, counted again when it leaves its last (default: \(Engine.chat.connectTimeout.inSeconds); 1 for the test apps).",
            valueName: "seconds"
        )
    )
    var connectTimeout: Double?

    @Option(help: ArgumentHelp("Largest message content, in bytes.", valueName: "bytes"))
    var maxMessageBytes = Defaults.chat.maxMessageBytes

    @Option(help: ArgumentHelp("Messages per second one user may send on average, over all their sockets (0: no limit).", valueName: "n"))
    var rateLimit = Defaults.chat.messagesPerSecond

    @Option(help: ArgumentHelp("Messages one user may send in a burst.", valueName: "n"))
    var rateBurst = Defaults.chat.messageBurst

    // Limits (README, "Limits"): what a client, an address and everyone may make the server hold.

    @Option(help: ArgumentHelp("Open TCP connections, in total.", valueName: "n"))
    var maxConnections = Defaults.limits.maxConnections

    @Option(help: ArgumentHelp("Open TCP connections from one address (an IPv4 address or an IPv6 /64).", valueName: "n"))
    var maxConnectionsPerAddress = Defaults.limits.maxConnectionsPerAddress

    @Option(help: ArgumentHelp("Engine.IO sessions, in total.", valueName: "n"))
    var maxSessions = Defaults.limits.maxSessions

    @Option(help: ArgumentHelp("Engine.IO sessions from one address.", valueName: "n"))
    var maxSessionsPerAddress = Defaults.limits.maxSessionsPerAddress

    @Option(help: ArgumentHelp("Sessions that have joined no namespace, in total.", valueName: "n"))
    var maxHalfOpen = Defaults.limits.maxHalfOpenSessions

    @Option(help: ArgumentHelp("Sessions that have joined no namespace, from one address.", valueName: "n"))
    var maxHalfOpenPerAddress = Defaults.limits.maxHalfOpenSessionsPerAddress

    @Option(help: ArgumentHelp("Largest HTTP body or WebSocket message of a session that has joined no namespace.", valueName: "bytes"))
    var maxHalfOpenPayload = Defaults.limits.maxHalfOpenPayloadBytes

    @Option(help: ArgumentHelp("New sessions one address may open per second (0: no limit).", valueName: "n"))
    var sessionRate = Defaults.limits.newSessionsPerSecondPerAddress

    @Option(help: ArgumentHelp("New sessions one address may open in a burst.", valueName: "n"))
    var sessionBurst = Defaults.limits.newSessionBurstPerAddress

    @Option(help: ArgumentHelp("CONNECT attempts one connection may make per second.", valueName: "n"))
    var connectRate = Defaults.socketIO.connectAttemptsPerSecond

    @Option(help: ArgumentHelp("CONNECT attempts one connection may make in a burst.", valueName: "n"))
    var connectBurst = Defaults.socketIO.connectAttemptBurst

    @Option(help: ArgumentHelp("Bytes waiting for a client that does not read, before its session is closed.", valueName: "bytes"))
    var maxBacklog = Defaults.limits.maxBacklogBytes

    @Option(help: ArgumentHelp("Seconds a request head may take (from the connection opening or the last response).", valueName: "seconds"))
    var requestHeadTimeout = Defaults.limits.requestHeadTimeout.inSeconds

    @Option(help: ArgumentHelp("Seconds a request body may take after its head.", valueName: "seconds"))
    var requestBodyTimeout = Defaults.limits.requestBodyTimeout.inSeconds

    @Option(help: ArgumentHelp("Users known at once; more new usernames are refused.", valueName: "n"))
    var maxUsers = Defaults.chat.maxUsers

    @Option(help: ArgumentHelp("Users one address may have created and still known.", valueName: "n"))
    var maxUsersPerAddress = Defaults.chat.maxUsersPerAddress

    @Option(help: ArgumentHelp("New users one address may create per minute (0: no limit).", valueName: "n"))
    var newUserRate = Defaults.chat.newUsersPerMinutePerAddress

    @Option(help: ArgumentHelp("New users one address may create in a burst.", valueName: "n"))
    var newUserBurst = Defaults.chat.newUserBurstPerAddress

    @Option(help: ArgumentHelp("Sockets one user may have connected at once.", valueName: "n"))
    var maxSocketsPerUser = Defaults.chat.maxSocketsPerUser

    @Option(help: ArgumentHelp("Logins one user may make per minute (0: no limit).", valueName: "n"))
    var loginRate = Defaults.chat.loginsPerMinutePerUser

    @Option(help: ArgumentHelp("Logins one user may make in a burst.", valueName: "n"))
    var loginBurst = Defaults.chat.loginBurstPerUser

    @Option(help: ArgumentHelp("Days a user may stay away before they are forgotten, with their conversations.", valueName: "days"))
    var sessionLifetime = Defaults.chat.sessionLifetime.inSeconds / 86_400

    @Option(help: ArgumentHelp("Messages kept per conversation (the oldest go first).", valueName: "n"))
    var keepPerConversation = Defaults.chat.keepPerConversation

    @Option(help: ArgumentHelp("Bytes of messages kept of what one user sent (content plus 96 each; their oldest go first).", valueName: "bytes"))
    var keepBytesPerUser = Defaults.chat.keepBytesPerUser

    @Option(help: ArgumentHelp("Bytes of messages kept in all (content plus 96 each; the oldest go first).", valueName: "bytes"))
    var keepBytes = Defaults.chat.keepBytes

    @Option(help: ArgumentHelp("Bytes of history a login receives with its users list.", valueName: "bytes"))
    var loginHistoryBytes = Defaults.chat.loginHistoryBytes

    @Option(
        name: .customLong("cors-origin"),
        help: ArgumentHelp("A web origin allowed to use long-polling (repeatable; * for any).", valueName: "origin")
    )
    var corsOrigins: [String] = []

    @Option(help: ArgumentHelp("Event-loop threads for the network (default: one per core).", valueName: "n"))
    var threads: Int?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    @Flag(help: .hidden)
    var exitWithStdin = false

    /// The engine settings of an app, before the command line changes them.
    struct Engine {
        var path: String
        var pingInterval: Duration
        var pingTimeout: Duration
        var maxHttpBufferSize: Int
        var connectTimeout: Duration
        var cors: EngineIOServerOptions.CORS

        static let chat = Engine(
            path: Defaults.engine.path,
            pingInterval: Defaults.engine.pingInterval,
            pingTimeout: Defaults.engine.pingTimeout,
            maxHttpBufferSize: Defaults.engine.maxHttpBufferSize,
            connectTimeout: Defaults.socketIO.connectTimeout,
            cors: Defaults.engine.cors
        )

        /// As the protocol document of `app` configures its test server.
        static func test(_ app: ProtocolTestApp) -> Engine {
            typealias Settings = ProtocolTestApp.Settings
            return Engine(
                path: app.path,
                pingInterval: Settings.pingInterval,
                pingTimeout: Settings.pingTimeout,
                maxHttpBufferSize: Settings.maxPayload,
                connectTimeout: Settings.connectTimeout,
                cors: Settings.cors
            )
        }
    }

    /// The engine settings: the app's, with what the command line says instead.
    var engine: Engine {
        var engine = app.testApp.map(Engine.test) ?? .chat
        if let path { engine.path = path }
        if let pingInterval { engine.pingInterval = .milliseconds(Int((pingInterval * 1000).rounded())) }
        if let pingTimeout { engine.pingTimeout = .milliseconds(Int((pingTimeout * 1000).rounded())) }
        if let maxHttpBufferSize { engine.maxHttpBufferSize = maxHttpBufferSize }
        if let connectTimeout { engine.connectTimeout = .milliseconds(Int((connectTimeout * 1000).rounded())) }
        if !corsOrigins.isEmpty {
            engine.cors = corsOrigins.contains("*") ? .anyOrigin : .origins(Set(corsOrigins))
        }
        return engine
    }

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        if let path {
            // A path as a URL carries it: absolute, printable ASCII, no query or fragment.
            let allowed = path.utf8.allSatisfy { (0x21...0x7E).contains($0) && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") }
            guard path.hasPrefix("/"), path.utf8.count <= 256, allowed else {
                throw ValidationError("--path must start with / and be printable ASCII without ? or # (at most 256 bytes)")
            }
        }
        if data != nil, app != .chat { throw ValidationError("--data is for --app chat; the test apps keep nothing") }
        if postgres != nil, app != .chat { throw ValidationError("--postgres is for --app chat; the test apps keep nothing") }
        if data != nil, postgres != nil { throw ValidationError("--data and --postgres: one store or the other") }
        if let postgres {
            do {
                _ = try PostgresChatStore.Location(url: postgres)
            } catch {
                throw ValidationError("--postgres: \(error)")
            }
        }
        let timings = [pingInterval, pingTimeout, connectTimeout].compactMap { $0 } + [requestHeadTimeout, requestBodyTimeout]
        guard timings.allSatisfy({ $0 >= 0.001 && $0 <= 86_400 }) else {
            throw ValidationError("--ping-interval, --ping-timeout, --connect-timeout and the request timeouts must be between 0.001 and 86400 seconds")
        }
        guard (maxHttpBufferSize ?? 1024) >= 1024, maxHalfOpenPayload >= 1024 else {
            throw ValidationError("--max-http-buffer-size and --max-half-open-payload must be at least 1024")
        }
        guard maxMessageBytes > 0 else { throw ValidationError("--max-message-bytes must be positive") }
        guard rateLimit >= 0, rateBurst >= 1 else { throw ValidationError("--rate-limit must be ≥ 0 and --rate-burst ≥ 1") }
        let counts = [
            maxConnections, maxConnectionsPerAddress, maxSessions, maxSessionsPerAddress, maxHalfOpen, maxHalfOpenPerAddress,
            maxUsers, maxUsersPerAddress, maxSocketsPerUser, keepPerConversation,
        ]
        guard counts.allSatisfy({ $0 >= 1 }) else { throw ValidationError("every --max-… limit and --keep-per-conversation must be at least 1") }
        guard sessionRate >= 0, connectRate >= 0, newUserRate >= 0, loginRate >= 0,
            sessionBurst >= 1, connectBurst >= 1, newUserBurst >= 1, loginBurst >= 1
        else {
            throw ValidationError("the rates must be ≥ 0 and the bursts ≥ 1")
        }
        guard sessionLifetime > 0 else { throw ValidationError("--session-lifetime must be positive") }
        guard keepBytes >= 1 << 16, keepBytesPerUser >= 1 << 16, loginHistoryBytes >= 0, maxBacklog >= 1 << 16 else {
            throw ValidationError("--keep-bytes, --keep-bytes-per-user and --max-backlog must be at least 65536, --login-history-bytes at least 0")
        }
        // A login's `users` frame must reach every client: under the 16 MiB a client accepts
        // and under what a connection may have waiting.
        let largest = chatOptions.largestUsersFrame
        guard largest <= min(maxBacklog, 16 << 20) else {
            throw ValidationError(
                "a users list of --max-users \(maxUsers) with --login-history-bytes \(loginHistoryBytes) may be \(largest) bytes, "
                    + "more than --max-backlog \(maxBacklog) (or the 16 MiB clients accept): lower --max-users or the history, or raise --max-backlog"
            )
        }
        if let threads, !(1...256).contains(threads) { throw ValidationError("--threads must be between 1 and 256") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level is one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = InertLogHandler(inner: StreamLogHandler.standardError(label: label))
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "parley-server")
        raiseOpenFileLimit(logger: logger)

        let served: Served
        switch app {
        case .chat: served = try await serveChat(logger: logger)
        case .engineIOTest: served = Served(engine: EngineIOEchoApp.server(options: engineOptions), application: nil, shutdown: {}, listening: [:])
        case .socketIOTest:
            let socketIO = socketIOServer(logger: logger)
            SocketIOTestApp.install(on: socketIO)
            served = Served(engine: socketIO.engine, application: socketIO, shutdown: {}, listening: [:])
        }

        let host = host
        let app = app
        let engine = served.engine
        let application = engine.application(
            host: host,
            port: port,
            eventLoopGroup: threads.map { MultiThreadedEventLoopGroup(numberOfThreads: $0) },
            logger: logger
        ) { port in
            FileHandle.standardOutput.write(Data("LISTENING \(port)\n".utf8))
            var metadata = served.listening
            metadata["app"] = "\(app.rawValue)"
            logger.notice("parley-server listening on http://\(host):\(port)\(engine.options.path)", metadata: metadata)
        }
        if exitWithStdin {
            // For tests and benchmarks: never outlive the process that started us.
            Thread.detachNewThread {
                while let _ = readLine(strippingNewline: false) {}
                kill(getpid(), SIGTERM)
            }
        }
        // A group stops its services last to first, each after the one before has finished:
        // the sessions are closed before the HTTP server starts draining its connections.
        let services = ServiceGroup(
            configuration: .init(
                services: [application, CloseSessionsService(engine: engine, logger: logger)],
                gracefulShutdownSignals: [.sigterm, .sigint, .sighup],
                logger: logger
            )
        )
        let outcome: Result<Void, any Error>
        do {
            try await services.run()
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        // Every connection is closed (or the server never started): make the store durable.
        await served.shutdown()
        withExtendedLifetime(served.application) {}
        do {
            try outcome.get()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            FileHandle.standardError.write(
                Data("parley-server: cannot listen on \(host):\(port): the address is in use (another server? --port picks another)\n".utf8)
            )
            throw ExitCode(1)
        } catch {
            FileHandle.standardError.write(Data("parley-server: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// What runs on the engine, and what to do once every connection is closed.
    struct Served {
        let engine: EngineIOServer
        /// What runs on the engine, held for as long as the server runs (the engine holds
        /// its Socket.IO server only weakly).
        let application: (any Sendable)?
        let shutdown: @Sendable () async -> Void
        /// Logged with "listening".
        let listening: Logger.Metadata
    }

    /// The private-messaging application, on the store --data names.
    func serveChat(logger: Logger) async throws -> Served {
        let store: any ChatStore
        var postgresStore: (store: PostgresChatStore, location: PostgresChatStore.Location)?
        if let data {
            do {
                store = try SQLiteChatStore(path: data, logger: logger)
            } catch let error as CocoaError {
                // Foundation's own wording ("The file doesn't exist."), not its error dump.
                FileHandle.standardError.write(Data("parley-server: cannot open --data \(data): \(error.localizedDescription)\n".utf8))
                throw ExitCode(2)
            } catch {
                FileHandle.standardError.write(Data("parley-server: cannot open --data \(data): \(error)\n".utf8))
                throw ExitCode(2)
            }
        } else if let postgres, let location = try? PostgresChatStore.Location(url: postgres) {
            do {
                let opened = try await PostgresChatStore.open(location, logger: logger)
                postgresStore = (opened, location)
                store = opened
            } catch {
                FileHandle.standardError.write(Data("parley-server: cannot use --postgres \(location): \(String(reflecting: error))\n".utf8))
                throw ExitCode(2)
            }
        } else {
            store = MemoryChatStore()
        }
        let socketIO = socketIOServer(logger: logger)
        let chat: ChatApplication
        do {
            chat = try await ChatApplication(server: socketIO, store: store, options: chatOptions, logger: logger)
        } catch {
            FileHandle.standardError.write(Data("parley-server: cannot read the store (\(data ?? postgres.flatMap { try? PostgresChatStore.Location(url: $0).description } ?? "")): \(String(reflecting: error))\n".utf8))
            throw ExitCode(2)
        }
        // On PostgreSQL, the servers of one database are one cluster: they share users,
        // presence and messages over its LISTEN/NOTIFY bus.
        var bus: PostgresClusterBus?
        if let (postgres, location) = postgresStore {
            do {
                let node = try await postgres.clusterNode()
                // The chat is in the cluster before the bus hears anyone: a server heard at once
                // is then one it takes messages from.
                chat.joinCluster(node: node) { await postgres.loadSession(userID: $0) }
                let joined = try await PostgresClusterBus.start(
                    location, logger: logger, onMessage: { socketIO.receive($0) }, onJoin: { chat.serverJoined($0) },
                    onLeave: { chat.serversLeft($0) },
                    onListening: {
                        // Users the other servers made before this one listened (at start, or
                        // while its channel was down) come from the database.
                        Task {
                            do {
                                chat.adopt(try await postgres.loadSessions(), catchingUp: true)
                            } catch {
                                logger.warning("could not catch up with the database's users", metadata: ["error": "\(String(reflecting: error))"])
                            }
                        }
                    }
                )
                socketIO.join(cluster: joined, delivering: ChatApplication.delivers)
                bus = joined
                logger.notice("in the cluster of \(location)", metadata: ["uid": "\(joined.uid)", "node": "\(node)"])
            } catch {
                FileHandle.standardError.write(Data("parley-server: cannot join the cluster on \(location): \(String(reflecting: error))\n".utf8))
                throw ExitCode(2)
            }
        }
        return Served(
            engine: socketIO.engine,
            application: (chat, socketIO),
            shutdown: { [bus] in
                await bus?.close()
                await closeStore(store, logger: logger)
            },
            listening: ["users": "\(chat.userCount)", "messages": "\(chat.messageCount)"]
        )
    }

    /// A Socket.IO server with the command line's settings and no namespace yet.
    func socketIOServer(logger: Logger) -> SocketIOServer {
        SocketIOServer(
            engineOptions: engineOptions,
            limits: SocketIOServer.Limits(
                connectTimeout: engine.connectTimeout,
                connectAttemptsPerSecond: connectRate == 0 ? .infinity : connectRate,
                connectAttemptBurst: connectBurst
            ),
            logger: logger
        )
    }

    /// The Engine.IO options: the app's engine settings, as the command line changes them,
    /// and the limits.
    var engineOptions: EngineIOServerOptions {
        let engine = self.engine
        return EngineIOServerOptions(
            path: engine.path,
            pingInterval: engine.pingInterval,
            pingTimeout: engine.pingTimeout,
            maxHttpBufferSize: engine.maxHttpBufferSize,
            cors: engine.cors,
            limits: EngineIOServerOptions.Limits(
                maxConnections: maxConnections,
                maxConnectionsPerAddress: maxConnectionsPerAddress,
                maxSessions: maxSessions,
                maxSessionsPerAddress: maxSessionsPerAddress,
                maxHalfOpenSessions: maxHalfOpen,
                maxHalfOpenSessionsPerAddress: maxHalfOpenPerAddress,
                maxHalfOpenPayloadBytes: maxHalfOpenPayload,
                newSessionsPerSecondPerAddress: sessionRate == 0 ? .infinity : sessionRate,
                newSessionBurstPerAddress: sessionBurst,
                maxBacklogBytes: maxBacklog,
                requestHeadTimeout: .milliseconds(Int((requestHeadTimeout * 1000).rounded())),
                requestBodyTimeout: .milliseconds(Int((requestBodyTimeout * 1000).rounded()))
            )
        )
    }

    var chatOptions: ChatApplication.Options {
        ChatApplication.Options(
            maxMessageBytes: maxMessageBytes,
            messagesPerSecond: rateLimit,
            messageBurst: rateBurst,
            maxUsers: maxUsers,
            maxUsersPerAddress: maxUsersPerAddress,
            newUsersPerMinutePerAddress: newUserRate == 0 ? .infinity : newUserRate,
            newUserBurstPerAddress: newUserBurst,
            maxSocketsPerUser: maxSocketsPerUser,
            loginsPerMinutePerUser: loginRate == 0 ? .infinity : loginRate,
            loginBurstPerUser: loginBurst,
            sessionLifetime: .seconds(Int64(sessionLifetime * 86_400)),
            keepPerConversation: keepPerConversation,
            keepBytesPerUser: keepBytesPerUser,
            keepBytes: keepBytes,
            loginHistoryBytes: loginHistoryBytes
        )
    }

    func closeStore(_ store: any ChatStore, logger: Logger) async {
        do {
            try await store.close()
        } catch {
            logger.error("could not close the store", metadata: ["error": "\(error)"])
        }
    }

    /// Every connection is a file descriptor: take what the hard limit allows.
    func raiseOpenFileLimit(logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
            logger.warning("could not raise the open file limit")
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP (its terminal closed), the first service to stop: it closes
/// every client's session, as "server shutting down" (long polls end, WebSockets get their
/// close frame, nobody is told of the others leaving), so that the HTTP server, stopped
/// next, has nothing left to wait for.
struct CloseSessionsService: Service {
    let engine: EngineIOServer
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        logger.notice("shutting down: closing connections")
        engine.shutdown()
    }
}

extension Duration {
    /// In seconds, as the command line gives durations.
    fileprivate var inSeconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
