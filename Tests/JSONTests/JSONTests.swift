import JSON
import InertText
import Testing

@Suite struct JSONParsingTests {
    @Test func primitives() throws {
        #expect(try JSONValue(parsing: "null") == .null)
        #expect(try JSONValue(parsing: "true") == .bool(true))
        #expect(try JSONValue(parsing: " false ") == .bool(false))
        #expect(try JSONValue(parsing: "0") == .int(0))
        #expect(try JSONValue(parsing: "-42") == .int(-42))
        #expect(try JSONValue(parsing: "1.5") == .double(1.5))
        #expect(try JSONValue(parsing: "-2e3") == .double(-2000))
        #expect(try JSONValue(parsing: "9223372036854775807") == .int(Int.max))
        #expect(try JSONValue(parsing: "92233720368547758080") == .double(92233720368547758080))
        #expect(try JSONValue(parsing: "\"hi\"") == .string("hi"))
    }

    @Test func nested() throws {
        let value = try JSONValue(parsing: #"{"a":[1,{"b":null}],"c":"d"}"#)
        #expect(value == ["a": [1, ["b": nil]], "c": "d"])
        #expect(value["a"]?.arrayValue?.count == 2)
        #expect(value["c"]?.stringValue == "d")
        #expect(value["missing"] == nil)
    }

    @Test func stringEscapes() throws {
        #expect(try JSONValue(parsing: #""a\"b\\c\/d\b\f\n\r\t""#) == .string("a\"b\\c/d\u{8}\u{c}\n\r\t"))
        #expect(try JSONValue(parsing: #""\u00e9\u4e2d""#) == .string("é中"))
        // A surrogate pair is one scalar; a lone surrogate becomes U+FFFD.
        #expect(try JSONValue(parsing: #""\ud83d\ude00""#) == .string("😀"))
        #expect(try JSONValue(parsing: #""\ud83dx""#) == .string("\u{FFFD}x"))
        #expect(try JSONValue(parsing: #""\ude00""#) == .string("\u{FFFD}"))
        #expect(try JSONValue(parsing: "\"héllo 中文 😀\"") == .string("héllo 中文 😀"))
    }

    @Test func invalidUTF8IsRepairedNotRefused() throws {
        let bytes: [UInt8] = [0x22, 0x61, 0xFF, 0x62, 0x22]
        #expect(try JSONValue(parsingUTF8: bytes) == .string("a\u{FFFD}b"))
    }

    @Test(arguments: [
        "", " ", "[", "{", "[1,", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "01", "-", "1.", "1e", ".5",
        "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12\"", "\"a\u{01}b\"", "[1] 2", "{}}", "NaN", "'a'",
    ])
    func malformedInputIsAnError(text: String) {
        #expect(throws: JSONError.self) { try JSONValue(parsing: text) }
    }

    @Test func errorsSayWhere() {
        do {
            _ = try JSONValue(parsing: "[1, x]")
            Issue.record("expected an error")
        } catch {
            #expect(error.offset == 4)
            #expect(error.description.contains("byte 4"))
        }
    }

    @Test func deepNestingIsRefusedNotACrash() {
        let bomb = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONError(reason: .tooDeep(limit: JSONValue.maximumDepth), offset: JSONValue.maximumDepth)) {
            try JSONValue(parsing: bomb)
        }
        let fine = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: Never.self) { try JSONValue(parsing: fine) }
    }
}

@Suite struct JSONSerializingTests {
    @Test func compactWithSortedKeys() {
        let value: JSONValue = ["b": 1, "a": [true, nil, "x"], "c": ["z": 1.5]]
        #expect(value.serialized() == #"{"a":[true,null,"x"],"b":1,"c":{"z":1.5}}"#)
    }

    @Test func escapesWhatJSONRequiresAndKeepsUnicode() {
        let value: JSONValue = .string("q\"b\\n\n\t\u{1}\u{1f} é中😀")
        #expect(value.serialized() == #""q\"b\\n\n\t\u0001\u001f é中😀""#)
    }

    /// Headless output is read in terminals: everything a terminal could act on is escaped,
    /// not just C0 (U+009B is CSI by itself, U+202E reverses what follows, U+2028 ends a line
    /// in JavaScript), and the JSON still parses to the same strings.
    @Test func inertJSONEscapesWhatATerminalCouldActOn() throws {
        let active = "esc\u{1B}[2J del\u{7F} csi\u{9B}31m c1\u{85} rlo\u{202E} lri\u{2066} pdi\u{2069} lrm\u{200E} rlm\u{200F} alm\u{061C} ls\u{2028} ps\u{2029}"
        // Hidden ones too (zero-width space, byte order mark, a tag character past U+FFFF).
        let value: JSONValue = ["content": .string(active), "key\u{202E}": "é中😀 \u{200B}zwsp \u{FEFF}bom \u{E0041}tag"]
        let text = value.serializedInert()
        #expect(text == #"{"content":"esc\u001b[2J del\u007f csi\u009b31m c1\u0085 rlo\u202e lri\u2066 pdi\u2069 lrm\u200e rlm\u200f alm\u061c ls\u2028 ps\u2029","key\u202e":"é中😀 \u200bzwsp \ufeffbom \udb40\udc41tag"}"#)
        #expect(!text.unicodeScalars.contains(where: InertText.isEscaped))
        #expect(try JSONValue(parsing: text) == value)
        // What is not active stays as it is, and the wire form is unchanged.
        #expect(JSONValue.string("héllo 中文 😀").serializedInert() == #""héllo 中文 😀""#)
        #expect(JSONValue.string("a\u{9B}b").serialized() == "\"a\u{9B}b\"")
    }

    @Test func numbersAsJavaScriptWritesThem() {
        #expect(JSONValue.double(3).serialized() == "3")
        #expect(JSONValue.double(0.1).serialized() == "0.1")
        #expect(JSONValue.double(.nan).serialized() == "null")
        #expect(JSONValue.double(.infinity).serialized() == "null")
        #expect(JSONValue.int(-7).serialized() == "-7")
    }

    @Test(arguments: [
        #"{"content":"hello","from":"u1","to":"u2"}"#,
        #"[1,-2,3.25,"s",true,false,null,{},[]]"#,
        #"{"nested":{"deeper":{"k":["\u0000","\"","\\"]}}}"#,
        #""emoji 😀 and 中文""#,
    ])
    func roundTrip(text: String) throws {
        let value = try JSONValue(parsing: text)
        #expect(try JSONValue(parsing: value.serialized()) == value)
    }
}
