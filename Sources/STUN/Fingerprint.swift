/// CRC-32 as used by STUN's FINGERPRINT (RFC 8489 section 14.7, which cites ITU-T V.42 /
/// ISO-HDLC): reflected polynomial 0xEDB88320, initial value and final XOR 0xFFFFFFFF — the same
/// CRC as zlib's `crc32`. Check value: CRC32("123456789") == 0xCBF43926.
public enum CRC32 {
    /// The 256-entry lookup table for the reflected polynomial 0xEDB88320.
    static let table: [UInt32] = (0 ..< 256).map { (n: Int) -> UInt32 in
        var c = UInt32(n)
        for _ in 0 ..< 8 {
            c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1
        }
        return c
    }

    /// The CRC of `bytes`, continuing from `crc` (the result of a previous call, 0 to start), like
    /// zlib's `crc32(crc, buf, len)`.
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        table.withUnsafeBufferPointer { t in
            var c = ~crc
            for b in bytes {
                // The index is 0...255, always inside the 256-entry table.
                c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8)
            }
            return ~c
        }
    }

    /// The CRC of `bytes`.
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }
}

/// RFC 8489 section 14.7: FINGERPRINT is the CRC-32 of the message up to (not including) the
/// FINGERPRINT attribute, XORed with 0x5354554E ("STUN").
public enum Fingerprint {
    /// The XOR constant of RFC 8489 section 14.7.
    public static let xorValue: UInt32 = 0x5354_554E

    /// The FINGERPRINT value for `messagePrefix`: everything before the FINGERPRINT attribute, with
    /// the header length already counting the FINGERPRINT attribute.
    public static func value(_ messagePrefix: UnsafeRawBufferPointer) -> UInt32 {
        CRC32.checksum(messagePrefix) ^ xorValue
    }
}
