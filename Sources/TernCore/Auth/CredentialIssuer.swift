import Foundation
import STUN

/// An RTCIceServer dictionary (W3C WebRTC, `RTCIceServer`): what a browser puts in `iceServers`,
/// plus when the credential expires (RFC 3339).
public struct IceServer: Codable, Sendable, Equatable {
    public var urls: [String]
    public var username: String
    public var credential: String
    public var expires: String

    public init(urls: [String], username: String, credential: String, expires: String) {
        self.urls = urls
        self.username = username
        self.credential = credential
        self.expires = expires
    }

    /// The entry without `expires`: exactly what goes into `iceServers`.
    public var iceServersEntry: String {
        "{\"urls\":[" + urls.map(Self.jsonString).joined(separator: ",") + "],"
            + "\"username\":" + Self.jsonString(username) + ","
            + "\"credential\":" + Self.jsonString(credential) + "}"
    }

    /// A JSON string literal (RFC 8259 section 7): quotes, backslash and control characters escaped.
    public static func jsonString(_ s: String) -> String {
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
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u00" + (hex.count < 2 ? "0" + hex : hex)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

/// Mints time-limited TURN REST credentials (draft-uberti-behave-turn-rest-00 section 2.2) under the
/// first of the configured shared secrets: `POST /credentials` on the admin endpoint, the first
/// run's printed `iceServers` entry and `tern credentials`. An application's backend can so hand
/// its browsers short-lived credentials without ever holding the secret.
///
/// The secret and URLs change on reload (`update`); reads and writes are under a lock.
public final class CredentialIssuer: @unchecked Sendable {
    private let lock = NSLock()
    private var secret: String?
    private var urls: [String]

    /// A day, the TURN REST draft's example lifetime.
    public static let defaultTTL = 86_400
    /// The longest lifetime the admin endpoint issues: a week.
    public static let maxTTL = 7 * 86_400

    public init(secret: String?, urls: [String]) {
        self.secret = secret
        self.urls = urls
    }

    public func update(secret: String?, urls: [String]) {
        lock.lock(); defer { lock.unlock() }
        self.secret = secret
        self.urls = urls
    }

    /// Why no credential was issued.
    public enum Problem: Error, Equatable, CustomStringConvertible {
        /// No `auth.secrets`: the server has nothing to sign with (409).
        case noSecret
        /// The request itself is wrong (400): the message says how.
        case badRequest(String)

        public var description: String {
            switch self {
            case .noSecret: return "no shared secret is configured (auth.secrets), so no TURN REST credential can be issued"
            case .badRequest(let m): return m
            }
        }
    }

    /// A credential for `user` (default: a random id, so that per-user limits count each issued
    /// credential on its own) valid for `ttl` seconds (default a day, 1 s to a week), from `now`
    /// (unix seconds).
    public func issue(user: String?, ttl: Int?, now: UInt64) throws(Problem) -> IceServer {
        let ttl = ttl ?? Self.defaultTTL
        guard ttl >= 1, ttl <= Self.maxTTL else { throw .badRequest("ttl must be between 1 and \(Self.maxTTL) seconds") }
        let user = user ?? Self.randomUser()
        if let problem = Self.userProblem(user) { throw .badRequest(problem) }
        lock.lock()
        let secret = self.secret, urls = self.urls
        lock.unlock()
        guard let secret else { throw .noSecret }
        return Self.mint(secret: secret, user: user, expiry: now + UInt64(ttl), urls: urls)
    }

    /// The credential for `user` under `secret`, valid until `expiry` (unix seconds): the username
    /// is `<expiry>:<user>` and the password `base64(HMAC-SHA1(secret, username))`.
    public static func mint(secret: String, user: String, expiry: UInt64, urls: [String]) -> IceServer {
        let username = "\(expiry):\(user)"
        return IceServer(urls: urls, username: username,
                         credential: CredentialStore.restPassword(secret: secret, username: username),
                         expires: rfc3339(expiry))
    }

    /// Why `user` cannot be a TURN REST user id, or nil: it must be non-empty, at most 490 bytes
    /// (the username `<expiry>:<user>` must fit RFC 8489 section 14.3's 513 bytes) and free of
    /// control characters.
    public static func userProblem(_ user: String) -> String? {
        if user.isEmpty { return "user must not be empty" }
        if user.utf8.count > 490 { return "user must be at most 490 bytes" }
        if user.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            return "user must not contain control characters"
        }
        return nil
    }

    /// `2026-12-01T04:00:00Z`.
    public static func rfc3339(_ unixSeconds: UInt64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(unixSeconds)))
    }

    /// `user-` and 12 hex digits from the system's CSPRNG.
    static func randomUser() -> String {
        var rng = SystemRandomNumberGenerator()
        let n = rng.next() as UInt64
        let hex = String(n & 0xFFFF_FFFF_FFFF, radix: 16)
        return "user-" + String(repeating: "0", count: 12 - hex.count) + hex
    }

    /// A fresh shared secret for the built-in default: 32 bytes from the CSPRNG, base64url.
    public static func randomSecret() -> String {
        var rng = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        for _ in 0..<4 { withUnsafeBytes(of: rng.next() as UInt64) { bytes += $0 } }
        var out: [UInt8] = []
        bytes.withUnsafeBytes { Base64.encode($0, url: true, padding: false, into: &out) }
        return String(decoding: out, as: UTF8.self)
    }
}
