public import EngineIO
public import Foundation
import JSON

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

    public var description: String {
        switch self {
        case .unwritable(let path, let reason):
            return "cannot keep the session in \(path): \(reason) (choose another directory with --config-dir)"
        }
    }
}

/// `sessions.json` in the config directory: one session per server, so one
/// person can use several servers, and two config directories are two people.
///
/// The directory is 0700 and the file 0600; every write goes to a temporary
/// file that is fsynced and renamed over the old one, under a lock, so a crash
/// never leaves a truncated file and two clients sharing the directory never
/// lose each other's sessions.
public struct SessionStore: Sendable {
    public let directory: String
    public var filePath: String { directory + "/sessions.json" }
    private var lockPath: String { directory + "/sessions.lock" }

    public init(directory: String) {
        self.directory = directory
    }

    /// `$XDG_CONFIG_HOME/parley`, or `$HOME/.config/parley` when the variable is unset or empty
    /// (XDG base directory spec).
    public static func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let xdg = environment["XDG_CONFIG_HOME"], !xdg.isEmpty, xdg.hasPrefix("/") { return xdg + "/parley" }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + "/.config/parley"
    }

    /// Creates the directory (0700) or tightens it, and checks that a file can be written there.
    /// Returns warnings to show the person.
    public func prepare() throws(SessionStoreError) -> [String] {
        var warnings: [String] = []
        do {
            try makeDirectory(directory)
        } catch {
            throw .unwritable(path: directory, reason: error.reason)
        }
        var info = stat()
        if stat(directory, &info) == 0, info.st_mode & 0o077 != 0 {
            if chmod(directory, 0o700) == 0 {
                warnings.append("\(directory) was open to other users; its mode is now 0700")
            }
        }
        guard access(directory, W_OK | X_OK) == 0 else {
            throw .unwritable(path: directory, reason: String(cString: strerror(errno)))
        }
        return warnings
    }

    /// The session for a server, and warnings (a file open to others is tightened;
    /// a corrupt one is kept aside as `sessions.json.bad` and ignored).
    public func load(_ server: ServerKey) -> (session: StoredSession?, warnings: [String]) {
        let (sessions, warnings) = withLock { readAll() }
        return (sessions[server.value], warnings)
    }

    public func save(_ session: StoredSession, for server: ServerKey) throws(SessionStoreError) {
        try update { $0[server.value] = session }
    }

    public func remove(_ server: ServerKey) throws(SessionStoreError) {
        try update { $0[server.value] = nil }
    }

    // MARK: File handling

    private func update(_ change: (inout [String: StoredSession]) -> Void) throws(SessionStoreError) {
        let result: Result<Void, SessionStoreError> = withLock {
            var (sessions, _) = readAll()
            change(&sessions)
            do {
                try writeAtomically(Self.encode(sessions))
                return .success(())
            } catch {
                return .failure(.unwritable(path: filePath, reason: error.reason))
            }
        }
        try result.get()
    }

    /// Holds an exclusive lock on `sessions.lock` around `body` (best effort: without the
    /// lock file the atomic rename still keeps the file whole).
    private func withLock<T>(_ body: () -> T) -> T {
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return body() }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0, errno == EINTR {}
        defer { flock(fd, LOCK_UN) }
        return body()
    }

    private func readAll() -> ([String: StoredSession], [String]) {
        var warnings: [String] = []
        var info = stat()
        guard stat(filePath, &info) == 0 else { return ([:], []) }
        if info.st_mode & 0o077 != 0 {
            chmod(filePath, 0o600)
            warnings.append("\(filePath) was readable by other users; its mode is now 0600")
        }
        guard let data = FileManager.default.contents(atPath: filePath) else {
            warnings.append("cannot read \(filePath); starting without a stored session")
            return ([:], warnings)
        }
        do {
            return (try Self.decode(Array(data)), warnings)
        } catch {
            let aside = keepAside()
            warnings.append("\(filePath) is not a valid session file (\(error)); kept as \(aside), starting without a stored session")
            return ([:], warnings)
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
        rename(filePath, candidate)
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

    private func makeDirectory(_ path: String) throws(POSIXFailure) {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw POSIXFailure(ENOTDIR) }
            return
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != path, stat(parent, &info) != 0 {
            // Parents (e.g. ~/.config) get the usual 0755; only our own directory is private.
            try makeDirectory(parent, mode: 0o755)
        }
        guard mkdir(path, 0o700) == 0 || errno == EEXIST else { throw POSIXFailure() }
    }

    private func makeDirectory(_ path: String, mode: mode_t) throws(POSIXFailure) {
        var info = stat()
        if stat(path, &info) == 0 { return }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != path { try makeDirectory(parent, mode: mode) }
        guard mkdir(path, mode) == 0 || errno == EEXIST else { throw POSIXFailure() }
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
