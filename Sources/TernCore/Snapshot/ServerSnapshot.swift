import STUN

/// Every figure the admin endpoint shows, summed over the workers at one moment. Built by the event
/// loop (each worker's part read on its own queue), read by the admin endpoint, which never touches
/// a worker. `Codable` so that `/stats` is this value as JSON.
public struct ServerSnapshot: Codable, Sendable, Equatable {
    public var version: String = ternVersion
    public var uptimeSeconds: UInt64 = 0
    /// Every listener bound, not draining, below the capacity, and the public relay
    /// address discovered where `relay.discoverExternal` asks for it (`/readyz`).
    public var ready = false
    public var draining = false
    /// Live allocations have reached the capacity (`cluster.capacity`, else `limits.allocationsTotal`):
    /// new ones are redirected (300) or refused (508), and `/readyz` is 503.
    public var atCapacity = false
    /// The advertised relay address of each family: configured, discovered or pending
    /// (`relay.externalIPv4/6`, `relay.discoverExternal`). Empty when neither is set.
    public var externalAddresses: [ExternalAddressStatus] = []
    public var allocations = AllocationFigures()
    /// Requests answered: method label -> result label ("success" or an error code) -> count. Only non-zero entries.
    public var requests: [String: [String: UInt64]] = [:]
    /// Authentication failures by reason (RFC 8489 section 9.2.4).
    public var authFailures: [String: UInt64] = [:]
    public var relayed = RelayedTraffic()
    /// Datagrams and messages dropped, by reason.
    public var dropped: [String: UInt64] = [:]
    /// Requests, connections and datagrams a `limits` entry stopped, by limit: allocation_rate,
    /// user_quota, ip_quota, total_allocations, bandwidth, unauthenticated_rate, connections_per_ip,
    /// handshakes_in_flight.
    public var limited: [String: UInt64] = [:]
    /// Open client connections by transport: tcp, tls, dtls.
    public var connections: [String: Int] = ["tcp": 0, "tls": 0, "dtls": 0]
    public var relayPorts = RelayPortFigures()
    /// PROXY protocol listeners: connections whose header was read ("accepted"), and those refused
    /// or closed, by reason: "untrusted" (source not in `trusted`), "malformed", "missing" (closed or
    /// timed out before a complete header).
    public var proxyProtocol: [String: UInt64] = ["accepted": 0, "untrusted": 0, "malformed": 0, "missing": 0]
    /// The kernel fast path (`io.offload`).
    public var offload = OffloadFigures()
    public var workers: [WorkerFigures] = []
    /// Per-user traffic; only when `admin.perUserMetrics` is on (label sets would grow without bound).
    public var users: [String: UserFigures]? = nil

    public init() {}
}

/// The kernel fast path (`io.offload`): whether it runs, where, and what its program counted.
/// What it relayed is also in `relayed` and in each allocation's counters.
public struct OffloadFigures: Codable, Sendable, Equatable {
    /// "off" or "tc", as configured.
    public var mode = "off"
    /// The program is loaded and attached.
    public var active = false
    /// "tcx" (links the kernel detaches when Tern exits) or "tc" (filters, pre-6.6 kernels).
    public var attachment: String? = nil
    public var interfaces: [String] = []
    /// Why "tc" was asked for and is not active (Tern relays in user space then).
    public var unavailableReason: String? = nil
    /// Entries in the program's maps (two per offloaded channel).
    public var entries = 0
    /// The program's own counters: relayed_to_peer, relayed_to_client, and datagrams it passed to
    /// user space (passed_expired, passed_length, passed_route) or dropped (dropped_bandwidth).
    public var kernel: [String: UInt64] = [:]
    public init() {}
}

/// Where the relay address XOR-RELAYED-ADDRESS advertises for one address family comes from.
public struct ExternalAddressStatus: Codable, Sendable, Equatable {
    /// What discovery (or the config) found.
    public enum State: String, Codable, Sendable {
        /// `relay.externalIPv4/6` is set: it is advertised, and no discovery runs for the family.
        case configured
        /// Discovery has not answered yet (`/readyz` is 503 meanwhile).
        case pending
        /// Behind a 1:1 NAT: the mapped address is advertised.
        case discovered
        /// No NAT: the mapped address is the host's own, which relays already advertise.
        case direct
        /// The NAT changed the port: it is not 1:1, relaying through it would break, and nothing
        /// is advertised in its name.
        case notOneToOne = "not_one_to_one"
        /// No server answered; retried with backoff up to a minute.
        case failed

        /// The advertised address is known (or there is none to know): `/readyz` may answer 200.
        public var isSettled: Bool { self == .configured || self == .discovered || self == .direct }
    }
    /// "ipv4" or "ipv6".
    public var family: String
    public var state: State
    /// The address advertised for the family (configured or discovered), if any.
    public var advertised: String?
    /// "relay.externalIPv4", or the STUN server that answered (or was last asked).
    public var source: String
    /// The local relay-range address the Binding was sent from, and what the server saw.
    public var local: String?
    public var mapped: String?
    /// Why the last attempt failed, when it did.
    public var error: String?

