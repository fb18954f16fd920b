#if canImport(Glibc)
import Glibc
#endif
import CTernShims
import Dispatch
import STUN
import TernCore

/// RFC 6062 on the event loop: TCP relayed addresses (listening sockets), outgoing connections to
/// peers from the relayed address, and the joining of peer and client data connections.
extension Worker {
    /// A TCP socket bound to exactly `address` with SO_REUSEADDR and SO_REUSEPORT: the relayed
    /// address listens and connects out from the same port (RFC 6062 section 5.2).
    func tcpRelaySocket(_ address: TransportAddress) -> Result<Int32, SystemError> {
        let v6 = address.ip.family == .ipv6
        do throws(SystemError) {
            let fd = try Posix.socket(domain: v6 ? AF_INET6 : AF_INET, type: Int32(SOCK_STREAM.rawValue))
            do throws(SystemError) {
                if v6 { try Posix.setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
                try Posix.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
                try Posix.setOption(fd, SOL_SOCKET, tern_so_reuseport(), 1)
                try Posix.bind(fd, TernSocketAddress(address))
                return .success(fd)
            } catch {
                Posix.close(fd)
                throw error
            }
        } catch {
            return .failure(error)
        }
    }

    public func openTCPRelay(family: AddressFamily, near: IPAddress) -> Result<OpenedRelay, RelayOpenError> {
        dispatchPrecondition(condition: .onQueue(queue))
        guard let ip = relayAddress(family, near: near) else { return .failure(.familyUnavailable) }
        guard let shared = handler.turn?.shared else { return .failure(.familyUnavailable) }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<64 {
            let address = TransportAddress(ip: ip, port: UInt16.random(in: relayAddresses.portRange, using: &rng))
            guard shared.claimTCPRelayPort(address) else { continue }
            switch tcpRelaySocket(address) {
            case .failure(let e):
                shared.releaseTCPRelayPort(address)
                if e.errno == EADDRINUSE { continue }
                return .failure(e.errno == EAFNOSUPPORT || e.errno == EADDRNOTAVAIL ? .familyUnavailable : .system(e.errno))
            case .success(let fd):
                do {
                    try Posix.listen(fd, backlog: 64)
                } catch {
                    Posix.close(fd)
                    shared.releaseTCPRelayPort(address)
                    return .failure(.system(error.errno))
                }
                let listener = TCPRelayListener(fd: fd, bound: address, worker: self)
                tcpRelays[fd] = listener
                listener.start()
                return .success(OpenedRelay(handle: RelayHandle(fd), bound: address))
            }
        }
        return .failure(.noPortAvailable)
    }

    public func connectPeer(from relay: RelayHandle, to peer: TransportAddress, connectionID: UInt32) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard let listener = tcpRelays[relay.raw] else { return }
        let finish = { [weak self] (success: Bool) in
            guard let self else { return }
            if let (route, n) = self.handler.peerConnectFinished(connectionID: connectionID, relay: relay, success: success,
                                                                 response: self.streamResponse) {
                self.connectionsByID[route.connection]?.send(UnsafeRawBufferPointer(rebasing: self.streamResponse[0..<n]))
            }
        }
        guard case .success(let fd) = tcpRelaySocket(listener.bound) else { finish(false); return }
        var storage = TernSocketAddress(peer).storage
        let len = TernSocketAddress.length(family: peer.ip.family)
        let r = withUnsafePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, len) }
        }
        if r != 0 && errno != EINPROGRESS {
            Posix.close(fd)
            finish(false)
            return
        }
        let connection = TCPConnection(fd: fd, client: peer, local: listener.bound, transport: .tcp, worker: self)
        connection.countsAgainstLimit = false
        connection.peerConnectionID = connectionID
        connection.relay = relay
        connections[fd] = connection
        connectionsByID[connection.id] = connection
        connection.start()
        connection.startConnecting(completion: finish)
    }

    /// A peer connected to a TCP relayed address (RFC 6062 section 5.3).
    func acceptPeer(fd: Int32, peer: TransportAddress, listener: TCPRelayListener) {
        let relay = RelayHandle(listener.fd)
        guard let (id, route, n) = handler.incomingPeerConnection(relay: relay, peer: peer, output: streamResponse) else {
            Posix.close(fd)  // no source was made for it
            return
        }
        let connection = TCPConnection(fd: fd, client: peer, local: listener.bound, transport: .tcp, worker: self)
        connection.countsAgainstLimit = false
        connection.peerConnectionID = id
        connection.relay = relay
        connection.becomeRaw()
        connections[fd] = connection
        connectionsByID[connection.id] = connection
        connection.start()
        connectionsByID[route.connection]?.send(UnsafeRawBufferPointer(rebasing: streamResponse[0..<n]))
    }

    /// The peer connection with this CONNECTION-ID on this worker (a scan, once per ConnectionBind).
    func peerConnection(_ id: UInt32) -> TCPConnection? {
        connections.values.first { $0.peerConnectionID == id }
    }

    /// RFC 6062 section 5.4: after a successful ConnectionBind, `client` becomes the client data
    /// connection of peer connection `id`. When another worker owns the peer connection, the
    /// client's descriptor moves there (dup, then this connection closes its own copy).
    func bindDataConnection(_ client: TCPConnection, connectionID id: UInt32, owner: Int, reply: [UInt8], leftover: [UInt8]) {
        if owner == index {
            client.becomeRaw()
            reply.withUnsafeBytes { client.send($0) }
            guard let peer = peerConnection(id) else { client.close(reason: .peerClosed); return }
            client.preload(leftover)
            client.join(peer)
            return
        }
        guard let workers = server?.workers, owner >= 0, owner < workers.count else { client.close(reason: .error); return }
        let target = workers[owner]
        let copy = dup(client.fd)
        let clientAddress = client.client, local = client.local, transport = client.transport
        let session = client.tls  // moves with the descriptor; used on one queue at a time
        client.handOver()
        guard copy >= 0 else { return }
        let box = SessionBox(session)
        target.queue.async {
            target.adoptDataConnection(fd: copy, client: clientAddress, local: local, transport: transport,
                                       tls: box.session, connectionID: id, reply: reply, leftover: leftover)
        }
    }

    func adoptDataConnection(fd: Int32, client: TransportAddress, local: TransportAddress, transport: ClientTransport,
                             tls: TLSSession?, connectionID id: UInt32, reply: [UInt8], leftover: [UInt8]) {
        let connection = TCPConnection(fd: fd, client: client, local: local, transport: transport, worker: self)
        connection.tls = tls
        guard connectionLimiter.admit(client.ip) else { Posix.close(fd); return }
        connections[fd] = connection
        connectionsByID[connection.id] = connection
        connection.becomeRaw()
        connection.start()
        reply.withUnsafeBytes { connection.send($0) }
        guard let peer = peerConnection(id) else { connection.close(reason: .peerClosed); return }
        connection.preload(leftover)
        connection.join(peer)
    }

    /// Closes a TCP relay's listener and every peer connection of it (the allocation ended).
    func closeTCPRelay(_ handle: RelayHandle) {
        guard let listener = tcpRelays[handle.raw] else { return }
        handler.turn?.shared.releaseTCPRelayPort(listener.bound)
        listener.cancel()
        for c in Array(connections.values) where c.relay == handle {
            c.close(reason: .shutdown)
        }
    }

    /// RFC 6062 sections 5.2-5.3: a peer connection not joined by a ConnectionBind within 30 s, or a
    /// connect still pending after 30 s, is closed.
    func expirePeerConnections(now: UInt64) {
        for c in Array(connections.values) where c.peerConnectionID != 0 && !c.isJoined && c.createdAt &+ 30 <= now {
            c.close(reason: .idle)
        }
    }
}

/// Carries a TLS session from one worker's queue to another's (handed over, never shared).
private final class SessionBox: @unchecked Sendable {
    let session: TLSSession?
    init(_ session: TLSSession?) { self.session = session }
}

/// The listening socket of a TCP relayed transport address.
final class TCPRelayListener {
    let fd: Int32
    let bound: TransportAddress
    unowned let worker: Worker
    private var source: DispatchSourceRead?

    init(fd: Int32, bound: TransportAddress, worker: Worker) {
        self.fd = fd
        self.bound = bound
        self.worker = worker
    }

    func start() {
        let fd = self.fd
        source = worker.makeReadSource(fd: fd, readable: { [unowned self] in self.acceptable() },
                                       cancelled: { [weak worker] in worker?.tcpRelays[fd] = nil })
    }

    func cancel() {
        source?.cancel()
        source = nil
    }

    private func acceptable() {
        for _ in 0..<16 {
            guard source != nil else { return }
            guard case .done(let (cfd, peer))? = try? Posix.accept(fd) else { return }
            worker.acceptPeer(fd: cfd, peer: peer.transportAddress, listener: self)
        }
    }
}
