import Testing
@testable import TerminalUI

@Suite struct DisplayTextTests {
    init() { _ = utf8Locale }

    @Test func controlsEscapeAndBidiOverridesAreMadeInert() {
        #expect(DisplayText.inert("a\u{1B}[31mb") == "a␛[31mb")
        #expect(DisplayText.inert("bell\u{07}") == "bell␇")
        #expect(DisplayText.inert("del\u{7F}") == "del␡")
        #expect(DisplayText.inert("c1\u{9B}2J") == "c1\u{FFFD}2J")
        #expect(DisplayText.inert("\u{202E}evil\u{2066}x\u{2069}") == "evilx")
        #expect(DisplayText.inert("line\nbreak") == "line␊break")
        #expect(DisplayText.inert("line\nbreak\tx", multiline: true) == "line\nbreak    x")
        #expect(DisplayText.inert("plain ça 中 😀") == "plain ça 中 😀")
    }

    @Test func widthsAreColumnsNotCharacters() {
        #expect(DisplayText.width(of: "abc") == 3)
        #expect(DisplayText.width(of: "中文") == 4)
        #expect(DisplayText.width(of: "😀") == 2)
        #expect(DisplayText.width(of: "e\u{301}") == 1)  // combining acute
        #expect("中文".count == 2)
    }

    @Test func truncationCountsColumnsAndEndsWithAnEllipsis() {
        #expect(DisplayText.truncated("alexander", toWidth: 5) == "alex…")
        #expect(DisplayText.truncated("中文中文", toWidth: 5) == "中文…")
        #expect(DisplayText.truncated("中文中文", toWidth: 4) == "中…")
        #expect(DisplayText.truncated("short", toWidth: 10) == "short")
    }

    @Test func wrappingBreaksAtSpacesAndNeverSplitsAWideCharacter() {
        #expect(DisplayText.wrapped("the quick brown fox", toWidth: 10) == ["the quick", "brown fox"])
        #expect(DisplayText.wrapped("abcdefghijkl", toWidth: 5) == ["abcde", "fghij", "kl"])
        #expect(DisplayText.wrapped("中文中文中", toWidth: 5) == ["中文", "中文", "中"])
        #expect(DisplayText.wrapped("one\ntwo", toWidth: 10) == ["one", "two"])
        for text in ["the quick brown fox", "中文中文中", "😀😀😀 a b", "x\ny\n\nz"] {
            for width in 2...8 {
                let lines = DisplayText.wrapped(text, toWidth: width)
                #expect(lines.allSatisfy { DisplayText.width(of: $0) <= width }, "\(text) at \(width)")
                #expect(lines.count == DisplayText.wrappedLineCount(text, toWidth: width))
            }
        }
    }

    @Test func aCharacterWiderThanTheLineStillMakesProgress() {
        #expect(DisplayText.wrapped("中中", toWidth: 1) == ["中", "中"])
    }
}

@Suite struct InputLineTests {
    @Test func editingByCharactersNotBytes() {
        var line = InputLine()
        line.insert("héllo 中文")
        #expect(line.cursor == 8)
        line.moveLeft()
        line.deleteBackward()
        #expect(line.text == "héllo 文")
        line.moveHome()
        line.deleteForward()
        #expect(line.text == "éllo 文")
        line.moveEnd()
        line.insert("😀")
        #expect(line.text == "éllo 文😀")
    }

    @Test func wordAndLineDeletion() {
        var line = InputLine("send this now  ")
        line.deleteWordBackward()
        #expect(line.text == "send this ")
        line.moveLeft()
        line.moveLeft()
        line.deleteToEnd()
        #expect(line.text == "send thi")
        line.moveLeft()
        line.deleteToStart()
        #expect(line.text == "i")
        #expect(line.cursor == 0)
    }

    @Test func theVisibleWindowFollowsTheCursorAndShowsLineFeeds() {
        var line = InputLine(String(repeating: "a", count: 30))
        let (text, cursor) = line.visible(columns: 10)
        #expect(DisplayText.width(of: text) <= 10)
        #expect(cursor == 9)
        line.moveHome()
        #expect(line.visible(columns: 10).cursorColumn == 0)
        #expect(InputLine("a\nb").visible(columns: 10).text == "a↵b")
    }
}
