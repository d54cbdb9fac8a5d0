import Foundation

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
        Matcher(query).matches(text)
    }

    /// Where `query` occurs in `text`, in order, without overlaps.
    public static func ranges(of query: String, in text: String) -> [Range<String.Index>] {
        Matcher(query).ranges(in: text)
    }

    /// One query, ready to be matched against many texts. ASCII text against an ASCII query
    /// (most chat) is compared byte by byte, folding case; anything else goes through
    /// Foundation's comparison, which also folds accents.
    public struct Matcher: Sendable {
        public let query: String
        /// The query's bytes in lower case, when it is all ASCII.
        private let ascii: [UInt8]?

        public init(_ query: String) {
            self.query = query
            ascii = query.utf8.allSatisfy { $0 < 0x80 } ? query.utf8.map(Self.lower) : nil
        }

        public func matches(_ text: String) -> Bool {
            guard !query.isEmpty else { return false }
            if let ascii {
                // The query's bytes, found as they are (case aside), match whatever else the text
                // holds; not found, they may still match through an accent ("cafe" in "café"),
                // which only text beyond ASCII can have.
                let (found, allASCII) = Self.scan(ascii, in: text, limit: 1)
                if !found.isEmpty { return true }
                if allASCII { return false }
            }
            return text.range(of: query, options: options) != nil
        }

        /// Where the query occurs in `text`, in order, without overlaps: the first `limit`.
        public func ranges(in text: String, limit: Int = .max) -> [Range<String.Index>] {
            guard !query.isEmpty else { return [] }
            var found: [Range<String.Index>] = []
            if let ascii, case let (offsets, true) = Self.scan(ascii, in: text, limit: limit) {
                var index = text.utf8.startIndex
                var offset = 0
                for at in offsets {
                    index = text.utf8.index(index, offsetBy: at - offset)
                    let end = text.utf8.index(index, offsetBy: ascii.count)
                    found.append(index..<end)
                    offset = at
                }
                return found
            }
            var start = text.startIndex
            while found.count < limit, start < text.endIndex, let range = text.range(of: query, options: options, range: start..<text.endIndex) {
                found.append(range)
                start = range.upperBound > range.lowerBound ? range.upperBound : text.index(after: range.lowerBound)
            }
            return found
        }

        private static func lower(_ byte: UInt8) -> UInt8 { (0x41...0x5A).contains(byte) ? byte | 0x20 : byte }

        /// The byte offsets of the first `limit` occurrences of `needle` (lower-case ASCII) in
        /// the text's bytes, case aside, without overlaps; and whether the text is all ASCII.
        private static func scan(_ needle: [UInt8], in text: String, limit: Int) -> (found: [Int], allASCII: Bool) {
            var text = text
            return text.withUTF8 { bytes in
                var allASCII = true
                var found: [Int] = []
                let first = needle[0]
                var at = 0
                while at < bytes.count {
                    let byte = bytes[at]
                    if byte >= 0x80 { allASCII = false }
                    if found.count < limit, at + needle.count <= bytes.count, lower(byte) == first {
                        var k = 1
                        while k < needle.count, lower(bytes[at + k]) == needle[k] { k += 1 }
                        if k == needle.count {
                            found.append(at)
                            // Skipped bytes are ASCII (they matched the needle).
                            at += needle.count
                            continue
                        }
                    }
                    if found.count >= limit, !allASCII { break }
                    at += 1
                }
                return (found, allASCII)
            }
        }
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

    /// What makes two hits the same message, wherever they were found (a server's copy of a
    /// conversation carries the time it came, not the time it was said).
    public struct Key: Hashable, Sendable {
        let userID: String
        let content: String
        let fromSelf: Bool
    }

    public var key: Key { Key(userID: userID, content: message.content, fromSelf: message.fromSelf) }

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
        let matcher = MessageSearch.Matcher(query)
        var hits: [SearchHit] = []
        for id in order {
            guard let user = user(id) else { continue }
            for message in user.messages where matcher.matches(message.content) {
                hits.append(SearchHit(userID: id, username: user.username, message: message))
            }
        }
        hits.sort { $0.message.at > $1.message.at }
        return Array(hits.prefix(limit))
    }
}
