import Testing
@testable import STUN

@Suite("CRC-32, digests, HMAC, keys")
struct CryptoTests {
    @Test func crc32CheckValue() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([UInt8]()) == 0)
        #expect(CRC32.checksum(Array("The quick brown fox jumps over the lazy dog".utf8)) == 0x414F_A339)
        // Continuing a CRC over a split input gives the same result.
        let a = Array("12345".utf8), b = Array("6789".utf8)
        let partial = a.withUnsafeBytes { CRC32.checksum($0) }
        #expect(b.withUnsafeBytes { CRC32.checksum($0, continuing: partial) } == 0xCBF4_3926)
    }

    @Test func digests() {
        #expect(hexString(Digest.md5(Array("abc".utf8))) == "900150983cd24fb0d6963f7d28e17f72")
        #expect(hexString(Digest.sha1(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(hexString(Digest.sha256(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hexString(Digest.md5([])) == "d41d8cd98f00b204e9800998ecf8427e")
    }

    @Test func hmacRFC2202And4231() {
        // RFC 2202 test case 1 and 2 (HMAC-SHA1).
        #expect(hexString(HMAC.sha1(key: [UInt8](repeating: 0x0B, count: 20), data: Array("Hi There".utf8)))
            == "b617318655057264e28bc0b6fb378c8ef146be00")
        #expect(hexString(HMAC.sha1(key: Array("Jefe".utf8), data: Array("what do ya want for nothing?".utf8)))
            == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        // RFC 2202 test case 6: an 80-byte key, longer than the block, is hashed first.
        #expect(hexString(HMAC.sha1(key: [UInt8](repeating: 0xAA, count: 80),
                                    data: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)))
            == "aa4ae5e15272d00e95705637ce8a3b55ed402112")
        // RFC 4231 test case 2 and 6 (HMAC-SHA256).
        #expect(hexString(HMAC.sha256(key: Array("Jefe".utf8), data: Array("what do ya want for nothing?".utf8)))
            == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(hexString(HMAC.sha256(key: [UInt8](repeating: 0xAA, count: 131),
                                      data: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)))
            == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        // Empty key.
        #expect(HMAC.sha1(key: [], data: []).count == 20)
    }

    @Test func keys() {
        #expect(LongTermKey.md5(username: "user", realm: "realm", password: "pass") == Digest.md5(Array("user:realm:pass".utf8)))
        #expect(LongTermKey.sha256(username: "user", realm: "realm", password: "pass") == Digest.sha256(Array("user:realm:pass".utf8)))
        #expect(LongTermKey.key(PasswordAlgorithm(rawValue: 9), username: "u", realm: "r", password: "p") == nil)
        #expect(userhash(username: "user", realm: "realm") == Digest.sha256(Array("user:realm".utf8)))
        #expect(shortTermKey(password: "pw") == [0x70, 0x77])
    }

    @Test func constantTimeCompare() {
        let a: [UInt8] = [1, 2, 3], b: [UInt8] = [1, 2, 4]
        a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in
                #expect(constantTimeEqual(pa, pa))
                #expect(!constantTimeEqual(pa, pb))
                #expect(!constantTimeEqual(pa, UnsafeRawBufferPointer(rebasing: pa[0 ..< 2])))
                #expect(constantTimeEqual(UnsafeRawBufferPointer(start: nil, count: 0), UnsafeRawBufferPointer(start: nil, count: 0)))
            }
        }
    }
}
