import Testing
@testable import STUN

// RFC 5769, "Test Vectors for Session Traversal Utilities for NAT (STUN)", section 2.
// Copied from the RFC text; each is checked to verify with its published key below, which also
// guards against transcription mistakes.
//
// Note on re-encoding: the vectors of sections 2.1-2.3 pad SOFTWARE and USERNAME with 0x20 bytes
// (RFC 5769 does so on purpose: padding content must be ignored). This codec always pads with
// zeros (RFC 8489 section 14), so re-encoding those messages cannot reproduce the vector byte for
// byte, and since the padding is covered by MESSAGE-INTEGRITY and FINGERPRINT, recomputing those
// would not reproduce the published values either. For them we check that the re-encoding equals
// the vector with its padding bytes zeroed (integrity and fingerprint attributes copied as
// decoded), and that freshly computed MI/FINGERPRINT over the zero-padded form verify. Section
// 2.4 pads with zeros, and there the re-encoding with a freshly computed MESSAGE-INTEGRITY is
// identical to the vector, byte for byte.

enum RFC5769 {
    static let shortTermPassword = "VOkJxbRl1RmTxUk/WvJxBt"
    static let transactionID = TransactionID(high: 0xB7E7_A701, low: 0xBC34_D686_FA87_DFAE)

    /// Section 2.1, Sample Request.
    static let request = hex("""
        00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
        00 24 00 04 6e 00 01 ff
        80 29 00 08 93 2f f9 b1 51 26 3b 36
        00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
        00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
        80 28 00 04 e5 7a 3b cf
        """)
    /// Byte offsets of the 0x20 padding in `request` (after USERNAME "evtj:h6vY").
    static let requestPadding = [73, 74, 75]

    /// Section 2.2, Sample IPv4 Response.
    static let ipv4Response = hex("""
        01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 08 00 01 a1 47 e1 12 a6 43
        00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
        80 28 00 04 c0 7d 4c 96
        """)

    /// Section 2.3, Sample IPv6 Response.
    static let ipv6Response = hex("""
        01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
        00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
        80 28 00 04 c8 fb 0b 4c
        """)
    /// Byte offset of the 0x20 padding after SOFTWARE "test vector" in both responses.
    static let responsePadding = [35]

    /// Section 2.4, Sample Request with Long-Term Authentication.
    static let longTermRequest = hex("""
        00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
        00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
        00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
        00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
        00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66
        """)
    /// U+30DE U+30C8 U+30EA U+30C3 U+30AF U+30B9.
    static let longTermUsername = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}"
    /// RFC 5769's password is "The<U+00AD>M<U+00AA>tr<U+2168>"; after SASLprep, "TheMatrIX".
    static let longTermPassword = "TheMatrIX"
    static let realm = "example.org"
    static let nonce = "f//499k954d6OL34oL9FSTvy64sA"

    static func zeroing(_ bytes: [UInt8], _ offsets: [Int]) -> [UInt8] {
        var b = bytes
        for o in offsets { b[o] = 0 }
        return b
    }
}

@Suite("RFC 5769 test vectors")
struct RFC5769Tests {
    let key = shortTermKey(password: RFC5769.shortTermPassword)

    /// Wrong keys, and every single-byte change before the checked attribute, fail the check.
    func checkRejections(_ vector: [UInt8], key: [UInt8], sha256: Bool = false) throws {
        var wrongKey = key
        wrongKey[0] ^= 1
        try withReader(vector) { r throws in
            #expect(!r.checkMessageIntegrity(key: wrongKey))
            #expect(!r.checkMessageIntegrity(key: [UInt8]()))
            #expect(!r.checkMessageIntegrity(key: Array("wrong".utf8)))
        }
        let miOffset = try #require(try withReader(vector) { $0.messageIntegrityOffset })
        for i in 0 ..< miOffset + 24 where !(2 ... 3).contains(i) {
            var m = vector
            m[i] ^= 0x01
            // Some flips make the message invalid (bad cookie, bad lengths): also a rejection.
            guard let ok = try? withReader(m, { r in (r.checkMessageIntegrity(key: key), r.hasFingerprint ? r.fingerprintIsValid() : false) }) else { continue }
            #expect(!ok.0, "flipped byte \(i) still verifies")
            #expect(!ok.1, "flipped byte \(i) still has a valid fingerprint")
        }
    }

