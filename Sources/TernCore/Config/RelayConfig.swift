import STUN

/// Where relayed transport addresses are allocated (TURN, RFC 8656).
public struct RelayConfig: Sendable, Equatable {
    /// Local IPv4 address relay sockets bind to; nil or 0.0.0.0 lets the server pick.
    public var ipv4: IPAddress?
    /// Local IPv6 address relay sockets bind to; nil or :: lets the server pick.
    public var ipv6: IPAddress?
    /// Public IPv4 address advertised in XOR-RELAYED-ADDRESS when behind 1:1 NAT; never unspecified.
    public var externalIPv4: IPAddress?
    /// Public IPv6 address advertised in XOR-RELAYED-ADDRESS; never unspecified.
    public var externalIPv6: IPAddress?
    /// Relay ports; 1024 <= lowerBound <= upperBound <= 65535.
    public var portRange: ClosedRange<UInt16>
    /// STUN servers asked, in order, for the public address in front of the relay
    /// (`relay.discoverExternal`); empty: no discovery. An explicit `externalIPv4/6` wins.
    public var discoverExternal: [StunServerName] = []

    public static let defaultPortRange: ClosedRange<UInt16> = 49152...65535

    public init(ipv4: IPAddress? = nil, ipv6: IPAddress? = nil,
                externalIPv4: IPAddress? = nil, externalIPv6: IPAddress? = nil,
                portRange: ClosedRange<UInt16> = RelayConfig.defaultPortRange) {
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.externalIPv4 = externalIPv4
        self.externalIPv6 = externalIPv6
        self.portRange = portRange
    }
}

extension RelayConfig {
    /// What a reload cannot change (relay sockets are bound with it): everything but the
    /// discovery servers, which a reload asks again.
    public var restartOnly: RelayConfig {
        var c = self
        c.discoverExternal = []
        return c
    }
}

/// A STUN server named by host (a DNS name or an IP literal) and port: `"stun.example.com:3478"`,
/// `"192.0.2.1:3478"`, `"[2001:db8::1]:3478"`; the port defaults to 3478 (RFC 8489 section 6).
/// The name is resolved when it is used, not when the config is read.
public struct StunServerName: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST[:PORT]`; nil for anything else (an empty host, a bad port, characters a DNS
    /// name cannot hold, an IPv6 literal without brackets).
    public init?(_ text: String) {
        var host = Substring(text)
        var port: UInt16 = 3478
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let literal = host[host.index(after: host.startIndex)..<close]
            guard let ip = IPAddress(String(literal)), ip.family == .ipv6 else { return nil }
            let rest = host[host.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let p = UInt16(rest.dropFirst()), p != 0 else { return nil }
                port = p
            }
            self.init(host: "[\(literal)]", port: port)
            return
        }
        if let colon = host.lastIndex(of: ":") {
            guard let p = UInt16(host[host.index(after: colon)...]), p != 0 else { return nil }
            port = p
            host = host[..<colon]
        }
        guard !host.isEmpty, host.utf8.count <= 253,
              host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") }) else { return nil }
        self.init(host: String(host), port: port)
    }

    public var description: String { "\(host):\(port)" }
}
