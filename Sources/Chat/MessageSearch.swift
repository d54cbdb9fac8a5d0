public import Foundation

/// The one rule for finding text in messages, wherever it is searched: the open conversation,
/// every conversation in memory, the local history, and the highlighting on screen. A query
/// matches regardless of case and accents ("ecole" finds "École"); it is a plain string, never
/// a pattern.
public enum MessageSearch {
    /// Longer queries are cut to this many characters.
    public static let maximumQueryLength = 200
    /// Most hits a search across every conversation hands back, newest first.
    public static let maximumHits = 500

    static let options: String.CompareOptions = [.caseInsensitive, .diacriticInsensitive]

    /// The query as searched: trimmed of surrounding white space, at most `maximumQueryLength`.
    public static func normalized(_ query: String) -> String {
        String(query.trimmingCharacters(in: .whitespacesAndNewlines).prefix(maximumQueryLength))
    }

    public static func matches(_ text: String, _ query: String) -> Bool {
        !query.isEmpty && text.range(of: query, options: options) != nil
    }

    /// Where `query` occurs in `text`, in order, without overlaps.
    public static func ranges(of query: String, in text: String) -> [Range<String.Index>] {
        guard !query.isEmpty else { return [] }
        var found: [Range<String.Index>] = []
        var start = text.startIndex
        while start < text.endIndex, let range = text.range(of: query, options: options, range: start..<text.endIndex) {
            found.append(range)
            start = range.upperBound > range.lowerBound ? range.upperBound : text.index(after: range.lowerBound)
        }
        return found
    }
}

/// One message found by a search across conversations.
public struct SearchHit: Sendable, Hashable {
    public var userID: String
    /// The peer's name as last known (the server's, else the history's).
    public var username: String
    public var message: ChatMessage
    /// Its row in the local history, when it came from there: opening it loads back to it.
    public var historyID: Int64?

    public init(userID: String, username: String, message: ChatMessage, historyID: Int64? = nil) {
        self.userID = userID
        self.username = username
        self.message = message
        self.historyID = historyID
    }
}

extension ChatState {
    /// Every message in memory that matches `query`, newest first, at most `limit`.
    public func search(_ query: String, limit: Int = MessageSearch.maximumHits) -> [SearchHit] {
        let query = MessageSearch.normalized(query)
        guard !query.isEmpty else { return [] }
        var hits: [SearchHit] = []
        for id in order {
            guard let user = user(id) else { continue }
            for message in user.messages where MessageSearch.matches(message.content, query) {
                hits.append(SearchHit(userID: id, username: user.username, message: message))
            }
        }
        hits.sort { $0.message.at > $1.message.at }
        return Array(hits.prefix(limit))
    }
}
