/// ERROR-CODE (RFC 8489 section 14.8) and ADDRESS-ERROR-CODE (RFC 8656 section 18.12) values.
///
///     0                   1                   2                   3
///     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |           Reserved, should be 0         |Class|     Number    |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |      Reason Phrase (variable)                                ..
///
/// The code is Class * 100 + Number with Class 3...6 and Number 0...99. ADDRESS-ERROR-CODE puts the
/// address family in the first byte. The reason phrase is UTF-8, fewer than 128 characters
/// (at most 763 bytes).
public enum ErrorCode {
    /// Valid codes: RFC 8489 section 14.8 ("MUST be in the range of 300 to 699").
    public static let validRange = 300...699

    /// The largest reason phrase in bytes (RFC 8489 section 14.8: 128 characters, 763 bytes).
    public static let maxReasonBytes = 763

    /// RFC 8489 section 14.8.
    public static let tryAlternate = 300
    public static let badRequest = 400
    public static let unauthorized = 401
    /// RFC 8656 section 6.
    public static let forbidden = 403
    /// RFC 8656 section 19 (Mobility).
    public static let mobilityForbidden = 405
    public static let unknownAttribute = 420
    /// RFC 8656 section 19.
    public static let allocationMismatch = 437
    public static let staleNonce = 438
    public static let addressFamilyNotSupported = 440
    public static let wrongCredentials = 441
    public static let unsupportedTransportProtocol = 442
    public static let peerAddressFamilyMismatch = 443
    /// RFC 6062 section 6.3.
    public static let connectionAlreadyExists = 446
    public static let connectionTimeoutOrFailure = 447
    public static let allocationQuotaReached = 486
    /// RFC 8445 section 7.3.1.1.
    public static let roleConflict = 487
    public static let serverError = 500
    public static let insufficientCapacity = 508

    /// The reason phrase the RFCs suggest for `code` ("" for codes they do not name).
    public static func defaultReason(_ code: Int) -> StaticString {
        switch code {
        case 300: return "Try Alternate"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 405: return "Mobility Forbidden"
        case 420: return "Unknown Attribute"
        case 437: return "Allocation Mismatch"
        case 438: return "Stale Nonce"
        case 440: return "Address Family not Supported"
        case 441: return "Wrong Credentials"
        case 442: return "Unsupported Transport Protocol"
        case 443: return "Peer Address Family Mismatch"
        case 446: return "Connection Already Exists"
        case 447: return "Connection Timeout or Failure"
        case 486: return "Allocation Quota Reached"
        case 487: return "Role Conflict"
        case 500: return "Server Error"
        case 508: return "Insufficient Capacity"
        default: return ""
        }
    }

    /// Decodes the class/number word of an ERROR-CODE-style value (the 4 bytes at the start);
    /// nil when the value is shorter than 4 bytes, the class is outside 3...6 or the number over 99.
    static func decodeCode(_ value: UnsafeRawBufferPointer) -> Int? {
        guard value.count >= 4 else { return nil }
        let cls = Int(value[2] & 0x07), number = Int(value[3])
        guard (3...6).contains(cls), number < 100 else { return nil }
        return cls * 100 + number
    }

    /// Decodes the reason phrase (bytes 4...); nil for invalid UTF-8 or an over-long phrase.
    static func decodeReason(_ value: UnsafeRawBufferPointer) -> String? {
        guard value.count >= 4 else { return nil }
        return decodeUTF8(value.slice(4, value.count - 4), maxBytes: maxReasonBytes)
    }
}

/// Decodes UTF-8 text for USERNAME, REALM, NONCE, SOFTWARE and the like: nil for invalid UTF-8
/// or more than `maxBytes` bytes.
func decodeUTF8(_ bytes: UnsafeRawBufferPointer, maxBytes: Int) -> String? {
    guard bytes.count <= maxBytes else { return nil }
    // `String(decoding:)` replaces ill-formed sequences with U+FFFD, so the input was valid UTF-8
    // exactly when the result encodes back to the same bytes. (Portable to every deployment
    // target, unlike `String(validating:as:)`, which needs the Swift 6 runtime on Apple platforms.)
    let s = String(decoding: bytes, as: UTF8.self)
    return s.utf8.elementsEqual(bytes) ? s : nil
}
