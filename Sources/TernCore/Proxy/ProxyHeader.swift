import STUN

// The PROXY protocol header a load balancer puts in front of a connection (HAProxy Technologies,
// "The PROXY protocol, Versions 1 & 2", revision 2020/03/05; "the spec" below). Section numbers
// refer to that document.

/// What the parser says about the bytes received so far on a connection.
public enum ProxyHeaderParse: Equatable, Sendable {
    /// Not complete yet, and every byte given is part of the header (the caller may consume them all
    /// and must read more). Only returned while count < ProxyHeader.maxLength.
    case needMore
    /// A complete header occupying the first `length` bytes; anything after it belongs to the connection.
    case complete(ProxyHeader, length: Int)
    /// Not a valid header (or larger than maxLength): close the connection.
    case invalid(ProxyHeaderError)
}

/// Why a header was refused. Section 2.1: "Any sequence which does not exactly match the protocol
/// must be discarded and cause the receiver to abort the connection."
public enum ProxyHeaderError: String, Error, Sendable, Equatable {
    /// The bytes are a prefix of neither the v2 signature nor "PROXY " (section 2.2, version
    /// identification: "otherwise the protocol is not covered by this specification").
    case signature
    /// v2: the version nibble of the 13th byte is not 2 (section 2.2).
    case version
    /// v2: a command other than LOCAL (0) or PROXY (1) (section 2.2).
    case command
    /// v2: an address family other than 0...3; v1: a protocol other than TCP4, TCP6 or UNKNOWN.
    case family
    /// v2: a transport protocol other than 0...2, DGRAM (these are stream listeners), or UNSPEC
    /// with an address family under the PROXY command (section 2.2 lets the receiver reject it).
    case `protocol`
    /// v2: the length field does not cover the family's address block, or the bytes after the
    /// address block are not whole TLVs (section 2.2).
    case length
    /// v1: not the exact spacing and CRLF line end of section 2.1.
    case syntax
    /// v1: an address or port not in the strict textual form of section 2.1.
    case address
    /// Longer than `ProxyHeader.maxLength` (v2), or no CRLF in the first 107 bytes (v1, section 2.1).
    case tooLong
}

/// A parsed PROXY protocol header (versions 1 and 2).
///
/// Decisions where the spec leaves a choice, or where Tern is stricter than many receivers:
/// - v1 (section 2.1): leading zeros are refused in IPv4 octets and in ports, as the spec says
///   ("Heading zeroes are not permitted", "0" itself is fine); IPv6 groups have 1 to 4 hex digits of
///   either case, so "0db8" is fine, with at most one "::" and an optional dotted IPv4 tail
///   ("::ffff:192.0.2.1", what inet_ntop writes). "PROXY UNKNOWN" may be followed by anything up
///   to the CRLF, which is ignored as the spec requires.
/// - v2 (section 2.2): LOCAL ignores the family byte's meaning (any defined family and protocol,
///   DGRAM included, since "the receiver must ... discard the protocol block including the family")
///   and skips `length` bytes unread. Under PROXY, AF_INET/AF_INET6/AF_UNIX need STREAM, AF_UNSPEC
///   takes UNSPEC or STREAM and is accepted without addresses; DGRAM is refused.
/// - TLVs (section 2.2, "pp2_tlv"): under PROXY with a known address block, the bytes between the
///   address block and the end of the header must be whole TLVs (3-byte header, value inside the
///   declared length), otherwise `.length`; their contents are not interpreted and PP2_TYPE_CRC32C
///   is not verified (section 2.2.3 obliges only receivers that support it). After AF_UNSPEC and
///   under LOCAL the block's structure is unknown and it is skipped unread.
public struct ProxyHeader: Equatable, Sendable {
    public enum Version: Sendable, Equatable { case v1, v2 }
    public var version: Version
    /// The original client (source) and the address it connected to (destination), or nil when the
    /// header says to use the connection's own addresses: v1 "PROXY UNKNOWN", v2 LOCAL command,
    /// v2 AF_UNSPEC or AF_UNIX.
    public var source: TransportAddress?
    public var destination: TransportAddress?

    public init(version: Version, source: TransportAddress?, destination: TransportAddress?) {
        self.version = version
        self.source = source
        self.destination = destination
    }

