import JSON
import Testing

@Suite struct JSONObjectTests {
    @Test func aRepeatedKeyKeepsTheLastValueAsJavaScriptDoes() throws {
        let value = try JSONValue(parsing: #"{"a":1,"b":2,"a":3}"#)
        let object = try #require(value.objectValue)
        #expect(object.count == 2)
        #expect(object["a"] == 3)
        #expect(object.keys == ["a", "b"])
    }

    @Test func memberOrderDoesNotMatterForEqualityOrHashing() throws {
        let a = try JSONValue(parsing: #"{"x":1,"y":[true,null],"z":"s"}"#)
        let b = try JSONValue(parsing: #"{"z":"s","x":1,"y":[true,null]}"#)
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        #expect(a != (try JSONValue(parsing: #"{"z":"s","x":2,"y":[true,null]}"#)))
        #expect(a != (try JSONValue(parsing: #"{"x":1,"y":[true,null]}"#)))
    }

    /// Past the threshold the object keeps a hash index: lookups, updates, removals
    /// and duplicates behave the same, and a large hostile object parses in linear time.
    @Test func largeObjectsBehaveTheSame() throws {
        let count = 50_000
        var text = "{"
        for i in 0..<count { text += #""k\#(i)":\#(i),"# }
        text += #""k7":"again"}"#
        let value = try JSONValue(parsing: text)
        var object = try #require(value.objectValue)
        #expect(object.count == count)
        #expect(object["k7"] == "again")
        #expect(object["k49999"] == .int(49_999))
        #expect(object["nope"] == nil)
        object["k3"] = nil
        #expect(object.count == count - 1)
        #expect(object["k3"] == nil)
        #expect(object["k4"] == 4)
        object["new"] = true
        #expect(object["new"] == true)
        #expect(object.keys.last == "new")
    }

    @Test func growingPastTheThresholdKeepsEveryMember() {
        var object = JSONObject()
        for i in 0..<40 { object["m\(i)"] = .int(i) }
        for i in 0..<40 { #expect(object["m\(i)"] == .int(i)) }
        for i in stride(from: 0, to: 40, by: 2) { object["m\(i)"] = nil }
        #expect(object.count == 20)
        for i in 0..<40 { #expect(object["m\(i)"] == (i.isMultiple(of: 2) ? nil : .int(i))) }
    }

    @Test func serializesWithSortedKeysWhateverTheOrder() throws {
        let value = try JSONValue(parsing: #"{"b":1,"a":{"d":2,"c":3}}"#)
        #expect(value.serialized() == #"{"a":{"c":3,"d":2},"b":1}"#)
    }
}
