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
    let fd: Int32
    let bound: TransportAddress
    unowned let worker: Worker
    private var source: DispatchSourceRead?
    private let maxBatchesPerFiring = 16

    init(fd: Int32, bound: TransportAddress, worker: Worker) {
        self.fd = fd
        self.bound = bound
        self.worker = worker
    }

    func start() {
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: worker.queue)
        let fd = self.fd
        let group = worker.closing
        group.enter()
        source.setEventHandler { [unowned self] in self.readable() }
        source.setCancelHandler { [weak worker] in
            Posix.close(fd)
            worker?.relays[fd] = nil
            group.leave()
        }
        self.source = source
        source.activate()
    }

    func cancel() {
        source?.cancel()
        source = nil
    }

    private func readable() {
        worker.stats.readFirings &+= 1
        let batch = worker.batch
        let handler = worker.handler
        let handle = RelayHandle(fd)
        var rounds = 0
        while rounds < maxBatchesPerFiring && source != nil {
            rounds &+= 1
            batch.resetReceive()
            let n: Int
            do {
                switch try Posix.recvmmsg(fd, batch.recvHeaders, count: batch.count) {
                case .wouldBlock: return
                case .done(let got): n = got
                }
            } catch {
                // ICMP errors for earlier sends (ECONNREFUSED) surface here on Linux: not fatal.
                worker.stats.socketErrors &+= 1
                if error.errno == ECONNREFUSED || error.errno == EHOSTUNREACH || error.errno == ENETUNREACH { continue }
                return
            }
            var out = 0
            var i = 0
            while i < n {
                defer { i &+= 1 }
                if batch.truncated(i) {
                    worker.stats.oversizedDropped &+= 1
                    continue
                }
                let payload = batch.received(i)
                worker.stats.datagramsReceived &+= 1
                worker.stats.bytesReceived &+= UInt64(payload.count)
                let peer = TernSocketAddress.transportAddress(batch.recvNames + i)
                switch handler.handlePeerData(relay: handle, peer: peer, payload: payload, output: batch.sendSlot(out)) {
                case .drop:
                    continue
                case .forward(let route, let length):
                    if route.connection & DTLSEndpoint.idBit != 0 {
                        // A DTLS client: encrypted onto its association.
                        if route.socket < worker.dtlsEndpoints.count,
                           let client = worker.dtlsEndpoints[route.socket].client(id: route.connection) {
                            worker.dtlsEndpoints[route.socket].send(client, UnsafeRawBufferPointer(rebasing: batch.sendSlot(out)[0..<length]))
                        }
                        continue
                    }
                    if route.connection != 0 {
                        // A stream client: straight onto its connection (bounded queue, see sendRelayed).
                        worker.connectionsByID[route.connection]?
                            .sendRelayed(UnsafeRawBufferPointer(rebasing: batch.sendSlot(out)[0..<length]))
                        continue
                    }
                    guard route.socket < worker.udpEndpoints.count else { continue }
                    batch.prepareSend(out, to: route.client, length: length,
                                      source: worker.udpEndpoints[route.socket].isWildcard ? route.local : nil,
                                      socket: route.socket)
                    out &+= 1
                }
            }
            if out > 0 { worker.flushToClients(out) }
            if n < batch.count { return }
        }
    }
}
