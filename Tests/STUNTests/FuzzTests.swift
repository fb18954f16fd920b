import Testing
@testable import STUN

/// Hostile input: every outcome must be a decoded message or a `STUNDecodeError`, never a trap.
@Suite("Robustness")
struct FuzzTests {
    /// Runs every decode entry point over `bytes`; returns whether Message.decode succeeded.
    @discardableResult
    func probe(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { b in
            _ = MessageReader.looksLikeSTUN(b)
            _ = StreamFrame.frameLength(b)
            _ = try? ChannelData.parse(b)
            _ = AddressCodec.decode(b, xor: TransactionID(high: 1, low: 2))
            guard let r = try? MessageReader(b) else { return false }
            _ = r.checkMessageIntegrity(key: [1, 2, 3])
            _ = r.checkMessageIntegritySHA256(key: [1, 2, 3])
            _ = r.fingerprintIsValid()
            _ = r.firstUnknownComprehensionRequired(isKnown: \.isKnown)
            _ = try? r.xorAddress(.xorMappedAddress)
            _ = try? r.errorCode()
            _ = try? r.string(.username)
            _ = try? r.passwordAlgorithm()
            for a in r.attributes { _ = Attribute.decode(type: a.type, value: a.value, transactionID: r.transactionID) }
            do {
                let m = try Message(r, verifyFingerprint: false)
                // Whatever decodes re-encodes, and decodes to the same thing.
                let again = try? Message.decode(m.encode(), verifyFingerprint: false)
                if again != m { Issue.record("re-encode mismatch for \(hexString(bytes))") }
                return true
            } catch {
                return false
            }
        }
    }

    static var seeds: [[UInt8]] {
        var gen = Gen(seed: 7)
        var s = [RFC5769.request, RFC5769.ipv4Response, RFC5769.ipv6Response, RFC5769.longTermRequest, RFC8489B1.message]
        for _ in 0 ..< 8 { s.append(gen.message().encode(integrityKey: [1], fingerprint: true)) }
        return s
    }

    @Test func truncationsAndSingleByteMutations() {
        var rng = SplitMix64(seed: 99)
        var decoded = 0, total = 0
        for (k, seed) in Self.seeds.enumerated() {
            #expect(probe(seed))
            for n in 0 ..< seed.count {
                probe(Array(seed.prefix(n)))
                total += 1
            }
            // Every byte position, with a few values each (all 256 in the header and first
            // attribute header of the RFC vectors).
            for i in 0 ..< seed.count {
                var m = seed
                let values: [UInt8] = k < 5 && i < 24 ? (0 ... 255).map { UInt8($0) }
                    : (0 ..< 4).map { _ in UInt8.random(in: 0 ... 255, using: &rng) } + [0, 0xFF]
                for v in values {
                    m[i] = v
                    if probe(m) { decoded += 1 }
                    total += 1
                }
            }
        }
        #expect(total > 30_000)
        #expect(decoded > 0)
    }

    @Test func randomBytes() {
        var rng = SplitMix64(seed: 12345)
        var tid = TransactionID(high: 0, low: 0).bytes
        for i in 0 ..< 100_000 {
            let bytes: [UInt8]
            switch i % 3 {
            case 0:
                bytes = rng.bytes(rng.int(0 ... 64))
            default:
                // A valid header over random TLVs, so the attribute walk is exercised.
                let body = rng.bytes(4 * rng.int(0 ... 12))
                if i % 1000 == 0 { tid = rng.bytes(12) }
                bytes = [0, UInt8.random(in: 0 ... 255, using: &rng), UInt8(body.count >> 8), UInt8(body.count & 0xFF),
                         0x21, 0x12, 0xA4, 0x42] + tid + body
            }
            probe(bytes)
        }
    }

    @Test func randomTLVSoupWithPlausibleTypes() {
        // Random attributes of known types with random short values: deep value decoders.
        var rng = SplitMix64(seed: 2024)
        let known: [UInt16] = [0x0001, 0x0003, 0x0006, 0x0008, 0x0009, 0x000A, 0x000C, 0x000D, 0x0012, 0x0013, 0x0014,
                               0x0015, 0x0016, 0x0017, 0x0018, 0x0019, 0x001A, 0x001C, 0x001D, 0x001E, 0x0020, 0x0022,
                               0x0024, 0x0025, 0x002A, 0x8000, 0x8001, 0x8002, 0x8003, 0x8004, 0x8022, 0x8023, 0x8028,
                               0x8029, 0x802A, 0x802B, 0x802C]
        for _ in 0 ..< 30_000 {
            var rb = RawBuilder()
            for _ in 0 ..< rng.int(1 ... 4) {
                let t = known[rng.int(0 ... known.count - 1)]
                let len = rng.int(0 ... 24)
                var v = rng.bytes(len)
                if len >= 2, rng.bool() { v[1] = UInt8(rng.int(0 ... 3)) }  // plausible family bytes
                rb.add(t, v)
            }
            probe(rb.bytes)
        }
    }
}
