import Logging

/// Writes through another handler, with every character that could act on a terminal or
/// split a log line made visible first: C0 and C1 controls (ESC, CSI), DEL, bidi controls
/// and the line and paragraph separators become `\u{…}`. A log line may quote what a client
/// sent (a reason, a namespace); read in a terminal, it must not drive the terminal.
struct InertLogHandler: LogHandler {
    var inner: any LogHandler

    var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        var event = event
        event.message = Logger.Message(stringLiteral: Self.inert(event.message.description))
        event.metadata = event.metadata.map(Self.inert)
        inner.log(event: event)
    }

    static func inert(_ metadata: Logger.Metadata) -> Logger.Metadata {
        var out: Logger.Metadata = [:]
        for (key, value) in metadata { out[inert(key)] = inert(value) }
        return out
    }

    static func inert(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let text): return .string(inert(text))
        case .stringConvertible(let convertible): return .string(inert(convertible.description))
        case .array(let values): return .array(values.map(inert))
        case .dictionary(let members): return .dictionary(inert(members))
        }
    }

    /// The text with active characters written as `\u{…}`, and a backslash as `\\` (so
    /// that a client cannot make text that reads like an escaped character).
    static func inert(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { isActive($0) || $0 == "\\" }) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if isActive(scalar) {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else if scalar == "\\" {
                out += "\\\\"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func isActive(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x061C, 0x200E, 0x200F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }
}