    /// The largest header accepted, in bytes (v2: 16-byte preamble + address block + TLVs).
    /// Section 2 designs both formats to fit the 536-byte minimum TCP segment, but TLVs (section
    /// 2.2.1 to 2.2.7: ALPN, authority, a 128-byte unique ID, TLS details) may take v2 past it;
    /// 1024 leaves room for those, bounds the per-connection buffer, and is above the largest
    /// address block (16 + 216 for AF_UNIX). v1 lines are further limited to 107 (section 2.1).
    public static let maxLength: Int = 1024

    /// Section 2.1: "If the CRLF sequence is not found in the first 107 characters, the receiver
    /// should declare the line invalid."
    static let maxV1Length: Int = 107

    /// Parses the start of a connection's bytes. Allocation-free; never reads past `bytes.count`.
    ///
    /// Incremental (section 2: a header may arrive in several reads, and nothing may be processed
    /// before it is complete): `.needMore` is answered only for a prefix of some valid header, so
    /// bytes that can no longer become one are refused at the first byte that shows it (a TLS
    /// ClientHello's 0x16 or a STUN message's 0x00 at the first byte).
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> ProxyHeaderParse {
        guard bytes.count > 0 else { return .needMore }
        switch bytes[0] {
        case 0x0D: return parseV2(bytes)
        case UInt8(ascii: "P"): return parseV1(bytes)
        default: return .invalid(.signature)
        }
    }
}

// MARK: - Version 2 (section 2.2)

