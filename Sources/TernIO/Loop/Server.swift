import Dispatch
import Logging
import STUN
import TernCore

/// What start() bound, with the port the kernel chose when the spec asked for port 0.
public struct BoundListener: Sendable, Hashable, CustomStringConvertible {
    public var transport: ClientTransport
    public var address: TransportAddress
    public var description: String { "\(transport) \(address)" }
}

public struct ServerError: Error, CustomStringConvertible {
    public var description: String
}

/// Owns the workers and their sockets, and their lifecycle: `start()` binds every listener on every
/// worker (one SO_REUSEPORT socket per worker and listener, `Server+Listeners`) and starts their
/// sources; a reload swaps TLS contexts, limits, TURN settings and listeners; a drain refuses new
/// allocations; `stop()` cancels all sources and returns once every descriptor is closed. Figures are
/// in `Server+Stats`.
public final class Server: @unchecked Sendable {
    public let workers: [Worker]
    let listeners: [ListenerConfig]
    let logger: Logger
    var started = false

    private let handlerConfiguration: HandlerConfiguration
    private let connectionLimiter: ConnectionLimiter
    let relayAddresses: RelayConfig
    public let io: IOConfig
    /// The TLS context of `tls` listeners; `reloadTLS` swaps it for new connections.
    public let tls: TLSContextHolder?
    /// The DTLS context of `dtls` listeners at start; `reloadDTLS` gives new associations another.
    public let dtls: TLSServerContext?
    /// Seconds a TLS or DTLS handshake may take (`tls.handshakeTimeout`), for both listener kinds.
    public let handshakeTimeout: UInt64
    let sockets: SocketFactory
    /// EVEN-PORT reservations of every worker (a reservation may be redeemed on any of them).
    let reservedRelays = ReservedRelays()

    /// What other threads read (the admin endpoint's `/readyz` and snapshots): written by start,
    /// reload and drain, read from anywhere, always under its lock.
    struct State {
        /// Live allocations have reached the capacity (0: none, never at capacity).
        var atCapacity: Bool {
            guard let shared, capacity > 0 else { return false }
            return shared.allocationCount >= capacity
        }
        var isReady: Bool {
            !bound.isEmpty && !draining && !atCapacity && external.allSatisfy { $0.state.isSettled }
        }
        var bound: [BoundListener] = []
        var draining = false
        /// The kernel fast path, when `io.offload` asked for it and the kernel took it; otherwise why not.
        var offload: KernelOffload?
        var offloadUnavailable: String?
        /// Monotonic second at which start() finished.
        var startedAt: UInt64 = 0
        /// The TURN state every worker shares (quotas, reservations, TCP relay ports).
        var shared: SharedTurnState?
        /// The limits in force (reloads replace them) and `cluster.capacity` (with the TURN settings).
        var limits = LimitsConfig()
        var clusterCapacity: Int?
        /// Live allocations at which this node is full: `cluster.capacity`, else `limits.allocationsTotal`.
        var capacity: Int { ClusterConfig(capacity: clusterCapacity).effectiveCapacity(limits) }
        /// The advertised relay address per family, as discovery or the config gives it.
        var external: [ExternalAddressStatus] = []
    }
    let state = Locked(State())

    /// Serialises start and listener reconciliation (reloads).
    let reconfigureLock = Lock()
    /// Configured listeners now open, with what each bound (under `reconfigureLock`).
    var active: [ListenerConfig: BoundListener] = [:]

    /// Sockets passed in by systemd socket activation (`LISTEN_FDS`), set before `start()`. Each is
    /// matched to the config listener with its socket type, address and port, and used by worker 0
    /// instead of binding (ports below 1024 then need no capability); the other workers add their own
    /// SO_REUSEPORT sockets when they may. Sockets that match no listener are closed.
    public var inherited: [Int32] = []

    public init(listeners: [ListenerConfig], workerCount: Int, handlerConfiguration: HandlerConfiguration,
                relay: RelayConfig = RelayConfig(), limits: LimitsConfig = LimitsConfig(),
                tls: TLSContextHolder? = nil, dtls: TLSServerContext? = nil, handshakeTimeout: Int? = nil,
                io: IOConfig = IOConfig(), clock: CoarseClock = SystemClock(), logger: Logger) {
        self.tls = tls
        self.dtls = dtls
        self.handshakeTimeout = handshakeTimeout.map(UInt64.init) ?? tls?.handshakeTimeout ?? UInt64(TLSConfig().handshakeTimeout)
        precondition(workerCount >= 1, "at least one worker")
        self.listeners = listeners
        self.logger = logger
        self.handlerConfiguration = handlerConfiguration
        let limiter = ConnectionLimiter(limits: limits)
        self.connectionLimiter = limiter
        self.relayAddresses = relay
        self.io = io
        self.sockets = SocketFactory(io: io)
        let reserved = reservedRelays
        self.workers = (0..<workerCount).map {
            Worker(index: $0, handler: RequestHandler(configuration: handlerConfiguration, clock: clock), limits: limits,
                   relayAddresses: relay, connectionLimiter: limiter, reservedRelays: reserved, io: io, logger: logger)
        }
        state.withLock {
            $0.shared = handlerConfiguration.turn?.shared
            $0.limits = limits
            $0.clusterCapacity = handlerConfiguration.turn?.settings.cluster.capacity
        }
        for w in workers { w.server = self }
    }

