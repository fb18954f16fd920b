import Foundation
import Testing
import TernFuzzing

/// Replays the fuzz targets' committed inputs (Fuzz/Corpus: seeds and what fuzzing kept;
/// Fuzz/Regressions: every input that once crashed a target) through the same bodies the libFuzzer
/// binaries run. A crash here is a regression; the fuzzing itself runs in CI through Fuzz/run.sh.
@Suite("Fuzz corpus and regressions replay")
struct FuzzCorpusTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz")

    static func inputs(_ target: String) -> [(String, [UInt8])] {
        var out: [(String, [UInt8])] = []
        for dir in ["Corpus", "Regressions"] {
            let d = root.appendingPathComponent(dir).appendingPathComponent(target)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: d.path)) ?? []
            for n in names.sorted() {
                if let data = FileManager.default.contents(atPath: d.appendingPathComponent(n).path) {
                    out.append(("\(dir)/\(target)/\(n)", Array(data)))
                }
            }
        }
        return out
    }

    @Test("Every committed input of each target runs clean", arguments: ["decode", "frame", "handle", "proxy"])
    func replay(target: String) {
        let inputs = Self.inputs(target)
        #expect(inputs.count >= 3, "no corpus for \(target) under \(Self.root.path)")
        for (_, bytes) in inputs {
            bytes.withUnsafeBytes { b in
                switch target {
                case "decode": FuzzTargets.decode(b)
                case "frame": FuzzTargets.frame(b)
                case "proxy": FuzzTargets.proxyHeader(b)
                default: FuzzTargets.handle(b)
                }
            }
        }
    }

    @Test("The handler seed reaches allocation, both relay directions and expiry")
    func seedReachesDeepPaths() throws {
        let seed = try #require(Self.inputs("handle").first { $0.0.hasSuffix("seed-relay-session") })
        let summary = seed.1.withUnsafeBytes { FuzzTargets.handle($0) }
        #expect(summary.allocationsCreated == 1)
        #expect(summary.sentToPeers == 2)          // ChannelData and a Send indication
        #expect(summary.forwardedToClients == 2)   // before and after the clock moved a minute
        #expect(summary.replies >= 5)
    }
}
