import ChatClient
import Foundation
import PrivateFiles
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The session file, its lock and the log, tried as a careless or hostile local user would:
/// links, FIFOs, devices, files too large, directories open to others or someone else's.
/// A bad file is refused with its path named, never hangs the client, and never makes it
/// write over what the other servers' sessions are kept in.
@Suite struct PrivateFilesTests {
    /// A prepared store holding a session for `serverB`, so that losing it would show.
    func storeWithAnotherServersSession() throws -> SessionStore {
        let store = SessionStore(directory: temporaryDirectory())
        _ = try store.prepare()
        try store.save(StoredSession(sessionID: secret, userID: "ub", username: "bee"), for: serverB)
        return store
    }

    /// Replaces the session file with what `make` puts there, and checks the store refuses it
    /// (loads nothing, saves nothing, names the path) and leaves it as it was.
    func expectRefused(_ store: SessionStore, file: String? = nil, because reason: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let path = file ?? store.filePath
        let (session, warnings) = store.load(serverA)
        #expect(session == nil, sourceLocation: sourceLocation)
        #expect(warnings.contains { $0.contains(path) && $0.contains(reason) }, "\(warnings)", sourceLocation: sourceLocation)
        #expect(sourceLocation: sourceLocation) {
            try store.save(StoredSession(sessionID: "s", userID: "ua", username: "ay"), for: serverA)
        } throws: { error in
            "\(error)".contains(path) && "\(error)".contains(reason)
        }
    }

    @Test func aSessionFileThatIsALinkIsRefusedAndNotWrittenThrough() throws {
        let store = try storeWithAnotherServersSession()
        let elsewhere = temporaryDirectory()
        try FileManager.default.moveItem(atPath: store.filePath, toPath: elsewhere)
        let before = try Data(contentsOf: URL(fileURLWithPath: elsewhere))
        try FileManager.default.createSymbolicLink(atPath: store.filePath, withDestinationPath: elsewhere)
        expectRefused(store, because: "symbolic link")
        #expect(try Data(contentsOf: URL(fileURLWithPath: elsewhere)) == before)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: store.filePath) == elsewhere)
    }

    @Test func aSessionFileLinkedToDevZeroIsRefusedWithoutReadingForever() throws {
        let store = try storeWithAnotherServersSession()
        try FileManager.default.removeItem(atPath: store.filePath)
        try FileManager.default.createSymbolicLink(atPath: store.filePath, withDestinationPath: "/dev/zero")
        expectRefused(store, because: "symbolic link")
    }

    /// Opening a FIFO for reading blocks until a writer comes, unless it is opened
    /// non-blocking: the client must not hang on one.
    @Test func aSessionFileThatIsAFIFOIsRefusedWithoutHanging() throws {
        let store = try storeWithAnotherServersSession()
        try FileManager.default.removeItem(atPath: store.filePath)
        #expect(mkfifo(store.filePath, 0o600) == 0)
        expectRefused(store, because: "FIFO")
    }

    @Test(.enabled(if: geteuid() == 0, "creating a device node needs root"))
    func aSessionFileThatIsADeviceIsRefused() throws {
        let store = try storeWithAnotherServersSession()
        try FileManager.default.removeItem(atPath: store.filePath)
        #expect(mknod(store.filePath, S_IFCHR | 0o600, dev_t(1 << 8 | 5)) == 0)  // /dev/zero: major 1, minor 5
        expectRefused(store, because: "character device")
    }

    @Test func aSessionFileLargerThanAnyOfOursIsRefused() throws {
        let store = try storeWithAnotherServersSession()
        let huge = Data(repeating: 0x20, count: SessionStore.maxFileBytes + 1)
        try huge.write(to: URL(fileURLWithPath: store.filePath))
        expectRefused(store, because: "larger than")
        #expect(try Data(contentsOf: URL(fileURLWithPath: store.filePath)).count == huge.count)
    }

    @Test(.enabled(if: geteuid() == 0, "giving a file to another user needs root"))
    func aSessionFileOfAnotherUserIsRefused() throws {
        let store = try storeWithAnotherServersSession()
        #expect(chown(store.filePath, 65534, 65534) == 0)
        expectRefused(store, because: "another user")
    }

    /// The lock file as a link: the client used to create the file it pointed to.
    @Test func aLockFileThatIsALinkIsRefusedAndItsTargetNotCreated() throws {
        let store = try storeWithAnotherServersSession()
        let target = temporaryDirectory()
        try? FileManager.default.removeItem(atPath: store.lockPath)
        try FileManager.default.createSymbolicLink(atPath: store.lockPath, withDestinationPath: target)
        expectRefused(store, file: store.lockPath, because: "symbolic link")
        #expect(!FileManager.default.fileExists(atPath: target))
    }

    @Test func aConfigDirectoryOthersCanWriteIsRefusedUnlessRelaxed() throws {
        let directory = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        #expect(chmod(directory, 0o777) == 0)
        #expect {
            try SessionStore(directory: directory).prepare()
        } throws: { error in
            "\(error)".contains(directory) && "\(error)".contains("other users can write to it (mode 0777)")
        }
        #expect(mode(directory) == 0o777)  // refused, not silently "fixed"
        // As ssh's StrictModes no: used, with the warning (and its mode then tightened).
        let warnings = try SessionStore(directory: directory, modes: .relaxed).prepare()
        #expect(warnings.contains { $0.contains("other users can write to it") && $0.contains("--no-strict-modes") })
        #expect(mode(directory) == 0o700)
    }

    @Test(.enabled(if: geteuid() == 0, "giving a directory to another user needs root"))
    func aConfigDirectoryOfAnotherUserIsRefused() throws {
        let directory = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        #expect(chown(directory, 65534, 65534) == 0)
        #expect {
            try SessionStore(directory: directory).prepare()
        } throws: { error in
            "\(error)".contains(directory) && "\(error)".contains("belongs to another user (uid 65534)")
        }
    }

    /// /tmp is everyone's, with the sticky bit: a file of ours in it is still ours alone.
    @Test func aStickySharedDirectoryIsUsableAndLeftAsItIs() throws {
        let before = mode("/tmp")
        #expect(try PrivateFiles.prepareDirectory("/tmp").isEmpty)
        #expect(mode("/tmp") == before)
    }

    @Test func aFileOpenToOthersIsTightenedAndOneThatIsOursOnlyIsLeft() throws {
        let directory = temporaryDirectory()
        _ = try PrivateFiles.prepareDirectory(directory)
        let path = directory + "/parley.log"
        #expect(FileManager.default.createFile(atPath: path, contents: Data("old\n".utf8), attributes: [.posixPermissions: 0o644]))
        let opened = try #require(try PrivateFiles.openFile(path, flags: O_WRONLY | O_APPEND, create: true))
        close(opened.fd)
        #expect(opened.warnings == ["\(path) was open to other users; its mode is now 0600"])
        #expect(mode(path) == 0o600)
        let again = try #require(try PrivateFiles.openFile(path, flags: O_WRONLY | O_APPEND, create: true))
        close(again.fd)
        #expect(again.warnings.isEmpty)
    }
}
