import STUN

/// Where a packet came from and where it arrived: the client's side of the 5-tuple.
public struct PacketContext: Sendable {
    /// The client's source address as this server sees it: the reflexive address.
    public var client: TransportAddress
    /// The local address the packet arrived on (from IP_PKTINFO for wildcard UDP sockets).
    public var local: TransportAddress
    public var transport: ClientTransport
    /// The worker-local index of the UDP socket it arrived on, for sending back to the client later.
    public var socket: Int
    /// The worker-local id of the stream connection it arrived on (0 for datagrams).
    public var connection: UInt64
    /// The stream connection has already carried a message other than a ConnectionBind request
    /// (a ConnectionBind may be retried after its 401 challenge on the same connection).
    public var streamInUse = false

    public init(client: TransportAddress, local: TransportAddress, transport: ClientTransport, socket: Int = 0,
                connection: UInt64 = 0) {
        self.client = client
        self.local = local
        self.transport = transport
        self.socket = socket
        self.connection = connection
    }
}

/// What the event loop does after the handler looked at one packet.
public enum HandlerResult: Equatable, Sendable {
    /// Send the first `n` bytes of the response buffer back to the client.
    case reply(Int)
    /// Nothing to send (an indication, a response, or a request silently dropped).
    case noReply
    /// The bytes were not a valid STUN message or ChannelData: dropped (UDP) or the connection closed (streams).
    case malformed
    /// RFC 6062 section 5.4: send the first `n` bytes (the ConnectionBind success response), then the
    /// stream becomes a raw data connection joined to peer connection `connection`.
    case bindDataConnection(reply: Int, connection: UInt32, owner: Int)
    /// RFC 5780: send the first `n` bytes from `source` (one of the server's four NAT-behaviour
    /// addresses, as CHANGE-REQUEST asked) to `destination` (the client, at RESPONSE-PORT if given).
    case replyFrom(Int, source: TransportAddress, destination: TransportAddress)
}
