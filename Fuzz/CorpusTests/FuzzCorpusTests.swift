import Foundation
import FuzzTargets
import Testing

/// Every committed fuzz input, run through its target as `scripts/fuzz.sh` runs it under
/// libFuzzer: the seed corpus (`Fuzz/Corpus/<target>`) and the inputs that once broke an
/// invariant (`Fuzz/Regressions/<target>`). A broken invariant stops the process, so each
/// input runs in an exit test: it fails that one test case, named after the file.
@Suite struct FuzzCorpusTests {
    /// `Fuzz/`, found from this file.
    static let fuzzDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

    /// "<target>/<Corpus|Regressions>/<file>" for every input.
    static let inputs: [String] = {
        var inputs: [String] = []
        for target in FuzzTarget.allCases {
            for folder in ["Corpus", "Regressions"] {
                let directory = fuzzDirectory.appending(path: folder).appending(path: target.rawValue)
                let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
                inputs += names.filter { !$0.hasPrefix(".") }.sorted().map { "\(target.rawValue)/\(folder)/\($0)" }
            }
        }
        return inputs
    }()

    @Test func everyTargetHasASeedCorpus() {
        for target in FuzzTarget.allCases {
            #expect(Self.inputs.contains { $0.hasPrefix("\(target.rawValue)/Corpus/") }, "no seed inputs for \(target)")
        }
    }

    @Test(arguments: inputs)
    func replay(input: String) async throws {
        let parts = input.split(separator: "/", maxSplits: 2).map(String.init)
        let file = Self.fuzzDirectory.appending(path: parts[1]).appending(path: parts[0]).appending(path: parts[2])
        let bytes = [UInt8](try Data(contentsOf: file))
        let target = parts[0]
        let passed = await #expect(processExitsWith: .success) { [target = target as String, bytes = bytes as [UInt8]] in
            FuzzTarget(rawValue: target)!.run(bytes)
        }
        guard passed == nil else { return }
        // It stopped: run it again to read which invariant broke, as its fatalError says.
        let failure = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            [target = target as String, bytes = bytes as [UInt8]] in
            FuzzTarget(rawValue: target)!.run(bytes)
        }
        if let failure {
            let stderr = String(decoding: failure.standardErrorContent, as: UTF8.self)
            let why = stderr.split(separator: "\n").first { $0.contains("Fatal error") } ?? Substring(stderr)
            Issue.record("\(input): \(why.prefix(2000))")
        }
    }
}
