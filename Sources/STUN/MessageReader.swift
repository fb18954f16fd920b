/// One attribute as it sits in a message buffer: its type, its unpadded value, and the offset
/// of its 4-byte header. The value points into the reader's buffer (no copy).
public struct RawAttribute {
    public let type: AttributeType
    public let value: UnsafeRawBufferPointer
    /// Byte offset of the attribute header (type, length) from the start of the message.
    public let offset: Int
}

/// Walks the attribute TLVs of a STUN message, skipping the attributes that RFC 8489 section 14.5
/// and 14.6 say to ignore, allocation-free.
///
/// - Attributes after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are
///   ignored (RFC 8489 section 14.5).
/// - Attributes after MESSAGE-INTEGRITY-SHA256 other than FINGERPRINT are ignored (section 14.6).
/// - FINGERPRINT must be the last attribute (section 14.7): anything after it is an error.
public struct AttributeIterator: IteratorProtocol {
    let buffer: UnsafeRawBufferPointer
    var offset = 20
    var seenIntegrity = false
    var seenIntegritySHA256 = false
    var seenFingerprint = false

    init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }

    /// The next attribute that counts, validating bounds and order as it goes.
    mutating func nextChecked() throws(STUNDecodeError) -> RawAttribute? {
        while offset < buffer.count {
            let o = offset
            let remaining = buffer.count - o
            guard remaining >= 4 else {
                let t = AttributeType(rawValue: remaining >= 2 ? buffer.be16(at: o) : 0)
                throw STUNDecodeError(.attributeTruncated(t), at: o)
            }
            let type = AttributeType(rawValue: buffer.be16(at: o))
            let length = Int(buffer.be16(at: o + 2))
            // RFC 8489 section 14: the value is padded to a multiple of 4 bytes.
            guard remaining - 4 >= roundUp4(length) else { throw STUNDecodeError(.attributeTruncated(type), at: o) }
            guard !seenFingerprint else { throw STUNDecodeError(.attributeAfterFingerprint(type), at: o) }
            offset = o + 4 + roundUp4(length)

            let counts: Bool
            switch type {
            case .fingerprint:
                guard length == 4 else { throw STUNDecodeError(.badAttributeValue(type), at: o) }
                seenFingerprint = true
                counts = true
            case .messageIntegritySHA256:
                counts = !seenIntegritySHA256
                if counts {
                    guard isValidSHA256IntegrityLength(length) else { throw STUNDecodeError(.badAttributeValue(type), at: o) }
                    seenIntegritySHA256 = true
                }
            case .messageIntegrity:
                counts = !seenIntegrity && !seenIntegritySHA256
                if counts {
                    guard length == 20 else { throw STUNDecodeError(.badAttributeValue(type), at: o) }
                    seenIntegrity = true
                }
            default:
                counts = !seenIntegrity && !seenIntegritySHA256
            }
            if counts {
                return RawAttribute(type: type, value: buffer.slice(o + 4, length), offset: o)
            }
        }
        return nil
    }

    /// The next attribute that counts. The reader validated the whole message at init, so this
    /// never meets an error; it ends the iteration if it ever did.
    public mutating func next() -> RawAttribute? {
        do { return try nextChecked() } catch { offset = buffer.count; return nil }
    }
}

/// The attributes of a message that count (see `AttributeIterator`), in order.
public struct AttributeSequence: Sequence {
    let buffer: UnsafeRawBufferPointer
    public func makeIterator() -> AttributeIterator { AttributeIterator(buffer) }
}

/// A validated, zero-copy, allocation-free view of one STUN message in a caller's buffer.
///
/// `init` validates the whole message (RFC 8489 section 5 and 6.3: top two bits zero, magic
/// cookie, length a multiple of 4 and equal to the bytes received, every attribute in bounds,
/// FINGERPRINT last, integrity attribute lengths) without allocating. Attribute values are then
/// decoded on demand by the typed getters. The reader never writes to the buffer; the buffer must
/// outlive the reader.
public struct MessageReader {
    /// The whole message (header included).
    public let buffer: UnsafeRawBufferPointer
    public let type: MessageType
    public let transactionID: TransactionID
    /// Number of attributes that count (those ignored after an integrity attribute are not counted).
    public let attributeCount: Int
    /// Header offsets of MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, -1 if absent.
    let integrityOffset: Int
    let integritySHA256Offset: Int
    let fingerprintOffset: Int

