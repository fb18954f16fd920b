import Testing
@testable import STUN

// RFC 8489 Appendix B.1, "Sample Request with Long-Term Authentication with
// MESSAGE-INTEGRITY-SHA256 and USERHASH".
//
// The vector as printed in RFC 8489 is known to be wrong (errata 6268 and related reports): its
// NONCE length field does not match the nonce it carries, and it lacks the PASSWORD-ALGORITHM
// attribute that a SHA-256 key requires. The bytes below are the corrected message of erratum
// 6268 (NONCE length 0x29 = 41 bytes with 3 bytes of padding, PASSWORD-ALGORITHM SHA-256 added,
// message length 0x90), whose MESSAGE-INTEGRITY-SHA256 value is the one the RFC prints.

enum RFC8489B1 {
    static let message = hex("""
        00 01 00 90 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
        00 1e 00 20 4a 3c f3 8f ef 69 92 bd a9 52 c6 78 04 17 da 0f
        24 81 94 15 56 9e 60 b2 05 c4 6e 41 40 7f 17 04
        00 15 00 29 6f 62 4d 61 74 4a 6f 73 32 41 41 41 43 66 2f 2f
        34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76
        79 36 34 73 41 00 00 00
        00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
        00 1d 00 04 00 02 00 00
        00 1c 00 20 b5 c7 bf 00 5b 6c 52 a2 1c 51 c5 e8 92 f8 19 24
        13 62 96 cb 92 7c 43 14 93 09 27 8c c6 51 8e 65
        """)
    static let username = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}"
    static let password = "TheMatrIX"
    static let nonce = "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"
    static let realm = "example.org"
}

@Suite("RFC 8489 Appendix B.1 (with erratum 6268)")
struct RFC8489VectorTests {
    @Test func decodesAndUserhashMatches() throws {
        let m = try Message.decode(RFC8489B1.message)
        #expect(m.type == .bindingRequest)
        #expect(m.transactionID == TransactionID(bytes: hex("78 ad 34 33 c6 ad 72 c0 29 da 41 2e")))
        let uh = userhash(username: RFC8489B1.username, realm: RFC8489B1.realm)
        #expect(m.attributes.count == 5)
        #expect(m.attributes[0] == .userhash(uh))
        #expect(m.attributes[1] == .nonce(RFC8489B1.nonce))
        #expect(m.attributes[2] == .realm(RFC8489B1.realm))
        #expect(m.attributes[3] == .passwordAlgorithm(.sha256, params: []))
        #expect(m.attributes[4].type == .messageIntegritySHA256)
        #expect(m.encode() == RFC8489B1.message)
    }

    @Test func messageIntegritySHA256VerifiesWithSHA256Key() throws {
        // PASSWORD-ALGORITHM is SHA-256, so the key is SHA-256(username ":" realm ":" password)
        // (RFC 8489 section 18.5.1.2).
        let shaKey = LongTermKey.sha256(username: RFC8489B1.username, realm: RFC8489B1.realm, password: RFC8489B1.password)
        let md5Key = LongTermKey.md5(username: RFC8489B1.username, realm: RFC8489B1.realm, password: RFC8489B1.password)
        #expect(shaKey.count == 32)
        #expect(LongTermKey.key(.sha256, username: RFC8489B1.username, realm: RFC8489B1.realm, password: RFC8489B1.password) == shaKey)
        try withReader(RFC8489B1.message) { r throws in
            #expect(r.hasMessageIntegritySHA256)
            #expect(!r.hasMessageIntegrity)
            #expect(r.checkMessageIntegritySHA256(key: shaKey))
            #expect(!r.checkMessageIntegritySHA256(key: md5Key))
            #expect(!r.checkMessageIntegrity(key: shaKey))
            #expect(try r.passwordAlgorithm() == .sha256)
            #expect(r.value(of: .userhash).map(Array.init) == userhash(username: RFC8489B1.username, realm: RFC8489B1.realm))
        }
        // Rebuilt from its parts with a fresh MESSAGE-INTEGRITY-SHA256: byte for byte.
        let m = try Message.decode(RFC8489B1.message)
        let rebuilt = Message(type: m.type, transactionID: m.transactionID, attributes: Array(m.attributes.dropLast()))
        #expect(rebuilt.encode(integritySHA256Key: shaKey) == RFC8489B1.message)

        // Truncated MESSAGE-INTEGRITY-SHA256 (16 bytes, RFC 8489 section 14.6) verifies on its prefix.
        var truncated = Array(RFC8489B1.message.prefix(RFC8489B1.message.count - 16))
        truncated[3] = UInt8(truncated.count - 20)
        truncated[truncated.count - 17] = 16
        try withReader(truncated) { r throws in
            // Cutting the published MAC does not verify: the HMAC input (its length field) changes.
            #expect(!r.checkMessageIntegritySHA256(key: shaKey))
        }
        let recomputed = rebuilt.encode(integritySHA256Key: shaKey)
        #expect(recomputed == RFC8489B1.message)
        for n in stride(from: 16, through: 32, by: 4) {
            let full = HMAC.sha256(key: shaKey, data: {
                var b = Array(RFC8489B1.message.prefix(RFC8489B1.message.count - 36))
                b[3] = UInt8(b.count - 20 + 4 + n)
                return b
            }())
            var msg = Array(RFC8489B1.message.prefix(RFC8489B1.message.count - 36))
            msg += [0x00, 0x1C, 0x00, UInt8(n)] + full.prefix(n)
            msg[3] = UInt8(msg.count - 20)
            try withReader(msg) { r throws in
                #expect(r.checkMessageIntegritySHA256(key: shaKey), "truncated to \(n)")
                #expect(!r.checkMessageIntegritySHA256(key: md5Key))
            }
        }
    }
}
