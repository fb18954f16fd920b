import STUN

/// An IPv4 or IPv6 prefix such as `10.0.0.0/8` or `2001:db8::/32`.
///
/// A bare address is a host route (`/32` or `/128`). Host bits below the prefix are accepted and
/// cleared, so `10.1.2.3/8` is the same value as `10.0.0.0/8` (and prints as such).
/// An IPv4 prefix never contains an IPv6 address and vice versa (including IPv4-mapped IPv6).
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    /// The network address, with host bits cleared.
    public private(set) var address: IPAddress
    /// 0...32 for IPv4, 0...128 for IPv6.
    public private(set) var prefixLength: Int

    /// Builds a prefix from an address and a length; nil if the length is out of range for the family.
    public init?(address: IPAddress, prefixLength: Int) {
        let maxLength = address.family == .ipv4 ? 32 : 128
        guard prefixLength >= 0, prefixLength <= maxLength else { return nil }
        self.prefixLength = prefixLength
        self.address = CIDR.mask(address, prefixLength)
    }

    /// Parses `ADDRESS/LENGTH` or a bare `ADDRESS`. The length is decimal digits only, no sign,
    /// no leading zeros. Returns nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let ip = IPAddress(String(parts[0])) else { return nil }
        var length = ip.family == .ipv4 ? 32 : 128
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.count <= 3, digits.allSatisfy({ $0 >= "0" && $0 <= "9" }),
                  !(digits.count > 1 && digits.first == "0"), let n = Int(digits) else { return nil }
            length = n
        }
        self.init(address: ip, prefixLength: length)
    }

    public var description: String { "\(address)/\(prefixLength)" }

    /// True when `ip` is of the same family and its first `prefixLength` bits match.
    public func contains(_ ip: IPAddress) -> Bool {
        guard ip.family == address.family else { return false }
        return CIDR.mask(ip, prefixLength) == address
    }

    static func mask(_ ip: IPAddress, _ length: Int) -> IPAddress {
        switch ip {
        case .v4(let a):
            let m: UInt32 = length == 0 ? 0 : ~UInt32(0) << UInt32(32 - length)
            return .v4(a & m)
        case .v6(let h, let l):
            let mh: UInt64 = length >= 64 ? ~0 : (length == 0 ? 0 : ~UInt64(0) << UInt64(64 - length))
            let ml: UInt64 = length <= 64 ? 0 : (length == 128 ? ~0 : ~UInt64(0) << UInt64(128 - length))
            return .v6(h & mh, l & ml)
        }
    }
}
