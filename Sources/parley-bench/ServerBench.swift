import ArgumentParser
import Foundation
import JSON
import NIOCore
import NIOPosix
import SocketIOTesting
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Load on a server of the private-messaging protocol: many WebSocket clients in pairs,
/// private messages between the two of each pair, deliveries per second and latency.
struct ServerLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Private messages per second and delivery latency through a server, with many clients.",
        discussion: """
            Opens --clients WebSocket clients (Engine.IO v4, Socket.IO v5) against the server, logs \
            each in with a username, pairs client 2k with 2k+1 and has each send private messages to \
            its peer: with --rate 0 as fast as the server delivers (each client keeps --window messages \
            in flight and answers every delivery with a new one), else --rate messages per second in \
            all, evenly over the clients, the messages due within one --tick leaving together (each \
            is timed from when it was due, so the tick's delay counts as latency). After the logins \
            (the server broadcasts each to everyone, so they cost O(clients²)) and a settling time, a \
            warm-up, then --seconds of measurement; prints \
            one JSON line. Without --url it starts the server itself (--server parley, the parley-server \
            next to this executable, or --server python, Tests/InteropTests/server.py) and also reports \
            its memory and its CPU time per message (the benchmark's own CPU is always reported: the \
            two share the machine); --compare runs the same load on both.
            """
    )

    @Option(help: "A running server (http://host:port); without it, the benchmark starts one (see --server).")
    var url: String?

    @Option(help: "The server to start when there is no --url: parley or python.")
    var server = "parley"

    @Flag(help: "Run the same load on a started parley-server and on the python-socketio server, and print the ratio.")
    var compare = false

    @Option(help: "Concurrent clients (connections).")
    var clients = 1_000

    @Option(help: "Length of the measurement, in seconds.")
    var seconds = 10.0

    @Option(help: "Messages per second in all (open loop); 0 for the maximum (closed loop).")
    var rate = 0.0

    @Option(help: "With --rate 0: messages each client keeps in flight to its peer.")
    var window = 4

    @Option(help: ArgumentHelp(
        "With --rate: milliseconds between the sender's timer ticks; each tick sends what has come due.",
        discussion: "A timer per message would cost the benchmark, on the server's cores, more than the server spends."
    ))
    var tick = 1.0

    @Option(help: "Bytes of content in each message (a 20-digit send time, then padding; at least 20).")
    var size = 32

    @Option(help: "Connection handshakes in flight at once.")
    var concurrency = 256

    @Option(help: "Seconds allowed for all the connections to log in; the run goes on with those that did.")
    var connectTimeout = 120.0

    @Option(help: "Seconds to wait after the logins, at least, and until the login storm has quietened (at most 60 s more).")
    var settle = 1.0

    @Option(help: "Seconds of traffic before the measurement starts.")
    var warmup = 1.0

    @Option(help: "The Python interpreter for --server python.")
    var python = "python3"

    @Option(help: "The parley-server executable (default: next to this one).")
    var parleyServer: String?

    @Option(help: ArgumentHelp(
        "Extra arguments for a started parley-server, in one string (write --parley-args=\"…\"; \" \" for none).",
        discussion: "The default lifts its per-socket rate limit, which python-socketio does not have."
    ))
    var parleyArgs = "--rate-limit 0"

    @Option(help: "The python-socketio server script (default: Tests/InteropTests/server.py of this package).")
    var pythonServer: String?

    @Option(help: ArgumentHelp(
        "Hostile clients: the same load is run twice, quiet and under attack, on fresh servers with their default limits.",
        discussion: """
            The attackers (AttackClients.swift) each repeat one attack from an address of their own: a polling \
            session that never polls and POSTs 3,000 CONNECT/DISCONNECT pairs, half-open sessions, half-sent \
            request heads, a 900 KB username, 99 KB messages to an offline user, WebSocket logins that never \
            read. They start after the benign logins and stop after the measurement; then a new client must \
            still be able to log in. Prints both runs and a summary (p50/p99 and server memory, with ratios).
            """
    ))
    var attack = 0

    @Option(help: "With --attack: operations per second of each attacker.")
    var attackRate = 10.0

    @Option(help: "With --attack: quiet and attacked runs, interleaved, each this many times (the summary gives medians).")
    var rounds = 1

    @Option(help: ArgumentHelp(
        "With --attack: the attacks to make, comma-separated (default: all, in turn).",
        discussion: "polling_flood, half_open, slow_headers, huge_username, history_flood, non_reader"
    ))
    var attackKinds: String?

    @Option(help: ArgumentHelp(
        "Clients that share one source address, against a server on 127.0.0.1 (0: all from 127.0.0.1).",
        discussion: """
            Each group of clients connects from its own address of 127.0.0.0/8 (127.1.0.1, 127.1.0.2, …),             as many users are many hosts: a server's per-address limits then see what they would see             in the field, not a thousand users on one host.
            """
    ))
    var clientsPerAddress = 4

    @Flag(help: ArgumentHelp(
        "The same load on one parley-server on PostgreSQL, then on two on one database with each pair of clients split between them.",
        discussion: """
            Starts a PostgreSQL of its own (initdb in a temporary directory, as the postgres user when root) and, \
            for each run, a new database. Prints each run (the server's CPU is the servers' and the database's), \
            then a comparison with the database's CPU and its transactions per second (each notification is one).
            """
    ))
    var postgres = false

    func validate() throws {
        guard clients >= 2 else { throw ValidationError("--clients must be at least 2") }
        guard !postgres || (url == nil && !compare && attack == 0 && server == "parley") else {
            throw ValidationError("--postgres starts its servers itself: leave out --url, --compare, --attack and --server")
        }
        guard seconds > 0 else { throw ValidationError("--seconds must be positive") }
        guard rate >= 0 else { throw ValidationError("--rate must be 0 (maximum) or positive") }
        guard tick >= 0.01, tick <= 100 else { throw ValidationError("--tick must be between 0.01 and 100 ms") }
        guard window >= 1 else { throw ValidationError("--window must be at least 1") }
        guard size >= 20 else { throw ValidationError("--size must be at least 20 (the send time takes 20 digits)") }
        guard concurrency >= 1 else { throw ValidationError("--concurrency must be at least 1") }
        guard clientsPerAddress >= 0 else { throw ValidationError("--clients-per-address must be 0 or more") }
        guard attack >= 0, attackRate >= 0 else { throw ValidationError("--attack and --attack-rate must be 0 or more") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
        if let attackKinds {
            for name in attackKinds.split(separator: ",") where Attackers.Kind(rawValue: String(name)) == nil {
                throw ValidationError("--attack-kinds: no attack named \(name)")
            }
        }
        guard attack == 0 || (url == nil && !compare && server == "parley") else {
            throw ValidationError("--attack starts parley-server itself: leave out --url, --compare and --server")
        }
        guard connectTimeout > 0, settle >= 0, warmup >= 0 else {
            throw ValidationError("--connect-timeout must be positive, --settle and --warmup not negative")
        }
        guard ["parley", "python"].contains(server) else { throw ValidationError("--server is parley or python") }
        guard !(compare && url != nil) else { throw ValidationError("--compare starts both servers itself: leave out --url") }
    }

    func run() async throws {
        // Before starting any server: it inherits the raised limit.
        let openFiles = SystemLimits.raiseOpenFileLimit()
        guard clients + 64 <= openFiles else {
            throw ServerBenchError(
                "\(clients) connections do not fit in the open-file limit of \(openFiles) (the hard limit, RLIMIT_NOFILE); "
                    + "raise it (ulimit -Hn, or LimitNOFILE for a service) or use --clients \(max(2, openFiles - 64))"
            )
        }
        if let ports = SystemLimits.ephemeralPorts(), clients > ports {
            throw ServerBenchError(
                "\(clients) connections to one server need more local ports than the \(ports) of net.ipv4.ip_local_port_range"
            )
        }

        if let url {
            let result = try await measure(target: try LoadTarget(url: url))
            emit(line(result, server: nil))
            return
        }
        if attack > 0 {
            try await runUnderAttack()
            return
        }
        if postgres {
            try await runOnPostgres()
            return
        }
        let kinds = compare ? ["parley", "python"] : [server]
        var results: [LoadResult] = []
        for kind in kinds {
            let started = try await start(kind)
            let result: LoadResult
            do {
                result = try await measure(target: try LoadTarget(url: "http://127.0.0.1:\(started.port)"), server: started)
            } catch {
                await started.stop()
                throw error
            }
            await started.stop()
            emit(line(result, server: (kind, result.serverMemory)))
            results.append(result)
        }
        if compare, results.count == 2 {
            let (parley, python) = (results[0], results[1])
            var fields: [(String, JSONValue)] = [
                ("benchmark", "server-compare"),
                ("ratio", .double(python.perSecond > 0 ? round2(parley.perSecond / python.perSecond) : 0)),
                ("clients", .int(clients)),
                ("target_rate", .int(Int(rate))),
                ("parley_per_second", .int(Int(parley.perSecond.rounded()))),
                ("python_per_second", .int(Int(python.perSecond.rounded()))),
                ("parley_p99_ms", .double(milliseconds(parley.histogram.percentile(0.99)))),
                ("python_p99_ms", .double(milliseconds(python.histogram.percentile(0.99)))),
            ]
            if let a = parley.serverMemory, let b = python.serverMemory {
                fields.append(("parley_rss_mb", .double(round1(a.rss))))
                fields.append(("python_rss_mb", .double(round1(b.rss))))
            }
            emit(orderedJSON(fields))
        }
    }

    /// The same load, quiet and then under attack, each on a new server with its default
    /// limits, `rounds` times interleaved; every result and a summary of the medians.
    private func runUnderAttack() async throws {
        var quietRuns: [LoadResult] = []
        var attackedRuns: [LoadResult] = []
        var alive = true
        for _ in 0..<rounds {
            for attacked in [false, true] {
                let started = try await start("parley", arguments: [])
                let target = try LoadTarget(url: "http://127.0.0.1:\(started.port)")
                let kinds = attackKinds.map { $0.split(separator: ",").compactMap { Attackers.Kind(rawValue: String($0)) } } ?? Attackers.Kind.allCases
                let attackers = attacked
                    ? Attackers(host: "127.0.0.1", port: started.port, count: attack, kinds: kinds, operationsPerSecond: attackRate) : nil
                let result: LoadResult
                do {
                    result = try await measure(target: target, server: started, attackers: attackers)
                    if attacked {
                        // After the attack: the server is there, and a new user still gets in.
                        let answered = (try? Attackers.probeLogin(host: "127.0.0.1", port: started.port)) == true
                        alive = alive && kill(started.pid, 0) == 0 && answered
                    }
                } catch {
                    _ = await attackers?.stop()
                    await started.stop()
                    throw error
                }
                await started.stop()
                emit(line(result, server: (attacked ? "parley (attacked)" : "parley (quiet)", result.serverMemory)))
                if attacked { attackedRuns.append(result) } else { quietRuns.append(result) }
            }
        }
        func median(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
        }
        let p50 = (quiet: median(quietRuns.map { milliseconds($0.histogram.percentile(0.50)) }),
                   attacked: median(attackedRuns.map { milliseconds($0.histogram.percentile(0.50)) }))
        let p99 = (quiet: median(quietRuns.map { milliseconds($0.histogram.percentile(0.99)) }),
                   attacked: median(attackedRuns.map { milliseconds($0.histogram.percentile(0.99)) }))
        let hwm = (quiet: median(quietRuns.compactMap { $0.serverMemory?.peak }),
                   attacked: median(attackedRuns.compactMap { $0.serverMemory?.peak }))
        var fields: [(String, JSONValue)] = [
            ("benchmark", "server-attack"),
            ("rounds", .int(rounds)),
            ("attackers", .int(attack)),
            ("attack_rate", .double(attackRate)),
            ("clients", .int(clients)),
            ("target_rate", .int(Int(rate))),
            ("quiet_p50_ms", .double(p50.quiet)),
            ("attacked_p50_ms", .double(p50.attacked)),
            ("quiet_p99_ms", .double(p99.quiet)),
            ("attacked_p99_ms", .double(p99.attacked)),
            ("p99_ratio", .double(ratio(p99.attacked, p99.quiet))),
            ("quiet_p99s_ms", .array(quietRuns.map { .double(milliseconds($0.histogram.percentile(0.99))) })),
            ("attacked_p99s_ms", .array(attackedRuns.map { .double(milliseconds($0.histogram.percentile(0.99))) })),
            ("quiet_hwm_mb", .double(round1(hwm.quiet))),
            ("attacked_hwm_mb", .double(round1(hwm.attacked))),
            ("hwm_ratio", .double(ratio(hwm.attacked, hwm.quiet))),
            ("lost", .int(attackedRuns.reduce(0) { $0 + $1.lost })),
            ("server_alive", .bool(alive)),
        ]
        var tallies: [Attackers.Kind: Attackers.Tally] = [:]
        for run in attackedRuns {
            for (kind, tally) in run.attackTallies ?? [:] {
                tallies[kind, default: .init()].operations += tally.operations
                tallies[kind, default: .init()].refused += tally.refused
                tallies[kind, default: .init()].closedByServer += tally.closedByServer
                tallies[kind, default: .init()].failures += tally.failures
            }
        }
        for (kind, tally) in tallies.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            fields.append((kind.rawValue, [
                "operations": .int(tally.operations), "refused": .int(tally.refused),
                "closed_by_server": .int(tally.closedByServer), "failures": .int(tally.failures),
            ]))
        }
        emit(orderedJSON(fields))
    }

    /// One parley-server on PostgreSQL, then two on one database with the pairs split: the
    /// same load, each run on a new database. What a message crossing servers costs.
    private func runOnPostgres() async throws {
        let database = try await PrivatePostgres.start()
        defer { Task { try? await database.stop() } }
        struct Run {
            var result: LoadResult
            var databaseCPU: Double
            var transactions: Double
        }
        var runs: [(String, Run)] = []
        for (name, servers) in [("one server", 1), ("two servers", 2)] {
            let url = try await database.database()
            let dbName = String(url.split(separator: "/").last!)
            var started: [StartedServer] = []
            for _ in 0..<servers { started.append(try await start("parley", arguments: (parleyArgs.split(whereSeparator: \.isWhitespace).map(String.init)) + ["--postgres", url])) }
            let targets = try started.map { try LoadTarget(url: "http://127.0.0.1:\($0.port)") }
            // The database's own processes (the postmaster and its backends), by name.
            let postgresPIDs: @Sendable () -> [String] = {
                ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { pid in
                    pid.allSatisfy(\.isNumber) && ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "").hasPrefix("postgres")
                }
            }
            func databaseCPU() -> Double { postgresPIDs().compactMap { CPUTime.of($0)?.total }.reduce(0, +) }
            /// Transactions committed in the run's database so far (a notification is one).
            func transactions() async throws -> Double {
                let row = try await database.psql("SELECT xact_commit FROM pg_stat_database WHERE datname = '\(dbName)'")
                return Double(row.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            }
            var run = LoadRun(
                target: targets[0], clients: clients, seconds: seconds, rate: rate, window: window, tick: tick, contentSize: size,
                concurrency: concurrency, connectTimeout: connectTimeout, settle: settle, warmup: warmup,
                clientsPerAddress: clientsPerAddress, attackers: nil
            )
            run.others = Array(targets.dropFirst())
            // The other servers' CPU and the database's count as the server's.
            let otherPIDs = started.dropFirst().map { String($0.pid) }
            run.alsoServer = { otherPIDs + postgresPIDs() }
            let cpuBefore = databaseCPU()
            let before = try await transactions()
            let clock = ContinuousClock.now
            let result: LoadResult
            do {
                result = try await run.run(server: started[0])
            } catch {
                for server in started { await server.stop() }
                throw error
            }
            let elapsed = (ContinuousClock.now - clock).seconds
            let after = try await transactions()
            let cpu = databaseCPU() - cpuBefore
            for server in started { await server.stop() }
            emit(line(result, server: ("parley on PostgreSQL, \(name)", result.serverMemory)))
            runs.append((name, Run(result: result, databaseCPU: cpu / elapsed * 100, transactions: (after - before) / elapsed)))
        }
        let (one, two) = (runs[0].1, runs[1].1)
        emit(orderedJSON([
            ("benchmark", "server-cluster"),
            ("clients", .int(clients)),
            ("target_rate", .int(Int(rate))),
            ("one_per_second", .int(Int(one.result.perSecond.rounded()))),
            ("two_per_second", .int(Int(two.result.perSecond.rounded()))),
            ("one_p50_ms", .double(milliseconds(one.result.histogram.percentile(0.50)))),
            ("two_p50_ms", .double(milliseconds(two.result.histogram.percentile(0.50)))),
            ("one_p99_ms", .double(milliseconds(one.result.histogram.percentile(0.99)))),
            ("two_p99_ms", .double(milliseconds(two.result.histogram.percentile(0.99)))),
            ("one_database_cpu_pct", .double(round1(one.databaseCPU))),
            ("two_database_cpu_pct", .double(round1(two.databaseCPU))),
            ("one_database_xact_per_second", .int(Int(one.transactions.rounded()))),
            ("two_database_xact_per_second", .int(Int(two.transactions.rounded()))),
        ]))
    }

    /// `attacked` over `quiet`, to two places (0 when there is no quiet figure).
    private func ratio(_ attacked: Double, _ quiet: Double) -> Double {
        quiet > 0 ? round2(attacked / quiet) : 0
    }

    private func start(_ kind: String, arguments: [String]? = nil) async throws -> StartedServer {
        switch kind {
        case "parley":
            let path = parleyServer ?? Self.siblingExecutable("parley-server")
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw ServerBenchError(
                    "no parley-server at \(path): build it (swift build -c release --product parley-server), or pass --parley-server or --url"
                )
            }
            let extra = arguments ?? parleyArgs.split(whereSeparator: \.isWhitespace).map(String.init)
            return try await StartedServer.start(name: "parley", executable: path, arguments: ["--port", "0", "--exit-with-stdin"] + extra)
        default:
            let script = pythonServer ?? Self.pythonServerScript()
            guard FileManager.default.fileExists(atPath: script) else {
                throw ServerBenchError("no python server script at \(script): pass --python-server")
            }
            return try await StartedServer.start(
                name: "python", executable: python,
                arguments: [script, "--port", "0", "--exit-with-stdin"]
            )
        }
    }

    static func siblingExecutable(_ name: String) -> String {
        let me = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        return me.resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent(name).path
    }

    static func pythonServerScript() -> String {
        let relative = "Tests/InteropTests/server.py"
        let fromSource = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(relative).path
        if FileManager.default.fileExists(atPath: fromSource) { return fromSource }
        return FileManager.default.currentDirectoryPath + "/" + relative
    }

    /// `server`: the server this benchmark started, whose CPU time and memory it reports.
    private func measure(target: LoadTarget, server: StartedServer? = nil, attackers: Attackers? = nil) async throws -> LoadResult {
        let run = LoadRun(
            target: target, clients: clients, seconds: seconds, rate: rate, window: window, tick: tick, contentSize: size,
            concurrency: concurrency, connectTimeout: connectTimeout, settle: settle, warmup: warmup,
            clientsPerAddress: clientsPerAddress, attackers: attackers
        )
        return try await run.run(server: server)
    }

    private func line(_ result: LoadResult, server: (String, StartedServerMemory?)?) -> String {
        var fields: [(String, JSONValue)] = [("benchmark", "server")]
        if let server { fields.append(("server", .string(server.0))) }
        fields += [
            ("clients", .int(clients)),
            ("connected", .int(result.connected)),
            ("per_second", .int(Int(result.perSecond.rounded()))),
            ("p50_ms", .double(milliseconds(result.histogram.percentile(0.50)))),
            ("p99_ms", .double(milliseconds(result.histogram.percentile(0.99)))),
            ("p999_ms", .double(milliseconds(result.histogram.percentile(0.999)))),
            ("max_ms", .double(milliseconds(result.histogram.maximum))),
            ("target_rate", .int(Int(rate))),
        ]
        if rate == 0 { fields.append(("window", .int(window))) } else { fields.append(("tick_ms", .double(tick))) }
        fields += [
            ("seconds", .double(round2(result.seconds))),
            ("delivered", .int(result.delivered)),
            ("sent", .int(result.sent)),
            ("lost", .int(result.lost)),
            ("connect_seconds", .double(round2(result.connectSeconds))),
            ("settle_seconds", .double(round2(result.settleSeconds))),
        ]
        if let memory = server?.1 {
            fields.append(("server_rss_mb", .double(round1(memory.rss))))
            fields.append(("server_hwm_mb", .double(round1(memory.peak))))
        }
        if let peak = result.clientPeakMemory { fields.append(("client_hwm_mb", .double(round1(peak)))) }
        // Where the CPU went, per message delivered in the measurement: both processes share
        // this machine's cores, so together they bound the rate any run here can reach.
        for (name, cpu) in [("server", result.serverCPU), ("bench", result.benchCPU)] {
            guard let cpu, result.seconds > 0, result.delivered > 0 else { continue }
            let perMessage = 1e6 / Double(result.delivered)
            fields.append(("\(name)_cpu_pct", .double(round1(cpu.total / result.seconds * 100))))
            fields.append(("\(name)_us_per_msg", .double(round1(cpu.total * perMessage))))
            fields.append(("\(name)_kernel_us_per_msg", .double(round1(cpu.system * perMessage))))
        }
        return orderedJSON(fields)
    }
}

