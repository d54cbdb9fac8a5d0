import InertLog
import InertText
import Logging
@testable import parley_server
import SocketIOTesting
import Testing

/// parley-server's log lines quote what clients sent (reasons, namespaces): read in a
/// terminal, they must not drive it.
@Suite struct ServerLogTests {
    @Test func controlsBidiAndSeparatorsAreMadeVisible() throws {
        let captured = CapturedLog()
        let logger = Logger(label: "test") { _ in InertLogHandler(inner: captured) }
        logger.notice(
            "closing a client: \("\u{1B}[2J")",
            metadata: [
                "namespace": "/\u{9B}31m\u{202E}evil\u{2028}next",
                "nested": ["a\nb", ["key\u{7}": "\u{1B}"]],
                "plain": "héllo 😀",
            ]
        )
        let line = try #require(captured.lines.first)
        #expect(!line.unicodeScalars.contains { InertText.isActive($0) })
        #expect(line.contains(#"\u{1b}[2J"#))
        #expect(line.contains(#"/\u{9b}31m\u{202e}evil\u{2028}next"#))
        #expect(line.contains(#"u{a}b"#) && line.contains(#"u{7}"#))
        #expect(line.contains("héllo 😀"), "what draws as itself is left alone")

        // A client cannot forge an escape: its backslash is doubled. U+061C is a bidi mark too.
        logger.notice("reason", metadata: ["why": #"looks \u{1b} escaped"#, "mark": "a\u{061C}b"])
        let second = try #require(captured.lines.last)
        #expect(second.contains(#"looks \\u{1b} escaped"#))
        #expect(second.contains(#"a\u{61c}b"#))
    }
}
