#if canImport(Glibc)
import Glibc
#endif
import CTernShims
import Histogram
import STUN

/// The two-way smooth load (`--two-way`): every allocation is a jittered stream of fixed-size
/// datagrams from its client socket, and the peer echoes every datagram it gets, so both legs carry
/// the same smooth load.
///
/// Leg "to_peer": each stream's event sends a single datagram or a pair back to back (at random,
/// `pairShare` of them pairs; a pair is one sendmmsg, or one UDP GSO send with `gso`) as ChannelData
/// to the server, which relays the payload to the peer socket. Leg "to_client": the peer takes what
/// arrived with recvmmsg and sends the whole batch straight back to where each datagram came from
/// (the allocation's relay address) in one sendmmsg; the server relays it to the client socket as
/// ChannelData. In direct mode (no server: the generator's own cost) the clients send to the peer
/// and the peer echoes to the clients.
///
/// One thread does everything (no context switches on the generator's core): send what is due,
/// then drain every ready socket (epoll over the client sockets and the peer), then sleep a tick
/// when the schedule is caught up. Latency comes from the kernel's receive timestamps
/// (SO_TIMESTAMPNS), so the time a datagram waits for the loop is not in it.
///
/// Payload: sequence number (8 bytes), the client's send stamp, the peer's echo stamp (CLOCK_REALTIME ns).
final class TwoWayLoad {
    static let minimumSize = 24
    let clientFDs: [Int32]
    let peerFD: Int32
    let channelHeader: Bool
    let size: Int
    let pairShare: Double
    let gso: Bool
    /// The shortest sleep once the schedule is caught up (us).
    let tickMicroseconds: UInt64 = 200
    private var schedule: StreamSchedule
    private let destination: TransportAddress
    private let epoll: Int32
    private let ready = UnsafeMutablePointer<Int32>.allocate(capacity: 64)
    private let peerBatch = MessageBatch()
    private let clientBatch = MessageBatch()
    private let messages = UnsafeMutablePointer<tern_mmsghdr>.allocate(capacity: 2)
    private let iovecs = UnsafeMutablePointer<iovec>.allocate(capacity: 2)
    private let buffers: UnsafeMutableRawPointer
    private let slot: Int
    private var seq: UInt64 = 0

