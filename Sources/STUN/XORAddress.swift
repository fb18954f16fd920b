/// The value codec shared by all address attributes.
///
/// RFC 8489 section 14.1 (MAPPED-ADDRESS and the plain-address attributes):
///
///     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |0 0 0 0 0 0 0 0|    Family     |           Port                |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                 Address (32 bits or 128 bits)                 |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///
/// RFC 8489 section 14.2 (XOR-MAPPED-ADDRESS, and TURN's XOR-PEER-ADDRESS and XOR-RELAYED-ADDRESS,
/// RFC 8656 sections 18.3 and 18.5): the same layout with the port XORed with the top 16 bits of the
/// magic cookie, an IPv4 address XORed with the magic cookie, and an IPv6 address XORed with the
/// magic cookie followed by the 96-bit transaction ID.
public enum AddressCodec {
    /// The value length for an address: 8 for IPv4, 20 for IPv6.
    public static func valueLength(_ address: TransportAddress) -> Int {
        switch address.ip {
        case .v4: return 8
        case .v6: return 20
        }
    }

    /// Decodes an address value; `xor` is the message's transaction ID for XOR-encoded attributes,
    /// nil for plain ones. Returns nil for an unknown family or a length that does not match it.
    /// The first (reserved) byte is ignored, as RFC 8489 section 14.1 requires.
    public static func decode(_ value: UnsafeRawBufferPointer, xor transactionID: TransactionID?) -> TransportAddress? {
        guard value.count >= 4 else { return nil }
        var port = value.be16(at: 2)
        if transactionID != nil { port ^= UInt16(truncatingIfNeeded: stunMagicCookie >> 16) }
        switch value[1] {
        case AddressFamily.ipv4.rawValue:
            guard value.count == 8 else { return nil }
            var a = value.be32(at: 4)
            if transactionID != nil { a ^= stunMagicCookie }
            return TransportAddress(ip: .v4(a), port: port)
        case AddressFamily.ipv6.rawValue:
            guard value.count == 20 else { return nil }
            var h = value.be64(at: 4), l = value.be64(at: 12)
            if let t = transactionID {
                h ^= UInt64(stunMagicCookie) << 32 | UInt64(t.high)
                l ^= t.low
            }
            return TransportAddress(ip: .v6(h, l), port: port)
        default:
            return nil
        }
    }

    /// Writes the value (8 or 20 bytes) at `offset`; the caller has checked the room.
    static func encode(_ address: TransportAddress, xor transactionID: TransactionID?,
                       into buffer: UnsafeMutableRawBufferPointer, at offset: Int) {
        let xorPort = transactionID != nil ? UInt16(truncatingIfNeeded: stunMagicCookie >> 16) : 0
        buffer[offset] = 0
        buffer[offset + 1] = address.ip.family.rawValue
        buffer.storeBE16(address.port ^ xorPort, at: offset + 2)
        switch address.ip {
        case .v4(let a):
            buffer.storeBE32(transactionID != nil ? a ^ stunMagicCookie : a, at: offset + 4)
        case .v6(var h, var l):
            if let t = transactionID {
                h ^= UInt64(stunMagicCookie) << 32 | UInt64(t.high)
                l ^= t.low
            }
            buffer.storeBE64(h, at: offset + 4)
            buffer.storeBE64(l, at: offset + 12)
        }
    }
}
