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

    /// A hard link to another file of the user's, where a sticky shared directory lets a
    /// stranger make one: not a symbolic link, a regular file, the user's own, so only its
    /// link count gives it away. It is refused, and not written to.
    @Test func aSessionFileWithAnotherHardLinkIsRefused() throws {
        let store = try storeWithAnotherServersSession()
        let other = store.directory + "/precious"
        #expect(FileManager.default.createFile(atPath: other, contents: Data("keep me\n".utf8), attributes: [.posixPermissions: 0o644]))
        try FileManager.default.removeItem(atPath: store.filePath)
        #expect(link(other, store.filePath) == 0)
        expectRefused(store, because: "hard links")
        #expect(try String(contentsOfFile: other, encoding: .utf8) == "keep me\n")
        #expect(mode(other) == 0o644)
    }

    /// Someone else's lock is not waited on for ever (the client's network work waits on it).
    @Test func aLockHeldByAnotherProcessIsRefusedAfterAWhile() throws {
        let store = try storeWithAnotherServersSession()
        let fd = open(store.lockPath, O_RDWR)
        #expect(fd >= 0 && flock(fd, LOCK_EX) == 0)
        defer { close(fd) }
        expectRefused(store, file: store.lockPath, because: "locked by another process")
    }

    /// A directory on the way that another user can write (or owns) could send the path
    /// anywhere: the config directory under it is refused, naming the culprit.
    @Test func aDirectoryOnTheWayThatOthersCanWriteIsRefused() throws {
        let top = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: top + "/open", withIntermediateDirectories: true)
        #expect(chmod(top + "/open", 0o777) == 0)
        #expect {
            try SessionStore(directory: top + "/open/parley").prepare()
        } throws: { error in
            "\(error)".contains(top + "/open, on the way to it, can be written by other users")
        }
    }

    @Test(.enabled(if: geteuid() == 0, "giving a link to another user needs root"))
    func aLinkOnTheWayThatAnotherUserOwnsIsRefused() throws {
        let top = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: top + "/real", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: top + "/via", withDestinationPath: top + "/real")
        #expect(lchown(top + "/via", 65534, 65534) == 0)
        #expect {
            try SessionStore(directory: top + "/via/parley").prepare()
        } throws: { error in
            "\(error)".contains(top + "/via, on the way to it, belongs to another user (uid 65534)")
        }
        #expect(!FileManager.default.fileExists(atPath: top + "/real/parley"))
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
