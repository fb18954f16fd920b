import STUN

/// How Allocate is refused while the server drains (SIGTERM): RFC 8656 section 7.2 lets the server
/// redirect with 300 Try Alternate and ALTERNATE-SERVER (RFC 8489 section 10); without one, 508.
public struct DrainMode: Sendable, Equatable {
    /// Where to send clients (300 Try Alternate with ALTERNATE-SERVER); nil answers 508.
    public var alternateServer: TransportAddress?
    public init(alternateServer: TransportAddress? = nil) { self.alternateServer = alternateServer }
}
