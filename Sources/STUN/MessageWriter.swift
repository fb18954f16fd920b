/// Builds one STUN message in a caller-provided buffer, allocation-free on its fast paths.
///
/// The header is written by `init`; every append writes a TLV (RFC 8489 section 14: 2-byte type,
/// 2-byte value length, value, zero padding to a multiple of 4) and updates the header's length
/// field, so `bytes` is a complete message at every point. Nothing is written unless it fits:
/// an append that does not fit throws and leaves the message as it was.
///
/// Order is the caller's business, with the RFC's rules: MESSAGE-INTEGRITY, then
/// MESSAGE-INTEGRITY-SHA256, then FINGERPRINT, last (RFC 8489 sections 14.5-14.7).
public struct MessageWriter {
    /// The caller's buffer; only `buffer[0 ..< count]` is written.
    public let buffer: UnsafeMutableRawBufferPointer
    public let transactionID: TransactionID
    /// Bytes written so far: 20 + the header's length field.
    public private(set) var count: Int

    /// Writes the 20-byte header (RFC 8489 section 5) with length 0.
    public init(buffer: UnsafeMutableRawBufferPointer, type: MessageType, transactionID: TransactionID) throws(STUNEncodeError) {
        guard buffer.count >= 20 else { throw .bufferTooSmall }
        self.buffer = buffer
        self.transactionID = transactionID
        self.count = 20
        buffer.storeBE16(type.rawValue, at: 0)
        buffer.storeBE16(0, at: 2)
        buffer.storeBE32(stunMagicCookie, at: 4)
        transactionID.store(into: buffer, at: 8)
    }

    /// The message written so far.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(buffer.slice(0, count)) }

    /// The message type in the header.
    public var type: MessageType {
        get { MessageType(rawValue: UnsafeRawBufferPointer(buffer).be16(at: 0)) }
        set { buffer.storeBE16(newValue.rawValue, at: 0) }
    }

    /// Reserves an attribute of `length` value bytes: writes its header and zero padding, updates
    /// the message length, and returns the offset of the value for the caller to fill in.
    public mutating func reserve(_ type: AttributeType, length: Int) throws(STUNEncodeError) -> Int {
        guard length >= 0, length <= 0xFFFF else { throw .valueTooLong(type) }
        let total = 4 + roundUp4(length)
        guard count - 20 + total <= 0xFFFF else { throw .messageTooLong }
        guard buffer.count - count >= total else { throw .bufferTooSmall }
        let o = count
        buffer.storeBE16(type.rawValue, at: o)
        buffer.storeBE16(UInt16(truncatingIfNeeded: length), at: o + 2)
        for i in (o + 4 + length) ..< (o + total) { buffer[i] = 0 }
        count = o + total
        buffer.storeBE16(UInt16(truncatingIfNeeded: count - 20), at: 2)
        return o + 4
    }

    // MARK: Allocation-free appends

    /// Any attribute from raw value bytes.
    public mutating func appendRaw(type: AttributeType, value: UnsafeRawBufferPointer) throws(STUNEncodeError) {
        let o = try reserve(type, length: value.count)
        if value.count > 0 { buffer.slice(o, value.count).copyMemory(from: value) }
    }

    /// An attribute with an empty value (DONT-FRAGMENT, USE-CANDIDATE).
    public mutating func appendEmpty(_ type: AttributeType) throws(STUNEncodeError) {
        _ = try reserve(type, length: 0)
    }

    /// XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS or XOR-RELAYED-ADDRESS, RFC 8489 section 14.2.
    public mutating func appendXORAddress(_ type: AttributeType, _ address: TransportAddress) throws(STUNEncodeError) {
        let o = try reserve(type, length: AddressCodec.valueLength(address))
        AddressCodec.encode(address, xor: transactionID, into: buffer, at: o)
    }

    /// MAPPED-ADDRESS, ALTERNATE-SERVER, RESPONSE-ORIGIN, OTHER-ADDRESS, RFC 8489 section 14.1.
    public mutating func appendAddress(_ type: AttributeType, _ address: TransportAddress) throws(STUNEncodeError) {
        let o = try reserve(type, length: AddressCodec.valueLength(address))
        AddressCodec.encode(address, xor: nil, into: buffer, at: o)
    }

    /// A 4-byte big-endian value (LIFETIME, CONNECTION-ID, PRIORITY, ...).
    public mutating func appendUInt32(type: AttributeType, _ value: UInt32) throws(STUNEncodeError) {
        let o = try reserve(type, length: 4)
        buffer.storeBE32(value, at: o)
    }

