import STUN

/// The result of checking a NONCE a client sent back (RFC 8489 section 9.2.4).
public enum NonceCheck: Sendable, Equatable {
    /// Issued by this issuer, for this client, and not yet expired.
    case valid
    /// Issued by this issuer for this client, but its lifetime has passed.
    case stale
    /// Not a nonce this issuer made for this client: forged, garbled, truncated, issued to another
    /// client address, or issued by a previous process (the key is per process).
    case invalid
}

/// Stateless nonces for the long-term credential mechanism (RFC 8489 section 9.2).
///
/// A nonce is
///
///     "obMatJos2" <features> <mac-part>
///
/// - `"obMatJos2"` is the "nonce cookie" of RFC 8489 section 9.2, which tells an RFC 8489 client
///   that the next 4 characters are the STUN Security Feature set (section 18.1, IANA "STUN
///   Security Features"): 24 bits, bit 0 the most significant, encoded with base64 (RFC 4648
///   section 4). This issuer sets bit 0, "Password algorithms" (section 9.2.1: the server offers
///   PASSWORD-ALGORITHMS), and bit 1, "Username anonymity" (section 9.2.1: USERHASH is accepted),
///   i.e. the bits 0xC00000, which encode as `"wAAA"`.
/// - `<mac-part>` is unpadded base64url (RFC 4648 section 5) of 24 bytes: the 8-byte big-endian
///   expiry (unix seconds) followed by the first 16 bytes of
///   HMAC-SHA256(key, expiry ‖ client IP address bytes in network order).
///
/// The whole nonce is 45 characters, all of them `qdtext` and well under the 128 characters that
/// RFC 8489 section 14.10 allows. Because the expiry and the client address are authenticated,
/// the server keeps no per-nonce state: any worker can check any nonce, and a nonce cannot be
/// carried to another client address (RFC 8489 section 9.2.2 recommends binding the nonce to
/// the client's address).
///
/// What a caller should answer (RFC 8489 section 9.2.4):
/// - `.valid`: go on with the username and MESSAGE-INTEGRITY checks.
/// - `.stale`: 438 (Stale Nonce) with a fresh NONCE, REALM and PASSWORD-ALGORITHMS.
/// - `.invalid`: also 438 with a fresh nonce. Section 9.2.4 gives a single rule, "If the NONCE is
///   no longer valid, the server MUST generate an error response with an error code of 438 (Stale
///   Nonce)", with no separate case for nonces the server never issued. A 438 makes the client
///   retry at once with the new nonce and the same credentials (section 9.2.5), which is what
///   must happen after a server restart (new key: every outstanding nonce fails the MAC) or a
///   client address change; a 401 would make clients such as browsers treat their credentials as
///   wrong. It reveals nothing: anyone can get a fresh nonce for their own address with an
///   unauthenticated request. The distinction from `.stale` is kept for counters and logs.
///
/// The clock is a parameter (`now`, unix seconds): this type never reads it.
public struct NonceIssuer: Sendable {
    /// Seconds a nonce stays valid after it is issued.
    public let lifetime: UInt64
    private let key: [UInt8]

    /// RFC 8489 section 9.2 nonce cookie.
    public static let cookie = "obMatJos2"
    /// The cookie followed by this issuer's feature set (bits 0 and 1 set: `"wAAA"`).
    static let prefix: [UInt8] = Array("obMatJos2wAAA".utf8)
    static let cookieLength = 9
    /// 8-byte expiry + 16-byte truncated MAC.
    static let payloadLength = 24
    static let macLength = 16
    /// Unpadded base64url of 24 bytes.
    static let encodedPayloadLength = 32
    /// The length of every nonce this issuer makes.
    public static let nonceLength = 45

    /// - Parameters:
    ///   - key: the MAC key; use `randomKey()` (per process). Any length works; 32 bytes is right.
    ///   - lifetime: seconds a nonce is valid. RFC 8489 section 9.2 leaves it to the server; 600
    ///     matches common practice (coturn's default).
    public init(key: [UInt8], lifetime: UInt64 = 600) {
        self.key = key
        self.lifetime = lifetime
    }

