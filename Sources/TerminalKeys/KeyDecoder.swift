/// A key press, as `KeyDecoder` reads it from the terminal's bytes.
public enum Key: Sendable, Hashable {
    case character(Character)
    case enter, tab, backTab, backspace, delete, escape
    case left, right, up, down, home, end, pageUp, pageDown
    case function(Int)
    /// Ctrl plus a letter, lowercase ("a" for Ctrl-A).
    case control(Character)
    /// Alt (Meta) plus a character.
    case alt(Character)
    case mouseClick(row: Int, column: Int)
    case wheelUp(row: Int, column: Int)
    case wheelDown(row: Int, column: Int)
}

/// What a terminal's bytes mean to the program.
public enum InputEvent: Sendable, Hashable {
    case key(Key)
    /// A bracketed paste, line ends as line feeds.
    case paste(String)
    /// The terminal window gained (true) or lost focus (focus reporting, CSI ?1004).
    case focus(Bool)
}

/// Bytes in, keys out: a pure decoder of what terminals send (xterm's conventions, which
/// foot, kitty, WezTerm, iTerm2, VTE, tmux and the Linux console follow): UTF-8 text, control
/// keys, Alt as ESC + key, CSI and SS3 function keys (with or without modifiers), bracketed
/// paste, SGR and X10 mouse reports, focus reports.
///
/// Bytes may arrive split anywhere (a slow link): what could still be the start of a sequence
/// is held, `pendingTimeout` says how long to wait for the rest, and `flush()` then decides (a
/// lone ESC is Escape). Nothing here allocates without bound: a sequence longer than
/// `maximumSequence` is dropped (to its final byte, as it comes), a paste is handed over in
/// parts of at most `pasteLimit` bytes.
/// Unknown sequences are dropped, never typed as text ("[1;5D").
public struct KeyDecoder: Sendable {
    /// The longest control sequence kept waiting for its final byte.
    public static let maximumSequence = 64
    /// A paste larger than this is handed over in parts rather than held without end.
    public static let pasteLimit = 16 << 20
    /// How long a lone ESC waits to become Alt plus the next key, unless told otherwise (the
    /// program takes `ESCDELAY`, in milliseconds, as ncurses does).
    public static let escapeDelay = Duration.milliseconds(25)
    /// `ESCDELAY` from the environment (milliseconds, as ncurses reads it, 0–10,000), else
    /// the default.
    public static func escapeDelay(_ environment: [String: String]) -> Duration {
        guard let text = environment["ESCDELAY"], let milliseconds = Int(text), (0...10_000).contains(milliseconds) else {
            return escapeDelay
        }
        return .milliseconds(milliseconds)
    }

    /// Silence inside a paste this long means its end marker was lost: the paste ends. (A
    /// paste may pause for seconds over a slow link; its rest must not become keys.)
    public static let pasteSilence = Duration.seconds(30)

    private var buffer: [UInt8] = []
    /// Inside a bracketed paste: its bytes so far.
    private var paste: [UInt8]?
    /// A control sequence outgrew `maximumSequence`: its bytes are dropped as they come, up
    /// to its final byte (so none of it is typed, however it is split).
    private var discarding = false
    private let pasteLimit: Int
    private let escapeDelay: Duration

    /// `pasteLimit`: the largest part of a paste handed over at once (tests make it small).
    public init(pasteLimit: Int = KeyDecoder.pasteLimit, escapeDelay: Duration = KeyDecoder.escapeDelay) {
        self.pasteLimit = max(pasteLimit, 8)
        self.escapeDelay = escapeDelay
    }

    /// Held bytes that may be the start of a sequence, or a paste that has not ended: wait this
    /// long for more, then `flush()`. Nil when nothing is held.
    public var pendingTimeout: Duration? {
        if paste != nil { return Self.pasteSilence }
        // Bytes held, or a sequence too long being dropped: its end may never come either.
        return buffer.isEmpty && !discarding ? nil : escapeDelay
    }

    /// Decodes what the terminal sent; what is incomplete waits for the next call (or `flush()`).
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [InputEvent] {
        buffer.append(contentsOf: bytes)
        return decode(final: false)
    }

    /// No more bytes came in time: a held ESC is Escape, an unfinished sequence is dropped, an
    /// unfinished paste ends.
    public mutating func flush() -> [InputEvent] {
        discarding = false
        var events = decode(final: true)
        if paste != nil {
            paste!.append(contentsOf: buffer)
            buffer = []
            handOverParts(into: &events)
            events.append(.paste(Self.pasteText(paste!)))
            paste = nil
        }
        return events
    }

