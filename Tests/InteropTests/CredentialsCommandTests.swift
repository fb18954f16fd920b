import Foundation
import STUN
import TernCore
import Testing

/// `tern credentials`, run as an operator runs it: the built binary, its printed output, and the
/// server-side `CredentialStore` accepting what it printed.
@Suite("tern credentials")
struct CredentialsCommandTests {
    static var tern: String { TernProcess.executableURL.path }

    /// The "key: value" lines and the JSON line of the output.
    static func parse(_ output: String) -> (fields: [String: String], json: String?) {
        var fields: [String: String] = [:]
        var json: String?
        for line in output.split(separator: "\n") {
            if line.hasPrefix("{") { json = String(line); continue }
            if let r = line.range(of: ": ") {
                fields[String(line[..<r.lowerBound])] = String(line[r.upperBound...])
            }
        }
        return (fields, json)
    }

    @Test("Prints a username, password, expiry and an iceServers entry that the server accepts")
    func mintsValidCredentials() throws {
        let before = UInt64(Date().timeIntervalSince1970)
        let result = try runTool(Self.tern, ["credentials", "--secret", "s3cret", "--user", "alice", "--ttl", "1h",
                                             "--url", "turn:127.0.0.1:3478"])
        let after = UInt64(Date().timeIntervalSince1970)
        #expect(result.status == 0, "\(result.output)")
        let (fields, json) = Self.parse(result.output)
        let username = try #require(fields["username"], "\(result.output)")
        let password = try #require(fields["password"])
        let expires = try #require(fields["expires"])

        // "<expiry>:alice", expiry about now + 3600.
        let parts = username.split(separator: ":", maxSplits: 1)
        #expect(parts.count == 2 && parts.last == "alice")
        let expiry = try #require(parts.first.flatMap { UInt64($0) })
        #expect(expiry >= before + 3600 && expiry <= after + 3600)

        // The password is the TURN REST API password, independently recomputed.
        #expect(password == CredentialStore.restPassword(secret: "s3cret", username: username))
        #expect(password.count == 28 && password.hasSuffix("="))

        // RFC 3339 UTC expiry matching the timestamp.
        let formatter = ISO8601DateFormatter()
        let date = try #require(formatter.date(from: expires), "\(expires)")
        #expect(UInt64(date.timeIntervalSince1970) == expiry)
        #expect(expires.hasSuffix("Z"))

        // The JSON line: {"urls":[...],"username":...,"credential":...}.
        let jsonLine = try #require(json, "\(result.output)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(jsonLine.utf8)) as? [String: Any])
        #expect(Set(object.keys) == ["urls", "username", "credential"])
        #expect(object["urls"] as? [String] == ["turn:127.0.0.1:3478"])
        #expect(object["username"] as? String == username)
        #expect(object["credential"] as? String == password)

        // A server with the same secret (second in a rotation) accepts it until it expires.
        let store = CredentialStore(realm: "tern.test", users: [:], secrets: ["other", "s3cret"])
        let key = LongTermKey.md5(username: username, realm: "tern.test", password: password)
        guard case .keys(let keys) = store.lookup(username: username, algorithm: .md5, now: after) else {
            Issue.record("not accepted")
            return
        }
        #expect(keys.contains(key))
        #expect(store.lookup(username: username, algorithm: .md5, now: expiry + 1) == .expired)
    }

    @Test("Repeated --url options all go into the iceServers entry; the default is documented")
    func urls() throws {
        let result = try runTool(Self.tern, ["credentials", "--secret", "s", "--user", "bob \"q\"", "--ttl", "90m",
                                             "--url", "turn:a.example:3478?transport=udp", "--url", "turns:a.example:5349"])
        #expect(result.status == 0, "\(result.output)")
        let jsonLine = try #require(Self.parse(result.output).json)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(jsonLine.utf8)) as? [String: Any])
        #expect(object["urls"] as? [String] == ["turn:a.example:3478?transport=udp", "turns:a.example:5349"])
        #expect((object["username"] as? String)?.hasSuffix(":bob \"q\"") == true, "quotes are escaped")

        let plain = try runTool(Self.tern, ["credentials", "--secret", "s", "--user", "bob"])
        #expect(plain.status == 0, "\(plain.output)")
        let defaultJSON = try #require(Self.parse(plain.output).json)
        let d = try #require(try JSONSerialization.jsonObject(with: Data(defaultJSON.utf8)) as? [String: Any])
        #expect(d["urls"] as? [String] == ["turn:127.0.0.1:3478"])
        let expiry = try #require(Self.parse(plain.output).fields["username"]?.split(separator: ":").first.flatMap { UInt64($0) })
        let now = UInt64(Date().timeIntervalSince1970)
        #expect(expiry > now + 86_400 - 60 && expiry <= now + 86_400, "default ttl is 24h")

        let help = try runTool(Self.tern, ["credentials", "--help"])
        #expect(help.output.contains("turn:127.0.0.1:3478"))
    }

