import Foundation
import STUN
import Testing
@testable import TernCore

/// `{"file": "/path"}` values for auth.secrets, auth.users and admin.token (Kubernetes Secret
/// volumes, systemd credentials, a generated secret beside a packaged config).
@Suite("Config: secrets from files")
struct SecretFileTests {
    /// Files in memory: the parser reads through the reader it is given, never the file system.
    static func reader(_ files: [String: [UInt8]]) -> SecretFileReader {
        SecretFileReader { path in files[path].map { .success($0) } ?? .failure(.init("no such file")) }
    }

    static func parse(_ json: String, _ files: [String: String]) throws -> TernConfig {
        try TernConfig.parse(json: Array(json.utf8), source: "config.json", files: reader(files.mapValues { Array($0.utf8) }))
    }

    static func fileError(_ json: String, _ files: [String: [UInt8]]) -> ConfigError? {
        do {
            _ = try TernConfig.parse(json: Array(json.utf8), source: "config.json", files: reader(files))
            return nil
        } catch {
            return error
        }
    }

    @Test("The file's content is the value, without one trailing newline (LF or CRLF); inline values still work beside them")
    func readsFiles() throws {
        let config = try Self.parse("""
            {"auth": {"secrets": [{"file": "/s/secret"}, "inline-secret", {"file": "/s/two"}],
                      "users": {"alice": {"file": "/s/password"}, "bob": "builder"}},
             "admin": {"token": {"file": "/s/token"}}}
            """, ["/s/secret": "s3cret-from-file\n", "/s/password": "pw with spaces\r\n", "/s/token": "0123456789abcdef-token",
                  "/s/two": "keeps-one\n\n"])
        #expect(config.auth.secrets == ["s3cret-from-file", "inline-secret", "keeps-one\n"])
        #expect(config.auth.users == ["alice": "pw with spaces", "bob": "builder"])
        #expect(config.admin.token == "0123456789abcdef-token")
        #expect(config.secretSources.inline == 2)
        #expect(Set(config.secretSources.files) == ["/s/secret", "/s/two", "/s/password", "/s/token"])
    }

