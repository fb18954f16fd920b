/// A password algorithm number, RFC 8489 section 14.11 and the IANA "STUN Password Algorithms"
/// registry. A struct rather than an enum so that unregistered numbers survive a round trip.
public struct PasswordAlgorithm: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// RFC 8489 section 18.5.1.1: key = MD5(username ":" realm ":" password), 16 bytes.
    public static let md5 = PasswordAlgorithm(rawValue: 0x0001)
    /// RFC 8489 section 18.5.1.2: key = SHA-256(username ":" realm ":" password), 32 bytes.
    public static let sha256 = PasswordAlgorithm(rawValue: 0x0002)
}

/// One entry of PASSWORD-ALGORITHMS (RFC 8489 section 14.11): an algorithm and its parameters.
public struct PasswordAlgorithmEntry: Hashable, Sendable {
    public var algorithm: PasswordAlgorithm
    public var params: [UInt8]

    public init(_ algorithm: PasswordAlgorithm, params: [UInt8] = []) {
        self.algorithm = algorithm
        self.params = params
    }

    /// Encoded size: 2-byte algorithm, 2-byte parameter length, parameters padded to 4.
    var encodedLength: Int { 4 + roundUp4(params.count) }
}

/// The byte limits this codec enforces on text attributes, both ways.
public enum TextLimit {
    /// RFC 8489 section 14.3 allows fewer than 509 bytes; RFC 5389 allowed fewer than 513, which we
    /// accept for interoperability with older clients.
    public static let username = 512
    /// RFC 8489 sections 14.9, 14.10, 14.14: fewer than 128 characters, at most 763 bytes.
    public static let realm = 763
    public static let nonce = 763
    public static let software = 763
    /// RFC 8489 section 14.16: no more than 255 ASCII characters.
    public static let alternateDomain = 255

    /// The limit for a text attribute type, nil if `type` is not a text attribute.
    static func limit(for type: AttributeType) -> Int? {
        switch type {
        case .username: return username
        case .realm: return realm
        case .nonce: return nonce
        case .software: return software
        case .alternateDomain: return alternateDomain
        default: return nil
        }
    }
}

/// A decoded STUN/TURN attribute (RFC 8489 section 14, RFC 8656 section 18, RFC 6062 section 6.2,
/// RFC 5780 section 7, RFC 8445 section 16.1). Types this codec does not know decode as `.unknown`.
public enum Attribute: Hashable, Sendable {
    // Addresses: RFC 8489 sections 14.1, 14.2, 14.15; RFC 8656 sections 18.3, 18.5; RFC 5780.
    case mappedAddress(TransportAddress)
    case xorMappedAddress(TransportAddress)
    case xorPeerAddress(TransportAddress)
    case xorRelayedAddress(TransportAddress)
    case alternateServer(TransportAddress)
    case responseOrigin(TransportAddress)
    case otherAddress(TransportAddress)

    // Text (UTF-8): RFC 8489 sections 14.3, 14.9, 14.10, 14.14, 14.16.
    case username(String)
    case realm(String)
    case nonce(String)
    case software(String)
    case alternateDomain(String)

    /// RFC 8489 section 14.4: SHA-256(username ":" realm), 32 bytes.
    case userhash([UInt8])
    /// RFC 8489 section 14.8: code 300...699 and a UTF-8 reason phrase.
    case errorCode(code: Int, reason: String)
    /// RFC 8489 section 14.13.
    case unknownAttributes([AttributeType])
    /// RFC 8489 section 14.5: HMAC-SHA1, 20 bytes.
    case messageIntegrity([UInt8])
    /// RFC 8489 section 14.6: HMAC-SHA256, possibly truncated: 16...32 bytes, a multiple of 4.
    case messageIntegritySHA256([UInt8])
    /// RFC 8489 section 14.7: CRC-32 of the message XOR 0x5354554E.
    case fingerprint(UInt32)
    /// RFC 8489 section 14.12.
    case passwordAlgorithm(PasswordAlgorithm, params: [UInt8])
    /// RFC 8489 section 14.11.
    case passwordAlgorithms([PasswordAlgorithmEntry])

