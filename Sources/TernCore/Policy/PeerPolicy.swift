import STUN

/// Which peer addresses a client may reach through the relay: the server-side check behind
/// CreatePermission, ChannelBind and Send (RFC 8656 section 21.2, "a TURN server SHOULD NOT
/// permit ... to addresses the operator has not intended", and the "Open relay" / "Relay to
/// internal addresses" concerns of RFC 8656 sections 21.3 and 21.5). Safe by default: with
/// no configuration, loopback, private, link-local (including the 169.254.169.254 cloud
/// metadata address), shared, documentation, benchmarking, multicast and reserved space is
/// refused (`defaultDenied`).
///
/// Decision for an address, in order:
/// 1. a `deny` prefix matches the address, or the IPv4 address it embeds: refused;
/// 2. an `allow` prefix matches the address, or the IPv4 address it embeds: permitted
///    (so allowing 127.0.0.0/8 also opens ::ffff:127.0.0.1);
/// 3. a `defaultDenied` prefix matches the address, or the IPv4 address it embeds: refused;
/// 4. otherwise permitted.
///
/// IPv6 addresses that carry an IPv4 address, and through which a host could reach that IPv4
/// address, are judged by it (see `embeddedIPv4`): IPv4-mapped ::ffff:0:0/96 (RFC 4291 section
/// 2.5.5.2), IPv4-translated ::ffff:0:0:0/96 (RFC 2765 section 2.1), IPv4-compatible ::/96
/// other than :: and ::1 (RFC 4291 section 2.5.5.1), 6to4 2002::/16 (RFC 3056 section 2) and
/// the NAT64 well-known prefix 64:ff9b::/96 (RFC 6052 section 2.1).
///
/// `permits` does no allocation: the prefixes are flattened into (network, mask) arrays at init.
public struct PeerPolicy: Sendable {
    private let deny: Rules
    private let allow: Rules
    /// The server's own endpoints (`ownEndpoints`): empty until the server says what it bound.
    public private(set) var own = OwnEndpoints()

    public init(allow: [CIDR], deny: [CIDR]) {
        self.allow = Rules(allow)
        self.deny = Rules(deny)
    }

    public init(_ config: PeerConfig) {
        self.init(allow: config.allow, deny: config.deny)
    }

    /// True when a client may have a permission for `ip` (CreatePermission: permissions are per IP,
    /// RFC 8656 section 9). The server's own relay addresses are permitted even when private:
    /// relaying between two clients of this server (TURN to TURN) goes through them. An explicit
    /// `deny` still wins.
    public func permits(_ ip: IPAddress) -> Bool {
        let embedded = Self.embeddedIPv4(ip)
        if deny.matches(ip, embedded) { return false }
        if allow.matches(ip, embedded) { return true }
        if own.isRelayIP(ip) { return true }
        if Self.defaults.matches(ip, embedded) { return false }
        return true
    }

    /// True when a client may bind a channel to, send to, or (RFC 6062) connect to `peer`. Refused,
    /// whatever `allow` says: the server's own listener and admin ports (a relay loop, or a client
    /// reaching the admin endpoint from the server's own address). On the server's own relay
    /// addresses, when the policy would otherwise refuse them (private or loopback), a peer is
    /// permitted only if it is the relayed address of a live allocation of this server (`relays`):
    /// two clients of this server relaying to each other, never another local service that happens
    /// to listen on a port in the relay range. `stream`: the relay would reach `peer` over TCP
    /// (RFC 6062 Connect); otherwise over UDP. A service is only refused on its own transport: a UDP
    /// peer may use the port number a TCP listener has.
    public func permits(_ peer: TransportAddress, relays: SharedTurnState? = nil, stream: Bool = false) -> Bool {
        if own.isService(peer, stream: stream) { return false }
        let embedded = Self.embeddedIPv4(peer.ip)
        if deny.matches(peer.ip, embedded) { return false }
        if allow.matches(peer.ip, embedded) { return true }
        if own.isRelayIP(peer.ip), own.relayPorts.contains(peer.port), let relays,
           relays.isLiveRelay(TransportAddress(ip: embedded.map(IPAddress.v4) ?? peer.ip, port: peer.port)) {
            return true
        }
        if Self.defaults.matches(peer.ip, embedded) { return false }
        return true
    }

