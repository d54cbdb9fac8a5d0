import ArgumentParser
import Chat
import ChatClient
import EngineIO
import Foundation
import History
import JSON
import Synchronization
import TerminalUI

/// Time to the first drawn chat screen with a long local history, against an empty one.
struct Startup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time from starting the chat client to its first chat screen, with --messages kept on disk and with none.",
        discussion: """
            A flood peer logs the client in (session, users, no messages). One history holds --messages \
            messages of one conversation, another none; each run (interleaved) starts a client on one of \
            them and times it until the login's users list is in the state and the conversation's frame \
            is drawn. Prints one JSON line per run, the medians and their ratio.
            """
    )

    @Option(help: "Messages kept in the full history.")
    var messages = 1_000_000

    @Option(help: "Runs per history, interleaved.")
    var runs = 5

    func validate() throws {
        guard messages > 0, runs > 0 else { throw ValidationError("--messages and --runs must be positive") }
    }

    func run() async throws {
        setlocale(LC_ALL, "C.UTF-8")
        let peer = try await FloodPeer.start(count: 0)
        let url = "http://127.0.0.1:\(peer.port)"
        let server = ServerKey(try EngineIOEndpoint(url: url)).value
        let root = NSTemporaryDirectory() + "parley-startup-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (full, _) = try HistoryStore.open(directory: root + "/full", maxPending: messages + 1)
        let (empty, _) = try HistoryStore.open(directory: root + "/empty")
        let start = Date(timeIntervalSince1970: 1_700_000_000)
        for i in 0..<messages {
            full.append(
                server: server, me: FloodPeer.selfID,
                StoredMessage(peer: FloodPeer.peerID, fromSelf: i.isMultiple(of: 5), content: "message number \(i) of the history", at: start + Double(i)),
                peerName: "peer"
            )
        }
        await full.flush()
        var times: [String: [Double]] = ["full": [], "empty": []]
        for n in 0..<runs {
            for (name, store) in [("full", full), ("empty", empty)] {
                let (seconds, shown) = try await measure(url: url, history: store, directory: root + "/config-\(name)-\(n)")
                times[name, default: []].append(seconds)
                print(JSONValue.object([
                    "benchmark": "startup", "history": .string(name), "stored_messages": .int(name == "full" ? messages : 0),
                    "restored_messages": .int(shown), "seconds": .double((seconds * 10_000).rounded() / 10_000),
                ]).serialized())
            }
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        let ratio = median(times["full"]!) / median(times["empty"]!)
        print(JSONValue.object([
            "benchmark": "startup", "comparison": .string("\(messages) stored / none (median of \(runs))"),
            "full_seconds": .double((median(times["full"]!) * 10_000).rounded() / 10_000),
            "empty_seconds": .double((median(times["empty"]!) * 10_000).rounded() / 10_000),
            "ratio": .double((ratio * 100).rounded() / 100),
        ]).serialized())
        await peer.stop()
    }

    /// From creating the client to the first frame of the conversation with the flood's peer.
    func measure(url: String, history: HistoryStore, directory: String) async throws -> (seconds: Double, shown: Int) {
        let listed = Listed()
        let began = ContinuousClock.now
        let client = try await ChatClient(options: .init(url: url, configDirectory: directory, observer: listed.observe, history: history))
        try await client.start(username: "bench")
        await listed.wait()
        var model = UIModel(settings: .init(serverURL: url), hasSession: true)
        var grid = CellGrid(width: 160, height: 50)
        let effects = client.read { chat in
            model.sync(with: chat, now: Date())
            _ = model.update(.resize(width: 160, height: 50), chat: chat)
            return model.update(.key(.alt("2")), chat: chat)
        }
        for case .select(let id) in effects { client.select(id) }
        let shown = client.read { chat in
            model.sync(with: chat, now: Date())
            View.render(model, chat, into: &grid)
            return chat.selectedUser?.messages.count ?? 0
        }
        let elapsed = ContinuousClock.now - began
        await client.close()
        guard grid.text.contains("peer") else { throw ValidationError("the conversation was not drawn") }
        return (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, shown)
    }
}

/// Waits for the login's users list.
private final class Listed: Sendable {
    private let state = Mutex<(done: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func observe(_ event: ChatEvent, in chat: ChatState) {
        guard case .users = event else { return }
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.done = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                if state.done { return true }
                state.waiter = continuation
                return false
            }
            if done { continuation.resume() }
        }
    }
}
