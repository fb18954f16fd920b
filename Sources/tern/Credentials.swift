import ArgumentParser
import Foundation
import TernCore

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

    @Option(help: "The shared secret (one of the server's auth.secrets).")
    var secret: String

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
        guard !secret.isEmpty else { throw ValidationError("--secret must not be empty.") }
        guard !user.isEmpty else { throw ValidationError("--user must not be empty.") }
        // The username "<expiry>:<user>" must fit RFC 8489 section 14.3's 513 bytes.
        guard user.utf8.count <= 490 else { throw ValidationError("--user must be at most 490 bytes.") }
        guard !user.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw ValidationError("--user must not contain control characters.")
        }
        for url in urls where url.isEmpty {
            throw ValidationError("--url must not be empty.")
        }
    }

    func run() throws {
        guard let seconds = Self.parseTTL(ttl) else { throw ExitCode.validationFailure }
        let now = UInt64(max(0, Date().timeIntervalSince1970))
        let expiry = now + seconds
        let username = "\(expiry):\(user)"
        let password = CredentialStore.restPassword(secret: secret, username: username)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        let expires = formatter.string(from: Date(timeIntervalSince1970: TimeInterval(expiry)))
        let urlList = urls.isEmpty ? [Self.defaultURL] : urls

        print("username: \(username)")
        print("password: \(password)")
        print("expires: \(expires)")
        let json = "{\"urls\":[" + urlList.map(Self.jsonString).joined(separator: ",") + "],"
            + "\"username\":" + Self.jsonString(username) + ","
            + "\"credential\":" + Self.jsonString(password) + "}"
        print(json)
    }

    /// A JSON string literal (RFC 8259 section 7): quotes, backslash and control characters escaped.
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += "\\u00" + String(scalar.value, radix: 16).leftPadded(to: 2)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

private extension String {
    func leftPadded(to n: Int) -> String {
        count >= n ? self : String(repeating: "0", count: n - count) + self
    }
}
