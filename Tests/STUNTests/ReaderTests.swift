import Testing
@testable import STUN

/// Builds raw messages attribute by attribute (no validation), for reader edge cases.
struct RawBuilder {
    var type: UInt16 = 0x0001
    var tid = TransactionID(high: 0x0102_0304, low: 0x0506_0708_090A_0B0C)
    var body: [UInt8] = []

    mutating func add(_ t: UInt16, _ value: [UInt8], padding: UInt8 = 0) {
        body += [UInt8(t >> 8), UInt8(t & 0xFF), UInt8(value.count >> 8), UInt8(value.count & 0xFF)] + value
        body += [UInt8](repeating: padding, count: (4 - value.count % 4) % 4)
    }

    var bytes: [UInt8] {
        [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(body.count >> 8), UInt8(body.count & 0xFF), 0x21, 0x12, 0xA4, 0x42]
            + tid.bytes + body
    }
}

@Suite("MessageReader")
struct ReaderTests {
    func kind(_ bytes: [UInt8]) -> STUNDecodeError.Kind? { decodeError(bytes)?.kind }

    @Test func headerValidation() {
        var rb = RawBuilder()
        rb.add(0x8022, Array("abc".utf8))
        let good = rb.bytes
        #expect(kind(good) == nil)
        #expect(kind([]) == .truncatedHeader)
        #expect(kind(Array(good.prefix(19))) == .truncatedHeader)
        var b = good; b[0] |= 0x40
        #expect(kind(b) == .notSTUN)
        b = good; b[7] ^= 1
        #expect(kind(b) == .badMagicCookie)
        b = good; b[3] += 1
        #expect(kind(b) == .lengthNotMultipleOf4)
        b = good; b[3] += 4
        #expect(kind(b) == .lengthMismatch)
        #expect(kind(good + [0, 0, 0, 0]) == .lengthMismatch)
        #expect(kind(Array(good.dropLast(4))) == .lengthMismatch)
        // Attribute value running past the end.
        b = good; b[23] = 9
        #expect(kind(b) == .attributeTruncated(.software))
        #expect(decodeError(b)?.offset == 20)
        #expect(decodeError(b)?.description == "attribute 0x8022 value truncated at byte 20")
        // Padding is counted: length 5 needs 8 bytes of room.
        rb = RawBuilder(); rb.add(0x0013, [1, 2, 3, 4])
        b = rb.bytes; b[23] = 5
        #expect(kind(b) == .attributeTruncated(.data))
    }

    @Test func paddingContentIgnored() throws {
        var rb = RawBuilder()
        rb.add(0x0006, Array("user1".utf8), padding: 0xFF)
        let m = try Message.decode(rb.bytes)
        #expect(m.attributes == [.username("user1")])
    }

