/// A STUN attribute type, RFC 8489 section 14 and the IANA "STUN Attributes" registry.
///
/// Types 0x0000-0x7FFF are comprehension-required: an agent that does not understand one must
/// reject the request with 420 (Unknown Attribute); 0x8000-0xFFFF are comprehension-optional
/// and may be ignored (RFC 8489 section 14).
public struct AttributeType: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt16

    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// RFC 8489 section 14: types below 0x8000 must be understood.
    public var isComprehensionRequired: Bool { rawValue < 0x8000 }

    // MARK: STUN, RFC 8489 section 18.3

    /// RFC 8489 section 14.1.
    public static let mappedAddress = AttributeType(rawValue: 0x0001)
    /// RFC 8489 section 14.3.
    public static let username = AttributeType(rawValue: 0x0006)
    /// RFC 8489 section 14.5.
    public static let messageIntegrity = AttributeType(rawValue: 0x0008)
    /// RFC 8489 section 14.8.
    public static let errorCode = AttributeType(rawValue: 0x0009)
    /// RFC 8489 section 14.13.
    public static let unknownAttributes = AttributeType(rawValue: 0x000A)
    /// RFC 8489 section 14.9.
    public static let realm = AttributeType(rawValue: 0x0014)
    /// RFC 8489 section 14.10.
    public static let nonce = AttributeType(rawValue: 0x0015)
    /// RFC 8489 section 14.6.
    public static let messageIntegritySHA256 = AttributeType(rawValue: 0x001C)
    /// RFC 8489 section 14.12.
    public static let passwordAlgorithm = AttributeType(rawValue: 0x001D)
    /// RFC 8489 section 14.4.
    public static let userhash = AttributeType(rawValue: 0x001E)
    /// RFC 8489 section 14.2.
    public static let xorMappedAddress = AttributeType(rawValue: 0x0020)
    /// RFC 8489 section 14.11.
    public static let passwordAlgorithms = AttributeType(rawValue: 0x8002)
    /// RFC 8489 section 14.16.
    public static let alternateDomain = AttributeType(rawValue: 0x8003)
    /// RFC 8489 section 14.14.
    public static let software = AttributeType(rawValue: 0x8022)
    /// RFC 8489 section 14.15.
    public static let alternateServer = AttributeType(rawValue: 0x8023)
    /// RFC 8489 section 14.7.
    public static let fingerprint = AttributeType(rawValue: 0x8028)

    // MARK: TURN, RFC 8656 section 18

    /// RFC 8656 section 18.1.
    public static let channelNumber = AttributeType(rawValue: 0x000C)
    /// RFC 8656 section 18.2.
    public static let lifetime = AttributeType(rawValue: 0x000D)
    /// RFC 8656 section 18.3.
    public static let xorPeerAddress = AttributeType(rawValue: 0x0012)
    /// RFC 8656 section 18.4.
    public static let data = AttributeType(rawValue: 0x0013)
    /// RFC 8656 section 18.5.
    public static let xorRelayedAddress = AttributeType(rawValue: 0x0016)
    /// RFC 8656 section 18.6.
    public static let requestedAddressFamily = AttributeType(rawValue: 0x0017)
    /// RFC 8656 section 18.7.
    public static let evenPort = AttributeType(rawValue: 0x0018)
    /// RFC 8656 section 18.8.
    public static let requestedTransport = AttributeType(rawValue: 0x0019)
    /// RFC 8656 section 18.9.
    public static let dontFragment = AttributeType(rawValue: 0x001A)
    /// RFC 8656 section 18.10.
    public static let reservationToken = AttributeType(rawValue: 0x0022)
    /// RFC 8656 section 18.11.
    public static let additionalAddressFamily = AttributeType(rawValue: 0x8000)
    /// RFC 8656 section 18.12.
    public static let addressErrorCode = AttributeType(rawValue: 0x8001)
    /// RFC 8656 section 18.13.
    public static let icmp = AttributeType(rawValue: 0x8004)

    // MARK: TURN TCP, RFC 6062 section 6.2

    /// RFC 6062 section 6.2.1.
    public static let connectionID = AttributeType(rawValue: 0x002A)

    // MARK: NAT behaviour discovery (RFC 5780) and ICE (RFC 8445)

    /// RFC 5780 section 7.2.
    public static let changeRequest = AttributeType(rawValue: 0x0003)
    /// RFC 5780 section 7.3.
    public static let responseOrigin = AttributeType(rawValue: 0x802B)
    /// RFC 5780 section 7.4.
    public static let otherAddress = AttributeType(rawValue: 0x802C)
    /// RFC 8445 section 16.1.
    public static let priority = AttributeType(rawValue: 0x0024)
    /// RFC 8445 section 16.1.
    public static let useCandidate = AttributeType(rawValue: 0x0025)
    /// RFC 8445 section 16.1.
    public static let iceControlled = AttributeType(rawValue: 0x8029)
    /// RFC 8445 section 16.1.
    public static let iceControlling = AttributeType(rawValue: 0x802A)

    /// True for the types this codec decodes into a typed `Attribute` case (everything above, the
    /// ones `registryName` names). A server decides for itself which comprehension-required types it
    /// understands; this is a reasonable `isKnown` for a STUN/TURN server that handles all of them.
    @inline(__always)
    public var isKnown: Bool { registryName != nil }

    /// The IANA registry name of every type this codec knows, e.g. "XOR-MAPPED-ADDRESS"; nil for
    /// the others. The one list of known types: `isKnown` and `description` are read from it.
    public var registryName: StaticString? {
        switch rawValue {
        case 0x0001: return "MAPPED-ADDRESS"
        case 0x0003: return "CHANGE-REQUEST"
        case 0x0006: return "USERNAME"
        case 0x0008: return "MESSAGE-INTEGRITY"
        case 0x0009: return "ERROR-CODE"
        case 0x000A: return "UNKNOWN-ATTRIBUTES"
        case 0x000C: return "CHANNEL-NUMBER"
        case 0x000D: return "LIFETIME"
        case 0x0012: return "XOR-PEER-ADDRESS"
        case 0x0013: return "DATA"
        case 0x0014: return "REALM"
        case 0x0015: return "NONCE"
        case 0x0016: return "XOR-RELAYED-ADDRESS"
        case 0x0017: return "REQUESTED-ADDRESS-FAMILY"
        case 0x0018: return "EVEN-PORT"
        case 0x0019: return "REQUESTED-TRANSPORT"
        case 0x001A: return "DONT-FRAGMENT"
        case 0x001C: return "MESSAGE-INTEGRITY-SHA256"
        case 0x001D: return "PASSWORD-ALGORITHM"
        case 0x001E: return "USERHASH"
        case 0x0020: return "XOR-MAPPED-ADDRESS"
        case 0x0022: return "RESERVATION-TOKEN"
        case 0x0024: return "PRIORITY"
        case 0x0025: return "USE-CANDIDATE"
        case 0x002A: return "CONNECTION-ID"
        case 0x8000: return "ADDITIONAL-ADDRESS-FAMILY"
        case 0x8001: return "ADDRESS-ERROR-CODE"
        case 0x8002: return "PASSWORD-ALGORITHMS"
        case 0x8003: return "ALTERNATE-DOMAIN"
        case 0x8004: return "ICMP"
        case 0x8022: return "SOFTWARE"
        case 0x8023: return "ALTERNATE-SERVER"
        case 0x8028: return "FINGERPRINT"
        case 0x8029: return "ICE-CONTROLLED"
        case 0x802A: return "ICE-CONTROLLING"
        case 0x802B: return "RESPONSE-ORIGIN"
        case 0x802C: return "OTHER-ADDRESS"
        default: return nil
        }
    }

    /// "0x0020"-style hex.
    public var hex: String {
        let s = String(rawValue, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: 4 - s.count) + s
    }
}

extension AttributeType: CustomStringConvertible {
    /// The registry name, e.g. "XOR-MAPPED-ADDRESS"; the hex value for unregistered types.
    public var description: String { registryName.map { "\($0)" } ?? hex }
}
