public import Foundation

/// Where an Engine.IO server lives, and the WebSocket URL that reaches it.
///
/// `http(s)://` is mapped to `ws(s)://`; the Engine.IO path defaults to
/// `/socket.io/`; `EIO=4&transport=websocket` and any extra query items are
/// appended.
public struct EngineIOEndpoint: Sendable, Hashable {
    public enum Scheme: String, Sendable {
        case ws, wss
        public var isSecure: Bool { self == .wss }
    }

    public var scheme: Scheme
    public var host: String
    public var port: Int
    public var path: String
    public var query: [URLQueryItem]

    public static let defaultPath = "/socket.io/"

    /// - Parameters:
    ///   - url: `http://`, `https://`, `ws://` or `wss://`, with host and optional port.
    ///     A path in the URL is ignored unless `path` is nil (a URL path is the
    ///     namespace in socket.io-client, not the Engine.IO path).
    ///   - path: the Engine.IO path; `/socket.io/` when nil.
    ///   - query: extra query items sent with the handshake.
    public init(url: String, path: String? = nil, query: [URLQueryItem] = []) throws(EngineIOEndpointError) {
        guard let components = URLComponents(string: url), let rawScheme = components.scheme?.lowercased() else {
            throw .invalidURL(url)
        }
        switch rawScheme {
        case "http", "ws": scheme = .ws
        case "https", "wss": scheme = .wss
        default: throw .unsupportedScheme(rawScheme)
        }
        guard let host = components.host, !host.isEmpty else { throw .missingHost(url) }
        // An IPv6 address without its URL brackets: as a connection needs it.
        self.host = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        self.port = components.port ?? (scheme.isSecure ? 443 : 80)
        guard (1...65535).contains(self.port) else { throw .invalidURL(url) }
        var enginePath = path ?? Self.defaultPath
        if !enginePath.hasPrefix("/") { enginePath = "/" + enginePath }
        if !enginePath.hasSuffix("/") { enginePath += "/" }
        self.path = enginePath
        self.query = query
    }

    /// Whether `host` is an IPv4 or IPv6 address rather than a name.
    public var hostIsIPAddress: Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        let bare = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        return inet_pton(AF_INET, bare, &v4) == 1 || inet_pton(AF_INET6, bare, &v6) == 1
    }

    /// `ws(s)://host:port/path?EIO=4&transport=websocket[&extra…]`
    public var webSocketURL: String {
        let bracketed = host.contains(":") ? "[\(host)]" : host
        return "\(scheme.rawValue)://\(bracketed):\(port)\(requestTarget(transport: "websocket"))"
    }

    /// The `Host` header: the port only when it is not the scheme's.
    var hostHeader: String {
        let bracketed = host.contains(":") ? "[\(host)]" : host
        return port == (scheme.isSecure ? 443 : 80) ? bracketed : "\(bracketed):\(port)"
    }

    /// What an HTTP request asks for: `path?EIO=4&transport=…[&t=…][&sid=…][&extra…]`, names
    /// and values percent-encoded as JavaScript's `encodeURIComponent` does (a `+` too, which
    /// servers would read as a space).
    func requestTarget(transport: String, sid: String? = nil, cacheBuster: Int? = nil) -> String {
        var items = [URLQueryItem(name: "EIO", value: "4"), URLQueryItem(name: "transport", value: transport)]
        // engine.io-client's `t` on polling requests: no proxy answers one from its cache.
        if let cacheBuster { items.append(URLQueryItem(name: "t", value: String(cacheBuster, radix: 36))) }
        if let sid { items.append(URLQueryItem(name: "sid", value: sid)) }
        items += query
        let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()")
        func encoded(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? "" }
        let pathPart = path.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? path
        return pathPart + "?" + items.map { encoded($0.name) + "=" + encoded($0.value ?? "") }.joined(separator: "&")
    }
}

public enum EngineIOEndpointError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidURL(String)
    case unsupportedScheme(String)
    case missingHost(String)

    public var description: String {
        switch self {
        case .invalidURL(let url): return "not a valid server URL: \(url.debugDescription)"
        case .unsupportedScheme(let scheme):
            return "unsupported URL scheme \"\(scheme)\" (use http, https, ws or wss)"
        case .missingHost(let url): return "the server URL has no host: \(url.debugDescription)"
        }
    }
}
