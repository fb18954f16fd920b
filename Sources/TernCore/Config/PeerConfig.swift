import STUN

/// Which peer addresses relays may talk to. A peer is refused when it matches `deny`, unless it
/// also matches `allow` (an allow entry carves an exception out of a deny entry).
public struct PeerConfig: Sendable, Equatable {
    public var allow: [CIDR]
    public var deny: [CIDR]

    public init(allow: [CIDR] = [], deny: [CIDR] = []) {
        self.allow = allow
        self.deny = deny
    }
}
