#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import STUN

/// One worker's SO_REUSEPORT listening socket; the kernel spreads new connections over the workers,
/// and each accepted connection lives on the worker that accepted it.
final class TCPListener {
    let fd: Int32
    let bound: TransportAddress
    unowned let worker: Worker
    /// For `tls` listeners: the context new sessions are made from.
    let tls: TLSContextHolder?
    private var source: DispatchSourceRead?
    private var paused = false
    /// Connections accepted per firing before yielding the queue to other sources.
    private let maxAcceptsPerFiring = 64

    init(fd: Int32, bound: TransportAddress, worker: Worker, tls: TLSContextHolder? = nil) {
        self.fd = fd
        self.bound = bound
        self.worker = worker
        self.tls = tls
    }

    func start() {
        source = worker.makeReadSource(fd: fd, readable: { [unowned self] in self.acceptable() })
    }

    func cancel() {
        guard let source else { return }
        source.cancel()
        if paused { source.resume() }
        paused = false
        self.source = nil
    }

    private func acceptable() {
        worker.stats.readFirings &+= 1
        var accepted = 0
        while accepted < maxAcceptsPerFiring {
            do {
                switch try Posix.accept(fd) {
                case .wouldBlock:
                    return
                case .done(let (cfd, peer)):
                    accepted &+= 1
                    let clientAddress = peer.transportAddress
                    guard worker.connectionLimiter.admit(clientAddress.ip) else {
                        worker.stats.tcpRefusedPerIP &+= 1
                        Posix.close(cfd)  // no source was made for it yet
                        continue
                    }
                    worker.stats.tcpAccepted &+= 1
                    let local = (try? Posix.localAddress(cfd))?.transportAddress ?? bound
                    let connection = TCPConnection(fd: cfd, client: peer.transportAddress, local: local,
                                                   transport: tls == nil ? .tcp : .tls, worker: worker)
                    if let tls {
                        guard let session = try? TLSSession(context: tls.current), worker.admitHandshake() else {
                            worker.connectionLimiter.release(clientAddress.ip)
                            Posix.close(cfd)
                            continue
                        }
                        connection.tls = session
                        connection.handshaking = true
                    }
                    worker.connections[cfd] = connection
                    worker.connectionsByID[connection.id] = connection
                    connection.start()
                }
            } catch {
                worker.stats.acceptErrors &+= 1
                switch error.errno {
                case ECONNABORTED, EPROTO, EPERM:
                    continue  // that one connection failed; the listener is fine
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // Out of descriptors or memory: the backlog stays readable, so a level-triggered
                    // source would spin. Pause accepting briefly instead.
                    worker.logger.warning("accept paused", metadata: ["error": "\(error)", "listener": "\(bound)"])
                    pause()
                    return
                default:
                    worker.logger.warning("accept failed", metadata: ["error": "\(error)", "listener": "\(bound)"])
                    return
                }
            }
        }
    }

    private func pause() {
        guard let source, !paused else { return }
        paused = true
        source.suspend()
        worker.queue.asyncAfter(deadline: .now() + .milliseconds(100)) { [weak self] in
            guard let self, self.paused, let source = self.source else { return }
            self.paused = false
            source.resume()
        }
    }
}
