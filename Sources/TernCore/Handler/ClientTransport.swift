/// The transport a client reaches Tern over (RFC 8656 section 3.1: the client-to-server leg), and so
/// the transport a listener speaks: one enum for the config, the listeners and the 5-tuple.
public enum ClientTransport: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case udp, tcp, tls, dtls

    /// The name used in the config file and in logs: `udp`, `tcp`, `tls`, `dtls`.
    public var description: String {
        switch self {
        case .udp: return "udp"
        case .tcp: return "tcp"
        case .tls: return "tls"
        case .dtls: return "dtls"
        }
    }

    /// The transport named `name` in a config file, or nil.
    public init?(name: String) {
        guard let t = ClientTransport.allCases.first(where: { $0.description == name }) else { return nil }
        self = t
    }

    /// Stream transports carry STUN framed by its own length (RFC 8489 section 6.2.2).
    public var isStream: Bool { self == .tcp || self == .tls }

    /// Datagram transports (UDP and DTLS) are served on datagram sockets.
    public var isDatagram: Bool { !isStream }

    /// The port used when a listener entry gives none: 3478 for UDP/TCP, 5349 for TLS/DTLS
    /// (RFC 8489 section 6, RFC 8656 section 4).
    public var defaultPort: UInt16 {
        switch self {
        case .udp, .tcp: return 3478
        case .tls, .dtls: return 5349
        }
    }
}
