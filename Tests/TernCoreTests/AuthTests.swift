import STUN
import Testing
import TernCore

private func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xF)]] })
}

private func ip(_ s: String) -> IPAddress { IPAddress(s)! }

@Suite("Auth: NonceIssuer (RFC 8489 section 9.2)")
struct NonceIssuerTests {
    let issuer = NonceIssuer(key: Array(repeating: 0x42, count: 32), lifetime: 600)
    let client = ip("198.51.100.7")
    let now: UInt64 = 1_764_100_000

    @Test func issueThenCheckIsValid() {
        let nonce = issuer.issue(for: client, now: now)
        #expect(issuer.check(nonce, for: client, now: now) == .valid)
        #expect(issuer.check(nonce, for: client, now: now + 599) == .valid)
        #expect(issuer.check(nonce, for: client, now: now + 600) == .valid, "valid through now + lifetime")
        // The raw-bytes overload (the NONCE attribute value) agrees.
        let raw = Array(nonce.utf8)
        #expect(raw.withUnsafeBytes { issuer.check($0, for: client, now: now) } == .valid)
        // IPv6 clients too.
        let v6 = ip("2606:4700::1111")
        let n6 = issuer.issue(for: v6, now: now)
        #expect(issuer.check(n6, for: v6, now: now) == .valid)
        #expect(issuer.check(n6, for: client, now: now) == .invalid)
        #expect(issuer.check(nonce, for: v6, now: now) == .invalid)
    }

    @Test func staleAfterLifetime() {
        let nonce = issuer.issue(for: client, now: now)
        #expect(issuer.check(nonce, for: client, now: now + 601) == .stale)
        #expect(issuer.check(nonce, for: client, now: now + 1_000_000) == .stale)
        let short = NonceIssuer(key: Array(repeating: 0x42, count: 32), lifetime: 5)
        let n = short.issue(for: client, now: now)
        #expect(short.check(n, for: client, now: now + 5) == .valid)
        #expect(short.check(n, for: client, now: now + 6) == .stale)
        // Expiry saturates instead of overflowing.
        let late = issuer.issue(for: client, now: UInt64.max - 10)
        #expect(issuer.check(late, for: client, now: UInt64.max) == .valid)
    }

    @Test func otherClientIsInvalid() {
        let nonce = issuer.issue(for: client, now: now)
        #expect(issuer.check(nonce, for: ip("198.51.100.8"), now: now) == .invalid)
        #expect(issuer.check(nonce, for: ip("::ffff:198.51.100.7"), now: now) == .invalid)
    }

    @Test func everyFlippedCharacterIsInvalid() {
        let nonce = Array(issuer.issue(for: client, now: now).utf8)
        for i in nonce.indices {
            for replacement in [UInt8(ascii: "A"), UInt8(ascii: "z"), UInt8(ascii: "-"), UInt8(ascii: "+"), 0x00, 0xFF] where replacement != nonce[i] {
                var bad = nonce
                bad[i] = replacement
                let r = bad.withUnsafeBytes { issuer.check($0, for: client, now: now) }
                #expect(r == .invalid, "position \(i) -> \(replacement)")
            }
        }
    }

    @Test func malformedNeverCrashes() {
        let nonce = issuer.issue(for: client, now: now)
        var inputs: [[UInt8]] = [
            [], Array("obMatJos2".utf8), Array("obMatJos2wAAA".utf8), Array(nonce.utf8.dropLast()),
            Array(nonce.utf8) + [UInt8(ascii: "A")], Array(nonce.utf8.dropFirst()),
            Array(repeating: 0, count: 45), Array(repeating: 0xFF, count: 45), Array(repeating: UInt8(ascii: "A"), count: 45),
            Array(repeating: UInt8(ascii: "A"), count: 100_000), Array("not a nonce at all".utf8),
            Array(("obMatJos2wAAA" + String(repeating: "=", count: 32)).utf8),
        ]
        // Every prefix of a good nonce.
        for n in 0 ..< nonce.utf8.count { inputs.append(Array(nonce.utf8.prefix(n))) }
        for input in inputs {
            let r = input.withUnsafeBytes { issuer.check($0, for: client, now: now) }
            #expect(r == .invalid, "\(input.count) bytes")
        }
        #expect(issuer.check(UnsafeRawBufferPointer(start: nil, count: 0), for: client, now: now) == .invalid)
        #expect(issuer.check("", for: client, now: now) == .invalid)
        #expect(issuer.check(String(repeating: "é", count: 45), for: client, now: now) == .invalid)
        // Random garbage of the right length, in the right alphabet.
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        for _ in 0 ..< 500 {
            var g = Array("obMatJos2wAAA".utf8)
            for _ in 0 ..< 32 { g.append(alphabet[Int(rng.next() % UInt64(alphabet.count))]) }
            #expect(g.withUnsafeBytes { issuer.check($0, for: client, now: now) } == .invalid)
        }
    }

