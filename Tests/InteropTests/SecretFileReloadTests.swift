import Foundation
import STUN
import Testing

/// `tern serve` with its secrets in files (as a Kubernetes Secret volume or the Debian package's
/// generated secret gives them) and `relay.discoverExternal`, across a SIGHUP: the files are read
/// again, the admin token and the TURN REST secret change without a restart, and discovery runs
/// again with the reloaded servers. `tern probe` is the TURN client.
@Suite("Secrets from files and public-address discovery survive a reload (tern serve, SIGHUP)")
struct SecretFileReloadTests {
    @Test("Rotating the secret and token files and pointing discovery at a live server, then SIGHUP: old credentials and token refused, new ones accepted, /readyz turns 200 with the address settled")
    func rotateAndRediscover() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tern-rotate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func write(_ name: String, _ content: String) throws {
            let url = dir.appendingPathComponent(name)
            try content.write(to: url, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: url.path)
        }
        let (secretA, secretB) = ("secret-A-\(UUID().uuidString)", "secret-B-\(UUID().uuidString)")
        let (tokenA, tokenB) = ("token-A-0123456789abcdef", "token-B-0123456789abcdef")
        try write("turn-secret", secretA + "\n")
        try write("admin-token", tokenA + "\n")

        // The STUN server discovery will ask after the reload, and a port that never answers.
        let stun = try TernProcess(config: #"{"listeners": [{"transport": "udp", "address": "127.0.0.1", "port": 0}], "admin": {"enabled": false}}"#)
        defer { _ = stun.terminate() }
        #expect(stun.waitForLog("tern listening"), "\(stun.stderr)")
        let stunPort = try #require(stun.boundListeners().first?.address.port)
        let silent = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(silent) }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(silent, $0, length) } }
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(silent, $0, &length) } }
        let silentPort = UInt16(bigEndian: sin.sin_port)

        func config(discover port: UInt16) -> String {
            """
            {"realm": "tern.test", "workers": 1,
             "listeners": [{"transport": "udp", "address": "127.0.0.1", "port": 0}],
             "relay": {"ipv4": "127.0.0.1", "portRange": [61000, 61999], "discoverExternal": "127.0.0.1:\(port)"},
             "auth": {"secrets": [{"file": "\(dir.path)/turn-secret"}]},
             "peers": {"allow": ["127.0.0.0/8"]},
             "admin": {"port": 0, "token": {"file": "\(dir.path)/admin-token"}}}
            """
        }
        let tern = try TernProcess(config: config(discover: silentPort))
        defer { _ = tern.terminate() }
        #expect(tern.waitForLog("tern listening"), "\(tern.stderr)")
        let server = try #require(tern.boundListeners().first?.address)
        let admin = try #require(tern.adminAddress())
        let configURL = try #require(tern.configURL)

        // Nobody answers discovery: not ready, and /stats says why. The probes need no token.
        #expect(httpRequest(admin, "/healthz")?.status == 200)
        #expect(httpRequest(admin, "/readyz")?.status == 503)
        #expect(tern.waitForLog("relay address discovery failed"), "\(tern.stderr)")
        let before = try #require(externalAddresses(admin, token: tokenA)?.first)
        #expect(before["state"] as? String == "failed", "\(before)")
        #expect(before["source"] as? String == "127.0.0.1:\(silentPort)")
        #expect(httpRequest(admin, "/stats")?.status == 401)
        // The secret from the file authenticates, but no relay address is handed out while the
        // public one is unknown: 440, not an address nobody outside could reach.
        let early = try probe(server, secret: secretA)
        #expect(early.status == 1 && early.output.contains("440"), "\(early.output)")

        // Rotate both files, point discovery at the live server, reload.
        try write("turn-secret", secretB + "\n")
        try write("admin-token", tokenB + "\n")
        try config(discover: stunPort).write(to: configURL, atomically: true, encoding: .utf8)
        kill(tern.process.processIdentifier, SIGHUP)
        #expect(tern.waitForLog("reload: done"), "\(tern.stderr)")
        #expect(!tern.stderr.contains("takes effect at the next restart"), "a token or discovery change is not restart-only: \(tern.stderr)")

        #expect(httpRequest(admin, "/stats", token: tokenA)?.status == 401, "the old token is refused")
        #expect(httpRequest(admin, "/stats", token: tokenB)?.status == 200, "the new token is accepted")
        var ready = false
        for _ in 0..<100 where !ready {
            ready = httpRequest(admin, "/readyz")?.status == 200
            if !ready { Thread.sleep(forTimeInterval: 0.1) }
        }
        #expect(ready, "discovery did not settle after the reload: \(tern.stderr)")
        let after = try #require(externalAddresses(admin, token: tokenB)?.first)
        // 127.0.0.1 is this host's own address: no NAT, nothing to advertise beyond it.
        #expect(after["state"] as? String == "direct", "\(after)")
        #expect(after["source"] as? String == "127.0.0.1:\(stunPort)")
        #expect((after["local"] as? String).flatMap { TransportAddress($0) }.map { (61000...61999).contains($0.port) } == true,
                "the Binding went out from a relay-range port: \(after)")
        #expect(try probe(server, secret: secretB).status == 0, "a credential of the new secret")
        #expect(try probe(server, secret: secretA).status == 1, "a credential of the old secret is refused")
    }

    func externalAddresses(_ admin: TransportAddress, token: String) -> [[String: Any]]? {
        guard let body = httpRequest(admin, "/stats", token: token)?.body,
              let o = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return nil }
        return o["externalAddresses"] as? [[String: Any]]
    }

    func probe(_ server: TransportAddress, secret: String) throws -> (status: Int32, output: String) {
        try runTool(TernProcess.executableURL.path, ["probe", "turn:\(server)", "--secret", secret, "--count", "5", "--timeout", "1000"])
    }
}