    /// An 8-byte big-endian value (RESERVATION-TOKEN, ICE-CONTROLLED, ICE-CONTROLLING).
    public mutating func appendUInt64(type: AttributeType, _ value: UInt64) throws(STUNEncodeError) {
        let o = try reserve(type, length: 8)
        buffer.storeBE64(value, at: o)
    }

    /// A 16-bit value followed by two zero RFFU bytes (CHANNEL-NUMBER, RFC 8656 section 18.1).
    public mutating func appendChannelNumber(_ channel: UInt16) throws(STUNEncodeError) {
        let o = try reserve(.channelNumber, length: 4)
        buffer.storeBE16(channel, at: o)
    }

    /// ERROR-CODE, RFC 8489 section 14.8. `code` must be 300...699; the reason is UTF-8 of at most
    /// 763 bytes.
    public mutating func appendErrorCode(code: Int, reason: UnsafeRawBufferPointer) throws(STUNEncodeError) {
        try appendErrorCode(.errorCode, firstByte: 0, code: code, reason: reason)
    }

    public mutating func appendErrorCode(code: Int, reason: StaticString) throws(STUNEncodeError) {
        let r: Result<Void, STUNEncodeError> = reason.withUTF8Buffer { u in
            Result { () throws(STUNEncodeError) in try appendErrorCode(code: code, reason: UnsafeRawBufferPointer(u)) }
        }
        try r.get()
    }

    /// Allocation-free for native (contiguous) strings such as literals.
    public mutating func appendErrorCode(code: Int, reason: String) throws(STUNEncodeError) {
        var s = reason
        let r: Result<Void, STUNEncodeError> = s.withUTF8 { u in
            Result { () throws(STUNEncodeError) in try appendErrorCode(code: code, reason: UnsafeRawBufferPointer(u)) }
        }
        try r.get()
    }

    /// ERROR-CODE with the RFC's reason phrase for `code` (`ErrorCode.defaultReason`).
    public mutating func appendErrorCode(_ code: Int) throws(STUNEncodeError) {
        try appendErrorCode(code: code, reason: ErrorCode.defaultReason(code))
    }

    /// ADDRESS-ERROR-CODE, RFC 8656 section 18.12.
    public mutating func appendAddressErrorCode(family: AddressFamily, code: Int, reason: UnsafeRawBufferPointer) throws(STUNEncodeError) {
        try appendErrorCode(.addressErrorCode, firstByte: family.rawValue, code: code, reason: reason)
    }

    private mutating func appendErrorCode(_ type: AttributeType, firstByte: UInt8, code: Int,
                                          reason: UnsafeRawBufferPointer) throws(STUNEncodeError) {
        guard ErrorCode.validRange.contains(code) else { throw .invalidValue(type) }
        guard reason.count <= ErrorCode.maxReasonBytes else { throw .valueTooLong(type) }
        let o = try reserve(type, length: 4 + reason.count)
        buffer[o] = firstByte
        buffer[o + 1] = 0
        buffer[o + 2] = UInt8(truncatingIfNeeded: code / 100)
        buffer[o + 3] = UInt8(truncatingIfNeeded: code % 100)
        if reason.count > 0 { buffer.slice(o + 4, reason.count).copyMemory(from: reason) }
    }

    /// UNKNOWN-ATTRIBUTES, RFC 8489 section 14.13.
    public mutating func appendUnknownAttributes(_ types: [AttributeType]) throws(STUNEncodeError) {
        let o = try reserve(.unknownAttributes, length: 2 * types.count)
        for (i, t) in types.enumerated() { buffer.storeBE16(t.rawValue, at: o + 2 * i) }
    }

    /// UNKNOWN-ATTRIBUTES listing each distinct comprehension-required type of `request` that
    /// `isKnown` rejects (the 420 response of RFC 8489 section 6.3.1.1), in order of first
    /// appearance, allocation-free. At most `limit` types are listed (fewer if the buffer cannot
    /// hold them), and each candidate is compared only with those already written: a hostile request
    /// full of distinct unknown types can make the answer neither large (no amplification) nor slow
    /// to build (no quadratic scan).
    /// Returns how many types were listed (the attribute is written even if that is 0).
    @discardableResult
    public mutating func appendUnknownAttributes(from request: MessageReader, limit: Int = 64,
                                                 isKnown: (AttributeType) -> Bool) throws(STUNEncodeError) -> Int {
        let start = count
        // Room for `limit` types, or as many as the buffer holds: reserve it, fill it, then shrink
        // the attribute to what was written.
        let room = max(0, min(limit, 0x7FFE, (buffer.count - count - 4) / 4 * 2))
        let o = try reserve(.unknownAttributes, length: 2 * room)
        let written = UnsafeRawBufferPointer(buffer)
        var n = 0
        var it = AttributeIterator(request.buffer)
        while n < room, let a = it.next() {
            guard a.type.isComprehensionRequired, !isKnown(a.type) else { continue }
            var seen = false
            var i = 0
            while i < n {
                if written.be16(at: o + 2 * i) == a.type.rawValue { seen = true; break }
                i += 1
            }
            if !seen {
                buffer.storeBE16(a.type.rawValue, at: o + 2 * n)
                n += 1
            }
        }
        rollBack(to: start)
        _ = try reserve(.unknownAttributes, length: 2 * n)
        return n
    }

