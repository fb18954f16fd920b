/// Event-loop tuning (`io`). The defaults are what the benchmark measured best (see BENCHMARKS.md).
public struct IOConfig: Sendable, Equatable {
    /// "epoll": one Dispatch source per worker over a private epoll set of its UDP sockets;
    /// "sources": one Dispatch source per UDP socket.
    public var eventLoop: String = "epoll"
    /// Microseconds a busy worker keeps polling for more datagrams before returning to Dispatch.
    public var lingerMicroseconds = 200
    /// SO_RCVBUF / SO_SNDBUF of UDP listener sockets in bytes (0: the system default).
    public var receiveBuffer = 2 << 20
    public var sendBuffer = 0
    /// The same for relay sockets, one per allocation (0: the system default, net.core.rmem_default;
    /// see deploy/99-tern-sysctl.conf).
    public var relayReceiveBuffer = 0
    public var relaySendBuffer = 0
    /// UDP GSO for runs of equal-size datagrams from one relay socket to one peer.
    public var gso = true

    public init() {}
}
