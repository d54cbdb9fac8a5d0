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
    ],
    targets: [
        // Bottom layer: a small, fast JSON value type shared by both protocol layers.
        .target(name: "JSON", swiftSettings: strict),
        // Engine.IO v4: packets, handshake, WebSocket transport, heartbeat.
        .target(
            name: "EngineIO",
            dependencies: [
                "JSON",
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Socket.IO v5: packets, binary attachments, manager with reconnection, sockets.
        .target(
            name: "SocketIO",
            dependencies: ["JSON", "EngineIO", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // A scriptable Socket.IO server for tests, on NIO's WebSocket server.
        .target(
            name: "SocketIOTesting",
            dependencies: [
                "SocketIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // The chat domain: state, reducer, username rule, server payloads. Pure values.
        .target(
            name: "Chat",
            dependencies: ["JSON", .product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: strict
        ),
        // The client: session file, and the chat state driven by a Socket.IO connection.
        .target(
            name: "ChatClient",
            dependencies: ["Chat", "SocketIO", "EngineIO", "JSON", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // The terminal front end as values: model, update (keys and network in, effects out),
        // and a view that draws into an in-memory cell grid. No terminal needed.
        .target(
            name: "TerminalUI",
            // CNcursesw only for wcwidth: widths as ncurses computes them.
            dependencies: ["Chat", "CNcursesw", .product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: strict
        ),
        // The ncursesw backend: raw keys in, cell grids out, the poll() loop, terminal restore.
        .target(name: "Terminal", dependencies: ["TerminalUI", "CNcursesw"], swiftSettings: strict),
        // Headless mode: JSON lines in and out.
        .target(name: "Headless", dependencies: ["ChatClient", "Chat", "JSON"], swiftSettings: strict),
        // The program.
        .executableTarget(
            name: "parley",
            dependencies: [
                "Headless", "ChatClient", "Chat", "SocketIO", "EngineIO", "TerminalUI", "Terminal",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Benchmarks (build with -c release).
        .executableTarget(
            name: "parley-bench",
            dependencies: [
                "ChatClient", "Chat", "JSON", "CHeapStats", "SocketIO", "EngineIO", "TerminalUI",
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
        // ncursesw from Debian's libncurses-dev, for the terminal front end.
        .systemLibrary(
            name: "CNcursesw",
            pkgConfig: "ncursesw",
            providers: [.apt(["libncurses-dev"])]
        ),
        .testTarget(name: "JSONTests", dependencies: ["JSON"], swiftSettings: strict),
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
            dependencies: ["SocketIO", "SocketIOTesting", "JSON", "parley"],
            exclude: ["server.py"],
            swiftSettings: strict
        ),
        .testTarget(name: "ChatTests", dependencies: ["Chat"], swiftSettings: strict),
        .testTarget(name: "ChatClientTests", dependencies: ["ChatClient", "SocketIOTesting"], swiftSettings: strict),
        .testTarget(name: "TerminalUITests", dependencies: ["TerminalUI", "Chat"], swiftSettings: strict),
        .testTarget(name: "CNcurseswTests", dependencies: ["CNcursesw"], swiftSettings: strict),
    ]
)
