/// `limits`: lifetimes, quotas and rates (RFC 8656 sections 7.2, 9, 11; section 21 on the abuse a
/// relay invites). Every count and rate limit accepts 0 for "unlimited" (`LimitsConfig.allows`).
///
/// The per-user limits are off by default: a single static user shared by every browser of an
/// application is the most common set-up, and a per-user cap would then cap the application. Turn
/// them on with TURN REST credentials, whose `<id>` names one end user. The per-IP, total, rate and
/// per-allocation limits stay on.
public struct LimitsConfig: Sendable, Equatable {
    /// Lifetime given to an Allocate or Refresh without LIFETIME, and the floor of what a client may
    /// ask for (RFC 8656 section 7.2 recommends 600 s).
    public var defaultLifetime: Int = 600
    /// The longest allocation lifetime a client may ask for, in seconds (RFC 8656 section 7.2
    /// leaves it to the server). At least the 600 s default lifetime.
    public var maxLifetime: Int = 3600
    /// Live allocations one user may hold across all workers (486 past it). 0 (the default): no cap.
    public var allocationsPerUser: Int = 0
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
    /// 0 (the default): unlimited.
    public var bandwidthPerUser: Int = 0
    /// Answers to requests that did not authenticate (401/438 challenges, and every 400/420/441 sent
    /// before or instead of checking credentials, whatever the method, TURN on or off) one source IP
    /// (an IPv6 source by its /64) gets per second; beyond it such requests are dropped silently, so
    /// spoofed sources cannot turn the server into a reflector.
    public var unauthenticatedRatePerIP: Int = 100
    /// Binding success responses one source IP (/64) gets per second. Higher than the challenge
    /// budget, because answering Binding is what STUN is for (ICE sends several per candidate pair),
    /// but bounded: a Binding response is at most 2.2 times its request, so a spoofed flood can make
    /// one victim receive at most about this many responses a second.
    public var bindingRatePerIP: Int = 1000
    /// TLS and DTLS handshakes in progress at once, server-wide; connections beyond it are closed at
    /// accept, DTLS ClientHellos dropped. One source IP (an IPv6 source by its /64) may hold at most
    /// `handshakesPerIP` of them: an eighth of this, at most 32 and at least 1.
    public var handshakesInFlight: Int = 1024
    /// Permissions (peer IPs) and channels one allocation may hold (508 past them).
    public var permissionsPerAllocation: Int = 64
    public var channelsPerAllocation: Int = 64
    /// Seconds a TCP/TLS connection may stay silent without an allocation before it is closed.
    public var streamIdleTimeout: Int = 60
    /// TCP/TLS connections and DTLS associations one client IP (an IPv6 client by its /64) may
    /// hold at once.
    public var connectionsPerIP: Int = 512
    /// TCP/TLS connections and DTLS associations server-wide that carry no allocation (yet): what a
    /// flood of idle connections can hold. New ones beyond it are closed at accept (counted).
    public var connectionsWithoutAllocation: Int = 4096
    /// Bytes queued for a stream client that is not reading; relayed data beyond half of it is
    /// dropped, and a connection whose responses alone pass it is closed.
    public var streamQueueBytes: Int = 262_144

    public init() {}

    /// Every count and rate limit off.
    public static let unlimited: LimitsConfig = {
        var l = LimitsConfig()
        l.allocationsPerUser = 0; l.allocationsPerIP = 0; l.allocationsTotal = 0; l.allocationRatePerIP = 0
        l.unauthenticatedRatePerIP = 0; l.bindingRatePerIP = 0; l.handshakesInFlight = 0
        l.permissionsPerAllocation = 0; l.channelsPerAllocation = 0; l.connectionsPerIP = 0
        l.connectionsWithoutAllocation = 0; l.bandwidthPerAllocation = 0; l.bandwidthPerUser = 0
        return l
    }()

    /// One more under `limit`, where 0 means unlimited.
    @inline(__always)
    public static func allows(_ count: Int, under limit: Int) -> Bool {
        limit == 0 || count < limit
    }

    /// A source IP's share of the handshake slots: an eighth, at most 32 and at least 1 (0: no cap).
    public var handshakesPerIP: Int {
        handshakesInFlight == 0 ? 0 : max(1, min(32, handshakesInFlight / 8))
    }
}
