import Foundation
import Glibc
import Synchronization

/// A PostgreSQL of the tests' own: `initdb` in a temporary directory, `postgres` on a free
/// port of 127.0.0.1 with its socket in that directory, run as the `postgres` user when the
/// tests run as root (PostgreSQL refuses root), logins by password (SCRAM), fsync off. Started
/// once per test process, when a test first asks; stopped, and its directory removed, when
/// the process exits. Each test takes a database of its own (`database()`).
public final class PrivatePostgres: Sendable {
    public let port: Int
    public let directory: String
    public static let user = "parley"
    public static let password = "parley-test-password"

    private static let started = Mutex<Task<PrivatePostgres, any Error>?>(nil)
    private let databases = Mutex(0)
    /// The running server's process (runuser's, when root), nil while stopped.
    private let process = Mutex<Process?>(nil)
    private let data: String

    /// The one instance, started on first use.
    public static func shared() async throws -> PrivatePostgres {
        let task = started.withLock { task in
            if let task { return task }
            let new = Task { try await PrivatePostgres.start() }
            task = new
            return new
        }
        return try await task.value
    }

    private init(port: Int, directory: String) {
        self.port = port
        self.directory = directory
        data = directory + "/data"
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// The URL of a new, empty database (no password in it: `PGPASSWORD` has it).
    public func database() async throws -> String {
        let name = databases.withLock { count in
            count += 1
            return "test_\(getpid())_\(count)"
        }
        try await psql("CREATE DATABASE \(name)")
        return url(name)
    }

    public func url(_ database: String, password: Bool = true) -> String {
        "postgres://\(Self.user)\(password ? ":" + Self.password : "")@127.0.0.1:\(port)/\(database)"
    }

    /// Runs one SQL command with psql, as the tests' superuser; what it printed (unaligned,
    /// tuples only: one row a line, fields apart by "|").
    @discardableResult
    public func psql(_ command: String, database: String = "postgres") async throws -> String {
        let (status, output) = try await Self.run(
            Self.binary("psql"), ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", "\(port)", "-U", Self.user, "-d", database, "-c", command],
            environment: ["PGPASSWORD": Self.password], asPostgres: false
        )
        guard status == 0 else { throw Failure(description: "psql \(command): \(output)") }
        return output
    }

    // MARK: Starting and stopping

    /// Stops the server (a fast shutdown: connections are closed) and waits until it is gone.
    public func stop() async throws {
        guard let running = process.withLock({ $0 }) else { return }
        if let text = try? String(contentsOfFile: data + "/postmaster.pid", encoding: .utf8),
            let pid = text.split(separator: "\n").first.flatMap({ pid_t($0) })
        {
            kill(pid, SIGINT)
        }
        try await Self.onThread { running.waitUntilExit() }
        process.withLock { $0 = nil }
    }

    /// Starts it again, on the same port and data.
    public func restart() async throws {
        try await launch(data: data)
    }

    /// A server of one test's own, to stop and start (the shared one is never stopped).
    public static func start() async throws -> PrivatePostgres {
        let directory = try makeDirectory()
        let data = directory + "/data"
        let passwordFile = directory + "/password"
        try Data(password.utf8).write(to: URL(fileURLWithPath: passwordFile))
        if getuid() == 0 {
            // The server's own user owns its files; nobody else reads them.
            let postgres = try user("postgres")
            for path in [directory, passwordFile] { chown(path, postgres.uid, postgres.gid) }
            chmod(directory, 0o700)
        }
        let (status, output) = try await run(
            binary("initdb"), ["-D", data, "-U", user, "--pwfile", passwordFile, "-A", "scram-sha-256", "-E", "UTF8", "--locale", "C", "--no-sync"],
            environment: [:], asPostgres: true
        )
        guard status == 0 else { throw Failure(description: "initdb failed (\(status)): \(output)") }
        let port = try freePort()
        let server = PrivatePostgres(port: port, directory: directory)
        try await server.launch(data: data)
        return server
    }

    /// Starts `postgres` and returns once it says it accepts connections.
    private func launch(data: String) async throws {
        let process = Process()
        let arguments = [
            "-D", data, "-p", "\(port)", "-k", directory, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
            "-c", "full_page_writes=off", "-c", "max_connections=200",
        ]
        if getuid() == 0 {
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
            process.arguments = ["-u", "postgres", "--", try Self.binary("postgres")] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: try Self.binary("postgres"))
            process.arguments = arguments
        }
        let log = Pipe()
        process.standardError = log
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        self.process.withLock { $0 = process }
        let first = Self.toStop.withLock { toStop in
            defer { toStop.append((data, directory)) }
            return toStop.isEmpty
        }
        if first {
            atexit {
                for (data, directory) in PrivatePostgres.toStop.withLock({ $0 }) {
                    // The postmaster's pid is the first line of its pid file: an immediate shutdown.
                    if let text = try? String(contentsOfFile: data + "/postmaster.pid", encoding: .utf8),
                        let pid = text.split(separator: "\n").first.flatMap({ pid_t($0) })
                    {
                        kill(pid, SIGQUIT)
                    }
                    try? FileManager.default.removeItem(atPath: directory)
                }
            }
        }
        // Read its log until it is ready (or it ends).
        let reader = log.fileHandleForReading
        let ready = try await Self.onThread { () -> (Bool, String) in
            var text = ""
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { return (false, text) }
                text += String(decoding: chunk, as: UTF8.self)
                if text.contains("database system is ready to accept connections") { return (true, text) }
            }
        }
        guard ready.0 else { throw Failure(description: "postgres did not start: \(ready.1)") }
        // Keep draining its log, so that it never blocks on a full pipe.
        Thread { while !reader.availableData.isEmpty {} }.start()
    }

    private static let toStop = Mutex<[(String, String)]>([])

    /// Blocking work on a thread of its own.
    private static func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            Thread { continuation.resume(with: Result { try work() }) }.start()
        }
    }

    private static func makeDirectory() throws -> String {
        var template = Array((NSTemporaryDirectory() + "parley-postgres-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw Failure(description: "mkdtemp: \(String(cString: strerror(errno)))") }
        return String(cString: made)
    }

    private static func user(_ name: String) throws -> (uid: uid_t, gid: gid_t) {
        guard let entry = getpwnam(name) else {
            throw Failure(description: "no \(name) user: install PostgreSQL (make deps), or run the tests as another user than root")
        }
        return (entry.pointee.pw_uid, entry.pointee.pw_gid)
    }

    /// A PostgreSQL program: Debian keeps them in /usr/lib/postgresql/<version>/bin.
    public static func binary(_ name: String) throws -> String {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted(by: >)
        for version in versions where FileManager.default.isExecutableFile(atPath: "\(root)/\(version)/bin/\(name)") {
            return "\(root)/\(version)/bin/\(name)"
        }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        where FileManager.default.isExecutableFile(atPath: "\(directory)/\(name)") {
            return "\(directory)/\(name)"
        }
        throw Failure(description: "\(name) not found: make deps installs PostgreSQL")
    }

    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0 else { throw Failure(description: "bind: \(String(cString: strerror(errno)))") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Runs a program to its end: its status and what it printed.
    private static func run(_ path: String, _ arguments: [String], environment: [String: String], asPostgres: Bool) async throws -> (Int32, String) {
        let process = Process()
        if asPostgres, getuid() == 0 {
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
            process.arguments = ["-u", "postgres", "--", path] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
        }
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        // initdb must be able to enter its working directory as the postgres user.
        process.currentDirectoryURL = URL(fileURLWithPath: "/")
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = try await Self.onThread { String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }
}
