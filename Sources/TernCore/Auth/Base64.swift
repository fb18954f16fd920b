/// Minimal base64 (RFC 4648) for the authentication paths: the standard alphabet with padding
/// (section 4) for TURN REST passwords, and the URL-safe alphabet without padding (section 5) for
/// nonces. Hand-written so that the per-request paths avoid Foundation's `Data` round trips.
enum Base64 {
    /// RFC 4648 section 4, "A-Z a-z 0-9 + /".
    static let standardAlphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    /// RFC 4648 section 5, "A-Z a-z 0-9 - _".
    static let urlAlphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// Appends the encoding of `bytes` to `out`.
    static func encode(_ bytes: UnsafeRawBufferPointer, url: Bool, padding: Bool, into out: inout [UInt8]) {
        let alphabet = url ? urlAlphabet : standardAlphabet
        var i = 0
        let n = bytes.count
        while i + 3 <= n {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(v >> 18 & 0x3F)])
            out.append(alphabet[Int(v >> 12 & 0x3F)])
            out.append(alphabet[Int(v >> 6 & 0x3F)])
            out.append(alphabet[Int(v & 0x3F)])
            i += 3
        }
        let rest = n - i
        if rest == 1 {
            let v = UInt32(bytes[i]) << 16
            out.append(alphabet[Int(v >> 18 & 0x3F)])
            out.append(alphabet[Int(v >> 12 & 0x3F)])
            if padding { out.append(UInt8(ascii: "=")); out.append(UInt8(ascii: "=")) }
        } else if rest == 2 {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out.append(alphabet[Int(v >> 18 & 0x3F)])
            out.append(alphabet[Int(v >> 12 & 0x3F)])
            out.append(alphabet[Int(v >> 6 & 0x3F)])
            if padding { out.append(UInt8(ascii: "=")) }
        }
    }

    static func encodeString(_ bytes: [UInt8], url: Bool, padding: Bool) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        bytes.withUnsafeBytes { encode($0, url: url, padding: padding, into: &out) }
        return String(decoding: out, as: UTF8.self)
    }

    /// The 6-bit value of one character of the URL-safe alphabet, nil for any other byte.
    @inline(__always)
    static func urlValue(_ c: UInt8) -> UInt32? {
        switch c {
        case UInt8(ascii: "A") ... UInt8(ascii: "Z"): return UInt32(c - UInt8(ascii: "A"))
        case UInt8(ascii: "a") ... UInt8(ascii: "z"): return UInt32(c - UInt8(ascii: "a")) + 26
        case UInt8(ascii: "0") ... UInt8(ascii: "9"): return UInt32(c - UInt8(ascii: "0")) + 52
        case UInt8(ascii: "-"): return 62
        case UInt8(ascii: "_"): return 63
        default: return nil
        }
    }

    /// The 6-bit value of one character of the standard alphabet, nil for any other byte (and for `=`).
    @inline(__always)
    static func standardValue(_ c: UInt8) -> UInt32? {
        switch c {
        case UInt8(ascii: "+"): return 62
        case UInt8(ascii: "/"): return 63
        case UInt8(ascii: "-"), UInt8(ascii: "_"): return nil
        default: return urlValue(c)
        }
    }

    /// Decodes unpadded URL-safe base64 whose length is a multiple of 4 into `out`, which must be
    /// exactly `text.count / 4 * 3` bytes. False (with `out` partly written) on any bad character
    /// or size mismatch. Never traps.
    static func decodeURL(_ text: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Bool {
        guard text.count % 4 == 0, out.count == text.count / 4 * 3 else { return false }
        var i = 0, o = 0
        while i + 4 <= text.count, o + 3 <= out.count {
            guard let a = urlValue(text[i]), let b = urlValue(text[i + 1]),
                  let c = urlValue(text[i + 2]), let d = urlValue(text[i + 3]) else { return false }
            let v = a << 18 | b << 12 | c << 6 | d
            out[o] = UInt8(truncatingIfNeeded: v >> 16)
            out[o + 1] = UInt8(truncatingIfNeeded: v >> 8)
            out[o + 2] = UInt8(truncatingIfNeeded: v)
            i += 4
            o += 3
        }
        return true
    }
}
