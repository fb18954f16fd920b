#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import STUN
import TernCore

/// Binding the client-facing listeners: on start, from sockets passed in by systemd, and when a
/// reload changes the set (`reconcileListeners`).
extension Server {
    /// One worker's socket for one listener, opened but not yet attached.
    typealias Opened = (worker: Worker, spec: ListenerConfig, socket: Socket, local: TransportAddress)

    /// The inherited socket in `pool` that matches `spec`, taken out of the pool.
    private func takeInherited(_ spec: ListenerConfig, from pool: inout [Socket]) -> Socket? {
        guard let i = pool.firstIndex(where: { sockets.adoptInherited($0, transport: spec.transport, address: spec.transportAddress) }) else {
            return nil
        }
        return pool.remove(at: i)
    }

    /// Opens `spec` on every worker (from a socket-activation socket when one matches). Returns what
    /// was bound, or nil for an optional listener whose address family this host lacks. On a failure
    /// the sockets opened for `spec` close as they go; those in `opened` stay for the caller.
    func open(_ spec: ListenerConfig, pool: inout [Socket], into opened: inout [Opened]) throws -> BoundListener? {
        guard spec.transport == .udp || spec.transport == .tcp || (spec.transport == .tls && tls != nil)
                || (spec.transport == .dtls && dtls != nil) else {
            throw ServerError(description: "listener \(spec): a \(spec.transport) listener needs tls.certificate and tls.privateKey")
        }
        if let socket = takeInherited(spec, from: &pool) {
            logger.info("listener from socket activation", metadata: ["listener": "\(spec)"])
            opened.append((workers[0], spec, socket, spec.transportAddress))
            for worker in workers.dropFirst() {
                // Joining needs SO_REUSEPORT on the inherited socket (ReusePort=yes) and the right to bind.
                guard let extra = try? sockets.listener(spec.transport, address: spec.transportAddress) else { break }
                opened.append((worker, spec, extra, spec.transportAddress))
            }
            return BoundListener(transport: spec.transport, address: spec.transportAddress)
        }
        do throws(SystemError) {
            // SO_REUSEPORT would let this process share a port with another Tern (or coturn) of the
            // same user and silently split its traffic: a plain bind first tells "in use" apart.
            if spec.transportAddress.port != 0 { try sockets.probeFree(spec.transport, address: spec.transportAddress) }
        } catch {
            if error.errno == EADDRINUSE {
                throw ServerError(description: "listener \(spec): address already in use (is another TURN server running?)")
            }
            guard spec.optional && (error.errno == EAFNOSUPPORT || error.errno == EADDRNOTAVAIL) else { throw error }
            logger.warning("listener skipped: address family unavailable", metadata: ["listener": "\(spec)", "error": "\(error)"])
            return nil
        }
        var address = spec.transportAddress
        for worker in workers {
            let socket = try sockets.listener(spec.transport, address: address)
            let local = try socket.localAddress()
            address.port = local.port  // port 0: later workers join the port the first one got
            opened.append((worker, spec, socket, local))
        }
        return BoundListener(transport: spec.transport, address: address)
    }

    /// Hands each opened socket to its worker and starts its source.
    func attach(_ opened: [Opened]) {
        for (worker, spec, socket, local) in opened {
            worker.queue.sync {
                switch spec.transport {
                case .udp:
                    let e = UDPEndpoint(socket: socket, bound: local, worker: worker, index: worker.udpEndpoints.count)
                    worker.udpEndpoints.append(e)
                    e.start()
                case .dtls:
                    guard let context = dtls, let listener = try? DTLSListener(context: context) else {
                        socket.close()
                        break
                    }
                    let e = DTLSEndpoint(socket: socket, bound: local, worker: worker, index: worker.dtlsEndpoints.count, listener: listener)
                    worker.dtlsEndpoints.append(e)
                    e.start()
                default:
                    let l = TCPListener(socket: socket, bound: local, worker: worker, tls: spec.transport == .tls ? self.tls : nil,
                                          proxyProtocol: spec.proxyProtocol)
                    worker.tcpListeners.append(l)
                    l.start()
                }
            }
        }
    }

    /// The listener specs now open, as configured (a port-0 spec stays port 0 here).
    public var configuredListeners: [ListenerConfig] {
        reconfigureLock.withLock { Array(active.keys) }
    }

    /// Reload: opens the listeners in `specs` that are not open yet and closes those no longer in it;
    /// the others, and every allocation and connection, are left alone. All new listeners are bound
    /// before anything is closed, so a bind failure changes nothing.
    public func reconcileListeners(_ specs: [ListenerConfig]) throws -> (added: [BoundListener], removed: [BoundListener]) {
        reconfigureLock.lock()
        defer { reconfigureLock.unlock() }
        let wanted = Set(specs)
        var opened: [Opened] = []
        var added: [(ListenerConfig, BoundListener)] = []
        var pool: [Socket] = []
        for spec in specs where active[spec] == nil {
            // On a failure the sockets opened so far close as `opened` goes.
            if let b = try open(spec, pool: &pool, into: &opened) { added.append((spec, b)) }
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
        let all = Array(active.values)
        state.withLock { $0.bound = all }
        return (added.map(\.1), removed)
    }
}

extension Server {
    /// What the peer policy must know of this server (issue 13: relay loops): the listeners bound now
    /// and the admin endpoint (`admin`) are never a peer, and the relay addresses with the relay
    /// port range may be (a peer there that is a live relayed address is another client of this
    /// server). Relay addresses left to the system (nil or unspecified) stand for every address of
    /// the host's interfaces, loopback included: a relay binds near the address the client reached.
    public func ownEndpoints(admin: TransportAddress?) -> PeerPolicy.OwnEndpoints {
        var services = bound.map { PeerPolicy.OwnEndpoints.Service($0.address, stream: $0.transport.isStream) }
        if let admin { services.append(.init(admin, stream: true)) }
        var relayIPs: [IPAddress] = []
        let host = Posix.interfaceAddresses()
        for (configured, family) in [(relayAddresses.ipv4, AddressFamily.ipv4), (relayAddresses.ipv6, .ipv6)] {
            if let ip = configured, !ip.isUnspecified {
                relayIPs.append(ip)
            } else {
                relayIPs += host.filter { $0.family == family }
            }
        }
        relayIPs += [relayAddresses.externalIPv4, relayAddresses.externalIPv6].compactMap { $0 }
        // Discovered public addresses (relay.discoverExternal) are this server's relay addresses too.
        relayIPs += externalAddresses.compactMap { $0.advertised.flatMap(IPAddress.init) }
        return PeerPolicy.OwnEndpoints(services: services, relayIPs: relayIPs, relayPorts: relayAddresses.portRange)
    }
}