    /// 32 bytes from `SystemRandomNumberGenerator` (the OS CSPRNG).
    public static func randomKey() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        var out = [UInt8](repeating: 0, count: 32)
        var i = 0
        while i < out.count {
            let word = generator.next()
            withUnsafeBytes(of: word) { w in
                for b in w where i < out.count {
                    out[i] = b
                    i += 1
                }
            }
        }
        return out
    }

    /// A fresh nonce for `client`, valid until `now + lifetime` (inclusive).
    public func issue(for client: IPAddress, now: UInt64) -> String {
        let (expiry, overflow) = now.addingReportingOverflow(lifetime)
        let expires = overflow ? UInt64.max : expiry
        var payload: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes
        return withUnsafeMutableBytes(of: &payload) { p -> String in
            var be = expires.bigEndian
            withUnsafeBytes(of: &be) { p.copyMemory(from: $0) }
            let mac = self.mac(expiry: expires, client: client)
            var i = 0
            while i < Self.macLength, i < mac.count {
                p[8 + i] = mac[i]
                i += 1
            }
            var out: [UInt8] = []
            out.reserveCapacity(Self.nonceLength)
            out.append(contentsOf: Self.prefix)
            Base64.encode(UnsafeRawBufferPointer(p), url: true, padding: false, into: &out)
            return String(decoding: out, as: UTF8.self)
        }
    }

    /// Checks the raw value of a NONCE attribute. Never traps, whatever the bytes.
    public func check(_ nonce: UnsafeRawBufferPointer, for client: IPAddress, now: UInt64) -> NonceCheck {
        guard nonce.count == Self.nonceLength else { return .invalid }
        var i = 0
        while i < Self.prefix.count {
            if nonce[i] != Self.prefix[i] { return .invalid }
            i += 1
        }
        var payload: (UInt64, UInt64, UInt64) = (0, 0, 0)
        return withUnsafeMutableBytes(of: &payload) { p -> NonceCheck in
            let text = UnsafeRawBufferPointer(rebasing: nonce[Self.prefix.count ..< Self.nonceLength])
            guard Base64.decodeURL(text, into: p) else { return .invalid }
            var expiry: UInt64 = 0
            for j in 0 ..< 8 { expiry = expiry << 8 | UInt64(p[j]) }
            let mac = self.mac(expiry: expiry, client: client)
            guard mac.count >= Self.macLength else { return .invalid }
            let good = mac.withUnsafeBytes { m in
                constantTimeEqual(UnsafeRawBufferPointer(rebasing: m[0 ..< Self.macLength]),
                                  UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(p)[8 ..< Self.payloadLength]))
            }
            guard good else { return .invalid }
            return expiry < now ? .stale : .valid
        }
    }

    /// The same for a nonce held as text.
    public func check(_ nonce: String, for client: IPAddress, now: UInt64) -> NonceCheck {
        var text = nonce
        return text.withUTF8 { check(UnsafeRawBufferPointer($0), for: client, now: now) }
    }

    /// The STUN Security Feature bits a nonce advertises (RFC 8489 sections 9.2 and 18.1), as an
    /// RFC 8489 client reads them: nil unless the nonce starts with the nonce cookie followed by 4
    /// valid base64 characters. Works on any server's nonce, not only this issuer's.
    public static func hasSecurityFeatures(_ nonce: UnsafeRawBufferPointer) -> (passwordAlgorithms: Bool, userAnonymity: Bool)? {
        guard nonce.count >= cookieLength + 4 else { return nil }
        var i = 0
        while i < cookieLength {
            if nonce[i] != prefix[i] { return nil }
            i += 1
        }
        var bits: UInt32 = 0
        for j in cookieLength ..< cookieLength + 4 {
            guard let v = Base64.standardValue(nonce[j]) else { return nil }
            bits = bits << 6 | v
        }
        return (bits & 0x80_0000 != 0, bits & 0x40_0000 != 0)
    }

    /// The same for a nonce held as text.
    public static func hasSecurityFeatures(_ nonce: String) -> (passwordAlgorithms: Bool, userAnonymity: Bool)? {
        var text = nonce
        return text.withUTF8 { hasSecurityFeatures(UnsafeRawBufferPointer($0)) }
    }

    /// HMAC-SHA256(key, expiry (8 bytes, big-endian) ‖ client address (4 or 16 bytes)).
    private func mac(expiry: UInt64, client: IPAddress) -> [UInt8] {
        var input: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 8 + up to 16 bytes
        return withUnsafeMutableBytes(of: &input) { buf -> [UInt8] in
            var be = expiry.bigEndian
            withUnsafeBytes(of: &be) { buf.copyMemory(from: $0) }
            let used = client.withBytes { ip -> Int in
                let n = min(ip.count, 16)
                UnsafeMutableRawBufferPointer(rebasing: buf[8 ..< 8 + n]).copyMemory(from: UnsafeRawBufferPointer(rebasing: ip[0 ..< n]))
                return 8 + n
            }
            let data = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buf)[0 ..< used])
            return key.withUnsafeBytes { HMAC.sha256(key: $0, data: data) }
        }
    }
}