    @Test func formatHasCookieAndFeatureBits() throws {
        let nonce = issuer.issue(for: client, now: now)
        // RFC 8489 section 9.2: cookie, then the 24-bit feature set as 4 base64 characters.
        // Bits 0 (Password algorithms) and 1 (Username anonymity) set: 0xC00000 -> "wAAA".
        #expect(nonce.hasPrefix("obMatJos2wAAA"))
        #expect(NonceIssuer.cookie == "obMatJos2")
        #expect(nonce.utf8.count == NonceIssuer.nonceLength)
        #expect(nonce.utf8.count < 128, "RFC 8489 section 14.10")
        // Only qdtext (RFC 3261): no quote, backslash, control or space characters.
        #expect(nonce.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") })
        let features = try #require(NonceIssuer.hasSecurityFeatures(nonce))
        #expect(features.passwordAlgorithms)
        #expect(features.userAnonymity)
        // The reader on other servers' nonces.
        let pwOnly = try #require(NonceIssuer.hasSecurityFeatures("obMatJos2gAAAxyz"))  // 0x800000
        #expect(pwOnly.passwordAlgorithms && !pwOnly.userAnonymity)
        let anonOnly = try #require(NonceIssuer.hasSecurityFeatures("obMatJos2QAAA"))  // 0x400000
        #expect(!anonOnly.passwordAlgorithms && anonOnly.userAnonymity)
        let none = try #require(NonceIssuer.hasSecurityFeatures("obMatJos2AAAA"))
        #expect(!none.passwordAlgorithms && !none.userAnonymity)
        #expect(NonceIssuer.hasSecurityFeatures("f3f7a0b5c4d2e1") == nil)
        #expect(NonceIssuer.hasSecurityFeatures("obMatJos2wAA") == nil)
        #expect(NonceIssuer.hasSecurityFeatures("obMatJos2w=AA") == nil)
        #expect(NonceIssuer.hasSecurityFeatures("") == nil)
        let raw = Array(nonce.utf8)
        #expect(raw.withUnsafeBytes { NonceIssuer.hasSecurityFeatures($0) }?.passwordAlgorithms == true)
    }

    @Test func knownAnswer() {
        // Independently computed (python3 hmac/hashlib/base64): "obMatJos2wAAA" + base64url, unpadded,
        // of expiry (8 bytes big-endian) + HMAC-SHA256(key, expiry + address bytes)[0..<16].
        #expect(issuer.issue(for: client, now: now) == "obMatJos2wAAAAAAAAGkmCfjhYD4ai7Ql39ZlxoO8_VQ_")
        #expect(issuer.issue(for: ip("2606:4700::1111"), now: now) == "obMatJos2wAAAAAAAAGkmCfiy-VLJfr012vvx-jbnEXgh")
        #expect(issuer.check("obMatJos2wAAAAAAAAGkmCfjhYD4ai7Ql39ZlxoO8_VQ_", for: client, now: now + 600) == .valid)
    }

    @Test func differentKeysRejectEachOther() {
        let a = NonceIssuer(key: NonceIssuer.randomKey())
        let b = NonceIssuer(key: NonceIssuer.randomKey())
        let na = a.issue(for: client, now: now)
        let nb = b.issue(for: client, now: now)
        #expect(a.check(na, for: client, now: now) == .valid)
        #expect(b.check(nb, for: client, now: now) == .valid)
        #expect(a.check(nb, for: client, now: now) == .invalid)
        #expect(b.check(na, for: client, now: now) == .invalid)
        // Even once expired, a foreign nonce is invalid, not stale.
        #expect(a.check(nb, for: client, now: now + 10_000) == .invalid)
    }

