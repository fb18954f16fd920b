#if canImport(Glibc)
import Glibc
#endif
import CTernShims
import Dispatch
import Foundation
import Logging
import STUN
import TernCore

/// A listener to open on every worker.
public struct ListenerSpec: Sendable, Hashable, CustomStringConvertible {
    public var transport: ClientTransport
    public var address: TransportAddress
    /// When true, an address family this host lacks (no IPv6, say) skips the listener with a warning
    /// instead of failing start-up. Used by the built-in default's wildcard listeners.
    public var optional: Bool

    public init(transport: ClientTransport, address: TransportAddress, optional: Bool = false) {
        self.transport = transport
        self.address = address
        self.optional = optional
    }

    public var description: String { "\(transport) \(address)" }
}

/// What start() bound, with the port the kernel chose when the spec asked for port 0.
public struct BoundListener: Sendable, Hashable, CustomStringConvertible {
    public var transport: ClientTransport
    public var address: TransportAddress
    public var description: String { "\(transport) \(address)" }
}

public struct ServerError: Error, CustomStringConvertible {
    public var description: String
}

/// Owns the workers and their sockets. `start()` binds every listener on every worker (one
/// SO_REUSEPORT socket per worker and listener) and starts their sources; `stop()` cancels all sources
/// and returns once every descriptor is closed.
public final class Server: @unchecked Sendable {
    public let workers: [Worker]
    private let listeners: [ListenerSpec]
    private let logger: Logger
    public private(set) var bound: [BoundListener] = []
    private var started = false

    private let handlerConfiguration: HandlerConfiguration
    private let connectionLimiter: ConnectionLimiter
    let relayAddresses: RelayAddresses
    public let io: IOConfig
    /// The TLS context of `tls` listeners; `reloadTLS` swaps it for new connections.
    public let tls: TLSContextHolder?
    /// The DTLS context of `dtls` listeners at start; `reloadDTLS` gives new associations another.
    public let dtls: TLSServerContext?

    /// New DTLS associations use `context` (SIGHUP); established ones keep their sessions.
    public func reloadDTLS(_ context: TLSServerContext) throws {
        for w in workers {
            try w.queue.sync {
                for e in w.dtlsEndpoints { e.listener = try DTLSListener(context: context) }
            }
        }
    }

    public init(listeners: [ListenerSpec], workerCount: Int, handlerConfiguration: HandlerConfiguration,
                relay: RelayAddresses = RelayAddresses(), limits: StreamLimits = StreamLimits(),
                tls: TLSContextHolder? = nil, dtls: TLSServerContext? = nil, io: IOConfig = IOConfig(),
                clock: CoarseClock = SystemClock(), logger: Logger) {
        self.tls = tls
        self.dtls = dtls
        precondition(workerCount >= 1, "at least one worker")
        self.listeners = listeners
        self.logger = logger
        self.handlerConfiguration = handlerConfiguration
        let limiter = ConnectionLimiter(limit: limits.connectionsPerIP)
        self.connectionLimiter = limiter
        self.relayAddresses = relay
        self.io = io
        self.workers = (0..<workerCount).map {
            Worker(index: $0, handler: RequestHandler(configuration: handlerConfiguration, clock: clock), limits: limits,
                   relayAddresses: relay, connectionLimiter: limiter, io: io, logger: logger)
        }
        for w in workers { w.server = self }
    }

    /// Sockets passed in by systemd socket activation (`LISTEN_FDS`), set before `start()`. Each is
    /// matched to the config listener with its socket type, address and port, and used by worker 0
    /// instead of binding (ports below 1024 then need no capability); the other workers add their own
    /// SO_REUSEPORT sockets when they may. Sockets that match no listener are closed.
    public var inherited: [Int32] = []

