// swift-tools-version: 6.1
import PackageDescription

/// Every Parley target: Swift 6 language mode, complete concurrency checking.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Parley",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "parley", targets: ["parley"]),
        .executable(name: "parley-bench", targets: ["parley-bench"]),
        .executable(name: "parley-server", targets: ["parley-server"]),
        .library(name: "SocketIO", targets: ["SocketIO"]),
        .library(name: "SocketIOTesting", targets: ["SocketIOTesting"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/swift-websocket.git", from: "1.6.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        // Bottom layer: what a terminal could act on in text from elsewhere, and the one way
        // to make it inert for a log line. Pure, no dependency.
        .target(name: "InertText", swiftSettings: strict),
        // A swift-log handler that makes every log line inert, for both programs.
        .target(name: "InertLog", dependencies: ["InertText", .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        // A small, fast JSON value type shared by both protocol layers.
        .target(name: "JSON", dependencies: ["InertText"], swiftSettings: strict),
        // The wire formats, shared by client and server: Engine.IO v4 packets, the
        // polling payload and the handshake; Socket.IO v5 packets with binary attachments.
        .target(name: "EngineIOProtocol", dependencies: ["JSON"], swiftSettings: strict),
        .target(name: "SocketIOProtocol", dependencies: ["EngineIOProtocol", "JSON"], swiftSettings: strict),
        // Engine.IO v4 client: WebSocket and HTTP long-polling transports, the upgrade, heartbeat.
        .target(
            name: "EngineIO",
            dependencies: [
                "JSON", "EngineIOProtocol",
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        // Socket.IO v5: packets, binary attachments, manager with reconnection, sockets.
        .target(
            name: "SocketIO",
            dependencies: ["JSON", "EngineIO", "SocketIOProtocol", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // A scriptable Socket.IO server for tests, on NIO's WebSocket server; NIO's frame codec
        // for peers that talk byte by byte.
        .target(
            name: "SocketIOTesting",
            dependencies: [
                "SocketIO",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // The private-messaging application's wire shapes and the one username rule, for
        // client and server alike (PROTOCOL.md). Pure values.
        .target(name: "ChatSchema", dependencies: ["JSON"], swiftSettings: strict),
        // The chat domain: state and its reducer. Pure values.
        .target(
            name: "Chat",
            dependencies: ["ChatSchema", "JSON", .product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: strict
        ),
        // The client's own files (session file, lock, log) opened as a careful Unix program does.
        .target(name: "PrivateFiles", swiftSettings: strict),
        // The client's local history: conversations kept in SQLite, as the session file is kept.
        .target(
            name: "History",
            dependencies: ["PrivateFiles", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // The client: session file, and the chat state driven by a Socket.IO connection.
        .target(
            name: "ChatClient",
            dependencies: ["Chat", "SocketIO", "EngineIO", "JSON", "PrivateFiles", "History", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // The terminal front end as values: model, update (keys and network in, effects out),
        // and a view that draws into an in-memory cell grid. No terminal needed.
        // Keys, and the pure decoder of a terminal's bytes into them.
        .target(name: "TerminalKeys", swiftSettings: strict),
        .target(
            name: "TerminalUI",
            // CNcursesw only for wcwidth: widths as ncurses computes them.
            dependencies: ["Chat", "TerminalKeys", "CNcursesw", "InertText", .product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: strict
        ),
        // The runtime: the program's loop over a backend (a protocol), testable without a terminal.
        .target(name: "TerminalRuntime", dependencies: ["TerminalUI", "TerminalKeys", "Chat"], swiftSettings: strict),
        // The ncursesw backend: bytes in, cell grids out, the poll() wait, terminal restore.
        .target(name: "Terminal", dependencies: ["TerminalRuntime", "TerminalUI", "CNcursesw"], swiftSettings: strict),
        // Headless mode: JSON lines in and out.
        .target(name: "Headless", dependencies: ["ChatClient", "Chat", "JSON"], swiftSettings: strict),
        // The program.
        .executableTarget(
            name: "parley",
            dependencies: [
                "Headless", "ChatClient", "Chat", "SocketIO", "EngineIO", "TerminalUI", "TerminalKeys", "TerminalRuntime", "Terminal", "InertLog", "PrivateFiles",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Server side, layered like the client. Engine.IO v4 server: sessions, WebSocket and
        // HTTP long-polling with the upgrade probe, heartbeat, limits; on Hummingbird 2.
        .target(
            name: "EngineIOServer",
            dependencies: [
                "EngineIOProtocol", "JSON",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // Socket.IO v5 server: namespaces, middleware, rooms, broadcasts, acks.
        .target(
            name: "SocketIOServer",
            dependencies: [
                "EngineIOServer", "SocketIOProtocol", "SocketIOCluster", "JSON",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // The private-messaging application (PROTOCOL.md part II + part III store),
        // with an in-memory store and a SQLite one.
        .target(
            name: "ChatServer",
            dependencies: [
                "SocketIOServer", "SocketIOCluster", "SocketIOProtocol", "EngineIOServer", "EngineIOProtocol", "JSON", "ChatSchema",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The protocol documents' test applications (their "Test suite" sections), which the
        // official engine.io and socket.io server suites run against.
        // Servers in a cluster: what they say to each other, in socket.io-adapter's format
        // (ClusterMessage, MessagePack for attachments), and who is in. Pure.
        .target(name: "SocketIOCluster", dependencies: ["JSON"], swiftSettings: strict),
        // PostgreSQL: the chat server's store (`parley-server --postgres URL`) and the cluster's
        // LISTEN/NOTIFY bus, as @socket.io/postgres-adapter has it.
        .target(
            name: "Postgres",
            dependencies: [
                "ChatServer", "ChatSchema", "SocketIOCluster", "JSON",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "ProtocolTestApps",
            dependencies: ["EngineIOServer", "SocketIOServer", "EngineIOProtocol", "JSON", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "parley-server",
            dependencies: [
                "ChatServer", "Postgres", "ProtocolTestApps", "SocketIOServer", "EngineIOServer", "InertLog",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // Benchmarks (build with -c release).
        .executableTarget(
            name: "parley-bench",
            dependencies: [
                "ChatClient", "Chat", "JSON", "CHeapStats", "SocketIO", "EngineIO", "TerminalUI", "TerminalKeys", "SocketIOTesting", "History",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // glibc's heap statistics, for the memory benchmark.
        .systemLibrary(name: "CHeapStats"),
        // ncursesw from Debian's libncurses-dev, for the terminal front end. Not through
        // pkg-config: its cflags (-D_DEFAULT_SOURCE -D_XOPEN_SOURCE=600) are flags SwiftPM
        // prohibits, and warned about on every build; the shim defines what the wide-character
        // API needs, and the module map links ncursesw and tinfo.
        .systemLibrary(name: "CNcursesw", providers: [.apt(["libncurses-dev"])]),
        .testTarget(name: "JSONTests", dependencies: ["JSON", "InertText"], swiftSettings: strict),
        .testTarget(name: "EngineIOTests", dependencies: ["EngineIO", "SocketIOTesting"], swiftSettings: strict),
        .testTarget(
            name: "SocketIOTests",
            dependencies: ["SocketIO", "SocketIOTesting", .product(name: "NIOSSL", package: "swift-nio-ssl")],
            exclude: ["Fixtures/README.md"],
            resources: [.copy("Fixtures/test-cert.pem"), .copy("Fixtures/test-key.pem")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "InteropTests",
            dependencies: ["SocketIO", "SocketIOTesting", "EngineIO", "JSON", "InertText", "InertLog", "parley", "parley-server"],
            exclude: ["server.py", "client_scenario.py", "test_apps_scenario.py", "upgrade_server.py", "failover_proxy.py"],
            swiftSettings: strict
        ),
        .testTarget(name: "ChatSchemaTests", dependencies: ["ChatSchema", "JSON"], swiftSettings: strict),
        .testTarget(name: "ChatTests", dependencies: ["Chat"], swiftSettings: strict),
        .testTarget(name: "ChatClientTests", dependencies: ["ChatClient", "PrivateFiles", "History", "SocketIOTesting"], swiftSettings: strict),
        .testTarget(name: "TerminalUITests", dependencies: ["TerminalUI", "TerminalKeys", "Chat"], swiftSettings: strict),
        .testTarget(
            name: "TerminalRuntimeTests", dependencies: ["TerminalRuntime", "TerminalKeys", "TerminalUI", "Chat"], exclude: ["Snapshots"],
            swiftSettings: strict
        ),
        .testTarget(name: "HeadlessTests", dependencies: ["Headless", "Chat", "JSON"], swiftSettings: strict),
        .testTarget(
            name: "ServerTests",
            dependencies: [
                "ChatServer", "Postgres", "SocketIOCluster", "ChatSchema", "ProtocolTestApps", "SocketIOServer", "EngineIOServer", "JSON", "SocketIO",
                "SocketIOTesting", "EngineIO",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "CNcurseswTests", dependencies: ["CNcursesw"], swiftSettings: strict),
        // The fuzz targets' checks, one function per network decoder: scripts/fuzz.sh links them
        // into libFuzzer executables (Fuzz/README.md), and the tests replay the corpus through them.
        .target(
            name: "FuzzTargets",
            dependencies: ["InertText", "JSON", "EngineIOProtocol", "SocketIOProtocol", "ChatSchema", "Chat", "TerminalKeys"],
            path: "Fuzz/Targets",
            swiftSettings: strict
        ),
        .testTarget(name: "FuzzCorpusTests", dependencies: ["FuzzTargets"], path: "Fuzz/CorpusTests", swiftSettings: strict),
    ]
)
