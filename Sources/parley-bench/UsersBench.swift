import ArgumentParser
import Chat
import ChatClient
import Foundation
import JSON
import NIOCore
import SocketIOTesting
import Synchronization

/// A login storm: what a client does with a server of many users, and with all of them coming
/// back at once (a server restart).
struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A users list of --count entries, then --count `user connected` for new users, through the whole client stack.",
        discussion: """
            Starts a flood peer that answers the CONNECT with session, a users list of --count \
            users, then --count user connected events for as many new users, names in no \
            particular order. Prints the time from session until the list is applied, and from \
            then until the last user connected is applied (in the chat state, in its order).
            """
    )

    @Option(help: "Users in the list, and new users connecting after it.")
    var count = 100_000

    @Flag(help: "Also run python-socketio's AsyncClient on the same storm, keeping the same order, and print the ratio.")
    var compare = false

    @Option(help: "The Python interpreter for --compare.")
    var python = "python3"

    @Option(help: "Measure Parley this many times and print the median of each phase.")
    var runs = 1

    func validate() throws {
        guard count > 0, count <= 150_000 else { throw ValidationError("--count is 1…150000 (the list must fit in one 16 MiB frame)") }
        guard runs > 0 else { throw ValidationError("--runs must be positive") }
    }

    func run() async throws {
        let peer = try await FloodPeer.start(flood: Self.encodeStorm(count: count))
        let url = "http://127.0.0.1:\(peer.port)"
        var lists: [Double] = []
        var storms: [Double] = []
        for _ in 0..<runs {
            let (list, storm) = try await measureParley(url: url)
            lists.append(list)
            storms.append(storm)
            print(line(client: "parley", list: list, storm: storm))
        }
        let list = median(lists)
        let storm = median(storms)
        if runs > 1 {
            print(JSONValue.object([
                "benchmark": "users", "client": "parley", "runs": .int(runs), "users": .int(count),
                "median_list_seconds": .double(rounded(list)), "median_connected_seconds": .double(rounded(storm)),
            ]).serialized())
        }
        if compare {
            let (text, json) = try runPythonClient("users_client.py", python: python, url: url, count: count)
            print(text)
            if let pythonList = json["list_seconds"]?.doubleValue, let pythonStorm = json["connected_seconds"]?.doubleValue {
                print(JSONValue.object([
                    "benchmark": "users", "comparison": "python-socketio/parley (time, median)",
                    "list_ratio": .double((pythonList / list * 10).rounded() / 10),
                    "connected_ratio": .double((pythonStorm / storm * 10).rounded() / 10),
                ]).serialized())
            }
        }
        await peer.stop()
    }

    func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count.isMultiple(of: 2) ? (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2 : sorted[sorted.count / 2]
    }

    func rounded(_ seconds: Double) -> Double { (seconds * 1000).rounded() / 1000 }

    func line(client: String, list: Double, storm: Double) -> String {
        JSONValue.object([
            "benchmark": "users", "client": .string(client), "users": .int(count),
            "list_seconds": .double(rounded(list)), "connected_seconds": .double(rounded(storm)),
            "connected_per_second": .int(Int(Double(count) / storm)),
        ]).serialized()
    }

    /// The storm's frames: session, the users list, then the new users one by one. Names are
    /// spread over the alphabet (a hash of the number), so each lands anywhere in the list.
    static func encodeStorm(count: Int) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count * 180 + 1024)
        func name(_ n: Int) -> String {
            var h = UInt64(n) &* 0x9E37_79B9_7F4A_7C15
            h ^= h >> 29
            return "user-" + String(h % 1_000_000_007, radix: 36) + "-\(n)"
        }
        let encoder = WebSocketFrames.Encoder()
        FloodPeer.writeFrame(#"40{"sid":"bench"}"#, into: &buffer, using: encoder)
        FloodPeer.writeFrame(#"42["session",{"sessionID":"bench-session","userID":"\#(FloodPeer.selfID)"}]"#, into: &buffer, using: encoder)
        var list = #"42["users",[{"userID":"\#(FloodPeer.selfID)","username":"bench","connected":true}"#
        for n in 0..<count {
            list += #",{"userID":"old-\#(n)","username":"\#(name(n))","connected":\#(n % 3 != 0)}"#
        }
        list += "]]"
        FloodPeer.writeFrame(list, into: &buffer, using: encoder)
        for n in count..<(2 * count) {
            FloodPeer.writeFrame(#"42["user connected",{"userID":"new-\#(n)","username":"\#(name(n))"}]"#, into: &buffer, using: encoder)
        }
        return buffer
    }

    /// From `session` until the list is in the state, then until the last new user is.
    func measureParley(url: String) async throws -> (list: Double, storm: Double) {
        let directory = NSTemporaryDirectory() + "parley-bench-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let clock = StormClock(count: count)
        let client = try await ChatClient(options: .init(
            url: url, configDirectory: directory, observer: clock.observe
        ))
        try await client.start(username: "bench")
        let (list, storm) = await clock.result()
        let (listed, names) = client.read { state in (state.order.count, state.users.dropFirst().map(\.username)) }
        await client.close()
        // Checked after the clock stopped: every user there, and in order.
        guard listed == 2 * count + 1 else { throw ValidationError("only \(listed) users reached the state") }
        guard zip(names, names.dropFirst()).allSatisfy({ $0 <= $1 }) else { throw ValidationError("the users are not in order") }
        return (list, storm)
    }
}

/// Times the storm's phases from the events as the client applies them.
final class StormClock: Sendable {
    private struct State {
        var start: ContinuousClock.Instant?
        var listed: ContinuousClock.Instant?
        var connected = 0
        var result: (Double, Double)?
        var waiter: CheckedContinuation<(Double, Double), Never>?
    }

    private let count: Int
    private let state = Mutex(State())

    init(count: Int) { self.count = count }

    func observe(_ event: ChatEvent, in chat: ChatState) {
        let now = ContinuousClock.now
        let done: (CheckedContinuation<(Double, Double), Never>, (Double, Double))? = state.withLock { state in
            switch event {
            case .session: state.start = now
            case .users: state.listed = now
            case .userConnected:
                state.connected += 1
                guard state.connected == count, let start = state.start, let listed = state.listed else { return nil }
                let result = (Self.seconds(listed - start), Self.seconds(now - listed))
                state.result = result
                guard let waiter = state.waiter else { return nil }
                state.waiter = nil
                return (waiter, result)
            default: break
            }
            return nil
        }
        if let (waiter, result) = done { waiter.resume(returning: result) }
    }

    func result() async -> (Double, Double) {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> (Double, Double)? in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
