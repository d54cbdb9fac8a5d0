public import JSON

/// The payload of the `open` packet (engine.io-protocol v4, "Handshake").
///
/// Only `sid` is required: socket.io 3.x servers send `pingTimeout` 5000 and
/// no `maxPayload`, so every other field falls back to the v4 defaults.
public struct EngineIOHandshake: Sendable, Hashable {
    public var sid: String
    public var upgrades: [String]
    public var pingInterval: Duration
    public var pingTimeout: Duration
    /// Largest packet, in bytes, the server accepts.
    public var maxPayload: Int

    public static let defaultPingInterval: Duration = .milliseconds(25_000)
    public static let defaultPingTimeout: Duration = .milliseconds(20_000)
    public static let defaultMaxPayload = 1_000_000

    public init(
        sid: String,
        upgrades: [String] = [],
        pingInterval: Duration = defaultPingInterval,
        pingTimeout: Duration = defaultPingTimeout,
        maxPayload: Int = defaultMaxPayload
    ) {
        self.sid = sid
        self.upgrades = upgrades
        self.pingInterval = pingInterval
        self.pingTimeout = pingTimeout
        self.maxPayload = maxPayload
    }

    /// Parses the JSON text after the `0` of an open packet.
    public init(decoding text: String) throws(EngineIOParseError) {
        let json: JSONValue
        do {
            json = try JSONValue(parsing: text)
        } catch {
            throw .invalidHandshake(error.description)
        }
        guard case .object = json else { throw .invalidHandshake("not a JSON object") }
        guard let sid = json["sid"]?.stringValue, !sid.isEmpty else {
            throw .invalidHandshake("missing \"sid\"")
        }
        func milliseconds(_ key: String, default value: Duration) throws(EngineIOParseError) -> Duration {
            guard let field = json[key], !field.isNull else { return value }
            guard let ms = field.intValue, ms > 0, ms <= 86_400_000 else {
                throw .invalidHandshake("\"\(key)\" must be a positive number of milliseconds")
            }
            return .milliseconds(ms)
        }
        self.sid = sid
        self.upgrades = json["upgrades"]?.arrayValue?.compactMap(\.stringValue) ?? []
        self.pingInterval = try milliseconds("pingInterval", default: Self.defaultPingInterval)
        self.pingTimeout = try milliseconds("pingTimeout", default: Self.defaultPingTimeout)
        if let field = json["maxPayload"], !field.isNull {
            guard let max = field.intValue, max > 0 else {
                throw .invalidHandshake("\"maxPayload\" must be a positive number of bytes")
            }
            self.maxPayload = max
        } else {
            self.maxPayload = Self.defaultMaxPayload
        }
    }

    /// The JSON form, as a server sends it.
    public var json: JSONValue {
        [
            "sid": .string(sid),
            "upgrades": .array(upgrades.map(JSONValue.string)),
            "pingInterval": .int(pingInterval.wholeMilliseconds),
            "pingTimeout": .int(pingTimeout.wholeMilliseconds),
            "maxPayload": .int(maxPayload),
        ]
    }
}

extension Duration {
    /// Whole milliseconds, exactly. (`self / .milliseconds(1)` divides through a `Double`,
    /// which is inexact from about 295 s up: the handshake announced 295,148 ms for a
    /// pingInterval of 295,149, found by the fuzzer.)
    public var wholeMilliseconds: Int {
        let (seconds, attoseconds) = components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }
}
