import STUN

/// The transport a listener speaks: STUN/TURN over UDP, TCP, TLS over TCP, or DTLS over UDP.
public enum ListenerTransport: String, Sendable, CaseIterable {
    case udp, tcp, tls, dtls

    /// The port used when a listener entry gives none: 3478 for UDP/TCP, 5349 for TLS/DTLS
    /// (RFC 8489 section 6, RFC 8656 section 4).
    public var defaultPort: UInt16 {
        switch self {
        case .udp, .tcp: return 3478
        case .tls, .dtls: return 5349
        }
    }
}

/// One socket the server listens on. Port 0 asks the kernel for an ephemeral port (used by tests).
public struct ListenerConfig: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var transport: ListenerTransport
    public var address: IPAddress
    public var port: UInt16

    public init(transport: ListenerTransport, address: IPAddress, port: UInt16) {
        self.transport = transport
        self.address = address
        self.port = port
    }

    /// `udp 0.0.0.0:3478`, `tcp [::]:3478`.
    public var description: String {
        "\(transport.rawValue) \(TransportAddress(ip: address, port: port))"
    }
}