struct StartedServerMemory: Sendable {
    var rss: Double
    var peak: Double
}

/// A JSON object with its keys in the order given (JSONValue sorts them), `benchmark` first.
private func orderedJSON(_ fields: [(String, JSONValue)]) -> String {
    "{" + fields.map { JSONValue.string($0.0).serialized() + ":" + $0.1.serialized() }.joined(separator: ",") + "}"
}

private func milliseconds(_ nanoseconds: UInt64) -> Double { (Double(nanoseconds) / 1e3).rounded() / 1e3 }
private func round1(_ x: Double) -> Double { (x * 10).rounded() / 10 }
private func round2(_ x: Double) -> Double { (x * 100).rounded() / 100 }

/// Where the clients connect: host, port and the Socket.IO path.
struct LoadTarget: Sendable {
    var host: String
    var port: Int
    var path: String

    init(url text: String) throws {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty else {
            throw ServerBenchError("--url \(text) is not a URL like http://127.0.0.1:3000")
        }
        switch scheme {
        case "http", "ws": break
        case "https", "wss": throw ServerBenchError("the load generator speaks plain ws:// only (no TLS): use an http:// URL")
        default: throw ServerBenchError("--url must be http:// or ws://, not \(scheme)://")
        }
        self.host = host == "localhost" ? "127.0.0.1" : host
        self.port = url.port ?? 80
        var path = url.path
        if path.hasSuffix("/") { path.removeLast() }
        if !path.hasSuffix("/socket.io") { path += "/socket.io" }
        self.path = path + "/"
    }

