@testable import STUN

/// Hex with spaces and line breaks, as the RFCs print it, to bytes. Non-hex characters are skipped.
func hex(_ s: String) -> [UInt8] {
    let digits = s.unicodeScalars.filter { ("0"..."9").contains($0) || ("a"..."f").contains($0) || ("A"..."F").contains($0) }
    var out: [UInt8] = []
    var hi: UInt8? = nil
    for d in digits {
        let v = UInt8(String(d), radix: 16) ?? 0
        if let h = hi { out.append(h << 4 | v); hi = nil } else { hi = v }
    }
    return out
}

func hexString(_ b: [UInt8]) -> String {
    b.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

/// SplitMix64: a small deterministic PRNG so that generated tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension RandomNumberGenerator {
    mutating func bytes(_ n: Int) -> [UInt8] { (0 ..< n).map { _ in UInt8.random(in: 0 ... 255, using: &self) } }
    mutating func bool() -> Bool { Bool.random(using: &self) }
    mutating func int(_ r: ClosedRange<Int>) -> Int { Int.random(in: r, using: &self) }
}

/// Decodes with a reader over `bytes`, passing it to `body`.
func withReader<R>(_ bytes: [UInt8], _ body: (MessageReader) throws -> R) throws -> R {
    try bytes.withUnsafeBytes { buf in
        let r = try MessageReader(buf)
        return try body(r)
    }
}

/// The decode error for `bytes`, nil if it decodes.
func decodeError(_ bytes: [UInt8]) -> STUNDecodeError? {
    do { _ = try Message.decode(bytes); return nil } catch { return error }
}
