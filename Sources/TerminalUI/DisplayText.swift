import CNcursesw
import InertText

/// Text as the terminal shows it: made inert, then measured in columns.
///
/// Widths come from the C library's `wcwidth`, the same function ncurses uses
/// to place characters, so what the view lays out is what the terminal draws.
/// (The program sets the locale from the environment before anything is drawn;
/// tests set a UTF-8 locale.)
public enum DisplayText {
    /// Makes a string from the network safe to draw: every scalar a terminal could act on
    /// (`InertText.isActive`) is replaced or dropped. C0 controls become the visible control
    /// pictures (U+2400…), DEL becomes ␡, C1 controls become U+FFFD, the line and paragraph
    /// separators a space, and the bidi controls (marks, embeddings, overrides, isolates) are
    /// dropped, so no byte of it can move the cursor, change colours, or reorder the text
    /// around it.
    ///
    /// With `multiline`, line feeds are kept (a message may have several lines), and so are
    /// the separators, as line feeds; a tab becomes spaces.
    public static func inert(_ text: String, multiline: Bool = false) -> String {
        // Fast path: most text has nothing to change.
        if !text.unicodeScalars.contains(where: InertText.isActive) { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x0A where multiline: out.append(scalar)
            case 0x09 where multiline: out.append(contentsOf: "    ".unicodeScalars)
            case 0x2028, 0x2029: out.append(multiline ? "\n" : " ")
            case 0x00...0x1F: out.append(Unicode.Scalar(0x2400 + scalar.value)!)
            case 0x7F: out.append("\u{2421}")
            case 0x80...0x9F: out.append("\u{FFFD}")
            case _ where InertText.isBidiControl(scalar): continue
            default: out.append(scalar)
            }
        }
        return String(out)
    }

    /// A short label from text that came from elsewhere, for a window title or a desktop
    /// notification: inert, without what a reader cannot see, at most `scalars` scalars (zero-
    /// width ones take no column, so `columns` alone would not bound it) and `columns` columns.
    public static func label(_ text: String, columns: Int, scalars: Int = 128) -> String {
        var visible = String.UnicodeScalarView()
        for scalar in inert(text).unicodeScalars where !InertText.isHidden(scalar) {
            guard visible.count < scalars else { break }
            visible.append(scalar)
        }
        return truncated(String(visible), toWidth: columns)
    }

    /// Columns one scalar takes: 0 for combining marks and other zero-width
    /// characters, 2 for wide (CJK, most emoji), otherwise 1. Unprintable
    /// scalars (which `inert` has already replaced) count as 1.
    @inline(__always)
    public static func width(of scalar: Unicode.Scalar) -> Int {
        drawnWidth(of: scalar) ?? 1
    }

    /// Columns one scalar takes, or nil when the C library (and so ncurses) cannot draw it:
    /// controls (`inert` replaces them), and code points newer than the library's tables.
    @inline(__always)
    public static func drawnWidth(of scalar: Unicode.Scalar) -> Int? {
        if scalar.value >= 0x20 && scalar.value < 0x7F { return 1 }
        let w = Int(parley_wcwidth(scalar.value))
        return w < 0 ? nil : w
    }

    /// Columns a whole string takes.
    public static func width(of text: some StringProtocol) -> Int {
        var total = 0
        for scalar in text.unicodeScalars { total += width(of: scalar) }
        return total
    }

    /// The string cut to at most `columns` columns, ending in "…" when it was cut.
    public static func truncated(_ text: String, toWidth columns: Int) -> String {
        guard columns > 0 else { return "" }
        if width(of: text) <= columns { return text }
        var out = String.UnicodeScalarView()
        var used = 0
        for scalar in text.unicodeScalars {
            let w = width(of: scalar)
            if used + w > columns - 1 { break }
            out.append(scalar)
            used += w
        }
        return String(out) + "…"
    }

    /// Splits text into lines of at most `columns` columns: at line feeds, then
    /// at the last space that fits, else mid-word. Wide characters never straddle
    /// the edge.
    public static func wrapped(_ text: String, toWidth columns: Int) -> [Substring] {
        let columns = max(columns, 2)
        var lines: [Substring] = []
        for paragraph in text.split(separator: "\n", omittingEmptySubsequences: false) {
            wrap(paragraph, columns: columns, into: &lines)
        }
        return lines
    }

    /// How many lines `wrapped` would give, without building them.
    public static func wrappedLineCount(_ text: String, toWidth columns: Int) -> Int {
        // ASCII without line feeds that fits: the common case, answered from the byte count.
        if text.utf8.count <= columns, !text.utf8.contains(where: { $0 >= 0x7F || $0 == 0x0A }) { return 1 }
        return wrapped(text, toWidth: columns).count
    }

    private static func wrap(_ paragraph: Substring, columns: Int, into lines: inout [Substring]) {
        // By scalars, so a cut never lands inside one; wide characters never straddle the edge.
        var rest = paragraph.unicodeScalars
        while true {
            var used = 0
            var cut = rest.endIndex
            var lastSpace: String.Index?
            var index = rest.startIndex
            while index < rest.endIndex {
                let scalar = rest[index]
                let w = width(of: scalar)
                if used + w > columns {
                    cut = index
                    break
                }
                if scalar == " " { lastSpace = index }
                used += w
                index = rest.index(after: index)
            }
            if cut == rest.endIndex {
                lines.append(Substring(rest))
                return
            }
            if let space = lastSpace, space > rest.startIndex {
                lines.append(Substring(rest[rest.startIndex..<space]))
                rest = rest[rest.index(after: space)...]
            } else {
                // Always make progress, even when one character is wider than the line.
                if cut == rest.startIndex { cut = rest.index(after: cut) }
                lines.append(Substring(rest[rest.startIndex..<cut]))
                rest = rest[cut...]
            }
        }
    }
}
