import ChatSchema
import JSON

extension Fuzz {
    /// The bytes as JSON, given as event arguments (the value itself, the elements of an
    /// array, and none) to every `ServerPayload` and `ClientPayload` function: what they
    /// accept satisfies their documented rules and decodes again from its own `json`. The
    /// bytes as a string to `Username.validate`: a name it accepts is 3–32 characters,
    /// at most 128 bytes, trimmed, free of forbidden characters, and accepted again as is.
    public static func chatPayloads(_ input: UnsafeRawBufferPointer) {
        let bytes = input.bytes
        if case .success(let value) = Result(catching: { () throws(JSONError) in try JSONValue(parsingUTF8: bytes) }) {
            var argumentLists: [[JSONValue]] = [[], [value]]
            if let items = value.arrayValue { argumentLists.append(items) }
            for arguments in argumentLists { checkPayloads(arguments) }
        }
        checkUsername(String(decoding: bytes, as: UTF8.self))
    }

    static func checkPayloads(_ arguments: [JSONValue]) {
        if case .success(let session) = ServerPayload.session(arguments) {
            require(!session.sessionID.isEmpty && !session.userID.isEmpty, "session with an empty ID: \(arguments)")
            let json = session.json
            let again = ServerPayload.session([json])
            require(
                (try? again.get()).map { $0 == session } == true,
                "session \(session) does not decode from its own json \(json)"
            )
        }

        let (entries, problems) = ServerPayload.users(arguments)
        if let list = arguments.first?.arrayValue {
            require(
                entries.count + problems.count == list.count,
                "users: \(list.count) entries gave \(entries.count) users and \(problems.count) problems"
            )
        } else {
            require(entries.isEmpty && problems.count == 1, "users without a list gave \(entries) and \(problems)")
        }
        for entry in entries { checkUserEntry(entry) }
        if !entries.isEmpty {
            let again = ServerPayload.users([.array(entries.map(\.json))])
            require(again.entries == entries && again.problems.isEmpty, "users \(entries) do not decode from their json")
        }

        if case .success(let entry) = ServerPayload.userConnected(arguments) { checkUserEntry(entry) }

        if case .success(let userID) = ServerPayload.userDisconnected(arguments) {
            require(!userID.isEmpty, "user disconnected with an empty userID: \(arguments)")
        }

        if case .success(let message) = ServerPayload.privateMessage(arguments) { checkMessage(message) }

        if case .success(let outgoing) = ClientPayload.privateMessage(arguments) {
            require(!outgoing.content.isEmpty, "client private message with empty content: \(arguments)")
            let again = ClientPayload.privateMessage([outgoing.json])
            require(
                (try? again.get()) == outgoing,
                "client private message \(outgoing) does not decode from its own json \(outgoing.json): \(again)"
            )
        }
    }

    /// A name's skeleton (what lookalikes share) has nothing invisible in it, and a name that
    /// differs from it only by case and invisible characters has the same skeleton.
    static func checkSkeleton(_ name: String) {
        let skeleton = Username.skeleton(name)
        require(
            !skeleton.unicodeScalars.contains { $0.properties.isDefaultIgnorableCodePoint || $0.properties.generalCategory == .format },
            "skeleton of \(name.debugDescription) has an invisible character: \(skeleton.debugDescription)"
        )
        let disguised = "\u{200B}" + name.uppercased() + "\u{2060}"
        let again = Username.skeleton(disguised)
        // Uppercasing is not always undone by folding (ﬀ → FF → ff is; some are not): compare
        // the skeleton of the skeleton, which folding has settled.
        require(
            Username.skeleton(again) == Username.skeleton(Username.skeleton(name.uppercased())),
            "invisible characters change the skeleton of \(name.debugDescription)"
        )
    }

    /// An accepted user has a userID; its `json`, and the server's fragment form of it,
    /// decode to it again.
    static func checkUserEntry(_ entry: UserEntry) {
        require(!entry.userID.isEmpty, "a user entry with an empty userID: \(entry)")
        for message in entry.messages ?? [] { checkMessage(message) }
        let json = entry.json
        let again = ServerPayload.userConnected([json])
        require((try? again.get()) == entry, "user \(entry) does not decode from its own json \(json): \(again)")
        if let messages = entry.messages {
            // The server's `users` list: the same text, from messages serialized once.
            let fragment = entry.json(serializedMessages: messages.map { JSONFragment($0.json) })
            require(
                fragment.text == json.serialized(),
                "user \(entry): fragment \(fragment.text.debugDescription) is not the serializer's \(json.serialized().debugDescription)"
            )
        }
    }

    static func checkMessage(_ message: PrivateMessage) {
        require(!message.from.isEmpty && !message.to.isEmpty, "a private message without from or to: \(message)")
        let again = ServerPayload.privateMessage([message.json])
        require((try? again.get()) == message, "message \(message) does not decode from its own json: \(again)")
    }

    static func checkUsername(_ raw: String) {
        // Names are short; the skeleton's Unicode normalisation is dear: checked on those.
        if raw.utf8.count <= 64 { checkSkeleton(raw) }
        guard case .success(let name) = Username.validate(raw) else { return }
        let characters = name.count
        require(
            (Username.minimumLength...Username.maximumLength).contains(characters),
            "accepted username of \(characters) characters: \(name.debugDescription) from \(raw.debugDescription)"
        )
        require(
            name.utf8.count <= Username.maximumBytes,
            "accepted username of \(name.utf8.count) bytes: \(name.debugDescription)"
        )
        require(
            name.first?.isWhitespace == false && name.last?.isWhitespace == false,
            "accepted username with surrounding whitespace: \(name.debugDescription) from \(raw.debugDescription)"
        )
        require(!name.isBlank, "accepted blank username: \(name.debugDescription)")
        let forbidden = name.unicodeScalars.first {
            switch $0.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator, .privateUse, .unassigned, .surrogate: return true
            default: return false
            }
        }
        require(forbidden == nil, "accepted username with U+\(String(forbidden?.value ?? 0, radix: 16)): \(name.debugDescription)")
        // Both sides check: what the client accepted (and sends), the server accepts as is.
        let again = Username.validate(name)
        require(
            (try? again.get()).map { $0.bytes == name.bytes } == true,
            "username \(name.debugDescription) accepted, but validating it again gives \(again)"
        )
    }
}