    // MARK: Decoding

    private enum Step {
        /// `count` bytes make `event` (or nothing worth reporting).
        case event(InputEvent?, count: Int)
        /// `count` bytes start a bracketed paste.
        case pasteStart(count: Int)
        /// More bytes may complete this.
        case incomplete
    }

    private mutating func decode(final: Bool) -> [InputEvent] {
        var events: [InputEvent] = []
        var start = 0
        while start < buffer.count {
            if discarding {
                let byte = buffer[start]
                if (0x20...0x3F).contains(byte) {
                    start += 1
                    continue
                }
                discarding = false
                if (0x40...0x7E).contains(byte) {  // its final byte
                    start += 1
                    continue
                }
            }
            if paste != nil {
                let (next, waiting) = takePaste(from: start, into: &events)
                start = next
                if waiting { break }
                continue
            }
            var step = Self.step(buffer[start...])
            if case .incomplete = step {
                if buffer.count - start > Self.maximumSequence {
                    // Too long to be a key: dropped, with the rest of it as it comes.
                    discarding = !final
                    start = buffer.count
                    break
                }
                if !final { break }
                step = Self.timedOut(buffer[start...])
            }
            switch step {
            case .event(let event, let count):
                if let event { events.append(event) }
                start += count
            case .pasteStart(let count):
                paste = []
                start += count
            case .incomplete:
                break
            }
        }
        buffer.removeFirst(start)
        return events
    }

    /// Paste bytes up to the end marker (or all but what may be the marker's start, and then
    /// `waiting` for more).
    private mutating func takePaste(from start: Int, into events: inout [InputEvent]) -> (next: Int, waiting: Bool) {
        let rest = buffer[start...]
        if let end = Self.find(Self.pasteEndMarker, in: rest) {
            paste!.append(contentsOf: buffer[start..<end])
            handOverParts(into: &events)
            events.append(.paste(Self.pasteText(paste!)))
            paste = nil
            return (end + Self.pasteEndMarker.count, false)
        }
        // Keep what could be the start of a split marker.
        var keep = 0
        for n in stride(from: min(Self.pasteEndMarker.count - 1, rest.count), to: 0, by: -1)
        where rest.suffix(n).elementsEqual(Self.pasteEndMarker.prefix(n)) {
            keep = n
            break
        }
        let end = buffer.count - keep
        paste!.append(contentsOf: buffer[start..<end])
        handOverParts(into: &events)
        return (end, true)
    }

    /// While the paste is larger than the limit, its first part goes out.
    private mutating func handOverParts(into events: inout [InputEvent]) {
        while paste!.count > pasteLimit {
            // Cut at a character boundary: the rest starts the next part.
            var cut = pasteLimit
            while cut > pasteLimit - 4, paste![cut] & 0xC0 == 0x80 { cut -= 1 }
            events.append(.paste(Self.pasteText(paste![..<cut])))
            paste!.removeFirst(cut)
        }
    }

    private static let pasteEndMarker: [UInt8] = Array("\u{1B}[201~".utf8)

