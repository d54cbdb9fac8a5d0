import ArgumentParser
import CHeapStats
import Chat
import ChatClient
import EngineIO
import History
import SocketIO
import TerminalKeys
import TerminalUI
import Foundation
import JSON
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley-bench",
        abstract: "Parley's benchmarks. Build with -c release; figures are printed as JSON lines.",
        subcommands: [Ingest.self, Memory.self, Render.self, ServerLoad.self, Startup.self, Users.self]
    )
}

/// Events per second through the whole client stack.
struct Ingest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Events per second through WebSocket → Engine.IO → Socket.IO → conversation state.",
        discussion: """
            Starts its own flood peer (unless --url names one that follows the same script: after \
            the CONNECT, session, users, then --count private messages for the client), and measures \
            from the session event until the last message is applied.
            """
    )

    @Option(help: "Messages in the flood.")
    var count = 500_000

    @Option(help: "An external flood peer instead of the built-in one.")
    var url: String?

    @Flag(help: "Also run python-socketio's AsyncClient on the same flood and print the ratio.")
    var compare = false

    @Option(help: "The Python interpreter for --compare.")
    var python = "python3"

    @Option(help: "The transport: nio (WebSocket on NIO, the default), swift-websocket, or polling (HTTP long-polling, from a polling flood peer).")
    var transport = "nio"

    @Option(help: "With --transport polling: packets in the answer to one GET (python-engineio decodes at most 16).")
    var packetsPerPoll = 16

    @Flag(help: "Keep the conversation in a local history (in a temporary directory), as parley does by default.")
    var history = false

    func validate() throws {
        guard count > 0 else { throw ValidationError("--count must be positive") }
        guard runs > 0 else { throw ValidationError("--runs must be positive") }
        guard packetsPerPoll > 0 else { throw ValidationError("--packets-per-poll must be positive") }
        guard ["nio", "swift-websocket", "polling"].contains(transport) else {
            throw ValidationError("--transport is nio, swift-websocket or polling")
        }
    }

    @Option(help: "Measure Parley this many times (each on a fresh connection) and also print the median and the best.")
    var runs = 1

    func run() async throws {
        let peer = url != nil ? nil : transport == "polling" ? try await FloodPeer.startPolling(count: count, packetsPerAnswer: packetsPerPoll) : try await FloodPeer.start(count: count)
        let target = url ?? "http://127.0.0.1:\(peer!.port)"
        var rates: [Double] = []
        for _ in 0..<runs {
            let seconds = try await measureParley(url: target)
            print(line(client: "parley (\(transport))", received: count, seconds: seconds))
            rates.append(Double(count) / seconds)
        }
        rates.sort()
        let median = rates.count.isMultiple(of: 2)
            ? (rates[rates.count / 2 - 1] + rates[rates.count / 2]) / 2 : rates[rates.count / 2]
        if runs > 1 {
            print(JSONValue.object([
                "benchmark": "ingest", "client": .string("parley (\(transport))"), "runs": .int(runs),
                "median_per_second": .int(Int(median)), "best_per_second": .int(Int(rates.last!)),
                "worst_per_second": .int(Int(rates.first!)),
            ]).serialized())
        }
        if compare {
            let python = try runPython(url: target)
            print(python.line)
            print(JSONValue.object([
                "benchmark": "ingest", "comparison": "parley/python-socketio (median)",
                "ratio": .double((median / python.perSecond * 10).rounded() / 10),
            ]).serialized())
        }
        await peer?.stop()
    }

    func line(client: String, received: Int, seconds: Double) -> String {
        JSONValue.object([
            "benchmark": "ingest", "client": .string(client), "received": .int(received),
            "seconds": .double((seconds * 1000).rounded() / 1000), "per_second": .int(Int(Double(received) / seconds)),
        ]).serialized()
    }

    /// From `session` until the count-th message has been applied to the chat state.
    /// Counted from the client's observer (each event as it is applied to the chat state), as a
    /// front end is told, so nothing is built just for the measurement.
    func measureParley(url: String) async throws -> Double {
        let directory = NSTemporaryDirectory() + "parley-bench-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let count = self.count
        let progress = Progress(count: count)
        var socket = SocketManager.Configuration()
        switch transport {
        case "polling": socket.transport = EngineIOTransports(.polling)
        case "swift-websocket": socket.transport = WebSocketTransportFactory()
        default: socket.transport = NIOWebSocketTransportFactory()
        }
        let store = history ? try HistoryStore.open(directory: directory + "/history").0 : nil
        let client = try await ChatClient(options: .init(
            url: url, configDirectory: directory, observer: progress.observe, history: store, socket: socket
        ))
        try await client.start(username: "bench")
        let outcome = await progress.result()
        await client.close()
        switch outcome {
        case .failure(let reason): throw ValidationError(reason)
        case .success(let elapsed):
            let applied = client.read { $0.user(FloodPeer.peerID)?.messages.count ?? 0 }
            guard applied == count else { throw ValidationError("only \(applied) messages reached the state") }
            return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        }
    }

    func runPython(url: String) throws -> (line: String, perSecond: Double) {
        let (text, json) = try runPythonClient(
            "ingest_client.py", python: python, url: url, count: count,
            extraArguments: ["--transport", transport == "polling" ? "polling" : "websocket"]
        )
        guard let perSecond = json["per_second"]?.doubleValue else { throw ValidationError("the python-socketio client said: \(text)") }
        return (text, perSecond)
    }
}