    // TURN, RFC 8656 section 18.
    /// Section 18.1: the channel number (RFFU bytes dropped). Range checks are the server's job.
    case channelNumber(UInt16)
    /// Section 18.2: seconds.
    case lifetime(UInt32)
    /// Section 18.4.
    case data([UInt8])
    /// Section 18.6.
    case requestedAddressFamily(AddressFamily)
    /// Section 18.11.
    case additionalAddressFamily(AddressFamily)
    /// Section 18.12.
    case addressErrorCode(family: AddressFamily, code: Int, reason: String)
    /// Section 18.7: the R bit.
    case evenPort(reserve: Bool)
    /// Section 18.8: an IANA protocol number (17 = UDP, 6 = TCP).
    case requestedTransport(protocolNumber: UInt8)
    /// Section 18.9.
    case dontFragment
    /// Section 18.10: 8 bytes.
    case reservationToken([UInt8])
    /// Section 18.13.
    case icmp(type: UInt8, code: UInt8, data: UInt32)

    /// RFC 6062 section 6.2.1.
    case connectionID(UInt32)

    // ICE, RFC 8445 section 16.1, and NAT behaviour discovery, RFC 5780 section 7.2.
    case priority(UInt32)
    case useCandidate
    case iceControlled(UInt64)
    case iceControlling(UInt64)
    case changeRequest(changeIP: Bool, changePort: Bool)

    /// Any other type, with its raw (unpadded) value.
    case unknown(type: AttributeType, value: [UInt8])

    /// The attribute's type code.
    public var type: AttributeType {
        switch self {
        case .mappedAddress: return .mappedAddress
        case .xorMappedAddress: return .xorMappedAddress
        case .xorPeerAddress: return .xorPeerAddress
        case .xorRelayedAddress: return .xorRelayedAddress
        case .alternateServer: return .alternateServer
        case .responseOrigin: return .responseOrigin
        case .otherAddress: return .otherAddress
        case .username: return .username
        case .realm: return .realm
        case .nonce: return .nonce
        case .software: return .software
        case .alternateDomain: return .alternateDomain
        case .userhash: return .userhash
        case .errorCode: return .errorCode
        case .unknownAttributes: return .unknownAttributes
        case .messageIntegrity: return .messageIntegrity
        case .messageIntegritySHA256: return .messageIntegritySHA256
        case .fingerprint: return .fingerprint
        case .passwordAlgorithm: return .passwordAlgorithm
        case .passwordAlgorithms: return .passwordAlgorithms
        case .channelNumber: return .channelNumber
        case .lifetime: return .lifetime
        case .data: return .data
        case .requestedAddressFamily: return .requestedAddressFamily
        case .additionalAddressFamily: return .additionalAddressFamily
        case .addressErrorCode: return .addressErrorCode
        case .evenPort: return .evenPort
        case .requestedTransport: return .requestedTransport
        case .dontFragment: return .dontFragment
        case .reservationToken: return .reservationToken
        case .icmp: return .icmp
        case .connectionID: return .connectionID
        case .priority: return .priority
        case .useCandidate: return .useCandidate
        case .iceControlled: return .iceControlled
        case .iceControlling: return .iceControlling
        case .changeRequest: return .changeRequest
        case .unknown(let t, _): return t
        }
    }

    /// The unpadded value length this attribute encodes to.
    public var encodedValueLength: Int {
        switch self {
        case .mappedAddress(let a), .xorMappedAddress(let a), .xorPeerAddress(let a),
             .xorRelayedAddress(let a), .alternateServer(let a), .responseOrigin(let a), .otherAddress(let a):
            return AddressCodec.valueLength(a)
        case .username(let s), .realm(let s), .nonce(let s), .software(let s), .alternateDomain(let s):
            return s.utf8.count
        case .userhash(let b), .messageIntegrity(let b), .messageIntegritySHA256(let b),
             .data(let b), .reservationToken(let b):
            return b.count
        case .errorCode(_, let reason), .addressErrorCode(_, _, let reason):
            return 4 + reason.utf8.count
        case .unknownAttributes(let types):
            return 2 * types.count
        case .passwordAlgorithm(_, let params):
            return 4 + roundUp4(params.count)
        case .passwordAlgorithms(let entries):
            return entries.reduce(0) { $0 + $1.encodedLength }
        case .fingerprint, .channelNumber, .lifetime, .requestedAddressFamily, .additionalAddressFamily,
             .requestedTransport, .connectionID, .priority, .changeRequest:
            return 4
        case .evenPort:
            return 1
        case .dontFragment, .useCandidate:
            return 0
        case .icmp, .iceControlled, .iceControlling:
            return 8
        case .unknown(_, let v):
            return v.count
        }
    }

