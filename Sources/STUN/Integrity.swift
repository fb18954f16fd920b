import COpenSSL

// Hashes and MACs for STUN authentication (RFC 8489 sections 9, 14.4-14.6, 18.5), on OpenSSL's
// EVP digests. HMAC (RFC 2104) is built here from the EVP digest calls so that the message
// integrity check can feed a patched copy of the 20-byte header from the stack followed by the
// rest of the caller's buffer, without copying the message or mutating the caller's memory.

/// A fixed 32-byte digest on the stack (large enough for SHA-256; SHA-1 and MD5 use a prefix).
struct DigestBuffer {
    var storage: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    var count = 0

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var s = storage
        let n = count
        return try Swift.withUnsafeBytes(of: &s) { try body($0.slice(0, n)) }
    }

    var bytes: [UInt8] { withUnsafeBytes { Array($0) } }
}

/// The digests STUN uses.
enum HashFunction {
    case md5, sha1, sha256

    var md: OpaquePointer? {
        switch self {
        case .md5: return EVP_md5()
        case .sha1: return EVP_sha1()
        case .sha256: return EVP_sha256()
        }
    }

    var size: Int {
        switch self {
        case .md5: return 16
        case .sha1: return 20
        case .sha256: return 32
        }
    }

    /// All three have a 64-byte block (RFC 2104's B).
    static let blockSize = 64

    /// One-shot digest of the concatenation of up to two buffers; nil if OpenSSL fails.
    func digest(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) -> DigestBuffer? {
        guard let md, let ctx = EVP_MD_CTX_new() else { return nil }
        defer { EVP_MD_CTX_free(ctx) }
        var out = DigestBuffer()
        var n: UInt32 = 0
        let ok = Swift.withUnsafeMutableBytes(of: &out.storage) { o -> Bool in
            EVP_DigestInit_ex(ctx, md, nil) == 1
                && EVP_DigestUpdate(ctx, a.baseAddress, a.count) == 1
                && EVP_DigestUpdate(ctx, b.baseAddress, b.count) == 1
                && EVP_DigestFinal_ex(ctx, o.baseAddress?.assumingMemoryBound(to: UInt8.self), &n) == 1
        }
        guard ok, Int(n) == size else { return nil }
        out.count = size
        return out
    }

    /// HMAC (RFC 2104) keyed with `key` over the concatenation of `a` and `b`; nil if OpenSSL fails.
    func hmac(key: UnsafeRawBufferPointer, _ a: UnsafeRawBufferPointer,
              _ b: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) -> DigestBuffer? {
        guard let md, let ctx = EVP_MD_CTX_new() else { return nil }
        defer { EVP_MD_CTX_free(ctx) }
        // K0: the key, hashed first if longer than a block, zero-padded to the block size.
        var k0: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        let keyOK = Swift.withUnsafeMutableBytes(of: &k0) { kb -> Bool in
            if key.count > HashFunction.blockSize {
                guard let hk = digest(key) else { return false }
                hk.withUnsafeBytes { kb.copyMemory(from: $0) }
            } else if key.count > 0 {
                kb.copyMemory(from: key)
            }
            return true
        }
        guard keyOK else { return nil }

        var inner = DigestBuffer(), out = DigestBuffer()
        var n: UInt32 = 0
        let ok = Swift.withUnsafeBytes(of: k0) { kb -> Bool in
            var pad: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
            return Swift.withUnsafeMutableBytes(of: &pad) { p -> Bool in
                // Inner: H((K0 ^ ipad) || text).
                for i in 0 ..< HashFunction.blockSize { p[i] = kb[i] ^ 0x36 }
                let innerOK = Swift.withUnsafeMutableBytes(of: &inner.storage) { o -> Bool in
                    EVP_DigestInit_ex(ctx, md, nil) == 1
                        && EVP_DigestUpdate(ctx, p.baseAddress, p.count) == 1
                        && EVP_DigestUpdate(ctx, a.baseAddress, a.count) == 1
                        && EVP_DigestUpdate(ctx, b.baseAddress, b.count) == 1
                        && EVP_DigestFinal_ex(ctx, o.baseAddress?.assumingMemoryBound(to: UInt8.self), &n) == 1
                }
                guard innerOK, Int(n) == size else { return false }
                // Outer: H((K0 ^ opad) || inner).
                for i in 0 ..< HashFunction.blockSize { p[i] = kb[i] ^ 0x5C }
                let innerBytes = inner.storage
                return Swift.withUnsafeBytes(of: innerBytes) { ib -> Bool in
                    Swift.withUnsafeMutableBytes(of: &out.storage) { o -> Bool in
                        EVP_DigestInit_ex(ctx, md, nil) == 1
                            && EVP_DigestUpdate(ctx, p.baseAddress, p.count) == 1
                            && EVP_DigestUpdate(ctx, ib.baseAddress, size) == 1
                            && EVP_DigestFinal_ex(ctx, o.baseAddress?.assumingMemoryBound(to: UInt8.self), &n) == 1
                    }
                }
            }
        }
        guard ok, Int(n) == size else { return nil }
        out.count = size
        return out
    }
}

