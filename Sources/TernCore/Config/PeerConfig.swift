import STUN

/// Which peer addresses relays may talk to. `deny` wins: a peer that matches a `deny` prefix is
/// refused even when it also matches `allow`. `allow` opens addresses that the built-in default
/// list (`PeerPolicy.defaultDenied`: loopback, private, link-local and other special ranges) would
/// refuse. See `PeerPolicy.permits` for the order.
public struct PeerConfig: Sendable, Equatable {
    public var allow: [CIDR]
    public var deny: [CIDR]

    public init(allow: [CIDR] = [], deny: [CIDR] = []) {
        self.allow = allow
        self.deny = deny
    }
}