    /// Decodes one attribute value (unpadded) of the given type. `transactionID` un-XORs the XOR
    /// address attributes (RFC 8489 section 14.2). Returns nil when a known type's value is
    /// malformed; unknown types always succeed as `.unknown`.
    public static func decode(type: AttributeType, value v: UnsafeRawBufferPointer,
                              transactionID: TransactionID) -> Attribute? {
        switch type {
        case .mappedAddress: return AddressCodec.decode(v, xor: nil).map { .mappedAddress($0) }
        case .alternateServer: return AddressCodec.decode(v, xor: nil).map { .alternateServer($0) }
        case .responseOrigin: return AddressCodec.decode(v, xor: nil).map { .responseOrigin($0) }
        case .otherAddress: return AddressCodec.decode(v, xor: nil).map { .otherAddress($0) }
        case .xorMappedAddress: return AddressCodec.decode(v, xor: transactionID).map { .xorMappedAddress($0) }
        case .xorPeerAddress: return AddressCodec.decode(v, xor: transactionID).map { .xorPeerAddress($0) }
        case .xorRelayedAddress: return AddressCodec.decode(v, xor: transactionID).map { .xorRelayedAddress($0) }

        case .username: return decodeUTF8(v, maxBytes: TextLimit.username).map { .username($0) }
        case .realm: return decodeUTF8(v, maxBytes: TextLimit.realm).map { .realm($0) }
        case .nonce: return decodeUTF8(v, maxBytes: TextLimit.nonce).map { .nonce($0) }
        case .software: return decodeUTF8(v, maxBytes: TextLimit.software).map { .software($0) }
        case .alternateDomain: return decodeUTF8(v, maxBytes: TextLimit.alternateDomain).map { .alternateDomain($0) }

        case .userhash:
            return v.count == 32 ? .userhash(Array(v)) : nil
        case .errorCode:
            guard let code = ErrorCode.decodeCode(v), let reason = ErrorCode.decodeReason(v) else { return nil }
            return .errorCode(code: code, reason: reason)
        case .unknownAttributes:
            guard v.count % 2 == 0 else { return nil }
            var types: [AttributeType] = []
            types.reserveCapacity(v.count / 2)
            var o = 0
            while o + 2 <= v.count {
                types.append(AttributeType(rawValue: v.be16(at: o)))
                o += 2
            }
            return .unknownAttributes(types)
        case .messageIntegrity:
            return v.count == 20 ? .messageIntegrity(Array(v)) : nil
        case .messageIntegritySHA256:
            return isValidSHA256IntegrityLength(v.count) ? .messageIntegritySHA256(Array(v)) : nil
        case .fingerprint:
            return v.count == 4 ? .fingerprint(v.be32(at: 0)) : nil
        case .passwordAlgorithm:
            // The value is 4 + n bytes, optionally followed by the parameters' own padding.
            guard let (entry, used) = decodePasswordAlgorithm(v, at: 0), v.count <= used else { return nil }
            return .passwordAlgorithm(entry.algorithm, params: entry.params)
        case .passwordAlgorithms:
            var entries: [PasswordAlgorithmEntry] = []
            var o = 0
            while o < v.count {
                guard let (entry, used) = decodePasswordAlgorithm(v, at: o), o + used <= v.count else { return nil }
                entries.append(entry)
                o += used
            }
            return .passwordAlgorithms(entries)

        case .channelNumber:
            return v.count == 4 ? .channelNumber(v.be16(at: 0)) : nil
        case .lifetime:
            return v.count == 4 ? .lifetime(v.be32(at: 0)) : nil
        case .data:
            return .data(Array(v))
        case .requestedAddressFamily:
            guard v.count == 4, let f = AddressFamily(rawValue: v[0]) else { return nil }
            return .requestedAddressFamily(f)
        case .additionalAddressFamily:
            guard v.count == 4, let f = AddressFamily(rawValue: v[0]) else { return nil }
            return .additionalAddressFamily(f)
        case .addressErrorCode:
            guard v.count >= 4, let f = AddressFamily(rawValue: v[0]),
                  let code = ErrorCode.decodeCode(v), let reason = ErrorCode.decodeReason(v) else { return nil }
            return .addressErrorCode(family: f, code: code, reason: reason)
        case .evenPort:
            return v.count == 1 ? .evenPort(reserve: v[0] & 0x80 != 0) : nil
        case .requestedTransport:
            return v.count == 4 ? .requestedTransport(protocolNumber: v[0]) : nil
        case .dontFragment:
            return v.count == 0 ? .dontFragment : nil
        case .reservationToken:
            return v.count == 8 ? .reservationToken(Array(v)) : nil
        case .icmp:
            return v.count == 8 ? .icmp(type: v[2], code: v[3], data: v.be32(at: 4)) : nil
        case .connectionID:
            return v.count == 4 ? .connectionID(v.be32(at: 0)) : nil

        case .priority:
            return v.count == 4 ? .priority(v.be32(at: 0)) : nil
        case .useCandidate:
            return v.count == 0 ? .useCandidate : nil
        case .iceControlled:
            return v.count == 8 ? .iceControlled(v.be64(at: 0)) : nil
        case .iceControlling:
            return v.count == 8 ? .iceControlling(v.be64(at: 0)) : nil
        case .changeRequest:
            guard v.count == 4 else { return nil }
            let flags = v.be32(at: 0)
            return .changeRequest(changeIP: flags & 0x4 != 0, changePort: flags & 0x2 != 0)

        default:
            return .unknown(type: type, value: Array(v))
        }
    }