    /// Listeners bound by start() and reloads, with the port the kernel chose for port 0.
    public var bound: [BoundListener] { state.current.bound }
    public var draining: Bool { state.current.draining }
    /// Monotonic second at which start() finished.
    public var startedAt: UInt64 { state.current.startedAt }
    /// Ready for new clients (`/readyz`): listeners bound, not draining, below the capacity
    /// (`cluster.capacity`, else `limits.allocationsTotal`), and no relay address still to be discovered.
    public var isReady: Bool { state.withLock { $0.isReady } }

    /// The advertised relay addresses and where they come from (`relay.discoverExternal`): shown in
    /// `/stats`; a `pending` entry keeps `/readyz` at 503.
    public var externalAddresses: [ExternalAddressStatus] {
        get { state.current.external }
        set { state.withLock { $0.external = newValue } }
    }

    // MARK: start

    /// Binds everything, then starts every source. On any bind failure nothing is left open.
    @discardableResult
    public func start() throws -> [BoundListener] {
        reconfigureLock.lock()
        defer { reconfigureLock.unlock() }
        precondition(!started, "start() once")
        started = true
        Posix.ignoreSIGPIPE()
        var opened: [Opened] = []
        // Sockets from systemd: owned (and so closed once) from here on, whether they match or not.
        var pool = inherited.map { Socket(owning: $0) }
        var bound: [(ListenerConfig, BoundListener)] = []
        for spec in listeners {
            // On a failure every socket opened so far, and the unmatched inherited ones, close as they go.
            if let b = try open(spec, pool: &pool, into: &opened) { bound.append((spec, b)) }
        }
        for socket in pool {
            logger.warning("socket from systemd matches no listener: closed",
                           metadata: ["socket": "\((try? socket.localAddress()).map { "\($0)" } ?? "\(socket)")"])
            socket.close()
        }
        attach(opened)
        for (spec, b) in bound { active[spec] = b }
        startOffload()
        let boundList = bound.map(\.1)
        state.withLock { $0.bound = boundList }
        for worker in workers {
            worker.queue.sync { worker.startTicking() }
        }
        let now = Clocks.monotonicSeconds()
        state.withLock { $0.startedAt = now }
        return boundList
    }

    // MARK: reload

    /// New DTLS associations use `context` (SIGHUP); established ones keep their sessions.
    public func reloadDTLS(_ context: TLSServerContext) throws {
        for w in workers {
            try w.queue.sync {
                for e in w.dtlsEndpoints { e.listener = try DTLSListener(context: context) }
            }
        }
    }

    /// Reload: stream limits for new checks (idle timeout, queue bound, connections per IP), and the
    /// per-source budgets of unauthenticated answers and Binding responses.
    public func updateLimits(_ limits: LimitsConfig) {
        state.withLock { $0.limits = limits }
        connectionLimiter.limits = limits
        handlerConfiguration.throttle.update(limits)
        for w in workers { w.queue.sync { w.limits = limits } }
    }

    /// Reload: every worker's handler answers new requests with `turn` (credentials, policy, settings).
    public func updateTurn(_ turn: TurnContext?) {
        if let turn { state.withLock { $0.shared = turn.shared; $0.clusterCapacity = turn.settings.cluster.capacity } }
        for w in workers { w.queue.sync { w.handler.reconfigure(turn: turn) } }
    }

    // MARK: drain

    /// Drain: Allocate is refused from now on (508, or 300 with ALTERNATE-SERVER); existing
    /// allocations keep relaying. `/readyz` turns false.
    public func startDraining(_ mode: DrainConfig) {
        state.withLock { $0.draining = true }
        for w in workers { w.queue.sync { w.handler.draining = mode } }
    }

    // MARK: stop

    /// Cancels every source on every worker and waits until all descriptors are closed.
    public func stop() {
        for w in workers {
            w.queue.sync { w.shutdown() }
        }
        for w in workers {
            w.closing.wait()
        }
        stopOffload()
        // Port reservations (EVEN-PORT) not redeemed by now: their sockets never had a source.
        for r in state.current.shared?.drainReservations() ?? [] {
            reservedRelays.take(r.handle)?.close()
        }
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
