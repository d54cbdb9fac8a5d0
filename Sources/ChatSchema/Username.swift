import Foundation

/// The one username rule, for the client's prompt and the server's CONNECT alike
/// (PROTOCOL.md, "One username rule, both sides").
///
/// A name is shown to every other user, in every `users` list: it must be short in
/// characters *and* in bytes (one grapheme can carry any number of combining marks), and
/// free of anything that does not draw as itself (controls, bidi and zero-width format
/// characters, line and paragraph separators, private-use and unassigned code points).
public enum Username {
    public static let minimumLength = 3
    public static let maximumLength = 32
    public static let maximumBytes = 128

    public enum Problem: Error, Sendable, Hashable, CustomStringConvertible {
        case tooShort
        case tooLong
        case tooManyBytes
        case forbiddenCharacter

        public var description: String {
            switch self {
            case .tooShort: return "a username needs at least \(Username.minimumLength) characters"
            case .tooLong: return "a username can have at most \(Username.maximumLength) characters"
            case .tooManyBytes: return "a username can have at most \(Username.maximumBytes) bytes of UTF-8"
            case .forbiddenCharacter:
                return "a username cannot contain control, invisible, private-use or unassigned characters"
            }
        }
    }

    /// The name to use (surrounding whitespace removed), or why it cannot be used.
    ///
    /// The checks go from cheap to dear, so a hostile name of a megabyte costs one pass
    /// over its bytes: the byte count is checked before anything is decoded.
    public static func validate(_ raw: String) -> Result<String, Problem> {
        // Surrounding whitespace may be long, but not longer than the limit allows anyway.
        guard raw.utf8.count <= maximumBytes * 4 else { return .failure(.tooManyBytes) }
        let name = raw.trimmingWhitespace()
        if name.utf8.count > maximumBytes { return .failure(.tooManyBytes) }
        if name.unicodeScalars.contains(where: isForbidden) { return .failure(.forbiddenCharacter) }
        let count = name.count
        if count < minimumLength { return .failure(.tooShort) }
        if count > maximumLength { return .failure(.tooLong) }
        return .success(name)
    }

    /// What a name looks like, for telling lookalikes apart: the name without anything
    /// invisible or blank (format characters such as zero-width spaces and bidi marks,
    /// default-ignorable code points, controls, every kind of space, the braille blank), in
    /// Unicode compatibility form (NFKC: "ｂｏｂ" and "bob", "ﬁ" and "fi" are one) and
    /// case-folded. Two users whose names have the same skeleton may be taken for each other;
    /// a client tells them apart by their IDs. (A server's names need not follow this
    /// project's rule: those are the names that need it.) Letters of other scripts that look
    /// like Latin ones (Cyrillic "а") keep their own skeleton: that takes a confusables table.
    /// A name of more than 1,024 bytes (no rule allows one) is judged by its first 256
    /// scalars, so that no name costs more than that.
    public static func skeleton(_ name: String) -> String {
        // Most names are printable ASCII: NFKC leaves them alone, folding is lowercasing.
        if name.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) {
            guard name.utf8.contains(where: { ($0 >= 0x41 && $0 <= 0x5A) || $0 == 0x20 }) else { return name }
            return String(decoding: name.utf8.compactMap { $0 == 0x20 ? nil : $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
        }
        var visible = String.UnicodeScalarView()
        for scalar in name.unicodeScalars.prefix(name.utf8.count > 1024 ? 256 : Int.max) where !isInvisible(scalar) {
            visible.append(scalar)
        }
        // Folding after NFKC can leave text that NFKC changes again (rarely): once more; and
        // compatibility forms may bring spaces back ("¨" is a space and a diaeresis).
        let folded = String(visible).precomposedStringWithCompatibilityMapping.folding(options: [.caseInsensitive], locale: nil)
        var out = String.UnicodeScalarView()
        for scalar in folded.precomposedStringWithCompatibilityMapping.unicodeScalars where !isInvisible(scalar) { out.append(scalar) }
        return String(out)
    }

    /// What a reader does not see as a mark of its own: controls, format characters, default-
    /// ignorable code points, whitespace of any width, and the blank symbols that draw as one.
    static func isInvisible(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.properties.isDefaultIgnorableCodePoint || scalar.properties.isWhitespace { return true }
        switch scalar.value {
        case 0x2800, 0x3164, 0xFFA0, 0x115F, 0x1160: return true  // braille blank, Hangul fillers
        default: break
        }
        switch scalar.properties.generalCategory {
        case .control, .format, .spaceSeparator: return true
        default: return false
        }
    }

    /// Cc, Cf, Zl, Zp, Co and Cn: what does not draw as itself, or may draw as anything.
    static func isForbidden(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .privateUse, .unassigned, .surrogate: return true
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