    var display: String { "\(host):\(port)\(path)" }
}

struct LoadResult: Sendable {
    var connected: Int
    var connectSeconds: Double
    var settleSeconds: Double
    var seconds: Double
    var delivered: Int
    var sent: Int
    var lost: Int
    var histogram: LatencyHistogram
    var serverMemory: StartedServerMemory?
    /// What each kind of attacker did, with --attack.
    var attackTallies: [Attackers.Kind: Attackers.Tally]?
    /// This process's peak resident set (VmHWM), in MB.
    var clientPeakMemory: Double?
    /// CPU time used during the measurement by the started server, and by this benchmark.
    var serverCPU: CPUTime?
    var benchCPU: CPUTime?
    var perSecond: Double { seconds > 0 ? Double(delivered) / seconds : 0 }
}

/// One measurement: connect, pair, settle, warm up, measure, close.
struct LoadRun: Sendable {
    let target: LoadTarget
    /// More servers of one cluster: client n connects to the n-th of `target` and these, in
    /// turn, so that each pair (2k, 2k+1) is split between two servers.
    var others: [LoadTarget] = []
    /// Processes whose CPU counts as the server's too (a database), by pid.
    var alsoServer: @Sendable () -> [String] = { [] }
    let clients: Int
    let seconds: Double
    let rate: Double
    let window: Int
    /// Open loop: milliseconds between sends.
    let tick: Double
    let contentSize: Int
    let concurrency: Int
    let connectTimeout: Double
    let settle: Double
    let warmup: Double
    /// Clients per source address (see `ServerLoad.clientsPerAddress`).
    let clientsPerAddress: Int
    /// Hostile clients, started with the traffic and stopped after the measurement.
    let attackers: Attackers?