    @Test func fingerprintMustBeLast() throws {
        let m = Message(type: .bindingRequest, attributes: [.software("abc")])
        var bytes = m.encode(fingerprint: true)
        #expect(try Message.decode(bytes).attributes.count == 2)
        // Anything after FINGERPRINT is an error.
        bytes += [0x80, 0x22, 0x00, 0x00]
        bytes[3] += 4
        #expect(kind(bytes) == .attributeAfterFingerprint(.software))
        // A wrong FINGERPRINT fails Message.decode (and the reader's check), unless asked not to verify.
        var wrong = m.encode(fingerprint: true)
        wrong[wrong.count - 1] ^= 1
        #expect(kind(wrong) == .badFingerprint)
        #expect(try Message.decode(wrong, verifyFingerprint: false).attributes.count == 2)
        #expect(try withReader(wrong) { r throws in r.fingerprintIsValid() } == false)
        // FINGERPRINT with a wrong length.
        var rb = RawBuilder(); rb.add(0x8028, [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(kind(rb.bytes) == .badAttributeValue(.fingerprint))
    }

    @Test func attributesAfterIntegrityAreIgnored() throws {
        let key: [UInt8] = Array("secret".utf8)
        let signed = Message(type: .allocateRequest, attributes: [.lifetime(600)]).encode(integrityKey: key)
        // Append DATA and a comprehension-required unknown type after MESSAGE-INTEGRITY.
        var tampered = signed + [0x00, 0x13, 0x00, 0x04, 1, 2, 3, 4, 0x00, 0x02, 0x00, 0x00]
        tampered[3] = UInt8(tampered.count - 20)
        let m = try Message.decode(tampered)
        #expect(m.attributes.map(\.type) == [.lifetime, .messageIntegrity])
        try withReader(tampered) { r throws in
            #expect(r.attributeCount == 2)
            #expect(r.value(of: .data) == nil)
            #expect(r.firstUnknownComprehensionRequired(isKnown: \.isKnown) == nil)
            // The header length changed, yet the MAC still verifies: it covers the length up to
            // and including MESSAGE-INTEGRITY, which the reader patches in (RFC 8489 section 14.5).
            #expect(r.checkMessageIntegrity(key: key))
        }
        // MI-SHA256 and FINGERPRINT after MI still count; a second MI does not; others after
        // MI-SHA256 are ignored.
        let full = Message(type: .allocateRequest, attributes: [.lifetime(600)])
            .encode(integrityKey: key, integritySHA256Key: key, fingerprint: true)
        let fm = try Message.decode(full)
        #expect(fm.attributes.map(\.type) == [.lifetime, .messageIntegrity, .messageIntegritySHA256, .fingerprint])
        try withReader(full) { r throws in
            #expect(r.checkMessageIntegrity(key: key))
            #expect(r.checkMessageIntegritySHA256(key: key))
            #expect(r.fingerprintIsValid())
        }
        var rb = RawBuilder()
        rb.add(0x0008, [UInt8](repeating: 1, count: 20))
        rb.add(0x0008, [UInt8](repeating: 2, count: 20))
        rb.add(0x001C, [UInt8](repeating: 3, count: 32))
        rb.add(0x0013, [1])
        rb.add(0x0008, [UInt8](repeating: 4, count: 7))  // ignored, so its bad length is no error
        let rm = try Message.decode(rb.bytes)
        #expect(rm.attributes == [.messageIntegrity([UInt8](repeating: 1, count: 20)),
                                  .messageIntegritySHA256([UInt8](repeating: 3, count: 32))])
        // A counted MESSAGE-INTEGRITY with a bad length is an error.
        rb = RawBuilder(); rb.add(0x0008, [UInt8](repeating: 1, count: 16))
        #expect(kind(rb.bytes) == .badAttributeValue(.messageIntegrity))
        rb = RawBuilder(); rb.add(0x001C, [UInt8](repeating: 1, count: 12))
        #expect(kind(rb.bytes) == .badAttributeValue(.messageIntegritySHA256))
        rb = RawBuilder(); rb.add(0x001C, [UInt8](repeating: 1, count: 18))
        #expect(kind(rb.bytes) == .badAttributeValue(.messageIntegritySHA256))
    }