    private func takeInherited(_ spec: ListenerSpec, from pool: inout [Int32]) -> Int32? {
        let wantType = spec.transport == .udp || spec.transport == .dtls ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)
        for (i, fd) in pool.enumerated() {
            var type: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0, type == wantType,
                  let local = try? Posix.localAddress(fd).transportAddress, local == spec.address else { continue }
            pool.remove(at: i)
            // systemd passes blocking sockets; the event loop needs non-blocking ones.
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            if spec.transport == .udp && local.ip.isUnspecified { _ = tern_enable_pktinfo(fd, local.ip.family == .ipv6 ? 1 : 0) }
            return fd
        }
        return nil
    }

    /// One worker's socket for one listener, opened but not yet attached.
    private typealias Opened = (worker: Worker, spec: ListenerSpec, fd: Int32, local: TransportAddress)

    /// Binds everything, then starts every source. On any bind failure nothing is left open.
    @discardableResult
    public func start() throws -> [BoundListener] {
        precondition(!started, "start() once")
        started = true
        Posix.ignoreSIGPIPE()
        var opened: [Opened] = []
        var pool = inherited
        var bound: [(ListenerSpec, BoundListener)] = []
        do {
            for spec in listeners {
                if let b = try open(spec, pool: &pool, into: &opened) { bound.append((spec, b)) }
            }
        } catch {
            for o in opened { Posix.close(o.fd) }
            for fd in pool { Posix.close(fd) }
            throw error
        }
        for fd in pool {
            logger.warning("socket from systemd matches no listener: closed",
                           metadata: ["socket": "\((try? Posix.localAddress(fd).transportAddress).map { "\($0)" } ?? "fd \(fd)")"])
            Posix.close(fd)
        }
        attach(opened)
        for (spec, b) in bound { active[spec] = b }
        self.bound = bound.map(\.1)
        for worker in workers {
            worker.queue.sync { worker.startTicking() }
        }
        startedAt = Clocks.monotonicSeconds()
        return self.bound
    }

    /// Opens `spec` on every worker (from a socket-activation fd when one matches). Returns what was
    /// bound, or nil for an optional listener whose address family this host lacks.
    private func open(_ spec: ListenerSpec, pool: inout [Int32], into opened: inout [Opened]) throws -> BoundListener? {
        guard spec.transport == .udp || spec.transport == .tcp || (spec.transport == .tls && tls != nil)
                || (spec.transport == .dtls && dtls != nil) else {
            throw ServerError(description: "listener \(spec): a \(spec.transport) listener needs tls.certificate and tls.privateKey")
        }
        if let fd = takeInherited(spec, from: &pool) {
            logger.info("listener from socket activation", metadata: ["listener": "\(spec)"])
            opened.append((workers[0], spec, fd, spec.address))
            for worker in workers.dropFirst() {
                // Joining needs SO_REUSEPORT on the inherited socket (ReusePort=yes) and the right to bind.
                guard let extra = try? openSocket(spec, address: spec.address) else { break }
                opened.append((worker, spec, extra, spec.address))
            }
            return BoundListener(transport: spec.transport, address: spec.address)
        }
        do {
            try probeFree(spec)
        } catch let e as SystemError where spec.optional && (e.errno == EAFNOSUPPORT || e.errno == EADDRNOTAVAIL) {
            logger.warning("listener skipped: address family unavailable", metadata: ["listener": "\(spec)", "error": "\(e)"])
            return nil
        }
        var address = spec.address
        for worker in workers {
            let fd = try openSocket(spec, address: address)
            let local: TransportAddress
            do {
                local = try Posix.localAddress(fd).transportAddress
            } catch {
                Posix.close(fd)
                throw error
            }
            address.port = local.port  // port 0: later workers join the port the first one got
            opened.append((worker, spec, fd, local))
        }
        return BoundListener(transport: spec.transport, address: address)
    }

    /// Hands each opened socket to its worker and starts its source.
    private func attach(_ opened: [Opened]) {
        for (worker, spec, fd, local) in opened {
            worker.queue.sync {
                switch spec.transport {
                case .udp:
                    let e = UDPEndpoint(fd: fd, bound: local, worker: worker, index: worker.udpEndpoints.count)
                    worker.udpEndpoints.append(e)
                    e.start()
                case .dtls:
                    guard let context = dtls, let listener = try? DTLSListener(context: context) else {
                        Posix.close(fd)
                        break
                    }
                    let e = DTLSEndpoint(fd: fd, bound: local, worker: worker, index: worker.dtlsEndpoints.count, listener: listener)
                    worker.dtlsEndpoints.append(e)
                    e.start()
                default:
                    let l = TCPListener(fd: fd, bound: local, worker: worker, tls: spec.transport == .tls ? self.tls : nil)
                    worker.tcpListeners.append(l)
                    l.start()
                }
            }
        }
    }

    /// Configured listeners now open, with what each bound.
    private var active: [ListenerSpec: BoundListener] = [:]

    /// The listener specs now open, as configured (a port-0 spec stays port 0 here).
    public var configuredListeners: [ListenerSpec] {
        reconfigureLock.lock()
        defer { reconfigureLock.unlock() }
        return Array(active.keys)
    }
    private let reconfigureLock = NSLock()

    /// Reload: opens the listeners in `specs` that are not open yet and closes those no longer in it;
    /// the others, and every allocation and connection, are left alone. All new listeners are bound
    /// before anything is closed, so a bind failure changes nothing.
    public func reconcileListeners(_ specs: [ListenerSpec]) throws -> (added: [BoundListener], removed: [BoundListener]) {
        reconfigureLock.lock()
        defer { reconfigureLock.unlock() }
        let wanted = Set(specs)
        var opened: [Opened] = []
        var added: [(ListenerSpec, BoundListener)] = []
        var pool: [Int32] = []
        do {
            for spec in specs where active[spec] == nil {
                if let b = try open(spec, pool: &pool, into: &opened) { added.append((spec, b)) }
            }
        } catch {
            for o in opened { Posix.close(o.fd) }
            throw error
        }
        var removed: [BoundListener] = []
        for (spec, b) in active where !wanted.contains(spec) {
            for w in workers {
                w.queue.sync {
                    switch b.transport {
                    case .udp:
                        for e in w.udpEndpoints where e.bound == b.address && !e.closed { e.cancel() }
                    case .dtls:
                        for e in w.dtlsEndpoints where e.bound == b.address { e.cancel() }
                    default:
                        w.tcpListeners.removeAll { l in
                            guard l.bound == b.address, (l.tls != nil) == (b.transport == .tls) else { return false }
                            l.cancel()
                            return true
                        }
                    }
                }
            }
            active[spec] = nil
            removed.append(b)
        }
        attach(opened)
        for (spec, b) in added { active[spec] = b }
        bound = Array(active.values)
        return (added.map(\.1), removed)
    }

    /// Reload: stream limits for new checks (idle timeout, queue bound, connections per IP).
    public func updateLimits(_ limits: StreamLimits) {
        connectionLimiter.limit = limits.connectionsPerIP
        for w in workers { w.queue.sync { w.limits = limits } }
    }

    /// Reload: every worker's handler answers new requests with `turn` (credentials, policy, settings).
    public func updateTurn(_ turn: TurnContext?) {
        for w in workers { w.queue.sync { w.handler.reconfigure(turn: turn) } }
    }

    /// Drain: Allocate is refused from now on (508, or 300 with ALTERNATE-SERVER); existing
    /// allocations keep relaying. `/readyz` turns false.
    public func startDraining(_ mode: DrainMode) {
        draining = true
        for w in workers { w.queue.sync { w.handler.draining = mode } }
    }

    public private(set) var draining = false
    /// Monotonic second at which start() finished.
    public private(set) var startedAt: UInt64 = 0

    /// SO_REUSEPORT would let this process share a port with another Tern (or coturn) of the same
    /// user and silently split its traffic. A plain bind first tells "in use" apart.
    private func probeFree(_ spec: ListenerSpec) throws {
        guard spec.address.port != 0 else { return }
        let domain = spec.address.ip.family == .ipv6 ? AF_INET6 : AF_INET
        let type = spec.transport == .udp || spec.transport == .dtls ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)
        let fd = try Posix.socket(domain: domain, type: type)
        defer { Posix.close(fd) }
        if domain == AF_INET6 { try Posix.setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
        if type == Int32(SOCK_STREAM.rawValue) { try Posix.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1) }
        do {
            try Posix.bind(fd, TernSocketAddress(spec.address))
        } catch {
            if error.errno == EADDRINUSE {
                throw ServerError(description: "listener \(spec): address already in use (is another TURN server running?)")
            }
            throw error
        }
    }

    private func openSocket(_ spec: ListenerSpec, address: TransportAddress) throws -> Int32 {
        let v6 = address.ip.family == .ipv6
        let domain = v6 ? AF_INET6 : AF_INET
        let datagram = spec.transport == .udp || spec.transport == .dtls
        let type = datagram ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)
        let fd = try Posix.socket(domain: domain, type: type)
        do {
            if v6 { try Posix.setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
            try Posix.setOption(fd, SOL_SOCKET, tern_so_reuseport(), 1)
            if datagram && (io.receiveBuffer > 0 || io.sendBuffer > 0) {
                _ = tern_set_buffer_sizes(fd, Int32(clamping: io.receiveBuffer), Int32(clamping: io.sendBuffer))
            }
            if !datagram {
                try Posix.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            } else if address.ip.isUnspecified && spec.transport == .udp {
                // A wildcard UDP socket must answer from the address the request was sent to.
                if tern_enable_pktinfo(fd, v6 ? 1 : 0) != 0 {
                    throw SystemError("setsockopt(pktinfo)", errno: errno)
                }
            }
            try Posix.bind(fd, TernSocketAddress(address))
            if !datagram { try Posix.listen(fd, backlog: 1024) }
            return fd
        } catch {
            Posix.close(fd)
            throw error
        }
    }

    /// Cancels every source on every worker and waits until all descriptors are closed.
    public func stop() {
        for w in workers {
            w.queue.sync { w.shutdown() }
        }
        for w in workers {
            w.closing.wait()
        }
        // Port reservations (EVEN-PORT) not redeemed by now: their sockets never had a source.
        for r in workers[0].handler.turn?.shared.drainReservations() ?? [] {
            Posix.close(r.handle.raw)
        }
    }

    /// Every descriptor the workers hold now (listeners, endpoints, connections). For tests and diagnostics.
    public func openDescriptors() -> [Int32] {
        var fds: [Int32] = []
        for w in workers {
            w.queue.sync {
                fds += w.udpEndpoints.map(\.fd) + w.tcpListeners.map(\.fd) + w.connections.keys + w.relays.keys
                    + w.tcpRelays.keys
            }
        }
        return fds
    }

    /// Sums the per-worker counters, each read on its own worker's queue.
    public func stats() -> ServerStats {
        var total = ServerStats()
        for w in workers {
            w.queue.sync {
                total.io = total.io + w.stats
                total.handler = total.handler + w.handler.stats
                total.connections += w.connections.count
                total.allocations += w.handler.allocations.count
                total.relaySockets += w.relays.count + w.tcpRelays.count
                total.auth = total.auth + w.handler.turnCounters.auth
                let t = w.handler.turnCounters
                total.allocationsCreated &+= t.allocationsCreated
                total.allocationsExpired &+= t.allocationsExpired
                total.allocationsDeleted &+= t.allocationsDeleted
                for (code, n) in t.errors { total.turnErrors[code, default: 0] &+= n }
                total.droppedNoPermission &+= t.droppedNoPermission
                total.droppedNoChannel &+= t.droppedNoChannel
                total.droppedNoAllocation &+= t.droppedNoAllocation
            }
        }
        return total
    }

    /// Runs one tick on every worker now, each on its queue, and returns when all are done. Tests
    /// move their `ManualClock`, then call this instead of waiting for the once-a-second timer.
    public func tick() {
        for w in workers { w.queue.sync { w.tick() } }
    }

    /// Runs `body` on every worker's queue with its handler (tests and the admin endpoint).
    public func withHandlers<R>(_ body: (RequestHandler) -> R) -> [R] {
        workers.map { w in w.queue.sync { body(w.handler) } }
    }
}

/// Every worker's counters, summed.
public struct ServerStats: Sendable {
    public var io = IOStats()
    public var handler = HandlerStats()
    public var connections = 0
    public var allocations = 0
    public var relaySockets = 0
    public var allocationsCreated: UInt64 = 0
    public var allocationsExpired: UInt64 = 0
    public var allocationsDeleted: UInt64 = 0
    public var turnErrors: [Int: UInt64] = [:]
    public var auth = AuthFailureCounters()
    public var droppedNoPermission: UInt64 = 0
    public var droppedNoChannel: UInt64 = 0
    public var droppedNoAllocation: UInt64 = 0
}
