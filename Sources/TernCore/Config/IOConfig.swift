/// Event-loop tuning (`io`), used as is by the event loop. The defaults are what the benchmark
/// measured best (see BENCHMARKS.md).
public struct IOConfig: Sendable, Equatable {
    public enum EventLoop: String, Sendable {
        /// One long-lived DispatchSourceRead per UDP socket.
        case sources
        /// One DispatchSourceRead per worker over a worker-private epoll set holding every UDP socket of
        /// the worker (client endpoints and relays): one firing serves every ready socket, and the
        /// worker lingers briefly in epoll before giving the thread back to Dispatch.
        case epoll
    }

    /// Where UDP ChannelData is relayed (`io.offload`).
    public enum Offload: String, Sendable {
        /// In user space only (the default).
        case off
        /// Also by a TC classifier (eBPF) at the ingress of `offloadInterfaces`: ChannelData over
        /// UDP/IPv4 with a bound channel never reaches user space. Needs CAP_BPF and CAP_NET_ADMIN;
        /// without them, or where the kernel refuses the program, Tern logs why and relays in user space.
        case tc
    }

    public var eventLoop: EventLoop = .epoll
    public var offload: Offload = .off
    /// The devices whose ingress the classifier attaches to (`io.offloadInterfaces`); nil: every
    /// interface that is up.
    public var offloadInterfaces: [String]? = nil
    /// With `epoll`: how long (microseconds) a worker waits for more datagrams after the last ready
    /// one before returning to Dispatch. Waiting in epoll costs one sleep and wake-up; returning costs
    /// a Dispatch firing (about 8 system calls and 3 context switches). 0 returns at once.
    public var lingerMicroseconds = 200
    /// SO_RCVBUF/SO_SNDBUF of the client-facing UDP sockets, bytes (0: the system default). Every
    /// client's packets queue on these few sockets, so they get room for bursts by default (coturn
    /// sets 2 MiB on its listeners too); the kernel caps it at net.core.rmem_max unless Tern may force it.
    public var receiveBuffer = 2 << 20
    public var sendBuffer = 0
    /// The same for relay sockets, one per allocation (0: the system default, net.core.rmem_default;
    /// see deploy/99-tern-sysctl.conf).
    public var relayReceiveBuffer = 0
    public var relaySendBuffer = 0
    /// UDP GSO (UDP_SEGMENT) for runs of equal-size datagrams from one relay socket to one peer.
    public var gso = true

    public init() {}
}
