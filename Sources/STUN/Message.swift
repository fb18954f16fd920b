/// A whole STUN message as a value: convenient for clients, tests and tools. The server's hot
/// path uses `MessageReader` and `MessageWriter` directly instead.
public struct Message: Hashable, Sendable {
    public var type: MessageType
    public var transactionID: TransactionID
    /// The attributes, in wire order. On decode, attributes RFC 8489 sections 14.5 and 14.6 say
    /// to ignore (after MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256) are left out.
    public var attributes: [Attribute]

    public init(type: MessageType, transactionID: TransactionID = .random(), attributes: [Attribute] = []) {
        self.type = type
        self.transactionID = transactionID
        self.attributes = attributes
    }

    // MARK: Decoding

    /// Decodes and validates one message (see `MessageReader.init`), then every attribute into its
    /// typed case (unknown types into `.unknown`). A malformed known attribute throws
    /// `.badAttributeValue(type)` at that attribute's offset. When `verifyFingerprint` is true
    /// (the default) a FINGERPRINT that does not match throws `.badFingerprint` (RFC 8489
    /// section 14.7). MESSAGE-INTEGRITY is not checked here: that needs a key (see
    /// `MessageReader.checkMessageIntegrity`).
    public static func decode(_ bytes: [UInt8], verifyFingerprint: Bool = true) throws(STUNDecodeError) -> Message {
        let r: Result<Message, STUNDecodeError> = bytes.withUnsafeBytes { buf in
            Result { () throws(STUNDecodeError) in try decode(buf, verifyFingerprint: verifyFingerprint) }
        }
        return try r.get()
    }

    /// As `decode(_:verifyFingerprint:)`, from a raw buffer.
    public static func decode(_ buffer: UnsafeRawBufferPointer, verifyFingerprint: Bool = true) throws(STUNDecodeError) -> Message {
        let reader = try MessageReader(buffer)
        return try Message(reader, verifyFingerprint: verifyFingerprint)
    }

    /// Decodes every attribute of an already validated message.
    public init(_ reader: MessageReader, verifyFingerprint: Bool = true) throws(STUNDecodeError) {
        if verifyFingerprint, let o = reader.fingerprintAttributeOffset, !reader.fingerprintIsValid() {
            throw STUNDecodeError(.badFingerprint, at: o)
        }
        var attributes: [Attribute] = []
        attributes.reserveCapacity(reader.attributeCount)
        for a in reader.attributes {
            guard let v = Attribute.decode(type: a.type, value: a.value, transactionID: reader.transactionID) else {
                throw STUNDecodeError(.badAttributeValue(a.type), at: a.offset)
            }
            attributes.append(v)
        }
        self.init(type: reader.type, transactionID: reader.transactionID, attributes: attributes)
    }

    // MARK: Encoding

    /// Encodes the message: `attributes` in order (integrity and fingerprint attributes among them
    /// are written as given), then, if asked, a fresh MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256
    /// and FINGERPRINT, in that order (RFC 8489 sections 14.5-14.7).
    ///
    /// Returns an empty array if the message cannot be represented (a value over its RFC limit, an
    /// error code outside 300...699, more than 65,535 bytes of attributes); `encodeChecked` says why.
    public func encode(integrityKey: [UInt8]? = nil, integritySHA256Key: [UInt8]? = nil,
                       fingerprint: Bool = false) -> [UInt8] {
        (try? encodeChecked(integrityKey: integrityKey, integritySHA256Key: integritySHA256Key,
                            fingerprint: fingerprint)) ?? []
    }

    /// As `encode`, throwing why the message cannot be represented.
    public func encodeChecked(integrityKey: [UInt8]? = nil, integritySHA256Key: [UInt8]? = nil,
                              fingerprint: Bool = false) throws(STUNEncodeError) -> [UInt8] {
        var size = 20
        for a in attributes { size += 4 + roundUp4(a.encodedValueLength) }
        if integrityKey != nil { size += 24 }
        if integritySHA256Key != nil { size += 36 }
        if fingerprint { size += 8 }
        guard size - 20 <= 0xFFFF else { throw .messageTooLong }

        var out = [UInt8](repeating: 0, count: size)
        let r: Result<Int, STUNEncodeError> = out.withUnsafeMutableBytes { buf in
            Result { () throws(STUNEncodeError) -> Int in
                var w = try MessageWriter(buffer: buf, type: type, transactionID: transactionID)
                for a in attributes { try w.append(a) }
                if let k = integrityKey { try w.appendMessageIntegrity(key: k) }
                if let k = integritySHA256Key { try w.appendMessageIntegritySHA256(key: k) }
                if fingerprint { try w.appendFingerprint() }
                return w.count
            }
        }
        let written = try r.get()
        if written < out.count { out.removeLast(out.count - written) }
        return out
    }

    // MARK: Lookup

    /// The first attribute of `type`.
    public func first(_ type: AttributeType) -> Attribute? { attributes.first { $0.type == type } }

    /// The first attribute of `type`.
    public subscript(_ type: AttributeType) -> Attribute? { first(type) }

    /// All attributes of `type`, in order.
    public func all(_ type: AttributeType) -> [Attribute] { attributes.filter { $0.type == type } }

    public var errorCode: (code: Int, reason: String)? {
        if case .errorCode(let c, let r)? = first(.errorCode) { return (c, r) }
        return nil
    }

    public var xorMappedAddress: TransportAddress? {
        if case .xorMappedAddress(let a)? = first(.xorMappedAddress) { return a }
        return nil
    }

    public var xorRelayedAddress: TransportAddress? {
        if case .xorRelayedAddress(let a)? = first(.xorRelayedAddress) { return a }
        return nil
    }

    public var xorPeerAddresses: [TransportAddress] {
        attributes.compactMap { if case .xorPeerAddress(let a) = $0 { return a } else { return nil } }
    }

    public var username: String? {
        if case .username(let s)? = first(.username) { return s }
        return nil
    }

    public var realm: String? {
        if case .realm(let s)? = first(.realm) { return s }
        return nil
    }

    public var nonce: String? {
        if case .nonce(let s)? = first(.nonce) { return s }
        return nil
    }

    public var software: String? {
        if case .software(let s)? = first(.software) { return s }
        return nil
    }

    public var lifetime: UInt32? {
        if case .lifetime(let v)? = first(.lifetime) { return v }
        return nil
    }

    public var data: [UInt8]? {
        if case .data(let v)? = first(.data) { return v }
        return nil
    }
}

extension Message: CustomStringConvertible {
    public var description: String {
        "\(type) \(transactionID) [" + attributes.map(\.description).joined(separator: "; ") + "]"
    }
}