    /// This policy, knowing the server's own endpoints.
    public func with(_ own: OwnEndpoints) -> PeerPolicy {
        var p = self
        p.own = own
        return p
    }

    /// The server's own addresses, as far as relaying is concerned: where its listeners and admin
    /// endpoint are (never a peer), and its relay addresses and port range (a peer there is another
    /// client of this server).
    public struct OwnEndpoints: Sendable {
        /// Listener and admin endpoints, and whether each is a stream (TCP, TLS, the admin HTTP
        /// endpoint) or datagram (UDP, DTLS) one. A wildcard address (0.0.0.0 or ::) stands for every
        /// address of the host that a peer could name: loopback, and the relay and external addresses.
        public var services: [Service]
        /// Relay addresses and the external addresses advertised for them.
        public var relayIPs: [IPAddress]
        public var relayPorts: ClosedRange<UInt16>

        public struct Service: Sendable, Equatable {
            public var address: TransportAddress
            public var stream: Bool
            public init(_ address: TransportAddress, stream: Bool) {
                self.address = address
                self.stream = stream
            }
        }

        public init(services: [Service] = [], relayIPs: [IPAddress] = [], relayPorts: ClosedRange<UInt16> = 0...0) {
            self.services = services
            self.relayIPs = relayIPs
            self.relayPorts = relayPorts
        }

        @inline(__always)
        func isRelayIP(_ ip: IPAddress) -> Bool {
            let v4 = PeerPolicy.embeddedIPv4(ip).map(IPAddress.v4) ?? ip
            for r in relayIPs where r == v4 { return true }
            return false
        }

        /// A listener or admin port of the same transport on one of this host's addresses. No
        /// allocation: a few entries.
        @inline(__always)
        func isService(_ peer: TransportAddress, stream: Bool) -> Bool {
            let ip = PeerPolicy.embeddedIPv4(peer.ip).map(IPAddress.v4) ?? peer.ip
            for s in services where s.address.port == peer.port && s.stream == stream {
                if s.address.ip == ip { return true }
                if s.address.ip.isUnspecified, ip.isLoopback || ip.isUnspecified || isRelayIP(ip) { return true }
            }
            return false
        }
    }

    /// The IPv4 address an IPv6 address embeds, for the forms listed on the type; nil otherwise
    /// (and for IPv4 addresses).
    public static func embeddedIPv4(_ ip: IPAddress) -> UInt32? {
        guard case .v6(let hi, let lo) = ip else { return nil }
        let low32 = UInt32(truncatingIfNeeded: lo)
        if hi == 0 {
            switch lo >> 32 {
            case 0x0000_FFFF: return low32  // ::ffff:a.b.c.d, IPv4-mapped
            case 0xFFFF_0000: return low32  // ::ffff:0:a.b.c.d, IPv4-translated
            case 0: return lo <= 1 ? nil : low32  // ::a.b.c.d, IPv4-compatible (not :: or ::1)
            default: return nil
            }
        }
        if hi >> 48 == 0x2002 { return UInt32(truncatingIfNeeded: hi >> 16) }  // 2002:AABB:CCDD::/48, 6to4
        if hi == 0x0064_FF9B_0000_0000, lo >> 32 == 0 { return low32 }  // 64:ff9b::a.b.c.d, NAT64
        return nil
    }

