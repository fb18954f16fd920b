/// Why a STUN message, attribute or ChannelData frame could not be decoded.
///
/// Every decode path in this module reports failure with this one error type (typed throws), so
/// a server can log `description` and drop the datagram (RFC 8489 section 6.3: a malformed message
/// is silently discarded, or answered with 400 when it is a request that made it far enough).
public struct STUNDecodeError: Error, Hashable, Sendable {
    /// What was wrong.
    public enum Kind: Hashable, Sendable {
        /// Fewer than the 20 bytes of a STUN header (RFC 8489 section 5).
        case truncatedHeader
        /// The two most significant bits of the message are not zero (RFC 8489 section 5).
        case notSTUN
        /// The magic cookie field is not 0x2112A442 (RFC 8489 section 5).
        case badMagicCookie
        /// The message length is not a multiple of 4 (RFC 8489 section 5).
        case lengthNotMultipleOf4
        /// 20 + message length differs from the number of bytes received (RFC 8489 section 6.3).
        case lengthMismatch
        /// An attribute header or (padded) value runs past the end of the message (RFC 8489 section 14).
        case attributeTruncated(AttributeType)
        /// An attribute follows FINGERPRINT, which must be last (RFC 8489 section 14.7).
        case attributeAfterFingerprint(AttributeType)
        /// The value of a known attribute is malformed (wrong length, family, class, UTF-8, ...).
        case badAttributeValue(AttributeType)
        /// FINGERPRINT is present but does not match the CRC-32 of the message (RFC 8489 section 14.7).
        case badFingerprint
        /// A ChannelData header is incomplete: fewer than 4 bytes (RFC 8656 section 12.4).
        case channelDataTruncatedHeader
        /// A ChannelData channel number outside 0x4000-0x4FFF (RFC 8656 section 12).
        case badChannelNumber(UInt16)
        /// The ChannelData length field claims more bytes than were received (RFC 8656 section 12.6).
        case channelDataTruncated
        /// More bytes follow the ChannelData payload than its padding allows (RFC 8656 section 12.5).
        case channelDataTrailingBytes
    }

    /// What was wrong.
    public var kind: Kind
    /// Byte offset (from the start of the buffer) at which decoding stopped.
    public var offset: Int

    public init(_ kind: Kind, at offset: Int) {
        self.kind = kind
        self.offset = offset
    }
}

extension STUNDecodeError: CustomStringConvertible {
    public var description: String {
        switch kind {
        case .truncatedHeader:
            return "message shorter than the 20-byte STUN header (\(offset) bytes)"
        case .notSTUN:
            return "top two bits of byte 0 are not zero: not a STUN message"
        case .badMagicCookie:
            return "bad magic cookie at byte \(offset)"
        case .lengthNotMultipleOf4:
            return "message length is not a multiple of 4 (header byte 2)"
        case .lengthMismatch:
            return "message length field disagrees with the \(offset) bytes received"
        case .attributeTruncated(let t):
            return "attribute \(t.hex) value truncated at byte \(offset)"
        case .attributeAfterFingerprint(let t):
            return "attribute \(t.hex) follows FINGERPRINT at byte \(offset)"
        case .badAttributeValue(let t):
            return "bad value for attribute \(t) (\(t.hex)) at byte \(offset)"
        case .badFingerprint:
            return "FINGERPRINT mismatch at byte \(offset)"
        case .channelDataTruncatedHeader:
            return "ChannelData shorter than its 4-byte header (\(offset) bytes)"
        case .badChannelNumber(let n):
            return "channel number 0x\(String(n, radix: 16)) outside 0x4000-0x4FFF"
        case .channelDataTruncated:
            return "ChannelData length exceeds the \(offset) bytes received"
        case .channelDataTrailingBytes:
            return "ChannelData followed by more than its padding at byte \(offset)"
        }
    }
}

/// Why a message could not be encoded. Writers never write outside their buffer: they check first
/// and throw this instead.
public enum STUNEncodeError: Error, Hashable, Sendable {
    /// The caller's buffer cannot hold the header or the attribute being appended.
    case bufferTooSmall
    /// The message length would exceed 65,535 bytes (the 16-bit length field, RFC 8489 section 5).
    case messageTooLong
    /// An attribute value is longer than its 16-bit length field or its RFC limit allows.
    case valueTooLong(AttributeType)
    /// An attribute value is not representable (e.g. an error code outside 300...699).
    case invalidValue(AttributeType)
    /// A ChannelData channel number outside 0x4000-0x4FFF or a payload over 65,535 bytes.
    case invalidChannelData
    /// OpenSSL failed to compute a digest or HMAC.
    case cryptoFailure
}

extension STUNEncodeError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .bufferTooSmall: return "output buffer too small"
        case .messageTooLong: return "message longer than 65,535 bytes"
        case .valueTooLong(let t): return "value of attribute \(t) (\(t.hex)) too long"
        case .invalidValue(let t): return "value of attribute \(t) (\(t.hex)) not representable"
        case .invalidChannelData: return "channel number outside 0x4000-0x4FFF or payload too long"
        case .cryptoFailure: return "OpenSSL digest/HMAC failure"
        }
    }
}
