/// What a terminal could act on, in text that came from elsewhere (a peer, a server, a
/// file), and the one rule for writing such text where a person may read it in a terminal:
/// a log line, headless output, the screen. PROTOCOL.md: "every string that came over the
/// network is made inert before it reaches the terminal … headless output or a log line".
public enum InertText {
    /// Whether a terminal (or a reader) could take this scalar for something other than a
    /// character to show: the C0 controls (ESC starts a sequence), DEL, the C1 controls (U+009B
    /// is CSI on its own), the bidi marks, embeddings, overrides and isolates (they reorder
    /// what a reader sees: U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), and the line
    /// and paragraph separators (U+2028, U+2029: some terminals and most JavaScript end a
    /// line there).
    @inline(__always)
    public static func isActive(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x061C, 0x200E, 0x200F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }

    /// Whether a reader cannot see the scalar, though a terminal does nothing with it: format
    /// characters and default-ignorable code points (zero-width spaces and joiners, the byte
    /// order mark, tag characters, variation selectors). Text from elsewhere may hide words
    /// with them; where a reader must see exactly what came (a log line, headless output) they
    /// are escaped too. (The screen keeps them: a zero-width joiner makes one emoji of several.)
    @inline(__always)
    public static func isHidden(_ scalar: Unicode.Scalar) -> Bool {
        guard scalar.value >= 0x80 else { return false }
        return scalar.properties.isDefaultIgnorableCodePoint || scalar.properties.generalCategory == .format
    }

    /// Whether to escape the scalar where exact text is written: `isActive` or `isHidden`.
    @inline(__always)
    public static func isEscaped(_ scalar: Unicode.Scalar) -> Bool { isActive(scalar) || isHidden(scalar) }

    /// Whether a bidi control: a mark, embedding, override or isolate (a subset of `isActive`).
    public static func isBidiControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }

    /// For a log line: every active or hidden scalar written as `\u{…}`, and a backslash as `\\` (so that
    /// nobody can write text that reads like an escaped character). Everything else, any
    /// script and emoji, is left as it is.
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { isEscaped($0) || $0 == "\\" }) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if isEscaped(scalar) {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else if scalar == "\\" {
                out += "\\\\"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