/// Compares two buffers in time that depends only on their lengths (OpenSSL `CRYPTO_memcmp`),
/// as MAC checks must (RFC 8489 section 9.2.4 relies on the HMAC not leaking through timing).
public func constantTimeEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    guard a.count == b.count else { return false }
    if a.count == 0 { return true }
    return CRYPTO_memcmp(a.baseAddress, b.baseAddress, a.count) == 0
}

/// Message digests. Each returns an empty array if OpenSSL fails (which it does not for these).
public enum Digest {
    public static func md5(_ data: UnsafeRawBufferPointer) -> [UInt8] { HashFunction.md5.digest(data)?.bytes ?? [] }
    public static func sha1(_ data: UnsafeRawBufferPointer) -> [UInt8] { HashFunction.sha1.digest(data)?.bytes ?? [] }
    public static func sha256(_ data: UnsafeRawBufferPointer) -> [UInt8] { HashFunction.sha256.digest(data)?.bytes ?? [] }

    public static func md5(_ data: [UInt8]) -> [UInt8] { data.withUnsafeBytes { md5($0) } }
    public static func sha1(_ data: [UInt8]) -> [UInt8] { data.withUnsafeBytes { sha1($0) } }
    public static func sha256(_ data: [UInt8]) -> [UInt8] { data.withUnsafeBytes { sha256($0) } }
}

/// HMACs (RFC 2104). Each returns an empty array if OpenSSL fails (which it does not for these).
/// Inside this module, OpenSSL's C function of the same name is `COpenSSL.HMAC`.
public enum HMAC {
    public static func sha1(key: UnsafeRawBufferPointer, data: UnsafeRawBufferPointer) -> [UInt8] {
        HashFunction.sha1.hmac(key: key, data)?.bytes ?? []
    }

    public static func sha256(key: UnsafeRawBufferPointer, data: UnsafeRawBufferPointer) -> [UInt8] {
        HashFunction.sha256.hmac(key: key, data)?.bytes ?? []
    }

    public static func sha1(key: [UInt8], data: [UInt8]) -> [UInt8] {
        key.withUnsafeBytes { k in data.withUnsafeBytes { sha1(key: k, data: $0) } }
    }

    public static func sha256(key: [UInt8], data: [UInt8]) -> [UInt8] {
        key.withUnsafeBytes { k in data.withUnsafeBytes { sha256(key: k, data: $0) } }
    }
}

/// Long-term credential keys, RFC 8489 section 9.2.2 and section 18.5.1:
///
///     key = MD5(username ":" OpaqueString(realm) ":" OpaqueString(password))      (16 bytes)
///     key = SHA-256(username ":" OpaqueString(realm) ":" OpaqueString(password))  (32 bytes)
///
/// This codec does NOT apply the PRECIS OpaqueString profile (RFC 8265) or SASLprep (RFC 4013):
/// the strings are used as their UTF-8 bytes as given. For ASCII credentials, and for any already
/// normalised text, that is the same thing; callers that need the profile must apply it first.
/// (RFC 5769 section 2.4's password "The<U+00AD>M<U+00AA>tr<U+2168>" becomes "TheMatrIX" after
/// SASLprep; pass "TheMatrIX".)
public enum LongTermKey {
    public static func md5(username: String, realm: String, password: String) -> [UInt8] {
        Digest.md5(Array("\(username):\(realm):\(password)".utf8))
    }

    public static func sha256(username: String, realm: String, password: String) -> [UInt8] {
        Digest.sha256(Array("\(username):\(realm):\(password)".utf8))
    }

    /// The same from raw bytes (e.g. USERNAME and REALM as they arrived on the wire).
    public static func md5(username: [UInt8], realm: [UInt8], password: [UInt8]) -> [UInt8] {
        Digest.md5(joined(username, realm, password))
    }

    public static func sha256(username: [UInt8], realm: [UInt8], password: [UInt8]) -> [UInt8] {
        Digest.sha256(joined(username, realm, password))
    }

    /// The key for a PASSWORD-ALGORITHM (RFC 8489 section 18.5.1); nil for unknown algorithms.
    public static func key(_ algorithm: PasswordAlgorithm, username: String, realm: String, password: String) -> [UInt8]? {
        switch algorithm {
        case .md5: return md5(username: username, realm: realm, password: password)
        case .sha256: return sha256(username: username, realm: realm, password: password)
        default: return nil
        }
    }

    private static func joined(_ a: [UInt8], _ b: [UInt8], _ c: [UInt8]) -> [UInt8] {
        var s: [UInt8] = []
        s.reserveCapacity(a.count + b.count + c.count + 2)
        s += a
        s.append(UInt8(ascii: ":"))
        s += b
        s.append(UInt8(ascii: ":"))
        s += c
        return s
    }
}

/// The short-term credential key, RFC 8489 section 9.1.1: the password itself (OpaqueString
/// processing is not applied here either; see `LongTermKey`).
public func shortTermKey(password: String) -> [UInt8] { Array(password.utf8) }

/// USERHASH, RFC 8489 section 14.4: SHA-256(OpaqueString(username) ":" OpaqueString(realm)), 32 bytes.
/// No OpaqueString processing is applied (see `LongTermKey`).
public func userhash(username: String, realm: String) -> [UInt8] {
    Digest.sha256(Array("\(username):\(realm)".utf8))
}
