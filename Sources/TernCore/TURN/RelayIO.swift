import STUN

/// A relay socket as the core sees it: an opaque id that the event loop hands out and maps to its
/// socket. Never a descriptor: the core only compares and hashes it.
public struct RelayHandle: Hashable, Sendable {
    public let id: UInt32
    public init(id: UInt32) { self.id = id }
}

public struct OpenedRelay: Sendable {
    public var handle: RelayHandle
    /// The address the socket is bound to (concrete, never a wildcard).
    public var bound: TransportAddress
    /// With EVEN-PORT's R bit: a second socket bound to `bound.port + 1`, held for a later Allocate.
    public var reservedNext: OpenedRelay.Reserved?

    public struct Reserved: Sendable {
        public var handle: RelayHandle
        public var bound: TransportAddress
        public init(handle: RelayHandle, bound: TransportAddress) {
            self.handle = handle
            self.bound = bound
        }
    }

    public init(handle: RelayHandle, bound: TransportAddress, reservedNext: Reserved? = nil) {
        self.handle = handle
        self.bound = bound
        self.reservedNext = reservedNext
    }
}

public enum RelayOpenError: Error, Sendable, Equatable {
    /// No free port in `relay.portRange` (RFC 8656 section 7.2: 508 Insufficient Capacity).
    case noPortAvailable
    /// No relay address of that family is configured or usable (440).
    case familyUnavailable
    case system(Int32)
}

/// Where replies to a client go: which of the worker's client-facing sockets, and which addresses.
public struct ClientRoute: Hashable, Sendable {
    /// The worker-local index of the client-facing UDP socket (datagram clients).
    public var socket: Int
    /// The worker-local id of the client's stream connection; 0 for datagram clients.
    public var connection: UInt64
    public var client: TransportAddress
    public var local: TransportAddress
    public init(socket: Int, connection: UInt64 = 0, client: TransportAddress, local: TransportAddress) {
        self.socket = socket
        self.connection = connection
        self.client = client
        self.local = local
    }
}

/// What the core asks of the event loop. Implemented by the worker that owns the allocation; every
/// call happens on that worker's queue. The core never touches a socket itself.
public protocol RelayIO: AnyObject {
    /// Opens a UDP relay socket of `family` on a port from the configured range (an even one when
    /// `evenPort`, and then also holding `port + 1` when `reserveNext`), and starts reading from it.
    /// It binds the configured relay address of that family, or else `near` (the concrete server
    /// address the client reached) when it is of that family.
    func openRelay(family: AddressFamily, near: IPAddress, evenPort: Bool, reserveNext: Bool,
                   dontFragment: Bool) -> Result<OpenedRelay, RelayOpenError>
    /// Starts reading from a socket reserved earlier (RESERVATION-TOKEN) and makes it a relay socket.
    func adoptReserved(_ reserved: OpenedRelay.Reserved, dontFragment: Bool) -> OpenedRelay
    /// Closes a relay socket that is being read (its source is cancelled, then the descriptor closed).
    func closeRelay(_ handle: RelayHandle)
    /// Closes a reserved socket that was never adopted.
    func discardReserved(_ reserved: OpenedRelay.Reserved)
    /// RFC 6062 section 5.1: a TCP relayed transport address, a listening socket for peers' connections.
    func openTCPRelay(family: AddressFamily, near: IPAddress) -> Result<OpenedRelay, RelayOpenError>
    /// RFC 6062 section 5.2: starts a TCP connection from the relayed address to `peer`. The outcome
    /// comes back through `RequestHandler.peerConnectFinished`.
    func connectPeer(from relay: RelayHandle, to peer: TransportAddress, connectionID: UInt32)
    /// Sends one datagram from a relay socket to a peer. False when the kernel refused it.
    func sendToPeer(from handle: RelayHandle, to peer: TransportAddress, _ bytes: UnsafeRawBufferPointer) -> Bool
}