    @Test("Every way a secret file can be wrong is an error at its key path that says what is wrong")
    func errors() throws {
        let files: [String: [UInt8]] = ["/s/empty": [], "/s/newline": [0x0A], "/s/short": Array("short-token\n".utf8),
                                        "/s/latin1": [0x66, 0xE9, 0x0A]]
        let cases: [(String, String, String)] = [
            (#"{"auth": {"secrets": [{"file": "/s/missing"}]}}"#, "auth.secrets[0].file", "cannot read /s/missing: no such file"),
            (#"{"auth": {"users": {"alice": {"file": "/s/empty"}}}}"#, "auth.users.alice.file", "is empty"),
            (#"{"auth": {"secrets": [{"file": "/s/newline"}]}}"#, "auth.secrets[0].file", "is empty"),
            (#"{"auth": {"secrets": [{"file": "relative/path"}]}}"#, "auth.secrets[0].file", "absolute file path"),
            (#"{"auth": {"secrets": [{"file": ""}]}}"#, "auth.secrets[0].file", "absolute file path"),
            (#"{"auth": {"secrets": [{"path": "/x"}]}}"#, "auth.secrets[0].path", "unknown key; expected one of file"),
            (#"{"auth": {"secrets": [{}]}}"#, "auth.secrets[0]", "the file key is missing"),
            (#"{"auth": {"secrets": [{"file": 7}]}}"#, "auth.secrets[0].file", "absolute file path"),
            (#"{"auth": {"secrets": [["x"]]}}"#, "auth.secrets[0]", "{\"file\": \"/path\"}"),
            (#"{"auth": {"secrets": [{"file": "/s/latin1"}]}}"#, "auth.secrets[0].file", "not UTF-8"),
            // The token's own rule applies to a token read from a file.
            (#"{"admin": {"token": {"file": "/s/short"}}}"#, "admin.token", "at least 16 are needed"),
        ]
        for (json, path, message) in cases {
            let error = Self.fileError(json, files)
            #expect(error?.path == path, "\(json): \(String(describing: error))")
            #expect(error?.message.contains(message) == true, "\(json): \(String(describing: error))")
        }
        // Parsed from bytes alone (no reader), a file is refused with the reason.
        let alone = TernCoreTests.parseError(#"{"auth": {"secrets": [{"file": "/s/secret"}]}}"#)
        #expect(alone?.message.contains("not read here") == true)
    }

    @Test("A reload parses again and so reads the file again: the same config text gives the file's new content")
    func rereadOnEveryParse() throws {
        let json = #"{"auth": {"secrets": [{"file": "/s/secret"}]}}"#
        #expect(try Self.parse(json, ["/s/secret": "first\n"]).auth.secrets == ["first"])
        #expect(try Self.parse(json, ["/s/secret": "second\n"]).auth.secrets == ["second"])
    }

    @Test("A reload may change the admin token and the discovery servers; the rest of admin and relay is bound at start")
    func restartOnlyParts() throws {
        var a = AdminConfig(token: "0123456789abcdef-one")
        var b = a
        b.token = "0123456789abcdef-two"
        #expect(a.restartOnly == b.restartOnly)
        b.token = nil
        #expect(a.restartOnly != b.restartOnly, "turning the token off is a restart")
        a.port = 9000
        #expect(a.restartOnly != AdminConfig(token: "x").restartOnly)
        var r = RelayConfig()
        let s = { () -> RelayConfig in var s = r; s.discoverExternal = [StunServerName(host: "stun.example.com", port: 3478)]; return s }()
        #expect(r.restartOnly == s.restartOnly)
        r.portRange = 50000...50100
        #expect(r.restartOnly != s.restartOnly)
    }
}

@Suite("Config: relay.discoverExternal")
struct DiscoverExternalConfigTests {
    @Test("A HOST:PORT string or an array of them; the port defaults to 3478; IPv6 literals in brackets")
    func valid() throws {
        #expect(try parse(#"{"relay": {"discoverExternal": "stun.example.com:19302"}}"#).relay.discoverExternal
                == [StunServerName(host: "stun.example.com", port: 19302)])
        #expect(try parse(#"{"relay": {"discoverExternal": ["192.0.2.1", "[2001:db8::1]:3479", "[2001:db8::2]", "a-b.example:1"]}}"#).relay.discoverExternal
                == [StunServerName(host: "192.0.2.1", port: 3478), StunServerName(host: "[2001:db8::1]", port: 3479),
                    StunServerName(host: "[2001:db8::2]", port: 3478), StunServerName(host: "a-b.example", port: 1)])
        #expect(try parse(#"{"relay": {"discoverExternal": null}}"#).relay.discoverExternal.isEmpty)
        #expect(try parse("{}").relay.discoverExternal.isEmpty)
        #expect(StunServerName("stun.example.com")?.description == "stun.example.com:3478")
    }

    @Test("Anything else is an error at its path", arguments: [
        #""""#, #"[]"#, #"7"#, #"[""]"#, #"[":3478"]"#, #"["host:0"]"#, #"["host:65536"]"#, #"["host:x"]"#,
        #"["2001:db8::1"]"#, #"["[2001:db8::1"]"#, #"["[192.0.2.1]:3478"]"#, #"["ho st:3478"]"#, #"["stun:host:3478"]"#,
        #"["host:3478", 5]"#,
    ])
    func invalid(value: String) throws {
        let error = parseError(#"{"relay": {"discoverExternal": \#(value)}}"#)
        #expect(error?.path.hasPrefix("relay.discoverExternal") == true, "\(value): \(String(describing: error))")
        #expect(error?.message.contains("HOST:PORT") == true, "\(value): \(String(describing: error))")
    }
}