    @Test("2.1 sample request")
    func sampleRequest() throws {
        let m = try Message.decode(RFC5769.request)
        #expect(m.type == .bindingRequest)
        #expect(m.type.rawValue == 0x0001)
        #expect(m.transactionID == RFC5769.transactionID)
        #expect(m.attributes.count == 6)
        #expect(m.attributes[0] == .software("STUN test client"))
        #expect(m.attributes[1] == .priority(0x6E00_01FF))
        #expect(m.attributes[2] == .iceControlled(0x932F_F9B1_5126_3B36))
        #expect(m.attributes[3] == .username("evtj:h6vY"))
        #expect(m.attributes[4] == .messageIntegrity(hex("9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2")))
        #expect(m.attributes[5] == .fingerprint(0xE57A_3BCF))
        #expect(m.username == "evtj:h6vY")
        #expect(m.software == "STUN test client")

        try withReader(RFC5769.request) { r throws in
            #expect(r.attributeCount == 6)
            #expect(r.hasFingerprint)
            #expect(r.fingerprintIsValid())
            #expect(r.checkMessageIntegrity(key: key))
            #expect(!r.hasMessageIntegritySHA256)
            #expect(!r.checkMessageIntegritySHA256(key: key))
            #expect(try r.string(.username) == "evtj:h6vY")
            #expect(try r.uint32(.priority) == 0x6E00_01FF)
            #expect(try r.uint64(.iceControlled) == 0x932F_F9B1_5126_3B36)
            #expect(r.value(of: .username).map(Array.init) == Array("evtj:h6vY".utf8))
        }
        try checkRejections(RFC5769.request, key: key)

        // Re-encoding (integrity and fingerprint copied as decoded) gives the vector with its
        // 0x20 padding zeroed; see the note at the top of this file.
        #expect(m.encode() == RFC5769.zeroing(RFC5769.request, RFC5769.requestPadding))
        // Fresh MI and FINGERPRINT over the zero-padded form verify.
        let fresh = Message(type: m.type, transactionID: m.transactionID, attributes: Array(m.attributes.prefix(4)))
        let bytes = fresh.encode(integrityKey: key, fingerprint: true)
        #expect(bytes.count == RFC5769.request.count)
        #expect(Array(bytes.prefix(73)) == Array(RFC5769.request.prefix(73)))
        try withReader(bytes) { r throws in
            #expect(r.checkMessageIntegrity(key: key))
            #expect(r.fingerprintIsValid())
        }
        // And the reader ignores the padding content: the zero-padded vector decodes to the same.
        #expect(try Message.decode(RFC5769.zeroing(RFC5769.request, RFC5769.requestPadding), verifyFingerprint: false) == m)
    }