    /// Validates `buffer` as exactly one STUN message.
    public init(_ buffer: UnsafeRawBufferPointer) throws(STUNDecodeError) {
        guard buffer.count >= 20 else { throw STUNDecodeError(.truncatedHeader, at: buffer.count) }
        // RFC 8489 section 6.3: "the first two bits of the message are zero".
        guard buffer[0] & 0xC0 == 0 else { throw STUNDecodeError(.notSTUN, at: 0) }
        guard buffer.be32(at: 4) == stunMagicCookie else { throw STUNDecodeError(.badMagicCookie, at: 4) }
        let length = Int(buffer.be16(at: 2))
        // RFC 8489 section 5: the length (which excludes the header) is a multiple of 4.
        guard length % 4 == 0 else { throw STUNDecodeError(.lengthNotMultipleOf4, at: 2) }
        guard 20 + length == buffer.count else { throw STUNDecodeError(.lengthMismatch, at: buffer.count) }

        var it = AttributeIterator(buffer)
        var count = 0, mi = -1, mi256 = -1, fp = -1
        while let a = try it.nextChecked() {
            count += 1
            switch a.type {
            case .messageIntegrity: mi = a.offset
            case .messageIntegritySHA256: mi256 = a.offset
            case .fingerprint: fp = a.offset
            default: break
            }
        }
        self.buffer = buffer
        self.type = MessageType(rawValue: buffer.be16(at: 0))
        self.transactionID = TransactionID(unchecked: buffer, at: 8)
        self.attributeCount = count
        self.integrityOffset = mi
        self.integritySHA256Offset = mi256
        self.fingerprintOffset = fp
    }

    /// A cheap test to demultiplex a datagram or stream chunk: STUN, rather than ChannelData
    /// (first two bits 01, RFC 8656 section 12) or anything else. True when there are at least 20
    /// bytes, the first two bits are 00, the length is a multiple of 4 and the magic cookie matches
    /// (RFC 8489 section 5). The full validation is `init`.
    public static func looksLikeSTUN(_ buffer: UnsafeRawBufferPointer) -> Bool {
        buffer.count >= 20 && buffer[0] & 0xC0 == 0 && buffer[3] & 0x03 == 0 && buffer.be32(at: 4) == stunMagicCookie
    }

    // MARK: Attributes

    /// The attributes that count, in order, allocation-free.
    public var attributes: AttributeSequence { AttributeSequence(buffer: buffer) }

    /// Calls `body` with the type and unpadded value of each attribute that counts, in order.
    public func forEachAttribute(_ body: (AttributeType, UnsafeRawBufferPointer) throws -> Void) rethrows {
        var it = AttributeIterator(buffer)
        while let a = it.next() { try body(a.type, a.value) }
    }

    /// The first attribute of `type` that counts.
    public func first(_ type: AttributeType) -> RawAttribute? {
        var it = AttributeIterator(buffer)
        while let a = it.next() {
            if a.type == type { return a }
        }
        return nil
    }

    /// The unpadded value of the first attribute of `type` that counts.
    public func value(of type: AttributeType) -> UnsafeRawBufferPointer? {
        var it = AttributeIterator(buffer)
        while let a = it.next() {
            if a.type == type { return a.value }
        }
        return nil
    }

    /// Whether an attribute of `type` is present (and counts), e.g. DONT-FRAGMENT.
    public func contains(_ type: AttributeType) -> Bool { value(of: type) != nil }

    // MARK: Unknown comprehension-required attributes (RFC 8489 section 6.3.1)

