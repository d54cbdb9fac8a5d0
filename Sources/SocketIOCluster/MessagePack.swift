public import JSON

/// MessagePack for `JSONValue`s: how the PostgreSQL adapter writes a message that is too
/// large for a notification (8,000 bytes) or holds bytes, into its attachments table
/// (`@msgpack/msgpack`'s encoding: the smallest form of each integer and string, floats as
/// float64, bytes as bin, objects as maps with string keys).
///
/// Decoding reads what another server wrote: every length is checked against what is left,
/// nesting is bounded, and a map key must be a string.
public enum MessagePack {
    public struct DecodingError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Deeper nesting than this is refused (as `JSONParser` refuses it).
    public static let maximumDepth = 256

    public static func encode(_ value: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        encode(value, into: &out)
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodingError) -> JSONValue {
        var reader = Reader(bytes: bytes)
        let value = try reader.value(depth: 0)
        guard reader.offset == bytes.count else { throw DecodingError(description: "\(bytes.count - reader.offset) bytes after the value") }
        return value
    }

    // MARK: Encoding

    private static func encode(_ value: JSONValue, into out: inout [UInt8]) {
        switch value {
        case .null: out.append(0xC0)
        case .bool(let b): out.append(b ? 0xC3 : 0xC2)
        case .int(let i): encode(integer: i, into: &out)
        case .double(let d):
            // Whole numbers go as integers (JavaScript has only numbers; msgpack's encoder
            // writes a whole one as an int).
            if d.rounded() == d, abs(d) < 9.0e15 {
                encode(integer: Int(d), into: &out)
            } else {
                out.append(0xCB)
                append(d.bitPattern, bytes: 8, to: &out)
            }
        case .string(let s):
            let utf8 = Array(s.utf8)
            header(count: utf8.count, fix: (0xA0, 32), eight: 0xD9, sixteen: 0xDA, thirtyTwo: 0xDB, into: &out)
            out += utf8
        case .binary(let bytes):
            header(count: bytes.count, fix: nil, eight: 0xC4, sixteen: 0xC5, thirtyTwo: 0xC6, into: &out)
            out += bytes
        case .array(let items):
            header(count: items.count, fix: (0x90, 16), eight: nil, sixteen: 0xDC, thirtyTwo: 0xDD, into: &out)
            for item in items { encode(item, into: &out) }
        case .object(let object):
            header(count: object.count, fix: (0x80, 16), eight: nil, sixteen: 0xDE, thirtyTwo: 0xDF, into: &out)
            for (key, item) in object {
                encode(.string(key), into: &out)
                encode(item, into: &out)
            }
        }
    }

    /// The length of a string, bytes, an array or a map, in its smallest form: the count in
    /// the type byte (`fix`, below its limit), then 1, 2 or 4 bytes of count (a form a type
    /// lacks is nil).
    private static func header(count: Int, fix: (base: UInt8, limit: Int)?, eight: UInt8?, sixteen: UInt8, thirtyTwo: UInt8, into out: inout [UInt8]) {
        if let fix, count < fix.limit {
            out.append(fix.base | UInt8(count))
        } else if let eight, count < 256 {
            out += [eight, UInt8(count)]
        } else if count < 65_536 {
            out.append(sixteen)
            append(UInt64(count), bytes: 2, to: &out)
        } else {
            out.append(thirtyTwo)
            append(UInt64(count), bytes: 4, to: &out)
        }
    }

    private static func encode(integer i: Int, into out: inout [UInt8]) {
        switch i {
        case 0...0x7F: out.append(UInt8(i))
        case -32..<0: out.append(UInt8(bitPattern: Int8(i)))
        case 0x80...0xFF: out += [0xCC, UInt8(i)]
        case 0x100...0xFFFF:
            out.append(0xCD)
            append(UInt64(i), bytes: 2, to: &out)
        case 0x1_0000...0xFFFF_FFFF:
            out.append(0xCE)
            append(UInt64(i), bytes: 4, to: &out)
        case -128..<(-32): out += [0xD0, UInt8(bitPattern: Int8(i))]
        case -32_768..<(-128):
            out.append(0xD1)
            append(UInt64(bitPattern: Int64(i)), bytes: 2, to: &out)
        case Int(Int32.min)..<(-32_768):
            out.append(0xD2)
            append(UInt64(bitPattern: Int64(i)), bytes: 4, to: &out)
        default:
            out.append(i < 0 ? 0xD3 : 0xCF)
            append(UInt64(bitPattern: Int64(i)), bytes: 8, to: &out)
        }
    }