    @Test("2.2 sample IPv4 response")
    func ipv4Response() throws {
        let m = try Message.decode(RFC5769.ipv4Response)
        #expect(m.type == .bindingSuccess)
        #expect(m.type.rawValue == 0x0101)
        #expect(m.transactionID == RFC5769.transactionID)
        #expect(m.attributes == [
            .software("test vector"),
            .xorMappedAddress(TransportAddress("192.0.2.1:32853")!),
            .messageIntegrity(hex("2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7")),
            .fingerprint(0xC07D_4C96),
        ])
        #expect(m.xorMappedAddress == TransportAddress(ip: .v4(0xC000_0201), port: 32853))
        try withReader(RFC5769.ipv4Response) { r throws in
            #expect(r.checkMessageIntegrity(key: key))
            #expect(r.fingerprintIsValid())
            #expect(try r.xorAddress(.xorMappedAddress)?.description == "192.0.2.1:32853")
        }
        try checkRejections(RFC5769.ipv4Response, key: key)
        #expect(m.encode() == RFC5769.zeroing(RFC5769.ipv4Response, RFC5769.responsePadding))

        // The XOR-MAPPED-ADDRESS value itself is reproduced byte for byte by the writer.
        var buf = [UInt8](repeating: 0, count: 64)
        let n = try buf.withUnsafeMutableBytes { b in
            var w = try MessageWriter(buffer: b, type: .bindingSuccess, transactionID: RFC5769.transactionID)
            try w.appendXORAddress(.xorMappedAddress, TransportAddress("192.0.2.1:32853")!)
            return w.count
        }
        #expect(Array(buf[20 ..< n]) == Array(RFC5769.ipv4Response[36 ..< 48]))
    }

    @Test("2.3 sample IPv6 response")
    func ipv6Response() throws {
        let m = try Message.decode(RFC5769.ipv6Response)
        #expect(m.type == .bindingSuccess)
        let addr = try #require(TransportAddress("[2001:db8:1234:5678:11:2233:4455:6677]:32853"))
        #expect(m.attributes == [
            .software("test vector"),
            .xorMappedAddress(addr),
            .messageIntegrity(hex("a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41")),
            .fingerprint(0xC8FB_0B4C),
        ])
        try withReader(RFC5769.ipv6Response) { r throws in
            #expect(r.checkMessageIntegrity(key: key))
            #expect(r.fingerprintIsValid())
            #expect(try r.xorAddress(.xorMappedAddress) == addr)
        }
        try checkRejections(RFC5769.ipv6Response, key: key)
        #expect(m.encode() == RFC5769.zeroing(RFC5769.ipv6Response, RFC5769.responsePadding))
        let again = Message(type: m.type, transactionID: m.transactionID, attributes: [.xorMappedAddress(addr)]).encode()
        #expect(Array(again[20...]) == Array(RFC5769.ipv6Response[36 ..< 60]))
    }

    @Test("2.4 long-term credentials request, byte for byte")
    func longTermRequest() throws {
        let m = try Message.decode(RFC5769.longTermRequest)
        #expect(m.type == .bindingRequest)
        #expect(m.transactionID == TransactionID(bytes: hex("78 ad 34 33 c6 ad 72 c0 29 da 41 2e")))
        #expect(m.username == RFC5769.longTermUsername)
        #expect(m.nonce == RFC5769.nonce)
        #expect(m.realm == RFC5769.realm)
        #expect(m.attributes.count == 4)
        #expect(m.attributes.last == .messageIntegrity(hex("f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66")))

        let key = LongTermKey.md5(username: RFC5769.longTermUsername, realm: RFC5769.realm, password: RFC5769.longTermPassword)
        #expect(key.count == 16)
        // The same key from the wire bytes of USERNAME and REALM.
        #expect(LongTermKey.md5(username: Array(RFC5769.longTermUsername.utf8), realm: Array("example.org".utf8),
                                password: Array("TheMatrIX".utf8)) == key)
        try withReader(RFC5769.longTermRequest) { r throws in
            #expect(!r.hasFingerprint)
            #expect(!r.fingerprintIsValid())
            #expect(r.checkMessageIntegrity(key: key))
            #expect(!r.checkMessageIntegrity(key: LongTermKey.md5(username: RFC5769.longTermUsername, realm: RFC5769.realm, password: "thematrix")))
            // The un-prepped password is a different key.
            #expect(!r.checkMessageIntegrity(key: LongTermKey.md5(username: RFC5769.longTermUsername, realm: RFC5769.realm,
                                                                   password: "The\u{00AD}M\u{00AA}tr\u{2168}")))
        }
        try checkRejections(RFC5769.longTermRequest, key: key)

        // Byte for byte: as decoded, and rebuilt with a freshly computed MESSAGE-INTEGRITY.
        #expect(m.encode() == RFC5769.longTermRequest)
        let rebuilt = Message(type: m.type, transactionID: m.transactionID, attributes: Array(m.attributes.dropLast()))
        #expect(rebuilt.encode(integrityKey: key) == RFC5769.longTermRequest)
    }
}