    /// The first comprehension-required attribute type (< 0x8000) for which `isKnown` is false.
    public func firstUnknownComprehensionRequired(isKnown: (AttributeType) -> Bool) -> AttributeType? {
        var it = AttributeIterator(buffer)
        while let a = it.next() {
            if a.type.isComprehensionRequired && !isKnown(a.type) { return a.type }
        }
        return nil
    }

    /// Calls `body` once per distinct unknown comprehension-required type, in order of first
    /// appearance, without allocating (duplicates are found by rescanning: messages are short).
    public func forEachUnknownComprehensionRequired(isKnown: (AttributeType) -> Bool,
                                                    _ body: (AttributeType) throws -> Void) rethrows {
        var it = AttributeIterator(buffer)
        while let a = it.next() {
            guard a.type.isComprehensionRequired, !isKnown(a.type) else { continue }
            if first(a.type)?.offset == a.offset { try body(a.type) }
        }
    }

    /// Appends each distinct unknown comprehension-required type to `list` (which the caller may
    /// keep and reuse, so no allocation once it has capacity).
    public func unknownComprehensionRequired<C: RangeReplaceableCollection>(
        isKnown: (AttributeType) -> Bool, into list: inout C
    ) where C.Element == AttributeType {
        forEachUnknownComprehensionRequired(isKnown: isKnown) { list.append($0) }
    }

    // MARK: Typed getters
    //
    // Each returns nil when the attribute is absent and throws `.badAttributeValue(type)` at the
    // attribute's offset when it is present but malformed.

    /// Any attribute, decoded into its typed case (allocates for text and byte-array values).
    public func attribute(_ type: AttributeType) throws(STUNDecodeError) -> Attribute? {
        guard let a = first(type) else { return nil }
        guard let v = Attribute.decode(type: type, value: a.value, transactionID: transactionID) else {
            throw STUNDecodeError(.badAttributeValue(type), at: a.offset)
        }
        return v
    }

    /// An XOR-encoded address (XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS, XOR-RELAYED-ADDRESS),
    /// RFC 8489 section 14.2. Allocation-free.
    public func xorAddress(_ type: AttributeType) throws(STUNDecodeError) -> TransportAddress? {
        try decodeValue(type) { AddressCodec.decode($0, xor: transactionID) }
    }

    /// A plain address (MAPPED-ADDRESS, ALTERNATE-SERVER, ...), RFC 8489 section 14.1. Allocation-free.
    public func address(_ type: AttributeType) throws(STUNDecodeError) -> TransportAddress? {
        try decodeValue(type) { AddressCodec.decode($0, xor: nil) }
    }

    /// All XOR-PEER-ADDRESS-style attributes of `type`, in order (RFC 8656 section 10.2 allows
    /// several in CreatePermission). Allocation-free; `body` is called per address.
    public func forEachXORAddress(_ type: AttributeType,
                                  _ body: (TransportAddress) throws -> Void) throws {
        var it = AttributeIterator(buffer)
        while let a = it.next() {
            guard a.type == type else { continue }
            guard let addr = AddressCodec.decode(a.value, xor: transactionID) else {
                throw STUNDecodeError(.badAttributeValue(type), at: a.offset)
            }
            try body(addr)
        }
    }

    /// A text attribute as UTF-8 (allocates the String). Invalid UTF-8, or more bytes than
    /// `TextLimit` allows for the type, throws.
    public func string(_ type: AttributeType) throws(STUNDecodeError) -> String? {
        try decodeValue(type) { decodeUTF8($0, maxBytes: TextLimit.limit(for: type) ?? 0xFFFF) }
    }

    /// A 4-byte big-endian value (LIFETIME, CONNECTION-ID, PRIORITY, ...).
    public func uint32(_ type: AttributeType) throws(STUNDecodeError) -> UInt32? {
        try decodeValue(type) { $0.count == 4 ? $0.be32(at: 0) : nil }
    }

    /// An 8-byte big-endian value (ICE-CONTROLLED, ICE-CONTROLLING, RESERVATION-TOKEN).
    public func uint64(_ type: AttributeType) throws(STUNDecodeError) -> UInt64? {
        try decodeValue(type) { $0.count == 8 ? $0.be64(at: 0) : nil }
    }

