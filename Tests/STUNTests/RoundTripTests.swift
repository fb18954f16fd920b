import Testing
@testable import STUN

@Suite("Round trips")
struct RoundTripTests {
    @Test func generatedMessages() throws {
        var gen = Gen(seed: 0x5EED_0001)
        var seenTypes = Set<AttributeType>()
        for i in 0 ..< 3000 {
            let m = gen.message()
            let withFingerprint = i % 3 == 0
            // A fresh MI after raw integrity attributes would be ignored on decode; avoid that mix.
            let rawMI = m.attributes.contains { $0.type == .messageIntegrity || $0.type == .messageIntegritySHA256 }
            let key: [UInt8]? = i % 5 == 0 && !rawMI ? gen.rng.bytes(gen.rng.int(0 ... 70)) : nil
            let bytes = try m.encodeChecked(integrityKey: key, fingerprint: withFingerprint)
            #expect(bytes.count % 4 == 0)
            #expect(Int(bytes[2]) << 8 | Int(bytes[3]) == bytes.count - 20)
            let d = try Message.decode(bytes)
            // Attributes added by encode come after the message's own.
            #expect(Array(d.attributes.prefix(m.attributes.count)) == m.attributes, "message \(i): \(m)")
            #expect(d.type == m.type && d.transactionID == m.transactionID)
            #expect(d.attributes.count == m.attributes.count + (key != nil ? 1 : 0) + (withFingerprint ? 1 : 0))
            // decode -> encode is the identity on bytes.
            #expect(d.encode() == bytes)
            try withReader(bytes) { r throws in
                if let key { #expect(r.checkMessageIntegrity(key: key)) }
                #expect(r.hasFingerprint == withFingerprint)
                #expect(!withFingerprint || r.fingerprintIsValid())
                #expect(r.attributeCount == d.attributes.count)
            }
            for a in m.attributes { seenTypes.insert(a.type) }
        }
        // Every typed case was exercised.
        #expect(seenTypes.filter(\.isKnown).count == 37 - 1)  // all known types but FINGERPRINT
    }

    @Test func integrityAndFingerprintTogether() throws {
        var gen = Gen(seed: 42)
        for _ in 0 ..< 200 {
            var m = gen.message()
            m.attributes.removeAll { $0.type == .messageIntegrity || $0.type == .messageIntegritySHA256 }
            let k1 = gen.rng.bytes(16), k2 = gen.rng.bytes(32)
            let bytes = m.encode(integrityKey: k1, integritySHA256Key: k2, fingerprint: true)
            try withReader(bytes) { r throws in
                #expect(r.checkMessageIntegrity(key: k1))
                #expect(r.checkMessageIntegritySHA256(key: k2))
                #expect(!r.checkMessageIntegrity(key: k2))
                #expect(!r.checkMessageIntegritySHA256(key: k1))
                #expect(r.fingerprintIsValid())
            }
        }
    }

    @Test func encodeRejectsUnrepresentable() {
        let t = TransactionID.random()
        func err(_ a: Attribute) -> STUNEncodeError? {
            do { _ = try Message(type: .bindingRequest, transactionID: t, attributes: [a]).encodeChecked(); return nil }
            catch { return error }
        }
        #expect(err(.errorCode(code: 299, reason: "")) == .invalidValue(.errorCode))
        #expect(err(.errorCode(code: 700, reason: "")) == .invalidValue(.errorCode))
        #expect(err(.errorCode(code: 400, reason: String(repeating: "x", count: 764))) == .valueTooLong(.errorCode))
        #expect(err(.username(String(repeating: "x", count: 513))) == .valueTooLong(.username))
        #expect(err(.userhash([1])) == .invalidValue(.userhash))
        #expect(err(.messageIntegrity([1])) == .invalidValue(.messageIntegrity))
        #expect(err(.messageIntegritySHA256([UInt8](repeating: 0, count: 36))) == .invalidValue(.messageIntegritySHA256))
        #expect(err(.reservationToken([1])) == .invalidValue(.reservationToken))
        #expect(err(.data([UInt8](repeating: 0, count: 65536))) == .messageTooLong)
        // The 16-bit message length counts the 4-byte attribute header too.
        #expect(err(.data([UInt8](repeating: 0, count: 65528))) == nil)
        #expect(err(.data([UInt8](repeating: 0, count: 65529))) == .messageTooLong)
        #expect(Message(type: .bindingRequest, attributes: [.userhash([])]).encode() == [])
    }
}
