#if canImport(Glibc)
import Glibc
#endif
import CTernShims
import Dispatch
import Logging
import STUN
import TernCore

/// One worker's SO_REUSEPORT socket of a UDP listener, watched by one long-lived DispatchSourceRead.
///
/// Each firing drains the socket with recvmmsg batches until the kernel has nothing left (a short batch
/// means the queue was empty, so no extra EAGAIN round trip is spent), answers every datagram of a
/// batch into the batch's send slots, and sends the answers with one sendmmsg. A firing is Dispatch's
/// expensive part on Linux (about 8 extra system calls), so each one carries as many packets as it can.
final class UDPEndpoint {
    let socket: Socket
    let bound: TransportAddress
    let isWildcard: Bool
    unowned let worker: Worker
    /// This endpoint's index among the worker's UDP endpoints (the `socket` of a ClientRoute).
    let index: Int
    private var source: ReadWatch?
    /// Scratch for the local address of the datagram being handled.
    private let localScratch: UnsafeMutablePointer<sockaddr_storage>

    init(socket: Socket, bound: TransportAddress, worker: Worker, index: Int) {
        self.socket = socket
        self.bound = bound
        self.isWildcard = bound.ip.isUnspecified
        self.worker = worker
        self.index = index
        self.localScratch = .allocate(capacity: 1)
        localScratch.pointee = sockaddr_storage()
    }

    deinit {
        localScratch.deallocate()
    }

    func start() {
        source = worker.watchReadable(socket, readable: { [unowned self] in self.readable() })
    }

    /// A removed listener (reload) stays in `udpEndpoints` so that the other endpoints keep their
    /// index (routes name sockets by it), but sends nothing once its descriptor is closed.
    private(set) var closed = false

    func cancel() {
        source?.cancel()
        source = nil
        closed = true
    }

    private func readable() {
        let handler = worker.handler
        let batch = worker.batch
        var replies = 0
        let worker = self.worker
        // Replies are written from the first send slot on: relay sockets' datagrams waiting there go first.
        worker.flushPendingToClients()
        worker.peerBatch.collecting = true
        defer {
            worker.flushPeerBatch()
            worker.peerBatch.collecting = false
        }
        worker.drainDatagrams(socket.fd, datagram: { i in
            let packet = batch.received(i)
            let client = TernSocketAddress.transportAddress(batch.recvNames + i)
            var local = bound
            var haveLocal = false
            if isWildcard, batch.localAddress(i, port: bound.port, into: localScratch) {
                local = TernSocketAddress.transportAddress(localScratch)
                haveLocal = true
            }
            let context = PacketContext(client: client, local: local, transport: .udp, socket: index)
            let result = handler.handle(packet, context: context, response: batch.sendSlot(replies))
            if case .replyFrom(let length, let source, let destination) = result, length > 0, length <= batch.slotSize {
                worker.send(UnsafeRawBufferPointer(rebasing: batch.sendSlot(replies)[0..<length]), from: source, to: destination)
            } else if case .reply(let length) = result, length > 0, length <= batch.slotSize {
                batch.prepareSend(replies, replyingTo: i, length: length,
                                  source: haveLocal ? UnsafePointer(localScratch) : nil)
                replies &+= 1
            }
        }, batchDone: {
            // Before the next recvmmsg overwrites the payloads the peer batch points into.
            worker.flushPeerBatch()
            if replies > 0 { flush(replies, batch: batch) }
            replies = 0
        }, failed: { error in
            worker.logger.debug("udp receive failed", metadata: ["error": "\(error)", "local": "\(bound)"])
            return false
        })
    }

    /// Sends `count` prepared slots from `start`: runs to one client merged into UDP GSO messages
    /// where they can be (`SegmentedSends`), in one sendmmsg either way.
    func flush(_ count: Int, batch: DatagramBatch, from start: Int = 0) {
        guard !closed else {
            worker.stats.sendDropped &+= UInt64(count)
            return
        }
        if count > 1, let messages = worker.segmented.build(batch, start: start, end: start + count) {
            flushSegmented(messages, batch: batch)
        } else {
            flushSlots(start, start + count, batch: batch)
        }
    }

    /// Sends slots [start, end) with their own headers. A datagram the kernel refuses (for example an
    /// unreachable destination) is skipped and counted.
    private func flushSlots(_ start: Int, _ end: Int, batch: DatagramBatch) {
        sendMessages(batch.sendHeaders + start, count: end - start) { _, error in
            worker.stats.sendDropped &+= 1
            worker.logger.trace("udp send failed", metadata: ["error": "\(error)"])
        }
    }

    /// Sends the first `n` messages of the worker's `SegmentedSends`. A merged message the kernel refuses
    /// goes again as single datagrams, and a kernel or device that cannot segment at all turns merging
    /// off for the worker.
    private func flushSegmented(_ n: Int, batch: DatagramBatch) {
        let messages = worker.segmented
        sendMessages(messages.headers, count: n) { i, error in
            let k = Int(messages.headers[i].msg_hdr.msg_iovlen)
            if k > 1 {
                let e = error.errno
                if e == EIO || e == ENOPROTOOPT || e == EOPNOTSUPP { messages.enabled = false }
                flushSlots(messages.firstSlot[i], messages.firstSlot[i] + k, batch: batch)
            } else {
                worker.stats.sendDropped &+= 1
                worker.logger.trace("udp send failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// sendmmsg of `n` messages, resuming after partial sends; a message carries one datagram per iovec
    /// (several for a UDP GSO message). `refused(i, error)` handles message i when the kernel refuses it;
    /// when the send buffer is full the rest are dropped and counted: UDP makes no promise, and the
    /// client will retransmit.
    private func sendMessages(_ headers: UnsafeMutablePointer<tern_mmsghdr>, count n: Int,
                              refused: (Int, SystemError) -> Void) {
        let fd = socket.fd
        var sent = 0
        while sent < n {
            do {
                switch try Posix.sendmmsg(fd, headers + sent, count: n - sent) {
                case .done(let k):
                    var j = sent
                    while j < sent + k {
                        let datagrams = headers[j].msg_hdr.msg_iovlen
                        worker.stats.bytesSent &+= UInt64(headers[j].msg_len)
                        worker.stats.datagramsSent &+= UInt64(datagrams)
                        if datagrams > 1 { worker.stats.clientSegmentedSends &+= 1 }
                        j &+= 1
                    }
                    if k == 0 { worker.stats.sendDropped &+= UInt64(headers[sent].msg_hdr.msg_iovlen) }
                    sent &+= max(k, 1)
                case .wouldBlock:
                    while sent < n {
                        worker.stats.sendDropped &+= UInt64(headers[sent].msg_hdr.msg_iovlen)
                        sent &+= 1
                    }
                    return
                }
            } catch {
                refused(sent, error)
                sent &+= 1
            }
        }
    }
}
