import Dispatch
import Logging
import STUN
import TernCore

/// One event-loop worker: a serial queue, the sockets whose sources fire on it, and the state those
/// sockets touch. Everything here is touched only on `queue`, so the hot path takes no lock.
///
/// Each worker has its own SO_REUSEPORT socket for every listener, so the kernel's 4-tuple hash sends
/// a given client to the same worker every time, and the client's state never leaves that worker.
public final class Worker: @unchecked Sendable {
    public let index: Int
    public let queue: DispatchQueue
    let logger: Logger
    let handler: RequestHandler
    var stats = IOStats()
    /// Most allocations live since memory was last given back (`releaseMemoryAfterMassExpiry`).
    private var allocationHighWater = 0

    var udpEndpoints: [UDPEndpoint] = []
    var dtlsEndpoints: [DTLSEndpoint] = []
    var tcpListeners: [TCPListener] = []
    /// Stream connections by their worker-local id (what a stream allocation's route names; never
    /// by descriptor, whose number is reused as soon as it is closed).
    var connections: [UInt64: StreamConnection] = [:]
    /// Connections on `proxyProtocol` listeners whose PROXY header is not read yet, by id.
    var pendingProxy: [UInt64: ProxyHeaderReader] = [:]
    private var lastConnectionID: UInt64 = 0
    /// UDP relay sockets and RFC 6062 TCP relayed addresses, by the handle the core knows them by.
    var relayTable = RelayTable()
    /// EVEN-PORT reservations, shared by every worker of the server.
    let reservedRelays: ReservedRelays
    /// Makes every socket this worker opens.
    let sockets: SocketFactory
    /// The server, to find sibling workers (ConnectionBind may land on any worker).
    weak var server: Server?
    /// One recvmmsg/sendmmsg batch for every UDP socket of this worker: handlers run one at a time
    /// on the queue, so one set of buffers serves them all (64 x 4 KiB received, 128 x 4 KiB to send).
    let batch = DatagramBatch(count: 64, sendCount: 128, slotSize: 4096)
    /// Relay-to-client datagrams waiting in the batch's first send slots. With the epoll loop, relay
    /// sockets leave them there and the poller sends them once per round of ready sockets
    /// (`flushPendingToClients`), so one sendmmsg carries the datagrams of many relay sockets: with
    /// many allocations each relay socket has one or two datagrams per round, which would otherwise
    /// cost a sendmmsg each.
    var pendingToClients = 0
    /// Runs of those datagrams to one client, merged into UDP GSO messages (`io.gso`).
    let segmented: SegmentedSends
    let relayAddresses: RelayConfig
    let connectionLimiter: ConnectionLimiter
    private var ticker: DispatchSourceTimer?
    /// Descriptors whose sources are cancelled but whose cancel handlers have not yet run.
    let closing = DispatchGroup()
    /// Replaced by a reload (on this queue); read where a limit applies, never cached.
    var limits: LimitsConfig
    let io: IOConfig
    /// The worker's epoll set with the `epoll` event loop (nil with per-socket Dispatch sources).
    var poller: Poller?
    /// Client-to-peer datagrams of the recvmmsg batch being handled, sent together when it is done.
    let peerBatch: PeerSendBatch

    /// Scratch space for a reply to a stream message; a reply is copied into the connection's
    /// queue (or written at once), so one buffer per worker serves every connection.
    let streamResponse: UnsafeMutableRawBufferPointer

