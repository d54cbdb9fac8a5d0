/// JSON text that is valid by construction: made by the serializer from a value, or by
/// joining fragments into an array or an object. A large payload whose parts rarely change
/// (the chat server's `users` list: one entry per user, sent whole at every login) is then
/// assembled from parts serialized once, instead of serializing every part again or writing
/// JSON by hand. Kept as a `String`: joining strings copies bytes without validating them
/// again.
public struct JSONFragment: Sendable, Hashable {
    /// The compact JSON text.
    public let text: String

    public init(_ value: JSONValue) {
        text = value.serialized()
    }

    private init(text: String) { self.text = text }

    /// The length of the text in UTF-8 bytes.
    public var byteCount: Int { text.utf8.count }

    /// `[a,b,…]` from fragments.
    public static func array(_ items: some Collection<JSONFragment>) -> JSONFragment {
        var out = "["
        out.reserveCapacity(items.reduce(2) { $0 + $1.byteCount + 1 })
        for (i, item) in items.enumerated() {
            if i > 0 { out += "," }
            out += item.text
        }
        out += "]"
        return JSONFragment(text: out)
    }

    /// `{"key":value,…}` from fragments, the keys in the order the serializer writes them
    /// (sorted), each once (a repeated key keeps its last value).
    public static func object(_ members: [(key: String, value: JSONFragment)]) -> JSONFragment {
        var unique: [String: JSONFragment] = [:]
        for member in members { unique[member.key] = member.value }
        var out = "{"
        out.reserveCapacity(unique.reduce(2) { $0 + $1.key.utf8.count + $1.value.byteCount + 4 })
        for (i, key) in unique.keys.sorted().enumerated() {
            if i > 0 { out += "," }
            out += JSONValue.string(key).serialized()
            out += ":"
            out += unique[key]!.text
        }
        out += "}"
        return JSONFragment(text: out)
    }
}
