import Foundation
import Logging
import PrivateFiles
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Appends log lines to a private file (mode 0600), so nothing but the
/// program's own output reaches the terminal. The file is opened as `PrivateFiles` opens
/// files: never through a link, a regular file of ours only, tightened to 0600 if it was open
/// to others, in a directory of ours that nobody else can write.
struct FileLogHandler: LogHandler {
    final class Sink: Sendable {
        let fd: Int32
        /// What was fixed on the way (a file or directory open to others, tightened).
        let warnings: [String]
        private let lock = Mutex(())

        init(path: String, modes: PrivateFiles.Modes) throws(PrivateFiles.Refusal) {
            var warnings: [String] = []
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty {
                warnings += try PrivateFiles.prepareDirectory(directory, modes: modes)
            }
            guard let (fd, fixed) = try PrivateFiles.openFile(path, flags: O_WRONLY | O_APPEND, create: true) else {
                throw PrivateFiles.Refusal(path: path, reason: "could not be created")
            }
            self.fd = fd
            self.warnings = warnings + fixed
        }

        func write(_ line: String) {
            lock.withLock { _ in
                var bytes = Array(line.utf8)
                bytes.append(0x0A)
                _ = bytes.withUnsafeBufferPointer { Glibc.write(fd, $0.baseAddress, $0.count) }
            }
        }
    }

    let label: String
    let sink: Sink
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let extra = merged.isEmpty ? "" : " " + merged.sorted { $0.key < $1.key }.map { "\($0)=\($1)" }.joined(separator: " ")
        let time = Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true))
        sink.write("\(time) \(event.level) \(label): \(event.message)\(extra)")
    }
}

/// `$XDG_STATE_HOME/parley/parley.log`, or `$HOME/.local/state/parley/parley.log`.
func defaultLogFile(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
    if let state = environment["XDG_STATE_HOME"], state.hasPrefix("/") { return state + "/parley/parley.log" }
    let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
    return home + "/.local/state/parley/parley.log"
}
