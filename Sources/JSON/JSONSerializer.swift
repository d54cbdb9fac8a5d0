import InertText

extension JSONValue {
    /// Compact JSON text, as `JSON.stringify` writes it: no whitespace, object
    /// keys sorted (so output is deterministic), non-ASCII kept as UTF-8,
    /// control characters escaped, non-finite numbers as `null`.
    ///
    /// `binary` has no JSON form and is written as `null`; the Socket.IO
    /// encoder replaces it with an attachment placeholder before calling this.
    public func serialized() -> String {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        write(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// JSON for a terminal to show (headless output): as `serialized()`, with every character
    /// a terminal could act on (`InertText.isActive`: the C1 controls, DEL, the bidi controls
    /// and U+2028/U+2029, besides the C0 controls) or a reader could not see (`isHidden`)
    /// written as `\uXXXX`. It parses to the same
    /// value; only how it reads in a terminal changes.
    public func serializedInert() -> String {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        write(to: &out, inert: true)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the compact JSON text of this value to `out`.
    public func write(to out: inout [UInt8]) {
        write(to: &out, inert: false)
    }

    private func write(to out: inout [UInt8], inert: Bool) {
        switch self {
        case .null, .binary: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let i): out.append(contentsOf: String(i).utf8)
        case .double(let d): JSONValue.writeDouble(d, to: &out)
        case .string(let s): inert ? JSONValue.writeInertString(s, to: &out) : JSONValue.writeString(s, to: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (i, element) in elements.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                element.write(to: &out, inert: inert)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, member) in members.sorted(by: { $0.key < $1.key }).enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                inert ? JSONValue.writeInertString(member.key, to: &out) : JSONValue.writeString(member.key, to: &out)
                out.append(UInt8(ascii: ":"))
                member.value.write(to: &out, inert: inert)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func writeDouble(_ d: Double, to out: inout [UInt8]) {
        guard d.isFinite else {
            out.append(contentsOf: "null".utf8)
            return
        }
        // JavaScript writes integral doubles without a fraction.
        if d.rounded() == d, abs(d) < 1e15 {
            out.append(contentsOf: String(Int(d)).utf8)
        } else {
            out.append(contentsOf: d.description.utf8)
        }
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    static func writeString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 { writeByte(b, to: &out) }
        out.append(UInt8(ascii: "\""))
    }

    /// A string for `serializedInert`: what a terminal could act on as `\uXXXX`.
    static func writeInertString(_ s: String, to out: inout [UInt8]) {
        // Fast path: below DEL, the ordinary escapes are the inert ones.
        guard s.unicodeScalars.contains(where: { $0.value >= 0x7F && InertText.isEscaped($0) }) else {
            return writeString(s, to: &out)
        }
        out.append(UInt8(ascii: "\""))
        for scalar in s.unicodeScalars {
            if scalar.value < 0x7F {
                writeByte(UInt8(scalar.value), to: &out)
            } else if InertText.isEscaped(scalar) {
                // JSON escapes UTF-16 units: a scalar past U+FFFF (a tag character) as two.
                for unit in String(scalar).utf16 {
                    out.append(contentsOf: "\\u".utf8)
                    for shift in [12, 8, 4, 0] { out.append(hexDigits[Int(unit >> UInt16(shift)) & 0xF]) }
                }
            } else {
                UTF8.encode(scalar) { out.append($0) }
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    @inline(__always)
    static func writeByte(_ b: UInt8, to out: inout [UInt8]) {
        switch b {
        case UInt8(ascii: "\""): out.append(0x5C); out.append(b)
        case UInt8(ascii: "\\"): out.append(0x5C); out.append(b)
        case 0x0A: out.append(0x5C); out.append(UInt8(ascii: "n"))
        case 0x0D: out.append(0x5C); out.append(UInt8(ascii: "r"))
        case 0x09: out.append(0x5C); out.append(UInt8(ascii: "t"))
        case 0x08: out.append(0x5C); out.append(UInt8(ascii: "b"))
        case 0x0C: out.append(0x5C); out.append(UInt8(ascii: "f"))
        case 0..<0x20:
            out.append(contentsOf: "\\u00".utf8)
            out.append(hexDigits[Int(b >> 4)])
            out.append(hexDigits[Int(b & 0xF)])
        default: out.append(b)
        }
    }
}
