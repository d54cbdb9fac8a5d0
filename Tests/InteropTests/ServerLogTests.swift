import Logging
@testable import parley_server
import Synchronization
import Testing

/// parley-server's log lines quote what clients sent (reasons, namespaces): read in a
/// terminal, they must not drive it.
@Suite struct ServerLogTests {
    final class Captured: LogHandler, Sendable {
        let lines = Mutex<[String]>([])
        func log(event: LogEvent) {
            let metadata = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            lines.withLock { $0.append("\(event.message) \(metadata)") }
        }
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { nil }
            set {}
        }
        var metadata: Logger.Metadata {
            get { [:] }
            set {}
        }
        var logLevel: Logger.Level {
            get { .trace }
            set {}
        }
    }

    @Test func controlsBidiAndSeparatorsAreMadeVisible() throws {
        let captured = Captured()
        let logger = Logger(label: "test") { _ in InertLogHandler(inner: captured) }
        logger.notice(
            "closing a client: \("\u{1B}[2J")",
            metadata: [
                "namespace": "/\u{9B}31m\u{202E}evil\u{2028}next",
                "nested": ["a\nb", ["key\u{7}": "\u{1B}"]],
                "plain": "héllo 😀",
            ]
        )
        let line = try #require(captured.lines.withLock { $0.first })
        #expect(!line.unicodeScalars.contains { InertLogHandler.isActive($0) })
        #expect(line.contains(#"\u{1b}[2J"#))
        #expect(line.contains(#"/\u{9b}31m\u{202e}evil\u{2028}next"#))
        #expect(line.contains(#"u{a}b"#) && line.contains(#"u{7}"#))
        #expect(line.contains("héllo 😀"), "what draws as itself is left alone")
    }
}
