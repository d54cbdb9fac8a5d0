import ChatClient
import EngineIO
import Foundation
import Testing

func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "parley-test-\(UUID().uuidString)"
    return path
}

func mode(_ path: String) -> Int {
    let attributes = try? FileManager.default.attributesOfItem(atPath: path)
    return (attributes?[.posixPermissions] as? Int) ?? -1
}

let serverA = ServerKey(try! EngineIOEndpoint(url: "http://localhost:3000"))
let serverB = ServerKey(try! EngineIOEndpoint(url: "https://chat.example.org"))
let secret = "SECRET-session-9f8e7d"

@Suite struct SessionStoreTests {
    @Test func theDefaultDirectoryFollowsXDG() {
        #expect(SessionStore.defaultDirectory(environment: ["XDG_CONFIG_HOME": "/x/cfg", "HOME": "/h"]) == "/x/cfg/parley")
        #expect(SessionStore.defaultDirectory(environment: ["XDG_CONFIG_HOME": "", "HOME": "/h"]) == "/h/.config/parley")
        #expect(SessionStore.defaultDirectory(environment: ["HOME": "/h"]) == "/h/.config/parley")
        // The spec ignores relative paths.
        #expect(SessionStore.defaultDirectory(environment: ["XDG_CONFIG_HOME": "rel", "HOME": "/h"]) == "/h/.config/parley")
    }

    @Test func keysNameSchemeHostPortAndPath() {
        #expect(serverA.description == "ws://localhost:3000/socket.io/")
        #expect(ServerKey(try! EngineIOEndpoint(url: "ws://LOCALHOST:3000")) == serverA)
        #expect(serverB.description == "wss://chat.example.org:443/socket.io/")
    }

    @Test func savesPrivatelyAndLoadsPerServer() throws {
        let dir = temporaryDirectory() + "/nested/parley"
        let store = SessionStore(directory: dir)
        #expect(try store.prepare().isEmpty)
        #expect(mode(dir) == 0o700)
        #expect(store.load(serverA).session == nil)

        try store.save(StoredSession(sessionID: secret, userID: "u1", username: "alice"), for: serverA)
        try store.save(StoredSession(sessionID: "other", userID: "u2", username: "alice2"), for: serverB)
        #expect(mode(store.filePath) == 0o600)
        #expect(store.load(serverA).session == StoredSession(sessionID: secret, userID: "u1", username: "alice"))
        #expect(store.load(serverB).session?.userID == "u2")

        try store.remove(serverA)
        #expect(store.load(serverA).session == nil)
        #expect(store.load(serverB).session != nil)
        // No temporary files left behind.
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".tmp") }
        #expect(files.isEmpty)
    }

    @Test func aFileOpenToOthersIsTightenedWithAWarning() throws {
        let store = SessionStore(directory: temporaryDirectory())
        _ = try store.prepare()
        try store.save(StoredSession(sessionID: secret, userID: "u", username: "n"), for: serverA)
        chmod(store.filePath, 0o644)
        chmod(store.directory, 0o755)
        let (session, warnings) = store.load(serverA)
        #expect(session != nil)
        #expect(mode(store.filePath) == 0o600)
        #expect(warnings.count == 1)
        #expect(warnings[0].contains("now 0600"))
        #expect(try store.prepare().first?.contains("now 0700") == true)
        #expect(mode(store.directory) == 0o700)
    }

    @Test(arguments: ["not json", "{\"version\":1}", "{\"version\":2,\"servers\":{}}", "{\"version\":1,\"servers\":{\"x\":{\"userID\":\"u\"}}}", ""])
    func aCorruptFileIsKeptAsideAndIgnored(content: String) throws {
        let store = SessionStore(directory: temporaryDirectory())
        _ = try store.prepare()
        _ = FileManager.default.createFile(atPath: store.filePath, contents: Data(content.utf8), attributes: [.posixPermissions: 0o600])
        let (session, warnings) = store.load(serverA)
        #expect(session == nil)
        #expect(warnings.count == 1)
        #expect(warnings[0].contains(store.filePath + ".bad"))
        #expect(FileManager.default.contents(atPath: store.filePath + ".bad") == Data(content.utf8))
        #expect(!FileManager.default.fileExists(atPath: store.filePath))
        // A second corrupt file does not overwrite the first one kept aside.
        _ = FileManager.default.createFile(atPath: store.filePath, contents: Data("again".utf8))
        #expect(store.load(serverA).warnings.contains { $0.contains(".bad.2") })
        // And the store works again.
        try store.save(StoredSession(sessionID: "s", userID: "u", username: "n"), for: serverA)
        #expect(store.load(serverA).session?.userID == "u")
    }

    @Test func anUnusableDirectoryIsAClearError() throws {
        let file = temporaryDirectory()
        _ = FileManager.default.createFile(atPath: file, contents: Data())
        let store = SessionStore(directory: file + "/parley")
        #expect {
            try store.prepare()
        } throws: { error in
            let message = "\(error)"
            return message.contains(file + "/parley") && message.contains("--config-dir")
        }
    }

    @Test func twoClientsWritingAtOnceLoseNothing() async throws {
        let dir = temporaryDirectory()
        _ = try SessionStore(directory: dir).prepare()
        let keys = (0..<20).map { ServerKey(try! EngineIOEndpoint(url: "http://host\($0):1")) }
        await withTaskGroup(of: Void.self) { group in
            for (i, key) in keys.enumerated() {
                group.addTask {
                    // A store value per task, as two processes would have.
                    let store = SessionStore(directory: dir)
                    for round in 0..<10 {
                        try? store.save(StoredSession(sessionID: "s\(i)-\(round)", userID: "u\(i)", username: "n\(i)"), for: key)
                    }
                }
            }
        }
        let store = SessionStore(directory: dir)
        for (i, key) in keys.enumerated() {
            let (session, warnings) = store.load(key)
            #expect(warnings.isEmpty)
            #expect(session?.sessionID == "s\(i)-9")
        }
    }

    @Test func theSessionIDNeverAppearsInDescriptions() {
        let session = StoredSession(sessionID: secret, userID: "u1", username: "alice")
        var dumped = ""
        dump(session, to: &dumped)
        for text in ["\(session)", String(reflecting: session), dumped, "\([session])", "\(Optional(session) as Any)"] {
            #expect(!text.contains(secret), "leaked in: \(text)")
            #expect(text.contains("u1"))
        }
    }
}
