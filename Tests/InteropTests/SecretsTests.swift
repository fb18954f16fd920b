import Foundation
import STUN
import Testing

/// Passwords, shared secrets and the admin token never leave the config file: not in the log
/// (at trace level), not in metrics, not in any admin response, not in check-config's output. And
/// a config file with secrets that every user of the host can read is warned about.
extension HeavyInteropTests {
    @Suite("Secrets stay secret", .serialized)
    struct SecretsTests {
        typealias Tools = TurnClientInteropTests
        static let password = "pw-7f3a9c-SECRET"
        static let sharedSecret = "ss-4b1d02-SECRET"
        static let token = "tok-99e2aa-SECRET"

        static let config = """
        {
          "realm": "tern.test", "workers": 2,
          "listeners": [{"transport": "udp", "address": "127.0.0.1", "port": 0}],
          "relay": {"ipv4": "127.0.0.1", "portRange": [61000, 61999]},
          "auth": {"users": {"alice": "\(password)"}, "secrets": ["\(sharedSecret)"]},
          "peers": {"allow": ["127.0.0.0/8"]},
          "admin": {"port": 0, "token": "\(token)", "perUserMetrics": true},
          "log": {"level": "trace"}
        }
        """

        /// The secrets, and what an eavesdropper could use instead of them (a REST password is the
        /// base64 HMAC of the secret, so it must not appear either).
        static func leaks(in text: String) -> [String] {
            [password, sharedSecret, token, "SECRET"].filter { text.contains($0) }
        }

        @Test("Not in the trace log, /metrics, /stats, /allocations, /users or check-config, after static and REST users relayed and failed")
        func neverShown() throws {
            let tern = try TernProcess(config: Self.config)
            defer { _ = tern.terminate() }
            #expect(tern.waitForLog("tern listening"), "\(tern.stderr)")
            let server = try #require(tern.boundListeners().first?.address)
            let admin = try #require(tern.adminAddress())
            let (peerPort, stopPeer) = try HeavyInteropTests.ServiceLifecycleTests.startPeer()
            defer { stopPeer() }
            // A static user, a REST user, and both with wrong passwords.
            let ok = try HeavyInteropTests.ServiceLifecycleTests.uclient(["-u", "alice", "-w", Self.password], server: server, peerPort: peerPort, messages: 5)
            #expect(ok.status == 0, "\(ok.output)")
            let rest = try HeavyInteropTests.ServiceLifecycleTests.uclient(["-W", Self.sharedSecret, "-u", "bob"], server: server, peerPort: peerPort, messages: 5)
            #expect(rest.status == 0, "\(rest.output)")
            _ = try HeavyInteropTests.ServiceLifecycleTests.uclient(["-u", "alice", "-w", "wrong-" + Self.password], server: server, peerPort: peerPort, messages: 1)
            var shown = tern.stderr
            for path in ["/metrics", "/stats", "/allocations", "/users/alice", "/users/bob", "/healthz", "/readyz"] {
                let r = try #require(httpRequest(admin, path, token: Self.token), "\(path)")
                #expect(r.status == 200, "\(path): \(r.status)")
                shown += r.body
            }
            // A wrong token gets nothing, and the answer does not echo it.
            let denied = try #require(httpRequest(admin, "/stats", token: "wrong-" + Self.token))
            #expect(denied.status == 401)
            shown += denied.body
            #expect(shown.contains("alice"), "the exchanges were not logged or shown at all")
            let url = try #require(tern.configURL)
            let check = try runTool(TernProcess.executableURL.path, ["check-config", url.path])
            shown += check.output
            #expect(Self.leaks(in: shown).isEmpty, "secrets shown: \(Self.leaks(in: shown))")
        }

        @Test("A world-readable config with secrets is warned about at start and by check-config; 0600 and 0640 are not")
        func permissionWarning() throws {
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("tern-secrets-\(UUID().uuidString).json")
            defer { try? FileManager.default.removeItem(at: url) }
            try Data(Self.config.utf8).write(to: url)
            for (mode, warned) in [(0o644, true), (0o604, true), (0o600, false), (0o640, false)] {
                chmod(url.path, mode_t(mode))
                let r = try runTool(TernProcess.executableURL.path, ["check-config", url.path])
                #expect(r.status == 0)
                #expect(r.output.contains("readable by every user") == warned, "mode \(String(mode, radix: 8)): \(r.output)")
            }
            // Without secrets there is nothing to warn about.
            let plain = FileManager.default.temporaryDirectory.appendingPathComponent("tern-plain-\(UUID().uuidString).json")
            defer { try? FileManager.default.removeItem(at: plain) }
            try Data(#"{"listeners": [{"transport": "udp", "port": 0}]}"#.utf8).write(to: plain)
            chmod(plain.path, 0o644)
            #expect(try !runTool(TernProcess.executableURL.path, ["check-config", plain.path]).output.contains("readable by every user"))
            // At start: the server's log says it (TernProcess writes its config 0644).
            let tern = try TernProcess(config: Self.config)
            defer { _ = tern.terminate() }
            #expect(tern.waitForLog("readable by every user"), "\(tern.stderr)")
        }
    }
}
