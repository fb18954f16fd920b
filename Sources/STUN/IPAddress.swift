/// An IPv4 or IPv6 address held by value, without allocation.
///
/// IPv4 is kept as a host-order `UInt32` (127.0.0.1 == 0x7F00_0001); IPv6 as two host-order
/// `UInt64` halves of the 128-bit big-endian value. This is the address form the STUN address
/// attributes carry (RFC 8489 section 14.1), and the one the rest of Tern keys tables by.
public enum IPAddress: Hashable, Sendable {
    case v4(UInt32)
    case v6(UInt64, UInt64)

    /// RFC 8489 section 14.1: family 0x01 is IPv4, 0x02 is IPv6.
    public var family: AddressFamily { switch self { case .v4: return .ipv4; case .v6: return .ipv6 } }

    public static let anyV4 = IPAddress.v4(0)
    public static let anyV6 = IPAddress.v6(0, 0)
    public static let loopbackV4 = IPAddress.v4(0x7F00_0001)
    public static let loopbackV6 = IPAddress.v6(0, 1)

    /// True for 0.0.0.0 and ::.
    /// 127.0.0.0/8 or ::1.
    public var isLoopback: Bool {
        switch self {
        case .v4(let a): return a >> 24 == 127
        case .v6(let hi, let lo): return hi == 0 && lo == 1
        }
    }

    public var isUnspecified: Bool {
        switch self {
        case .v4(let a): return a == 0
        case .v6(let h, let l): return h == 0 && l == 0
        }
    }

    /// The 4 or 16 bytes in network order.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        withBytes { out.append(contentsOf: $0) }
        return out
    }

    /// Calls `body` with the address bytes in network order, without allocating.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch self {
        case .v4(let a):
            var be = a.bigEndian
            return try withUnsafeBytes(of: &be) { try body($0) }
        case .v6(let h, let l):
            var pair = (h.bigEndian, l.bigEndian)
            return try withUnsafeBytes(of: &pair) { try body($0) }
        }
    }

    /// Builds an address from 4 or 16 network-order bytes; nil for any other count.
    public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        if bytes.count == 4 {
            var v: UInt32 = 0
            for b in bytes { v = v << 8 | UInt32(b) }
            self = .v4(v)
        } else if bytes.count == 16 {
            var h: UInt64 = 0, l: UInt64 = 0
            var i = 0
            for b in bytes {
                if i < 8 { h = h << 8 | UInt64(b) } else { l = l << 8 | UInt64(b) }
                i += 1
            }
            self = .v6(h, l)
        } else {
            return nil
        }
    }

    /// Parses dotted-quad IPv4 or RFC 4291 section 2.2 IPv6 text (with `::` and an embedded IPv4 tail).
    /// Returns nil for anything else; never traps.
    public init?(_ text: String) {
        if let v4 = IPAddress.parseV4(Substring(text)) {
            self = .v4(v4)
        } else if let v6 = IPAddress.parseV6(Substring(text)) {
            self = .v6(v6.0, v6.1)
        } else {
            return nil
        }
    }

    static func parseV4(_ s: Substring) -> UInt32? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0 >= "0" && $0 <= "9" }),
                  let n = UInt32(p), n <= 255 else { return nil }
            // Reject leading zeros ("01"): they are octal in some parsers and ambiguous.
            if p.count > 1 && p.first == "0" { return nil }
            v = v << 8 | n
        }
        return v
    }

    static func parseV6(_ s: Substring) -> (UInt64, UInt64)? {
        guard s.count >= 2, s.count <= 45 else { return nil }
        var groups: [UInt16] = []
        var tailGroups: [UInt16] = []
        var seenDouble = false
        // Split around "::", which may appear at most once.
        let text = String(s)
        var halves: [String] = [text]
        if let r = text.firstRange(of: "::") {
            let head = String(text[..<r.lowerBound]), tail = String(text[r.upperBound...])
            guard !tail.contains("::"), !tail.hasPrefix(":"), !head.hasSuffix(":") else { return nil }
            halves = [head, tail]
            seenDouble = true
        }
        func parseGroups(_ part: String, allowV4Tail: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out: [UInt16] = []
            let items = part.split(separator: ":", omittingEmptySubsequences: false)
            for (i, item) in items.enumerated() {
                if allowV4Tail && i == items.count - 1 && item.contains(".") {
                    guard let v4 = parseV4(item) else { return nil }
                    out.append(UInt16(v4 >> 16))
                    out.append(UInt16(v4 & 0xFFFF))
                } else {
                    // All hex digits: `UInt16(_:radix:)` alone would also take a sign ("+1", "-0").
                    guard !item.isEmpty, item.count <= 4, item.allSatisfy(\.isHexDigit),
                          let g = UInt16(item, radix: 16) else { return nil }
                    out.append(g)
                }
            }
            return out
        }
        if seenDouble {
            guard let a = parseGroups(halves[0], allowV4Tail: false),
                  let b = parseGroups(halves[1], allowV4Tail: true) else { return nil }
            groups = a
            tailGroups = b
            guard groups.count + tailGroups.count <= 7 else { return nil }
            groups += [UInt16](repeating: 0, count: 8 - groups.count - tailGroups.count) + tailGroups
        } else {
            guard let a = parseGroups(halves[0], allowV4Tail: true), a.count == 8 else { return nil }
            groups = a
        }
        var h: UInt64 = 0, l: UInt64 = 0
        for i in 0..<4 { h = h << 16 | UInt64(groups[i]) }
        for i in 4..<8 { l = l << 16 | UInt64(groups[i]) }
        return (h, l)
    }
}

