/// The fuzz targets: one function per decoder that reads network input, each taking the
/// fuzzer's bytes. Beyond "no crash, no sanitizer report", each checks what the code
/// promises about what it decoded and stops the process (`fatalError`) when that fails,
/// so libFuzzer keeps the input as a crash.
///
/// The same functions run under libFuzzer (`scripts/fuzz.sh`, one entry file per target in
/// `Fuzz/Entry`) and in `swift test`, which replays `Fuzz/Corpus` and `Fuzz/Regressions`.
public enum FuzzTarget: String, CaseIterable, Sendable, CustomStringConvertible {
    /// `JSONValue(parsing:)` and `serialized()`.
    case json
    /// One Engine.IO WebSocket frame: `EngineIOPacket(decodingUTF8:)`, `(decodingText:)`,
    /// `(decoding:)`, and `EngineIOHandshake(decoding:)`.
    case engineioPacket
    /// An HTTP long-polling body: `EngineIOPayload.decode(_:)`.
    case engineioPayload
    /// A sequence of text and binary frames into one `SocketIOPacketDecoder`.
    case socketioPacket
    /// The chat application's payloads and `Username.validate(_:)`.
    case chatPayloads
    /// A hostile server's frames through the client's decoders into the chat state.
    case client
    /// A terminal's bytes (or a hostile paste) through `KeyDecoder`.
    case terminalKeys

    public var description: String { rawValue }

    /// Runs this target on one input.
    public func run(_ input: UnsafeRawBufferPointer) {
        switch self {
        case .json: Fuzz.json(input)
        case .engineioPacket: Fuzz.engineioPacket(input)
        case .engineioPayload: Fuzz.engineioPayload(input)
        case .socketioPacket: Fuzz.socketioPacket(input)
        case .chatPayloads: Fuzz.chatPayloads(input)
        case .client: Fuzz.client(input)
        case .terminalKeys: Fuzz.terminalKeys(input)
        }
    }

    public func run(_ input: [UInt8]) {
        input.withUnsafeBytes { run($0) }
    }
}

/// The targets as functions, for the libFuzzer entry points.
public enum Fuzz {}

/// Stops the process when an invariant does not hold: the fuzzer records the input.
func require(
    _ condition: @autoclosure () -> Bool,
    _ message: @autoclosure () -> String,
    file: StaticString = #fileID,
    line: UInt = #line
) {
    if !condition() { fatalError("fuzz invariant violated: \(message())", file: file, line: line) }
}

extension UnsafeRawBufferPointer {
    /// The fuzzer's bytes as `UInt8`s (libFuzzer hands over `const uint8_t *`).
    var bytes: UnsafeBufferPointer<UInt8> { assumingMemoryBound(to: UInt8.self) }
}

extension String {
    /// The UTF-8 bytes, for comparisons that must be exact (`==` on `String` is canonical
    /// equivalence: "é" and "e\u{301}" are equal strings with different bytes on the wire).
    var bytes: [UInt8] { Array(utf8) }
}
