import STUN

/// One socket the server listens on (`listeners[]`). Port 0 asks the kernel for an ephemeral port
/// (used by tests). The config file, the event loop and reload all use this one type.
public struct ListenerConfig: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var transport: ClientTransport
    public var address: IPAddress
    public var port: UInt16
    /// Skipped, rather than failing the start, when the host cannot bind its address family (the
    /// built-in default's `[::]` listeners on a host without IPv6). Never set from a config file.
    public var optional: Bool
    /// PROXY protocol from trusted load balancers (`tcp` and `tls` only); nil: clients connect directly.
    /// Part of the listener's identity: a reload that changes it replaces the listening socket.
    public var proxyProtocol: ProxyProtocolConfig?

    public init(transport: ClientTransport, address: IPAddress, port: UInt16, optional: Bool = false,
                proxyProtocol: ProxyProtocolConfig? = nil) {
        self.transport = transport
        self.address = address
        self.port = port
        self.optional = optional
        self.proxyProtocol = proxyProtocol
    }

    public init(transport: ClientTransport, address: TransportAddress, optional: Bool = false,
                proxyProtocol: ProxyProtocolConfig? = nil) {
        self.init(transport: transport, address: address.ip, port: address.port, optional: optional, proxyProtocol: proxyProtocol)
    }

    /// The address and port together.
    public var transportAddress: TransportAddress { TransportAddress(ip: address, port: port) }

    /// `udp 0.0.0.0:3478`, `tcp [::]:3478`.
    public var description: String { "\(transport) \(transportAddress)\(proxyProtocol == nil ? "" : " (PROXY protocol)")" }
}