extension ProxyHeader {
    /// Section 2.2: "\x0D \x0A \x0D \x0A \x00 \x0D \x0A \x51 \x55 \x49 \x54 \x0A".
    static let v2Signature: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)
        = (0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A)

    static func parseV2(_ b: UnsafeRawBufferPointer) -> ProxyHeaderParse {
        let signatureBytes = Swift.min(b.count, 12)
        let matches = withUnsafeBytes(of: v2Signature) { sig in
            for k in 0..<signatureBytes where b[k] != sig[k] { return false }
            return true
        }
        guard matches else { return .invalid(.signature) }
        guard b.count > 12 else { return .needMore }
        // 13th byte: version (high nibble, must be 2) and command (0 LOCAL, 1 PROXY).
        guard b[12] >> 4 == 2 else { return .invalid(.version) }
        let command = b[12] & 0x0F
        guard command <= 1 else { return .invalid(.command) }
        guard b.count > 13 else { return .needMore }
        // 14th byte: address family (high nibble) and transport protocol (low nibble).
        let family = b[13] >> 4, transport = b[13] & 0x0F
        guard family <= 3 else { return .invalid(.family) }
        guard transport <= 2 else { return .invalid(.protocol) }
        let isProxy = command == 1
        var block = 0
        if isProxy {
            guard transport != 2 else { return .invalid(.protocol) }
            guard transport == 1 || family == 0 else { return .invalid(.protocol) }
            // Address lengths: 2*4 + 2*2 for AF_INET, 2*16 + 2*2 for AF_INET6, 2*108 for AF_UNIX.
            block = family == 1 ? 12 : family == 2 ? 36 : family == 3 ? 216 : 0
        }
        guard b.count > 15 else { return .needMore }
        // 15th and 16th bytes: the number of bytes after the 16-byte preamble, network order.
        let total = 16 + (Int(b[14]) << 8 | Int(b[15]))
        guard total <= maxLength else { return .invalid(.tooLong) }
        guard total - 16 >= block else { return .invalid(.length) }
        guard b.count >= total else { return .needMore }
        // LOCAL: "use the real connection endpoints and discard the protocol block"; AF_UNSPEC:
        // "the receiver should ignore address information".
        guard isProxy, family != 0 else {
            return .complete(ProxyHeader(version: .v2, source: nil, destination: nil), length: total)
        }
        guard tlvsAreWhole(b, from: 16 + block, to: total) else { return .invalid(.length) }
        let header: ProxyHeader
        switch family {
        case 1:
            let src = IPAddress.v4(load(b, 16, UInt32.self)), dst = IPAddress.v4(load(b, 20, UInt32.self))
            header = ProxyHeader(version: .v2, source: TransportAddress(ip: src, port: load(b, 24, UInt16.self)),
                                 destination: TransportAddress(ip: dst, port: load(b, 26, UInt16.self)))
        case 2:
            let src = IPAddress.v6(load(b, 16, UInt64.self), load(b, 24, UInt64.self))
            let dst = IPAddress.v6(load(b, 32, UInt64.self), load(b, 40, UInt64.self))
            header = ProxyHeader(version: .v2, source: TransportAddress(ip: src, port: load(b, 48, UInt16.self)),
                                 destination: TransportAddress(ip: dst, port: load(b, 50, UInt16.self)))
        default:
            // AF_UNIX: two 108-byte socket paths, which are no transport address.
            header = ProxyHeader(version: .v2, source: nil, destination: nil)
        }
        return .complete(header, length: total)
    }

    /// A network-order integer at `offset` (the caller has checked the bounds).
    static func load<T: FixedWidthInteger>(_ b: UnsafeRawBufferPointer, _ offset: Int, _: T.Type) -> T {
        T(bigEndian: b.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// Section 2.2: each TLV is a type byte, a 2-byte network-order length and that many value
    /// bytes; `b[start..<end]` must split into them exactly.
    static func tlvsAreWhole(_ b: UnsafeRawBufferPointer, from start: Int, to end: Int) -> Bool {
        var offset = start
        while offset < end {
            guard end - offset >= 3 else { return false }
            let valueLength = Int(b[offset + 1]) << 8 | Int(b[offset + 2])
            guard end - offset - 3 >= valueLength else { return false }
            offset += 3 + valueLength
        }
        return true
    }
}

// MARK: - Version 1 (section 2.1)

extension ProxyHeader {
    static func parseV1(_ b: UnsafeRawBufferPointer) -> ProxyHeaderParse {
        var line = V1Scanner(b)
        do throws(V1Scanner.Stop) {
            for c in "PROXY ".utf8 { try line.expect(c, .signature) }
            // The protocol and family: "TCP4", "TCP6" or "UNKNOWN".
            let isV6: Bool
            switch try line.next() {
            case UInt8(ascii: "T"):
                try line.expect(UInt8(ascii: "C"), .family)
                try line.expect(UInt8(ascii: "P"), .family)
                switch try line.next() {
                case UInt8(ascii: "4"): isV6 = false
                case UInt8(ascii: "6"): isV6 = true
                default: throw .invalid(.family)
                }
            case UInt8(ascii: "U"):
                for c in "NKNOWN".utf8 { try line.expect(c, .family) }
                // "the receiver must ignore anything presented before the CRLF is found".
                return .complete(ProxyHeader(version: .v1, source: nil, destination: nil), length: try line.skipLine())
            default:
                throw .invalid(.family)
            }
            try line.separator(.syntax)
            let source = isV6 ? try line.ipv6() : .v4(try line.dottedQuad())
            try line.separator(.address)
            let destination = isV6 ? try line.ipv6() : .v4(try line.dottedQuad())
            try line.separator(.address)
            let sourcePort = try line.decimal(max: 65_535)
            try line.separator(.address)
            let destinationPort = try line.decimal(max: 65_535)
            try line.expect(UInt8(ascii: "\r"), .syntax)
            try line.expect(UInt8(ascii: "\n"), .syntax)
            let header = ProxyHeader(version: .v1,
                                     source: TransportAddress(ip: source, port: UInt16(sourcePort)),
                                     destination: TransportAddress(ip: destination, port: UInt16(destinationPort)))
            return .complete(header, length: line.position)
        } catch {
            switch error {
            case .needMore: return .needMore
            case .invalid(let reason): return .invalid(reason)
            }
        }
    }

    static let space = UInt8(ascii: " ")
}

/// A cursor over the first 107 bytes of a v1 line. Running out of bytes is `.needMore` while fewer
/// than 107 have arrived and `.invalid(.tooLong)` after that, so each rule below refuses a byte only
/// when no valid line can continue the bytes before it. Typed throws, so nothing is boxed (only a
/// `swift_willThrow` hook, which swift-testing installs to record backtraces, allocates per throw).
struct V1Scanner {
    enum Stop: Error { case needMore, invalid(ProxyHeaderError) }

    private let bytes: UnsafeRawBufferPointer
    private let end: Int
    private(set) var position = 0

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        self.end = Swift.min(bytes.count, ProxyHeader.maxV1Length)
    }

    private var exhausted: Stop { bytes.count >= ProxyHeader.maxV1Length ? .invalid(.tooLong) : .needMore }

    func peek() throws(Stop) -> UInt8 {
        guard position < end else { throw exhausted }
        return bytes[position]
    }

    mutating func next() throws(Stop) -> UInt8 {
        let c = try peek()
        position += 1
        return c
    }

    mutating func expect(_ c: UInt8, _ reason: ProxyHeaderError) throws(Stop) {
        guard try peek() == c else { throw .invalid(reason) }
        position += 1
    }

    /// Exactly one space between fields: `reason` when there is none, `.syntax` for a second one.
    mutating func separator(_ reason: ProxyHeaderError) throws(Stop) {
        try expect(ProxyHeader.space, reason)
        guard try peek() != ProxyHeader.space else { throw .invalid(.syntax) }
    }

    /// Skips to the end of an UNKNOWN line; the length including the CRLF. A LF that does not
    /// follow a CR ends the line too, and is refused (section 2.1: no single CR or LF).
    mutating func skipLine() throws(Stop) -> Int {
        while true {
            if try next() == UInt8(ascii: "\n") {
                guard bytes[position - 2] == UInt8(ascii: "\r") else { throw .invalid(.syntax) }
                return position
            }
        }
    }

    /// 1 to 5 decimal digits up to `max`, without leading zeros or sign (section 2.1); stops before
    /// the first byte that is not a digit.
    mutating func decimal(max: Int) throws(Stop) -> Int {
        var value = 0, digits = 0
        while true {
            let c = try peek()
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { break }
            guard digits == 0 || value != 0 else { throw .invalid(.address) }  // a leading zero
            value = value * 10 + Int(c - UInt8(ascii: "0"))
            guard value <= max else { throw .invalid(.address) }
            digits += 1
            position += 1
        }
        guard digits > 0 else { throw .invalid(.address) }
        return value
    }

    /// Four decimal octets separated by single dots (section 2.1).
    mutating func dottedQuad() throws(Stop) -> UInt32 {
        var value: UInt32 = 0
        for octet in 0..<4 {
            if octet > 0 { try expect(UInt8(ascii: "."), .address) }
            value = value << 8 | UInt32(try decimal(max: 255))
        }
        return value
    }

    /// Groups of 1 to 4 hex digits separated by colons, at most one "::" standing for one or more
    /// zero groups, and optionally a dotted IPv4 tail as the last two groups; 128 bits exactly
    /// (section 2.1). Stops before the first byte that cannot continue the address.
    mutating func ipv6() throws(Stop) -> IPAddress {
        var head = Bits128(), tail = Bits128()
        var groups = 0, headGroups = 0
        var compressed = false, needGroup = true
        if try peek() == UInt8(ascii: ":") {
            position += 1
            try expect(UInt8(ascii: ":"), .address)
            compressed = true
            needGroup = false
        }
        while true {
            guard let first = Self.hexValue(try peek()) else {
                guard !needGroup else { throw .invalid(.address) }
                break
            }
            let start = position
            var group = UInt16(first), digits = 1
            position += 1
            while let h = Self.hexValue(try peek()) {
                digits += 1
                guard digits <= 4 else { throw .invalid(.address) }
                group = group << 4 | UInt16(h)
                position += 1
            }
            let limit = compressed ? 7 : 8
            if try peek() == UInt8(ascii: ".") {
                // The group was the first octet of an IPv4 tail, the address's last 32 bits.
                guard groups + 2 <= limit else { throw .invalid(.address) }
                position = start
                let v4 = try dottedQuad()
                let high = UInt16(truncatingIfNeeded: v4 >> 16), low = UInt16(truncatingIfNeeded: v4)
                if compressed { tail.push(high); tail.push(low) } else { head.push(high); head.push(low); headGroups += 2 }
                groups += 2
                break
            }
            groups += 1
            guard groups <= limit else { throw .invalid(.address) }
            if compressed { tail.push(group) } else { head.push(group); headGroups += 1 }
            guard try peek() == UInt8(ascii: ":") else { break }
            position += 1
            if try peek() == UInt8(ascii: ":") {
                guard !compressed, groups < 8 else { throw .invalid(.address) }
                position += 1
                compressed = true
                needGroup = false
            } else {
                guard groups < limit else { throw .invalid(.address) }
                needGroup = true
            }
        }
        guard compressed || groups == 8 else { throw .invalid(.address) }
        // The head, then the zero groups "::" stands for, then the tail.
        for _ in headGroups..<8 { head.push(0) }
        return .v6(head.high | tail.high, head.low | tail.low)
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// A 128-bit value built 16 bits at a time from the left, as IPv6 text is read.
struct Bits128 {
    var high: UInt64 = 0
    var low: UInt64 = 0

    mutating func push(_ group: UInt16) {
        high = high << 16 | low >> 48
        low = low << 16 | UInt64(group)
    }
}
