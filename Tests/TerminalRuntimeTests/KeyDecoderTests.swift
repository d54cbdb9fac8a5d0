import TerminalKeys
import Testing
import TerminalRuntime
import TerminalUI

/// Decodes `bytes` as one read, then as the terminal may deliver them over a slow link: one
/// byte at a time. Both must give the same events.
private func decode(_ bytes: [UInt8], flush: Bool = true) -> [InputEvent] {
    var whole = KeyDecoder()
    var events = whole.feed(bytes)
    if flush { events += whole.flush() }
    var split = KeyDecoder()
    var byByte: [InputEvent] = []
    for byte in bytes { byByte += split.feed([byte]) }
    if flush { byByte += split.flush() }
    #expect(events == byByte, "split byte by byte")
    return events
}

private func decode(_ text: String, flush: Bool = true) -> [InputEvent] { decode(Array(text.utf8), flush: flush) }

private func keys(_ keys: Key...) -> [InputEvent] { keys.map { .key($0) } }

@Suite struct KeyDecoderTests {
    @Test func textInUTF8() {
        #expect(decode("hé中🙂") == keys(.character("h"), .character("é"), .character("中"), .character("🙂")))
    }

    @Test func controlKeys() {
        #expect(decode("\t\r\n\u{7F}\u{08}") == keys(.tab, .enter, .enter, .backspace, .backspace))
        #expect(decode("\u{01}\u{11}\u{12}\u{17}") == keys(.control("a"), .control("q"), .control("r"), .control("w")))
        // Ctrl-@, Ctrl-\ and the like are bound to nothing: not typed as text either.
        #expect(decode([0x00, 0x1C, 0x1D, 0x1F]) == [])
    }

    @Test func altIsEscapeThenTheKey() {
        #expect(decode("\u{1B}a\u{1B}1\u{1B}A") == keys(.alt("a"), .alt("1"), .alt("A")))
        #expect(decode("\u{1B}é") == keys(.alt("é")))
    }

    /// A lone ESC waits for the escape delay: only `flush()` (nothing more came) makes it Escape.
    @Test func aLoneEscapeIsEscapeOnlyWhenNothingFollows() {
        var decoder = KeyDecoder()
        #expect(decoder.feed([0x1B]) == [])
        #expect(decoder.pendingTimeout == KeyDecoder.escapeDelay)
        #expect(decoder.flush() == keys(.escape))
        #expect(decoder.pendingTimeout == nil)
        // ESC then another control key: Escape, and the key itself.
        #expect(decode("\u{1B}\r") == keys(.escape, .enter))
        #expect(decode("\u{1B}\u{1B}") == keys(.escape, .escape))
    }

    @Test(arguments: [
        ("\u{1B}[A", Key.up), ("\u{1B}[B", .down), ("\u{1B}[C", .right), ("\u{1B}[D", .left),
        ("\u{1B}OA", .up), ("\u{1B}OD", .left),  // application cursor mode
        ("\u{1B}[1;5D", .left), ("\u{1B}[1;3A", .up),  // with Ctrl or Alt held
        ("\u{1B}[H", .home), ("\u{1B}[F", .end), ("\u{1B}OH", .home), ("\u{1B}OF", .end),
        ("\u{1B}[1~", .home), ("\u{1B}[4~", .end), ("\u{1B}[7~", .home), ("\u{1B}[8~", .end),  // rxvt, the console
        ("\u{1B}[3~", .delete), ("\u{1B}[5~", .pageUp), ("\u{1B}[6~", .pageDown), ("\u{1B}[Z", .backTab),
        ("\u{1B}OP", .function(1)), ("\u{1B}OS", .function(4)), ("\u{1B}[11~", .function(1)),
        ("\u{1B}[15~", .function(5)), ("\u{1B}[17~", .function(6)), ("\u{1B}[21~", .function(10)),
        ("\u{1B}[24~", .function(12)), ("\u{1B}[1;2P", .function(1)), ("\u{1B}OM", .enter), ("\u{1B}[[A", .function(1)), ("\u{1B}[[E", .function(5)),
    ])
    func functionKeys(sequence: String, key: Key) {
        #expect(decode(sequence) == [.key(key)])
    }

    /// What no binding knows is dropped whole, never typed as "[1;5X" into a message.
    @Test func unknownSequencesAreDroppedNotTyped() {
        #expect(decode("\u{1B}[2~\u{1B}[99~\u{1B}[1;5X\u{1B}[?1;2cx") == keys(.character("x")))
        #expect(decode("\u{1B}[12;40R") == [])  // a cursor position report is not F3
        #expect(decode("\u{1B}OXy") == keys(.character("y")))
    }

    /// A sequence with no final byte ever (a hostile or broken stream) is not held without end.
    @Test func anEndlessSequenceIsDroppedAtItsLimit() {
        var decoder = KeyDecoder()
        let endless = [0x1B, 0x5B] + [UInt8](repeating: 0x31, count: 10_000)
        #expect(decoder.feed(endless) == [])
        // Its end may never come: after the escape delay, typing is typing again.
        #expect(decoder.pendingTimeout == KeyDecoder.escapeDelay)
        var abandoned = decoder
        #expect(abandoned.flush() == [])
        #expect(abandoned.feed(Array("12 apples".utf8)) == "12 apples".map { .key(.character($0)) })
        // The rest of it, to its final byte, is dropped too: none of it is typed.
        #expect(decoder.feed(Array("2222;3~ok".utf8)) == keys(.character("o"), .character("k")))
        #expect(decode(endless + Array("~ok".utf8)) == keys(.character("o"), .character("k")))
        // Cut short and nothing more came: dropped, and Alt-[ alone is still Alt-[.
        #expect(decode("\u{1B}[1;") == [])
        #expect(decode("\u{1B}[") == keys(.alt("[")))
    }

