import Foundation
import STUN
import Testing

/// coturn's own client against the real `tern` binary: an independent implementation checking ours.
@Suite("tern serve with coturn's turnutils_stunclient", .serialized)
struct StunClientInteropTests {
    static let stunclient = "/usr/bin/turnutils_stunclient"

    /// "UDP reflexive addr: 127.0.0.1:51234" (the line turnutils_stunclient prints on success).
    static func reflexiveAddress(in output: String) -> TransportAddress? {
        for line in output.split(separator: "\n") where line.contains("reflexive addr:") {
            if let r = line.range(of: "reflexive addr:") {
                let text = line[r.upperBound...].trimmingCharacters(in: .whitespaces)
                if let a = TransportAddress(text) { return a }
                // IPv6 is printed without brackets: "::1:51234".
                if let colon = text.lastIndex(of: ":"), let ip = IPAddress(String(text[..<colon])),
                   let port = UInt16(text[text.index(after: colon)...]) {
                    return TransportAddress(ip: ip, port: port)
                }
            }
        }
        return nil
    }

    @Test("Ephemeral-port config, IPv4 and IPv6, with SOFTWARE")
    func configuredListeners() throws {
        let config = """
        {
          "software": "Tern interop",
          "workers": 2,
          "listeners": [
            {"transport": "udp", "address": "127.0.0.1", "port": 0},
            {"transport": "udp", "address": "::1", "port": 0}
          ],
          "log": {"level": "info"}
        }
        """
        let tern = try TernProcess(config: config)
        defer { _ = tern.terminate() }
        #expect(tern.waitForLog("tern listening"), "tern did not start: \(tern.stderr)")
        let bound = tern.boundListeners()
        #expect(bound.count == 2)
        for listener in bound {
            let host = listener.address.ip.description
            let result = try runTool(Self.stunclient, ["-p", "\(listener.address.port)", host])
            let reflexive = Self.reflexiveAddress(in: result.output)
            #expect(reflexive?.ip == listener.address.ip, "turnutils_stunclient said: \(result.output)")
        }
    }
}

@Suite("tern check-config")
struct CheckConfigTests {
    static var repoRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    @Test("config.example.json is valid")
    func exampleIsValid() throws {
        let example = Self.repoRoot.appendingPathComponent("config.example.json").path
        let result = try runTool(TernProcess.executableURL.path, ["check-config", example])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("OK"))
    }

    @Test("A wrong key is reported with its path and exit status 1")
    func badKey() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tern-bad-\(UUID().uuidString).json")
        try #"{"relay": {"portRang": [50000, 50100]}}"#.write(to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }
        let result = try runTool(TernProcess.executableURL.path, ["check-config", url.path])
        #expect(result.status == 1)
        #expect(result.output.contains("relay.portRang"), "\(result.output)")
    }
}