/// Frame time of the terminal view: drawing depends on what is visible, not on history.
struct Render: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time to draw one frame of the chat screen into the cell grid.",
        discussion: "With --users users and each count of --messages in the selected conversation; prints one JSON line per count and the ratio."
    )

    @Option(help: "Users in the list.")
    var users = 1_000

    @Option(parsing: .upToNextOption, help: "Messages in the selected conversation, one measurement each.")
    var messages: [Int] = [1_000, 1_000_000]

    @Option(help: "Frames per measurement.")
    var frames = 2_000

    @Option(help: "Terminal width.")
    var width = 160

    @Option(help: "Terminal height.")
    var height = 50

    @Option(help: "Search the conversation for this text first (Ctrl-R, typed a key at a time, each key timed), and draw with the search open.")
    var search: String?

    func run() throws {
        setlocale(LC_ALL, "C.UTF-8")
        var results: [Double] = []
        for count in messages {
            var (model, chat) = screen(messages: count)
            var grid = CellGrid(width: width, height: height)
            if let search {
                // Each key of the query finds the matches again over the whole conversation.
                let clock = ContinuousClock()
                _ = model.update(.key(.control("r")), chat: chat)
                var keys: [Double] = []
                for character in search {
                    let elapsed = clock.measure { _ = model.update(.key(.character(character)), chat: chat) }
                    keys.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
                }
                print(JSONValue.object([
                    "benchmark": "search", "messages": .int(count), "query": .string(search),
                    "matches": .int(model.search?.matches.count ?? 0),
                    "ms_per_key_median": .double((keys.sorted()[keys.count / 2] * 1e6).rounded() / 1e3),
                    "ms_per_key_worst": .double((keys.max()! * 1e6).rounded() / 1e3),
                ]).serialized())
            }
            // Warm up, then time frames that each draw the whole screen.
            for _ in 0..<50 { View.render(model, chat, into: &grid) }
            let clock = ContinuousClock()
            let elapsed = clock.measure {
                for n in 0..<frames {
                    // Change something each frame (the input line, or with a search open the
                    // match shown), as typing does.
                    let key: Key = search == nil ? (n.isMultiple(of: 2) ? .character("x") : .backspace) : (n.isMultiple(of: 2) ? .up : .down)
                    _ = model.update(.key(key), chat: chat)
                    View.render(model, chat, into: &grid)
                }
            }
            let perFrame = (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18) / Double(frames)
            results.append(perFrame)
            print(JSONValue.object([
                "benchmark": "render", "users": .int(users), "messages": .int(count), "search": search.map { .string($0) } ?? .null,
                "width": .int(width), "height": .int(height),
                "ms_per_frame": .double((perFrame * 1e6).rounded() / 1e3),
            ]).serialized())
        }
        if results.count >= 2 {
            print(JSONValue.object([
                "benchmark": "render", "comparison": .string("\(messages.last!) messages / \(messages.first!) messages"),
                "ratio": .double((results.last! / results.first! * 100).rounded() / 100),
            ]).serialized())
        }
    }

    func screen(messages count: Int) -> (UIModel, ChatState) {
        var chat = ChatState()
        chat.apply(.session(userID: "u0", username: "bench"))
        chat.apply(.connected(flushed: []))
        chat.apply(.users((0..<users).map { UserEntry(userID: "u\($0)", username: "user \($0)", connected: $0.isMultiple(of: 3)) }))
        let start = Date(timeIntervalSince1970: 1_700_000_000)
        for i in 0..<count {
            let text = i.isMultiple(of: 7)
                ? "a longer message number \(i), long enough to wrap onto a second line on a normal terminal, with ça and 中文"
                : "message number \(i)"
            chat.apply(.messageReceived(PrivateMessage(content: text, from: i.isMultiple(of: 5) ? "u0" : "u1", to: "u1"), at: start))
        }
        var model = UIModel(settings: .init(serverURL: "http://localhost:3000"), hasSession: true)
        _ = model.update(.resize(width: width, height: height), chat: chat)
        for case .select(let id) in model.update(.key(.alt("2")), chat: chat) { chat.apply(.select(userID: id)) }
        model.sync(with: chat, now: Date())
        return (model, chat)
    }
}