    public init(family: String, state: State, advertised: String? = nil, source: String,
                local: String? = nil, mapped: String? = nil, error: String? = nil) {
        self.family = family
        self.state = state
        self.advertised = advertised
        self.source = source
        self.local = local
        self.mapped = mapped
        self.error = error
    }
}

public struct AllocationFigures: Codable, Sendable, Equatable {
    public var active = 0
    /// Live allocations by client transport and relayed address family.
    public var activeBy: [ActiveAllocations] = []
    public var created: UInt64 = 0
    /// Ended allocations by reason: expired, refresh, connection_closed, admin, shutdown.
    public var ended: [String: UInt64] = [:]
    /// Allocate requests refused, by error code.
    public var refused: [String: UInt64] = [:]
    /// Allocate answered with 300 Try Alternate, by reason: capacity (`cluster.capacity`), drain.
    public var redirected: [String: UInt64] = ["capacity": 0, "drain": 0]
    /// Live allocations at which Allocate is redirected (`cluster.capacity`, else
    /// `limits.allocationsTotal`); 0: no capacity set.
    public var capacity = 0
    public init() {}
}

public struct ActiveAllocations: Codable, Sendable, Equatable {
    public var transport: String
    public var family: String
    public var count: Int
    public init(transport: String, family: String, count: Int) {
        self.transport = transport
        self.family = family
        self.count = count
    }
}

public struct Traffic: Codable, Sendable, Equatable {
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    public init(packets: UInt64 = 0, bytes: UInt64 = 0) {
        self.packets = packets
        self.bytes = bytes
    }
}

public struct RelayedTraffic: Codable, Sendable, Equatable {
    public var clientToPeer = Traffic()
    public var peerToClient = Traffic()
    public init() {}

    public init(_ c: AllocationCounters) {
        clientToPeer = Traffic(packets: c.packetsToPeer, bytes: c.bytesToPeer)
        peerToClient = Traffic(packets: c.packetsToClient, bytes: c.bytesToClient)
    }
}

public struct RelayPortFigures: Codable, Sendable, Equatable {
    /// Relay sockets open (UDP relays, TCP relay listeners) plus EVEN-PORT reservations.
    public var inUse = 0
    /// Ports of `relay.portRange` not used by Tern (other processes may hold some of them).
    public var free = 0
    public var rangeSize = 0
    public init() {}
}

public struct WorkerFigures: Codable, Sendable, Equatable {
    public var index: Int
    public var allocations = 0
    public var connections = 0
    public var relaySockets = 0
    public var datagramsReceived: UInt64 = 0
    public var datagramsSent: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    public var bytesSent: UInt64 = 0
    /// Dispatch read-source firings: each costs a wake-up; packets per firing is the batching figure.
    public var readFirings: UInt64 = 0
    public var relayedPackets: UInt64 = 0
    public init(index: Int) { self.index = index }
}

public struct UserFigures: Codable, Sendable, Equatable {
    public var allocations = 0
    public var relayed = RelayedTraffic()
    public init() {}
}

/// One allocation as the admin endpoint shows it.
public struct AllocationInfo: Codable, Sendable, Equatable {
    public var id: String
    public var user: String
    public var client: String
    public var server: String
    public var transport: String
    public var relayed: [String]
    public var relayTransport: String
    public var lifetimeSeconds: UInt64
    public var ageSeconds: UInt64
    public var permissions: [String]
    public var channels: [ChannelInfo]
    public var relayedTraffic: RelayedTraffic
    public var worker: Int

    public struct ChannelInfo: Codable, Sendable, Equatable {
        public var number: Int
        public var peer: String
    }
}

/// `GET /users/{name}`: a user's live allocations and traffic (ended allocations included).
public struct UserInfo: Codable, Sendable, Equatable {
    public var user: String
    public var allocations: [AllocationInfo]
    public var relayed: RelayedTraffic
    public init(user: String, allocations: [AllocationInfo], relayed: RelayedTraffic) {
        self.user = user
        self.allocations = allocations
        self.relayed = relayed
    }
}

/// What the admin endpoint needs from the running server. The event loop implements it; the admin
/// endpoint depends on this protocol only.
public protocol AdminBackend: AnyObject, Sendable {
    func snapshot(perUser: Bool) async -> ServerSnapshot
    /// Live allocations; `user` matches the user id (REST usernames by their user part), `client` the
    /// client's IP or IP:port.
    func allocations(user: String?, client: String?) async -> [AllocationInfo]
    func allocation(id: String) async -> AllocationInfo?
    /// Ends the allocation at once (relay sockets closed). False if there is none with that id.
    func deleteAllocation(id: String) async -> Bool
    func user(_ name: String) async -> UserInfo
    /// Ends every live allocation of `name` (a TURN REST user by its `<id>`); how many ended.
    func deleteAllocations(ofUser name: String) async -> Int
    /// A TURN REST credential with the server's public URLs (`POST /credentials`).
    func issueCredential(user: String?, ttl: Int?) async -> Result<IceServer, CredentialIssuer.Problem>
    /// Listeners bound and not draining.
    var isReady: Bool { get }
}

/// The version string shown by `/stats` and `tern --version`.
public let ternVersion = "0.5.0"
