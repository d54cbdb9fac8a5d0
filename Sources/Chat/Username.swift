/// The username rule: the reference client's "longer than 2 characters",
/// plus at most 32 characters and no control or bidi-override characters
/// (a name is shown to every other user).
public enum Username {
    public static let minimumLength = 3
    public static let maximumLength = 32

    public enum Problem: Error, Sendable, Hashable, CustomStringConvertible {
        case tooShort
        case tooLong
        case controlCharacter

        public var description: String {
            switch self {
            case .tooShort: return "a username needs at least \(Username.minimumLength) characters"
            case .tooLong: return "a username can have at most \(Username.maximumLength) characters"
            case .controlCharacter: return "a username cannot contain control characters"
            }
        }
    }

    /// The name to use (surrounding whitespace removed), or why it cannot be used.
    public static func validate(_ raw: String) -> Result<String, Problem> {
        let name = raw.trimmingWhitespace()
        if name.unicodeScalars.contains(where: isControl) { return .failure(.controlCharacter) }
        if name.count < minimumLength { return .failure(.tooShort) }
        if name.count > maximumLength { return .failure(.tooLong) }
        return .success(name)
    }

    /// C0, DEL, C1, and the bidi embedding/override/isolate controls.
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }

    /// True when there is nothing but whitespace.
    public var isBlank: Bool { allSatisfy(\.isWhitespace) }
}