/// Heap bytes per message held in the chat state.
struct Memory: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Heap bytes per message in a conversation of --count messages.")

    @Option(help: "Messages in the conversation.")
    var count = 1_000_000

    func run() throws {
        let content = "message number 123456 of the flood"  // 34 bytes, as in the ingest flood
        var state = ChatState()
        state.apply(.session(userID: "self", username: "bench"))
        state.apply(.users([UserEntry(userID: "peer", username: "peer", connected: true)]))
        let before = parley_heap_in_use()
        for i in 0..<count {
            // A fresh string each time, as from the network (no shared storage).
            var text = content
            text.withUTF8 { _ in }
            text.append(String(i % 10))
            state.apply(.messageReceived(PrivateMessage(content: text, from: "peer", to: "self"), at: Date()))
        }
        let after = parley_heap_in_use()
        let perMessage = Double(after - before) / Double(count)
        print(JSONValue.object([
            "benchmark": "memory", "messages": .int(state.user("peer")?.messages.count ?? 0),
            "content_bytes": .int(content.utf8.count + 1), "bytes_per_message": .int(Int(perMessage.rounded())),
        ]).serialized())
    }
}

/// Counts messages applied to the chat state (from the state observer, on the network executor) and
/// reports the time from `session` to the last one.
final class Progress: Sendable {
    enum Outcome: Sendable {
        case success(Duration)
        case failure(String)
    }

    private struct State {
        var start: ContinuousClock.Instant?
        var outcome: Outcome?
        var waiter: CheckedContinuation<Outcome, Never>?
    }

    private let count: Int
    private let state = Mutex(State())
    /// Messages applied: counted without the lock, which is taken only at the start and the end,
    /// so that the measuring costs the client under test next to nothing per message.
    private let received = Atomic(0)

    init(count: Int) { self.count = count }

    /// The chat state's events, as the client applies them: the count is of messages in the state.
    func observe(_ event: ChatEvent, in chat: ChatState) {
        if case .messageReceived = event {
            // Only the client's one consumer calls this, in order.
            guard received.add(1, ordering: .relaxed).newValue == count else { return }
        }
        let done: (CheckedContinuation<Outcome, Never>?, Outcome)? = state.withLock { state in
            guard state.outcome == nil else { return nil }
            switch event {
            case .session:
                state.start = .now
                return nil
            case .messageReceived:
                state.outcome = .success(ContinuousClock.now - (state.start ?? .now))
            case .offline(let reason):
                state.outcome = .failure("connection lost after \(received.load(ordering: .relaxed)) messages: \(reason)")
            default:
                return nil
            }
            defer { state.waiter = nil }
            return (state.waiter, state.outcome!)
        }
        if let (waiter, outcome) = done { waiter?.resume(returning: outcome) }
    }

    func result() async -> Outcome {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Outcome? in
                if let outcome = state.outcome { return outcome }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}

/// Runs one of `Benchmarks/`' python-socketio clients on a flood peer, and returns the JSON
/// line it prints, as text and as a value.
func runPythonClient(
    _ script: String, python: String, url: String, count: Int, extraArguments: [String] = []
) throws -> (text: String, json: JSONValue) {
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Benchmarks/\(script)")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [python, path.path, "--url", url, "--count", String(count)] + extraArguments
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard process.terminationStatus == 0, let json = try? JSONValue(parsing: text) else {
        throw ValidationError("the python-socketio client failed (is python-socketio installed?): \(text)")
    }
    return (text, json)
}
