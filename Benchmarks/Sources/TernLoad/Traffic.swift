#if canImport(Glibc)
import Glibc
#endif
import CTernShims
import Histogram
import STUN

/// Sends messages at a fixed rate (or flat out), round-robin over the client sockets, a few per socket
/// at a time with sendmmsg so that the generator stays well below the server's cost per packet.
final class PacedSender {
    let sockets: [Int32]
    let payloadSize: Int
    let channelHeader: Bool
    /// Each burst to one socket leaves as one UDP GSO send (`UDP_SEGMENT`): the kernel walks its
    /// send path once per burst, which keeps the generator's core ahead of the server's. On loopback
    /// the receiving socket still gets one datagram per message.
    let gso: Bool
    let batch = 16
    private let messages: UnsafeMutablePointer<tern_mmsghdr>
    private let iovecs: UnsafeMutablePointer<iovec>
    private let buffers: UnsafeMutableRawPointer
    private let slot: Int
    private let destination: UnsafeMutablePointer<sockaddr_in>

    init(sockets: [Int32], destination: TransportAddress, payloadSize: Int, channelHeader: Bool, gso: Bool) {
        self.sockets = sockets
        self.gso = gso
        self.payloadSize = payloadSize
        self.channelHeader = channelHeader
        self.destination = .allocate(capacity: 1)
        self.destination.initialize(to: UDP.sockaddrIn(destination))
        slot = (payloadSize + 4 + 7) & ~7
        messages = .allocate(capacity: batch)
        iovecs = .allocate(capacity: batch)
        buffers = .allocate(byteCount: slot * batch, alignment: 16)
        buffers.initializeMemory(as: UInt8.self, repeating: 0xA5, count: slot * batch)
        let length = payloadSize + (channelHeader ? 4 : 0)
        for i in 0..<batch {
            let b = buffers + i * slot
            if channelHeader {
                // ChannelData (RFC 8656 section 12.4): channel 0x4000, then the payload length.
                b.storeBytes(of: UInt16(0x4000).bigEndian, as: UInt16.self)
                b.storeBytes(of: UInt16(payloadSize).bigEndian, toByteOffset: 2, as: UInt16.self)
            }
            iovecs[i] = iovec(iov_base: b, iov_len: length)
            messages[i] = tern_mmsghdr()
            messages[i].msg_hdr.msg_name = UnsafeMutableRawPointer(self.destination)
            messages[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
            messages[i].msg_hdr.msg_iov = iovecs + i
            messages[i].msg_hdr.msg_iovlen = 1
        }
    }

    deinit {
        messages.deallocate()
        iovecs.deallocate()
        buffers.deallocate()
        destination.deallocate()
    }

    /// Sends `total` messages at `rate` per second (0: as fast as possible for `seconds`). Returns the
    /// number the kernel accepted.
    func run(rate: Int, total: Int, seconds: Double) -> Int {
        var seq: UInt64 = 0
        var sent = 0
        var socketIndex = 0
        let start = monotonicNanos()
        let end = start + UInt64(seconds * 1e9)
        let offset = channelHeader ? 4 : 0
        // Per socket per turn: up to 8 messages (a burst, as a video frame is), so that the generator's
        // own system calls stay well below the server's; the sockets take turns.
        let perSocket = 8
        while sent < total {
            let now = monotonicNanos()
            if now >= end && rate == 0 { break }
            var due = total - sent
            if rate > 0 {
                let shouldHaveSent = Int(Double(now - start) / 1e9 * Double(rate))
                due = min(due, shouldHaveSent - sent)
                if due <= 0 {
                    // Nothing due: sleep (about 250 us with the timer slack) rather than spin, so the
                    // sink thread on the same core gets the CPU. Messages then leave in small bursts.
                    usleep(200)
                    continue
                }
            }
            let n = min(due, perSocket)
            stampPayloads(buffers + offset, count: n, slot: slot, stamp: monotonicNanos(), seq: &seq)
            let fd = sockets[socketIndex]
            socketIndex = socketIndex + 1 == sockets.count ? 0 : socketIndex + 1
            if gso && n > 1 {
                let r = tern_send_gso(fd, iovecs, Int32(n), messages[0].msg_hdr.msg_name.assumingMemoryBound(to: sockaddr.self),
                                      socklen_t(MemoryLayout<sockaddr_in>.size), UInt16(iovecs[0].iov_len))
                if r > 0 { sent += n }
            } else {
                let r = tern_sendmmsg(fd, messages, UInt32(n), 0)
                if r > 0 { sent += Int(r) }
            }
        }
        return sent
    }
}

/// The sink: receives every relayed message, counts it and records its latency (HdrHistogram, in us).
/// One socket: a blocking recvmmsg loop. Several (the mix's client sockets): an epoll set over them.
/// The send time sits at `stampOffset` in each datagram (8 in a bare payload, 12 in ChannelData).
///
/// Latency is the receive time minus that stamp. By default (the burst cases) the receive time is
/// CLOCK_MONOTONIC when recvmmsg returned, and the stamp is CLOCK_MONOTONIC too. With
/// `kernelTimestamps` (the mix) it is the kernel's receive timestamp (SO_TIMESTAMPNS, CLOCK_REALTIME,
/// taken when the datagram entered the stack on lo: after the relay for a user-space server, before
/// the classifier for the offload) and the stamp is CLOCK_REALTIME; the receiver thread then runs as
/// SCHED_BATCH, so an arrival does not preempt the sender on the same core (the receiver drains what
/// arrived when the sender sleeps: far fewer context switches, and its own delay is not in the figure).
final class SinkReceiver: @unchecked Sendable {
    let fds: [Int32]
    let stampOffset: Int
    private(set) var received = 0
    private var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    private var running = true
    private var lastArrival: UInt64 = 0
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    let kernelTimestamps: Bool

