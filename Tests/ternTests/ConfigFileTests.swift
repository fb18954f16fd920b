import Foundation
import STUN
import Testing
import TernCore
@testable import tern

/// Reading the config file, which the executable does (TernCore only parses bytes).
@Suite("Config file: loading")
struct ConfigLoadTests {
    @Test func exampleFileParses() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let path = root.appendingPathComponent("config.example.json").path
        let config = try ConfigFile.load(path: path)
        #expect(config.realm == "example.org")
        #expect(config.software == "Tern")
        #expect(config.workers == nil)
        // The same four listeners as the default, but named in the file, so none is optional.
        #expect(config.listeners.map(\.description) == TernConfig.defaultListeners.map(\.description))
        #expect(config.listeners.allSatisfy { !$0.optional })
        #expect(config.relay == RelayConfig(ipv4: .anyV4, ipv6: .anyV6,
                                            externalIPv4: IPAddress("203.0.113.10"),
                                            externalIPv6: IPAddress("2001:db8::10"),
                                            portRange: 49152...65535))
        #expect(config.auth == AuthConfig(users: ["demo": "change-me"], secrets: ["replace-with-a-long-random-secret"]))
        #expect(config.peers == PeerConfig(allow: [], deny: []))
        #expect(config.admin == AdminConfig(address: .loopbackV4, port: 8478, token: nil))
        #expect(config.log.level == .info)
    }

    @Test func missingFile() throws {
        do {
            _ = try ConfigFile.load(path: "/nonexistent/tern.json")
            Issue.record("expected an error")
        } catch {
            #expect(error.source == "/nonexistent/tern.json")
            #expect(error.path == "")
            #expect(error.description == "/nonexistent/tern.json: cannot open config file: No such file or directory")
        }
    }

    @Test func directory() throws {
        do {
            _ = try ConfigFile.load(path: NSTemporaryDirectory())
            Issue.record("expected an error")
        } catch {
            #expect(error.message == "cannot read config file: is a directory")
        }
    }

    @Test func errorsNameTheFile() throws {
        let path = NSTemporaryDirectory() + "tern-config-test-\(getpid()).json"
        try Data(#"{"listeners": [{"port": "x"}]}"#.utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try ConfigFile.load(path: path)
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "\(path): listeners[0].port: expected an integer 0...65535, found string \"x\"")
        }
    }
}

@Suite("Config file: permissions")
struct ConfigPermissionTests {
    @Test func worldReadableSecretsAreWarnedAbout() throws {
        let path = NSTemporaryDirectory() + "tern-config-mode-\(getpid()).json"
        try Data(#"{"auth": {"users": {"alice": "pw"}}}"#.utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let config = try ConfigFile.load(path: path)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        let warning = try #require(ConfigFile.permissionWarning(path: path, config: config))
        #expect(warning.contains("mode 644"))
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: path)
        #expect(ConfigFile.permissionWarning(path: path, config: config) == nil)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        #expect(ConfigFile.permissionWarning(path: path, config: TernConfig()) == nil)
    }

    @Test func oversizedFileIsRefused() throws {
        let path = NSTemporaryDirectory() + "tern-config-big-\(getpid()).json"
        try Data(repeating: 0x20, count: ConfigFile.maxSize + 1).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: ConfigError.self) { try ConfigFile.load(path: path) }
        do { _ = try ConfigFile.load(path: path) } catch { #expect(error.message.contains("larger than")) }
    }
}

/// The executable's secret-file reader: the file system's answers, with its reasons.
@Suite("Config file: secrets from files")
struct SecretFileLoadTests {
    @Test("A config file's {\"file\": ...} secrets are read from disk at every load; missing, directory and oversized files are errors at their key path; world-readable secret files are warned about")
    func loadsAndRereads() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tern-secretfiles-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let secret = dir.appendingPathComponent("turn-secret")
        try "first\n".write(to: secret, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: secret.path)
        let config = dir.appendingPathComponent("config.json")
        func write(_ file: String) throws {
            try #"{"auth": {"secrets": [{"file": "\#(file)"}]}}"#.write(to: config, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: config.path)
        }
        try write(secret.path)
        let first = try ConfigFile.load(path: config.path)
        #expect(first.auth.secrets == ["first"])
        // The config holds no secret itself, and the secret file is private: no warning.
        #expect(ConfigFile.permissionWarning(path: config.path, config: first) == nil)
        try "second\n".write(to: secret, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: secret.path)
        let second = try ConfigFile.load(path: config.path)
        #expect(second.auth.secrets == ["second"])
        #expect(ConfigFile.permissionWarning(path: config.path, config: second)?.contains("secret file \(secret.path) is readable by every user") == true)

        let big = dir.appendingPathComponent("big")
        try Data(repeating: 0x61, count: SecretFileReader.maximumBytes + 1).write(to: big)
        for (file, message) in [(dir.appendingPathComponent("missing").path, "No such file or directory"),
                                (dir.path, "is a directory"), (big.path, "larger than 65536 bytes")] {
            try write(file)
            do {
                _ = try ConfigFile.load(path: config.path)
                Issue.record("\(file) was accepted")
            } catch {
                #expect(error.path == "auth.secrets[0].file", "\(error)")
                #expect(error.message.contains("cannot read \(file): \(message)"), "\(error)")
            }
        }
    }
}
