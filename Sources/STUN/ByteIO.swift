// Big-endian loads and stores on raw buffers. Internal helpers: every caller has checked bounds
// first (these use unchecked raw-pointer access in release builds).

extension UnsafeRawBufferPointer {
    @inline(__always)
    func be16(at offset: Int) -> UInt16 {
        UInt16(self[offset]) << 8 | UInt16(self[offset + 1])
    }

    @inline(__always)
    func be32(at offset: Int) -> UInt32 {
        UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inline(__always)
    func be64(at offset: Int) -> UInt64 {
        UInt64(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// The bytes `offset ..< offset + count` as a buffer of their own.
    @inline(__always)
    func slice(_ offset: Int, _ count: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: self[offset ..< offset + count])
    }
}

extension UnsafeMutableRawBufferPointer {
    @inline(__always)
    func storeBE16(_ v: UInt16, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: v >> 8)
        self[offset + 1] = UInt8(truncatingIfNeeded: v)
    }

    @inline(__always)
    func storeBE32(_ v: UInt32, at offset: Int) {
        storeBytes(of: v.bigEndian, toByteOffset: offset, as: UInt32.self)
    }

    @inline(__always)
    func storeBE64(_ v: UInt64, at offset: Int) {
        storeBytes(of: v.bigEndian, toByteOffset: offset, as: UInt64.self)
    }
}

/// Rounds up to the next multiple of 4 (RFC 8489 section 14: attribute values are padded to 4).
@inline(__always)
func roundUp4(_ n: Int) -> Int { (n &+ 3) & ~3 }

/// The STUN magic cookie, RFC 8489 section 5.
public let stunMagicCookie: UInt32 = 0x2112_A442