    private(set) var events = 0, pairs = 0
    private(set) var sentToPeer = 0, receivedAtPeer = 0, echoed = 0, receivedAtClient = 0
    private(set) var toPeer = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    private(set) var toClient = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    private(set) var roundTrip = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)

    /// `ratePerLeg`: datagrams per second from all clients together (the peer echoes as many);
    /// each stream's mean event interval is allocations * (1 + pairShare) / ratePerLeg.
    init(clientFDs: [Int32], destination: TransportAddress, peerFD: Int32, channelHeader: Bool, size: Int,
         ratePerLeg: Double, pairShare: Double, jitter: Double, seed: UInt64, gso: Bool) {
        precondition(size >= Self.minimumSize && size <= 1400 && !clientFDs.isEmpty)
        self.clientFDs = clientFDs
        self.peerFD = peerFD
        self.channelHeader = channelHeader
        self.size = size
        self.pairShare = pairShare
        self.gso = gso
        self.destination = destination
        let interval = 1e9 * Double(clientFDs.count) * (1 + pairShare) / ratePerLeg
        schedule = StreamSchedule(intervals: Array(repeating: interval, count: clientFDs.count), jitter: jitter, seed: seed)
        epoll = tern_epoll_create()
        precondition(epoll >= 0, "epoll_create1: \(errno)")
        for fd in clientFDs + [peerFD] {
            enableKernelTimestamps(fd)
            precondition(tern_epoll_add(epoll, fd) == 0, "epoll_ctl: \(errno)")
        }
        slot = (size + 4 + 7) & ~7
        buffers = .allocate(byteCount: 2 * slot, alignment: 16)
        buffers.initializeMemory(as: UInt8.self, repeating: 0xA5, count: 2 * slot)
        for i in 0..<2 {
            let b = buffers + i * slot
            if channelHeader {
                // ChannelData (RFC 8656 section 12.4): channel 0x4000, then the payload length.
                b.storeBytes(of: UInt16(0x4000).bigEndian, as: UInt16.self)
                b.storeBytes(of: UInt16(size).bigEndian, toByteOffset: 2, as: UInt16.self)
            }
            iovecs[i] = iovec(iov_base: b, iov_len: size + (channelHeader ? 4 : 0))
            messages[i] = tern_mmsghdr()
            messages[i].msg_hdr.msg_iov = iovecs + i
            messages[i].msg_hdr.msg_iovlen = 1
        }
    }

    deinit {
        close(epoll)
        ready.deallocate(); messages.deallocate(); iovecs.deallocate(); buffers.deallocate()
    }

    /// One event of stream s: a single datagram or a pair, stamped just before the send call.
    private func sendEvent(_ s: Int) {
        let count = schedule.random.unit() < pairShare ? 2 : 1
        let offset = channelHeader ? 4 : 0
        stampPayloads(buffers + offset, count: count, slot: slot, stamp: realtimeNanos(), seq: &seq)
        let fd = clientFDs[s], length = iovecs[0].iov_len
        events += 1
        if count == 1 {
            if send(fd, buffers, length, 0) > 0 { sentToPeer += 1 }
            return
        }
        pairs += 1
        if gso {
            // The socket is connected: no address.
            if tern_send_gso(fd, iovecs, 2, nil, 0, UInt16(length)) > 0 { sentToPeer += 2 }
        } else {
            let r = tern_sendmmsg(fd, messages, 2, 0)
            if r > 0 { sentToPeer += Int(r) }
        }
    }

    /// The peer's mean time to send one datagram of a batch (ns, a moving average over the batches).
    private(set) var echoNanosPerDatagram = 0.0

    /// The peer: times each datagram (to_peer), stamps it and sends the whole batch back to its
    /// senders in one sendmmsg. In a batch the kernel sends (and on lo delivers) one datagram after
    /// the other, so the i-th one's echo stamp is the batch's start plus i times the mean time per
    /// datagram of the earlier batches (an estimate: without it the later datagrams of a batch would
    /// carry the earlier ones' send time in their to_client latency). The round trip leaves out the
    /// time a datagram waited in the generator's peer: its send stamp moves on by that wait.
    private func echoAtPeer() -> Int {
        var total = 0
        for _ in 0..<16 {
            let n = peerBatch.receive(peerFD, flags: 0x40, timestamps: true)
            if n == 0 { break }
            total += n
            let now = realtimeNanos()
            for i in 0..<n where peerBatch.length(i) >= Self.minimumSize {
                let b = peerBatch.buffer(i)
                let sentAt = b.load(fromByteOffset: 8, as: UInt64.self)
                let at = peerBatch.kernelTime(i) ?? now
                let echoAt = now &+ UInt64(Double(i) * echoNanosPerDatagram)
                if at > sentAt { toPeer.record((at - sentAt) / 1000) }
                if echoAt > at { b.storeBytes(of: sentAt &+ (echoAt - at), toByteOffset: 8, as: UInt64.self) }
                b.storeBytes(of: echoAt, toByteOffset: 16, as: UInt64.self)
            }
            receivedAtPeer += n
            let sent = peerBatch.echo(peerFD, n)
            echoed += sent
            if sent > 0 {
                // At most 20 us: a batch the scheduler preempted says nothing about the next ones.
                let perDatagram = min(20_000, Double(realtimeNanos() - now) / Double(sent))
                echoNanosPerDatagram = echoNanosPerDatagram == 0 ? perDatagram : 0.9 * echoNanosPerDatagram + 0.1 * perDatagram
            }
            if n < peerBatch.count { break }
        }
        return total
    }

    /// A client socket: times each echoed datagram (to_client, and the round trip).
    private func receiveAtClient(_ fd: Int32) -> Int {
        let offset = channelHeader ? 4 : 0
        var total = 0
        for _ in 0..<4 {
            let n = clientBatch.receive(fd, flags: 0x40, timestamps: true)
            if n == 0 { break }
            total += n
            for i in 0..<n where clientBatch.length(i) >= offset + Self.minimumSize {
                let b = clientBatch.buffer(i)
                let at = clientBatch.kernelTime(i) ?? realtimeNanos()
                let sentAt = b.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)
                let echoedAt = b.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self)
                if at > echoedAt { toClient.record((at - echoedAt) / 1000) }
                if at > sentAt { roundTrip.record((at - sentAt) / 1000) }
                receivedAtClient += 1
            }
            if n < clientBatch.count { break }
        }
        return total
    }

    /// Drains every ready socket; returns how many datagrams it took.
    private func receiveReady() -> Int {
        var total = 0
        for _ in 0..<32 {
            let n = Int(tern_epoll_wait_us(epoll, ready, 64, 0))
            if n <= 0 { break }
            for i in 0..<n { total += ready[i] == peerFD ? echoAtPeer() : receiveAtClient(ready[i]) }
            if n < 64 { break }
        }
        return total
    }

    /// Runs the streams for `seconds`, then goes on receiving and echoing until nothing arrived for
    /// 200 ms (at most 2 s). Returns the seconds of sending.
    func run(seconds: Double) -> Double {
        for fd in clientFDs { UDP.connect(fd, to: destination) }
        let start = monotonicNanos()
        let end = start + UInt64(seconds * 1e9)
        schedule.start(at: start)
        var sendEnd: UInt64 = 0, lastArrival = start
        while true {
            let now = monotonicNanos()
            var handled = 0
            if sendEnd == 0 {
                if now >= end {
                    sendEnd = now
                } else {
                    while handled < 256, let s = schedule.popDue(now) { sendEvent(s); handled += 1 }
                }
            }
            if receiveReady() > 0 { lastArrival = monotonicNanos() }
            if sendEnd != 0 {
                let t = monotonicNanos()
                if t - max(lastArrival, sendEnd) > 200_000_000 || t - sendEnd > 2_000_000_000 { break }
                usleep(1000)
            } else if handled < 256 {
                schedule.sleepUntilDue(now: monotonicNanos(), tickMicroseconds: tickMicroseconds)
            }
        }
        return Double(sendEnd - start) / 1e9
    }
}