    @Test func invalidUTF8BecomesTheReplacementCharacter() {
        #expect(decode([0xFF, 0x41, 0xC3, 0x28, 0xED, 0xA0, 0x80]) == keys(.character("\u{FFFD}"), .character("A"), .character("\u{FFFD}"), .character("("), .character("\u{FFFD}")))
        // C1 controls encoded in UTF-8 are not text.
        #expect(decode([0xC2, 0x9B, 0x41]) == keys(.character("A")))
        // A character cut at the end of what came waits; if the rest never comes, it is dropped.
        var decoder = KeyDecoder()
        #expect(decoder.feed([0xE4, 0xB8]) == [])
        #expect(decoder.feed([0xAD]) == keys(.character("中")))
        #expect(decoder.feed([0xE4]) == [])
        #expect(decoder.flush() == [])
    }

    @Test func bracketedPasteKeepsEverythingAsText() {
        let pasted = "line one\r\nline two\u{03}\u{11}\u{1B}[A\ttab"
        #expect(decode("x\u{1B}[200~" + pasted + "\u{1B}[201~y") == [
            .key(.character("x")), .paste("line one\nline two\u{03}\u{11}\u{1B}[A\ttab"), .key(.character("y")),
        ])
        // The end marker split across reads.
        var decoder = KeyDecoder()
        #expect(decoder.feed(Array("\u{1B}[200~abc\u{1B}[20".utf8)) == [])
        #expect(decoder.pendingTimeout == KeyDecoder.pasteSilence)
        #expect(decoder.feed(Array("1~".utf8)) == [.paste("abc")])
        #expect(decoder.pendingTimeout == nil)
    }

    /// A paste whose end marker never comes ends after a second of silence: Ctrl-Q is a key again.
    @Test func aPasteWithoutItsEndEndsWhenTheTerminalFallsSilent() {
        var decoder = KeyDecoder()
        #expect(decoder.feed(Array("\u{1B}[200~half a paste\u{1B}[2".utf8)) == [])
        #expect(decoder.flush() == [.paste("half a paste\u{1B}[2")])
        #expect(decoder.feed([0x11]) == keys(.control("q")))
    }

    /// A huge paste is handed over in parts of at most the limit (16 MiB in the program; 1,000
    /// bytes here), cut between characters.
    @Test func aHugePasteComesInBoundedParts() {
        var decoder = KeyDecoder(pasteLimit: 1_000)
        var events = decoder.feed(Array("\u{1B}[200~".utf8))
        let chunk = Array(String(repeating: "é中", count: 333).utf8) + [0x41]  // 1,666 bytes, cut anywhere
        for _ in 0..<40 { events += decoder.feed(chunk) }
        events += decoder.feed(Array("\u{1B}[201~".utf8))
        var total = 0
        for event in events {
            guard case .paste(let text) = event else {
                Issue.record("not a paste: \(event)")
                continue
            }
            #expect(text.utf8.count <= 1_000)
            #expect(!text.contains("\u{FFFD}"))
            total += text.utf8.count
        }
        #expect(events.count >= 2)
        #expect(total == 40 * chunk.count)
    }

    @Test func sgrMouseReports() {
        #expect(decode("\u{1B}[<0;5;3M") == keys(.mouseClick(row: 2, column: 4)))
        #expect(decode("\u{1B}[<64;10;20M\u{1B}[<65;1;1M") == keys(.wheelUp(row: 19, column: 9), .wheelDown(row: 0, column: 0)))
        // Releases, motion, other buttons and nonsense: nothing.
        #expect(decode("\u{1B}[<0;5;3m\u{1B}[<32;5;3M\u{1B}[<2;5;3M\u{1B}[<0;0;0M\u{1B}[<0;99999999999999999999;3M\u{1B}[<0;5M") == [])
        // With Ctrl held, a click is still a click.
        #expect(decode("\u{1B}[<16;2;2M") == keys(.mouseClick(row: 1, column: 1)))
    }

    @Test func x10MouseReports() {
        // Button 0 at column 5, row 3 (each plus 32, one-based).
        #expect(decode([0x1B, 0x5B, 0x4D, 32, 32 + 5, 32 + 3]) == keys(.mouseClick(row: 2, column: 4)))
        #expect(decode([0x1B, 0x5B, 0x4D, 32 + 64, 33, 33]) == keys(.wheelUp(row: 0, column: 0)))
        #expect(decode([0x1B, 0x5B, 0x4D, 32 + 3, 33, 33]) == [])  // a release
    }

    @Test func theEscapeDelayComesFromESCDELAY() {
        #expect(KeyDecoder.escapeDelay(["ESCDELAY": "100"]) == .milliseconds(100))
        #expect(KeyDecoder.escapeDelay([:]) == KeyDecoder.escapeDelay)
        for nonsense in ["-1", "99999999999999999999", "ten", ""] {
            #expect(KeyDecoder.escapeDelay(["ESCDELAY": nonsense]) == KeyDecoder.escapeDelay)
        }
        var slow = KeyDecoder(escapeDelay: .milliseconds(300))
        _ = slow.feed([0x1B])
        #expect(slow.pendingTimeout == .milliseconds(300))
    }

    @Test func focusReports() {
        #expect(decode("\u{1B}[O\u{1B}[I") == [.focus(false), .focus(true)])
    }
}
