import InertText
import JSON

extension Fuzz {
    /// `JSONValue(parsingUTF8:)` on the bytes. For a value: its serialization parses back to
    /// the same value (numbers as the serializer writes them, see `asSerialized`), and
    /// serializing that again gives the same bytes. For valid UTF-8, `JSONValue(parsing:)`
    /// on the string agrees with the byte parser (same value or same error).
    public static func json(_ input: UnsafeRawBufferPointer) {
        let bytes = input.bytes
        let parsed = Result { () throws(JSONError) in try JSONValue(parsingUTF8: bytes) }

        if let text = String(validating: bytes, as: UTF8.self) {
            let fromString = Result { () throws(JSONError) in try JSONValue(parsing: text) }
            require(fromString == parsed, "parsing a String and its UTF-8 bytes disagree: \(fromString) vs \(parsed)")
        }

        guard case .success(let value) = parsed else { return }
        checkSerializationRoundTrip(value)
    }

    /// serialize → parse → serialize: the first text parses, to the value as written, and
    /// the second text is byte for byte the first. The inert form (headless output) carries
    /// no active character and parses to the same value.
    static func checkSerializationRoundTrip(_ value: JSONValue) {
        let first = value.serialized()
        let reparsed: JSONValue
        do {
            reparsed = try JSONValue(parsing: first)
        } catch {
            fatalError("fuzz invariant violated: serialized JSON does not parse (\(error)): \(first.debugDescription)")
        }
        require(
            reparsed == value.asSerialized,
            "serialized JSON parses to another value: \(first.debugDescription) → \(reparsed.serialized().debugDescription)"
        )
        let second = reparsed.serialized()
        require(
            second.bytes == first.bytes,
            "serialization is not stable: \(first.debugDescription) then \(second.debugDescription)"
        )
        // What headless output prints: nothing a terminal could act on, and the same value.
        let inert = value.serializedInert()
        require(!inert.unicodeScalars.contains(where: InertText.isActive), "inert JSON carries an active character: \(inert.debugDescription)")
        require(
            (try? JSONValue(parsing: inert)) == value.asSerialized,
            "inert JSON parses to another value: \(inert.debugDescription)"
        )
    }
}

extension JSONValue {
    /// The value that parsing this value's serialization gives, as `serialized()` documents
    /// it: non-finite numbers are written as `null`, integral doubles below 1e15 without a
    /// fraction (so they parse back as `.int`, as JavaScript has one number type).
    /// `binary` stays (the Socket.IO encoder turns it into an attachment).
    var asSerialized: JSONValue {
        switch self {
        case .double(let d) where !d.isFinite: return .null
        case .double(let d) where d.rounded() == d && abs(d) < 1e15: return .int(Int(d))
        case .array(let items): return .array(items.map(\.asSerialized))
        case .object(let members):
            return .object(JSONObject(members.lazy.map { (key: $0.key, value: $0.value.asSerialized) }))
        default: return self
        }
    }
}
