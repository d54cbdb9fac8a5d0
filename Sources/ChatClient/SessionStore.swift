public import EngineIO
public import Foundation
import JSON
public import PrivateFiles

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which server a session belongs to: scheme, host, port and Engine.IO path.
public struct ServerKey: Sendable, Hashable, CustomStringConvertible {
    public let value: String
    public init(_ endpoint: EngineIOEndpoint) {
        value = "\(endpoint.scheme.rawValue)://\(endpoint.host.lowercased()):\(endpoint.port)\(endpoint.path)"
    }
    public var description: String { value }
}

/// A session the server gave us. `sessionID` is a bearer secret: it is never
/// printed, logged or put in any output; this type's descriptions leave it out.
public struct StoredSession: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public let sessionID: String
    public let userID: String
    public let username: String

    public init(sessionID: String, userID: String, username: String) {
        self.sessionID = sessionID
        self.userID = userID
        self.username = username
    }

    public var description: String { "session of \(username) (userID \(userID))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["userID": userID, "username": username]) }
}

public enum SessionStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    case unwritable(path: String, reason: String)
    /// A file or directory that is not safely ours (a link, a FIFO, someone else's, open to
    /// writers): nothing is read from it or written to it.
    case refused(PrivateFiles.Refusal)

    public var description: String {
        switch self {
        case .unwritable(let path, let reason):
            return "cannot keep the session in \(path): \(reason) (choose another directory with --config-dir)"
        case .refused(let refusal):
            return "cannot keep the session: \(refusal) (fix it, or choose another directory with --config-dir)"
        }
    }
}

/// `sessions.json` in the config directory: one session per server, so one
/// person can use several servers, and two config directories are two people.
///
/// The directory is 0700 and the file 0600; every write goes to a temporary
/// file that is fsynced and renamed over the old one, under a lock, so a crash
/// never leaves a truncated file and two clients sharing the directory never
/// lose each other's sessions. Files are opened as `PrivateFiles` opens them: a
/// link, a FIFO, a device, someone else's file or one over `maxFileBytes` is
/// refused (and never blocks), and while the file is refused nothing is written
/// over it, so no other server's session is lost.
public struct SessionStore: Sendable {
    public let directory: String
    public let modes: PrivateFiles.Modes
    public var filePath: String { directory + "/sessions.json" }
    public var lockPath: String { directory + "/sessions.lock" }
    /// A session is about 200 bytes: a megabyte is thousands of servers.
    public static let maxFileBytes = 1 << 20
    /// How long a save or load waits for another client's lock.
    static let lockPatienceMilliseconds = 3_000

    public init(directory: String, modes: PrivateFiles.Modes = .strict) {
        self.directory = directory
        self.modes = modes
    }