    /// ERROR-CODE, RFC 8489 section 14.8 (allocates the reason String).
    public func errorCode() throws(STUNDecodeError) -> (code: Int, reason: String)? {
        try decodeValue(.errorCode) { v -> (code: Int, reason: String)? in
            guard let c = ErrorCode.decodeCode(v), let r = ErrorCode.decodeReason(v) else { return nil }
            return (c, r)
        }
    }

    /// The error code alone, allocation-free.
    public func errorCodeNumber() throws(STUNDecodeError) -> Int? {
        try decodeValue(.errorCode) { v -> Int? in
            guard ErrorCode.decodeReason(v) != nil else { return nil }
            return ErrorCode.decodeCode(v)
        }
    }

    /// CHANNEL-NUMBER, RFC 8656 section 18.1 (the number only; range checks are the caller's).
    public func channelNumber() throws(STUNDecodeError) -> UInt16? {
        try decodeValue(.channelNumber) { $0.count == 4 ? $0.be16(at: 0) : nil }
    }

    /// LIFETIME, RFC 8656 section 18.2.
    public func lifetime() throws(STUNDecodeError) -> UInt32? { try uint32(.lifetime) }

    /// REQUESTED-TRANSPORT's protocol number, RFC 8656 section 18.8.
    public func requestedTransport() throws(STUNDecodeError) -> UInt8? {
        try decodeValue(.requestedTransport) { $0.count == 4 ? $0[0] : nil }
    }

    /// The raw family byte of REQUESTED-ADDRESS-FAMILY (RFC 8656 section 18.6). Raw so the server
    /// can answer 440 for an unknown family instead of 400.
    public func requestedAddressFamilyByte() throws(STUNDecodeError) -> UInt8? {
        try addressFamilyByte(.requestedAddressFamily)
    }

    /// The raw family byte of ADDITIONAL-ADDRESS-FAMILY (RFC 8656 section 18.11).
    public func additionalAddressFamilyByte() throws(STUNDecodeError) -> UInt8? {
        try addressFamilyByte(.additionalAddressFamily)
    }

    /// The raw family byte of an attribute laid out as REQUESTED-ADDRESS-FAMILY (RFC 8656 section
    /// 18.6: the family, then 3 reserved bytes; 4 in all). For code points outside the registry that
    /// carry the same value, such as ADDITIONAL-ADDRESS-FAMILY's draft type 0x8032.
    public func addressFamilyByte(_ type: AttributeType) throws(STUNDecodeError) -> UInt8? {
        try decodeValue(type) { $0.count == 4 ? $0[0] : nil }
    }

    /// EVEN-PORT's R bit, RFC 8656 section 18.7.
    public func evenPort() throws(STUNDecodeError) -> Bool? {
        try decodeValue(.evenPort) { $0.count == 1 ? $0[0] & 0x80 != 0 : nil }
    }

    /// RESERVATION-TOKEN, RFC 8656 section 18.10, as a number.
    public func reservationToken() throws(STUNDecodeError) -> UInt64? { try uint64(.reservationToken) }

    /// CONNECTION-ID, RFC 6062 section 6.2.1.
    public func connectionID() throws(STUNDecodeError) -> UInt32? { try uint32(.connectionID) }

    /// DATA, RFC 8656 section 18.4: the payload, zero-copy.
    public var data: UnsafeRawBufferPointer? { value(of: .data) }

    /// PASSWORD-ALGORITHM's algorithm number, RFC 8489 section 14.12.
    public func passwordAlgorithm() throws(STUNDecodeError) -> PasswordAlgorithm? {
        try decodeValue(.passwordAlgorithm) { v -> PasswordAlgorithm? in
            guard let (entry, used) = Attribute.decodePasswordAlgorithm(v, at: 0), v.count <= used else { return nil }
            return entry.algorithm
        }
    }