    @Test("An invalid --ttl is a usage error with a clear message", arguments: ["0", "0s", "abc", "1y", "10x", "-5", "", "366d", "h", "1.5h", "99999999999999999999"])
    func badTTL(_ ttl: String) throws {
        let result = try runTool(Self.tern, ["credentials", "--secret", "s", "--user", "alice", "--ttl", ttl])
        #expect(result.status == 64, "\(ttl): \(result.status) \(result.output)")
        #expect(result.output.contains("--ttl"), "\(result.output)")
        #expect(!result.output.contains("password:"))
    }

    @Test("TTL formats", arguments: [("3600", 3600), ("3600s", 3600), ("90m", 5400), ("24h", 86_400), ("7d", 604_800),
                                      ("1s", 1), ("365d", 31_536_000)] as [(String, UInt64)])
    func ttlFormats(_ ttl: String, _ seconds: UInt64) throws {
        let before = UInt64(Date().timeIntervalSince1970)
        let result = try runTool(Self.tern, ["credentials", "--secret", "s", "--user", "u", "--ttl", ttl])
        let after = UInt64(Date().timeIntervalSince1970)
        #expect(result.status == 0, "\(ttl): \(result.output)")
        let expiry = try #require(Self.parse(result.output).fields["username"]?.split(separator: ":").first.flatMap { UInt64($0) })
        #expect(expiry >= before + seconds && expiry <= after + seconds, "\(ttl)")
    }

    @Test("--config takes the secret and the URLs from the config file; a file without secrets is refused")
    func fromConfig() throws {
        let dir = FileManager.default.temporaryDirectory
        let config = dir.appendingPathComponent("tern-cred-\(UUID().uuidString).json")
        try #"{"auth": {"secrets": ["first-secret", "old-secret"]}, "publicURLs": ["turn:turn.example.com:3478?transport=udp", "stun:turn.example.com"]}"#
            .write(to: config, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: config) }
        let result = try runTool(Self.tern, ["credentials", "--config", config.path, "--user", "dana", "--ttl", "10m"])
        #expect(result.status == 0, "\(result.output)")
        let (fields, json) = Self.parse(result.output)
        let username = try #require(fields["username"])
        #expect(fields["password"] == CredentialStore.restPassword(secret: "first-secret", username: username))
        let line = try #require(json)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["urls"] as? [String] == ["turn:turn.example.com:3478?transport=udp", "stun:turn.example.com"])
        // Without auth.secrets there is nothing to sign with; --secret and --config together are a usage error.
        let empty = dir.appendingPathComponent("tern-cred-\(UUID().uuidString).json")
        try "{}".write(to: empty, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: empty) }
        let refused = try runTool(Self.tern, ["credentials", "--config", empty.path, "--user", "dana"])
        #expect(refused.status == 1 && refused.output.contains("no auth.secrets"), "\(refused.output)")
        #expect(try runTool(Self.tern, ["credentials", "--config", empty.path, "--secret", "s", "--user", "d"]).status == 64)
    }

    @Test("Missing --secret or --user, or an empty --user, is a usage error")
    func missingOptions() throws {
        for args in [["credentials", "--user", "alice"], ["credentials", "--secret", "s"],
                     ["credentials", "--secret", "s", "--user", ""], ["credentials", "--secret", "", "--user", "a"]] {
            let result = try runTool(Self.tern, args)
            #expect(result.status == 64, "\(args): \(result.output)")
        }
    }
}