    /// One algorithm/parameters entry at `offset`: the entry and the bytes it occupies including
    /// its parameter padding (which may run past the end of a lone PASSWORD-ALGORITHM value, whose
    /// padding is the attribute's own). Nil if the header or parameters do not fit.
    static func decodePasswordAlgorithm(_ v: UnsafeRawBufferPointer, at offset: Int) -> (PasswordAlgorithmEntry, Int)? {
        guard v.count - offset >= 4 else { return nil }
        let alg = PasswordAlgorithm(rawValue: v.be16(at: offset))
        let n = Int(v.be16(at: offset + 2))
        guard v.count - offset - 4 >= n else { return nil }
        return (PasswordAlgorithmEntry(alg, params: Array(v.slice(offset + 4, n))), 4 + roundUp4(n))
    }
}

/// RFC 8489 section 14.6: MESSAGE-INTEGRITY-SHA256 may be truncated to no fewer than 16 bytes,
/// in multiples of 4, up to the full 32.
@inline(__always)
func isValidSHA256IntegrityLength(_ n: Int) -> Bool { n >= 16 && n <= 32 && n % 4 == 0 }

extension Attribute: CustomStringConvertible {
    public var description: String {
        switch self {
        case .mappedAddress(let a), .xorMappedAddress(let a), .xorPeerAddress(let a),
             .xorRelayedAddress(let a), .alternateServer(let a), .responseOrigin(let a), .otherAddress(let a):
            return "\(type): \(a)"
        case .username(let s), .realm(let s), .nonce(let s), .software(let s), .alternateDomain(let s):
            return "\(type): \"\(s)\""
        case .errorCode(let code, let reason):
            return "\(type): \(code) \(reason)"
        case .addressErrorCode(let family, let code, let reason):
            return "\(type): \(family) \(code) \(reason)"
        case .unknownAttributes(let types):
            return "\(type): " + types.map(\.hex).joined(separator: ", ")
        case .userhash(let b), .messageIntegrity(let b), .messageIntegritySHA256(let b),
             .data(let b), .reservationToken(let b), .unknown(_, let b):
            return "\(type): \(b.count) bytes"
        case .fingerprint(let v), .lifetime(let v), .connectionID(let v), .priority(let v):
            return "\(type): \(v)"
        case .channelNumber(let n):
            return "\(type): 0x" + String(n, radix: 16)
        case .passwordAlgorithm(let alg, let params):
            return "\(type): \(alg.rawValue) (\(params.count) bytes of parameters)"
        case .passwordAlgorithms(let entries):
            return "\(type): " + entries.map { String($0.algorithm.rawValue) }.joined(separator: ", ")
        case .requestedAddressFamily(let f), .additionalAddressFamily(let f):
            return "\(type): \(f)"
        case .evenPort(let r):
            return "\(type): reserve=\(r)"
        case .requestedTransport(let p):
            return "\(type): \(p)"
        case .dontFragment, .useCandidate:
            return "\(type)"
        case .icmp(let t, let c, let d):
            return "\(type): type \(t) code \(c) data \(d)"
        case .iceControlled(let v), .iceControlling(let v):
            return "\(type): \(v)"
        case .changeRequest(let ip, let port):
            return "\(type): ip=\(ip) port=\(port)"
        }
    }
}
