import STUN

/// The client's side of the 5-tuple that keys an allocation (RFC 8656 section 2.2): client address,
/// server address, and transport.
public struct FiveTuple: Hashable, Sendable {
    public var client: TransportAddress
    public var server: TransportAddress
    public var transport: ClientTransport

    public init(client: TransportAddress, server: TransportAddress, transport: ClientTransport) {
        self.client = client
        self.server = server
        self.transport = transport
    }
}

/// Live counters of one allocation (plain integers, worker-owned).
public struct AllocationCounters: Sendable, Equatable {
    /// Client to peer.
    public var packetsToPeer: UInt64 = 0
    public var bytesToPeer: UInt64 = 0
    /// Peer to client.
    public var packetsToClient: UInt64 = 0
    public var bytesToClient: UInt64 = 0
    /// Peer datagrams dropped because no permission covered the peer (RFC 8656 section 9).
    public var droppedNoPermission: UInt64 = 0
    /// Datagrams (either direction) dropped because the allocation or its user was over its bandwidth.
    public var droppedBandwidth: UInt64 = 0
    public init() {}

    public mutating func add(_ c: AllocationCounters) {
        packetsToPeer &+= c.packetsToPeer
        bytesToPeer &+= c.bytesToPeer
        packetsToClient &+= c.packetsToClient
        bytesToClient &+= c.bytesToClient
        droppedNoPermission &+= c.droppedNoPermission
        droppedBandwidth &+= c.droppedBandwidth
    }
}

/// One relay socket of an allocation and the address advertised for it.
public struct RelaySlot: Sendable {
    public var handle: RelayHandle
    public var bound: TransportAddress
    /// What XOR-RELAYED-ADDRESS says: `externalIPv4/6` with the bound port when configured.
    public var advertised: TransportAddress
}

/// What `Allocation.bindChannel` did (RFC 8656 section 11.2).
public enum ChannelBindOutcome: Equatable, Sendable {
    /// Bound (or refreshed, when `new` is false), with the permission for the peer's IP.
    case bound(new: Bool)
    /// The channel number is bound to another peer.
    case channelBoundToOtherPeer
    /// The peer is bound to another channel number.
    case peerBoundToOtherChannel
    /// A new channel would pass `maxChannels`.
    case tooManyChannels
    /// The permission it needs would be a new one past `maxPermissions`.
    case tooManyPermissions
}

/// RFC 8656 section 2.2 and 5: the state of one allocation. Owned by one worker; never shared.
///
/// The allocation keeps its own invariants: permissions, channel bindings and their reverse index
/// change only through `permit`, `bindChannel` and `expire(now:)`, so a channel bound to a peer
/// always has the peer in `channelByPeer` and a permission installed with it.
public final class Allocation {
    public let id: UInt64
    public let fiveTuple: FiveTuple
    public let route: ClientRoute
    public let username: String
    /// The long-term key the Allocate was authenticated with, and its algorithm: later requests on
    /// this allocation must use the same credentials (RFC 8656 section 7.2 / 441 Wrong Credentials).
    let key: [UInt8]
    let algorithm: PasswordAlgorithm
    public let relays: [RelaySlot]
    /// Monotonic second at which the allocation expires.
    public private(set) var expiry: UInt64
    /// Installed permissions: peer IP -> monotonic expiry (RFC 8656 section 9: ports are ignored).
    public private(set) var permissions: [IPAddress: UInt64] = [:]
    /// Channel bindings (RFC 8656 section 11): both directions, same expiry.
    public private(set) var channels: [UInt16: ChannelBinding] = [:]
    /// The reverse of `channels`: which channel each bound peer has.
    public private(set) var channelByPeer: [TransportAddress: UInt16] = [:]
    public internal(set) var counters = AllocationCounters()
    public let dontFragment: Bool
    /// RFC 6062: the relayed transport address is TCP.
    public let tcpRelay: Bool
    /// RFC 6062 peer connections of this allocation (connect in progress, or established), by id.
    var tcpPeers: [UInt32: TCPPeer] = [:]
    /// The Connect awaiting its connection's outcome, to answer it then (RFC 6062 section 5.2).
    struct TCPPeer {
        var peer: TransportAddress
        var pendingConnect: (transaction: TransactionID, sha256: Bool, fingerprint: Bool)?
    }
    /// RFC 8656 section 7.2: a retransmitted Allocate gets the very same success response.
    let allocateTransaction: TransactionID
    let allocateResponse: [UInt8]
    public let createdAt: UInt64
    /// `limits.bandwidthPerAllocation` when it was made (0: unlimited), this second's budget left,
    /// and the bucket of its user (`limits.bandwidthPerUser`).
    public let bandwidthRate: Int
    private var bandwidthSecond: UInt64 = .max
    private var bandwidthLeft = 0
    let userBandwidth: UserBandwidth?
    /// Whether the user has a budget of its own (`limits.bandwidthPerUser`), shared across its
    /// allocations: the kernel fast path cannot spend it, so such allocations stay in user space.
    public var hasUserBandwidth: Bool { userBandwidth != nil }

    public struct ChannelBinding: Sendable, Equatable {
        public var peer: TransportAddress
        public var expiry: UInt64
    }

