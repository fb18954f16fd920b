#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import STUN

/// The accept loop of a listening socket, shared by client-facing TCP/TLS listeners and RFC 6062
/// TCP relayed addresses: one long-lived read source, a bounded number of accepts per firing, and
/// the same answer to every error. A failure of one queued connection (ECONNABORTED, EPROTO, EPERM)
/// skips it; running out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) leaves the backlog
/// readable, so a level-triggered source would spin: accepting pauses for `pauseAfterExhaustion` instead.
final class AcceptLoop {
    let socket: Socket
    let bound: TransportAddress
    unowned let worker: Worker
    private var source: DispatchSourceRead?
    private var paused = false
    /// Connections accepted per firing before yielding the queue to other sources.
    private let maxPerFiring: Int
    static let pauseAfterExhaustion: DispatchTimeInterval = .milliseconds(100)
    /// Runs for each accepted connection, on the worker's queue (set by the owner before `start`).
    var accepted: (Socket, TransportAddress) -> Void = { socket, _ in socket.close() }

    init(socket: Socket, bound: TransportAddress, worker: Worker, maxPerFiring: Int) {
        self.socket = socket
        self.bound = bound
        self.worker = worker
        self.maxPerFiring = maxPerFiring
    }

    /// Starts the read source; its cancel handler closes the socket, then runs `cancelled`.
    func start(cancelled: (() -> Void)? = nil) {
        source = worker.makeReadSource(socket, readable: { [unowned self] in self.acceptable() }, cancelled: cancelled)
    }

    var isActive: Bool { source != nil }

    func cancel() {
        guard let source else { return }
        source.cancel()
        // A suspended source runs its cancel handler only once resumed.
        if paused { source.resume() }
        paused = false
        self.source = nil
    }

    private func acceptable() {
        worker.stats.readFirings &+= 1
        var count = 0
        while count < maxPerFiring {
            // `accepted` may have cancelled this listener (its allocation ended).
            guard source != nil else { return }
            do {
                switch try worker.sockets.accept(from: socket) {
                case .wouldBlock:
                    return
                case .done(let (connection, peer)):
                    count &+= 1
                    accepted(connection, peer)
                }
            } catch {
                worker.stats.acceptErrors &+= 1
                switch error.errno {
                case ECONNABORTED, EPROTO, EPERM:
                    continue  // that one connection failed; the listener is fine
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
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
        worker.queue.asyncAfter(deadline: .now() + Self.pauseAfterExhaustion) { [weak self] in
            guard let self, self.paused, let source = self.source else { return }
            self.paused = false
            source.resume()
        }
    }
}
