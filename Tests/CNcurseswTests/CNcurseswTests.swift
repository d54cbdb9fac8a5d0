import CNcursesw
import Testing

/// The shim must expose the wide-character API and the macro wrappers; ncurses
/// itself is exercised by the terminal front end's own tests.
@Suite struct CNcurseswShimTests {
    @Test func wideCharacterWidthsMatchTheCLibrary() {
        setlocale(LC_ALL, "C.UTF-8")
        #expect(parley_wcwidth(0x61) == 1)  // a
        #expect(parley_wcwidth(0x4E2D) == 2)  // 中
        #expect(parley_wcwidth(0x1F600) == 2)  // 😀
        #expect(parley_wcwidth(0x07) == -1)  // BEL is not printable
    }

    @Test func macroWrappersAreCallable() {
        #expect(parley_key_f(1) == 265)
        #expect(parley_color_pair(1) != 0)
    }
}
