import Dispatch
import Logging
import STUN

/// One worker's SO_REUSEPORT listening socket of a `tcp` or `tls` listener; the kernel spreads new
/// connections over the workers, and each accepted connection lives on the worker that accepted it.
final class TCPListener {
    let bound: TransportAddress
    unowned let worker: Worker
    /// For `tls` listeners: the context new sessions are made from.
    let tls: TLSContextHolder?
    private let loop: AcceptLoop

    init(socket: Socket, bound: TransportAddress, worker: Worker, tls: TLSContextHolder? = nil) {
        self.bound = bound
        self.worker = worker
        self.tls = tls
        self.loop = AcceptLoop(socket: socket, bound: bound, worker: worker, maxPerFiring: 64)
        loop.accepted = { [unowned self] in self.accepted($0, from: $1) }
    }

    var socket: Socket { loop.socket }

    func start() { loop.start() }

    func cancel() { loop.cancel() }

    /// Admission at accept, before any buffer is allocated: the client IP's connection count, the
    /// server-wide count of connections without an allocation, and for TLS a handshake slot (within
    /// its source's share). A refused connection is closed at once and counted.
    private func accepted(_ socket: Socket, from peer: TransportAddress) {
        guard worker.connectionLimiter.admit(peer.ip) else {
            worker.stats.tcpRefusedPerIP &+= 1
            socket.close()  // no source was made for it yet
            return
        }
        guard worker.admitUnallocated() else {
            worker.connectionLimiter.release(peer.ip)
            socket.close()
            return
        }
        worker.stats.tcpAccepted &+= 1
        let local = (try? socket.localAddress()) ?? bound
        var transform = ByteTransform.plain
        if let tls {
            guard let session = try? TLSSession(context: tls.current), worker.admitHandshake(peer.ip) else {
                worker.connectionLimiter.release(peer.ip)
                worker.connectionLimiter.releaseUnallocated()
                socket.close()
                return
            }
            let t = TLSTransform(session: session)
            t.handshaking = true
            transform = .tls(t)
        }
        let connection = StreamConnection(socket: socket, client: peer, local: local,
                                          transport: tls == nil ? .tcp : .tls, transform: transform, worker: worker)
        connection.unallocated = true
        connection.start()
    }
}
