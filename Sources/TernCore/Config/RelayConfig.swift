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
