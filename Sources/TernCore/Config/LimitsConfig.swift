/// `limits`: lifetimes, quotas and rates (RFC 8656 sections 7.2, 9, 11; section 21 on the abuse a
/// relay invites). Every limit has a closed default; 0 turns the bandwidth limits off.
public struct LimitsConfig: Sendable, Equatable {
    /// Lifetime given to an Allocate or Refresh without LIFETIME, and the floor of what a client may
    /// ask for (RFC 8656 section 7.2 recommends 600 s).
    public var defaultLifetime: Int = 600
    /// The longest allocation lifetime a client may ask for, in seconds (RFC 8656 section 7.2
    /// leaves it to the server). At least the 600 s default lifetime.
    public var maxLifetime: Int = 3600
    /// Live allocations one user may hold across all workers (486 past it).
    public var allocationsPerUser: Int = 100
    /// Live allocations from one client IP address, whatever the user (486 past it): one stolen
    /// credential cannot hold every relay port from one host.
    public var allocationsPerIP: Int = 256
    /// Live allocations in total (508 past it), below the relay port range's size.
    public var allocationsTotal: Int = 50_000
    /// New allocations one client IP may make per second (486 past it).
    public var allocationRatePerIP: Int = 50
    /// Relayed payload bytes per second for one allocation, both directions together, as a token
    /// bucket refilled each second (one second's worth deep); what exceeds it is dropped and counted.
    /// Applies to client legs over UDP, DTLS, TCP and TLS alike. 0: unlimited.
    public var bandwidthPerAllocation: Int = 12_500_000
    /// The same across all of one user's allocations (TURN REST API users by their `<user>` part).
    public var bandwidthPerUser: Int = 62_500_000
    /// Unauthenticated error responses (401/438 challenges and the 400/420 sent before a request is
    /// authenticated) one source IP gets per second; beyond it such requests are dropped silently, so
    /// spoofed sources cannot turn the server into a reflector.
    public var unauthenticatedRatePerIP: Int = 100
    /// TLS handshakes in progress at once, server-wide (split between workers); connections beyond
    /// it are closed at accept, DTLS ClientHellos dropped.
    public var handshakesInFlight: Int = 1024
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