    init(index: Int, handler: RequestHandler, limits: LimitsConfig, relayAddresses: RelayConfig,
         connectionLimiter: ConnectionLimiter, reservedRelays: ReservedRelays = ReservedRelays(),
         io: IOConfig = IOConfig(), logger: Logger) {
        self.index = index
        self.reservedRelays = reservedRelays
        self.sockets = SocketFactory(io: io)
        self.connectionLimiter = connectionLimiter
        self.relayAddresses = relayAddresses
        self.queue = DispatchQueue(label: "tern.worker.\(index)", qos: .userInitiated)
        self.handler = handler
        self.limits = limits
        self.io = io
        self.peerBatch = PeerSendBatch(capacity: 64, gso: io.gso)
        self.segmented = SegmentedSends(capacity: batch.sendCount, enabled: io.gso)
        var logger = logger
        logger[metadataKey: "worker"] = "\(index)"
        self.logger = logger
        self.streamResponse = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536 + 64, alignment: 16)
        handler.relayIO = self
        handler.workerIndex = index
        if io.eventLoop == .epoll {
            do {
                // Its Dispatch source starts with the worker (`startTicking`): a server whose start
                // fails, or that is never started, leaves no source (and no DispatchGroup entry) behind.
                poller = try Poller(worker: self, lingerMicroseconds: io.lingerMicroseconds)
            } catch {
                self.logger.warning("epoll unavailable, using a Dispatch source per socket", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Sends the client-to-peer datagrams collected so far (end of a recvmmsg batch).
    @inline(__always)
    func flushPeerBatch() {
        guard peerBatch.count > 0 else { return }
        let r = peerBatch.flush()
        stats.datagramsSent &+= UInt64(r.sent)
        stats.bytesSent &+= UInt64(r.bytes)
        stats.sendDropped &+= UInt64(r.dropped)
    }

    /// Sends the relay-to-client datagrams left in the send slots (end of a poller round, and before
    /// anything else writes to the send slots).
    @inline(__always)
    func flushPendingToClients() {
        guard pendingToClients > 0 else { return }
        let n = pendingToClients
        pendingToClients = 0
        flushToClients(n)
    }

    func nextConnectionID() -> UInt64 {
        lastConnectionID &+= 1
        return lastConnectionID
    }

    /// Starts the once-a-second tick that advances the handler's clocks and expires allocations,
    /// permissions and channels: timers cost nothing per packet.
    func startTicking() {
        dispatchPrecondition(condition: .onQueue(queue))
        poller?.start()
        tick()
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + .seconds(1), repeating: .seconds(1), leeway: .milliseconds(100))
        timer.setEventHandler { [unowned self] in self.tick() }
        ticker = timer
        timer.activate()
    }

    /// RFC 5780: a reply from another of this worker's UDP sockets (CHANGE-REQUEST) or to another
    /// port (RESPONSE-PORT). Dropped and counted when no socket is bound to `source`.
    func send(_ bytes: UnsafeRawBufferPointer, from source: TransportAddress, to destination: TransportAddress) {
        guard let endpoint = udpEndpoints.first(where: { $0.bound == source && !$0.closed }) else {
            stats.sendDropped &+= 1
            return
        }
        let address = TernSocketAddress(destination)
        let ok = address.withSockAddr { sa, len in Posix.sendto(endpoint.socket.fd, bytes, to: sa, length: len) }
        if ok {
            stats.datagramsSent &+= 1
            stats.bytesSent &+= UInt64(bytes.count)
        } else {
            stats.sendDropped &+= 1
        }
    }

    /// Whether one more TLS/DTLS handshake from `client` may start: within the server-wide
    /// `handshakesInFlight` and within its source's share of them (`handshakesPerIP`). A handshake
    /// costs a key exchange, and a connection that never sends a ClientHello holds its slot until the
    /// handshake timeout, so past either limit new ones are refused and counted.
    func admitHandshake(_ client: IPAddress) -> Bool {
        switch connectionLimiter.admitHandshake(client) {
        case nil:
            return true
        case .total?:
            stats.handshakesRefused &+= 1
        case .perIP?:
            stats.handshakesRefused &+= 1
            stats.handshakesRefusedPerIP &+= 1
        }
        return false
    }

    /// Gives back the slot `admitHandshake` took, once, when the handshake completes or its
    /// connection goes (`counted` is the connection's own flag, cleared here).
    func endHandshake(_ counted: inout Bool, client: IPAddress) {
        guard counted else { return }
        counted = false
        connectionLimiter.endHandshake(client)
    }

    /// Whether one more connection or association without an allocation may be held.
    func admitUnallocated() -> Bool {
        guard connectionLimiter.admitUnallocated() else {
            stats.refusedWithoutAllocation &+= 1
            return false
        }
        return true
    }

    /// Gives back the count `admitUnallocated` took, once (`counted` is the connection's own flag).
    func endUnallocated(_ counted: inout Bool) {
        guard counted else { return }
        counted = false
        connectionLimiter.releaseUnallocated()
    }

    /// Once a second (and on `Server.tick()` in tests): the handler reads its clock and expires
    /// what is due; then the worker's own timeouts, on the same reading.
    func tick() {
        handler.tick()
        let now = handler.now
        releaseMemoryAfterMassExpiry()
        expirePeerConnections(now: now)
        // TLS handshakes that take too long (slowloris-style clients) are cut off.
        let handshakeTimeout = server?.handshakeTimeout ?? UInt64(TLSConfig().handshakeTimeout)
        for d in dtlsEndpoints { d.tick(now: now, handshakeTimeout: handshakeTimeout) }
        if server?.tls != nil {
            for c in Array(connections.values) where c.tls.map({ !$0.handshakeComplete }) == true
                && c.createdAt &+ handshakeTimeout <= now {
                stats.tlsHandshakeTimeouts &+= 1
                c.close(reason: .idle)
            }
        }
        // A trusted proxy's connection that sends no complete PROXY header in the handshake time.
        for p in Array(pendingProxy.values) where p.createdAt &+ handshakeTimeout <= now { p.close(reason: .timeout) }
        // Idle and half-open stream connections: nothing from the client for `limits.streamIdleTimeout` and no
        // allocation holding the connection open.
        for c in connections.values where !c.raw && c.lastActivity &+ UInt64(limits.streamIdleTimeout) <= now {
            if handler.allocations.allocation(for: FiveTuple(client: c.client, server: c.local, transport: c.transport)) == nil {
                stats.tcpClosedIdle &+= 1
                c.close(reason: .idle)
            }
        }
    }

    /// When at least 1024 allocations have gone since the last high-water mark (clients that
    /// vanished, a flood that expired), the tables' spare capacity and the freed heap pages are given
    /// back to the system (malloc_trim), so RSS follows the load down instead of staying at its peak.
    private func releaseMemoryAfterMassExpiry() {
        let live = handler.allocations.count
        if live > allocationHighWater {
            allocationHighWater = live
            return
        }
        guard allocationHighWater - live >= 1024 else { return }
        handler.releaseSpareCapacity()
        relayTable.releaseSpareCapacity()
        poller?.releaseSpareCapacity()
        Posix.releaseFreeHeap()
        allocationHighWater = live
    }

    deinit {
        streamResponse.deallocate()
    }

    /// Cancels every source. Descriptors are closed in the sources' cancel handlers.
    func shutdown() {
        dispatchPrecondition(condition: .onQueue(queue))
        ticker?.cancel()
        ticker = nil
        handler.deallocateAll()
        for relay in relayTable.all {
            switch relay {
            case .udp(let r):
                relayTable.remove(r.handle)
                r.cancel()
            case .tcp(let l):
                relayTable.remove(l.handle)
                l.cancel()
            }
        }
        for e in udpEndpoints { e.cancel() }
        for d in dtlsEndpoints { d.cancel() }
        dtlsEndpoints.removeAll()
        for l in tcpListeners { l.cancel() }
        for c in Array(connections.values) { c.close(reason: .shutdown) }
        for p in Array(pendingProxy.values) { p.close(reason: .shutdown) }
        udpEndpoints.removeAll()
        tcpListeners.removeAll()
        poller?.stop()
        poller = nil
    }
}

/// Counters kept by the event loop itself (the handler keeps its own). Plain integers, one set per
/// worker, summed on read.
public struct IOStats: Sendable, Equatable {
    public var datagramsReceived: UInt64 = 0
    public var datagramsSent: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    public var bytesSent: UInt64 = 0
    /// Datagrams larger than a receive slot (MSG_TRUNC): dropped.
    public var oversizedDropped: UInt64 = 0
    /// Replies the kernel would not take (send buffer full) or refused: dropped.
    public var sendDropped: UInt64 = 0
    /// Read sources that fired: the unit of Dispatch's per-wake-up cost.
    public var readFirings: UInt64 = 0
    /// sendmmsg runs that carried relayed datagrams to UDP clients (`Worker.flushToClients`).
    public var clientSendCalls: UInt64 = 0
    /// sendmmsg messages to UDP clients that carried several datagrams as one UDP GSO send (relayed
    /// data, or replies to one client that happen to share a size).
    public var clientSegmentedSends: UInt64 = 0
    public var tcpAccepted: UInt64 = 0
    public var tcpClosed: UInt64 = 0
    /// Stream connections closed for a framing error or bytes that are not STUN.
    public var tcpClosedMalformed: UInt64 = 0
    /// Stream connections closed because the client stopped reading and the write queue filled.
    public var tcpClosedSlowReader: UInt64 = 0
    /// Relayed datagrams not queued for a stream client whose queue was half full.
    public var streamRelayDropped: UInt64 = 0
    public var acceptErrors: UInt64 = 0
    /// Connections refused at accept because the client IP already had `connectionsPerIP`.
    public var tcpRefusedPerIP: UInt64 = 0
    public var tcpClosedIdle: UInt64 = 0
    public var tlsHandshakeTimeouts: UInt64 = 0
    /// TLS connections closed at accept, and DTLS ClientHellos dropped, past `handshakesInFlight`.
    public var handshakesRefused: UInt64 = 0
    /// The same, because their source already had its share (`LimitsConfig.handshakesPerIP`).
    public var handshakesRefusedPerIP: UInt64 = 0
    /// Connections closed at accept, and DTLS associations refused, past `connectionsWithoutAllocation`.
    public var refusedWithoutAllocation: UInt64 = 0
    public var socketErrors: UInt64 = 0
    /// PROXY protocol listeners: headers read and connections handed on; connections refused at
    /// accept (source not in `trusted`); closed for a malformed header; closed, or timed out, before
    /// a complete header.
    public var proxyAccepted: UInt64 = 0
    public var proxyUntrusted: UInt64 = 0
    public var proxyMalformed: UInt64 = 0
    public var proxyMissing: UInt64 = 0

    public init() {}

    public static func + (a: IOStats, b: IOStats) -> IOStats {
        var s = IOStats()
        s.datagramsReceived = a.datagramsReceived &+ b.datagramsReceived
        s.datagramsSent = a.datagramsSent &+ b.datagramsSent
        s.bytesReceived = a.bytesReceived &+ b.bytesReceived
        s.bytesSent = a.bytesSent &+ b.bytesSent
        s.oversizedDropped = a.oversizedDropped &+ b.oversizedDropped
        s.sendDropped = a.sendDropped &+ b.sendDropped
        s.readFirings = a.readFirings &+ b.readFirings
        s.clientSendCalls = a.clientSendCalls &+ b.clientSendCalls
        s.clientSegmentedSends = a.clientSegmentedSends &+ b.clientSegmentedSends
        s.tcpAccepted = a.tcpAccepted &+ b.tcpAccepted
        s.tcpClosed = a.tcpClosed &+ b.tcpClosed
        s.tcpClosedMalformed = a.tcpClosedMalformed &+ b.tcpClosedMalformed
        s.tcpClosedSlowReader = a.tcpClosedSlowReader &+ b.tcpClosedSlowReader
        s.streamRelayDropped = a.streamRelayDropped &+ b.streamRelayDropped
        s.acceptErrors = a.acceptErrors &+ b.acceptErrors
        s.tcpRefusedPerIP = a.tcpRefusedPerIP &+ b.tcpRefusedPerIP
        s.tcpClosedIdle = a.tcpClosedIdle &+ b.tcpClosedIdle
        s.tlsHandshakeTimeouts = a.tlsHandshakeTimeouts &+ b.tlsHandshakeTimeouts
        s.handshakesRefused = a.handshakesRefused &+ b.handshakesRefused
        s.handshakesRefusedPerIP = a.handshakesRefusedPerIP &+ b.handshakesRefusedPerIP
        s.refusedWithoutAllocation = a.refusedWithoutAllocation &+ b.refusedWithoutAllocation
        s.socketErrors = a.socketErrors &+ b.socketErrors
        s.proxyAccepted = a.proxyAccepted &+ b.proxyAccepted
        s.proxyUntrusted = a.proxyUntrusted &+ b.proxyUntrusted
        s.proxyMalformed = a.proxyMalformed &+ b.proxyMalformed
        s.proxyMissing = a.proxyMissing &+ b.proxyMissing
        return s
    }
}