    private func decodeValue<T>(_ type: AttributeType,
                                _ decode: (UnsafeRawBufferPointer) -> T?) throws(STUNDecodeError) -> T? {
        guard let a = first(type) else { return nil }
        guard let v = decode(a.value) else { throw STUNDecodeError(.badAttributeValue(type), at: a.offset) }
        return v
    }

    // MARK: Integrity and fingerprint

    public var hasMessageIntegrity: Bool { integrityOffset >= 0 }
    public var hasMessageIntegritySHA256: Bool { integritySHA256Offset >= 0 }
    public var hasFingerprint: Bool { fingerprintOffset >= 0 }

    /// Header offsets of the integrity and fingerprint attributes, nil if absent.
    public var messageIntegrityOffset: Int? { integrityOffset >= 0 ? integrityOffset : nil }
    public var messageIntegritySHA256Offset: Int? { integritySHA256Offset >= 0 ? integritySHA256Offset : nil }
    public var fingerprintAttributeOffset: Int? { fingerprintOffset >= 0 ? fingerprintOffset : nil }

    /// RFC 8489 section 14.7: true when FINGERPRINT is present and equals the CRC-32 of the
    /// message up to it (header length as received, which counts FINGERPRINT since it is last)
    /// XORed with 0x5354554E. False when absent.
    public func fingerprintIsValid() -> Bool {
        let o = fingerprintOffset
        guard o >= 20, o + 8 <= buffer.count else { return false }
        return Fingerprint.value(buffer.slice(0, o)) == buffer.be32(at: o + 4)
    }

    /// RFC 8489 section 14.5: true when MESSAGE-INTEGRITY is present and equals HMAC-SHA1(key,
    /// message up to but excluding the attribute, with the header length field set to the length
    /// up to and including it). Compared in constant time. False when absent.
    ///
    /// The key is the short-term password (section 9.1.1) or the long-term key (section 9.2.2,
    /// see `LongTermKey`).
    public func checkMessageIntegrity(key: UnsafeRawBufferPointer) -> Bool {
        guard integrityOffset >= 20 else { return false }
        return checkHMAC(.sha1, key: key, at: integrityOffset, macLength: 20)
    }

    /// RFC 8489 section 14.6: as `checkMessageIntegrity` with HMAC-SHA256; a truncated attribute
    /// (16...28 bytes) is compared with the same leading bytes of the HMAC.
    public func checkMessageIntegritySHA256(key: UnsafeRawBufferPointer) -> Bool {
        guard integritySHA256Offset >= 20 else { return false }
        let length = Int(buffer.be16(at: integritySHA256Offset + 2))
        return checkHMAC(.sha256, key: key, at: integritySHA256Offset, macLength: length)
    }

    public func checkMessageIntegrity(key: [UInt8]) -> Bool {
        key.withUnsafeBytes { checkMessageIntegrity(key: $0) }
    }

    public func checkMessageIntegritySHA256(key: [UInt8]) -> Bool {
        key.withUnsafeBytes { checkMessageIntegritySHA256(key: $0) }
    }

    /// HMAC over a patched copy of the header (on the stack) followed by the attributes before
    /// the integrity attribute at `offset`; the caller's buffer is not touched.
    private func checkHMAC(_ hash: HashFunction, key: UnsafeRawBufferPointer, at offset: Int, macLength: Int) -> Bool {
        guard macLength <= hash.size, offset + 4 + macLength <= buffer.count else { return false }
        var header: (UInt64, UInt64, UInt32) = (0, 0, 0)
        return withUnsafeMutableBytes(of: &header) { h -> Bool in
            let h20 = UnsafeMutableRawBufferPointer(rebasing: h[0 ..< 20])
            h20.copyMemory(from: buffer.slice(0, 20))
            h20.storeBE16(UInt16(truncatingIfNeeded: offset + 4 + macLength - 20), at: 2)
            guard let mac = hash.hmac(key: key, UnsafeRawBufferPointer(h20), buffer.slice(20, offset - 20)) else {
                return false
            }
            return mac.withUnsafeBytes { constantTimeEqual($0.slice(0, macLength), buffer.slice(offset + 4, macLength)) }
        }
    }
}
