import STUN

/// A node of a fleet (`cluster`): where Allocate requests go once this node is full, and the number
/// of live allocations at which it starts sending them there. TURN allocations cannot move between
/// nodes, so a fleet steers new ones: RFC 8656 section 7.2 lets a server answer Allocate with
/// 300 Try Alternate and ALTERNATE-SERVER (RFC 8489 section 10); a client that follows it allocates on
/// the alternate instead.
public struct ClusterConfig: Sendable, Equatable {
    /// The other nodes, tried in turn (round robin), only those of the client's address family:
    /// RFC 8489 section 14.15 wants ALTERNATE-SERVER in the family of the request's source.
    public var alternateServers: [AlternateServer] = []
    /// Live allocations at which Allocate is redirected and `/readyz` answers 503; nil takes
    /// `limits.allocationsTotal`.
    public var capacity: Int?
    /// The secret the fleet's nonce key is derived from (`cluster.nonceSecret`); nil takes the first
    /// `auth.secrets` entry when there are alternates (`nonceKey`).
    public var nonceSecret: String?

    public init(alternateServers: [AlternateServer] = [], capacity: Int? = nil, nonceSecret: String? = nil) {
        self.alternateServers = alternateServers
        self.capacity = capacity
        self.nonceSecret = nonceSecret
    }

    /// The key every node of the fleet signs its nonces with (RFC 8489 section 9.2: the server
    /// chooses how nonces are made), or nil for a key of this process alone. A client redirected by
    /// 300 Try Alternate sends its next Allocate to the alternate with the nonce it got here (RFC
    /// 8489 section 10 keeps the credentials; libwebrtc keeps the nonce too and gives up on the 438 a
    /// foreign nonce earns), so the nodes must accept each other's nonces: they share the key,
    /// derived with HMAC-SHA256 from `nonceSecret`, else from the first shared REST secret once
    /// there are alternates. Nonces stay bound to the client's address and expire as before.
    public func nonceKey(auth: AuthConfig) -> [UInt8]? {
        guard let secret = nonceSecret ?? (alternateServers.isEmpty ? nil : auth.secrets.first) else { return nil }
        return HMAC.sha256(key: Array(secret.utf8), data: Array("tern cluster nonce key 1".utf8))
    }

    /// The capacity in force: `capacity`, else `limits.allocationsTotal`; 0 is none. A capacity above
    /// a non-zero `allocationsTotal` is taken as `allocationsTotal`: past it Allocate would get 508,
    /// so the node redirects there instead.
    public func effectiveCapacity(_ limits: LimitsConfig) -> Int {
        guard let capacity else { return limits.allocationsTotal }
        guard capacity > 0, limits.allocationsTotal > 0 else { return capacity }
        return min(capacity, limits.allocationsTotal)
    }

    /// The alternates of `family`, in configured order.
    public func alternates(_ family: AddressFamily) -> [AlternateServer] {
        alternateServers.filter { $0.address.ip.family == family }
    }
}

/// One `cluster.alternateServers` entry: `"IP:port"` or `"IP:port#domain"`. The domain, when given,
/// is sent as ALTERNATE-DOMAIN (RFC 8489 section 14.16) over TLS and DTLS, so that a client can check
/// the alternate's certificate against the name it expects rather than an IP address.
public struct AlternateServer: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var address: TransportAddress
    public var domain: String?

    public init(address: TransportAddress, domain: String? = nil) {
        self.address = address
        self.domain = domain
    }

    /// Parses `"192.0.2.20:3478"`, `"[2001:db8::20]:3478"` or either with `#turn2.example.com`.
    /// The address is concrete with a non-zero port; the domain is a DNS name (letters, digits,
    /// hyphens, dots; labels of 1-63 characters, at most 253 in all, within ALTERNATE-DOMAIN's
    /// 255 bytes).
    public init?(_ text: String) {
        let parts = text.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = TransportAddress(String(parts[0])), address.port != 0, !address.ip.isUnspecified else { return nil }
        var domain: String? = nil
        if parts.count == 2 {
            let name = String(parts[1])
            guard Self.isDomainName(name) else { return nil }
            domain = name
        }
        self.init(address: address, domain: domain)
    }

    static func isDomainName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= 253 else { return false }
        for label in bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            guard (1...63).contains(label.count), label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-") else { return false }
            for b in label where !(b >= 0x30 && b <= 0x39) && !(b >= 0x41 && b <= 0x5A) && !(b >= 0x61 && b <= 0x7A) && b != 0x2D {
                return false
            }
        }
        return true
    }

    public var description: String { domain.map { "\(address)#\($0)" } ?? "\(address)" }
}

/// PROXY protocol on a `tcp` or `tls` listener (`listeners[].proxyProtocol`): a load balancer in
/// front (HAProxy `send-proxy-v2`, nginx `proxy_protocol on`) opens each connection with a header
/// naming the client it carries (HAProxy's "The PROXY protocol", versions 1 and 2). Only sources in
/// `trusted` may send it; a connection from anywhere else is refused.
public struct ProxyProtocolConfig: Sendable, Equatable, Hashable {
    /// Where the proxies connect from. Never empty.
    public var trusted: [CIDR]

    public init(trusted: [CIDR]) { self.trusted = trusted }

    public func trusts(_ ip: IPAddress) -> Bool { trusted.contains { $0.contains(ip) } }
}