    /// SOFTWARE, RFC 8489 section 14.14, from UTF-8 bytes (at most 763).
    public mutating func appendSoftware(_ utf8: UnsafeRawBufferPointer) throws(STUNEncodeError) {
        guard utf8.count <= TextLimit.software else { throw .valueTooLong(.software) }
        try appendRaw(type: .software, value: utf8)
    }

    public mutating func appendSoftware(_ utf8: [UInt8]) throws(STUNEncodeError) {
        let r: Result<Void, STUNEncodeError> = utf8.withUnsafeBytes { b in
            Result { () throws(STUNEncodeError) in try appendSoftware(b) }
        }
        try r.get()
    }

    /// A text attribute (USERNAME, REALM, NONCE, SOFTWARE, ALTERNATE-DOMAIN, or any other type)
    /// as UTF-8, enforcing `TextLimit` for the known ones. Allocation-free for native strings.
    public mutating func appendString(_ type: AttributeType, _ text: String) throws(STUNEncodeError) {
        var s = text
        let r: Result<Void, STUNEncodeError> = s.withUTF8 { u in
            Result { () throws(STUNEncodeError) in
                if let limit = TextLimit.limit(for: type), u.count > limit { throw .valueTooLong(type) }
                try appendRaw(type: type, value: UnsafeRawBufferPointer(u))
            }
        }
        try r.get()
    }

    // MARK: Integrity and fingerprint

    /// MESSAGE-INTEGRITY, RFC 8489 section 14.5: HMAC-SHA1 over the message so far, with the
    /// header length already counting the 24-byte attribute (as `reserve` leaves it).
    public mutating func appendMessageIntegrity(key: UnsafeRawBufferPointer) throws(STUNEncodeError) {
        try appendHMAC(.sha1, type: .messageIntegrity, key: key, length: 20)
    }

    /// MESSAGE-INTEGRITY-SHA256, RFC 8489 section 14.6, untruncated (32 bytes).
    public mutating func appendMessageIntegritySHA256(key: UnsafeRawBufferPointer) throws(STUNEncodeError) {
        try appendHMAC(.sha256, type: .messageIntegritySHA256, key: key, length: 32)
    }

    public mutating func appendMessageIntegrity(key: [UInt8]) throws(STUNEncodeError) {
        let r: Result<Void, STUNEncodeError> = key.withUnsafeBytes { k in
            Result { () throws(STUNEncodeError) in try appendMessageIntegrity(key: k) }
        }
        try r.get()
    }

    public mutating func appendMessageIntegritySHA256(key: [UInt8]) throws(STUNEncodeError) {
        let r: Result<Void, STUNEncodeError> = key.withUnsafeBytes { k in
            Result { () throws(STUNEncodeError) in try appendMessageIntegritySHA256(key: k) }
        }
        try r.get()
    }

    private mutating func appendHMAC(_ hash: HashFunction, type: AttributeType, key: UnsafeRawBufferPointer,
                                     length: Int) throws(STUNEncodeError) {
        let before = count
        let o = try reserve(type, length: length)
        guard let mac = hash.hmac(key: key, UnsafeRawBufferPointer(buffer.slice(0, o - 4))) else {
            rollBack(to: before)
            throw .cryptoFailure
        }
        mac.withUnsafeBytes { buffer.slice(o, length).copyMemory(from: $0.slice(0, length)) }
    }

    /// FINGERPRINT, RFC 8489 section 14.7: CRC-32 of the message so far (length counting the
    /// FINGERPRINT attribute) XOR 0x5354554E. Must be the last attribute.
    public mutating func appendFingerprint() throws(STUNEncodeError) {
        let o = try reserve(.fingerprint, length: 4)
        buffer.storeBE32(Fingerprint.value(UnsafeRawBufferPointer(buffer.slice(0, o - 4))), at: o)
    }

    private mutating func rollBack(to n: Int) {
        count = n
        buffer.storeBE16(UInt16(truncatingIfNeeded: n - 20), at: 2)
    }

    // MARK: Typed attributes

