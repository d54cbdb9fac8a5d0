import Foundation
import SocketIOTesting
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `parley` refuses, at start and with the path named, a log file or config directory that
/// is not safely the user's; `--no-strict-modes` relaxes the directory check as ssh's
/// StrictModes does.
@Suite(.timeLimit(.minutes(1))) struct PrivateFilesInteropTests {
    func parley(_ arguments: [String]) async throws -> (status: Int32, text: String) {
        try await runToEnd(HeadlessProcess.executable.path, ["--headless", "--url", "http://127.0.0.1:9", "--no-history"] + arguments)
    }

    @Test func aLogFileThatIsALinkIsRefusedAndNotWrittenThrough() async throws {
        let scratch = scratchDirectory()
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let log = scratch + "/parley.log"
        let target = scratch + "/elsewhere"
        try FileManager.default.createSymbolicLink(atPath: log, withDestinationPath: target)
        let run = try await parley(["--config-dir", scratch + "/config", "--log-file", log, "--username", "alice"])
        #expect(run.status != 0)
        #expect(run.text.contains(log) && run.text.contains("symbolic link"), "\(run.text)")
        #expect(!FileManager.default.fileExists(atPath: target))
    }

    @Test func aLogFileOpenToOthersIsMadePrivate() async throws {
        let server = try await FakeSocketIOServer.start()
        let scratch = scratchDirectory()
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let log = scratch + "/parley.log"
        #expect(FileManager.default.createFile(atPath: log, contents: Data(), attributes: [.posixPermissions: 0o644]))
        let process = try HeadlessProcess(url: server.url, configDirectory: scratch + "/config", username: "alice", logFile: log)
        _ = try await server.nextConnection()
        #expect(mode(log) == 0o600)
        process.closeInput()
        _ = await process.waitForExit()
        await server.stop()
    }

    @Test func aConfigDirectoryOthersCanWriteIsRefusedUnlessStrictModesAreOff() async throws {
        let scratch = scratchDirectory()
        let config = scratch + "/config"
        try FileManager.default.createDirectory(atPath: config, withIntermediateDirectories: true)
        #expect(chmod(scratch, 0o700) == 0 && chmod(config, 0o777) == 0)
        let refused = try await parley(["--config-dir", config, "--log-file", scratch + "/parley.log", "--username", "alice"])
        #expect(refused.status != 0)
        #expect(refused.text.contains(config) && refused.text.contains("other users can write to it"), "\(refused.text)")

        let server = try await FakeSocketIOServer.start()
        let relaxed = try HeadlessProcess(
            url: server.url, configDirectory: config, username: "alice", logFile: scratch + "/parley.log", extraArguments: ["--no-strict-modes"]
        )
        let warning = try await relaxed.next("warning")
        #expect(warning["message"]?.stringValue?.contains("--no-strict-modes") == true)
        _ = try await server.nextConnection()
        relaxed.closeInput()
        _ = await relaxed.waitForExit()
        await server.stop()
    }
}

private func mode(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int) ?? -1
}