    @Test func randomKeyAndDistinctNonces() {
        let k1 = NonceIssuer.randomKey(), k2 = NonceIssuer.randomKey()
        #expect(k1.count == 32 && k2.count == 32)
        #expect(k1 != k2)
        #expect(issuer.issue(for: client, now: now) == issuer.issue(for: client, now: now), "deterministic for the same inputs")
        #expect(issuer.issue(for: client, now: now) != issuer.issue(for: client, now: now + 1))
    }
}

@Suite("Auth: CredentialStore (RFC 8489 section 9.2.2, TURN REST API)")
struct CredentialStoreTests {
    let realm = "example.org"

    @Test func staticUserMD5AndSHA256() throws {
        // RFC 5769 section 2.4's credentials (password after SASLprep), and RFC 8489 Appendix B.1's.
        let user = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}"
        let store = CredentialStore(realm: realm, users: [user: "TheMatrIX", "bob": "pw"], secrets: [])
        let expectedMD5 = LongTermKey.md5(username: user, realm: realm, password: "TheMatrIX")
        #expect(hex(expectedMD5) == "e8ca7ad59d5eb0518e312911d2dab2a9")  // python3 hashlib.md5
        #expect(store.lookup(username: user, algorithm: .md5, now: 0) == .keys([expectedMD5]))
        let sha = try #require(store.lookup(username: user, algorithm: .sha256, now: 0).keys)
        #expect(sha.count == 1)
        #expect(hex(sha[0]) == "dd295a613b9058c3c23d6dc7165bda072304d989c9d0af3a8c7e184b4f9bb4a1")
        #expect(store.lookup(username: "bob", algorithm: .md5, now: 0) == .keys([LongTermKey.md5(username: "bob", realm: realm, password: "pw")]))
        #expect(store.lookup(username: "carol", algorithm: .md5, now: 0) == .unknownUser)
        #expect(store.lookup(username: "", algorithm: .md5, now: 0) == .unknownUser)
        // Unknown algorithms are not served.
        #expect(store.lookup(username: "bob", algorithm: PasswordAlgorithm(rawValue: 7), now: 0) == .unknownUser)
        #expect(store.hasAnyCredentials)
        #expect(!CredentialStore(realm: realm, users: [:], secrets: []).hasAnyCredentials)
        #expect(CredentialStore(realm: realm, users: [:], secrets: ["x"]).hasAnyCredentials)
        #expect(store.realm == realm)
    }

    @Test func userhashLookup() {
        let user = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}"
        let store = CredentialStore(realm: realm, users: [user: "TheMatrIX", "bob": "pw"], secrets: ["s"])
        // RFC 8489 Appendix B.1 USERHASH.
        let hash = userhash(username: user, realm: realm)
        #expect(hex(hash) == "4a3cf38fef6992bda952c6780417da0f24819415569e60b205c46e41407f1704")
        #expect(store.username(forUserhash: hash) == user)
        #expect(hash.withUnsafeBytes { store.username(forUserhash: $0) } == user)
        #expect(store.username(forUserhash: userhash(username: "bob", realm: realm)) == "bob")
        #expect(store.username(forUserhash: userhash(username: "bob", realm: "other")) == nil)
        #expect(store.username(forUserhash: Array(hash.dropLast())) == nil)
        #expect(store.username(forUserhash: []) == nil)
        #expect(store.username(forUserhash: hash + [0]) == nil)
    }

    @Test func restPasswordKnownAnswer() {
        // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"north",b"1433895918506:alice",hashlib.sha1).digest()).decode())'
        #expect(CredentialStore.restPassword(secret: "north", username: "1433895918506:alice") == "GPCalOXHCHJRqBRVGXzX5o/tUXE=")
        #expect(CredentialStore.restPassword(secret: "s3cret", username: "1764100000:alice") == "+LC8T8n2kPRCF3+ZV2L1VaJR/D0=")
    }

    @Test func restUsernameValidExpiredMalformed() throws {
        let store = CredentialStore(realm: realm, users: [:], secrets: ["north"])
        let name = "1433895918506:alice"
        // Keys computed independently: python3 hashlib.md5/sha256 of "name:realm:password".
        #expect(store.lookup(username: name, algorithm: .md5, now: 1_433_895_918_506).map(hex) == ["36095c7ea9196fc3a0fb84407b8f4f37"])
        #expect(store.lookup(username: name, algorithm: .sha256, now: 1_000)
            .map(hex) == ["f5cfe93453c4c189b9cdb3fead8a5cd86e5032559b2ee706f72fb13cd7912387"])
        #expect(store.lookup(username: name, algorithm: .md5, now: 1_433_895_918_507) == .expired)
        // A bare timestamp is accepted.
        let bare = "2000000000"
        let pw = CredentialStore.restPassword(secret: "north", username: bare)
        #expect(store.lookup(username: bare, algorithm: .md5, now: 1_999_999_999)
            == .keys([LongTermKey.md5(username: bare, realm: realm, password: pw)]))
        #expect(store.lookup(username: bare, algorithm: .md5, now: 2_000_000_001) == .expired)
        // A user-id with more colons: only the first splits.
        #expect(store.lookup(username: "2000000000:a:b", algorithm: .md5, now: 0).keys?.count == 1)
        // Malformed.
        for bad in ["alice", ":alice", "alice:2000000000", "12a4:alice", "-1:alice", "+2000000000:alice", " 2000000000:alice",
                    "2000000000 :alice", "123456789012345678901:alice", "99999999999999999999:alice", "٣٣٣:alice",
                    "2000000000:" + String(repeating: "x", count: 503), ""] {
            #expect(store.lookup(username: bad, algorithm: .md5, now: 0) == .unknownUser, "\(bad.prefix(40))")
        }
        // 20 digits that fit in UInt64, and exactly 513 bytes: accepted.
        #expect(store.lookup(username: "18446744073709551615:x", algorithm: .md5, now: 0).keys?.count == 1)
        let longest = "2000000000:" + String(repeating: "x", count: 502)
        #expect(longest.utf8.count == 513)
        #expect(store.lookup(username: longest, algorithm: .md5, now: 0).keys?.count == 1)
        // Without secrets, REST usernames are unknown.
        let noSecrets = CredentialStore(realm: realm, users: [:], secrets: [])
        #expect(noSecrets.lookup(username: name, algorithm: .md5, now: 0) == .unknownUser)
    }

    @Test func secretRotationGivesOneKeyPerSecret() throws {
        let store = CredentialStore(realm: realm, users: [:], secrets: ["new", "old"])
        let name = "2000000000:alice"
        for algorithm in [PasswordAlgorithm.md5, .sha256] {
            let keys = try #require(store.lookup(username: name, algorithm: algorithm, now: 0).keys)
            #expect(keys.count == 2)
            let oldPassword = CredentialStore.restPassword(secret: "old", username: name)
            let newPassword = CredentialStore.restPassword(secret: "new", username: name)
            #expect(keys.contains(try #require(LongTermKey.key(algorithm, username: name, realm: realm, password: oldPassword))))
            #expect(keys.first == LongTermKey.key(algorithm, username: name, realm: realm, password: newPassword))
            #expect(keys[0] != keys[1])
        }
    }

    @Test func staticUserWinsOverRESTParse() {
        let name = "2000000000:alice"
        let store = CredentialStore(realm: realm, users: [name: "static"], secrets: ["north"])
        let key = LongTermKey.md5(username: name, realm: realm, password: "static")
        #expect(store.lookup(username: name, algorithm: .md5, now: 0) == .keys([key]))
        // Even after the "timestamp" has passed: it is a static user, not a REST credential.
        #expect(store.lookup(username: name, algorithm: .md5, now: 3_000_000_000) == .keys([key]))
    }
}

private extension CredentialLookup {
    var keys: [[UInt8]]? {
        if case .keys(let k) = self { return k }
        return nil
    }

    /// The keys as hex, or a marker for the other cases (for compact expectations).
    func map(_ f: ([UInt8]) -> String) -> [String] {
        switch self {
        case .keys(let k): return k.map(f)
        case .unknownUser: return ["<unknownUser>"]
        case .expired: return ["<expired>"]
        }
    }
}