    @Test func integrityDoesNotMutateBuffer() throws {
        let key: [UInt8] = [1, 2, 3]
        var bytes = Message(type: .bindingRequest, attributes: [.username("u")]).encode(integrityKey: key)
        bytes += [0x80, 0x22, 0x00, 0x00]  // ignored trailing attribute
        bytes[3] += 4
        let copy = bytes
        try withReader(bytes) { r throws in #expect(r.checkMessageIntegrity(key: key)) }
        #expect(bytes == copy)
    }

    @Test func unknownComprehensionRequired() throws {
        var rb = RawBuilder()
        rb.add(0x0002, [1, 2, 3, 4])      // unknown, comprehension-required
        rb.add(0x8099, [])                // unknown, optional
        rb.add(0x0006, Array("u".utf8))   // known
        rb.add(0x0004, [])                // unknown, required
        rb.add(0x0002, [5])               // duplicate
        let bytes = rb.bytes
        try withReader(bytes) { r throws in
            #expect(r.firstUnknownComprehensionRequired(isKnown: \.isKnown) == AttributeType(rawValue: 0x0002))
            var list: [AttributeType] = []
            r.unknownComprehensionRequired(isKnown: \.isKnown, into: &list)
            #expect(list.map(\.rawValue) == [0x0002, 0x0004])
            // The writer builds the 420 response's UNKNOWN-ATTRIBUTES straight from the request.
            var out = [UInt8](repeating: 0, count: 64)
            let n = try out.withUnsafeMutableBytes { b throws in
                var w = try MessageWriter(buffer: b, type: r.type.errorResponse, transactionID: r.transactionID)
                try w.appendErrorCode(ErrorCode.unknownAttribute)
                #expect(try w.appendUnknownAttributes(from: r, isKnown: \.isKnown) == 2)
                return w.count
            }
            let resp = try Message.decode(Array(out.prefix(n)))
            #expect(resp.type == MessageType(method: .binding, class: .errorResponse))
            #expect(resp.errorCode?.code == 420)
            #expect(resp.errorCode?.reason == "Unknown Attribute")
            #expect(resp.first(.unknownAttributes) == .unknownAttributes([AttributeType(rawValue: 2), AttributeType(rawValue: 4)]))
        }
    }

    @Test func typedGetters() throws {
        let tid = TransactionID.random()
        let peer1 = TransportAddress("[2001:db8::7]:9")!, peer2 = TransportAddress("10.0.0.1:4000")!
        let m = Message(type: MessageType(method: .allocate, class: .request), transactionID: tid, attributes: [
            .requestedTransport(protocolNumber: 17), .lifetime(3600), .evenPort(reserve: true),
            .requestedAddressFamily(.ipv6), .dontFragment, .channelNumber(0x4001), .xorPeerAddress(peer1),
            .xorPeerAddress(peer2), .reservationToken([1, 2, 3, 4, 5, 6, 7, 8]), .connectionID(77),
            .errorCode(code: 438, reason: "Stale Nonce"), .data([9, 9]), .mappedAddress(peer2),
            .passwordAlgorithm(.md5, params: []), .realm("r"),
        ])
        let bytes = m.encode()
        try withReader(bytes) { r throws in
            #expect(r.type == MessageType(method: .allocate, class: .request))
            #expect(r.transactionID == tid)
            #expect(r.attributeCount == 15)
            #expect(try r.requestedTransport() == 17)
            #expect(try r.lifetime() == 3600)
            #expect(try r.evenPort() == true)
            #expect(try r.requestedAddressFamilyByte() == 2)
            #expect(try r.additionalAddressFamilyByte() == nil)
            #expect(r.contains(.dontFragment))
            #expect(try r.channelNumber() == 0x4001)
            #expect(try r.xorAddress(.xorPeerAddress) == peer1)
            var peers: [TransportAddress] = []
            try r.forEachXORAddress(.xorPeerAddress) { peers.append($0) }
            #expect(peers == [peer1, peer2])
            #expect(try r.reservationToken() == 0x0102_0304_0506_0708)
            #expect(try r.connectionID() == 77)
            #expect(try r.errorCode()?.code == 438)
            #expect(try r.errorCode()?.reason == "Stale Nonce")
            #expect(try r.errorCodeNumber() == 438)
            #expect(r.data.map(Array.init) == [9, 9])
            #expect(try r.address(.mappedAddress) == peer2)
            #expect(try r.passwordAlgorithm() == .md5)
            #expect(try r.string(.realm) == "r")
            #expect(try r.attribute(.lifetime) == .lifetime(3600))
            #expect(try r.xorAddress(.xorRelayedAddress) == nil)
            var types: [AttributeType] = []
            r.forEachAttribute { t, _ in types.append(t) }
            #expect(types == m.attributes.map(\.type))
            #expect(r.attributes.map(\.type) == types)
        }
        // Malformed values throw badAttributeValue at the attribute's offset.
        var rb = RawBuilder()
        rb.add(0x0019, [17, 0, 0, 0])
        rb.add(0x0020, [0, 3, 0, 0, 1, 2, 3, 4])  // family 3
        let bad = rb.bytes
        try withReader(bad) { r throws in
            #expect(try r.requestedTransport() == 17)
            #expect(throws: STUNDecodeError(.badAttributeValue(.xorMappedAddress), at: 28)) { try r.xorAddress(.xorMappedAddress) }
        }
        #expect(decodeError(bad) == STUNDecodeError(.badAttributeValue(.xorMappedAddress), at: 28))
    }

    /// (type, value) pairs that must fail with `.badAttributeValue(type)`.
    static let badValueCases: [(UInt16, [UInt8])] = [
        (0x0020, [0, 1, 0, 0, 1, 2, 3]),          // IPv4 address too short
        (0x0020, [0, 2, 0, 0, 1, 2, 3, 4]),                        // IPv6 family, IPv4 length
        (0x0001, [0, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]),            // IPv4 family, wrong length
        (0x0009, [0, 0, 2, 0]),                                    // class 2
        (0x0009, [0, 0, 7, 0]),                                    // class 7
        (0x0009, [0, 0, 4, 100]),                                  // number 100
        (0x0009, [0, 0, 4]),                                       // short
        (0x0009, [0, 0, 4, 0, 0xFF]),                              // invalid UTF-8 reason
        (0x0006, [0xC3, 0x28]),                                    // invalid UTF-8
        (0x0006, [0xED, 0xA0, 0x80]),                              // UTF-8 surrogate
        (0x0006, [0xC0, 0xAF]),                                    // overlong UTF-8
        (0x8022, [0x61, 0xE3, 0x83]),                              // truncated sequence
        (0x0006, [UInt8](repeating: 0x61, count: 513)),            // username too long
        (0x0014, [UInt8](repeating: 0x61, count: 764)),            // realm too long
        (0x001E, [UInt8](repeating: 0, count: 31)),                // userhash length
        (0x000A, [0, 1, 0]),                                       // odd UNKNOWN-ATTRIBUTES
        (0x000C, [0x40, 0]),                                       // channel number short
        (0x000D, [0, 0, 0]),                                       // lifetime short
        (0x0017, [3, 0, 0, 0]),                                    // family 3
        (0x8000, [0, 0, 0, 0]),                                    // family 0
        (0x8001, [3, 0, 4, 0]),                                    // address error family
        (0x0018, [0x80, 0]),                                       // even-port length
        (0x0019, [17, 0]),                                         // requested-transport length
        (0x001A, [0]),                                             // dont-fragment has no value
        (0x0022, [1, 2, 3, 4]),                                    // reservation token length
        (0x8004, [0, 0, 1, 2]),                                    // icmp length
        (0x002A, [0, 0, 1]),                                       // connection id length
        (0x001D, [0, 1, 0, 4, 1, 2]),                              // params past the end
        (0x001D, [0, 1, 0, 0, 1, 2, 3, 4]),                        // more than the padding
        (0x8002, [0, 1, 0, 2, 1, 2]),                              // entry padding missing
        (0x8002, [0, 1]),                                          // short entry
        (0x0024, [0, 0, 0, 0, 0]),                                 // priority length
        (0x8029, [0, 0, 0, 0]),                                    // ice-controlled length
    ]

    @Test(arguments: badValueCases)
    func badValues(type: UInt16, value: [UInt8]) {
        var rb = RawBuilder()
        rb.add(type, value)
        #expect(kind(rb.bytes) == .badAttributeValue(AttributeType(rawValue: type)))
        #expect(decodeError(rb.bytes)?.offset == 20)
    }

    @Test func goodEdgeValues() throws {
        var rb = RawBuilder()
        rb.add(0x0006, [UInt8](repeating: 0x61, count: 512))
        rb.add(0x0009, [0xFF, 0xFF, 0xFB, 99])  // reserved bits set: ignored; class 3 (0xFB & 7), 99
        rb.add(0x001D, [0, 1, 0, 2, 7, 7])       // params padded by the attribute's own padding
        rb.add(0x8002, [0, 1, 0, 0, 0, 2, 0, 1, 5, 0, 0, 0])
        rb.add(0x000A, [0, 1, 0, 2, 0, 3])
        rb.add(0x0003, [0, 0, 0, 6])
        let m = try Message.decode(rb.bytes)
        #expect(m.attributes[0] == .username(String(repeating: "a", count: 512)))
        #expect(m.attributes[1] == .errorCode(code: 399, reason: ""))
        #expect(m.attributes[2] == .passwordAlgorithm(.md5, params: [7, 7]))
        #expect(m.attributes[3] == .passwordAlgorithms([PasswordAlgorithmEntry(.md5), PasswordAlgorithmEntry(.sha256, params: [5])]))
        #expect(m.attributes[4] == .unknownAttributes([1, 2, 3].map { AttributeType(rawValue: $0) }))
        #expect(m.attributes[5] == .changeRequest(changeIP: true, changePort: true))
    }
}

extension MessageType {
    static let allocateRequest = MessageType(method: .allocate, class: .request)
}
