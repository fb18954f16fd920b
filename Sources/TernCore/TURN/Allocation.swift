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

/// RFC 8656 section 2.2 and 5: the state of one allocation. Owned by one worker; never shared.
public final class Allocation {
    public let id: UInt64
    public let fiveTuple: FiveTuple
    public let route: ClientRoute
    public let username: String
    /// The long-term key the Allocate was authenticated with, and its algorithm: later requests on
    /// this allocation must use the same credentials (RFC 8656 section 7.2 / 441 Wrong Credentials).
    let key: [UInt8]
    let algorithm: PasswordAlgorithm
    public internal(set) var relays: [RelaySlot]
    /// Monotonic second at which the allocation expires.
    public internal(set) var expiry: UInt64
    /// Installed permissions: peer IP -> monotonic expiry (RFC 8656 section 9: ports are ignored).
    public internal(set) var permissions: [IPAddress: UInt64] = [:]
    /// Channel bindings (RFC 8656 section 11): both directions, same expiry.
    public internal(set) var channels: [UInt16: ChannelBinding] = [:]
    var channelByPeer: [TransportAddress: UInt16] = [:]
    public internal(set) var counters = AllocationCounters()
    public let dontFragment: Bool
    /// RFC 6062: the relayed transport address is TCP.
    public internal(set) var tcpRelay = false
    /// RFC 6062 peer connections of this allocation (connect in progress, or established), by id.
    var tcpPeers: [UInt32: TCPPeer] = [:]
    /// The Connect awaiting its connection's outcome, to answer it then (RFC 6062 section 5.2).
    struct TCPPeer {
        var peer: TransportAddress
        var pendingConnect: (transaction: TransactionID, sha256: Bool, fingerprint: Bool)?
    }
    /// RFC 8656 section 7.2: a retransmitted Allocate gets the very same success response.
    let allocateTransaction: TransactionID
    var allocateResponse: [UInt8]
    public let createdAt: UInt64
    /// `limits.bandwidthPerAllocation` when it was made (0: unlimited), this second's budget left,
    /// and the bucket of its user (`limits.bandwidthPerUser`).
    var bandwidthRate = 0
    private var bandwidthSecond: UInt64 = .max
    private var bandwidthLeft = 0
    var userBandwidth: UserBandwidth?

    public struct ChannelBinding: Sendable {
        public var peer: TransportAddress
        public var expiry: UInt64
    }

    init(id: UInt64, fiveTuple: FiveTuple, route: ClientRoute, username: String, key: [UInt8],
         algorithm: PasswordAlgorithm, relays: [RelaySlot], expiry: UInt64, dontFragment: Bool,
         transaction: TransactionID, now: UInt64) {
        self.id = id
        self.fiveTuple = fiveTuple
        self.route = route
        self.username = username
        self.key = key
        self.algorithm = algorithm
        self.relays = relays
        self.expiry = expiry
        self.dontFragment = dontFragment
        self.allocateTransaction = transaction
        self.allocateResponse = []
        self.createdAt = now
    }

    /// The relay slot for a peer of `family`, if the allocation has one (dual allocations have two).
    @inline(__always)
    func relay(for family: AddressFamily) -> RelaySlot? {
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
