#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import STUN
import TernCore

/// RFC 6062 on the event loop: TCP relayed addresses (listening sockets), outgoing connections to
/// peers from the relayed address, and the joining of peer and client data connections.
extension Worker {
    public func openTCPRelay(family: AddressFamily, near: IPAddress) -> Result<OpenedRelay, RelayOpenError> {
        dispatchPrecondition(condition: .onQueue(queue))
        guard let ip = relayAddress(family, near: near) else { return .failure(.familyUnavailable) }
        guard let shared = handler.turn?.shared else { return .failure(.familyUnavailable) }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<64 {
            let address = TransportAddress(ip: ip, port: UInt16.random(in: relayAddresses.portRange, using: &rng))
            guard shared.claimTCPRelayPort(address) else { continue }
            let socket: Socket
            do {
                socket = try sockets.tcpRelayListener(address)
            } catch {
                shared.releaseTCPRelayPort(address)
                if error.errno == EADDRINUSE { continue }
                return .failure(error.errno == EAFNOSUPPORT || error.errno == EADDRNOTAVAIL ? .familyUnavailable : .system(error.errno))
            }
            guard let handle = relayTable.reserveHandle() else {
                socket.close()
                shared.releaseTCPRelayPort(address)
                return .failure(.noPortAvailable)
            }
            let listener = TCPRelayListener(socket: socket, handle: handle, bound: address, worker: self)
            relayTable.insert(.tcp(listener), for: handle)
            listener.start()
            return .success(OpenedRelay(handle: handle, bound: address))
        }
        return .failure(.noPortAvailable)
    }

    public func connectPeer(from relay: RelayHandle, to peer: TransportAddress, connectionID: UInt32) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard let listener = relayTable.tcp(relay) else { return }
        let finish = { [weak self] (success: Bool) in
            guard let self else { return }
            if let (route, n) = self.handler.peerConnectFinished(connectionID: connectionID, relay: relay, success: success,
                                                                 response: self.streamResponse) {
                self.connections[route.connection]?.send(UnsafeRawBufferPointer(rebasing: self.streamResponse[0..<n]))
            }
        }
        // A connect that fails at once (or a socket that cannot be made) is a failed connect.
        guard let (socket, _) = try? sockets.peerConnection(from: listener.bound, to: peer) else {
            finish(false)
            return
        }
        let connection = StreamConnection(socket: socket, client: peer, local: listener.bound, transport: .tcp,
                                          role: .pipe(nil), worker: self)
        connection.countsAgainstLimit = false
        connection.peerConnectionID = connectionID
        connection.relay = relay
        connection.start()
        // Also when connect(2) succeeded at once: writability reports it, as for EINPROGRESS.
        connection.startConnecting(completion: finish)
    }

    /// A peer connected to a TCP relayed address (RFC 6062 section 5.3).
    func acceptPeer(_ socket: Socket, peer: TransportAddress, listener: TCPRelayListener) {
        let relay = listener.handle
        guard let (id, route, n) = handler.incomingPeerConnection(relay: relay, peer: peer, output: streamResponse) else {
            socket.close()  // no source was made for it
            return
        }
        let connection = StreamConnection(socket: socket, client: peer, local: listener.bound, transport: .tcp,
                                          role: .pipe(nil), worker: self)
        connection.countsAgainstLimit = false
        connection.peerConnectionID = id
        connection.relay = relay
        connection.start()
        connections[route.connection]?.send(UnsafeRawBufferPointer(rebasing: streamResponse[0..<n]))
    }

    /// The peer connection with this CONNECTION-ID on this worker (a scan, once per ConnectionBind).
    func peerConnection(_ id: UInt32) -> StreamConnection? {
        connections.values.first { $0.peerConnectionID == id }
    }

    /// RFC 6062 section 5.4: after a successful ConnectionBind, `client` becomes the client data
    /// connection of peer connection `id`. When another worker owns the peer connection, the
    /// client's descriptor moves there (dup, then this connection closes its own copy).
    func bindDataConnection(_ client: StreamConnection, connectionID id: UInt32, owner: Int, reply: [UInt8], leftover: [UInt8]) {
        if owner == index {
            client.becomePipe()
            reply.withUnsafeBytes { client.send($0) }
            guard let peer = peerConnection(id) else { client.close(reason: .peerClosed); return }
            client.preload(leftover)
            client.join(peer)
            return
        }
        guard let workers = server?.workers, owner >= 0, owner < workers.count else { client.close(reason: .error); return }
        let target = workers[owner]
        let copy = try? client.stream.socket.duplicate()
        let clientAddress = client.client, local = client.local, transport = client.transport
        let session = client.tls  // moves with the descriptor; used on one queue at a time
        client.handOver()
        guard let copy else { return }
        let box = HandOver(socket: copy, session: session)
        target.queue.async {
            target.adoptDataConnection(box, client: clientAddress, local: local, transport: transport,
                                       connectionID: id, reply: reply, leftover: leftover)
        }
    }

    fileprivate func adoptDataConnection(_ handOver: HandOver, client: TransportAddress, local: TransportAddress,
                                         transport: ClientTransport, connectionID id: UInt32, reply: [UInt8], leftover: [UInt8]) {
        guard connectionLimiter.admit(client.ip) else { handOver.socket.close(); return }
        let transform: ByteTransform = handOver.session.map { .tls(TLSTransform(session: $0, readChunk: TLSTransform.maxChunk)) } ?? .plain
        let connection = StreamConnection(socket: handOver.socket, client: client, local: local, transport: transport,
                                          transform: transform, role: .pipe(nil), worker: self)
        connection.start()
        reply.withUnsafeBytes { connection.send($0) }
        guard let peer = peerConnection(id) else { connection.close(reason: .peerClosed); return }
        connection.preload(leftover)
        connection.join(peer)
    }

    /// Closes a TCP relay's listener and every peer connection of it (the allocation ended).
    func closeTCPRelay(_ handle: RelayHandle) {
        guard let listener = relayTable.tcp(handle) else { return }
        relayTable.remove(handle)
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

/// Carries a client data connection's socket and TLS session from one worker's queue to another's
/// (handed over, never shared).
private final class HandOver: @unchecked Sendable {
    let socket: Socket
    let session: TLSSession?
    init(socket: Socket, session: TLSSession?) {
        self.socket = socket
        self.session = session
    }
}

/// The listening socket of a TCP relayed transport address (RFC 6062 section 5.1).
final class TCPRelayListener {
    /// What the core knows this relayed address by.
    let handle: RelayHandle
    let bound: TransportAddress
    unowned let worker: Worker
    private let loop: AcceptLoop

    init(socket: Socket, handle: RelayHandle, bound: TransportAddress, worker: Worker) {
        self.handle = handle
        self.bound = bound
        self.worker = worker
        self.loop = AcceptLoop(socket: socket, bound: bound, worker: worker, maxPerFiring: 16)
        loop.accepted = { [unowned self] in self.worker.acceptPeer($0, peer: $1, listener: self) }
    }

    var socket: Socket { loop.socket }

    func start() { loop.start() }

    func cancel() { loop.cancel() }
}
