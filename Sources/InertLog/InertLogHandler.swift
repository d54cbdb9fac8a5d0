public import Logging
import InertText

/// Writes through another handler, with every character that could act on a terminal or
/// split a log line made visible first: C0 and C1 controls (ESC, CSI), DEL, bidi controls
/// and the line and paragraph separators become `\u{…}`. A log line may quote what a client
/// sent (a reason, a namespace); read in a terminal, it must not drive the terminal.
public struct InertLogHandler: LogHandler {
    public var inner: any LogHandler

    public init(inner: any LogHandler) {
        self.inner = inner
    }

    public var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    public var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = Self.inert(newValue) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: Self.inert(key)] = newValue.map(Self.inert) }
    }

    public func log(event: LogEvent) {
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

    static func inert(_ text: String) -> String { InertText.escaped(text) }
}
