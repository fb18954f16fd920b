/// `limits`: lifetimes and quotas of TURN allocations (RFC 8656 sections 7.2, 9, 11).
public struct LimitsConfig: Sendable, Equatable {
    /// The longest allocation lifetime a client may ask for, in seconds (RFC 8656 section 7.2
    /// leaves it to the server). At least the 600 s default lifetime.
    public var maxLifetime: Int = 3600
    /// Live allocations one user may hold across all workers (486 past it).
    public var allocationsPerUser: Int = 100
    /// Permissions (peer IPs) and channels one allocation may hold (508 past them).
    public var permissionsPerAllocation: Int = 64
    public var channelsPerAllocation: Int = 64
    /// Seconds a TCP/TLS connection may stay silent without an allocation before it is closed.
    public var streamIdleTimeout: Int = 60
    /// TCP/TLS connections one client IP may hold at once.
    public var connectionsPerIP: Int = 512
    /// Bytes queued for a stream client that is not reading; relayed data beyond half of it is
    /// dropped, and a connection whose responses alone pass it is closed.
    public var streamQueueBytes: Int = 262_144

    public init() {}
}
