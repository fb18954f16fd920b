import STUN
import TernCore

/// Finds the public address in front of the relay (`relay.discoverExternal`): a STUN Binding
/// (RFC 8489 section 3) sent from a port of the relay range to a STUN server outside, whose
/// XOR-MAPPED-ADDRESS (section 14.2) is the address the server saw.
///
/// Relaying through a NAT only works when it maps the relay's ports 1:1 (the port a relay socket
/// binds is the port XOR-RELAYED-ADDRESS advertises, RFC 8656 section 7.2): so the mapped port must
/// equal the local one. Where it does not, the NAT is not 1:1 and nothing is advertised in its name.
/// Blocking, bounded: at most `servers.count` x 3 sends with a 500 ms, 1 s, 2 s wait each
/// (RFC 8489 section 6.2.1's doubling RTO, with fewer retransmissions than Rc: discovery retries later).
public enum ExternalAddressDiscovery {
    /// What one attempt found for one address family.
    public enum Outcome: Sendable, Equatable {
        /// Behind a 1:1 NAT: advertise `mapped.ip`.
        case oneToOne(local: TransportAddress, mapped: TransportAddress, server: String)
        /// The mapped address is one of the host's own: there is no NAT to advertise.
        case direct(local: TransportAddress, mapped: TransportAddress, server: String)
        /// The port changed on the way: not a 1:1 NAT.
        case notOneToOne(local: TransportAddress, mapped: TransportAddress, server: String)
        /// No server answered (or none resolved to the family); the reason of the last one.
        case failed(server: String, reason: String)
    }

    /// Asks `servers` in order until one answers, from a random port of `portRange` on `bindIP`
    /// (the relay address of the family, or the wildcard). `hostAddresses`: the host's own
    /// addresses, to tell "no NAT" from "1:1 NAT".
    public static func discover(family: AddressFamily, bindIP: IPAddress, portRange: ClosedRange<UInt16>,
                                servers: [StunServerName], hostAddresses: [IPAddress],
                                resolve: (String) -> [IPAddress] = Posix.resolve) -> Outcome {
        var last = Outcome.failed(server: servers.first?.description ?? "none", reason: "no STUN server configured")
        for server in servers {
            guard let ip = resolve(server.host).first(where: { $0.family == family }) else {
                last = .failed(server: server.description, reason: "does not resolve to an \(family == .ipv4 ? "IPv4" : "IPv6") address")
                continue
            }
            let destination = TransportAddress(ip: ip, port: server.port)
            guard let socket = openSocket(family: family, bindIP: bindIP, portRange: portRange),
                  let local = socket.localAddress else {
                return .failed(server: server.description, reason: "no free port in the relay range \(portRange) on \(bindIP)")
            }
            guard let mapped = binding(socket, to: destination) else {
                last = .failed(server: server.description, reason: "no answer from \(destination)")
                continue
            }
            let name = server.description
            if mapped.port != local.port { return .notOneToOne(local: local, mapped: mapped, server: name) }
            if hostAddresses.contains(mapped.ip) || (!local.ip.isUnspecified && mapped.ip == local.ip) {
                return .direct(local: local, mapped: mapped, server: name)
            }
            return .oneToOne(local: local, mapped: mapped, server: name)
        }
        return last
    }

    /// A UDP socket on a random free port of the relay range (bounded tries).
    static func openSocket(family: AddressFamily, bindIP: IPAddress, portRange: ClosedRange<UInt16>) -> ClientSocket? {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<32 {
            let local = TransportAddress(ip: bindIP, port: UInt16.random(in: portRange, using: &rng))
            if let socket = try? ClientSocket(unconnectedUDP: family, local: local) { return socket }
        }
        return nil
    }

    /// One Binding transaction: XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS from an RFC 3489 server) of
    /// the success response with our transaction id, or nil.
    static func binding(_ socket: ClientSocket, to destination: TransportAddress) -> TransportAddress? {
        let request = Message(type: .bindingRequest, transactionID: .random(), attributes: [])
        let bytes = request.encode(integrityKey: nil, fingerprint: true)
        for wait in [500, 1000, 2000] {
            guard socket.send(bytes, to: destination) else { return nil }
            var remaining = 8  // bounded: stray datagrams do not keep us here
            while remaining > 0, let (from, reply) = socket.receiveFrom(milliseconds: wait) {
                remaining -= 1
                guard from == destination, let m = try? Message.decode(reply), m.transactionID == request.transactionID,
                      m.type == .bindingSuccess else { continue }
                if case .xorMappedAddress(let a)? = m.first(.xorMappedAddress) { return a }
                if case .mappedAddress(let a)? = m.first(.mappedAddress) { return a }
                return nil
            }
        }
        return nil
    }
}

extension ExternalAddressDiscovery.Outcome {
    /// The figure `/stats` shows for this outcome.
    public func status(family: AddressFamily) -> ExternalAddressStatus {
        let f = family == .ipv4 ? "ipv4" : "ipv6"
        switch self {
        case .oneToOne(let local, let mapped, let server):
            return .init(family: f, state: .discovered, advertised: "\(mapped.ip)", source: server, local: "\(local)", mapped: "\(mapped)")
        case .direct(let local, let mapped, let server):
            return .init(family: f, state: .direct, source: server, local: "\(local)", mapped: "\(mapped)")
        case .notOneToOne(let local, let mapped, let server):
            return .init(family: f, state: .notOneToOne, source: server, local: "\(local)", mapped: "\(mapped)",
                         error: "the NAT mapped port \(local.port) to \(mapped.port): it is not 1:1, so relayed addresses behind it would be wrong; nothing is advertised")
        case .failed(let server, let reason):
            return .init(family: f, state: .failed, source: server, error: reason)
        }
    }

    /// Discovery is done for the family (the address is known, or there is none to know).
    public var succeeded: Bool {
        switch self {
        case .oneToOne, .direct: return true
        case .notOneToOne, .failed: return false
        }
    }
}
