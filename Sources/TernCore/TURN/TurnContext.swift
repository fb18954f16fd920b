import STUN

/// Everything the TURN methods need besides the allocations themselves: credentials, nonces, peer
/// policy, settings and the cross-worker state. Immutable, shared by every worker's handler.
public final class TurnContext: @unchecked Sendable {
    public let realm: String
    let realmBytes: [UInt8]
    public let credentials: CredentialStore
    public let nonces: NonceIssuer
    public let policy: PeerPolicy
    public let settings: TurnSettings
    public let shared: SharedTurnState

    public init(realm: String, credentials: CredentialStore, nonces: NonceIssuer, policy: PeerPolicy,
                settings: TurnSettings, shared: SharedTurnState = SharedTurnState()) {
        self.realm = realm
        self.realmBytes = Array(realm.utf8)
        self.credentials = credentials
        self.nonces = nonces
        self.policy = policy
        self.settings = settings
        self.shared = shared
    }

    /// PASSWORD-ALGORITHMS as this server offers it (RFC 8489 section 14.11): MD5 then SHA-256,
    /// no parameters. A request's PASSWORD-ALGORITHMS must repeat these bytes exactly (section 9.2.5).
    static let offeredAlgorithms: [UInt8] = [0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00]
    static let offeredAlgorithmsAttribute = Attribute.passwordAlgorithms([PasswordAlgorithmEntry(.md5), PasswordAlgorithmEntry(.sha256)])
}

/// Why an authentication attempt failed, counted per reason (RFC 8489 section 9.2.4).
public struct AuthFailureCounters: Sendable, Equatable {
    /// Requests with no MESSAGE-INTEGRITY: answered with a 401 challenge (the normal first step).
    public var challenged: UInt64 = 0
    /// USERNAME/USERHASH, REALM or NONCE missing next to MESSAGE-INTEGRITY: 400.
    public var missingAttributes: UInt64 = 0
    /// NONCE expired or not ours: 438.
    public var staleNonce: UInt64 = 0
    public var unknownUser: UInt64 = 0
    /// TURN REST API username whose timestamp has passed.
    public var expiredCredentials: UInt64 = 0
    public var badIntegrity: UInt64 = 0
    /// A different user (or algorithm) than the one that made the allocation: 441.
    public var wrongCredentials: UInt64 = 0
    public var badPasswordAlgorithm: UInt64 = 0
    /// A request on an allocation whose user has since been removed, or whose password or TURN REST
    /// secret changed (a reload): 401, and the allocation runs out.
    public var revoked: UInt64 = 0
    public init() {}

    public static func + (a: Self, b: Self) -> Self {
        var s = Self()
        s.challenged = a.challenged &+ b.challenged
        s.missingAttributes = a.missingAttributes &+ b.missingAttributes
        s.staleNonce = a.staleNonce &+ b.staleNonce
        s.unknownUser = a.unknownUser &+ b.unknownUser
        s.expiredCredentials = a.expiredCredentials &+ b.expiredCredentials
        s.badIntegrity = a.badIntegrity &+ b.badIntegrity
        s.wrongCredentials = a.wrongCredentials &+ b.wrongCredentials
        s.badPasswordAlgorithm = a.badPasswordAlgorithm &+ b.badPasswordAlgorithm
        s.revoked = a.revoked &+ b.revoked
        return s
    }
}

/// TURN counters of one worker.
public struct TurnCounters: Sendable, Equatable {
    public var allocationsCreated: UInt64 = 0
    public var allocationsExpired: UInt64 = 0
    public var allocationsDeleted: UInt64 = 0
    /// Allocate/Refresh/CreatePermission/ChannelBind answered with an error, by code.
    public var errors: [Int: UInt64] = [:]
    public var permissionsCreated: UInt64 = 0
    public var channelsBound: UInt64 = 0
    public var auth = AuthFailureCounters()
    /// Data dropped: Send/ChannelData from a 5-tuple without allocation, unbound channel, no permission.
    public var droppedNoAllocation: UInt64 = 0
    public var droppedNoChannel: UInt64 = 0
    public var droppedNoPermission: UInt64 = 0
    public var droppedSendFailed: UInt64 = 0
    /// Data dropped because its allocation or user was over `limits.bandwidthPer*`.
    public var droppedBandwidth: UInt64 = 0
    /// Unauthenticated requests dropped without an answer (`limits.unauthenticatedRatePerIP`).
    public var droppedUnauthenticatedRate: UInt64 = 0
    /// Allocate refused by a limit, by which (486/508 are also in `errors`).
    public var refusedRate: UInt64 = 0
    public var refusedUserQuota: UInt64 = 0
    public var refusedIPQuota: UInt64 = 0
    public var refusedTotal: UInt64 = 0
    /// Allocate answered with 300 Try Alternate: at `cluster.capacity`, and while draining.
    public var redirectedCapacity: UInt64 = 0
    public var redirectedDrain: UInt64 = 0
    /// Totals of allocations that have ended (live ones are summed from the allocations).
    public var endedTotals = AllocationCounters()
    /// Allocations ended, indexed by `AllocationEndReason.rawValue`.
    public var ended = [UInt64](repeating: 0, count: AllocationEndReason.allCases.count)
    /// CreatePermission/ChannelBind/Connect refused because the peer policy denies the address (403).
    public var refusedByPolicy: UInt64 = 0
    public init() {}
}

/// Why an allocation ended.
public enum AllocationEndReason: Int, CaseIterable, Sendable {
    /// Its lifetime ran out without a Refresh (RFC 8656 section 7).
    case expired
    /// A Refresh with LIFETIME 0 (RFC 8656 section 7.2).
    case refreshed
    /// The stream connection it was made over closed (RFC 8656 section 3.1).
    case connectionClosed
    /// `DELETE /allocations/{id}` on the admin endpoint.
    case admin
    /// The server stopped.
    case shutdown

    public var label: String {
        switch self {
        case .expired: "expired"
        case .refreshed: "refresh"
        case .connectionClosed: "connection_closed"
        case .admin: "admin"
        case .shutdown: "shutdown"
        }
    }
}
