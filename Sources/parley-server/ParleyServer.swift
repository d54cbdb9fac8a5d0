import ArgumentParser
import ChatServer
import EngineIOServer
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
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
            Sessions and messages live in memory unless --data names a SQLite file. Prints \
            "LISTENING <port>" on standard output once it accepts connections; logs go to standard error.
            """
    )

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one).")
    var port = 3000

    @Option(help: ArgumentHelp("Keep sessions and messages in this SQLite file.", valueName: "path"))
    var data: String?

    @Option(help: ArgumentHelp("Seconds between the server's pings.", valueName: "seconds"))
    var pingInterval = 25.0

    @Option(help: ArgumentHelp("Seconds to wait for a pong before closing.", valueName: "seconds"))
    var pingTimeout = 20.0

    @Option(help: ArgumentHelp("Largest HTTP body or WebSocket message, in bytes.", valueName: "bytes"))
    var maxHttpBufferSize = 1_000_000

    @Option(help: ArgumentHelp("Seconds a client may take to send its Socket.IO CONNECT.", valueName: "seconds"))
    var connectTimeout = 45.0

    @Option(help: ArgumentHelp("Largest message content, in bytes.", valueName: "bytes"))
    var maxMessageBytes = 100_000

    @Option(help: ArgumentHelp("Messages per second one socket may send on average (0: no limit).", valueName: "n"))
    var rateLimit = 50.0

    @Option(help: ArgumentHelp("Messages one socket may send in a burst.", valueName: "n"))
    var rateBurst = 100.0

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

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard pingInterval > 0, pingTimeout > 0, connectTimeout > 0 else {
            throw ValidationError("--ping-interval, --ping-timeout and --connect-timeout must be positive")
        }
        guard maxHttpBufferSize >= 1024 else { throw ValidationError("--max-http-buffer-size must be at least 1024") }
        guard maxMessageBytes > 0 else { throw ValidationError("--max-message-bytes must be positive") }
        guard rateLimit >= 0, rateBurst >= 1 else { throw ValidationError("--rate-limit must be ≥ 0 and --rate-burst ≥ 1") }
        if let threads, !(1...256).contains(threads) { throw ValidationError("--threads must be between 1 and 256") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level is one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "parley-server")
        raiseOpenFileLimit(logger: logger)

        let store: any ChatStore
        if let data {
            do {
                store = try SQLiteChatStore(path: data)
            } catch let error as CocoaError {
                // Foundation's own wording ("The file doesn't exist."), not its error dump.
                FileHandle.standardError.write(Data("parley-server: cannot open --data \(data): \(error.localizedDescription)\n".utf8))
                throw ExitCode(2)
            } catch {
                FileHandle.standardError.write(Data("parley-server: cannot open --data \(data): \(error)\n".utf8))
                throw ExitCode(2)
            }
        } else {
            store = MemoryChatStore()
        }

        let cors: EngineIOServerOptions.CORS =
            corsOrigins.isEmpty ? .disabled : corsOrigins.contains("*") ? .anyOrigin : .origins(Set(corsOrigins))
        let socketIO = SocketIOServer(
            engineOptions: EngineIOServerOptions(
                pingInterval: .milliseconds(Int(pingInterval * 1000)),
                pingTimeout: .milliseconds(Int(pingTimeout * 1000)),
                maxHttpBufferSize: maxHttpBufferSize,
                cors: cors
            ),
            connectTimeout: .milliseconds(Int(connectTimeout * 1000)),
            logger: logger
        )
        let chat = try ChatApplication(
            server: socketIO,
            store: store,
            options: .init(maxMessageBytes: maxMessageBytes, messagesPerSecond: rateLimit, messageBurst: rateBurst),
            logger: logger
        )
        let host = host
        let sessions = chat.sessionCount
        let application = socketIO.engine.application(
            host: host,
            port: port,
            eventLoopGroup: threads.map { MultiThreadedEventLoopGroup(numberOfThreads: $0) },
            logger: logger
        ) { port in
            FileHandle.standardOutput.write(Data("LISTENING \(port)\n".utf8))
            logger.notice("parley-server listening on http://\(host):\(port)", metadata: ["sessions": "\(sessions)"])
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
                services: [application, CloseSessionsService(socketIO: socketIO, logger: logger)],
                gracefulShutdownSignals: [.sigterm, .sigint, .sighup],
                logger: logger
            )
        )
        defer {
            // Every connection is closed (or the server never started): make the store durable.
            do {
                try store.close()
            } catch {
                logger.error("could not close the store", metadata: ["error": "\(error)"])
            }
        }
        do {
            try await services.run()
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
    let socketIO: SocketIOServer
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        logger.notice("shutting down: closing connections")
        socketIO.shutdown()
    }
}
