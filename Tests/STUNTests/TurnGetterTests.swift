import Testing
@testable import STUN

/// The getters the TURN server reads Allocate with (RFC 8656 section 18), and the bounded
/// UNKNOWN-ATTRIBUTES writer of the 420 response (RFC 8489 section 6.3.1.1).
@Suite("TURN attribute getters and the bounded UNKNOWN-ATTRIBUTES")
struct TurnGetterTests {
    @Test("Address-family bytes are raw (an unknown family is the server's 440), the length is checked")
    func familyBytes() throws {
        var rb = RawBuilder()
        rb.add(0x0017, [3, 0, 0, 0])        // REQUESTED-ADDRESS-FAMILY, family 3: raw, not an error here
        rb.add(0x8000, [2, 0, 0, 0])        // ADDITIONAL-ADDRESS-FAMILY IPv6
        rb.add(0x8032, [2, 0, 0, 0])        // its draft code point
        try withReader(rb.bytes) { r throws in
            #expect(try r.requestedAddressFamilyByte() == 3)
            #expect(try r.additionalAddressFamilyByte() == 2)
            #expect(try r.addressFamilyByte(AttributeType(rawValue: 0x8032)) == 2)
            #expect(try r.addressFamilyByte(AttributeType(rawValue: 0x8033)) == nil)
        }
        for (type, value) in [(UInt16(0x0017), [UInt8(1)]), (0x8000, [2, 0]), (0x8032, [2, 0, 0, 0, 0, 0, 0, 0])] {
            var bad = RawBuilder()
            bad.add(type, value)
            try withReader(bad.bytes) { r throws in
                #expect(throws: STUNDecodeError(.badAttributeValue(AttributeType(rawValue: type)), at: 20)) {
                    try r.addressFamilyByte(AttributeType(rawValue: type))
                }
            }
        }
    }

    @Test("EVEN-PORT is one byte with the R bit; RESERVATION-TOKEN eight; REQUESTED-TRANSPORT four")
    func evenPortTokenTransport() throws {
        var rb = RawBuilder()
        rb.add(0x0018, [0x00])
        rb.add(0x0022, [0, 0, 0, 0, 0, 0, 1, 2])
        rb.add(0x0019, [6, 0, 0, 0])
        try withReader(rb.bytes) { r throws in
            #expect(try r.evenPort() == false)
            #expect(try r.reservationToken() == 0x0102)
            #expect(try r.requestedTransport() == 6)
        }
        let cases: [(UInt16, [UInt8], (MessageReader) throws -> Void)] = [
            (0x0018, [0x80, 0, 0, 0], { _ = try $0.evenPort() }),
            (0x0018, [], { _ = try $0.evenPort() }),
            (0x0022, [1, 2, 3, 4, 5, 6, 7], { _ = try $0.reservationToken() }),
            (0x0019, [17], { _ = try $0.requestedTransport() }),
        ]
        for (type, value, get) in cases {
            var bad = RawBuilder()
            bad.add(type, value)
            try withReader(bad.bytes) { r throws in
                #expect(throws: STUNDecodeError.self) { try get(r) }
            }
        }
    }

    @Test("UNKNOWN-ATTRIBUTES lists at most `limit` distinct types, in order, each once")
    func boundedUnknownAttributes() throws {
        var rb = RawBuilder()
        for t in 0..<200 { rb.add(UInt16(0x0100 + t % 100), []) }   // 100 distinct unknown types, each twice
        try withReader(rb.bytes) { r throws in
            var out = [UInt8](repeating: 0, count: 600)
            let (listed, n) = try out.withUnsafeMutableBytes { b throws in
                var w = try MessageWriter(buffer: b, type: r.type.errorResponse, transactionID: r.transactionID)
                try w.appendErrorCode(ErrorCode.unknownAttribute)
                let listed = try w.appendUnknownAttributes(from: r, limit: 64, isKnown: \.isKnown)
                try w.appendFingerprint()
                return (listed, w.count)
            }
            #expect(listed == 64)
            let m = try Message.decode(Array(out.prefix(n)))
            #expect(m.first(.unknownAttributes) == .unknownAttributes((0..<64).map { AttributeType(rawValue: 0x0100 + $0) }))
            #expect(n < 300, "\(n) bytes")
        }
        // None unknown: an empty list, and the message stays well-formed.
        var known = RawBuilder()
        known.add(0x0006, Array("u".utf8))
        try withReader(known.bytes) { r throws in
            var out = [UInt8](repeating: 0, count: 200)
            let n = try out.withUnsafeMutableBytes { b throws in
                var w = try MessageWriter(buffer: b, type: r.type.errorResponse, transactionID: r.transactionID)
                #expect(try w.appendUnknownAttributes(from: r, isKnown: \.isKnown) == 0)
                return w.count
            }
            #expect(try Message.decode(Array(out.prefix(n))).first(.unknownAttributes) == .unknownAttributes([]))
        }
    }

    @Test("One list of known types: the registry names are what isKnown accepts and description prints")
    func oneKnownList() {
        var mismatched: [UInt16] = []
        var known = 0
        for raw in UInt16(0)...0xFFFF {
            let t = AttributeType(rawValue: raw)
            let printed = t.registryName.map { "\($0)" } ?? t.hex
            if t.isKnown != (t.registryName != nil) || t.description != printed { mismatched.append(raw) }
            if t.isKnown { known += 1 }
        }
        #expect(mismatched.isEmpty)
        #expect(known == 37)
        #expect(AttributeType.requestedAddressFamily.description == "REQUESTED-ADDRESS-FAMILY")
        #expect(!AttributeType(rawValue: 0x8032).isKnown)
    }
}