    /// The low `bytes` bytes of `value`, big-endian.
    private static func append(_ value: UInt64, bytes: Int, to out: inout [UInt8]) {
        for shift in stride(from: (bytes - 1) * 8, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    // MARK: Decoding

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0

        mutating func take(_ count: Int) throws(DecodingError) -> ArraySlice<UInt8> {
            guard count >= 0, count <= bytes.count - offset else { throw DecodingError(description: "truncated at byte \(offset)") }
            defer { offset += count }
            return bytes[offset..<(offset + count)]
        }

        mutating func number(_ count: Int) throws(DecodingError) -> UInt64 {
            try take(count).reduce(0) { $0 << 8 | UInt64($1) }
        }

        mutating func value(depth: Int) throws(DecodingError) -> JSONValue {
            guard depth < MessagePack.maximumDepth else { throw DecodingError(description: "nested too deep") }
            let byte = try take(1).first!
            switch byte {
            case 0x00...0x7F: return .int(Int(byte))
            case 0xE0...0xFF: return .int(Int(Int8(bitPattern: byte)))
            case 0x80...0x8F: return try map(count: Int(byte & 0x0F), depth: depth)
            case 0x90...0x9F: return try array(count: Int(byte & 0x0F), depth: depth)
            case 0xA0...0xBF: return try string(count: Int(byte & 0x1F))
            case 0xC0: return .null
            case 0xC2: return .bool(false)
            case 0xC3: return .bool(true)
            case 0xC4: return .binary(Array(try take(Int(try number(1)))))
            case 0xC5: return .binary(Array(try take(Int(try number(2)))))
            case 0xC6: return .binary(Array(try take(Int(try number(4)))))
            case 0xCA: return .double(Double(Float(bitPattern: UInt32(try number(4)))))
            case 0xCB: return .double(Double(bitPattern: try number(8)))
            case 0xCC: return .int(Int(try number(1)))
            case 0xCD: return .int(Int(try number(2)))
            case 0xCE: return .int(Int(try number(4)))
            case 0xCF:
                let n = try number(8)
                return n <= UInt64(Int.max) ? .int(Int(n)) : .double(Double(n))
            case 0xD0: return .int(Int(Int8(truncatingIfNeeded: try number(1))))
            case 0xD1: return .int(Int(Int16(truncatingIfNeeded: try number(2))))
            case 0xD2: return .int(Int(Int32(truncatingIfNeeded: try number(4))))
            case 0xD3: return .int(Int(Int64(bitPattern: try number(8))))
            case 0xD9: return try string(count: Int(try number(1)))
            case 0xDA: return try string(count: Int(try number(2)))
            case 0xDB: return try string(count: Int(try number(4)))
            case 0xDC: return try array(count: Int(try number(2)), depth: depth)
            case 0xDD: return try array(count: Int(try number(4)), depth: depth)
            case 0xDE: return try map(count: Int(try number(2)), depth: depth)
            case 0xDF: return try map(count: Int(try number(4)), depth: depth)
            default: throw DecodingError(description: "unsupported type byte 0x\(String(byte, radix: 16)) at byte \(offset - 1)")
            }
        }

        mutating func string(count: Int) throws(DecodingError) -> JSONValue {
            let raw = try take(count)
            guard let text = String(validating: raw, as: UTF8.self) else { throw DecodingError(description: "a string that is not UTF-8") }
            return .string(text)
        }

        mutating func array(count: Int, depth: Int) throws(DecodingError) -> JSONValue {
            // Each element takes a byte at least: a count beyond what is left is a lie.
            guard count <= bytes.count - offset else { throw DecodingError(description: "an array longer than the bytes left") }
            var items: [JSONValue] = []
            items.reserveCapacity(count)
            for _ in 0..<count { items.append(try value(depth: depth + 1)) }
            return .array(items)
        }

        mutating func map(count: Int, depth: Int) throws(DecodingError) -> JSONValue {
            guard count <= (bytes.count - offset) / 2 else { throw DecodingError(description: "a map longer than the bytes left") }
            var object = JSONObject()
            for _ in 0..<count {
                guard case .string(let key) = try value(depth: depth + 1) else { throw DecodingError(description: "a map key that is not a string") }
                object[key] = try value(depth: depth + 1)
            }
            return .object(object)
        }
    }
}
