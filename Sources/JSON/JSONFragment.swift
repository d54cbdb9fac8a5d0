/// JSON text that is valid by construction: made by the serializer from a value, or by
/// joining fragments into an array. A large payload whose parts rarely change (the chat
/// server's `users` list: one entry per user, sent whole at every login) is then assembled
/// from parts serialized once, instead of serializing every part again or writing JSON by
/// hand.
public struct JSONFragment: Sendable, Hashable {
    /// The compact JSON text, as UTF-8.
    public let utf8: [UInt8]

    public init(_ value: JSONValue) {
        var out: [UInt8] = []
        value.write(to: &out)
        utf8 = out
    }

    private init(utf8: [UInt8]) { self.utf8 = utf8 }

    /// `[a,b,…]` from fragments.
    public static func array(_ items: some Collection<JSONFragment>) -> JSONFragment {
        var out: [UInt8] = []
        out.reserveCapacity(items.reduce(2) { $0 + $1.utf8.count + 1 })
        out.append(UInt8(ascii: "["))
        for (i, item) in items.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: item.utf8)
        }
        out.append(UInt8(ascii: "]"))
        return JSONFragment(utf8: out)
    }

    /// `{"key":value,…}` from fragments, the keys in the order the serializer writes them
    /// (sorted), each once (a repeated key keeps its last value).
    public static func object(_ members: [(key: String, value: JSONFragment)]) -> JSONFragment {
        var unique: [String: JSONFragment] = [:]
        for member in members { unique[member.key] = member.value }
        var out: [UInt8] = []
        out.reserveCapacity(unique.reduce(2) { $0 + $1.key.utf8.count + $1.value.utf8.count + 4 })
        out.append(UInt8(ascii: "{"))
        for (i, key) in unique.keys.sorted().enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSONValue.writeString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: unique[key]!.utf8)
        }
        out.append(UInt8(ascii: "}"))
        return JSONFragment(utf8: out)
    }

    /// The text as a string.
    public var text: String { String(decoding: utf8, as: UTF8.self) }
}