    /// `$XDG_CONFIG_HOME/parley`, or `$HOME/.config/parley` when the variable is unset or empty
    /// (XDG base directory spec).
    public static func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let xdg = environment["XDG_CONFIG_HOME"], !xdg.isEmpty, xdg.hasPrefix("/") { return xdg + "/parley" }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + "/.config/parley"
    }

    /// Creates the directory (0700) or tightens it, and checks that a file can be written there;
    /// refuses a directory that is someone else's or that others can write (`modes`).
    /// Returns warnings to show the person.
    public func prepare() throws(SessionStoreError) -> [String] {
        do {
            return try PrivateFiles.prepareDirectory(directory, modes: modes)
        } catch {
            throw .refused(error)
        }
    }

    /// The session for a server, and warnings (a file open to others is tightened;
    /// a corrupt one is kept aside as `sessions.json.bad` and ignored; a refused one is
    /// left as it is, and said so).
    public func load(_ server: ServerKey) -> (session: StoredSession?, warnings: [String]) {
        switch withLock({ readAll() }) {
        case .success(.success(let (sessions, warnings))):
            return (sessions[server.value], warnings)
        case .success(.failure(let refusal)), .failure(let refusal):
            return (nil, ["\(refusal); starting without a stored session"])
        }
    }

    public func save(_ session: StoredSession, for server: ServerKey) throws(SessionStoreError) {
        try update { $0[server.value] = session }
    }

    public func remove(_ server: ServerKey) throws(SessionStoreError) {
        try update { $0[server.value] = nil }
    }

    // MARK: File handling

    private func update(_ change: (inout [String: StoredSession]) -> Void) throws(SessionStoreError) {
        let result: Result<Void, SessionStoreError> = withLock { () -> Result<Void, SessionStoreError> in
            var sessions: [String: StoredSession]
            switch readAll() {
            case .success(let (stored, _)): sessions = stored
            // A file that is refused is not written over: the other servers' sessions may be in it.
            case .failure(let refusal): return .failure(.refused(refusal))
            }
            change(&sessions)
            do {
                try writeAtomically(Self.encode(sessions))
                return .success(())
            } catch {
                return .failure(.unwritable(path: filePath, reason: error.reason))
            }
        }.mapError(SessionStoreError.refused).flatMap { $0 }
        try result.get()
    }

    /// Holds an exclusive lock on `sessions.lock` around `body`. A lock file that is not
    /// safely ours (a link, a FIFO, someone else's) is refused, and nothing is done.
    private func withLock<T>(_ body: () -> T) -> Result<T, PrivateFiles.Refusal> {
        let fd: Int32
        do {
            guard let (opened, _) = try PrivateFiles.openFile(lockPath, flags: O_RDWR, create: true) else {
                return .failure(PrivateFiles.Refusal(path: lockPath, reason: "could not be created"))
            }
            fd = opened
        } catch {
            return .failure(error)
        }
        defer { close(fd) }
        // Another client of this directory holds it for milliseconds: wait a little for it,
        // never for ever (a lock held by someone else for long is refused, not waited on).
        var waited = 0
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR, waited < Self.lockPatienceMilliseconds else {
                return .failure(PrivateFiles.Refusal(path: lockPath, reason: "locked by another process for more than \(Self.lockPatienceMilliseconds) ms"))
            }
            usleep(5_000)
            waited += 5
        }
        defer { flock(fd, LOCK_UN) }
        return .success(body())
    }

    /// Every stored session and the warnings about the file; a refusal when the file is not
    /// safely ours.
    private func readAll() -> Result<([String: StoredSession], [String]), PrivateFiles.Refusal> {
        let read: (bytes: [UInt8], warnings: [String])?
        do {
            read = try PrivateFiles.readFile(filePath, maxBytes: Self.maxFileBytes)
        } catch {
            return .failure(error)
        }
        guard let (bytes, warnings) = read else { return .success(([:], [])) }
        do {
            return .success((try Self.decode(bytes), warnings))
        } catch {
            let aside = keepAside()
            return .success((
                [:],
                warnings + ["\(filePath) is not a valid session file (\(error)); kept as \(aside), starting without a stored session"]
            ))
        }
    }

    /// Renames a corrupt file out of the way without overwriting an earlier one.
    private func keepAside() -> String {
        var candidate = filePath + ".bad"
        var n = 2
        while access(candidate, F_OK) == 0 {
            candidate = filePath + ".bad.\(n)"
            n += 1
        }
        guard rename(filePath, candidate) == 0 else { return "nowhere (\(String(cString: strerror(errno))))" }
        return candidate
    }

    private func writeAtomically(_ bytes: [UInt8]) throws(POSIXFailure) {
        let temporary = "\(directory)/.sessions.json.\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw POSIXFailure() }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBufferPointer { write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else {
                let failure = POSIXFailure()
                close(fd)
                unlink(temporary)
                throw failure
            }
            written += n
        }
        guard fsync(fd) == 0 else {
            let failure = POSIXFailure()
            close(fd)
            unlink(temporary)
            throw failure
        }
        close(fd)
        guard rename(temporary, filePath) == 0 else {
            let failure = POSIXFailure()
            unlink(temporary)
            throw failure
        }
        // Make the rename itself durable.
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            fsync(dir)
            close(dir)
        }
    }

    // MARK: Format

    static func encode(_ sessions: [String: StoredSession]) -> [UInt8] {
        var servers = JSONObject()
        for (key, session) in sessions {
            servers[key] = [
                "sessionID": .string(session.sessionID),
                "userID": .string(session.userID),
                "username": .string(session.username),
            ]
        }
        var out: [UInt8] = []
        JSONValue.object(["version": 1, "servers": .object(servers)]).write(to: &out)
        out.append(0x0A)
        return out
    }

    struct FormatError: Error, CustomStringConvertible {
        let description: String
    }

    static func decode(_ bytes: [UInt8]) throws -> [String: StoredSession] {
        let json = try JSONValue(parsingUTF8: bytes)
        guard json["version"]?.intValue == 1, let servers = json["servers"]?.objectValue else {
            throw FormatError(description: "expected version 1 with a servers object")
        }
        var sessions: [String: StoredSession] = [:]
        for (key, entry) in servers {
            guard let sessionID = entry["sessionID"]?.stringValue, let userID = entry["userID"]?.stringValue,
                let username = entry["username"]?.stringValue
            else { throw FormatError(description: "the entry for \(key) is incomplete") }
            sessions[key] = StoredSession(sessionID: sessionID, userID: userID, username: username)
        }
        return sessions
    }
}

/// errno at the point of failure.
struct POSIXFailure: Error {
    let code: Int32
    init(_ code: Int32 = errno) { self.code = code }
    var reason: String { String(cString: strerror(code)) }
}

extension Error {
    var reason: String { (self as? POSIXFailure)?.reason ?? "\(self)" }
}