extension IPAddress: CustomStringConvertible {
    /// Dotted quad for IPv4; RFC 5952 canonical text for IPv6 (lower case, longest zero run as `::`).
    public var description: String {
        switch self {
        case .v4(let a):
            return "\(a >> 24).\(a >> 16 & 0xFF).\(a >> 8 & 0xFF).\(a & 0xFF)"
        case .v6(let h, let l):
            // RFC 5952 section 5: IPv4-mapped addresses in mixed notation, "::ffff:192.0.2.1".
            if h == 0, l >> 32 == 0xFFFF {
                return "::ffff:" + IPAddress.v4(UInt32(truncatingIfNeeded: l)).description
            }
            var g = [UInt16](repeating: 0, count: 8)
            for i in 0..<4 { g[i] = UInt16(truncatingIfNeeded: h >> (48 - 16 * UInt64(i))) }
            for i in 0..<4 { g[4 + i] = UInt16(truncatingIfNeeded: l >> (48 - 16 * UInt64(i))) }
            // Longest run of zero groups, length >= 2 (RFC 5952 section 4.2.2), first one on ties.
            var bestStart = -1, bestLen = 0, i = 0
            while i < 8 {
                if g[i] == 0 {
                    var j = i
                    while j < 8 && g[j] == 0 { j += 1 }
                    if j - i > bestLen && j - i >= 2 { bestStart = i; bestLen = j - i }
                    i = j
                } else { i += 1 }
            }
            var s = ""
            var k = 0
            while k < 8 {
                if k == bestStart {
                    s += "::"
                    k += bestLen
                    continue
                }
                if !s.isEmpty && !s.hasSuffix(":") { s += ":" }
                s += String(g[k], radix: 16)
                k += 1
            }
            return s
        }
    }
}

/// RFC 8489 section 14.1 address family codes.
public enum AddressFamily: UInt8, Sendable {
    case ipv4 = 0x01
    case ipv6 = 0x02
}

/// An IP address and a port: one end of a 5-tuple, and the value of every STUN address attribute.
public struct TransportAddress: Hashable, Sendable {
    public var ip: IPAddress
    public var port: UInt16

    public init(ip: IPAddress, port: UInt16) {
        self.ip = ip
        self.port = port
    }

    /// Parses "1.2.3.4:5" or "[::1]:5".
    public init?(_ text: String) {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":"), let port = TransportAddress.parsePort(rest.dropFirst()),
                  let ip = IPAddress(host), ip.family == .ipv6 else { return nil }
            self.init(ip: ip, port: port)
        } else {
            guard let colon = text.lastIndex(of: ":"),
                  let ip = IPAddress(String(text[..<colon])), ip.family == .ipv4,
                  let port = TransportAddress.parsePort(text[text.index(after: colon)...]) else { return nil }
            self.init(ip: ip, port: port)
        }
    }

    /// 1 to 5 decimal digits, 0...65535 (no sign, which `UInt16(_:)` alone would accept).
    static func parsePort(_ s: Substring) -> UInt16? {
        guard !s.isEmpty, s.count <= 5, s.allSatisfy({ $0 >= "0" && $0 <= "9" }) else { return nil }
        return UInt16(s)
    }
}

extension TransportAddress: CustomStringConvertible {
    public var description: String {
        switch ip {
        case .v4: return "\(ip):\(port)"
        case .v6: return "[\(ip)]:\(port)"
        }
    }
}
