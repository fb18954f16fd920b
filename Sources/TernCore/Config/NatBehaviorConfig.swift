import STUN

/// `natBehavior`: RFC 5780 NAT behaviour discovery, off by default (RFC 5780 section 9 recommends
/// that; the server then answers CHANGE-REQUEST with 420). When set, the server also listens on
/// UDP at the other address and port, and answers Binding with OTHER-ADDRESS and RESPONSE-ORIGIN,
/// honouring CHANGE-REQUEST and RESPONSE-PORT.
public struct NatBehaviorConfig: Sendable, Equatable {
    /// The second IP address (section 4.1: the server needs two), of the same family as the primary.
    public var otherAddress: IPAddress
    /// The second port.
    public var otherPort: UInt16

    public init(otherAddress: IPAddress, otherPort: UInt16) {
        self.otherAddress = otherAddress
        self.otherPort = otherPort
    }
}

/// The four transport addresses of RFC 5780 section 4.1: the primary (a `udp` listener) and the
/// other address, crossed with the primary and the other port.
public struct NatBehaviorAddresses: Sendable, Equatable {
    public var primary: TransportAddress
    public var other: TransportAddress

    public init(primary: TransportAddress, other: TransportAddress) {
        self.primary = primary
        self.other = other
    }

    /// All four: (A1,P1), (A1,P2), (A2,P1), (A2,P2).
    public var all: [TransportAddress] {
        [primary, TransportAddress(ip: primary.ip, port: other.port),
         TransportAddress(ip: other.ip, port: primary.port), other]
    }

    public func contains(_ local: TransportAddress) -> Bool { all.contains(local) }

    /// Section 7.2: the address a response to a request received at `local` goes out from, with
    /// the IP and/or port changed as CHANGE-REQUEST asks.
    public func source(for local: TransportAddress, changeIP: Bool, changePort: Bool) -> TransportAddress {
        var ip = local.ip, port = local.port
        if changeIP { ip = ip == primary.ip ? other.ip : primary.ip }
        if changePort { port = port == primary.port ? other.port : primary.port }
        return TransportAddress(ip: ip, port: port)
    }

    /// Section 7.4: OTHER-ADDRESS, the address that differs from `local` in both IP and port.
    public func otherAddress(for local: TransportAddress) -> TransportAddress {
        source(for: local, changeIP: true, changePort: true)
    }
}

extension TernConfig {
    /// The four addresses, when `natBehavior` is set: the primary is the first `udp` listener of
    /// the other address's family (the parser made sure there is one, on a concrete address and port).
    public var natBehaviorAddresses: NatBehaviorAddresses? {
        guard let nat = natBehavior,
              let primary = listeners.first(where: { $0.transport == .udp && $0.address.family == nat.otherAddress.family }) else {
            return nil
        }
        return NatBehaviorAddresses(primary: primary.transportAddress,
                                    other: TransportAddress(ip: nat.otherAddress, port: nat.otherPort))
    }

    /// The three UDP listeners RFC 5780 adds to the primary one.
    public var natBehaviorListeners: [ListenerConfig] {
        guard let addresses = natBehaviorAddresses else { return [] }
        return addresses.all.dropFirst().map { ListenerConfig(transport: .udp, address: $0.ip, port: $0.port) }
    }
}
