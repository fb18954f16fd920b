import STUN

/// TURN settings derived once from the config.
public struct TurnSettings: Sendable {
    /// RFC 8656 section 2: the default allocation lifetime is 10 minutes.
    public var defaultLifetime: UInt32 = 600
    /// The largest lifetime a client may ask for (RFC 8656 section 7.2 leaves it to the server; 1 h).
    public var maxLifetime: UInt32 = 3600
    /// RFC 8656 section 9: permissions last 300 s; section 11: channel bindings 600 s.
    public var permissionLifetime: UInt32 = 300
    public var channelLifetime: UInt32 = 600
    /// RFC 8656 section 7.2 / 14.9: a RESERVATION-TOKEN's socket is held about 30 s.
    public var reservationLifetime: UInt32 = 30
    /// Advertised relay addresses when the server sits behind 1:1 NAT (XOR-RELAYED-ADDRESS).
    public var externalIPv4: IPAddress?
    public var externalIPv6: IPAddress?
    /// Whether relay sockets of each family can be opened at all.
    public var ipv4Relay: Bool = true
    public var ipv6Relay: Bool = true
    /// Quotas and rates checked by Allocate.
    public var allocationLimits = AllocationLimits()
    /// Relayed payload bytes per second per allocation and per user (0: unlimited).
    public var bandwidthPerAllocation = 0
    public var bandwidthPerUser = 0
    /// Unauthenticated error responses per source IP per second.
    public var unauthenticatedRatePerIP = 100
    public var maxPermissionsPerAllocation: Int = 64
    public var maxChannelsPerAllocation: Int = 64
    /// Channel numbers accepted in ChannelBind and ChannelData. RFC 8656 section 12 narrowed them to
    /// 0x4000-0x4FFF; RFC 5766 allowed up to 0x7FFF and its clients (coturn's turnutils among them)
    /// still use that range, so Tern accepts it, as coturn does. The values above 0x4FFF were
    /// reserved for the client's own demultiplexing (RFC 7983) and do not affect the server.
    public var channelNumbers: ClosedRange<UInt16> = ChannelData.rfc5766Channels

    public init() {}
}
