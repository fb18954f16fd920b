import Dispatch
import STUN

extension Worker {
    /// The one long-lived read source for `socket`, on this worker's queue. libdispatch's rule: a
    /// descriptor is closed only in its source's cancel handler (never while the source lives), so
    /// the handler holds the socket and closes it; `stop()` waits for every such close through `closing`.
    func makeReadSource(_ socket: Socket, readable: @escaping () -> Void,
                        cancelled: (() -> Void)? = nil) -> DispatchSourceRead {
        let source = DispatchSource.makeReadSource(fileDescriptor: socket.fd, queue: queue)
        let group = closing
        group.enter()
        source.setEventHandler(handler: readable)
        source.setCancelHandler {
            socket.close()
            cancelled?()
            group.leave()
        }
        source.activate()
        return source
    }

    /// Drains a UDP socket into the worker's shared batch: up to 16 recvmmsg batches per firing,
    /// stopping at EAGAIN or at a short batch (the queue was empty, so no extra EAGAIN round trip).
    /// `datagram(i)` runs for each datagram that fit its slot; `batchDone()` after each batch.
    /// `failed(error)` decides whether to try again (true) or stop (false) after a receive error.
    @inline(__always)
    func drainDatagrams(_ fd: Int32, datagram: (Int) -> Void, batchDone: () -> Void,
                        failed: (SystemError) -> Bool) {
        stats.readFirings &+= 1
        for _ in 0..<16 {
            batch.resetReceive()
            let n: Int
            do {
                switch try Posix.recvmmsg(fd, batch.recvHeaders, count: batch.count) {
                case .wouldBlock: return
                case .done(let got): n = got
                }
            } catch {
                stats.socketErrors &+= 1
                if failed(error) { continue }
                return
            }
            var i = 0
            while i < n {
                if batch.truncated(i) {
                    stats.oversizedDropped &+= 1
                } else {
                    stats.datagramsReceived &+= 1
                    stats.bytesReceived &+= UInt64(batch.received(i).count)
                    datagram(i)
                }
                i &+= 1
            }
            batchDone()
            if n < batch.count { return }
        }
    }
}
