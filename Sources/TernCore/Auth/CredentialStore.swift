import STUN

/// What `CredentialStore.lookup` found for a username.
public enum CredentialLookup: Sendable, Equatable {
    /// Candidate long-term keys: check MESSAGE-INTEGRITY(-SHA256) with each in turn. A static user
    /// has one; a TURN REST username has one per configured secret (secret rotation).
    case keys([[UInt8]])
    /// No such static user, and not a TURN REST username (or no secrets are configured).
    case unknownUser
    /// A well-formed TURN REST username whose expiry timestamp has passed.
    case expired
}

/// The long-term credentials of one realm (RFC 8489 section 9.2): static users from the config,
/// and time-limited "TURN REST API" credentials derived from shared secrets
/// (draft-uberti-behave-turn-rest-00).
///
/// Immutable after `init`, so it is shared by every worker without locking.
///
/// Usernames, realm and passwords are used as their UTF-8 bytes: the PRECIS OpaqueString
/// profile (RFC 8265) that RFC 8489 section 9.2.2 asks for is not applied (see `LongTermKey`).
public final class CredentialStore: @unchecked Sendable {
    public let realm: String
    private let realmBytes: [UInt8]

    /// Static users' keys, computed once here so that no request hashes a static password.
    private let staticKeys: [String: (md5: [UInt8], sha256: [UInt8])]
    /// USERHASH (RFC 8489 section 14.4) -> static username.
    private let byUserhash: [Userhash: String]
    /// The TURN REST shared secrets as bytes, in configuration order (the first one signs).
    private let secrets: [[UInt8]]

    /// Longest USERNAME RFC 8489 section 14.3 allows (bytes).
    static let maxUsernameBytes = 513
    /// Longest timestamp accepted in a TURN REST username (UInt64.max has 20 digits).
    static let maxTimestampDigits = 20

    public init(realm: String, users: [String: String], secrets: [String]) {
        self.realm = realm
        self.realmBytes = Array(realm.utf8)
        var keys: [String: (md5: [UInt8], sha256: [UInt8])] = [:]
        var hashes: [Userhash: String] = [:]
        for (name, password) in users {
            keys[name] = (LongTermKey.md5(username: name, realm: realm, password: password),
                          LongTermKey.sha256(username: name, realm: realm, password: password))
            if let h = Userhash(STUN.userhash(username: name, realm: realm)) { hashes[h] = name }
        }
        self.staticKeys = keys
        self.byUserhash = hashes
        self.secrets = secrets.map { Array($0.utf8) }
    }

    /// Convenience: the `auth` section of the config.
    public convenience init(realm: String, config: AuthConfig) {
        self.init(realm: realm, users: config.users, secrets: config.secrets)
    }

    /// True when at least one static user or shared secret is configured.
    public var hasAnyCredentials: Bool { !staticKeys.isEmpty || !secrets.isEmpty }

    /// The candidate long-term keys for `username` (RFC 8489 section 9.2.2):
    ///
    ///     key = MD5(username ":" realm ":" password)       for PASSWORD-ALGORITHM MD5 (or none)
    ///     key = SHA-256(username ":" realm ":" password)   for PASSWORD-ALGORITHM SHA-256
    ///
    /// A static user (config `auth.users`) takes precedence and costs a dictionary lookup. Failing
    /// that, when secrets are configured and `username` has the TURN REST API form
    /// (draft-uberti-behave-turn-rest-00 section 2.2) `<unix-expiry>:<user-id>`, or a bare
    /// `<unix-expiry>`, the expiry is compared with `now` (`.expired` when it is before `now`) and
    /// the password for each secret is `base64(HMAC-SHA1(secret, username))` (section 2.2), giving
    /// one key per secret. Usernames over 513 bytes (RFC 8489 section 14.3) and timestamps that are
    /// empty, not all ASCII digits, longer than 20 digits or above `UInt64.max` are `.unknownUser`.
    /// An algorithm other than MD5 or SHA-256 also gives `.unknownUser` (the caller should have
    /// refused it with a 400 first, RFC 8489 section 9.2.4).
    public func lookup(username: String, algorithm: PasswordAlgorithm, now: UInt64) -> CredentialLookup {
        guard algorithm == .md5 || algorithm == .sha256 else { return .unknownUser }
        if let keys = staticKeys[username] {
            return .keys([algorithm == .sha256 ? keys.sha256 : keys.md5])
        }
        guard !secrets.isEmpty else { return .unknownUser }
        let name = Array(username.utf8)
        guard name.count <= Self.maxUsernameBytes, let expiry = Self.restExpiry(name) else { return .unknownUser }
        if expiry < now { return .expired }
        var keys: [[UInt8]] = []
        keys.reserveCapacity(secrets.count)
        for secret in secrets {
            let password = Self.restPasswordBytes(secret: secret, username: name)
            keys.append(key(algorithm, username: name, password: password))
        }
        return .keys(keys)
    }

    /// The static username whose USERHASH (RFC 8489 section 14.4, SHA-256(username ":" realm)) is
    /// `userhash`; nil if none, or if `userhash` is not 32 bytes. TURN REST usernames cannot be
    /// found this way (they are not known in advance).
    public func username(forUserhash userhash: UnsafeRawBufferPointer) -> String? {
        guard let h = Userhash(userhash) else { return nil }
        return byUserhash[h]
    }

    public func username(forUserhash userhash: [UInt8]) -> String? {
        userhash.withUnsafeBytes { username(forUserhash: $0) }
    }

    /// The TURN REST API password for `username` (draft-uberti-behave-turn-rest-00 section 2.2):
    /// `base64(HMAC-SHA1(secret, username))`, standard base64 with padding (28 characters).
    public static func restPassword(secret: String, username: String) -> String {
        String(decoding: restPasswordBytes(secret: Array(secret.utf8), username: Array(username.utf8)), as: UTF8.self)
    }

    /// The expiry timestamp of a TURN REST username: the digits before the first ':' (or the whole
    /// name when it has no ':'). nil when malformed.
    static func restExpiry(_ name: [UInt8]) -> UInt64? {
        var value: UInt64 = 0
        var digits = 0
        for c in name {
            if c == UInt8(ascii: ":") { break }
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return nil }
            digits += 1
            guard digits <= maxTimestampDigits else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(c - UInt8(ascii: "0")))
            guard !o1, !o2 else { return nil }
            value = s
        }
        return digits > 0 ? value : nil
    }

    static func restPasswordBytes(secret: [UInt8], username: [UInt8]) -> [UInt8] {
        let mac = HMAC.sha1(key: secret, data: username)
        var out: [UInt8] = []
        out.reserveCapacity(28)
        mac.withUnsafeBytes { Base64.encode($0, url: false, padding: true, into: &out) }
        return out
    }

    private func key(_ algorithm: PasswordAlgorithm, username: [UInt8], password: [UInt8]) -> [UInt8] {
        algorithm == .sha256
            ? LongTermKey.sha256(username: username, realm: realmBytes, password: password)
            : LongTermKey.md5(username: username, realm: realmBytes, password: password)
    }
}

/// A 32-byte USERHASH held by value, so looking one up allocates nothing.
private struct Userhash: Hashable {
    var a: UInt64, b: UInt64, c: UInt64, d: UInt64

    init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count == 32 else { return nil }
        func word(_ at: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in at ..< at + 8 { v = v << 8 | UInt64(bytes[i]) }
            return v
        }
        a = word(0); b = word(8); c = word(16); d = word(24)
    }

    init?(_ bytes: [UInt8]) {
        guard let h = bytes.withUnsafeBytes({ Userhash($0) }) else { return nil }
        self = h
    }
}
