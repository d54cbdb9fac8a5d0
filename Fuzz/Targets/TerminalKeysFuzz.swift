import TerminalKeys

extension Fuzz {
    /// A terminal's bytes (or a hostile paste) through `KeyDecoder`: fed whole, one byte at a
    /// time, and in two parts, the events are the same; no key is text that a terminal would
    /// act on (a control character as `.character`); mouse positions are never negative; with
    /// a small paste limit, no part of a paste is larger than it, and nothing is held once the
    /// decoder is flushed.
    public static func terminalKeys(_ input: UnsafeRawBufferPointer) {
        let bytes = Array(input.bytes)

        var whole = KeyDecoder()
        let events = whole.feed(bytes) + whole.flush()
        require(whole.pendingTimeout == nil, "bytes held after a flush")

        var byByte = KeyDecoder()
        var split: [InputEvent] = []
        for byte in bytes { split += byByte.feed([byte]) }
        split += byByte.flush()
        require(split == events, "byte by byte: \(split) vs \(events)")

        let cut = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
        var halves = KeyDecoder()
        let inTwo = halves.feed(bytes[..<cut]) + halves.feed(bytes[cut...]) + halves.flush()
        require(inTwo == events, "in two at \(cut): \(inTwo) vs \(events)")

        for event in events {
            switch event {
            case .key(.character(let c)), .key(.alt(let c)):
                require(!c.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }, "a control character as text: \(event)")
            case .key(.mouseClick(let row, let column)), .key(.wheelUp(let row, let column)), .key(.wheelDown(let row, let column)):
                require(row >= 0 && column >= 0, "a negative mouse position: \(event)")
            default:
                break
            }
        }

        var bounded = KeyDecoder(pasteLimit: 16)
        for event in bounded.feed(bytes) + bounded.flush() {
            if case .paste(let text) = event {
                // At most one character per byte taken (a broken byte is one U+FFFD).
                require(text.unicodeScalars.count <= 16, "a paste part of \(text.unicodeScalars.count) characters over a limit of 16 bytes")
            }
        }
    }
}