    /// Refused unless an `allow` prefix opens them. IPv4 from the IANA IPv4 Special-Purpose Address
    /// Registry (RFC 6890) plus multicast and the RFC 1918 private ranges; IPv6 from the IANA IPv6
    /// Special-Purpose Address Registry. The IPv6 forms that embed an IPv4 address are not listed:
    /// they are judged by that address.
    public static let defaultDenied: [CIDR] = [
        "0.0.0.0/8",          // "this network", RFC 791 / RFC 1122 section 3.2.1.3
        "10.0.0.0/8",         // private, RFC 1918
        "100.64.0.0/10",      // shared address space (carrier-grade NAT), RFC 6598
        "127.0.0.0/8",        // loopback, RFC 1122 section 3.2.1.3
        "169.254.0.0/16",     // link-local, RFC 3927 (includes 169.254.169.254 cloud metadata)
        "172.16.0.0/12",      // private, RFC 1918
        "192.0.0.0/24",       // IETF protocol assignments, RFC 6890 section 2.1
        "192.0.2.0/24",       // documentation TEST-NET-1, RFC 5737
        "192.88.99.0/24",     // 6to4 relay anycast, RFC 7526
        "192.168.0.0/16",     // private, RFC 1918
        "198.18.0.0/15",      // benchmarking, RFC 2544
        "198.51.100.0/24",    // documentation TEST-NET-2, RFC 5737
        "203.0.113.0/24",     // documentation TEST-NET-3, RFC 5737
        "224.0.0.0/4",        // multicast, RFC 5771
        "240.0.0.0/4",        // reserved, RFC 1112 section 4 (includes 255.255.255.255 broadcast, RFC 919)
        "::/128",             // unspecified, RFC 4291 section 2.5.2
        "::1/128",            // loopback, RFC 4291 section 2.5.3
        "100::/64",           // discard-only, RFC 6666
        "2001::/23",          // IETF protocol assignments, RFC 2928 (includes Teredo 2001::/32, RFC 4380)
        "2001:db8::/32",      // documentation, RFC 3849
        "3fff::/20",          // documentation, RFC 9637
        "fc00::/7",           // unique local, RFC 4193
        "fe80::/10",          // link-local unicast, RFC 4291 section 2.5.6
        "fec0::/10",          // site-local (deprecated), RFC 3879
        "ff00::/8",           // multicast, RFC 4291 section 2.7
        "64:ff9b:1::/48",     // local-use IPv4/IPv6 translation, RFC 8215
    ].compactMap { CIDR($0) }

    static let defaults = Rules(defaultDenied)

    /// A prefix list flattened for allocation-free matching.
    struct Rules: Sendable {
        struct V4: Sendable { var network: UInt32; var mask: UInt32 }
        struct V6: Sendable { var networkHi: UInt64; var networkLo: UInt64; var maskHi: UInt64; var maskLo: UInt64 }
        var v4: [V4] = []
        var v6: [V6] = []

        init(_ prefixes: [CIDR]) {
            for p in prefixes {
                let n = p.prefixLength
                switch p.address {
                case .v4(let a):
                    let m: UInt32 = n <= 0 ? 0 : (n >= 32 ? ~0 : ~UInt32(0) << UInt32(32 - n))
                    v4.append(V4(network: a & m, mask: m))
                case .v6(let h, let l):
                    let mh: UInt64 = n <= 0 ? 0 : (n >= 64 ? ~0 : ~UInt64(0) << UInt64(64 - n))
                    let ml: UInt64 = n <= 64 ? 0 : (n >= 128 ? ~0 : ~UInt64(0) << UInt64(128 - n))
                    v6.append(V6(networkHi: h & mh, networkLo: l & ml, maskHi: mh, maskLo: ml))
                }
            }
        }

        @inline(__always)
        func matchesV4(_ a: UInt32) -> Bool {
            for r in v4 where a & r.mask == r.network { return true }
            return false
        }

        @inline(__always)
        func matchesV6(_ h: UInt64, _ l: UInt64) -> Bool {
            for r in v6 where h & r.maskHi == r.networkHi && l & r.maskLo == r.networkLo { return true }
            return false
        }

        /// The address itself, or the IPv4 address it embeds.
        @inline(__always)
        func matches(_ ip: IPAddress, _ embedded: UInt32?) -> Bool {
            switch ip {
            case .v4(let a):
                return matchesV4(a)
            case .v6(let h, let l):
                if matchesV6(h, l) { return true }
                if let e = embedded { return matchesV4(e) }
                return false
            }
        }
    }
}
