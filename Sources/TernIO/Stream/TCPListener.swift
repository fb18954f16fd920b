import Dispatch
import Logging
import STUN
import TernCore

/// One worker's SO_REUSEPORT listening socket of a `tcp` or `tls` listener; the kernel spreads new
/// connections over the workers, and each accepted connection lives on the worker that accepted it.
final class TCPListener {
    let bound: TransportAddress
    unowned let worker: Worker
    /// For `tls` listeners: the context new sessions are made from.
    let tls: TLSContextHolder?
    private let loop: AcceptLoop

    /// PROXY protocol from trusted load balancers; nil: clients connect directly.
    let proxyProtocol: ProxyProtocolConfig?

    init(socket: Socket, bound: TransportAddress, worker: Worker, tls: TLSContextHolder? = nil,
         proxyProtocol: ProxyProtocolConfig? = nil) {
        self.bound = bound
        self.worker = worker
        self.tls = tls
        self.proxyProtocol = proxyProtocol
        self.loop = AcceptLoop(socket: socket, bound: bound, worker: worker, maxPerFiring: 64)
        loop.accepted = { [unowned self] in self.accepted($0, from: $1) }
    }

    var socket: Socket { loop.socket }

    func start() { loop.start() }

    func cancel() { loop.cancel() }

    /// Behind a proxy, only a trusted source gets further than accept: anything else is closed at
    /// once and counted, before any buffer is allocated. A trusted one holds a count of connections
    /// without an allocation while its header is read (`ProxyHeaderReader`); admission by client
    /// address then follows with the address the header names.
    private func accepted(_ socket: Socket, from peer: TransportAddress) {
        guard let proxyProtocol else { return admit(socket, client: peer, local: nil, counted: false) }
        guard proxyProtocol.trusts(peer.ip) else {
            worker.stats.proxyUntrusted &+= 1
            socket.close()  // no source was made for it yet
            return
        }
        guard worker.admitUnallocated() else {
            socket.close()
            return
        }
        let local = (try? socket.localAddress()) ?? bound
        let worker = self.worker
        let reader = ProxyHeaderReader(socket: socket, proxy: peer, local: local, worker: worker) { [weak self, unowned worker] in
            guard let self else {
                // The listener was closed (a reload removed it) while the header was read.
                worker.connectionLimiter.releaseUnallocated()
                return $0.close()
            }
            self.admit($0, client: $1, local: $2, counted: true)
        }
        reader.start()
    }

    /// Admission before any connection buffer is allocated: the client IP's connection count, the
    /// server-wide count of connections without an allocation (unless `counted` already), and for
    /// TLS a handshake slot (within its source's share). A refused connection is closed at once and
    /// counted.
    private func admit(_ socket: Socket, client peer: TransportAddress, local: TransportAddress?, counted: Bool) {
        guard worker.connectionLimiter.admit(peer.ip) else {
            worker.stats.tcpRefusedPerIP &+= 1
            if counted { worker.connectionLimiter.releaseUnallocated() }
            socket.close()  // no source was made for it yet
            return
        }
        guard counted || worker.admitUnallocated() else {
            worker.connectionLimiter.release(peer.ip)
            socket.close()
            return
        }
        worker.stats.tcpAccepted &+= 1
        let local = local ?? (try? socket.localAddress()) ?? bound
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