    init(id: UInt64, fiveTuple: FiveTuple, route: ClientRoute, username: String, key: [UInt8],
         algorithm: PasswordAlgorithm, relays: [RelaySlot], expiry: UInt64, dontFragment: Bool, tcpRelay: Bool,
         transaction: TransactionID, response: [UInt8], bandwidthRate: Int, userBandwidth: UserBandwidth?,
         now: UInt64) {
        self.id = id
        self.fiveTuple = fiveTuple
        self.route = route
        self.username = username
        self.key = key
        self.algorithm = algorithm
        self.relays = relays
        self.expiry = expiry
        self.dontFragment = dontFragment
        self.tcpRelay = tcpRelay
        self.allocateTransaction = transaction
        self.allocateResponse = response
        self.bandwidthRate = bandwidthRate
        self.userBandwidth = userBandwidth
        self.createdAt = now
    }

    /// RFC 8656 section 7.3: a Refresh with a non-zero lifetime moves the expiry to `now + lifetime`.
    func refresh(lifetime: UInt32, now: UInt64) {
        expiry = now + UInt64(lifetime)
    }

    /// Whether a permission for `ip` is installed (live or not yet swept): installing one more
    /// for it would not add to the count.
    @inline(__always)
    func hasPermissionEntry(_ ip: IPAddress) -> Bool { permissions[ip] != nil }

    /// RFC 8656 section 9: installs the permission for `peer` (its IP; ports are ignored) or
    /// refreshes it, to last `lifetime` seconds from `now`. Returns true when it is a new one.
    /// Limits are the caller's: CreatePermission checks all its peers first (all or nothing).
    @discardableResult
    func permit(_ peer: IPAddress, now: UInt64, lifetime: UInt32) -> Bool {
        permissions.updateValue(now + UInt64(lifetime), forKey: peer) == nil
    }

    /// RFC 8656 section 11.2: binds `number` to `peer` (or refreshes the binding) and installs or
    /// refreshes the permission for the peer's IP, together or not at all. Refused when the number
    /// is bound to another peer, the peer to another number, or a new channel or permission would
    /// pass its limit. Range and policy checks are the caller's.
    func bindChannel(_ number: UInt16, peer: TransportAddress, now: UInt64, channelLifetime: UInt32,
                     permissionLifetime: UInt32, maxChannels: Int, maxPermissions: Int) -> ChannelBindOutcome {
        if let bound = channels[number], bound.peer != peer { return .channelBoundToOtherPeer }
        if let other = channelByPeer[peer], other != number { return .peerBoundToOtherChannel }
        let isNew = channels[number] == nil
        if isNew && !LimitsConfig.allows(channels.count, under: maxChannels) { return .tooManyChannels }
        if !hasPermissionEntry(peer.ip) && !LimitsConfig.allows(permissions.count, under: maxPermissions) { return .tooManyPermissions }
        channels[number] = ChannelBinding(peer: peer, expiry: now + UInt64(channelLifetime))
        channelByPeer[peer] = number
        permit(peer.ip, now: now, lifetime: permissionLifetime)
        return .bound(new: isNew)
    }

    /// The live binding of channel `number`, if any.
    @inline(__always)
    func channel(_ number: UInt16, now: UInt64) -> ChannelBinding? {
        guard let b = channels[number], b.expiry > now else { return nil }
        return b
    }

    /// The live channel bound to `peer`, if any (peer data goes out as ChannelData then).
    @inline(__always)
    func channel(toPeer peer: TransportAddress, now: UInt64) -> UInt16? {
        guard let n = channelByPeer[peer], let b = channels[n], b.expiry > now else { return nil }
        return n
    }

    /// RFC 8656 sections 9 and 11: drops the permissions and channel bindings whose time is up,
    /// keeping `channels` and `channelByPeer` the reverse of each other. Nothing is rebuilt when
    /// nothing ended. (The allocation's own expiry is the handler's: it frees sockets and quotas.)
    func expire(now: UInt64) {
        if permissions.contains(where: { $0.value <= now }) {
            permissions = permissions.filter { $0.value > now }
        }
        if channels.contains(where: { $0.value.expiry <= now }) {
            for (n, c) in channels where c.expiry <= now {
                channels[n] = nil
                channelByPeer[c.peer] = nil
            }
        }
    }

    /// The relay slot for a peer of `family`, if the allocation has one (dual allocations have two).
    @inline(__always)
    public func relay(for family: AddressFamily) -> RelaySlot? {
        for r in relays where r.bound.ip.family == family { return r }
        return nil
    }

    /// Takes `bytes` of relayed payload from this second's budgets (the allocation's, then its
    /// user's); false when either is spent, and the datagram is dropped. Worker-owned state plus one
    /// atomic for the user: no lock, no allocation.
    @inline(__always)
    func spendBandwidth(_ bytes: Int, now: UInt64) -> Bool {
        if bandwidthRate > 0 {
            if bandwidthSecond != now {
                bandwidthSecond = now
                bandwidthLeft = bandwidthRate
            }
            guard bandwidthLeft >= bytes else { return false }
            bandwidthLeft -= bytes
        }
        if let userBandwidth, !userBandwidth.spend(bytes, now: now) {
            if bandwidthRate > 0 { bandwidthLeft += bytes }
            return false
        }
        return true
    }

    @inline(__always)
    func hasPermission(_ ip: IPAddress, now: UInt64) -> Bool {
        guard let e = permissions[ip] else { return false }
        return e > now
    }
}
