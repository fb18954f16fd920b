/// The class of a STUN message, RFC 8489 section 5 (the C1 C0 bits of the message type).
public enum MessageClass: UInt8, Hashable, Sendable, CaseIterable {
    case request = 0b00
    case indication = 0b01
    case successResponse = 0b10
    case errorResponse = 0b11
}

extension MessageClass: CustomStringConvertible {
    public var description: String {
        switch self {
        case .request: return "request"
        case .indication: return "indication"
        case .successResponse: return "success response"
        case .errorResponse: return "error response"
        }
    }
}

/// A STUN method: 12 bits, RFC 8489 section 5 and the IANA "STUN Methods" registry.
public struct Method: RawRepresentable, Hashable, Sendable {
    /// The 12-bit method number (bits above 0x0FFF are dropped when encoded).
    public var rawValue: UInt16

    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// RFC 8489 section 18.2.
    public static let binding = Method(rawValue: 0x001)
    /// RFC 8656 section 17.
    public static let allocate = Method(rawValue: 0x003)
    public static let refresh = Method(rawValue: 0x004)
    public static let send = Method(rawValue: 0x006)
    public static let data = Method(rawValue: 0x007)
    public static let createPermission = Method(rawValue: 0x008)
    public static let channelBind = Method(rawValue: 0x009)
    /// RFC 6062 section 6.1 (TURN TCP allocations).
    public static let connect = Method(rawValue: 0x00A)
    public static let connectionBind = Method(rawValue: 0x00B)
    public static let connectionAttempt = Method(rawValue: 0x00C)
}

extension Method: CustomStringConvertible {
    public var description: String {
        switch rawValue {
        case 0x001: return "Binding"
        case 0x003: return "Allocate"
        case 0x004: return "Refresh"
        case 0x006: return "Send"
        case 0x007: return "Data"
        case 0x008: return "CreatePermission"
        case 0x009: return "ChannelBind"
        case 0x00A: return "Connect"
        case 0x00B: return "ConnectionBind"
        case 0x00C: return "ConnectionAttempt"
        default: return "Method(0x" + String(rawValue, radix: 16, uppercase: true) + ")"
        }
    }
}

/// The 14-bit STUN message type: a method and a class interleaved, RFC 8489 section 5:
///
///     0                 1
///     2  3  4 5 6 7 8 9 0 1 2 3 4 5
///    +--+--+-+-+-+-+-+-+-+-+-+-+-+-+
///    |M |M |M|M|M|C|M|M|M|C|M|M|M|M|
///    |11|10|9|8|7|1|6|5|4|0|3|2|1|0|
///    +--+--+-+-+-+-+-+-+-+-+-+-+-+-+
public struct MessageType: Hashable, Sendable {
    public var method: Method
    public var messageClass: MessageClass

    public init(method: Method, class messageClass: MessageClass) {
        self.method = method
        self.messageClass = messageClass
    }

    /// Decodes the 16-bit type field. The two most significant bits (always zero in STUN) are ignored.
    public init(rawValue: UInt16) {
        let m = (rawValue & 0x000F) | ((rawValue & 0x00E0) >> 1) | ((rawValue & 0x3E00) >> 2)
        let c = ((rawValue >> 4) & 0b01) | ((rawValue >> 7) & 0b10)
        method = Method(rawValue: m)
        // c is 0...3, so the enum always exists; fall back rather than force-unwrap.
        messageClass = MessageClass(rawValue: UInt8(truncatingIfNeeded: c)) ?? .request
    }

    /// The 16-bit type field (top two bits zero).
    public var rawValue: UInt16 {
        let m = method.rawValue & 0x0FFF
        let c = UInt16(messageClass.rawValue)
        return (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 0b01) << 4) | ((c & 0b10) << 7)
    }

    public static let bindingRequest = MessageType(method: .binding, class: .request)
    public static let bindingSuccess = MessageType(method: .binding, class: .successResponse)
    public static let bindingError = MessageType(method: .binding, class: .errorResponse)
    public static let bindingIndication = MessageType(method: .binding, class: .indication)

    /// The success response type for this request type (RFC 8489 section 6.3.1: same method).
    public var successResponse: MessageType { MessageType(method: method, class: .successResponse) }
    /// The error response type for this request type (RFC 8489 section 6.3.1: same method).
    public var errorResponse: MessageType { MessageType(method: method, class: .errorResponse) }
}

extension MessageType: CustomStringConvertible {
    public var description: String { "\(method) \(messageClass)" }
}
