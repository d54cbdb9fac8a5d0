import Foundation
import JSON
import SocketIOTesting
import Testing

/// README.md's library example is `ReadmeExample.swift`, word for word: this
/// target compiles it, and the test below runs it against the fake server.
@Suite struct ReadmeExampleTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    @Test func theREADMEShowsTheCompiledExample() throws {
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let example = try String(
            contentsOf: Self.root.appendingPathComponent("Tests/SocketIOTests/ReadmeExample.swift"),
            encoding: .utf8
        )
        let block = try #require(
            readme.components(separatedBy: "```swift\n").dropFirst()
                .map { $0.components(separatedBy: "```").first ?? "" }
                .first { $0.contains("func sayHello") },
            "README.md has no ```swift block with the sayHello example"
        )
        #expect(block == example)
    }

    @Test(.timeLimit(.minutes(1))) func theExampleWorks() async throws {
        let server = try await FakeSocketIOServer.start()
        async let run: Void = sayHello(server: server.url, as: "alice", to: "u2")
        let connection = try await server.nextConnection()
        #expect(try await connection.expectConnect().auth == ["username": "alice"])
        connection.accept()
        let hello = try await connection.nextEvent()
        #expect(hello.name == "private message")
        #expect(hello.arguments == [["content": "hello!", "to": "u2"]])
        try await run
        await server.stop()
    }
}