    /// Appends any typed attribute. Allocation-free except where the value itself needs it.
    /// MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT cases are written as given
    /// (use the dedicated appends to compute fresh ones).
    public mutating func append(_ attribute: Attribute) throws(STUNEncodeError) {
        let type = attribute.type
        switch attribute {
        case .mappedAddress(let a), .alternateServer(let a), .responseOrigin(let a), .otherAddress(let a):
            try appendAddress(type, a)
        case .xorMappedAddress(let a), .xorPeerAddress(let a), .xorRelayedAddress(let a):
            try appendXORAddress(type, a)
        case .username(let s), .realm(let s), .nonce(let s), .software(let s), .alternateDomain(let s):
            try appendString(type, s)
        case .userhash(let b):
            guard b.count == 32 else { throw .invalidValue(type) }
            try appendBytes(type, b)
        case .messageIntegrity(let b):
            guard b.count == 20 else { throw .invalidValue(type) }
            try appendBytes(type, b)
        case .messageIntegritySHA256(let b):
            guard isValidSHA256IntegrityLength(b.count) else { throw .invalidValue(type) }
            try appendBytes(type, b)
        case .reservationToken(let b):
            guard b.count == 8 else { throw .invalidValue(type) }
            try appendBytes(type, b)
        case .data(let b), .unknown(_, let b):
            try appendBytes(type, b)
        case .errorCode(let code, let reason):
            try appendErrorCode(code: code, reason: reason)
        case .addressErrorCode(let family, let code, let reason):
            var s = reason
            let r: Result<Void, STUNEncodeError> = s.withUTF8 { u in
                Result { () throws(STUNEncodeError) in
                    try appendAddressErrorCode(family: family, code: code, reason: UnsafeRawBufferPointer(u))
                }
            }
            try r.get()
        case .unknownAttributes(let types):
            try appendUnknownAttributes(types)
        case .fingerprint(let v), .lifetime(let v), .connectionID(let v), .priority(let v):
            try appendUInt32(type: type, v)
        case .passwordAlgorithm(let alg, let params):
            try appendPasswordAlgorithms(type, [PasswordAlgorithmEntry(alg, params: params)])
        case .passwordAlgorithms(let entries):
            try appendPasswordAlgorithms(type, entries)
        case .channelNumber(let n):
            try appendChannelNumber(n)
        case .requestedAddressFamily(let f), .additionalAddressFamily(let f):
            try appendUInt32(type: type, UInt32(f.rawValue) << 24)
        case .requestedTransport(let p):
            try appendUInt32(type: type, UInt32(p) << 24)
        case .evenPort(let reserve):
            let o = try self.reserve(type, length: 1)
            buffer[o] = reserve ? 0x80 : 0
        case .dontFragment, .useCandidate:
            try appendEmpty(type)
        case .icmp(let t, let c, let d):
            let o = try reserve(type, length: 8)
            buffer.storeBE16(0, at: o)
            buffer[o + 2] = t
            buffer[o + 3] = c
            buffer.storeBE32(d, at: o + 4)
        case .iceControlled(let v), .iceControlling(let v):
            try appendUInt64(type: type, v)
        case .changeRequest(let ip, let port):
            try appendUInt32(type: type, (ip ? 0x4 : 0) | (port ? 0x2 : 0))
        }
    }

    private mutating func appendBytes(_ type: AttributeType, _ bytes: [UInt8]) throws(STUNEncodeError) {
        let r: Result<Void, STUNEncodeError> = bytes.withUnsafeBytes { b in
            Result { () throws(STUNEncodeError) in try appendRaw(type: type, value: b) }
        }
        try r.get()
    }

    /// PASSWORD-ALGORITHM(S), RFC 8489 sections 14.11 and 14.12: each entry is algorithm,
    /// parameter length, parameters padded to 4.
    private mutating func appendPasswordAlgorithms(_ type: AttributeType, _ entries: [PasswordAlgorithmEntry]) throws(STUNEncodeError) {
        var length = 0
        for e in entries {
            guard e.params.count <= 0xFFFF else { throw .valueTooLong(type) }
            length += e.encodedLength
        }
        var o = try reserve(type, length: length)
        for e in entries {
            buffer.storeBE16(e.algorithm.rawValue, at: o)
            buffer.storeBE16(UInt16(truncatingIfNeeded: e.params.count), at: o + 2)
            for (i, b) in e.params.enumerated() { buffer[o + 4 + i] = b }
            for i in (o + 4 + e.params.count) ..< (o + e.encodedLength) { buffer[i] = 0 }
            o += e.encodedLength
        }
    }
}

extension UnsafeMutableRawBufferPointer {
    @inline(__always)
    func slice(_ offset: Int, _ count: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: self[offset ..< offset + count])
    }
}
