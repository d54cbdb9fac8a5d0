public import Logging
import Synchronization

/// A log handler that keeps every line (the message, then the metadata sorted by key) for a
/// test to read: what a server or client logs, and how often, is tested like its output.
public final class CapturedLog: LogHandler, Sendable {
    private let captured = Mutex<[String]>([])

    public init() {}

    /// A logger that writes here.
    public var logger: Logger { Logger(label: "test") { _ in self } }

    public var lines: [String] { captured.withLock { $0 } }

    public func lines(containing text: String) -> [String] { lines.filter { $0.contains(text) } }

    public func log(event: LogEvent) {
        let metadata = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        captured.withLock { $0.append(metadata.isEmpty ? "\(event.message)" : "\(event.message) \(metadata)") }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }

    public var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }

    public var logLevel: Logger.Level {
        get { .trace }
        set {}
    }
}