    func run(server: StartedServer?) async throws -> LoadResult {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let loops = Array(group.makeIterator())
        var states: [NIOLoopBound<LoadLoopState>] = []
        for (i, loop) in loops.enumerated() {
            let seed = UInt64.random(in: .min ... .max) &+ UInt64(i)
            states.append(try await loop.submit { NIOLoopBound(LoadLoopState(eventLoop: loop, seed: seed), eventLoop: loop) }.get())
        }
        var connected: [ReadyClient] = []
        do {
            let result = try await measure(loops: loops, states: states, connected: &connected, server: server)
            await close(connected, loops: loops, states: states)
            try? await group.shutdownGracefully()
            return result
        } catch {
            for client in connected { client.channel.close(promise: nil) }
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private func measure(
        loops: [any EventLoop], states: [NIOLoopBound<LoadLoopState>], connected: inout [ReadyClient],
        server: StartedServer?
    ) async throws -> LoadResult {
        let clock = ContinuousClock()
        let deadline = NIODeadline.now() + .nanoseconds(Int64(connectTimeout * 1e9))
        let control = LoadControl(
            closedLoop: rate == 0, contentSize: contentSize, connectDeadline: deadline,
            requestHead: "GET \(target.path)?EIO=4&transport=websocket HTTP/1.1\r\n"
                + "Host: \(target.host):\(target.port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Version: 13\r\n"
        )
        var addresses: [SocketAddress] = []
        for each in [target] + others {
            do {
                addresses.append(try SocketAddress.makeAddressResolvingHost(each.host, port: each.port))
            } catch {
                throw ServerBenchError("cannot resolve \(each.host): \(error)")
            }
        }

        // 1. Connect and log in, `concurrency` handshakes at a time.
        let connectStart = clock.now
        let outcome = try await connectAll(addresses: addresses, loops: loops, states: states, control: control, deadline: deadline)
        connected = outcome.clients
        let connectSeconds = (clock.now - connectStart).seconds
        if let failure = outcome.abort { throw failure }
        let why = (outcome.firstError ?? outcome.firstTimeout).map { " (first failure: \($0))" } ?? ""
        guard connected.count >= 2 else {
            throw ServerBenchError("\(connected.count) of \(clients) clients logged in on \(target.display) within \(connectTimeout) s\(why)")
        }
        if connected.count < clients {
            warn("\(connected.count) of \(clients) clients logged in within \(connectTimeout) s\(why); measuring with those")
        }

        // 2. Pair them (consecutive logged-in clients: 2k and 2k+1 when all logged in).
        var peers: [[(NIOLoopBound<LoadClientHandler>, [UInt8])]] = Array(repeating: [], count: loops.count)
        for pair in 0..<(connected.count / 2) {
            let a = connected[2 * pair]
            let b = connected[2 * pair + 1]
            peers[a.index % loops.count].append((a.handler, b.userID))
            peers[b.index % loops.count].append((b.handler, a.userID))
        }
        for (i, loop) in loops.enumerated() {
            let list = peers[i]
            let state = states[i]
            try await loop.submit {
                for (handler, peer) in list {
                    handler.value.setPeer(peer)
                    state.value.senders.append(handler.value)
                }
            }.get()
        }

        // 3. Let the login storm pass: at least --settle, then until no frame arrived for 0.5 s.
        let settleStart = clock.now
        var frames = try await health(loops: loops, states: states).frames
        var quietSince = clock.now
        while true {
            try await Task.sleep(for: .milliseconds(100))
            let total = try await health(loops: loops, states: states).frames
            if total != frames {
                frames = total
                quietSince = clock.now
            }
            let waited = clock.now - settleStart
            if waited >= .seconds(settle), clock.now - quietSince >= .milliseconds(500) { break }
            if waited >= .seconds(settle + 60) {
                warn("the server was still sending login traffic after \(Int(settle + 60)) s; measuring anyway")
                break
            }
        }
        let settleSeconds = (clock.now - settleStart).seconds

        // 4. Traffic: warm up, then measure (under attack, when there are attackers).
        attackers?.start()
        control.set(.warmup)
        let senders = connected.count / 2 * 2
        for (i, loop) in loops.enumerated() {
            let state = states[i]
            let window = self.window
            let tick = UInt64(self.tick * 1e6)
            let share = rate * Double(peers[i].count) / Double(senders)
            loop.execute {
                if control.closedLoop {
                    state.value.startClosedLoop(window: window)
                } else {
                    state.value.startOpenLoop(rate: share, tick: tick)
                }
            }
        }
        try await watch(for: warmup, loops: loops, states: states, control: control)
        control.set(.measuring)
        let measureStart = clock.now
        let serverPIDs = (server.map { [String($0.pid)] } ?? []) + alsoServer()
        func serverCPU() -> CPUTime? {
            let times = serverPIDs.compactMap { CPUTime.of($0) }
            return times.isEmpty ? nil : times.reduce(CPUTime(user: 0, system: 0)) { CPUTime(user: $0.user + $1.user, system: $0.system + $1.system) }
        }
        let cpuAtStart = (server: serverCPU(), bench: CPUTime.of("self"))
        try await watch(for: seconds, loops: loops, states: states, control: control)
        control.set(.stopped)
        let cpuAtEnd = (server: serverCPU(), bench: CPUTime.of("self"))
        let measured = (clock.now - measureStart).seconds

        // 5. Let the messages in flight arrive (at most 10 s, or until none came for 1 s): what
        // never does was dropped by the server.
        let drainStart = clock.now
        var lastReceived = -1
        var lastChange = clock.now
        var lost = 0
        while true {
            let now = try await health(loops: loops, states: states)
            lost = now.sentTotal - now.receivedTotal
            if lost <= 0 { break }
            if now.receivedTotal != lastReceived {
                lastReceived = now.receivedTotal
                lastChange = clock.now
            }
            if clock.now - lastChange >= .seconds(1) || clock.now - drainStart >= .seconds(10) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        if lost > 0 {
            warn("\(lost) private message(s) sent were never delivered (\(target.display) dropped them: a rate limit?)")
        }

        let final = try await snapshots(loops: loops, states: states)
        // At the end of the run, before the connections close.
        let serverMemory = server?.memory().map { StartedServerMemory(rss: $0.rss, peak: $0.peak) }
        let clientPeakMemory = StartedServer.memory(of: "self")?.peak
        let attackTallies = await attackers?.stop()
        try check(final)
        var histogram = LatencyHistogram()
        for snapshot in final { histogram.merge(snapshot.histogram) }
        let delivered = final.reduce(0) { $0 + $1.delivered }
        guard delivered > 0 else {
            throw ServerBenchError("no private message was delivered in \(round2(measured)) s on \(target.display) (does the server implement PROTOCOL.md's private message?)")
        }
        return LoadResult(
            connected: connected.count, connectSeconds: connectSeconds, settleSeconds: settleSeconds, seconds: measured,
            delivered: delivered, sent: final.reduce(0) { $0 + $1.sent }, lost: max(0, lost), histogram: histogram,
            serverMemory: serverMemory, attackTallies: attackTallies, clientPeakMemory: clientPeakMemory,
            serverCPU: cpuAtEnd.server.flatMap { end in cpuAtStart.server.map { end - $0 } },
            benchCPU: cpuAtEnd.bench.flatMap { end in cpuAtStart.bench.map { end - $0 } }
        )
    }

    /// Connections lost or frames not understood after the logins end the run with an error.
    private func check(_ snapshots: [LoadLoopState.Snapshot]) throws {
        let problems = snapshots.reduce(0) { $0 + $1.problems }
        guard problems > 0 else { return }
        let first = snapshots.compactMap(\.firstProblem).first ?? "?"
        throw ServerBenchError("\(problems) failure(s) after the logins on \(target.display); the first: \(first)")
    }

    /// Totals over the event loops; throws when a connection failed.
    private func health(loops: [any EventLoop], states: [NIOLoopBound<LoadLoopState>]) async throws -> LoadLoopState.Health {
        var total = LoadLoopState.Health(frames: 0, sentTotal: 0, receivedTotal: 0, problems: 0)
        for (i, loop) in loops.enumerated() {
            let state = states[i]
            let health = try await loop.submit { state.value.health }.get()
            total.frames += health.frames
            total.sentTotal += health.sentTotal
            total.receivedTotal += health.receivedTotal
            total.problems += health.problems
            total.firstProblem = total.firstProblem ?? health.firstProblem
        }
        if total.problems > 0 {
            throw ServerBenchError("\(total.problems) failure(s) after the logins on \(target.display); the first: \(total.firstProblem ?? "?")")
        }
        return total
    }

    /// Sleeps `seconds`, looking at the connections every 200 ms: a failure ends the run at once.
    private func watch(for seconds: Double, loops: [any EventLoop], states: [NIOLoopBound<LoadLoopState>], control: LoadControl) async throws {
        let end = ContinuousClock.now + .seconds(seconds)
        while true {
            let left = end - ContinuousClock.now
            if left <= .zero { return }
            try await Task.sleep(for: min(left, .milliseconds(200)))
            do {
                _ = try await health(loops: loops, states: states)
            } catch {
                control.set(.stopped)
                throw error
            }
        }
    }

    private func snapshots(loops: [any EventLoop], states: [NIOLoopBound<LoadLoopState>]) async throws -> [LoadLoopState.Snapshot] {
        var result: [LoadLoopState.Snapshot] = []
        for (i, loop) in loops.enumerated() {
            let state = states[i]
            result.append(try await loop.submit { state.value.snapshot }.get())
        }
        return result
    }

    private struct ConnectOutcome {
        var clients: [ReadyClient]
        var firstError: String?
        var firstTimeout: String?
        var abort: ServerBenchError?
    }

    private func connectAll(
        addresses: [SocketAddress], loops: [any EventLoop], states: [NIOLoopBound<LoadLoopState>], control: LoadControl, deadline: NIODeadline
    ) async throws -> ConnectOutcome {
        var ready: [ReadyClient?] = Array(repeating: nil, count: clients)
        var count = 0
        var failures = 0
        var firstError: String?
        var firstTimeout: String?
        var abort: ServerBenchError?
        // Errors (not the deadline) beyond this many end the run: the server is not there or not right.
        let tolerated = max(10, clients / 100)
        await withTaskGroup(of: (Int, Result<ReadyClient, LoadClientError>).self) { group in
            var next = 0
            func launch() {
                let index = next
                next += 1
                let loop = loops[index % loops.count]
                let state = states[index % loops.count]
                let address = addresses[index % addresses.count]
                group.addTask {
                    do {
                        return (index, .success(try await connectOne(
                            index: index, address: address, source: sourceAddress(client: index, server: address),
                            loop: loop, state: state, control: control, deadline: deadline
                        )))
                    } catch let error as LoadClientError {
                        return (index, .failure(error))
                    } catch {
                        return (index, .failure(LoadClientError(description: "\(error)")))
                    }
                }
            }
            while next < min(concurrency, clients) { launch() }
            while let (index, result) = await group.next() {
                switch result {
                case .success(let client):
                    ready[index] = client
                    count += 1
                case .failure(let error):
                    if !error.isTimeout {
                        failures += 1
                        if firstError == nil { firstError = error.description }
                    } else if firstTimeout == nil {
                        firstTimeout = error.description
                    }
                }
                if abort == nil, failures > tolerated {
                    abort = ServerBenchError(
                        count == 0
                            ? "no client could log in on \(target.display): \(firstError ?? "?")"
                            : "\(failures) connections to \(target.display) failed (\(count) logged in); the first: \(firstError ?? "?")"
                    )
                    group.cancelAll()
                }
                if abort == nil, next < clients, NIODeadline.now() < deadline { launch() }
            }
        }
        if count == 0, abort == nil, let firstError {
            abort = ServerBenchError("no client could log in on \(target.display): \(firstError)")
        }
        return ConnectOutcome(clients: ready.compactMap { $0 }, firstError: firstError, firstTimeout: firstTimeout, abort: abort)
    }

    /// Where client `index` connects from (see `--clients-per-address`): nil for the default.
    func sourceAddress(client index: Int, server: SocketAddress) -> SocketAddress? {
        guard clientsPerAddress > 0, let host = server.ipAddress, host.hasPrefix("127.") else { return nil }
        let group = index / clientsPerAddress
        return try? SocketAddress(ipAddress: "127.\(1 + group / 62_500).\(group / 250 % 250).\(1 + group % 250)", port: 0)
    }

    private func connectOne(
        index: Int, address: SocketAddress, source: SocketAddress?, loop: any EventLoop, state: NIOLoopBound<LoadLoopState>,
        control: LoadControl, deadline: NIODeadline
    ) async throws -> ReadyClient {
        let ready = loop.makePromise(of: ReadyClient.self)
        let remaining = deadline - NIODeadline.now()
        guard remaining > .zero else { throw LoadClientError(description: "the connection deadline passed", isTimeout: true) }
        var bootstrap = ClientBootstrap(group: loop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            // Each channel keeps its receive buffer between reads: a small fixed one keeps
            // 10,000 idle connections cheap (an adaptive one grows to 64 KB in the login storm).
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 4096))
            .connectTimeout(min(remaining, .seconds(10)))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        LoadClientHandler(index: index, loop: state.value, control: control, ready: ready)
                    )
                }
            }
        if let source { bootstrap = bootstrap.bind(to: source) }
        let attempt = PendingChannel()
        return try await withTaskCancellationHandler {
            let connecting = bootstrap.connect(to: address)
            connecting.whenComplete { result in
                switch result {
                case .success(let channel): attempt.connected(channel)
                case .failure(let error):
                    let reason = (error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? "\(error)"
                    ready.fail(LoadClientError(description: "cannot connect to \(target.host):\(target.port): \(reason)"))
                }
            }
            return try await ready.futureResult.get()
        } onCancel: {
            attempt.cancel()
        }
    }