    convenience init(fd: Int32) { self.init(fds: [fd]) }

    init(fds: [Int32], stampOffset: Int = 8, kernelTimestamps: Bool = false) {
        self.fds = fds
        self.stampOffset = stampOffset
        self.kernelTimestamps = kernelTimestamps
        if kernelTimestamps { fds.forEach(enableKernelTimestamps) }
        pthread_mutex_init(lock, nil)
        if fds.count == 1 { UDP.setReceiveTimeout(fds[0], milliseconds: 50) }
    }

    func start() -> pthread_t {
        var thread = pthread_t()
        let box = Unmanaged.passRetained(self)
        pthread_create(&thread, nil, { arg in
            let me = Unmanaged<SinkReceiver>.fromOpaque(arg!).takeRetainedValue()
            me.loop()
            return nil
        }, box.toOpaque())
        return thread
    }

    private var isRunning: Bool {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return running
    }

    private func loop() {
        if kernelTimestamps {
            var param = sched_param()
            pthread_setschedparam(pthread_self(), 3 /* SCHED_BATCH */, &param)
        }
        let batch = MessageBatch()
        let take = { (n: Int) in
            let now = monotonicNanos()
            pthread_mutex_lock(self.lock)
            for i in 0..<n where batch.length(i) >= self.stampOffset + 8 {
                let sentAt = batch.buffer(i).loadUnaligned(fromByteOffset: self.stampOffset, as: UInt64.self)
                let at = self.kernelTimestamps ? (batch.kernelTime(i) ?? 0) : now
                if at > sentAt { self.histogram.record((at - sentAt) / 1000) }
            }
            self.received += n
            self.lastArrival = now
            pthread_mutex_unlock(self.lock)
        }
        if fds.count == 1 {
            while isRunning {
                // MSG_WAITFORONE (0x10000): return as soon as one arrived, with whatever else is queued.
                let n = batch.receive(fds[0], flags: 0x10000, timestamps: kernelTimestamps)
                if n > 0 { take(n) }
            }
            return
        }
        let epoll = tern_epoll_create()
        precondition(epoll >= 0, "epoll_create1: \(errno)")
        defer { close(epoll) }
        for fd in fds { precondition(tern_epoll_add(epoll, fd) == 0, "epoll_ctl: \(errno)") }
        var ready = [Int32](repeating: 0, count: 64)
        while isRunning {
            let n = ready.withUnsafeMutableBufferPointer { tern_epoll_wait_us(epoll, $0.baseAddress, 64, 50_000) }
            for i in 0..<max(0, Int(n)) {
                // MSG_DONTWAIT (0x40): drain what is queued on this socket, at most 4 rounds.
                for _ in 0..<4 {
                    let got = batch.receive(ready[i], flags: 0x40, timestamps: kernelTimestamps)
                    if got <= 0 { break }
                    take(got)
                    if got < batch.count { break }
                }
            }
        }
    }

    /// Waits until nothing arrived for `milliseconds` (bounded by `atMost`).
    func waitQuiet(milliseconds: Int, atMost: Int) {
        let start = monotonicNanos()
        while true {
            usleep(20_000)
            pthread_mutex_lock(lock)
            let last = lastArrival
            pthread_mutex_unlock(lock)
            let now = monotonicNanos()
            if now - max(last, start) > UInt64(milliseconds) * 1_000_000 || now - start > UInt64(atMost) * 1_000_000 { return }
        }
    }

    func stop() {
        pthread_mutex_lock(lock)
        running = false
        pthread_mutex_unlock(lock)
    }

    func percentile(_ p: Double) -> Double {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return Double(histogram.valueAtPercentile(p))
    }

    /// A copy of the latencies so far (to merge legs).
    var latencies: Histogram<UInt64> {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return histogram
    }
}

/// Writes a sequence number (counting up from `seq`) and `stamp` into the first 16 bytes of `count`
/// payloads, `slot` bytes apart from `first`: what the receiving side reads loss and latency from.
@inline(__always)
func stampPayloads(_ first: UnsafeMutableRawPointer, count: Int, slot: Int, stamp: UInt64, seq: inout UInt64) {
    for i in 0..<count {
        let b = first + i * slot
        b.storeBytes(of: seq, as: UInt64.self)
        b.storeBytes(of: stamp, toByteOffset: 8, as: UInt64.self)
        seq &+= 1
    }
}