    private static func find(_ needle: [UInt8], in haystack: ArraySlice<UInt8>) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        var i = haystack.startIndex
        while i <= haystack.endIndex - needle.count {
            if haystack[i] == needle[0], haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    /// Pasted bytes as text: invalid UTF-8 repaired, line ends as line feeds.
    static func pasteText(_ bytes: some Collection<UInt8>) -> String {
        var text = String.UnicodeScalarView()
        var afterCR = false
        for scalar in String(decoding: bytes, as: UTF8.self).unicodeScalars {
            defer { afterCR = scalar == "\r" }
            if scalar == "\n", afterCR { continue }  // CR LF: one line end, already written
            text.append(scalar == "\r" ? "\n" : scalar)
        }
        return String(text)
    }

    /// One key (or sequence) at the start of `bytes`.
    private static func step(_ bytes: ArraySlice<UInt8>) -> Step {
        let first = bytes[bytes.startIndex]
        switch first {
        case 0x1B:
            return escape(bytes)
        case 0x00...0x7F:
            return .event(controlOrASCII(first).map { .key($0) }, count: 1)
        default:
            return utf8(bytes).map { scalar, count in .event(character(scalar).map { .key($0) }, count: count) } ?? .incomplete
        }
    }

    /// Held bytes whose rest never came.
    private static func timedOut(_ bytes: ArraySlice<UInt8>) -> Step {
        let s = bytes.startIndex
        guard bytes[s] == 0x1B else { return .event(nil, count: 1) }  // a cut UTF-8 sequence: dropped
        guard bytes.count > 1 else { return .event(.key(.escape), count: 1) }
        // ESC [ or ESC O alone were Alt-[ and Alt-O; anything longer is a sequence cut short.
        if bytes.count == 2, bytes[s + 1] == UInt8(ascii: "[") || bytes[s + 1] == UInt8(ascii: "O") {
            return .event(.key(.alt(Character(Unicode.Scalar(bytes[s + 1])))), count: 2)
        }
        return .event(nil, count: bytes.count)
    }

    private static func escape(_ bytes: ArraySlice<UInt8>) -> Step {
        let s = bytes.startIndex
        guard bytes.count > 1 else { return .incomplete }
        let next = bytes[s + 1]
        switch next {
        case UInt8(ascii: "["):
            return csi(bytes)
        case UInt8(ascii: "O"):
            guard bytes.count > 2 else { return .incomplete }
            return .event(ss3(bytes[s + 2]).map { .key($0) }, count: 3)
        case 0x20...0x7E:
            return .event(.key(.alt(Character(Unicode.Scalar(next)))), count: 2)
        case 0x80...:
            guard let (scalar, count) = utf8(bytes.dropFirst()) else { return .incomplete }
            return .event(character(scalar) == nil ? nil : .key(.alt(Character(scalar))), count: 1 + count)
        default:
            // ESC then a control key (ESC ESC, ESC Enter): Escape, and the next byte is itself.
            return .event(.key(.escape), count: 1)
        }
    }

    /// `ESC [ params intermediates final`.
    private static func csi(_ bytes: ArraySlice<UInt8>) -> Step {
        let s = bytes.startIndex
        if bytes.count > 2, bytes[s + 2] == UInt8(ascii: "[") {
            // The Linux console's F1–F5: ESC [ [ A … E.
            guard bytes.count > 3 else { return .incomplete }
            let n = Int(bytes[s + 3]) - Int(UInt8(ascii: "A")) + 1
            return .event((1...5).contains(n) ? .key(.function(n)) : nil, count: 4)
        }
        var i = s + 2
        while i < bytes.endIndex, (0x20...0x3F).contains(bytes[i]) { i += 1 }
        guard i < bytes.endIndex else { return .incomplete }
        let final = bytes[i]
        guard (0x40...0x7E).contains(final) else { return .event(nil, count: i - s) }  // broken: drop up to here
        let count = i - s + 1
        // Longer than a key ever is: dropped, as it is when it comes in pieces.
        guard count - 1 <= Self.maximumSequence else { return .event(nil, count: count) }
        let parameters = String(decoding: bytes[(s + 2)..<i], as: UTF8.self)
        if final == UInt8(ascii: "M"), parameters.isEmpty {
            // X10 mouse: three more bytes.
            guard bytes.count >= count + 3 else { return .incomplete }
            let b = Int(bytes[s + count]) - 32
            let column = Int(bytes[s + count + 1]) - 33
            let row = Int(bytes[s + count + 2]) - 33
            return .event(mouse(button: b, row: row, column: column, press: b & 3 != 3).map { .key($0) }, count: count + 3)
        }
        if parameters.hasPrefix("<"), final == UInt8(ascii: "M") || final == UInt8(ascii: "m") {
            let fields = parameters.dropFirst().split(separator: ";", omittingEmptySubsequences: false).map { Int($0) }
            guard fields.count == 3, let b = fields[0], let x = fields[1], let y = fields[2] else { return .event(nil, count: count) }
            return .event(mouse(button: b, row: y - 1, column: x - 1, press: final == UInt8(ascii: "M")).map { .key($0) }, count: count)
        }
        let numbers = parameters.split(separator: ";", omittingEmptySubsequences: false).map { Int($0) }
        let first = numbers.first ?? nil
        let key: Key?
        switch final {
        case UInt8(ascii: "A"): key = .up
        case UInt8(ascii: "B"): key = .down
        case UInt8(ascii: "C"): key = .right
        case UInt8(ascii: "D"): key = .left
        case UInt8(ascii: "H"): key = .home
        case UInt8(ascii: "F"): key = .end
        case UInt8(ascii: "Z"): key = .backTab
        case UInt8(ascii: "P"): key = .function(1)
        case UInt8(ascii: "Q"): key = .function(2)
        case UInt8(ascii: "R"): key = parameters.isEmpty || first == 1 ? .function(3) : nil  // else a cursor report
        case UInt8(ascii: "S"): key = .function(4)
        case UInt8(ascii: "I"): return .event(.focus(true), count: count)
        case UInt8(ascii: "O"): return .event(.focus(false), count: count)
        case UInt8(ascii: "~"):
            switch first {
            case 1, 7: key = .home
            case 4, 8: key = .end
            case 3: key = .delete
            case 5: key = .pageUp
            case 6: key = .pageDown
            case 11, 12, 13, 14, 15: key = .function(first! - 10)
            case 17, 18, 19, 20, 21: key = .function(first! - 11)
            case 23, 24: key = .function(first! - 12)
            case 200: return .pasteStart(count: count)
            default: key = nil  // 201 outside a paste, Insert, F13 and beyond
            }
        default: key = nil
        }
        return .event(key.map { .key($0) }, count: count)
    }

    /// `ESC O x`: application-mode cursor keys, F1–F4, keypad Enter.
    private static func ss3(_ byte: UInt8) -> Key? {
        switch byte {
        case UInt8(ascii: "A"): return .up
        case UInt8(ascii: "B"): return .down
        case UInt8(ascii: "C"): return .right
        case UInt8(ascii: "D"): return .left
        case UInt8(ascii: "H"): return .home
        case UInt8(ascii: "F"): return .end
        case UInt8(ascii: "P"): return .function(1)
        case UInt8(ascii: "Q"): return .function(2)
        case UInt8(ascii: "R"): return .function(3)
        case UInt8(ascii: "S"): return .function(4)
        case UInt8(ascii: "M"): return .enter
        default: return nil
        }
    }

    /// A mouse report: wheel up and down, and the first button pressed; the rest (motion,
    /// releases, other buttons) is nothing to the program.
    private static func mouse(button: Int, row: Int, column: Int, press: Bool) -> Key? {
        guard press, row >= 0, column >= 0, button & 32 == 0 else { return nil }
        switch button & ~(4 | 8 | 16) {  // Shift, Alt, Ctrl held: the same button
        case 0: return .mouseClick(row: row, column: column)
        case 64: return .wheelUp(row: row, column: column)
        case 65: return .wheelDown(row: row, column: column)
        default: return nil
        }
    }

    /// A byte below 0x80: a control key or an ASCII character. Nil for the control characters
    /// no binding uses (Ctrl-@, Ctrl-\ ] ^ _): they are not text.
    static func controlOrASCII(_ byte: UInt8) -> Key? {
        switch byte {
        case 0x09: return .tab
        case 0x0D, 0x0A: return .enter
        case 0x7F, 0x08: return .backspace
        case 0x01...0x1A: return .control(Character(Unicode.Scalar(byte + 0x60)))
        case 0x00...0x1F: return nil
        default: return .character(Character(Unicode.Scalar(byte)))
        }
    }

    /// A decoded scalar as a key: C1 controls are not text.
    private static func character(_ scalar: Unicode.Scalar) -> Key? {
        (0x80...0x9F).contains(scalar.value) ? nil : .character(Character(scalar))
    }

    /// One UTF-8 scalar at the start of `bytes` and its length; U+FFFD for an invalid byte;
    /// nil when the bytes so far could still become a valid scalar.
    private static func utf8(_ bytes: ArraySlice<UInt8>) -> (Unicode.Scalar, Int)? {
        let s = bytes.startIndex
        let lead = bytes[s]
        let length: Int
        switch lead {
        case 0x00...0x7F: return (Unicode.Scalar(lead), 1)
        case 0xC2...0xDF: length = 2
        case 0xE0...0xEF: length = 3
        case 0xF0...0xF4: length = 4
        default: return ("\u{FFFD}", 1)
        }
        for n in 1..<length {
            guard s + n < bytes.endIndex else { return nil }
            guard bytes[s + n] & 0xC0 == 0x80 else { return ("\u{FFFD}", n) }
        }
        var decoder = UTF8()
        var iterator = bytes[s..<(s + length)].makeIterator()
        if case .scalarValue(let scalar) = decoder.decode(&iterator) { return (scalar, length) }
        return ("\u{FFFD}", length)  // overlong, surrogate or beyond U+10FFFF
    }
}
