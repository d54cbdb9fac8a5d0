public import Chat
public import ChatClient
import Foundation
import Synchronization

/// Headless mode's view of the chat client: every event, with the state right after it,
/// becomes output lines at once (under the client's lock, so each line says what was true
/// then), queued in order for the runner to write.
public final class HeadlessProjection: Sendable {
    enum Item: Sendable {
        case line(String)
        /// The client has no identity (any more): the runner decides what to do.
        case needsUsername(reason: String?)
    }

    let items: AsyncStream<Item>
    private let continuation: AsyncStream<Item>.Continuation

    public init() {
        (items, continuation) = AsyncStream.makeStream(of: Item.self)
    }

    /// The chat client's observer.
    public func observe(_ event: ChatEvent, in chat: ChatState) {
        for line in HeadlessOutput.lines(for: event, in: chat) { continuation.yield(.line(line)) }
        if case .loggedOut(let reason) = event { continuation.yield(.needsUsername(reason: reason)) }
    }

    /// No more events: the client is closed.
    func finish() { continuation.finish() }
}

/// `parley --headless`: commands from standard input, one JSON object per line;
/// every change to standard output, one JSON object per line. For scripts, bots and tests.
public actor HeadlessRunner {
    private let client: ChatClient
    private let projection: HeadlessProjection
    private let username: String?
    private let write: @Sendable (String) -> Void
    private var finished: CheckedContinuation<Int32, Never>?
    private var exitCode: Int32?
    /// A refusal is answered by logging in with the given name once; a second one ends the run.
    private var retriedAfterRefusal = false
    /// How long standard input's end may wait for queued messages to go out.
    private let flushGrace: Duration

    /// - Parameters:
    ///   - client: a client whose observer is `projection`'s.
    ///   - username: `--username`: the name for a first login (and after a refusal).
    ///   - write: where output lines go (standard output, flushed per line).
    public init(
        client: ChatClient,
        projection: HeadlessProjection,
        username: String?,
        flushGrace: Duration = .seconds(10),
        write: @escaping @Sendable (String) -> Void
    ) {
        self.client = client
        self.projection = projection
        self.username = username
        self.flushGrace = flushGrace
        self.write = write
    }

    /// Runs until `quit`, the end of `lines`, or a fatal refusal; returns the exit code.
    public func run(lines: AsyncStream<String>) async -> Int32 {
        let updates = Task { await self.forwardUpdates() }
        let commands = Task { await self.readCommands(lines) }
        do {
            try await client.start(username: username)
        } catch {
            write(HeadlessOutput.error("invalid --username: \(error)"))
            end(2)
        }
        let code = await withCheckedContinuation { continuation in
            if let exitCode {
                continuation.resume(returning: exitCode)
            } else {
                finished = continuation
            }
        }
        commands.cancel()
        await client.close()
        projection.finish()
        await updates.value
        return code
    }

    private func end(_ code: Int32) {
        guard exitCode == nil else { return }
        exitCode = code
        finished?.resume(returning: code)
        finished = nil
    }

    private func forwardUpdates() async {
        for await item in projection.items {
            switch item {
            case .line(let line): write(line)
            case .needsUsername(let reason): await needsUsername(reason: reason)
            }
        }
    }

    /// No usable session. With `--username`: log in with it (after a refusal, once).
    /// Without: an explicit logout ends the run cleanly; anything else is an error.
    private func needsUsername(reason: String?) async {
        guard exitCode == nil else { return }
        let mayLogIn = username != nil && (reason == nil || !retriedAfterRefusal)
        if let username, mayLogIn {
            if reason != nil { retriedAfterRefusal = true }
            do {
                try await client.login(username: username)
            } catch {
                write(HeadlessOutput.error("invalid --username: \(error)"))
                end(2)
            }
        } else if reason == nil, loggedOut {
            end(0)
        } else if let reason {
            write(HeadlessOutput.error("the server refused the login: \(reason)"))
            end(2)
        } else {
            write(HeadlessOutput.error("no stored session for this server: give --username"))
            end(2)
        }
    }

    private var loggedOut = false

    private func readCommands(_ lines: AsyncStream<String>) async {
        for await line in lines {
            guard exitCode == nil else { return }
            if line.allSatisfy(\.isWhitespace) { continue }
            let command: HeadlessCommand
            do {
                command = try HeadlessCommand(line: line)
            } catch {
                write(HeadlessOutput.error("bad command: \(error)"))
                continue
            }
            switch command {
            case .send(let to, let content):
                do {
                    try await client.send(content, to: to)
                } catch {
                    write(HeadlessOutput.error("not sent: \(error)"))
                }
            case .logout(let deleteHistory):
                loggedOut = true
                await client.logout(deleteHistory: deleteHistory)
            case .quit:
                if client.hasQueuedMessages {
                    write(HeadlessOutput.error("quit while offline: queued messages were not sent"))
                    end(1)
                } else {
                    end(0)
                }
                return
            }
        }
        guard !Task.isCancelled, exitCode == nil else { return }
        await endOfInput()
    }

    /// Standard input ended: flush what is queued (waiting a little for the connection), then exit.
    private func endOfInput() async {
        if !(await client.waitUntilQueueFlushed(timeout: flushGrace)) {
            write(HeadlessOutput.error("input ended while offline: queued messages were not sent"))
            end(1)
        } else {
            end(0)
        }
    }
}

/// Lines of standard input, read on a thread of their own (the read blocks).
public func standardInputLines() -> AsyncStream<String> {
    let (stream, continuation) = AsyncStream.makeStream(of: String.self)
    Thread {
        while let line = readLine(strippingNewline: true) { continuation.yield(line) }
        continuation.finish()
    }.start()
    return stream
}
