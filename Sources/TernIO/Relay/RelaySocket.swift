#if canImport(Glibc)
import Glibc
#endif
import CTernShims
import Dispatch
import STUN
import TernCore

/// One allocation's relay socket (RFC 8656 section 2.2: the relayed transport address), on the
/// worker that owns the allocation. Peer datagrams are read in recvmmsg batches into the worker's
/// shared batch, turned into ChannelData or Data indications by the handler in the batch's send
/// slots, and sent to the clients with one sendmmsg per client-facing socket.
final class RelaySocket {
    let socket: Socket
    /// What the core knows this socket by.
    let handle: RelayHandle
    let bound: TransportAddress
    unowned let worker: Worker
    private var source: ReadWatch?
    /// Whether the worker's poller watches this socket: then datagrams for clients wait in the send
    /// slots for the end of the poller's round instead of leaving at the end of this socket's read.
    private var polled = false

    init(socket: Socket, handle: RelayHandle, bound: TransportAddress, worker: Worker) {
        self.socket = socket
        self.handle = handle
        self.bound = bound
        self.worker = worker
    }

    func start() {
        let watch = worker.watchReadable(socket, readable: { [unowned self] in self.readable() })
        polled = !(watch is DispatchReadWatch)
        source = watch
    }

    func cancel() {
        source?.cancel()
        source = nil
    }

    private func readable() {
        let batch = worker.batch
        let handler = worker.handler
        let handle = self.handle
        // Slots before `out` hold earlier relay sockets' datagrams of this poller round.
        var out = worker.pendingToClients
        worker.pendingToClients = 0
        worker.drainDatagrams(socket.fd, datagram: { i in
            let payload = batch.received(i)
            let peer = TernSocketAddress.transportAddress(batch.recvNames + i)
            switch handler.handlePeerData(relay: handle, peer: peer, payload: payload, output: batch.sendSlot(out)) {
            case .drop:
                return
            case .forward(let route, let length):
                if route.connection & DTLSEndpoint.idBit != 0 {
                    // A DTLS client: encrypted onto its association.
                    if route.socket < worker.dtlsEndpoints.count,
                       let client = worker.dtlsEndpoints[route.socket].client(id: route.connection) {
                        worker.dtlsEndpoints[route.socket].send(client, UnsafeRawBufferPointer(rebasing: batch.sendSlot(out)[0..<length]))
                    }
                    return
                }
                if route.connection != 0 {
                    // A stream client: straight onto its connection (bounded queue, see sendRelayed).
                    worker.connections[route.connection]?
                        .sendRelayed(UnsafeRawBufferPointer(rebasing: batch.sendSlot(out)[0..<length]))
                    return
                }
                guard route.socket < worker.udpEndpoints.count else { return }
                batch.prepareSend(out, to: route.client, length: length,
                                  source: worker.udpEndpoints[route.socket].isWildcard ? route.local : nil,
                                  socket: route.socket)
                out &+= 1
            }
        }, batchDone: {
            // Send now unless a whole receive batch still fits behind what waits.
            if out > batch.sendCount - batch.count {
                worker.flushToClients(out)
                out = 0
            }
        }, failed: { error in
            // ICMP errors for earlier sends (ECONNREFUSED) surface here on Linux: not fatal.
            error.errno == ECONNREFUSED || error.errno == EHOSTUNREACH || error.errno == ENETUNREACH
        })
        worker.pendingToClients = out
        if !polled { worker.flushPendingToClients() }
    }
}
