import ArgumentParser
import Foundation
import TernCore
import TernIO

/// `tern credentials --secret S --user ID --ttl 24h [--url turn:host:3478]...`: mints a
/// time-limited TURN REST API credential (draft-uberti-behave-turn-rest-00 section 2.2) that a
/// server configured with the same secret in `auth.secrets` accepts until it expires.
struct Credentials: ParsableCommand {
    static let defaultURL = "turn:127.0.0.1:3478"
    static let maxTTL: UInt64 = 365 * 86_400

    static let configuration = CommandConfiguration(
        commandName: "credentials",
        abstract: "Print a time-limited TURN credential (TURN REST API) for a shared secret.",
        discussion: """
            The username is "<expiry>:<user>" (unix seconds), and the password is \
            base64(HMAC-SHA1(secret, username)), as in draft-uberti-behave-turn-rest-00; a tern \
            server with the same secret in its config's auth.secrets accepts them until the expiry.

            Prints four lines: "username: ...", "password: ...", "expires: <RFC 3339 UTC time>", \
            and a JSON RTCIceServer object ({"urls":[...],"username":...,"credential":...}) ready \
            to paste into a WebRTC iceServers list. The urls are the --url values in order; \
            without any --url the placeholder \(defaultURL) is used (replace it with your \
            server's public name).
            """
    )

    @Option(help: "The shared secret (one of the server's auth.secrets). Or use --config.")
    var secret: String?

    @Option(name: .customLong("config"),
            help: ArgumentHelp("Take the secret (the first of auth.secrets) and the URLs (publicURLs, or those derived from the listeners) from this config file, so no secret goes on a command line.",
                               valueName: "file"))
    var configPath: String?

    @Option(help: "The user ID to embed in the username (must not be empty).")
    var user: String

    @Option(help: ArgumentHelp("How long the credential is valid: seconds (3600 or 3600s), minutes (90m), hours (24h) or days (7d); 1s to 365d.",
                               valueName: "duration"))
    var ttl: String = "24h"

    @Option(name: .customLong("url"),
            help: ArgumentHelp("A TURN/STUN URL for the iceServers entry, e.g. turn:turn.example.com:3478?transport=udp. Repeatable. Default: \(Credentials.defaultURL).",
                               valueName: "url"))
    var urls: [String] = []

    /// Parses "3600", "3600s", "90m", "24h", "7d" into seconds; nil for anything else.
    static func parseTTL(_ text: String) -> UInt64? {
        var digits = Substring(text)
        var unit: UInt64 = 1
        if let last = digits.last, !last.isNumber {
            switch last {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3_600
            case "d": unit = 86_400
            default: return nil
            }
            digits = digits.dropLast()
        }
        guard !digits.isEmpty, digits.count <= 12,
              digits.allSatisfy({ $0.isASCII && $0.isNumber }),
              let n = UInt64(digits) else { return nil }
        let (seconds, overflow) = n.multipliedReportingOverflow(by: unit)
        return overflow ? nil : seconds
    }

    func validate() throws {
        guard let seconds = Self.parseTTL(ttl) else {
            throw ValidationError("Invalid --ttl '\(ttl)': use seconds (3600 or 3600s), minutes (90m), hours (24h) or days (7d).")
        }
        guard seconds >= 1, seconds <= Self.maxTTL else {
            throw ValidationError("Invalid --ttl '\(ttl)': must be between 1s and 365d.")
        }
        switch (secret, configPath) {
        case (nil, nil): throw ValidationError("Give --secret, or --config with a file that has auth.secrets.")
        case (.some, .some): throw ValidationError("Give --secret or --config, not both.")
        case (let s?, nil): guard !s.isEmpty else { throw ValidationError("--secret must not be empty.") }
        case (nil, .some): break
        }
        if let problem = CredentialIssuer.userProblem(user) { throw ValidationError("--\(problem).") }
        for url in urls where url.isEmpty {
            throw ValidationError("--url must not be empty.")
        }
    }

    func run() throws {
        guard let seconds = Self.parseTTL(ttl) else { throw ExitCode.validationFailure }
        var secret = self.secret ?? ""
        var urlList = urls
        if let configPath {
            let config: TernConfig
            do {
                config = try ConfigFile.load(path: configPath)
            } catch {
                FileHandle.standardError.write(Data("tern credentials: \(error)\n".utf8))
                throw ExitCode(1)
            }
            guard let first = config.auth.secrets.first else {
                FileHandle.standardError.write(Data("tern credentials: \(configPath) has no auth.secrets: nothing to sign with\n".utf8))
                throw ExitCode(1)
            }
            secret = first
            if urlList.isEmpty {
                urlList = config.effectivePublicURLs(hostAddresses: Posix.interfaceAddresses()).map(\.description)
            }
        }
        let now = UInt64(max(0, Date().timeIntervalSince1970))
        let server = CredentialIssuer.mint(secret: secret, user: user, expiry: now + seconds,
                                           urls: urlList.isEmpty ? [Self.defaultURL] : urlList)
        print("username: \(server.username)")
        print("password: \(server.credential)")
        print("expires: \(server.expires)")
        print(server.iceServersEntry)
    }
}
