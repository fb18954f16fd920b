import STUN

/// What the TURN methods need from the config, built once by `init(config:)`. The configurable
/// values are the config's own types (`limits`, `relay`): their defaults live there and nowhere else.
/// The rest are the RFC's fixed values.
public struct TurnSettings: Sendable {
    /// Quotas, rates, lifetimes and bandwidth (`limits`).
    public var limits: LimitsConfig
    /// Relay addresses, among them the ones advertised behind 1:1 NAT (`relay.externalIPv4/6`).
    public var relay: RelayConfig
    /// Families whose public relay address discovery has not settled (pending, failing, or a NAT
    /// that is not 1:1): Allocate gets 440 for them rather than an address nobody outside can reach.
    public var withheldFamilies: Set<AddressFamily> = []
    /// Where Allocate is redirected at capacity (and while draining without `drain.alternateServer`).
    public var cluster: ClusterConfig

    /// RFC 8656 section 9: a permission lasts 300 s.
    public static let permissionLifetime: UInt32 = 300
    /// RFC 8656 section 11: a channel binding lasts 600 s.
    public static let channelLifetime: UInt32 = 600
    /// RFC 8656 section 7.2 / 14.9: a RESERVATION-TOKEN's socket is held about 30 s.
    public static let reservationLifetime: UInt32 = 30
    /// Channel numbers accepted in ChannelBind and ChannelData. RFC 8656 section 12 narrowed them to
    /// 0x4000-0x4FFF; RFC 5766 allowed up to 0x7FFF and its clients (coturn's turnutils among them)
    /// still use that range, so Tern accepts it, as coturn does. The values above 0x4FFF were
    /// reserved for the client's own demultiplexing (RFC 7983) and do not affect the server.
    public static let channelNumbers: ClosedRange<UInt16> = ChannelData.rfc5766Channels

    public init(config: TernConfig = .builtInDefault) {
        self.limits = config.limits
        self.relay = config.relay
        self.cluster = config.cluster
    }

    /// Live allocations at which Allocate is redirected (`cluster.capacity`, else
    /// `limits.allocationsTotal`); 0: never.
    public var capacity: Int { cluster.effectiveCapacity(limits) }

    /// The lifetime given when a request carries no LIFETIME (RFC 8656 section 7.2), in the
    /// attribute's 32-bit seconds.
    public var defaultLifetime: UInt32 { UInt32(clamping: limits.defaultLifetime) }
    /// The longest lifetime a client may ask for.
    public var maxLifetime: UInt32 { UInt32(clamping: limits.maxLifetime) }

    /// The address XOR-RELAYED-ADDRESS advertises for a relay socket bound to `bound`: the configured
    /// external address of that family with the bound port, or `bound` itself.
    public func advertised(_ bound: TransportAddress) -> TransportAddress {
        let external = bound.ip.family == .ipv4 ? relay.externalIPv4 : relay.externalIPv6
        return external.map { TransportAddress(ip: $0, port: bound.port) } ?? bound
    }
}
