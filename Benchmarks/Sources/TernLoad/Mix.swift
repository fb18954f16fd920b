#if canImport(Glibc)
import Glibc
#endif
import CTernShims
import Histogram
import STUN

/// The realistic mix (`--mix`): every allocation is a stream of its own in both directions, with
/// independent, jittered timing and no bursts to one socket. 80% are audio-like (payload 100-200 B,
/// 50 pkt/s), 20% video-like (payload 1,000-1,200 B, 300 pkt/s); `--rate` scales every stream so
/// that both legs together offer that many packets/s (0: the streams' own rates).
///
/// Leg "to_peer": each client socket sends ChannelData to the server, which relays the payload to the
/// peer (the sink socket). Leg "to_client": the peer sends an equal, independent stream to each
/// allocation's relay address, which reaches the client socket as ChannelData. In direct mode (no
/// server: the generator's own cost) the same packets go straight from client to peer and back.
struct MixProfile {
    static let audio = (rate: 50.0, sizes: 100...200)
    static let video = (rate: 300.0, sizes: 1000...1200)

    let allocations: Int
    let videoShare: Double
    /// Whether allocation `i` is video: an even spread, exactly round(share * allocations) of them.
    func isVideo(_ i: Int) -> Bool {
        Int((Double(i + 1) * videoShare).rounded(.down)) > Int((Double(i) * videoShare).rounded(.down))
    }
    /// Packets per second of one leg at the streams' own rates.
    var naturalLegRate: Double {
        (0..<allocations).reduce(0) { $0 + (isVideo($1) ? Self.video.rate : Self.audio.rate) }
    }
}

/// The streams (a StreamSchedule) and the sends.
final class MixSender {
    let clientFDs: [Int32]
    let peerFD: Int32
    let channelHeader: Bool
    let jitter: Double
    /// The shortest sleep between rounds of sends (us).
    let tickMicroseconds: UInt64 = 200
    private let n: Int
    /// Mean interval (ns) and payload sizes of stream s: s < n is client i = s (to_peer), s >= n is the
    /// peer's stream to allocation s - n (to_client).
    private var sizes: [ClosedRange<Int>]
    private var schedule: StreamSchedule
    private let clientAddress: TransportAddress
    private let peerDestinations: UnsafeMutablePointer<sockaddr_in>
    private let batch: Int, slot = 1280
    private let messages: UnsafeMutablePointer<tern_mmsghdr>
    private let iovecs: UnsafeMutablePointer<iovec>
    private let buffers: UnsafeMutableRawPointer
    private(set) var sentToPeer = 0
    private(set) var sentToClient = 0
    private var seq: UInt64 = 0

    /// `clientDestination`: where client sockets send (the server, or the peer in direct mode);
    /// `peerDestinations[i]`: where the peer sends allocation i's stream (its relay address, or the client socket).
    /// `peerBatch`: the peer's due datagrams leave in one sendmmsg of up to this many (1: one system
    /// call each). Each datagram's stamp is taken before the call, so in a batch the later ones carry
    /// the time the kernel spent on the earlier ones (a few us each) in their latency.
    init(profile: MixProfile, scale: Double, jitter: Double, seed: UInt64, clientFDs: [Int32], clientDestination: TransportAddress,
         peerFD: Int32, peerDestinations: [TransportAddress], channelHeader: Bool, peerBatch: Int) {
        precondition(clientFDs.count == profile.allocations && peerDestinations.count == profile.allocations)
        batch = max(1, min(64, peerBatch))
        self.clientFDs = clientFDs
        self.peerFD = peerFD
        self.channelHeader = channelHeader
        self.jitter = jitter
        n = profile.allocations
        var interval: [Double] = []
        sizes = []
        for _ in 0..<2 {
            for i in 0..<n {
                let kind = profile.isVideo(i) ? MixProfile.video : MixProfile.audio
                interval.append(1e9 / (kind.rate * scale))
                sizes.append(kind.sizes)
            }
        }
        schedule = StreamSchedule(intervals: interval, jitter: jitter, seed: seed)
        clientAddress = clientDestination
        self.peerDestinations = .allocate(capacity: n)
        for i in 0..<n { self.peerDestinations[i] = UDP.sockaddrIn(peerDestinations[i]) }
        messages = .allocate(capacity: batch)
        iovecs = .allocate(capacity: batch)
        buffers = .allocate(byteCount: slot * (batch + 1), alignment: 16)
        buffers.initializeMemory(as: UInt8.self, repeating: 0xA5, count: slot * (batch + 1))
        for i in 0..<batch {
            iovecs[i] = iovec(iov_base: buffers + i * slot, iov_len: 0)
            messages[i] = tern_mmsghdr()
            messages[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
            messages[i].msg_hdr.msg_iov = iovecs + i
            messages[i].msg_hdr.msg_iovlen = 1
        }
    }

    deinit {
        peerDestinations.deallocate()
        messages.deallocate(); iovecs.deallocate(); buffers.deallocate()
    }

    /// Writes sequence number and send time, and the ChannelData header when asked; returns the length.
    private func fill(_ b: UnsafeMutableRawPointer, stream s: Int, header: Bool) -> Int {
        let payload = schedule.random.inRange(sizes[s])
        let offset = header ? 4 : 0
        if header {
            b.storeBytes(of: UInt16(0x4000).bigEndian, as: UInt16.self)
            b.storeBytes(of: UInt16(payload).bigEndian, toByteOffset: 2, as: UInt16.self)
        }
        b.storeBytes(of: seq, toByteOffset: offset, as: UInt64.self)
        b.storeBytes(of: realtimeNanos(), toByteOffset: offset + 8, as: UInt64.self)
        seq &+= 1
        return offset + payload
    }

    private func flushPeer(_ count: Int) {
        guard count > 0 else { return }
        var done = 0
        // A short count (a full send buffer) retries the rest a few times, then drops it.
        for _ in 0..<4 where done < count {
            let r = tern_sendmmsg(peerFD, messages + done, UInt32(count - done), 0)
            if r <= 0 { break }
            done += Int(r)
        }
        sentToClient += done  // the peer's datagrams are the to_client leg
    }

    /// Runs every stream for `seconds`: random phase first, then one datagram per due stream; the
    /// peer's due datagrams leave in sendmmsg batches of `peerBatch`, each client's on its own socket
    /// (connected to its one destination, so the kernel keeps its route).
    /// Bounded by time and by twice the expected count.
    func run(seconds: Double) {
        for fd in clientFDs { UDP.connect(fd, to: clientAddress) }
        let start = monotonicNanos()
        let end = start + UInt64(seconds * 1e9)
        schedule.start(at: start)
        let cap = Int(2 * seconds * schedule.eventsPerSecond) + 1000
        let client = buffers + batch * slot
        while sentToPeer + sentToClient < cap {
            let now = monotonicNanos()
            if now >= end { break }
            var pending = 0
            var handled = 0
            while handled < 256, let s = schedule.popDue(now) {
                handled += 1
                if s < n {
                    let length = fill(client, stream: s, header: channelHeader)
                    if send(clientFDs[s], client, length, 0) > 0 { sentToPeer += 1 }
                } else {
                    iovecs[pending].iov_len = fill(buffers + pending * slot, stream: s, header: false)
                    messages[pending].msg_hdr.msg_name = UnsafeMutableRawPointer(peerDestinations + (s - n))
                    pending += 1
                    if pending == batch { flushPeer(pending); pending = 0 }
                }
            }
            flushPeer(pending)
            if handled == 0 { schedule.sleepUntilDue(now: now, tickMicroseconds: tickMicroseconds) }
        }
    }
}
