#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The client's own files (the session file and its lock, the log), opened as a careful Unix
/// program opens them: never through a symbolic link (`O_NOFOLLOW`), regular files only (a
/// FIFO or a device is refused, and never blocks the open: `O_NONBLOCK`), owned by the user,
/// mode 0600, read with a size cap; in a directory that is the user's and that nobody else
/// can write (ssh's StrictModes for `~/.ssh`). What is refused says which path and why.
public enum PrivateFiles {
    /// Why a path is not used.
    public struct Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        public let path: String
        public let reason: String

        public init(path: String, reason: String) {
            self.path = path
            self.reason = reason
        }

        public var description: String { "\(path): \(reason)" }
    }

    /// How strict to be about directories. `strict` (the default) refuses a directory that is
    /// someone else's or that another user can write; `relaxed` (`--no-strict-modes`, as
    /// ssh's `StrictModes no`) only warns. Files are always checked.
    public enum Modes: Sendable {
        case strict
        case relaxed
    }

    /// Makes sure `path` is a private directory: created 0700 (parents 0755) when missing;
    /// refused when it is not a directory, is another user's, or another user can write it
    /// (a sticky directory of root's or ours, such as /tmp, is allowed: files in it are
    /// still checked one by one); tightened to 0700, with a warning, when others can only
    /// read it. Returns the warnings.
    public static func prepareDirectory(_ path: String, modes: Modes = .strict) throws(Refusal) -> [String] {
        var warnings: [String] = []
        // Every directory and link on the way there, as ssh's secure_path checks them (before
        // anything is created): one that another user owns or can write could have the path
        // lead elsewhere.
        if let unsafe = unsafeAncestor(of: path) {
            switch modes {
            case .strict: throw Refusal(path: path, reason: "refused: \(unsafe); choose another directory")
            case .relaxed: warnings.append("\(path): \(unsafe) (used anyway: --no-strict-modes)")
            }
        }
        var info = stat()
        if stat(path, &info) != 0 {
            guard errno == ENOENT else { throw Refusal(path: path, reason: errorText()) }
            try makeDirectories(path)
            guard stat(path, &info) == 0 else { throw Refusal(path: path, reason: errorText()) }
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw Refusal(path: path, reason: "not a directory") }
        var problems: [String] = []
        // A shared directory with the sticky bit (/tmp) is safe for files of ours: nobody else
        // may rename or remove them, and each is checked to be ours when opened.
        let sticky = info.st_mode & S_ISVTX != 0 && (info.st_uid == 0 || info.st_uid == geteuid())
        if info.st_uid != geteuid() && !sticky { problems.append("it belongs to another user (uid \(info.st_uid))") }
        if info.st_mode & 0o022 != 0 && !sticky { problems.append("other users can write to it (mode \(octal(info.st_mode & 0o7777)))") }
        if !problems.isEmpty {
            let what = problems.joined(separator: " and ")
            switch modes {
            case .strict:
                throw Refusal(
                    path: path,
                    reason: "refused: \(what); make it yours and private (chmod 700), or choose another directory"
                )
            case .relaxed:
                warnings.append("\(path): \(what) (used anyway: --no-strict-modes)")
            }
        }
        if info.st_uid == geteuid(), !sticky, info.st_mode & 0o077 != 0, chmod(path, 0o700) == 0 {
            warnings.append("\(path) was open to other users; its mode is now 0700")
        }
        guard access(path, W_OK | X_OK) == 0 else { throw Refusal(path: path, reason: errorText()) }
        return warnings
    }

    /// The first directory or link on the way to `path` (the absolute path as given, then
    /// what links point to) that is neither root's nor ours, or that others can write without
    /// the sticky bit; nil when the whole way is safe.
    static func unsafeAncestor(of path: String) -> String? {
        var absolute = path
        if !absolute.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            guard getcwd(&buffer, buffer.count) != nil else { return "the current directory cannot be read" }
            absolute = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/" + path
        }
        var prefixes: [String] = []
        var current = ""
        for component in absolute.split(separator: "/", omittingEmptySubsequences: true).dropLast() {
            current += "/" + component
            prefixes.append(current)
        }
        for prefix in ["/"] + prefixes {
            var info = stat()
            guard lstat(prefix, &info) == 0 else { continue }
            let owner = info.st_uid
            if owner != 0 && owner != geteuid() { return "\(prefix), on the way to it, belongs to another user (uid \(owner))" }
            let isLink = info.st_mode & S_IFMT == S_IFLNK
            if !isLink, info.st_mode & 0o022 != 0, info.st_mode & S_ISVTX == 0 {
                return "\(prefix), on the way to it, can be written by other users (mode \(octal(info.st_mode & 0o7777)))"
            }
        }
        // Where links lead, checked the same way (once: the resolved path has no link).
        if let resolved = realpath(absolute, nil) {
            defer { free(resolved) }
            let real = String(cString: resolved)
            if real != absolute { return unsafeAncestor(of: real) }
        }
        return nil
    }

    /// Opens a file of ours: never through a link, regular files only, ours, and 0600 (a
    /// file open to others is tightened, with a warning). A file with more than one link
    /// is refused too: someone may have linked another file of ours under this name. `create` makes it (0600) when
    /// missing; without it a missing file is `nil`.
    public static func openFile(_ path: String, flags: Int32, create: Bool) throws(Refusal) -> (fd: Int32, warnings: [String])? {
        let fd = open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | (create ? O_CREAT : 0), 0o600)
        guard fd >= 0 else {
            switch errno {
            case ENOENT where !create: return nil
            case ELOOP: throw Refusal(path: path, reason: "a symbolic link; refused (a file of ours is never opened through one)")
            case ENXIO: throw Refusal(path: path, reason: "not a regular file (a socket or FIFO with no writer); refused")
            default: throw Refusal(path: path, reason: errorText())
            }
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = errorText()
            close(fd)
            throw Refusal(path: path, reason: reason)
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw Refusal(path: path, reason: "not a regular file (\(kind(info.st_mode))); refused")
        }
        guard info.st_uid == geteuid() else {
            close(fd)
            throw Refusal(path: path, reason: "it belongs to another user (uid \(info.st_uid)); refused")
        }
        guard info.st_nlink == 1 else {
            close(fd)
            throw Refusal(path: path, reason: "it has \(info.st_nlink) hard links (another file may be linked here); refused")
        }
        var warnings: [String] = []
        if info.st_mode & 0o077 != 0, fchmod(fd, 0o600) == 0 {
            warnings.append("\(path) was open to other users; its mode is now 0600")
        }
        // Reads and writes block as usual from here (a regular file never would anyway).
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return (fd, warnings)
    }

    /// The whole of a file of ours, at most `maxBytes` (more is refused: nothing of ours is
    /// that large), or nil when there is none.
    public static func readFile(_ path: String, maxBytes: Int) throws(Refusal) -> (bytes: [UInt8], warnings: [String])? {
        guard let (fd, warnings) = try openFile(path, flags: O_RDONLY, create: false) else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n >= 0 else { throw Refusal(path: path, reason: errorText()) }
            if n == 0 { return (bytes, warnings) }
            guard bytes.count + n <= maxBytes else {
                throw Refusal(path: path, reason: "larger than \(maxBytes) bytes; refused")
            }
            bytes += chunk[0..<n]
        }
    }

    // MARK: Helpers

    private static func makeDirectories(_ path: String) throws(Refusal) {
        let parent = parentOf(path)
        var info = stat()
        if !parent.isEmpty, parent != path, stat(parent, &info) != 0 {
            // Parents (e.g. ~/.config) get the usual 0755; only our own directory is private.
            try makeParents(parent)
        }
        guard mkdir(path, 0o700) == 0 || errno == EEXIST else { throw Refusal(path: path, reason: errorText()) }
    }

    private static func makeParents(_ path: String) throws(Refusal) {
        var info = stat()
        if stat(path, &info) == 0 { return }
        let parent = parentOf(path)
        if !parent.isEmpty, parent != path { try makeParents(parent) }
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else { throw Refusal(path: path, reason: errorText()) }
    }

    private static func parentOf(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    private static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFDIR: return "a directory"
        case S_IFSOCK: return "a socket"
        default: return "not a plain file"
        }
    }

    private static func octal(_ mode: mode_t) -> String { "0" + String(mode, radix: 8) }

    private static func errorText() -> String { String(cString: strerror(errno)) }
}
