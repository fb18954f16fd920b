/// The 96-bit STUN transaction ID, RFC 8489 section 5, held inline (no heap allocation).
///
/// `high` holds the first 4 bytes on the wire and `low` the last 8, both as big-endian numbers.
public struct TransactionID: Hashable, Sendable {
    public var high: UInt32
    public var low: UInt64

    public init(high: UInt32, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Builds an ID from exactly 12 bytes; nil for any other count.
    public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        guard bytes.count == 12 else { return nil }
        var h: UInt32 = 0, l: UInt64 = 0, i = 0
        for b in bytes {
            if i < 4 { h = h << 8 | UInt32(b) } else { l = l << 8 | UInt64(b) }
            i += 1
        }
        self.init(high: h, low: l)
    }

    /// Reads 12 bytes at `offset`; the caller has checked `offset + 12 <= buffer.count`.
    init(unchecked buffer: UnsafeRawBufferPointer, at offset: Int) {
        self.init(high: buffer.be32(at: offset), low: buffer.be64(at: offset + 4))
    }

    /// A fresh ID from the system CSPRNG (`SystemRandomNumberGenerator`: getrandom(2) on Linux),
    /// as RFC 8489 section 6 requires ("uniformly and randomly chosen ... cryptographically random").
    public static func random() -> TransactionID {
        var g = SystemRandomNumberGenerator()
        return TransactionID(high: g.next(), low: g.next())
    }

    /// The 12 bytes in wire order.
    public var bytes: [UInt8] { withBytes { Array($0) } }

    /// Calls `body` with the 12 wire-order bytes, without allocating.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var raw = (high.bigEndian, UInt32(truncatingIfNeeded: low >> 32).bigEndian, UInt32(truncatingIfNeeded: low).bigEndian)
        return try withUnsafeBytes(of: &raw) { try body($0) }
    }

    /// Writes the 12 bytes at `offset`; the caller has checked bounds.
    func store(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) {
        buffer.storeBE32(high, at: offset)
        buffer.storeBE64(low, at: offset + 4)
    }
}

extension TransactionID: CustomStringConvertible {
    /// 24 lower-case hex digits.
    public var description: String {
        let h = String(high, radix: 16), l = String(low, radix: 16)
        return String(repeating: "0", count: 8 - h.count) + h + String(repeating: "0", count: 16 - l.count) + l
    }
}