    /// WebSocket close on every connection; those not closed within 5 s are closed outright.
    private func close(_ clients: [ReadyClient], loops: [any EventLoop], states: [NIOLoopBound<LoadLoopState>]) async {
        for (i, loop) in loops.enumerated() {
            let state = states[i]
            loop.execute {
                for client in state.value.clients { client.sendClose() }
            }
        }
        guard let first = loops.first else { return }
        let channels = clients.map(\.channel)
        let all = EventLoopFuture.andAllComplete(channels.map(\.closeFuture), on: first)
        let force = first.scheduleTask(in: .seconds(5)) {
            for channel in channels { channel.close(promise: nil) }
        }
        try? await all.get()
        force.cancel()
    }
}

/// A channel being connected, so a cancelled handshake can close it.
private final class PendingChannel: Sendable {
    private struct State {
        var channel: (any Channel)?
        var cancelled = false
    }

    private let state = Mutex(State())

    func connected(_ channel: any Channel) {
        let cancelled = state.withLock { state in
            state.channel = channel
            return state.cancelled
        }
        if cancelled { channel.close(promise: nil) }
    }

    func cancel() {
        let channel = state.withLock { state in
            state.cancelled = true
            return state.channel
        }
        channel?.close(promise: nil)
    }
}

/// A result line, written at once (stdout may be a pipe).
private func emit(_ line: String) {
    print(line)
    fflush(nil)  // all C streams: stdout may be a pipe
}

private func warn(_ text: String) {
    FileHandle.standardError.write(Data("parley-bench: \(text)\n".utf8))
}

extension Duration {
    fileprivate var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
